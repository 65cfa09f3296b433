"""Cost rules of ATen ops (torch.export training IR and core ATen after decompositions).

Conventions (docs/conventions.md): matmul 2·M·N·K (+M·N for a fused bias); elementwise 1
flop per output element except the ops in ``ELEMENTWISE_FLOPS``; softmax 3, layer_norm 5,
rms_norm 3 per element; views cost nothing; copies read and write; dropout in eval is free.
"""

from __future__ import annotations

import sympy

from passes.costs.registry import (
    ALIAS,
    FREE,
    ZERO,
    Cost,
    OpCall,
    RuleSet,
    alias,
    aten_ops,
    copy,
    elementwise,
    free,
    per_input_element,
    produce,
    read_all,
    write_all,
)

# Flops per output element of elementwise ops that are not a single arithmetic operation.
# Counts follow the usual expansion into basic operations (as in onnx-tool / LLM-Viewer
# tables): sigmoid = neg, exp, add, div; silu = sigmoid + mul; gelu (erf form) =
# x/sqrt2, erf, +1, ·x, ·0.5; gelu (tanh form) = x³ (2), ·c, +x, ·k, tanh, +1, ·x, ·0.5.
ELEMENTWISE_FLOPS = {
    "sigmoid": 4,
    "silu": 5,
    "gelu": 5,
    "gelu_tanh": 8,
    "erf": 1,
    "pow": 1,
    "tanh": 1,
    "exp": 1,
    "log": 1,
    "rsqrt": 1,
    "sqrt": 1,
}


RULES = RuleSet()
cost_rule = RULES.rule
register_handle = RULES.handle


_ops = aten_ops


# ---- free / alias / copy / factory -----------------------------------------------------

register_handle(
    _ops(
        "sym_size", "sym_numel", "sym_stride", "sym_storage_offset", "_assert_tensor_metadata",
        "_assert_scalar", "_assert_async", "sym_constrain_range", "sym_constrain_range_for_size",
        "_local_scalar_dense", "item", "lift_fresh", "scalar_tensor_meta",
    )
    + ("sym.add", "sym.sub", "sym.mul", "sym.floordiv", "sym.truediv", "sym.mod", "sym.pow",
       "sym.eq", "sym.ne", "sym.lt", "sym.le", "sym.gt", "sym.ge", "sym.neg", "sym.float",
       "sym.int", "sym.sym_float", "sym.sym_int", "sym.sym_max", "sym.sym_min", "sym.sym_not",
       "sym.sym_sqrt"),
    "free",
    free,
)
register_handle(
    _ops(
        "view", "_unsafe_view", "reshape_alias", "permute", "transpose", "t", "expand",
        "expand_as", "slice", "select", "squeeze", "unsqueeze", "split", "split_with_sizes", "detach_",
        "chunk", "unbind", "alias", "as_strided", "detach", "unflatten", "flatten", "narrow",
        "diagonal", "view_as", "movedim", "unfold", "_reshape_alias", "view_as_real",
        "view_as_complex", "tensor_split", "swapaxes", "resolve_conj", "resolve_neg", "numpy_T",
        "mT", "mH", "adjoint", "matrix_H",
    )
    + ("getitem",),
    "view",
    alias,
)
register_handle(
    _ops("cat", "stack", "copy", "copy_", "clone", "_to_copy", "lift_fresh_copy", "repeat",
         "tile", "roll", "flip", "constant_pad_nd", "pad", "index_put", "index_put_",
         "slice_scatter", "select_scatter", "masked_scatter", "fill", "fill_", "zero_",
         "tril", "triu", "_unsafe_index_put"),
    "copy",
    copy,
)
register_handle(
    _ops("full", "full_like", "zeros", "zeros_like", "ones", "ones_like", "empty", "empty_like",
         "empty_strided", "new_zeros", "new_ones", "new_full", "new_empty", "arange", "scalar_tensor",
         "rand", "randn", "rand_like", "randn_like", "linspace"),
    "factory",
    produce,
)


@cost_rule("aten.contiguous", "aten.reshape", kind="copy")
def copy_if_strided(call: OpCall) -> Cost:
    """Eager semantics: a contiguous input is returned as a view; a strided one is copied."""
    src = call.tensors_in[0]
    return ALIAS if src.contiguous else Cost(ZERO, src.nbytes, call.out.nbytes)


