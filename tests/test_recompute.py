"""Activation recomputation: full adds one forward per block, selective the attention scores
only, and torch.utils.checkpoint in a model's code is found and recomputed as torch does
(FLOPs against FlopCounterMode, peak memory against MemTracker)."""

from __future__ import annotations

import pytest
import sympy

from passes.recompute import score_nodes
from tests.training_models import POINTS, TINY, analyze, captured, real_flops, real_memory

pytest.importorskip("transformers")
B, S = sympy.symbols("batch_size seq_len", positive=True, integer=True)


@pytest.fixture(scope="module")
def plain():
    return {policy: analyze("gpt2", recompute=policy) for policy in ("none", "selective", "full")}


def _saved(result, b=4, s=32):
    return result.value(result.training.memory.totals["saved_activations"], {"batch_size": b, "seq_len": s})


def test_full_adds_one_forward_per_block(plain):
    none, full = plain["none"].training, plain["full"].training
    blocks = [f"transformer.h.{i}" for i in range(TINY["gpt2"]["n_layer"])]
    assert sorted(full.recompute.regions) == blocks
    block_forward = sum((none.modules[b]["forward"] for b in blocks), sympy.Integer(0))
    assert sympy.expand(full.phases["recompute"]["flops"] - block_forward) == 0
    assert sympy.expand(full.phases["forward"]["flops"] - none.phases["forward"]["flops"]) == 0
    assert sympy.expand(full.hardware_flops - full.model_flops - block_forward) == 0
    assert sympy.expand(full.model_flops - none.model_flops) == 0  # MFU's model FLOPs leave recomputation out


def test_full_matches_flop_counter_on_checkpointed_blocks_without_early_stop(plain):
    """torch.utils.checkpoint with early stop off re-runs each block's whole forward: the same
    matmul FLOPs as the full policy on the plain model."""
    recipe, _ = captured("gpt2", checkpointing=True)
    full = plain["full"].training.phases
    formula = full["forward"]["matmul_flops"] + full["backward"]["matmul_flops"] + full["recompute"]["matmul_flops"]
    for b, s in POINTS:
        assert plain["full"].value(formula, {"batch_size": b, "seq_len": s}) == real_flops(recipe, b, s, early_stop=False)


def test_selective_adds_attention_scores_only(plain):
    none, sel = plain["none"], plain["selective"].training
    heads, hidden, layers = TINY["gpt2"]["n_head"], TINY["gpt2"]["n_embd"], TINY["gpt2"]["n_layer"]
    head_dim = hidden // heads
    # QKᵀ once more per layer: 2·b·h·s²·d
    assert sympy.expand(sel.phases["recompute"]["matmul_flops"] - layers * 2 * B * heads * S**2 * head_dim) == 0
    scores = score_nodes(none.ir)
    assert sorted(scores) == [f"transformer.h.{i}.attn" for i in range(layers)]
    score_flops = sum((none.ir.node(n).flops for ns in scores.values() for n in ns), sympy.Integer(0))
    assert sympy.expand(sel.phases["recompute"]["flops"] - score_flops) == 0
    assert sympy.degree(sympy.expand(sel.phases["recompute"]["flops"]), S) == 2


def test_saved_activations_drop(plain):
    saved = {p: _saved(r) for p, r in plain.items()}
    assert saved["full"] < saved["selective"] < saved["none"]
    # selective at batch 4, seq 32: the softmax outputs (4 heads x 32 x 32 fp32 per example, in each of
    # 2 layers) are no longer saved; the causal mask (4 x 1 x 32 x 32 fp32, shared by the layers) now
    # is: the recomputed scores read it in the backward
    layers, heads = TINY["gpt2"]["n_layer"], TINY["gpt2"]["n_head"]
    assert saved["none"] - saved["selective"] == layers * 4 * heads * 32 * 32 * 4 - 4 * 32 * 32 * 4
    peaks = {p: r.value(r.training.memory.peak, {"batch_size": 4, "seq_len": 32}) for p, r in plain.items()}
    assert peaks["full"] < peaks["none"] and peaks["selective"] < peaks["none"]


def test_report_says_which_policy(plain):
    for policy, r in plain.items():
        section = r.to_dict()["training"]["recompute"]
        assert section["policy"] == policy
        assert ("Korthikanti" in section["note"]) == (policy == "selective")
    phases = {n.get("phase") for n in plain["full"].to_dict()["nodes"]}
    assert "recompute" in phases


@pytest.mark.slow
def test_checkpoint_in_model_code_is_found_and_matches_torch():
    """transformers' gradient checkpointing (torch.utils.checkpoint, non-reentrant) on every
    block: found while capturing, recomputed with torch's early stop; FLOPs equal FlopCounterMode
    on the real step, peak memory within 5% of MemTracker's, saved activations below the plain
    model's."""
    r = analyze("gpt2", checkpointing=True)
    tr = r.training
    assert tr.checkpointed == ["transformer.h.0", "transformer.h.1"]
    assert "torch.utils.checkpoint" in tr.recompute.note
    recipe, _ = captured("gpt2", checkpointing=True)
    ph = tr.phases
    formula = ph["forward"]["matmul_flops"] + ph["backward"]["matmul_flops"] + ph["recompute"]["matmul_flops"]
    for b, s in POINTS:
        assert r.value(formula, {"batch_size": b, "seq_len": s}) == real_flops(recipe, b, s)
    real = real_memory(recipe, 4, 32)
    peak = r.value(tr.memory.peak, {"batch_size": 4, "seq_len": 32})
    assert abs(peak - real["Total"]) <= 0.05 * real["Total"], (peak, real)
    plain = analyze("gpt2")
    assert _saved(r) < _saved(plain)
    plain_real = real_memory(captured("gpt2")[0], 4, 32)
    assert real["ACT"] < plain_real["ACT"]
