"""Line-table pass: the seed's per-source-line analysis of one module's ``forward``.

For the module at ``path`` (default: the root), every node of its subtree is attributed to
the line of that module's ``forward`` it came from (found in the node's frame chain).
Lines that call a child module are ``composite`` and reference it as
``${qualified.Class}(args)``; lines of own ops are ``basic`` with explicit formulas; lines
calling a helper method (``_attn``) carry that helper's own lines as ``sub_entries``.
Writes ``ir.meta.lines`` (a :class:`LineTable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import sympy

from irtools.ir import Frame, IRGraph, TensorSpec, numeric
from irtools.ir.symbols import pretty
from passes.hierarchy import layer_factor

SKIP_KINDS = {"free"}


@dataclass
class ModuleCall:
    """Calls of one module class with the same arguments from one line (``h.0`` … ``h.11``)."""

    cls: str
    args: tuple[sympy.Expr, ...]
    paths: list[str]
    repeat_symbol: sympy.Expr | None = None  # num_layers when the count equals it

    @property
    def repeat(self) -> int:
        return len(self.paths)

    @property
    def reference(self) -> str:
        text = f"${{{self.cls}}}({', '.join(pretty(a) for a in self.args)})"
        count = self.repeat_symbol if self.repeat_symbol is not None else self.repeat
        return text if count == 1 else f"{count} * {text}"


@dataclass
class LineEntry:
    """One source line: formulas, the module calls it makes, and helper sub-lines."""

    line: int
    code: str
    kernel_type: str  # "basic" | "composite"
    operation: str
    flops: sympy.Expr
    bytes_read: sympy.Expr
    bytes_written: sympy.Expr
    calls: list[ModuleCall] = field(default_factory=list)
    own_flops: sympy.Expr = sympy.Integer(0)
    own_read: sympy.Expr = sympy.Integer(0)
    own_write: sympy.Expr = sympy.Integer(0)
    nodes: list[str] = field(default_factory=list)
    function: str = "forward"
    sub_entries: list[LineEntry] = field(default_factory=list)

    @property
    def references(self) -> list[str]:
        """``${Class}(args)`` of the module calls (``num_layers * ${...}`` when repeated)."""
        return [c.reference for c in self.calls]

    @property
    def repeat(self) -> int:
        return max((c.repeat for c in self.calls), default=1)

    def _formula(self, own: sympy.Expr) -> str:
        parts = list(self.references)
        if own != 0 or not parts:
            parts.append(pretty(own))
        return " + ".join(parts)

    @property
    def flops_formula(self) -> str:
        return self._formula(self.own_flops)

    @property
    def read_formula(self) -> str:
        return self._formula(self.own_read)

    @property
    def write_formula(self) -> str:
        return self._formula(self.own_write)


@dataclass
class LineTable:
    class_name: str
    module_path: str
    file: str | None
    entries: list[LineEntry]


def _sum(exprs) -> sympy.Expr:
    return numeric.expand(numeric.total(exprs))  # ints summed as ints


def module_call_args(ir: IRGraph, path: str, tree) -> tuple[sympy.Expr, ...]:
    """The arguments a reference to the module at ``path`` carries: its input's dims, plus
    its output features when it projects with its own weight or changes the last dim."""
    node_ids = tree.nodes[path]["nodes"]
    produced: set[int] = set()
    first_in: TensorSpec | None = None
    last_out: TensorSpec | None = None
    for nid in node_ids:
        attrs = ir.graph.nodes[nid]
        for spec in attrs["inputs"]:
            if spec is not None and spec.shape and id(spec) not in produced and spec.role not in ("weight", "constant"):
                first_in = first_in or spec
        for spec in attrs["outputs"]:
            if spec is not None:
                produced.add(id(spec))
                last_out = spec
    args: tuple = first_in.shape if first_in is not None else ()
    projects = any(  # a matmul of its own with a weight: Linear / Conv1D-like
        ir.graph.nodes[nid].get("module") == path
        and ir.graph.nodes[nid]["kind"] in ("matmul", "conv")
        and any(spec is not None and spec.role == "weight" for spec in ir.graph.nodes[nid]["inputs"])
        for nid in node_ids
    )
    if last_out is not None and first_in is not None and last_out.shape:
        if projects or last_out.shape[-1] != first_in.shape[-1]:
            args = args + (last_out.shape[-1],)
    return tuple(args)


def _calls(ir: IRGraph, children: list[str], tree) -> list[ModuleCall]:
    """Group a line's child modules by (class, arguments, costs): a loop over h.N is one call."""
    calls: dict[tuple, ModuleCall] = {}
    for path in children:
        data = tree.nodes[path]
        key = (data["cls"], module_call_args(ir, path, tree), data["flops"], data["bytes_read"], data["bytes_written"])
        if key in calls:
            calls[key].paths.append(path)
        else:
            calls[key] = ModuleCall(data["cls"], key[1], [path])
    for call in calls.values():
        factor = layer_factor(ir, call.paths)
        if not isinstance(factor, int):
            call.repeat_symbol = factor
    return list(calls.values())


