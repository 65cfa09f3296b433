"""Every core ATen op has a cost rule; matmul-class and convolution rules equal FlopCounterMode.

Differential checks run each op twice: eagerly on real tensors under FlopCounterMode, and
through ``irtools.analyze_module`` (torch.export capture, then the cost rules), comparing the
nodes' ``matmul_flops`` with FlopCounterMode's total. Backward ops are traced with ``make_fx``.
"""

from __future__ import annotations

import random

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count

from irtools import analyze_module
from irtools.ir import TensorSpec
from passes.annotate_costs import annotate_costs
from passes.compiler.fx_pass import ir_from_graph_module
from passes.costs import OpCall, aten_backward, aten_conv, aten_math, aten_misc, aten_pool, aten_rnn, einsum, lookup
from passes.costs.coverage import aten_coverage, core_aten_packets

CORE = core_aten_packets()


class Op(torch.nn.Module):
    """A module whose forward is one function of up to three tensors."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, a, b=None, c=None):
        return self.fn(*[t for t in (a, b, c) if t is not None])


def counted(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops()


def irtools_nodes(module, *args) -> list[dict]:
    """The annotated nodes of ``module`` captured on ``args`` (all of them costed)."""
    result = analyze_module(module, args)
    nodes = [attrs for _, attrs in result.ir.nodes()]
    assert [a["op"] for a in nodes if a.get("unsupported")] == []
    return nodes


def irtools_matmul(module, *args) -> sympy.Expr:
    return sum(a["matmul_flops"] for a in irtools_nodes(module, *args))


# ---- coverage -------------------------------------------------------------------------------


def test_core_opset_is_enumerated_and_covered():
    core, missing = aten_coverage()
    assert len(core) >= 160 and {"aten.convolution_backward", "aten.addmm", "aten.asinh"} <= set(core)
    assert missing == []


@pytest.mark.parametrize("name", CORE)
def test_core_packet_has_rule(name):
    assert lookup(f"aten.{name}") is not None


@pytest.mark.parametrize("module", [aten_backward, aten_conv, aten_math, aten_misc, aten_pool, aten_rnn, einsum])
def test_rule_names_are_real_aten_packets(module):
    for op in module.RULES.ops():
        assert op.startswith("aten.") and isinstance(getattr(torch.ops.aten, op[5:]), torch._ops.OpOverloadPacket), op


# ---- matmul class ---------------------------------------------------------------------------

MATMULS = {
    "mm": (torch.mm, lambda m, n, k, b: [(m, k), (k, n)]),
    "bmm": (torch.bmm, lambda m, n, k, b: [(b, m, k), (b, k, n)]),
    "addmm": (lambda a, x, y: torch.addmm(a, x, y), lambda m, n, k, b: [(n,), (m, k), (k, n)]),
    "baddbmm": (lambda a, x, y: torch.baddbmm(a, x, y), lambda m, n, k, b: [(b, m, n), (b, m, k), (b, k, n)]),
    "matmul_broadcast": (torch.matmul, lambda m, n, k, b: [(b, 1, m, k), (3, k, n)]),
    "matmul_3d_2d": (torch.matmul, lambda m, n, k, b: [(b, m, k), (k, n)]),
    "linear": (F.linear, lambda m, n, k, b: [(b, m, k), (n, k), (n,)]),
}


@pytest.mark.parametrize("name", sorted(MATMULS))
def test_matmul_class_equals_flop_counter(name):
    fn, shapes = MATMULS[name]
    rng = random.Random(name)
    for _ in range(3):
        args = [torch.randn(*s) for s in shapes(*(rng.randint(2, 9) for _ in range(4)))]
        assert irtools_matmul(Op(fn), *args) == counted(fn, *args) != 0


def _conv_case(rng: random.Random, dims: int, transposed: bool):
    groups = rng.choice([1, 2])
    c_in, c_out = groups * rng.randint(1, 3), groups * rng.randint(1, 3)
    stride, dilation = rng.randint(1, 3), rng.randint(1, 2)
    kernel, padding = rng.randint(1, 3), rng.randint(0, 1)
    if transposed:
        cls = getattr(torch.nn, f"ConvTranspose{dims}d")
        extra = {"output_padding": rng.randint(0, max(stride, dilation) - 1)}
    else:
        cls = getattr(torch.nn, f"Conv{dims}d")
        extra = {}
    layer = cls(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                bias=rng.random() < 0.5, **extra)
    size = (2, c_in) + tuple(rng.randint(dilation * (kernel - 1) + 1, 8) for _ in range(dims))
    return layer.eval(), torch.randn(*size)


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_convolution_equals_flop_counter(dims, transposed):
    rng = random.Random(10 * dims + transposed)
    for _ in range(3):
        layer, x = _conv_case(rng, dims, transposed)
        nodes = irtools_nodes(layer, x)
        (conv,) = [a for a in nodes if a["kind"] == "conv"]
        assert conv["matmul_flops"] == counted(layer, x) != 0
        bias = layer(x).numel() if layer.bias is not None else 0
        assert conv["flops"] == conv["matmul_flops"] + bias


def test_conv_transpose_2d_of_the_issue():
    layer = torch.nn.ConvTranspose2d(16, 8, 3, stride=2).eval()
    x = torch.randn(1, 16, 8, 8)
    (conv,) = [a for a in irtools_nodes(layer, x) if a["kind"] == "conv"]
    assert conv["op"].startswith("aten.conv_transpose2d")
    assert conv["matmul_flops"] == counted(layer, x) == 2 * 16 * 8 * 8 * 8 * 9  # one kernel per *input* point


# ---- convolution backward ------------------------------------------------------------------


def traced_nodes(fn, *args) -> list[dict]:
    """make_fx (fake tensors) of ``fn``, captured and costed: backward ops included."""
    graph = make_fx(fn, tracing_mode="fake")(*args)
    ir = annotate_costs(ir_from_graph_module(graph, dims={}))
    nodes = [attrs for _, attrs in ir.nodes()]
    assert [a["op"] for a in nodes if a.get("unsupported")] == []
    return nodes


def _grads(conv, wants):
    def fn(x, w, b):
        out = conv(x, w, b)
        inputs = [t for t, want in zip((x, w, b), wants) if want]
        return torch.autograd.grad(out, inputs, torch.ones_like(out))

    return fn


CONV_BACKWARD = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), (2, 4, 9, 7), (6, 4, 3, 3)),
    "conv2d_groups": (lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2), (2, 4, 6, 6), (6, 2, 3, 3)),
    "conv1d_dilated": (lambda x, w, b: F.conv1d(x, w, b, dilation=2), (3, 2, 11), (5, 2, 3)),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2), (2, 4, 5, 5), (4, 3, 3, 3)),
    "conv_transpose3d": (lambda x, w, b: F.conv_transpose3d(x, w, b, stride=2, groups=2), (1, 4, 3, 3, 3), (4, 1, 2, 2, 2)),
}


@pytest.mark.parametrize("wants", [(True, True, True), (True, False, False), (False, True, False)],
                         ids=["all", "input", "weight"])
@pytest.mark.parametrize("name", sorted(CONV_BACKWARD))
def test_convolution_backward_equals_flop_counter(name, wants):
    conv, x_shape, w_shape = CONV_BACKWARD[name]
    x, w = torch.randn(*x_shape, requires_grad=wants[0]), torch.randn(*w_shape, requires_grad=wants[1])
    out_channels = w_shape[1] * (2 if name == "conv_transpose3d" else 1) if "transpose" in name else w_shape[0]
    b = torch.randn(out_channels, requires_grad=wants[2])
    fn = _grads(conv, wants)
    nodes = traced_nodes(fn, x, w, b)
    (backward,) = [a for a in nodes if a["op"].startswith("aten.convolution_backward")]
    with FlopCounterMode(display=False) as counter:
        fn(x, w, b)
    expected = counter.get_flop_counts()["Global"][torch.ops.aten.convolution_backward]
    assert backward["matmul_flops"] == expected != 0
    assert sum(a["matmul_flops"] for a in nodes) == counter.get_total_flops()


# ---- einsum -------------------------------------------------------------------------------


class EinsumLinear(torch.nn.Module):
    """A Linear layer written as an einsum."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(d_out, d_in))

    def forward(self, x):
        return torch.einsum("bsi,oi->bso", x, self.weight)


