"""The seed's line table (../shared/seed/GPT2Attention-line-analysis.md), reproduced.

Seed symbols map to GPT-2 small's config (hidden_size=768, num_heads=12, head_dim=64) and
the seed writes the KV cache at activation precision (kv_bytes = a_bytes).
Deliberate differences are named in the tests below.
"""

import sympy
import torch

from irtools import analyze_module
from irtools.ir.symbols import parse, sym
from models.gpt2_attention import GPT2Attention

SEED = {"hidden_size": 768, "num_heads": 12, "head_dim": 64}
B, S, C, A, W = (sym(n) for n in ("batch_size", "seq_len", "cache_len", "a_bytes", "w_bytes"))


def seed_expr(text: str) -> sympy.Expr:
    """A seed formula in our symbols: config numbers in, kv_len = cache_len + seq_len."""
    expr = parse(text).subs({sym(k): v for k, v in SEED.items()})
    return sympy.expand(expr.subs(sym("kv_len"), C + S))


def ours(expr) -> sympy.Expr:
    return sympy.expand(expr.subs(sym("kv_bytes"), A))


def entry(result, code_fragment: str):
    matches = [e for e in result.lines.entries if code_fragment in e.code]
    assert len(matches) == 1, [e.code for e in result.lines.entries]
    return matches[0]


def test_c_attn_composite(seed_prefill):
    e = entry(seed_prefill, "self.c_attn(hidden_states)")
    assert e.kernel_type == "composite"
    assert e.flops_formula == "${models.gpt2_attention.Conv1D}(batch_size, seq_len, 768, 2304)"
    # seed: ${Conv1D}(batch_size, seq_len, hidden_size, 3 * hidden_size); Conv1D = addmm = 2MNK + MN bias
    assert e.flops == seed_expr("2*batch_size*seq_len*hidden_size*3*hidden_size + batch_size*seq_len*3*hidden_size")
    assert ours(e.bytes_read) == seed_expr("batch_size*seq_len*hidden_size*a_bytes") + 768 * 2304 * W + 2304 * W
    assert e.own_flops == 0  # the split is a view, as the seed says


def test_head_splits_are_views_not_copies(seed_prefill):
    """Named difference: the seed counts permute as read + write ("conservative");
    irtools follows eager semantics, where a view moves no data until something copies it."""
    for name in ("query", "key", "value"):
        e = entry(seed_prefill, f"{name} = self._split_heads(")
        assert e.kernel_type == "basic" and e.flops == 0
        seed_read = seed_expr("batch_size*seq_len*hidden_size*a_bytes")
        assert seed_read != 0 and e.bytes_read == 0 and e.bytes_written == 0
        assert [s.code for s in e.sub_entries] == ["tensor = tensor.view(new_shape)", "return tensor.permute(0, 2, 1, 3)"]


def test_cache_concats_in_decode(seed_decode, seed_prefill):
    for name in ("key", "value"):
        e = entry(seed_decode, f"{name} = torch.cat((past_{name}, {name}), dim=-2)")
        assert e.kernel_type == "basic" and e.flops == 0
        assert ours(e.bytes_read) == seed_expr("batch_size*num_heads*(cache_len + seq_len)*head_dim*a_bytes")
        assert ours(e.bytes_written) == seed_expr("batch_size*num_heads*(cache_len + seq_len)*head_dim*a_bytes")
        assert e.bytes_written.has(sym("kv_bytes"))  # the cache is costed at KV precision
        assert not [x for x in seed_prefill.lines.entries if "torch.cat" in x.code]


