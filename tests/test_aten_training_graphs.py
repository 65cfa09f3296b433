"""Whole graphs with no unsupported op: CNN blocks in the training IR (eval and train), their
core ATen decomposition and their backward (a training step traced with make_fx), and a tiny
transformer's training step; with figures checked against FlopCounterMode or by hand."""

from __future__ import annotations

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils.flop_counter import FlopCounterMode

from irtools import analyze_module
from irtools.ir.symbols import sym
from passes.annotate_costs import annotate_costs
from passes.compiler.fx_pass import ir_from_graph_module
from passes.costs.aten_math import fft_flops
from passes.costs.aten_pool import adaptive_window_sum


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s), inplace=True)))


class InvertedResidual(nn.Module):
    """MobileNetV3's block: expand 1x1, depthwise 3x3, squeeze-excite, project 1x1."""

    def __init__(self, c_in: int, expand: int, c_out: int, stride: int):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(c_in, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.Hardswish(inplace=True))
        self.depthwise = nn.Sequential(
            nn.Conv2d(expand, expand, 3, stride, 1, groups=expand, bias=False), nn.BatchNorm2d(expand), nn.Hardswish(inplace=True)
        )
        self.se = SqueezeExcite(expand, expand // 4)
        self.project = nn.Sequential(nn.Conv2d(expand, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class MobileNetV3Like(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.blocks = nn.Sequential(InvertedResidual(8, 16, 8, 1), InvertedResidual(8, 24, 12, 2))
        self.head = nn.Sequential(nn.Linear(12, 32), nn.Hardswish(inplace=True), nn.Dropout(0.2, inplace=True), nn.Linear(32, 10))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1)
        return self.head(torch.flatten(x, 1))


class VisionZoo(nn.Module):
    """Ops of other torchvision-style models: max/avg pools, transposed conv, resampling, pads,
    group norm, pixel shuffle, channel shuffle, ReLU6, SiLU, GELU, dropout."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.shuffle = nn.ChannelShuffle(2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu6(self.conv(x), inplace=True)
        x = F.max_pool2d(x, 2, ceil_mode=True)
        x = F.interpolate(self.up(x), scale_factor=2, mode="bilinear", align_corners=False)
        x = F.interpolate(x, scale_factor=0.5, mode="nearest")
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        x = self.shuffle(F.silu(self.gn(x)))
        x = F.pixel_unshuffle(F.pixel_shuffle(x, 2), 2)
        x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        x = F.adaptive_max_pool2d(x, 3)
        x = F.dropout(F.adaptive_avg_pool2d(x, (1, 1)).flatten(1), 0.2, self.training)
        return self.fc(F.gelu(x))


def packet(op: str) -> str:
    """``aten.max_pool2d.default`` -> ``max_pool2d``."""
    return op.split(".")[1] if op.startswith("aten.") else op


def no_unsupported(nodes: list[dict]) -> bool:
    bad = [(a["op"], a.get("cost_error")) for a in nodes if a.get("unsupported") or a.get("cost_error")]
    assert bad == []
    return True


def matmul_total(nodes) -> sympy.Expr:
    return sum(a.get("matmul_flops", 0) for a in nodes)


def counted(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


@pytest.fixture(scope="session")
def mobilenet_eval():
    torch.manual_seed(0)
    model, x = MobileNetV3Like().eval(), torch.randn(2, 3, 16, 16)
    result = analyze_module(model, (x,), dims={"x": {0: "batch_size"}})
    return model, result


def test_mobilenet_block_is_fully_costed(mobilenet_eval):
    model, result = mobilenet_eval
    nodes = [a for _, a in result.ir.nodes()]
    ops = {packet(a["op"]) for a in nodes}
    assert {"hardswish_", "hardsigmoid", "adaptive_avg_pool2d", "conv2d", "batch_norm", "relu_", "dropout_"} <= ops
    assert no_unsupported(nodes)
    for b in (1, 3, 5):
        with torch.no_grad():
            assert result.value(matmul_total(nodes), {"batch_size": b}) == counted(model, torch.randn(b, 3, 16, 16))


def test_mobilenet_block_figures_by_hand(mobilenet_eval):
    _, result = mobilenet_eval
    nodes = [a for _, a in result.ir.nodes()]
    b = sym("batch_size")
    hardswish = [a for a in nodes if a["op"].startswith("aten.hardswish")]
    assert len(hardswish) == 6 and all(a["flops"] == a["outputs"][0].numel for a in hardswish)  # 1 per element
    pools = [a["flops"] for a in nodes if a["op"].startswith("aten.adaptive_avg_pool2d")]
    # each input element read once: SE pools over 16·8·8 and 24·4·4, the head's over 12·4·4
    assert sorted(pools, key=str) == sorted([16 * 64 * b, 24 * 16 * b, 12 * 16 * b], key=str)
    (hardsigmoid, _) = [a for a in nodes if a["op"].startswith("aten.hardsigmoid")]
    assert hardsigmoid["flops"] == 16 * b


def test_mobilenet_block_in_training_mode():
    model, x = MobileNetV3Like().train(), torch.randn(2, 3, 16, 16)
    nodes = [a for _, a in analyze_module(model, (x,)).ir.nodes()]
    assert no_unsupported(nodes)
    assert matmul_total(nodes) == counted(model, x)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_vision_zoo_training_ir(mode):
    model, x = getattr(VisionZoo(), mode)(), torch.randn(2, 3, 16, 16)
    nodes = [a for _, a in analyze_module(model, (x,)).ir.nodes()]
    assert no_unsupported(nodes)
    with torch.no_grad():
        assert matmul_total(nodes) == counted(model, x) != 0


def test_vision_zoo_core_aten():
    """After run_decompositions: max_pool2d_with_indices, upsample_*, adaptive_max_pool2d,
    native_group_norm, convolution (pads become index arithmetic) ... all costed."""
    model, x = VisionZoo().eval(), torch.randn(2, 3, 16, 16)
    program = torch.export.export(model, (x,)).run_decompositions()
    ir = annotate_costs(ir_from_graph_module(program.graph_module, dims={}))
    nodes = [a for _, a in ir.nodes()]
    ops = {packet(a["op"]) for a in nodes}
    assert {"max_pool2d_with_indices", "upsample_bilinear2d", "adaptive_max_pool2d", "native_group_norm"} <= ops
    assert no_unsupported(nodes)
    with torch.no_grad():
        assert matmul_total(nodes) == counted(model, x)


# ---- training steps (backward ops) --------------------------------------------------------


def training_step(model: nn.Module, loss_fn):
    """A function of (inputs, buffers, params) returning the parameter gradients."""
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

    def step(x, target, bufs, *ps):
        state = {**dict(zip(params, ps)), **dict(zip(buffers, bufs))}
        return torch.autograd.grad(loss_fn(torch.func.functional_call(model, state, (x,)), target), ps)

    args = [list(buffers.values())] + [p.detach().requires_grad_() for p in params.values()]
    return step, args


class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, activation="gelu", batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.lm = nn.Linear(16, 50)

    def forward(self, ids):
        return self.lm(self.norm(self.layer(self.emb(ids))))


CASES = {
    "mobilenet": (MobileNetV3Like, lambda: torch.randn(2, 3, 16, 16), lambda: torch.randint(0, 10, (2,)), F.cross_entropy),
    "vision_zoo": (VisionZoo, lambda: torch.randn(2, 3, 16, 16), lambda: torch.randn(2, 4), F.mse_loss),
    "transformer": (
        TinyTransformer, lambda: torch.randint(0, 50, (2, 6)), lambda: torch.randint(0, 50, (2, 6)),
        lambda logits, t: F.cross_entropy(logits.flatten(0, 1), t.flatten()),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_step_is_fully_costed(name):
    cls, make_x, make_target, loss_fn = CASES[name]
    torch.manual_seed(0)
    model = cls().train()
    x, target = make_x(), make_target()
    step, rest = training_step(model, loss_fn)
    graph = make_fx(step, tracing_mode="fake")(x, target, *rest)
    nodes = [a for _, a in annotate_costs(ir_from_graph_module(graph, dims={})).nodes()]
    assert no_unsupported(nodes)
    backward_ops = {packet(a["op"]) for a in nodes if "backward" in a["op"]}
    assert len(backward_ops) >= 4
    with FlopCounterMode(display=False) as counter:
        step(x, target, *rest)
    by_op = counter.get_flop_counts()["Global"]
    conv_bw = sum(a["matmul_flops"] for a in nodes if a["op"].startswith("aten.convolution_backward"))
    assert conv_bw == by_op.get(torch.ops.aten.convolution_backward, 0)
    assert matmul_total(nodes) == counter.get_total_flops()


# ---- rules checked by hand ----------------------------------------------------------------


@pytest.mark.parametrize("n_in,n_out", [(7, 3), (5, 3), (16, 1), (6, 4), (9, 9), (10, 4)])
def test_adaptive_windows_match_torch(n_in, n_out):
    """Σ window lengths = the non-zeros of pooling each one-hot input position."""
    pooled = F.adaptive_avg_pool1d(torch.eye(n_in)[:, None, :], n_out)
    assert adaptive_window_sum(n_in, n_out) == int((pooled != 0).sum())


class Spectral(nn.Module):
    def forward(self, x):
        return torch.fft.irfft(torch.fft.rfft(x) * 2, n=16)


def test_fft_flops_by_hand():
    nodes = [a for _, a in analyze_module(Spectral(), (torch.randn(4, 16),)).ir.nodes()]
    (rfft,) = [a for a in nodes if a["op"].startswith("aten.fft_rfft")]
    (irfft,) = [a for a in nodes if a["op"].startswith("aten.fft_irfft")]
    assert rfft["flops"] == irfft["flops"] == 4 * sympy.Rational(5, 2) * 16 * 4  # 4 rows, 2.5·N·log2 N
    assert fft_flops(sympy.Integer(8), sympy.Integer(1), real=False) == 5 * 8 * 3


def test_pool_and_pad_figures_by_hand():
    class PoolPad(nn.Module):
        def forward(self, x):
            return F.pad(F.max_pool2d(x, 2), (1, 1, 2, 2), mode="reflect")

    nodes = [a for _, a in analyze_module(PoolPad(), (torch.randn(2, 8, 16, 16),)).ir.nodes()]
    (pool,) = [a for a in nodes if a["op"].startswith("aten.max_pool2d")]
    assert pool["flops"] == 2 * 8 * 8 * 8 * 4  # one compare per window element
    (pad,) = [a for a in nodes if a["op"].startswith("aten.pad")]
    assert pad["flops"] == 0 and pad["kind"] == "copy"
