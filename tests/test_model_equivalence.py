"""models/ GPT2Attention computes what transformers' GPT2Attention (eager) computes."""

import pytest
import torch

from models.gpt2_attention import GPT2Attention, GPT2Config
from tests.conftest import causal_additive_mask


def _copy_weights(ours: GPT2Attention, theirs) -> None:
    with torch.no_grad():
        for name in ("c_attn", "c_proj"):
            getattr(ours, name).weight.copy_(getattr(theirs, name).weight)
            getattr(ours, name).bias.copy_(getattr(theirs, name).bias)


@pytest.mark.parametrize("batch,seq", [(1, 7), (3, 16)])
def test_prefill_matches_transformers(hf_attention, batch, seq):
    theirs, _ = hf_attention
    ours = GPT2Attention(GPT2Config(n_positions=256)).eval()
    _copy_weights(ours, theirs)
    x = torch.randn(batch, seq, 768)
    expected = theirs(x, attention_mask=causal_additive_mask(batch, seq, seq))[0]
    got, present = ours(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert present[0].shape == (batch, 12, seq, 64)


def test_decode_with_cache_equals_full_prefill():
    """Cached decode of the last tokens equals the same rows of a full prefill."""
    torch.manual_seed(1)
    m = GPT2Attention(GPT2Config(n_positions=64)).eval()
    x = torch.randn(2, 10, 768)
    full, _ = m(x)
    _, (k, v) = m(x[:, :7].contiguous())
    step, (k2, _) = m(x[:, 7:].contiguous(), layer_past=(k, v))
    torch.testing.assert_close(step, full[:, 7:], rtol=1e-5, atol=1e-5)
    assert k2.shape[2] == 10
