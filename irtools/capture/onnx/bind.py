"""Sizes bound at capture (``--dim`` binding every named input dim): the concrete path of a symbolic file.

Shape inference runs symbolically, so every decision that depends on what a size *could* be
-- which nodes are shape computation, which reshapes are views -- is the symbolic one; then
the bound sizes are written into every spec, and the cost passes work on numbers (plain-int
arithmetic, ``irtools.ir.numeric``). A node's cost is therefore exactly its symbolic formula
evaluated at the bound sizes (``tests/test_concrete_path.py``). Binding only some dims would
leave a report half formulas, half numbers: then nothing is bound.
"""

from __future__ import annotations

import dataclasses
import re

import sympy

from irtools.capture.onnx import proto as onnx  # the message classes without onnx's import cost
from irtools.ir import IRGraph, TensorSpec
from irtools.ir.symbols import canonical_name, sym

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def input_dim_names(graph: onnx.GraphProto, aliases: dict[str, str] | None = None) -> set[str]:
    """The standard names of the named dims of the graph's inputs (initializers left out)."""
    inits = {t.name for t in graph.initializer}
    names = set()
    for v in graph.input:
        if v.name in inits or not v.type.HasField("tensor_type"):
            continue
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and _IDENT.match(d.dim_param):
                names.add(canonical_name(d.dim_param, aliases))
    return names


def covering_sizes(graph: onnx.GraphProto, bind: dict[str, float], aliases: dict[str, str] | None = None) -> dict[str, int]:
    """The sizes of ``bind`` for the symbols of the graph inputs' named dims when they cover
    every one as positive integers (``kv_len`` is ``cache_len + seq_len``), else {}."""
    sizes = {}
    for key, v in bind.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer() and v >= 1:
            sizes[canonical_name(key, aliases)] = int(v)
    if "kv_len" in sizes and "seq_len" in sizes and "cache_len" not in sizes:
        if sizes["kv_len"] - sizes["seq_len"] < 1:
            return {}
        sizes["cache_len"] = sizes["kv_len"] - sizes["seq_len"]
    needed = input_dim_names(graph, aliases)
    if "kv_len" in needed:  # stored as cache_len + seq_len (frontend.py)
        needed = (needed - {"kv_len"}) | {"cache_len", "seq_len"}
    if not needed or not needed <= set(sizes):
        return {}
    return {k: sizes[k] for k in sorted(needed)}


def bind_sizes(ir: IRGraph, sizes: dict[str, int]) -> IRGraph:
    """Write ``sizes`` into every spec, value and size argument of ``ir`` (and its sub-graphs)."""
    subs = {sym(k): sympy.Integer(v) for k, v in sizes.items()}
    done: dict[int, tuple] = {}

    def spec(s: TensorSpec | None) -> TensorSpec | None:
        if s is None:
            return None
        seen = done.get(id(s))
        if seen is not None:
            return seen[1]
        shape = tuple(d.xreplace(subs) if isinstance(d, sympy.Basic) else d for d in s.shape)
        out = s if all(a is b for a, b in zip(shape, s.shape)) else dataclasses.replace(s, shape=shape)
        done[id(s)] = (s, out)  # holding ``s`` keeps its id from being reused
        return out

    def walk(g: IRGraph) -> None:
        for _, attrs in g.nodes():
            attrs["inputs"] = [spec(s) for s in attrs["inputs"]]
            attrs["outputs"] = [spec(s) for s in attrs["outputs"]]
            args = attrs["args"]
            for key, value in list(args.items()):
                if isinstance(value, sympy.Basic):
                    args[key] = value.xreplace(subs)
            for sub in (args.get("subgraphs") or {}).values():
                walk(sub)
        g.inputs = {k: spec(s) for k, s in g.inputs.items()}
        g.values = {k: v if v.spec is None else dataclasses.replace(v, spec=spec(v.spec)) for k, v in g.values.items()}
        if g.meta.outputs:
            g.meta.outputs = {k: spec(s) for k, s in g.meta.outputs.items()}
        g.dims.update(sizes)

    walk(ir)
    return ir


__all__ = ["bind_sizes", "covering_sizes", "input_dim_names"]
