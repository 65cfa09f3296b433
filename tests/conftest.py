"""Session fixtures: every model is captured once per test session."""

from __future__ import annotations

import pytest
import torch

from irtools import analyze, analyze_module


@pytest.fixture(scope="session")
def seed_prefill():
    return analyze("gpt2-attention", "prefill")


@pytest.fixture(scope="session")
def seed_decode():
    return analyze("gpt2-attention", "decode")


@pytest.fixture(scope="session")
def hf_gpt2_config():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_positions=256)
    cfg._attn_implementation = "eager"
    return cfg


def causal_additive_mask(batch: int, q: int, kv: int) -> torch.Tensor:
    """The additive causal mask transformers 5 builds outside the attention module."""
    mask = torch.full((q, kv), torch.finfo(torch.float32).min).triu(kv - q + 1)
    return mask[None, None].expand(batch, 1, q, kv).contiguous()


@pytest.fixture(scope="session")
def hf_attention(hf_gpt2_config):
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

    torch.manual_seed(0)
    module = GPT2Attention(hf_gpt2_config, layer_idx=0).eval()
    x = torch.randn(3, 5, hf_gpt2_config.n_embd)
    dims = {"hidden_states": {0: "batch_size", 1: "seq_len"}, "attention_mask": {0: "batch_size", 2: "seq_len", 3: "seq_len"}}
    result = analyze_module(module, (x,), {"attention_mask": causal_additive_mask(3, 5, 5)}, dims)
    return module, result


@pytest.fixture(scope="session")
def hf_lm(hf_gpt2_config):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(hf_gpt2_config).eval()
    ids = torch.randint(0, hf_gpt2_config.vocab_size, (3, 5))
    result = analyze_module(model, (ids,), {"use_cache": False}, {"input_ids": {0: "batch_size", 1: "seq_len"}})
    return model, result
