"""ONNX-to-ONNX pass: write each node's symbolic costs into its ``metadata_props``.

Node keys: ``irtools.kind``, ``irtools.flops``, ``irtools.bytes_read``,
``irtools.bytes_written`` (formulas as strings; ``irtools.unsupported`` where no rule knows
the op). The model gets ``irtools.totals.*`` and ``irtools.dims``. Nodes are matched to
the IR by their output tensor names. Weights are never read: the model is loaded without
external data and each external data file is copied beside the output as is -- only from
inside the model's folder, only to inside the output's (symlinks followed).
"""

from __future__ import annotations

import json
from pathlib import Path

import sympy

from irtools.capture.onnx import proto as onnx  # the message classes without onnx's import cost
from irtools.capture.onnx.external import check_external, inside
from irtools.capture.onnx.frontend import capture_onnx
from irtools.capture.onnx.load import load_model
from irtools.files import check_output, copy_atomic, write_atomic
from irtools.ir import numeric
from irtools.ir.errors import CaptureError, ExportError
from irtools.ir.kinds import COSTS
from passes.annotate_costs import annotate_costs


def _set(props, key: str, value: str) -> None:
    for p in props:
        if p.key == key:
            p.value = value
            return
    entry = props.add()
    entry.key, entry.value = key, value


def annotate_onnx(in_path: str | Path, out_path: str | Path, force: bool = False) -> dict[str, sympy.Expr]:
    """Annotate ``in_path`` into ``out_path``; returns the model totals. An existing output
    needs ``force``; every file is written through a temporary file and a rename."""
    in_path, out_path = Path(in_path), Path(out_path)
    check_output(out_path, force)  # before the work: never a device, FIFO or folder
    ir = annotate_costs(capture_onnx(str(in_path)))
    by_output: dict[str, dict] = {}
    for _, attrs in ir.nodes():
        for name in (attrs.get("tensor_names") or {}).get("outputs", []):
            if name:
                by_output[name] = attrs
    model, _ = load_model(in_path)
    for node in model.graph.node:
        attrs = next((by_output[o] for o in node.output if o in by_output), None)
        if attrs is None:
            continue
        _set(node.metadata_props, "irtools.kind", str(attrs["kind"]))
        for c in COSTS:
            _set(node.metadata_props, f"irtools.{c}", str(attrs[c]))
        if attrs.get("unsupported"):
            _set(node.metadata_props, "irtools.unsupported", "true")
    totals = {c: numeric.expand(numeric.total(a[c] for _, a in ir.nodes())) for c in COSTS}
    for c, expr in totals.items():
        _set(model.metadata_props, f"irtools.totals.{c}", str(expr))
    _set(model.metadata_props, "irtools.dims", json.dumps(ir.dims))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _copy_external(model, in_path, out_path, force)
    write_atomic(out_path, model.SerializeToString(), force=force)
    return totals


def _copy_external(model: onnx.ModelProto, in_path: Path, out_path: Path, force: bool) -> None:
    """Copy each external data file beside the output: its real path (symlinks followed) must
    lie inside the model's folder, and the copy's inside the output's (external.py)."""
    where = str(in_path)
    done = set()
    for what, rel in check_external(model, in_path.parent, where):
        if rel in done:
            continue
        done.add(rel)
        src = inside(in_path.parent, rel)
        dst = inside(out_path.parent, rel)
        if src is None:  # check_external refused it already; kept for clarity
            raise CaptureError(f"{where}: {what} points its external data outside the model folder ({rel!r})")
        if dst is None:
            raise ExportError(f"{out_path}: the external data {rel!r} of {what} would land outside the output folder")
        if src == dst:
            continue  # annotating in place: the data stays where it is
        dst.parent.mkdir(parents=True, exist_ok=True)
        if inside(out_path.parent, rel) != dst:
            raise ExportError(f"{out_path}: the external data {rel!r} of {what} would land outside the output folder")
        copy_atomic(src, dst, force=force, what="external data file")