@cost_rule("aten.to", "aten.type_as", "aten.type", kind="copy")
def convert(call: OpCall) -> Cost:
    """A dtype conversion copies; ``.to`` to the dtype a tensor already has returns it."""
    src = call.tensors_in[0]
    if src.dtype == call.out.dtype:
        return ALIAS
    return Cost(ZERO, src.nbytes, call.out.nbytes)


@cost_rule(
    "aten.dropout", "aten.native_dropout", "aten.feature_dropout", "aten.alpha_dropout", "aten.dropout_",
    "aten.feature_dropout_", "aten.alpha_dropout_", "aten.feature_alpha_dropout", "aten.feature_alpha_dropout_",
    kind="dropout",
)
def dropout(call: OpCall) -> Cost:
    """Identity in eval; in training a mask multiply and a scale per element."""
    if not call.arg("train", call.arg("training", False)):
        return ALIAS
    return Cost(2 * call.out.numel, read_all(call), write_all(call))


# ---- matmul class ----------------------------------------------------------------------


def _broadcast(a: tuple, b: tuple) -> tuple:
    n = max(len(a), len(b))
    a = (sympy.Integer(1),) * (n - len(a)) + tuple(a)
    b = (sympy.Integer(1),) * (n - len(b)) + tuple(b)
    return tuple(y if x == 1 else x for x, y in zip(a, b))


def matmul_flops(a_shape: tuple, b_shape: tuple) -> sympy.Expr:
    """2·M·N·K per batch for ``torch.matmul`` semantics (1-D, 2-D and broadcast batches)."""
    a, b = tuple(a_shape), tuple(b_shape)
    if len(a) == 1:
        a = (sympy.Integer(1),) + a
    if len(b) == 1:
        b = b + (sympy.Integer(1),)
    m, k = a[-2], a[-1]
    n = b[-1]
    batch = _broadcast(a[:-2], b[:-2])
    return 2 * sympy.Mul(*batch) * m * n * k


def _matmul_cost(call: OpCall, a, b, extra_flops=ZERO) -> Cost:
    mm = matmul_flops(a.shape, b.shape)
    return Cost(mm + extra_flops, read_all(call), write_all(call), matmul_flops=mm)


@cost_rule("aten.mm", "aten.bmm", "aten.matmul", "aten.dot", "aten.mv", "aten.vdot", kind="matmul")
def matmul(call: OpCall) -> Cost:
    a, b = call.tensors_in[:2]
    return _matmul_cost(call, a, b)


@cost_rule("aten.addmm", "aten.baddbmm", "aten.addbmm", "aten.addmv", kind="matmul")
def addmm(call: OpCall) -> Cost:
    """beta·C + A·B: the matmul plus one add per output element (the fused bias)."""
    _, a, b = call.tensors_in[:3]
    return _matmul_cost(call, a, b, extra_flops=call.out.numel)


@cost_rule("aten.linear", kind="matmul")
def linear(call: OpCall) -> Cost:
    x, w = call.tensors_in[:2]
    has_bias = len(call.tensors_in) > 2
    mm = matmul_flops(x.shape, (w.shape[-1], w.shape[0]) if len(w.shape) == 2 else w.shape)
    bias = call.out.numel if has_bias else ZERO
    return Cost(mm + bias, read_all(call), write_all(call), matmul_flops=mm)


def sdpa_flops(q: tuple, k: tuple, v: tuple) -> tuple[sympy.Expr, sympy.Expr]:
    """(matmul flops, total flops) of attention: QKᵀ and ·V, plus scale and softmax (4/score).

    Causal masking is counted dense (as FlashAttention's reported FLOPs and
    FlopCounterMode do); a mask add costs one more per score, added by the caller."""
    *batch, sq, d = q
    skv, dv = k[-2], v[-1]
    b = sympy.Mul(*batch)
    mm = 2 * b * sq * skv * d + 2 * b * sq * skv * dv
    return mm, mm + 4 * b * sq * skv


