"""The KV-cache model of a decode step (docs/conventions.md): ``static`` writes the new tokens
in place, ``copy`` (transformers' DynamicCache) concatenates. Hand formulas on the seed's
GPT2Attention (hidden h = 768, its c_attn and c_proj weights)."""

from __future__ import annotations

import sympy

from irtools.ir.symbols import sym
from irtools.pipeline import Options, run

B, S, C = sym("batch_size"), sym("seq_len"), sym("cache_len")
A, W, KV = sym("a_bytes"), sym("w_bytes"), sym("kv_bytes")
H = 768


def _kernel_bytes(kv_cache: str) -> sympy.Expr:
    result = run(Options(scenario="decode", mode="flash", target="h100-sxm", kv_cache=kv_cache))
    assert result.to_dict()["kv_cache"]["model"] == kv_cache
    return result.kernels.total("bytes")


def test_flash_static_decode_bytes_by_hand():
    weights = (H * 3 * H + 3 * H + H * H + H) * W  # c_attn and c_proj, weight and bias, each read once
    cache_read = 2 * B * C * H * KV  # attention reads the cached keys and values once
    new_written = 2 * B * S * H * KV  # the new keys and values, written into the cache in place
    new_read = 2 * B * S * H * KV  # ... and read by attention with the rest of the cache
    # activations: c_attn in/out (h + 3h), new k, v read (2h), q read + output written (2h),
    # merging heads (a copy, 2h), c_proj in/out (2h)
    activations = 12 * H * B * S * A
    want = weights + cache_read + new_written + new_read + activations
    assert sympy.expand(_kernel_bytes("static") - want) == 0


def test_copy_adds_one_read_and_one_write_of_the_cache():
    extra = _kernel_bytes("copy") - _kernel_bytes("static")
    assert sympy.expand(extra - 2 * (2 * B * C * H * KV)) == 0  # keys and values: read + write each


def test_default_cache_model_follows_the_mode():
    assert Options(mode="flash").kv_cache_model == "static"
    assert Options(target="h100-sxm").kv_cache_model == "static"
    assert Options(mode="eager").kv_cache_model == "copy"
    assert Options().kv_cache_model == "copy"
    assert Options(mode="eager", kv_cache="static").kv_cache_model == "static"
