"""model-explorer node data: one JSON file per metric, keyed by node name, with a gradient.

``model-explorer model.onnx --node_data_paths=out.flops.json,out.bytes.json`` colors the
graph by cost. Node keys are the report's node ids: ONNX node names for ONNX inputs, FX
node names for torch graphs. A node's ``time`` is its kernel's time split evenly over the
kernel's member nodes, so namespace sums stay equal to kernel times. Nodes whose value is
not bound by the report's bindings are left out.
"""

from __future__ import annotations

import math
from pathlib import Path

from irtools.export import ExportError, as_report, write_atomic
from irtools.export.escape import json_text

GRADIENT = [{"stop": 0, "bgColor": "#f7fbff"}, {"stop": 0.5, "bgColor": "#fdae6b"}, {"stop": 1, "bgColor": "#d62728"}]
DEFAULT_GRAPH_ID = {"onnx": "main_graph", "torch": "graph"}


def node_values(report) -> dict[str, dict[str, float]]:
    """Metric -> {node id: value}: ``flops``, ``bytes`` and (with kernels) ``time``."""
    out: dict[str, dict[str, float]] = {"flops": {}, "bytes": {}}
    for n in report["nodes"]:
        f, r, w = (n[c].get("value") for c in ("flops", "bytes_read", "bytes_written"))
        if _finite(f):
            out["flops"][n["id"]] = f
        if _finite(r) and _finite(w):
            out["bytes"][n["id"]] = r + w
    if report.get("kernels"):
        out["time"] = {}
        for k in report["kernels"]:
            t = k["time_s"].get("value")
            if _finite(t) and k["nodes"]:
                for nid in k["nodes"]:
                    out["time"][nid] = t / len(k["nodes"])
    return out


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def node_data(report, metric: str, graph_id: str | None = None) -> dict:
    """The node-data dict of one metric."""
    values = node_values(report)
    if metric not in values:
        raise ExportError(f"no {metric!r} node data: time needs kernel times (give a target)")
    gid = graph_id or DEFAULT_GRAPH_ID.get(report.get("frontend"), "main_graph")
    return {gid: {"name": f"irtools {metric}", "results": {k: {"value": v} for k, v in values[metric].items()}, "gradient": GRADIENT}}


def output_paths(path, metrics) -> dict[str, Path]:
    """``out.json`` -> ``out.flops.json``, ``out.bytes.json`` ...; a folder gets ``<metric>.json``."""
    path = Path(path)
    if path.is_dir():
        return {m: path / f"{m}.json" for m in metrics}
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return {m: path.with_name(f"{stem}.{m}.json") for m in metrics}


def write_model_explorer(obj, path, *, force: bool = False, graph_id: str | None = None, **opts) -> list[Path]:
    """Write one node-data JSON per metric next to ``path``; returns the files."""
    report = as_report(obj)
    metrics = list(node_values(report))
    paths = output_paths(path, metrics)
    if not force:
        for p in paths.values():
            if p.exists():
                raise ExportError(f"{p} exists (use --force to overwrite)")
    return [write_atomic(p, json_text(node_data(report, m, graph_id), indent=1) + "\n", force=force) for m, p in paths.items()]
