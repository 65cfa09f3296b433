"""Differential: matmul-class FLOPs equal torch's FlopCounterMode, symbolically and at random shapes."""

import random

import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

from irtools import analyze_module
from irtools.ir.symbols import sym
from tests.conftest import causal_additive_mask


def matmul_total(result) -> sympy.Expr:
    return sympy.expand(sum(a["matmul_flops"] for _, a in result.ir.nodes()))


def symbolic_flop_counter(result) -> sympy.Expr:
    """FlopCounterMode over the exported graph on its own fake (symbolic) tensors."""
    ep = result.ir.meta["exported_program"]
    vals = [n.meta["val"] for n in ep.graph.nodes if n.op == "placeholder"]
    fake_mode = next(v.fake_mode for v in vals if hasattr(v, "fake_mode"))
    with fake_mode, FlopCounterMode(display=False) as counter:
        torch.fx.Interpreter(ep.graph_module).run(*vals)
    total = counter.get_total_flops()
    raw = total.node.expr if isinstance(total, torch.SymInt) else sympy.Integer(total)
    return sympy.expand(raw.xreplace(result.ir.meta["rename"]))


def concrete_flop_counter(fn, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            fn(*args, **kwargs)
    return counter.get_total_flops()


def test_seed_symbolic(seed_prefill, seed_decode):
    for result in (seed_prefill, seed_decode):
        assert symbolic_flop_counter(result) == matmul_total(result) != 0


def test_seed_random_shapes(seed_prefill, seed_decode):
    from models.gpt2_attention import GPT2Attention

    eager = GPT2Attention().eval()
    rng = random.Random(0)
    for _ in range(20):
        b, s, c = rng.randint(1, 4), rng.randint(1, 40), rng.randint(1, 40)
        x = torch.randn(b, s, 768)
        past = (torch.randn(b, 12, c, 64), torch.randn(b, 12, c, 64))
        got = concrete_flop_counter(eager, x)
        assert got == seed_prefill.value(matmul_total(seed_prefill), {"batch_size": b, "seq_len": s})
        got = concrete_flop_counter(eager, x, layer_past=past)
        assert got == seed_decode.value(matmul_total(seed_decode), {"batch_size": b, "seq_len": s, "cache_len": c})


def test_transformers_attention(hf_attention):
    module, result = hf_attention
    assert symbolic_flop_counter(result) == matmul_total(result)
    rng = random.Random(1)
    for _ in range(20):
        b, s = rng.randint(1, 4), rng.randint(1, 48)
        x = torch.randn(b, s, 768)
        got = concrete_flop_counter(module, x, attention_mask=causal_additive_mask(b, s, s))
        assert got == result.value(matmul_total(result), {"batch_size": b, "seq_len": s})


def test_transformers_two_layer_lm(hf_lm):
    model, result = hf_lm
    expr = matmul_total(result)
    assert symbolic_flop_counter(result) == expr
    b, s = sym("batch_size"), sym("seq_len")
    # 2 layers x (qkv, proj, fc, fc-proj, 2 attention matmuls) + lm head, by hand:
    h, v = 768, 50257
    per_layer = 2 * b * s * h * (3 * h + h + 4 * h + 4 * h) + 4 * b * s * s * h
    assert expr == sympy.expand(2 * per_layer + 2 * b * s * h * v)
    rng = random.Random(2)
    for _ in range(20):
        bb, ss = rng.randint(1, 3), rng.randint(2, 24)
        ids = torch.randint(0, v, (bb, ss))
        assert concrete_flop_counter(model, ids, use_cache=False) == result.value(expr, {"batch_size": bb, "seq_len": ss})


class _SDPA(torch.nn.Module):
    def forward(self, q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


class _MathAttention(torch.nn.Module):
    def forward(self, q, k, v):
        w = torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1)
        return w @ v


def test_sdpa_counted_like_math_attention():
    """CPU SDPA (counted as 0 by FlopCounterMode on CPU) gets the math formula's matmul FLOPs."""
    q, k, v = torch.randn(2, 4, 6, 16), torch.randn(2, 4, 9, 16), torch.randn(2, 4, 9, 16)
    dims = {n: {0: "batch_size", 2: "seq_len" if n == "q" else "cache_len"} for n in "qkv"}
    sdpa = analyze_module(_SDPA(), (q, k, v), dims=dims)
    math = analyze_module(_MathAttention(), (q, k, v), dims=dims)
    assert matmul_total(sdpa) == matmul_total(math) == symbolic_flop_counter(math)
    b, s, c = sym("batch_size"), sym("seq_len"), sym("cache_len")
    assert matmul_total(sdpa) == sympy.expand(4 * b * 4 * s * c * 16)
    kinds = {a["kind"] for _, a in sdpa.ir.nodes()}
    assert "attention" in kinds and not sdpa.unsupported