@cost_rule(
    "aten.scaled_dot_product_attention",
    "aten._scaled_dot_product_flash_attention",
    "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten._scaled_dot_product_efficient_attention",
    "aten._scaled_dot_product_cudnn_attention",
    "aten._scaled_dot_product_attention_math",
    "aten._flash_attention_forward",
    "aten._efficient_attention_forward",
    kind="attention",
)
def sdpa(call: OpCall) -> Cost:
    """Shapes (batch, heads, seq, dim); the raw flash/efficient kernels take (batch, seq, heads, dim)."""
    q, k, v = (t.shape for t in call.tensors_in[:3])
    if call.op.startswith(("aten._flash_attention_forward", "aten._efficient_attention_forward")) and len(q) == 4:
        q, k, v = ((s[0], s[2], s[1], s[3]) for s in (q, k, v))
    mm, total = sdpa_flops(q, k, v)
    if len(call.tensors_in) > 3:  # an attention mask / bias is added to every score
        total += sympy.Mul(*q[:-1]) * k[-2]
    return Cost(total, read_all(call), call.out.nbytes, matmul_flops=mm)


# Convolutions (plain, transposed, backward): ``aten_conv``.


# ---- normalization, softmax, reductions ------------------------------------------------

register_handle(_ops("softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax"), "softmax", per_input_element(3))
register_handle(_ops("layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "instance_norm"), "norm", per_input_element(5))
register_handle(_ops("rms_norm", "_fused_rms_norm"), "norm", per_input_element(3))
register_handle(
    _ops("batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm", "cudnn_batch_norm"),
    "norm",
    per_input_element(2),  # eval batch norm folds to a scale and a shift per element
)
register_handle(
    _ops("sum", "mean", "amax", "amin", "max", "min", "prod", "any", "all", "argmax", "argmin",
         "logsumexp", "norm", "linalg_vector_norm", "cumsum", "cumprod", "count_nonzero"),
    "reduction",
    per_input_element(1),
)
register_handle(_ops("var", "std", "var_mean", "std_mean"), "reduction", per_input_element(3))
register_handle(_ops("topk", "sort", "argsort"), "reduction", per_input_element(1))


# ---- gather / embedding ----------------------------------------------------------------


@cost_rule("aten.embedding", "aten.index_select", "aten.gather", "aten.index", "aten.take_along_dim", "aten._unsafe_index", kind="gather")
def gather(call: OpCall) -> Cost:
    """No flops; read the gathered rows (out elements at the table's precision) and indices."""
    table, *indices = call.tensors_in
    if call.op.startswith("aten.embedding"):
        table, indices = call.tensors_in[0], call.tensors_in[1:]
    gathered = call.out.numel * table.itemsize
    return Cost(ZERO, gathered + sympy.Add(*(i.nbytes for i in indices)), write_all(call))


@cost_rule("aten.scatter", "aten.scatter_add", "aten.index_add", "aten.index_copy", "aten.scatter_reduce", kind="scatter")
def scatter(call: OpCall) -> Cost:
    return Cost(call.tensors_in[-1].numel, read_all(call), write_all(call))


# ---- elementwise ----------------------------------------------------------------------

UNARY = (
    "neg", "abs", "relu", "relu_", "sign", "reciprocal", "floor", "ceil", "round", "trunc",
    "logical_not", "bitwise_not", "isnan", "isinf", "square", "sin", "cos", "hardtanh",
    "leaky_relu", "elu", "clamp", "clamp_min", "clamp_max", "clip", "nan_to_num", "log1p",
    "expm1", "exp2", "log2", "softplus", "hardswish", "hardsigmoid", "mish",
)
BINARY = (
    "add", "sub", "rsub", "mul", "div", "true_divide", "floor_divide", "remainder", "fmod",
    "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or",
    "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "masked_fill", "where",
    "lerp", "addcmul", "addcdiv", "atan2", "copysign", "bitwise_left_shift",
    "bitwise_right_shift", "add_", "mul_", "div_", "sub_", "masked_fill_", "hypot",
    "__and__", "__or__", "__xor__", "__invert__", "__lshift__", "__rshift__", "diff",
)
register_handle(_ops(*UNARY, *BINARY), "elementwise", elementwise(1))
for _name, _flops in ELEMENTWISE_FLOPS.items():
    if _name not in ("gelu", "gelu_tanh"):
        register_handle(_ops(_name, _name + "_"), "elementwise", elementwise(_flops))


@cost_rule("aten.gelu", "aten.gelu_", kind="elementwise")
def gelu(call: OpCall) -> Cost:
    """The tanh approximation costs more than the erf form (see ELEMENTWISE_FLOPS)."""
    key = "gelu_tanh" if call.arg("approximate", "none") == "tanh" else "gelu"
    return elementwise(ELEMENTWISE_FLOPS[key])(call)


__all__ = ["ALIAS", "FREE", "RULES", "matmul_flops", "sdpa_flops"]