def _line_total(ir: IRGraph, tree, own: list[str], calls: list[ModuleCall], cost: str) -> sympy.Expr:
    """Own nodes plus each call's module cost times its repeat (num_layers stays symbolic)."""
    parts = [ir.graph.nodes[n][cost] for n in own]
    for call in calls:
        factor = call.repeat_symbol if call.repeat_symbol is not None else call.repeat
        parts.append(factor * tree.nodes[call.paths[0]][cost])
    return _sum(parts)


def _owner_frame(frames: tuple[Frame, ...], file: str | None, span: tuple[int, int] | None, depth: int):
    """Index of the frame of the analyzed module's forward within a node's frame chain."""
    if file and span:
        for i, f in enumerate(frames):
            if f.file == file and f.function == "forward" and span[0] <= f.line <= span[1]:
                return i
    forwards = [i for i, f in enumerate(frames) if f.function == "forward"]
    return forwards[depth] if depth < len(forwards) else None


def _class_source(cls_name: str) -> tuple[str | None, tuple[int, int] | None]:
    """File and line span of an already-loaded class's ``forward``. Nothing is ever imported:
    a class name can come from a file's metadata (ONNX), which is data, never code."""
    import inspect
    import sys

    module_name, _, qual = cls_name.rpartition(".")
    obj = sys.modules.get(module_name)
    if obj is None:
        return None, None
    try:
        for part in qual.split("."):
            obj = getattr(obj, part)
        forward = inspect.unwrap(obj.forward)  # decorated forwards (transformers' wrappers)
        lines, start = inspect.getsourcelines(forward)
        return inspect.getsourcefile(forward), (start, start + len(lines) - 1)
    except Exception:  # noqa: BLE001 - classes we cannot import fall back to frame depth
        return None, None


def _entries(ir, items, depth, tree, function, file=None) -> list[LineEntry]:
    """Group (node id, frame index) pairs by the line of the frame at that index."""
    by_line: dict[int, list] = {}
    codes: dict[int, str] = {}
    for nid, frames, idx in items:
        frame = frames[idx]
        by_line.setdefault(frame.line, []).append((nid, frames, idx))
        codes[frame.line] = frame.code
    entries = []
    for line in sorted(by_line):
        group = by_line[line]
        ids = [nid for nid, _, _ in group]
        if all(ir.graph.nodes[n]["kind"] in SKIP_KINDS for n in ids):
            continue
        children: list[str] = []
        own, helpers = [], []
        for nid, frames, idx in group:
            attrs = ir.graph.nodes[nid]
            scopes = [s.path for s in attrs["scope"] if s.path]
            nxt = idx + 1
            via_helper = nxt < len(frames) and frames[nxt].function != "forward" and (
                file is None or frames[nxt].file == file
            )
            if len(scopes) > depth and not via_helper:
                child = scopes[depth]
                if child not in children:
                    children.append(child)
                continue
            own.append(nid)
            if via_helper:
                helpers.append((nid, frames, nxt))
        g = ir.graph.nodes
        calls = _calls(ir, children, tree)

        entry = LineEntry(
            line=line,
            code=codes[line],
            kernel_type="composite" if children else "basic",
            operation=", ".join(dict.fromkeys(g[n]["kind"] for n in ids if g[n]["kind"] not in SKIP_KINDS)),
            flops=_line_total(ir, tree, own, calls, "flops"),
            bytes_read=_line_total(ir, tree, own, calls, "bytes_read"),
            bytes_written=_line_total(ir, tree, own, calls, "bytes_written"),
            calls=calls,
            own_flops=_sum(g[n]["flops"] for n in own),
            own_read=_sum(g[n]["bytes_read"] for n in own),
            own_write=_sum(g[n]["bytes_written"] for n in own),
            nodes=ids,
            function=function,
        )
        if helpers:
            entry.sub_entries = _entries(ir, helpers, depth, tree, helpers[0][1][helpers[0][2]].function, file)
        entries.append(entry)
    return entries


def line_table(ir: IRGraph, path: str = "") -> LineTable:
    """The line table of the module at ``path`` (the modules pass must have run)."""
    tree = ir.meta.modules
    if path not in tree:
        raise ValueError(f"no module at path {path!r} (modules: {', '.join(sorted(p or '<root>' for p in tree)[:12])})")
    cls_name = tree.nodes[path]["cls"]
    # ONNX: source lines come only from the file itself (its frames), never from a class it names
    file, span = _class_source(cls_name) if ir.frontend != "onnx" else (None, None)
    depth = len(nx.shortest_path(tree, "", path)) - 1  # levels below the root ("h.0" is one)
    items = []
    for nid in tree.nodes[path]["nodes"]:
        src = ir.graph.nodes[nid]["source"]
        if src is None or not src.frames:
            continue
        idx = _owner_frame(src.frames, file, span, depth)
        if idx is not None:
            items.append((nid, src.frames, idx))
    return LineTable(cls_name, path, file, _entries(ir, items, depth, tree, "forward", file))


def build_lines(ir: IRGraph, path: str = "") -> IRGraph:
    """Write the line table of the module at ``path`` into ``ir.meta.lines``."""
    ir.meta.lines = line_table(ir, path)
    return ir