def test_einsum_as_linear_of_the_issue():
    module, x = EinsumLinear(32, 64), torch.randn(1, 16, 32)
    expected = counted(module, x)
    assert expected == 65_536  # 2 · 16 tokens · 32 · 64, what FlopCounterMode counts for the bmm
    (node,) = [a for a in irtools_nodes(module, x) if a["op"].startswith("aten.einsum")]
    assert node["matmul_flops"] == node["flops"] == expected


def test_einsum_symbolic_dims():
    module = EinsumLinear(8, 12)
    result = analyze_module(module, (torch.randn(3, 5, 8),), dims={"x": {0: "batch_size", 1: "seq_len"}})
    (node,) = [a for _, a in result.ir.nodes() if a["op"].startswith("aten.einsum")]
    rng = random.Random(4)
    for _ in range(5):
        b, s = rng.randint(2, 6), rng.randint(2, 9)
        assert result.value(node["matmul_flops"], {"batch_size": b, "seq_len": s}) == counted(module, torch.randn(b, s, 8))


EINSUMS = [
    ("bij,bjk->bik", [(3, 4, 5), (3, 5, 6)]),  # batch dim
    ("bhqd,bhkd->bhqk", [(2, 3, 5, 4), (2, 3, 7, 4)]),  # attention scores
    ("ijk,jkl->il", [(3, 4, 5), (4, 5, 6)]),  # two contracted indices
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 6)]),  # ellipsis with broadcasting
    ("bn,anm,bm->ba", [(3, 4), (5, 4, 6), (3, 6)]),  # three operands (bilinear)
    ("bij,bj->bi", [(4, 1, 5), (4, 5)]),  # a size-1 kept dim
    ("ij,jk", [(3, 4), (4, 5)]),  # implicit output
    ("i,j->ij", [(3,), (4,)]),  # outer product: no matmul
]


