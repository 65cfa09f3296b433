"""Which dim of each tensor a sharding splits, carried through one op at a time.

:func:`propagate` takes an op node and the split dim of each of its inputs that is split
(``{input position: dim}``) and returns the split dim of each output, reading only the op's
name, its non-tensor arguments (``dim``, ``dims``, ``normalized_shape`` ...) and its tensor
shapes. An op that cannot run on a slice of that dim alone (a reduction or a norm over it, an
attention split elsewhere than its heads, an unknown op) raises :class:`Conflict`. An input
that is not split but is full-sized along the split dim is *adopted* (read as a slice) when it
is model state or derived from it only (a KV cache, a per-head bias, a position embedding);
any other such input is a conflict (docs/parallel.md, "Finding the splits").
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from irtools.ir import IRGraph, OpNode
from irtools.ir.kinds import op_packet

ONE = sympy.Integer(1)


class Conflict(Exception):
    """The op needs the whole of a split dim (the message says why)."""


@dataclass
class Step:
    """The result of :func:`propagate`: split dim per output, and outside inputs read as slices."""

    outputs: dict[int, int]
    adopted: dict[int, int]

    def split_outputs(self, node: OpNode) -> list[tuple[int, str, int]]:
        """(output index, value id, split dim) of each of ``node``'s outputs this step splits."""
        vals = node.output_values
        return [(i, vals[i], d) for i, d in self.outputs.items() if i < len(vals) and vals[i] is not None and d is not None]


def equal(a, b) -> bool:
    if a == b:
        return True
    try:
        return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0
    except (TypeError, ValueError):
        return False


def _name(op: str) -> str:
    return op_packet(op).rsplit(".", 1)[-1]


def _norm(dim, rank: int) -> int:
    return int(dim) + rank if int(dim) < 0 else int(dim)


def _dims_arg(args: dict, key: str = "dim") -> list[int] | None:
    value = args.get(key)
    if value is None:
        return None
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]


def _prod(shape) -> sympy.Expr:
    return sympy.Mul(*shape) if shape else ONE


POINTWISE_COPIES = {"to", "_to_copy", "clone", "contiguous", "copy", "type_as", "copy_", "detach", "alias",
                    "lift_fresh_copy", "tril", "triu", "masked_fill", "where", "fill", "zero_", "dropout",
                    "native_dropout", "resolve_conj", "resolve_neg", "positive", "empty_like", "zeros_like",
                    "ones_like", "full_like", "rand_like", "randn_like", "bernoulli", "bernoulli_"}
RESHAPES = {"view", "_unsafe_view", "reshape", "_reshape_alias", "view_copy", "flatten", "unflatten", "reshape_as",
            "view_as", "_reshape_copy", "reshape_alias"}
SLICES = {"slice", "narrow", "split", "split_with_sizes", "chunk", "tensor_split", "unsafe_split",
          "unsafe_split_with_sizes", "unsafe_chunk", "slice_copy", "split_copy", "split_with_sizes_copy"}
REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "var", "std", "logsumexp", "prod", "argmax", "argmin",
              "var_mean", "std_mean", "norm", "linalg_vector_norm", "all", "any", "cumsum", "cumprod"}
SOFTMAXES = {"softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax"}
NORMS = {"layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm"}
BATCHED_MATMULS = {"bmm", "matmul", "baddbmm"}