def test_attn_line_and_its_sub_lines(seed_decode):
    e = entry(seed_decode, "self._attn(query, key, value")
    assert e.kernel_type == "basic"
    # seed total with the optional attention-mask add: 4·B·H·S·kv·D + 6·B·H·S·kv. The default
    # path passes no attention_mask, so one add per score less (see the next test).
    seed = seed_expr("4*batch_size*num_heads*seq_len*kv_len*head_dim + 6*batch_size*num_heads*seq_len*kv_len")
    assert e.flops == seed - seed_expr("batch_size*num_heads*seq_len*kv_len")
    subs = {s.code.split("=")[0].strip(): s for s in e.sub_entries}
    assert subs["attn_weights"].line  # sub-lines carry their own line numbers
    per_line = [s.flops for s in e.sub_entries]
    assert sympy.expand(sum(per_line)) == e.flops
    qk = next(s for s in e.sub_entries if "torch.matmul(query" in s.code)
    assert qk.flops == seed_expr("2*batch_size*num_heads*seq_len*kv_len*head_dim")
    sm = next(s for s in e.sub_entries if "softmax" in s.code)
    assert sm.flops == seed_expr("3*batch_size*num_heads*seq_len*kv_len")
    drop = next(s for s in e.sub_entries if "attn_dropout" in s.code)
    assert drop.kernel_type == "composite" and drop.flops_formula.startswith("${torch.nn.modules.dropout.Dropout}(")
    # Named difference in bytes: every eager intermediate goes through memory (4 reads of the
    # scores: scale, where, softmax, ·V), and the causal mask is a bool (1, 1, S, kv) buffer
    # read once at 1 byte, not a B·H·S·kv activation-precision tensor as in the seed.
    read = seed_expr(
        "batch_size*num_heads*seq_len*head_dim*a_bytes + 2*batch_size*num_heads*kv_len*head_dim*a_bytes"
        " + 4*batch_size*num_heads*seq_len*kv_len*a_bytes"
    ) + S * (C + S) + 2 * A
    assert ours(e.bytes_read) == sympy.expand(read)


def test_attention_mask_adds_the_seeds_sixth_flop():
    module = GPT2Attention().eval()
    x, mask = torch.randn(3, 5, 768), torch.zeros(3, 1, 5, 5)
    dims = {"hidden_states": {0: "batch_size", 1: "seq_len"}, "attention_mask": {0: "batch_size", 2: "seq_len", 3: "seq_len"}}
    result = analyze_module(module, (x,), {"attention_mask": mask}, dims)
    e = entry(result, "self._attn(query, key, value")
    assert e.flops == seed_expr("4*batch_size*num_heads*seq_len*kv_len*head_dim + 6*batch_size*num_heads*seq_len*kv_len").subs(C, 0)


def test_merge_heads_copies(seed_prefill):
    e = entry(seed_prefill, "self._merge_heads(")
    assert e.kernel_type == "basic" and e.flops == 0
    assert e.bytes_read == e.bytes_written == seed_expr("batch_size*seq_len*hidden_size*a_bytes")


def test_c_proj_and_resid_dropout(seed_prefill):
    e = entry(seed_prefill, "self.c_proj(attn_output)")
    assert e.kernel_type == "composite"
    assert e.flops_formula == "${models.gpt2_attention.Conv1D}(batch_size, seq_len, 768, 768)"
    assert e.flops == seed_expr("2*batch_size*seq_len*hidden_size*hidden_size + batch_size*seq_len*hidden_size")
    d = entry(seed_prefill, "self.resid_dropout(attn_output)")
    assert d.kernel_type == "composite"
    assert d.flops_formula == "${torch.nn.modules.dropout.Dropout}(batch_size, seq_len, 768)"
    assert d.flops == d.bytes_read == d.bytes_written == 0  # identity in eval, as the seed notes


def test_line_order_and_json(seed_decode):
    lines = [e.line for e in seed_decode.lines.entries]
    assert lines == sorted(lines) and len(lines) == 10  # the seed's ten kernels
    report = seed_decode.to_dict()
    k = report["lines"]["kernels"][0]
    assert k["kernel_type"] == "composite" and k["flops"].startswith("${") and "flops_expanded" in k
    assert report["schema"] == "irtools.report/1" and report["lines"]["class_name"].endswith("GPT2Attention")
