"""Renderers and exporters over an analysis result (data collection lives elsewhere).

Every exporter in :data:`EXPORTERS` is ``fn(result_or_report, path, *, force=False, **opts)``
and returns the list of files it wrote. ``result_or_report`` is an
:class:`~irtools.analysis.AnalysisResult` or an ``irtools.report/1`` dict (see
docs/report.md); kernel keys (``mode``, ``target``, ``time_s``, ``kernels``) are used when
present. Files are written to a temporary file and renamed, never left half written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class ExportError(Exception):
    """An export that cannot be written; its message is one line for the user."""


def as_report(obj, *, target=None, mode: str = "fused") -> dict[str, Any]:
    """The report dict for a result (with ``edges`` and, given a target, kernel keys) or a report."""
    if isinstance(obj, dict):
        return obj
    from irtools.report import build_report

    report = build_report(obj)
    ids = {n["id"] for n in report["nodes"]}
    report["edges"] = [[u, v] for u, v in obj.ir.graph.edges() if u in ids and v in ids]
    if target is not None:
        from passes.fusion import build_kernels
        from passes.roofline import estimate, kernels_report

        report.update(kernels_report(estimate(build_kernels(obj.ir, mode), target, obj.bindings)))
    return report


def write_atomic(path, data: str | bytes, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    if path.exists() and not force:
        raise ExportError(f"{path} exists (use --force to overwrite)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: folder {folder} does not exist")
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(obj, path, *, force: bool = False, **opts) -> list[Path]:
    return [write_atomic(path, json.dumps(as_report(obj, **opts), indent=2) + "\n", force=force)]


def _text(name: str):
    def write(obj, path, *, force: bool = False, **opts) -> list[Path]:
        from irtools.export.text import RENDERERS

        return [write_atomic(path, RENDERERS[name](as_report(obj, **opts)), force=force)]

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
}

__all__ = ["EXPORTERS", "ExportError", "as_report", "write_atomic", "write_json"]