class Propagator:
    """Split-dim propagation over one IR; ``stateful`` tells which values are model state."""

    def __init__(self, ir: IRGraph, stateful: set[str], unit=None):
        self.ir = ir
        self.stateful = stateful
        self.unit = unit  # the symbol a sequence split divides (passes.parallel.sp), else None
        #: split value -> size of the split factor when its dim merges it with others (the heads of
        #: ``(batch·heads, seq, head_dim)`` after an eager attention's reshape): reshapes back find it
        self.factors: dict[str, object] = {}
        self._factor = None
        self._new_factor = None

    def _outside(self, node: OpNode, pos: int, dim: int, why: str) -> int | None:
        """An unsplit input at ``pos`` aligned to split dim ``dim`` (or None: not aligned):
        None if it broadcasts there, ``dim`` if adopted as a slice; else Conflict."""
        spec = node.inputs[pos]
        if spec is None or dim is None or dim < 0 or dim >= len(spec.shape) or equal(spec.shape[dim], 1):
            return None
        value = node.input_values[pos]
        if value is not None and value in self.stateful:
            return dim
        raise Conflict(f"{why}: input {pos} ({value}) is an activation of the whole size along the split dim")

    def propagate(self, node: OpNode, split: dict[int, int]) -> Step:
        pos, _d = next(iter(split.items()))
        self._factor = self.factors.get(node.input_values[pos]) if pos < len(node.input_values) else None
        self._new_factor = None
        step = self._rules(node, split)
        self.carry(node, split, step, _name(node.op) in RESHAPES)
        return step

    def carry(self, node: OpNode, split: dict[int, int], step: Step, reshaped: bool = False) -> None:
        """Record the split factor of ``step``'s outputs (see ``factors``)."""
        pos, d = next(iter(split.items()))
        f = self.factors.get(node.input_values[pos]) if pos < len(node.input_values) else None
        for i, v, od in step.split_outputs(node):
            if reshaped:
                nf = self._new_factor
            else:
                out, src = node.outputs[i], node.inputs[pos]
                same = out is not None and src is not None and od < len(out.shape) and equal(out.shape[od], src.shape[d])
                nf = f if same else None
            if nf is None:
                self.factors.pop(v, None)
            else:
                self.factors[v] = nf

    def _rules(self, node: OpNode, split: dict[int, int]) -> Step:
        name = _name(node.op)
        kind = node.kind
        ins = node.inputs
        outs = node.outputs
        if not outs or outs[0] is None:
            return Step({}, {})
        pos, d = next(iter(split.items()))
        src = ins[pos]
        if name in RESHAPES:
            return Step(self._all(outs, self._reshape(src.shape, outs[0].shape, d)), {})
        if name in ("transpose", "swapaxes", "swapdims", "transpose_copy", "t", "t_copy"):
            a, b = (0, 1) if name.startswith("t") and not name.startswith("tr") else (
                _norm(node.args.get("dim0", 0), len(src.shape)), _norm(node.args.get("dim1", 1), len(src.shape)))
            return Step({0: b if d == a else a if d == b else d}, {})
        if name in ("permute", "permute_copy", "movedim"):
            dims = [_norm(x, len(src.shape)) for x in node.args.get("dims", [])]
            if name == "movedim" or len(dims) != len(src.shape):
                raise Conflict(f"{name}: permutation not understood")
            return Step({0: dims.index(d)}, {})
        if name in ("unsqueeze", "unsqueeze_copy"):
            k = _norm(node.args.get("dim", 0), len(outs[0].shape))
            return Step({0: d + 1 if k <= d else d}, {})
        if name in ("squeeze", "squeeze_copy"):
            return Step({0: self._squeeze(src.shape, outs[0].shape, d)}, {})
        if name in ("expand", "expand_as", "broadcast_to", "expand_copy"):
            out_d = d + len(outs[0].shape) - len(src.shape)
            if not equal(outs[0].shape[out_d], src.shape[d]):
                raise Conflict("expand along the split dim")
            return Step({0: out_d}, {})
        if name in SLICES or name == "unbind" or name == "select" or node.op == "getitem":
            return Step(self._slice(node, name, src, d), {})
        if name in ("cat", "concat", "concatenate", "stack"):
            return self._cat(node, name, split)
        if kind == "attention":
            return self._attention(node, split)
        if name in SOFTMAXES:
            dim = _norm(node.args.get("dim", -1), len(src.shape))
            if dim == d:
                raise Conflict(f"{name} over the split dim")
            return Step({0: d}, {})
        if name in REDUCTIONS and kind in ("reduction", "softmax"):
            return Step(self._all(outs, self._reduce(node, src, d)), {})
        if name in NORMS or kind == "norm":
            return self._norm(node, name, split)
        if name in BATCHED_MATMULS and kind == "matmul":
            return self._bmm(node, split)
        if kind in ("elementwise", "dropout") or name in POINTWISE_COPIES:
            return self._pointwise(node, split)
        if kind == "scatter" and pos != 0 and ins and ins[0] is not None:
            return self._scatter(node, split)
        raise Conflict(f"{node.op} ({kind}) is not known to run on a slice")

    # ---- families -------------------------------------------------------------------------

    @staticmethod
    def _all(outs, d: int) -> dict[int, int]:
        return {i: d for i, o in enumerate(outs) if o is not None}

    def _reshape(self, src, dst, d: int) -> int:
        """The output dim holding the outermost factor of the split dim: the one whose trailing
        block of elements first covers the split dim's (its ``unit`` symbol decides when the
        split dim was merged with others, e.g. tokens ``batch_size*seq_len`` split along ``seq_len``)."""
        if self.unit is not None and getattr(self.unit, "free_symbols", None):
            having = [j for j, s in enumerate(dst) if self.unit.free_symbols <= sympy.sympify(s).free_symbols]
            if len(having) == 1:
                return having[0]
        size = self._factor if self._factor is not None else src[d]
        span = _prod(src[d + 1:]) * size
        for j in range(len(dst) - 1, -1, -1):
            if _divides(_prod(dst[j:]), span) and not _divides(_prod(dst[j + 1:]), span):
                whole = _divides(span, _prod(dst[j:]))  # dim j lies within the split factor's range
                self._new_factor = None if whole or equal(dst[j], size) else size
                return j
        raise Conflict("reshape moves the split dim")

    @staticmethod
    def _squeeze(src, dst, d: int) -> int:
        kept = [i for i, s in enumerate(src) if not equal(s, 1)]
        if len(dst) == len(kept) and d in kept:
            return kept.index(d)
        if len(dst) == len(src):
            return d
        raise Conflict("squeeze not understood")

    def _slice(self, node: OpNode, name: str, src, d: int) -> dict[int, int]:
        rank = len(src.shape)
        if node.op == "getitem":
            return self._all(node.outputs, d)
        dim = _norm(node.args.get("dim", 0), rank)
        if name in ("select", "unbind"):
            if dim == d:
                raise Conflict(f"{name} along the split dim")
            return self._all(node.outputs, d - 1 if dim < d else d)
        if dim == d and name in ("slice", "narrow", "slice_copy"):
            out = node.outputs[0]
            if not equal(out.shape[d], src.shape[d]):
                raise Conflict("slice along the split dim")
        # splitting the split dim into equal parts: each rank keeps its slice of every part
        # (Megatron's interleaved layout of a fused QKV projection)
        return self._all(node.outputs, d)

    def _cat(self, node: OpNode, name: str, split: dict[int, int]) -> Step:
        out = node.outputs[0]
        rank = len(out.shape)
        dim = _norm(node.args.get("dim", 0), rank)
        out_d = None
        for d in split.values():
            od = d + (1 if name == "stack" and dim <= d else 0)
            if out_d is not None and od != out_d:
                raise Conflict(f"{name} of tensors split along different dims")
            out_d = od
        if name != "stack" and dim == out_d:
            raise Conflict(f"{name} along the split dim")
        adopted = {}
        for pos, spec in enumerate(node.inputs):
            if spec is None or pos in split:
                continue
            d = out_d - (1 if name == "stack" and dim <= out_d else 0)
            if self._outside(node, pos, d, name) is not None:
                adopted[pos] = d
        return Step({0: out_d}, adopted)

    def _attention(self, node: OpNode, split: dict[int, int]) -> Step:
        q = node.inputs[0]
        heads = len(q.shape) - 3
        for pos, d in split.items():
            if pos > 2 or d != len(node.inputs[pos].shape) - 3:
                raise Conflict("attention split elsewhere than its heads")
        adopted = {}
        for pos in range(len(node.inputs)):
            spec = node.inputs[pos]
            if spec is None or pos in split:
                continue
            d = len(spec.shape) - 3 if pos <= 2 else heads - (len(q.shape) - len(spec.shape))
            if self._outside(node, pos, d, "attention") is not None:
                adopted[pos] = d
        return Step(self._all(node.outputs, heads), adopted)

    def _reduce(self, node: OpNode, src, d: int) -> int:
        rank = len(src.shape)
        dims = _dims_arg(node.args)
        dims = list(range(rank)) if not dims else [_norm(x, rank) for x in dims]
        if d in dims:
            raise Conflict(f"{_name(node.op)} over the split dim")
        keep = bool(node.args.get("keepdim", False)) or _name(node.op) in ("cumsum", "cumprod")
        return d if keep else d - sum(1 for x in dims if x < d)

    def _norm(self, node: OpNode, name: str, split: dict[int, int]) -> Step:
        if 0 not in split:
            raise Conflict(f"{name}: its weight, not its input, is split")
        src = node.inputs[0]
        shape = node.args.get("normalized_shape")
        last = len(shape) if isinstance(shape, list | tuple) else 1
        d = split[0]
        if d >= len(src.shape) - last:
            raise Conflict(f"{name} over the split dim")
        return Step(self._all(node.outputs, d), {})

    def _bmm(self, node: OpNode, split: dict[int, int]) -> Step:
        a, b = node.inputs[0], node.inputs[1]
        out = node.outputs[0]
        out_d = None
        for pos, d in split.items():
            spec = node.inputs[pos]
            if pos > 1 or d >= len(spec.shape) - 2:
                raise Conflict("matmul split along a matrix dim")
            od = d + len(out.shape) - len(spec.shape)
            if out_d is not None and od != out_d:
                raise Conflict("matmul operands split along different dims")
            out_d = od
        adopted = {}
        for pos, spec in ((0, a), (1, b)):
            if pos in split or spec is None:
                continue
            d = out_d - (len(out.shape) - len(spec.shape))
            if d < len(spec.shape) - 2 and self._outside(node, pos, d, "matmul") is not None:
                adopted[pos] = d
        return Step({0: out_d}, adopted)

    def _pointwise(self, node: OpNode, split: dict[int, int]) -> Step:
        out = node.outputs[0]
        rank = len(out.shape)
        out_d = None
        for pos, d in split.items():
            od = d + rank - len(node.inputs[pos].shape)
            if out_d is not None and od != out_d:
                raise Conflict(f"{_name(node.op)} of tensors split along different dims")
            out_d = od
        if not equal(out.shape[out_d], node.inputs[next(iter(split))].shape[next(iter(split.values()))]):
            raise Conflict(f"{_name(node.op)} broadcasts the split dim")
        adopted = {}
        for pos, spec in enumerate(node.inputs):
            if spec is None or pos in split:
                continue
            d = out_d - (rank - len(spec.shape))
            if self._outside(node, pos, d, _name(node.op)) is not None:
                adopted[pos] = d
        return Step(self._all(node.outputs, out_d), adopted)

    def _scatter(self, node: OpNode, split: dict[int, int]) -> Step:
        """In-place writes into model state (a static KV cache): the destination is adopted."""
        dest = node.inputs[0]
        pos, d = next(iter(split.items()))
        od = d + len(dest.shape) - len(node.inputs[pos].shape)
        adopted = {}
        if self._outside(node, 0, od, _name(node.op)) is not None:
            adopted[0] = od
        return Step(self._all(node.outputs, od), adopted)


def _divides(a, b) -> bool:
    """``b`` divides ``a`` (as polynomials in positive integer dims)."""
    try:
        q = sympy.cancel(sympy.sympify(a) / sympy.sympify(b))
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    numer, denom = q.as_numer_denom()
    return denom == 1 and (numer.is_integer is True or bool(numer.free_symbols))


def stateful_values(ir: IRGraph) -> set[str]:
    """Values computed from model state alone (weights, buffers, constants, the KV cache, and
    ops with no tensor input such as ``arange``): no activation input of the graph reaches them."""
    fed: set[str] = {v for v, val in ir.values.items() if val.producer is None and val.spec is not None
                     and val.spec.role not in ("weight", "constant", "kv_cache")}
    out: set[str] = {v for v, val in ir.values.items() if val.producer is None and v not in fed}
    for _n, a in ir.nodes():
        ins = [v for v in a.input_values if v is not None]
        tainted = any(v in fed for v in ins)
        for v in a.output_values:
            if v is None:
                continue
            (fed if tainted else out).add(v)
    return out


__all__ = ["Conflict", "Propagator", "Step", "equal", "stateful_values"]