@pytest.mark.parametrize("equation,shapes", EINSUMS, ids=[e for e, _ in EINSUMS])
def test_einsum_equals_flop_counter(equation, shapes):
    fn = lambda *ts: torch.einsum(equation, *ts)  # noqa: E731
    args = [torch.randn(*s) for s in shapes]
    (node,) = [a for a in irtools_nodes(Op(fn), *args) if a["op"].startswith("aten.einsum")]
    assert node["matmul_flops"] == counted(fn, *args)
    assert node["flops"] >= node["matmul_flops"]


def test_einsum_outer_product_is_elementwise():
    (node,) = [a for a in irtools_nodes(Op(lambda a, b: torch.einsum("i,j->ij", a, b)), torch.randn(3), torch.randn(4))
               if a["op"].startswith("aten.einsum")]
    assert node["matmul_flops"] == 0 and node["flops"] == 12


@pytest.mark.parametrize("path", [[0, 1, 0, 1], [1, 2, 0, 1], [0, 2, 0, 1]])
def test_einsum_contraction_path(path):
    fn = lambda a, b, c: torch.ops.aten.einsum("ij,jk,kl->il", [a, b, c], path=path)  # noqa: E731
    args = (torch.randn(3, 4), torch.randn(4, 5), torch.randn(5, 6))
    assert irtools_matmul(Op(fn), *args) == counted(fn, *args) != 0


