"""Renderers of a finished report: they format, they compute nothing.

Every exporter in :data:`EXPORTERS` is ``fn(result_or_report, path, *, force=False, **opts)``
and returns the list of files it wrote. ``result_or_report`` is an
:class:`~irtools.result.AnalysisResult` (serialized once, with edges) or an
``irtools.report/1`` dict (docs/report.md); kernel keys (``mode``, ``target``, ``time_s``,
``kernels``) are used when present. Files are written to a temporary file and renamed,
never left half written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from irtools.ir.errors import ExportError


def as_report(obj) -> dict[str, Any]:
    """The report dict of a result (with ``edges``), or a report dict unchanged."""
    return obj if isinstance(obj, dict) else obj.to_dict(edges=True)


def write_atomic(path, data: str | bytes, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename
    (an existing output must be a regular file, and needs ``force``; see irtools.files)."""
    from irtools.files import write_atomic as write

    return write(path, data, force=force, error=ExportError)


def write_json(obj, path, *, force: bool = False, **opts) -> list[Path]:
    from irtools.export.escape import json_text  # NaN / Infinity never written: null, listed in "non_finite"

    return [write_atomic(path, json_text(as_report(obj), indent=2) + "\n", force=force)]


def _text(name: str):
    def write(obj, path, *, force: bool = False, **opts) -> list[Path]:
        from irtools.export.text import RENDERERS

        return [write_atomic(path, RENDERERS[name](as_report(obj)), force=force)]

    write.__name__ = f"write_{name}"
    return write


def _lazy(module: str, name: str):
    def call(obj, path, **opts):
        import importlib

        return getattr(importlib.import_module(f"irtools.export.{module}"), name)(obj, path, **opts)

    call.__name__ = name
    return call


EXPORTERS = {
    "json": write_json,
    "csv": _text("csv"),
    "md": _text("md"),
    "dot": _lazy("dot", "write_dot"),
    "graphml": _lazy("graphml", "write_graphml"),
    "html": _lazy("html", "write_html"),
    "model-explorer": _lazy("model_explorer", "write_model_explorer"),
    "trace": _lazy("trace", "write_trace"),
    "roofline": _lazy("plots", "write_roofline"),
    "modules-chart": _lazy("plots", "write_module_chart"),
    "memory-chart": _lazy("memory_chart", "write_memory_chart"),
}

__all__ = ["EXPORTERS", "ExportError", "as_report", "write_atomic", "write_json"]
