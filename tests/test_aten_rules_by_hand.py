"""The core ATen ops that had no rule before, each traced on real tensors (make_fx) and costed:
FLOPs checked against figures worked out by hand from the conventions of each rule module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.fx.experimental.proxy_tensor import make_fx

from irtools import analyze_module
from passes.annotate_costs import annotate_costs
from passes.compiler.fx_pass import ir_from_graph_module

aten = torch.ops.aten
torch.manual_seed(0)
X4 = torch.randn(2, 3, 8, 8)  # 384 elements
X5 = torch.randn(1, 2, 4, 4, 4)  # 128 elements
MEAN, RSTD = torch.randn(2, 1), torch.rand(2, 1) + 0.5
GRAD_POOL = torch.randn(2, 3, 4, 4)
_, POOL_INDICES = aten.max_pool2d_with_indices(X4, [3, 3], [2, 2], [1, 1])


def node_of(op: str, fn, *args) -> dict:
    graph = make_fx(lambda *xs: fn(*xs), tracing_mode="real")(*args)
    ir = annotate_costs(ir_from_graph_module(graph, dims={}))
    nodes = [a for _, a in ir.nodes() if a["op"].split(".")[:2] == ["aten", op]]
    assert len(nodes) == 1, [a["op"] for _, a in ir.nodes()]
    (node,) = nodes
    assert not node.get("unsupported") and "cost_error" not in node
    return node


# name -> (function, its tensor arguments, FLOPs by hand); tensors are arguments so that they
# become graph inputs (a tensor the function closes over would be a constant without a spec)
CASES = {
    # adaptive windows of 8 -> 3: [0,3) [2,6) [5,8), 10 elements per dim, over 2·3 planes
    "_adaptive_avg_pool2d": (lambda x: aten._adaptive_avg_pool2d(x, [3, 3]), (X4,), 2 * 3 * 10 * 10),
    "_adaptive_avg_pool2d_backward": (aten._adaptive_avg_pool2d_backward, (torch.randn(2, 3, 3, 3), X4), 600),
    "_adaptive_avg_pool3d": (lambda x: aten._adaptive_avg_pool3d(x, [2, 2, 2]), (X5,), 128),  # every element once
    "avg_pool2d": (lambda x: aten.avg_pool2d(x, [2, 2]), (X4,), 2 * 3 * 4 * 4 * 4),  # out · window
    "avg_pool2d_backward": (
        lambda g, x: aten.avg_pool2d_backward(g, x, [2, 2], [2, 2], [0, 0], False, True, None), (GRAD_POOL, X4), 96 * 4
    ),
    "avg_pool3d": (lambda x: aten.avg_pool3d(x, [2, 2, 2]), (X5,), 16 * 8),
    "max_pool2d_with_indices": (lambda x: aten.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1]), (X4,), 96 * 9),
    "max_pool2d_with_indices_backward": (
        lambda g, x, i: aten.max_pool2d_with_indices_backward(g, x, [3, 3], [2, 2], [1, 1], [1, 1], False, i),
        (GRAD_POOL, X4, POOL_INDICES),
        96,  # one add per gradient element
    ),
    "max_pool3d_with_indices": (lambda x: aten.max_pool3d_with_indices(x, [2, 2, 2]), (X5,), 16 * 8),
    # 2·5·4 pairs of 3 coordinates: 3 flops per coordinate and a root per pair
    "_cdist_forward": (lambda a, b: aten._cdist_forward(a, b, 2.0, None), (torch.randn(2, 5, 3), torch.randn(2, 4, 3)), 400),
    "_pdist_forward": (aten._pdist_forward, (torch.randn(5, 3),), 10 * 9 + 10),
    "_embedding_bag": (
        aten._embedding_bag, (torch.randn(10, 4), torch.tensor([1, 2, 4, 5, 4, 3]), torch.tensor([0, 2, 4])),
        6 * 4,  # one add per gathered element
    ),
    # 3 real transforms of 8 points: 2.5·8·log2(8) each
    "_fft_r2c": (lambda x: aten._fft_r2c(x, [1], 0, True), (torch.randn(3, 8),), 180),
    "_fft_c2r": (lambda x: aten._fft_c2r(x, [1], 0, 8), (torch.randn(3, 5, dtype=torch.complex64),), 180),
    "_fft_c2c": (lambda x: aten._fft_c2c(x, [1], 0, True), (torch.randn(3, 8, dtype=torch.complex64),), 3 * 5 * 8 * 3),
    "col2im": (lambda x: aten.col2im(x, [4, 4], [2, 2], [1, 1], [0, 0], [1, 1]), (torch.randn(1, 12, 9),), 108),
    "embedding_dense_backward": (
        lambda g, i: aten.embedding_dense_backward(g, i, 10, -1, False), (torch.randn(6, 4), torch.tensor([1, 2, 4, 5, 4, 3])),
        24,
    ),
    # 2·3·3 output points: bilinear (3 lerps of 3 flops) each, 2 flops per grid coordinate (18)
    "grid_sampler_2d": (
        lambda x, g: aten.grid_sampler_2d(x, g, 0, 0, False), (torch.randn(1, 2, 4, 4), torch.rand(1, 3, 3, 2) * 2 - 1),
        18 * 9 + 18 * 2,
    ),
    "native_layer_norm_backward": (
        lambda g, x, m, r, w, b: aten.native_layer_norm_backward(g, x, [8], m, r, w, b, [True, True, True]),
        (torch.randn(2, 8), torch.randn(2, 8), MEAN, RSTD, torch.randn(8), torch.randn(8)),
        16 * (8 + 2 + 1),
    ),
    "native_group_norm_backward": (
        lambda g, x, m, r, w: aten.native_group_norm_backward(g, x, m, r, w, 2, 3, 64, 3, [True, False, False]),
        (X4, X4, torch.randn(2, 3), torch.rand(2, 3), torch.randn(3)),
        384 * 8,  # grad_input only
    ),
    "nonzero": (aten.nonzero, (X4 > 0,), 384),
    "randperm": (lambda: aten.randperm(10), (), 0),
    "reflection_pad1d": (lambda x: aten.reflection_pad1d(x, [1, 2]), (torch.randn(2, 3, 5),), 0),
    "reflection_pad2d": (lambda x: aten.reflection_pad2d(x, [1, 1, 2, 2]), (X4,), 0),
    "reflection_pad3d": (lambda x: aten.reflection_pad3d(x, [1, 1, 1, 1, 1, 1]), (X5,), 0),
    "replication_pad2d": (lambda x: aten.replication_pad2d(x, [1, 1, 2, 2]), (X4,), 0),
    "replication_pad3d": (lambda x: aten.replication_pad3d(x, [1, 1, 1, 1, 1, 1]), (X5,), 0),
    "upsample_bilinear2d": (lambda x: aten.upsample_bilinear2d(x, [16, 16], False), (X4,), 2 * 3 * 256 * 9),
    "upsample_nearest2d": (lambda x: aten.upsample_nearest2d(x, [16, 16]), (X4,), 0),
    "log10": (aten.log10, (X4.abs(),), 384),
}
for _name in ("asin", "acos", "atan", "sinh", "cosh", "tan", "asinh", "atanh"):
    CASES[_name] = (getattr(aten, _name), (torch.rand(2, 3) * 0.5,), 6)
CASES["acosh"] = (aten.acosh, (torch.rand(2, 3) + 1,), 6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_by_hand(name):
    fn, args, flops = CASES[name]
    node = node_of(name, fn, *args)
    assert node["flops"] == flops
    assert node["bytes_written"] != 0


def test_copies_read_and_write_every_element():
    fn, args, _ = CASES["reflection_pad2d"]
    node = node_of("reflection_pad2d", fn, *args)
    assert node["kind"] == "copy"
    a = node["bytes_read"].free_symbols.pop()  # the activation precision symbol
    assert node["bytes_read"] == 384 * a and node["bytes_written"] == 2 * 3 * 12 * 10 * a


class Signal(torch.nn.Module):
    """Training-IR ops of audio and retrieval models."""

    def forward(self, x, edges):
        spec = torch.stft(x, n_fft=16, hop_length=4, window=torch.hann_window(16), return_complex=True)
        return (spec, torch.bucketize(x, edges), torch.searchsorted(edges, x), torch.cdist(x[None], x[None]),
                F.cosine_similarity(x, x[:1]), torch.histc(x))


def test_signal_and_search_ops_by_hand():
    x, edges = torch.randn(3, 64), torch.sort(torch.randn(10)).values
    nodes = {a["op"].split(".")[1]: a for _, a in analyze_module(Signal(), (x, edges)).ir.nodes()}
    assert not [op for op, a in nodes.items() if a.get("unsupported")]
    # centered stft: 64/4 + 1 = 17 frames per row, a 16-point real FFT (2.5·16·4) and the window (16) each
    assert nodes["stft"]["flops"] == 3 * 17 * (160 + 16)
    assert nodes["bucketize"]["flops"] == nodes["searchsorted"]["flops"] == 192 * 4  # ⌈log2 10⌉ compares per query
    assert nodes["cdist"]["flops"] == 9 * (3 * 64 + 1)  # 3 flops per coordinate pair, a root per pair
    assert nodes["cosine_similarity"]["flops"] == 6 * 192 + 4 * 3
    assert nodes["histc"]["flops"] == 192