def _random_einsum(rng: random.Random):
    labels = "abcdefg"
    n_ops = rng.choice([1, 2, 2, 3])
    sizes = {c: rng.choice([1, 2, 3, 4]) for c in labels}
    ell = [rng.choice([1, 2, 3]) for _ in range(rng.randint(0, 2))]
    terms, shapes = [], []
    for _ in range(n_ops):
        term = rng.sample(labels, rng.randint(0, 3))
        if term and rng.random() < 0.15:
            term.append(term[0])  # a repeated label: a diagonal
        shape = [sizes[c] for c in term]
        if ell and rng.random() < 0.5:
            k = rng.randint(0, len(ell))
            dims = [rng.choice([1, d]) for d in ell[len(ell) - k:]]
            term, shape = ["..."] + term, dims + shape
        terms.append(term)
        shapes.append(shape)
    used = list(dict.fromkeys(c for t in terms for c in t if c != "..."))
    lhs = ",".join("".join(t) for t in terms)
    if rng.random() < 0.3:
        return lhs, shapes
    out = rng.sample(used, rng.randint(0, len(used)))
    if any("..." in t for t in terms):
        out.insert(rng.randint(0, len(out)), "...")
    return f"{lhs}->{''.join(out)}", shapes


def test_einsum_plan_equals_flop_counter_on_random_equations():
    rng = random.Random(7)
    checked = 0
    for _ in range(400):
        equation, shapes = _random_einsum(rng)
        tensors = [torch.randn(s) for s in shapes]
        try:
            expected = counted(torch.einsum, equation, *tensors)
        except RuntimeError:  # an equation torch rejects (say, a label repeated in the output)
            continue
        plan = einsum.einsum_plan(equation, [tuple(sympy.Integer(d) for d in s) for s in shapes])
        assert plan.matmul_flops == expected, (equation, shapes, plan.steps)
        checked += 1
    assert checked > 300


# ---- other contractions -------------------------------------------------------------------


CONTRACTIONS = {
    "tensordot": (lambda a, b: torch.tensordot(a, b, dims=([1, 2], [0, 1])), [(3, 4, 5), (4, 5, 6)]),
    "tensordot_int": (lambda a, b: torch.tensordot(a, b, 1), [(3, 7), (7, 2, 4)]),
    "inner": (torch.inner, [(3, 2, 5), (4, 5)]),
}


@pytest.mark.parametrize("name", sorted(CONTRACTIONS))
def test_other_contractions_equal_flop_counter(name):
    fn, shapes = CONTRACTIONS[name]
    args = [torch.randn(*s) for s in shapes]
    assert irtools_matmul(Op(fn), *args) == counted(fn, *args) != 0


def test_affine_grid_is_the_bmm_it_runs():
    """affine_grid_generator's kernel runs base_grid (N, H·W, 3) @ thetaᵀ (N, 3, 2) inside one
    ATen op, which FlopCounterMode does not see; the rule counts that bmm."""
    fn = lambda t: F.affine_grid(t, [2, 3, 5, 6], align_corners=False)  # noqa: E731
    expected = counted(torch.bmm, torch.randn(2, 5 * 6, 3), torch.randn(2, 3, 2))
    assert irtools_matmul(Op(fn), torch.randn(2, 2, 3)) == expected == 2 * 2 * 30 * 3 * 2


def test_bilinear_is_its_einsum():
    """F.bilinear runs ``_trilinear`` (bmm inside one ATen op, unseen by FlopCounterMode); it
    costs what the same contraction written as an einsum costs."""
    args = (torch.randn(7, 3), torch.randn(7, 4), torch.randn(5, 3, 4))
    expected = counted(lambda a, b, w: torch.einsum("bn,anm,bm->ba", a, w, b), *args)
    assert irtools_matmul(Op(F.bilinear), *args) == expected == 2 * 7 * 5 * 3 * 4 + 2 * 7 * 5 * 4


# ---- recurrent layers ------------------------------------------------------------------------

