"""Every node's symbolic costs, evaluated at random shapes, equal a concrete re-trace's costs."""

import random

import torch

from irtools import analyze_module
from irtools.ir.kinds import COSTS
from irtools.ir.symbols import evaluate
from models.gpt2_attention import GPT2Attention

BYTES = {"w_bytes": 2, "a_bytes": 4, "kv_bytes": 1}


def _costs(result, bindings):
    return {
        n: tuple(evaluate(a[c], {**BYTES, **bindings}) for c in COSTS)
        for n, a in result.ir.nodes()
        if a["kind"] != "free"
    }


def test_nodes_match_concrete_retrace(seed_prefill, seed_decode):
    module = GPT2Attention().eval()
    rng = random.Random(7)
    for _ in range(3):
        b, s, c = rng.randint(2, 6), rng.randint(2, 50), rng.randint(2, 50)
        x = torch.randn(b, s, 768)
        past = (torch.randn(b, 12, c, 64), torch.randn(b, 12, c, 64))
        for symbolic, kwargs, binds in (
            (seed_prefill, {}, {"batch_size": b, "seq_len": s}),
            (seed_decode, {"layer_past": past}, {"batch_size": b, "seq_len": s, "cache_len": c}),
        ):
            concrete = analyze_module(module, (x,), kwargs, dims={}, bindings={})
            want, got = _costs(concrete, {}), _costs(symbolic, binds)
            assert set(want) == set(got)
            assert want == got
            assert all(isinstance(v, int) for costs in want.values() for v in costs)