RNNS = {
    "gru": (torch.nn.GRU, {}),
    "gru_deep_bidirectional": (torch.nn.GRU, {"num_layers": 2, "bidirectional": True}),
    "rnn_batch_first_no_bias": (torch.nn.RNN, {"batch_first": True, "bias": False}),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu", "num_layers": 2}),
    "gru_cell": (torch.nn.GRUCell, {}),
}


@pytest.mark.parametrize("name", sorted(RNNS))
def test_recurrent_layers_equal_flop_counter(name):
    """GRU and vanilla RNNs run addmm/mm per step on CPU, which FlopCounterMode counts."""
    cls, kwargs = RNNS[name]
    layer = cls(5, 7, **kwargs).eval()
    x = torch.randn(4, 5) if name.endswith("cell") else torch.randn(6, 4, 5)
    assert irtools_matmul(layer, x) == counted(layer, x) != 0


@pytest.mark.parametrize("kwargs", [{}, {"num_layers": 2, "bidirectional": True}, {"proj_size": 3}])
def test_lstm_matmul_by_hand(kwargs):
    """CPU's fused LSTM kernel hides its matmuls from FlopCounterMode: 2 · tokens · every weight
    matrix's elements (each layer and direction has its own), checked against the parameters."""
    layer = torch.nn.LSTM(5, 7, **kwargs).eval()
    x = torch.randn(6, 4, 5)
    weights = sum(p.numel() for n, p in layer.named_parameters() if n.startswith("weight"))
    nodes = irtools_nodes(layer, x)
    (lstm,) = [a for a in nodes if a["op"].startswith("aten.lstm")]
    assert lstm["matmul_flops"] == 2 * 6 * 4 * weights
    biases = sum(p.numel() for n, p in layer.named_parameters() if n.startswith("bias"))
    layer_dirs = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    assert lstm["flops"] == lstm["matmul_flops"] + 6 * 4 * (biases + 18 * 7 * layer_dirs)


# ---- attention backward ------------------------------------------------------------------------


def test_cpu_attention_backward_follows_flop_counter_formula():
    """CPU's flash attention backward is not in FlopCounterMode's registry; its rule applies the
    formula FlopCounterMode uses for the CUDA kernels (recomputed scores, dV, dP, dQ, dK)."""

    def fn(q, k, v):
        return torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True).sum(), (q, k, v))

    q = torch.randn(2, 3, 5, 4, requires_grad=True)
    k, v = torch.randn(2, 3, 7, 4, requires_grad=True), torch.randn(2, 3, 7, 4, requires_grad=True)
    nodes = traced_nodes(fn, q, k, v)
    (backward,) = [a for a in nodes if a["op"].startswith("aten._scaled_dot_product_flash_attention_for_cpu_backward")]
    expected = sdpa_backward_flop_count((2, 3, 5, 4), q.shape, k.shape, v.shape)
    assert backward["matmul_flops"] == expected == 2 * 2 * 3 * 5 * 7 * (3 * 4 + 2 * 4)


@pytest.mark.parametrize("op", ["_scaled_dot_product_efficient_attention_backward", "_flash_attention_backward"])
def test_cuda_attention_backward_rules(op):
    """The CUDA kernels' rules on shapes alone: the raw flash kernel lays tensors out (b, s, h, d)."""
    b, h, sq, sk, d, dv = 2, 3, 5, 7, 4, 6
    shapes = [(b, h, sq, dv), (b, h, sq, d), (b, h, sk, d), (b, h, sk, dv)]  # grad_out, q, k, v
    expected = sdpa_backward_flop_count(*shapes)
    if op.startswith("_flash"):
        shapes = [(s[0], s[2], s[1], s[3]) for s in shapes]
    specs = tuple(TensorSpec(tuple(sympy.Integer(n) for n in s)) for s in shapes)
    cost = lookup(f"aten.{op}.default").fn(OpCall(f"aten.{op}.default", specs, specs[1:]))
    assert cost.matmul_flops == expected == 2 * b * h * sq * sk * (3 * d + 2 * dv)
