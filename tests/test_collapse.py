"""Layer collapse is exact: a model analyzed from three traced blocks repeated ``num_layers``
times gives the same figures as the full trace — totals, modules, kernel launches, kernel
FLOPs and bytes, time, and time per source line — in every fusion mode, prefill and decode."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

pytest.importorskip("transformers")

from irtools import analyze  # noqa: E402
from irtools.pipeline import kernels_on  # noqa: E402
from irtools.report import kernels_report  # noqa: E402

CONFIGS = {
    "llama": {"model_type": "llama", "num_hidden_layers": 5, "hidden_size": 64, "intermediate_size": 160,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256},
    "gpt2": {"model_type": "gpt2", "n_layer": 5, "n_embd": 64, "n_head": 4, "vocab_size": 300, "n_positions": 256},
}
BINDINGS = {"prefill": {"batch_size": 2, "seq_len": 48}, "decode": {"batch_size": 3, "seq_len": 1, "cache_len": 70}}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """(full, collapsed) results per (model, scenario), each captured once."""
    out = {}
    for name, fields in CONFIGS.items():
        path = tmp_path_factory.mktemp(name) / "config.json"
        path.write_text(json.dumps(fields))
        for scenario, bindings in BINDINGS.items():
            full = analyze(str(path), scenario, bindings, collapse_layers=False)
            collapsed = analyze(str(path), scenario, bindings, collapse_layers=True)
            assert collapsed.ir.meta.collapse is not None and full.ir.meta.collapse is None
            out[name, scenario] = full, collapsed
    return out


def _by_line(report) -> dict[str, float]:
    acc: dict[str, float] = defaultdict(float)
    for row in report["time_by_line"]:
        acc[row["line"]] += row["time_s"]["value"]
    return acc


@pytest.mark.parametrize("mode", ["eager", "fused", "flash"])
@pytest.mark.parametrize("key", [(m, s) for m in CONFIGS for s in BINDINGS], ids=lambda k: "-".join(k))
def test_collapsed_equals_full(pairs, key, mode):
    full, collapsed = pairs[key]
    assert collapsed.evaluate() == pytest.approx(full.evaluate(), rel=1e-12)
    assert collapsed.value(collapsed.modules.flops) == pytest.approx(full.value(full.modules.flops), rel=1e-12)
    reports = [kernels_report(kernels_on(r, "a100-sxm-80gb", mode)[1]) for r in (full, collapsed)]
    want, got = reports
    assert got["kernel_totals"]["count"] == want["kernel_totals"]["count"]
    assert len(got["kernels"]) < len(want["kernels"])  # fewer distinct kernels, more launches each
    for cost in ("flops", "bytes"):
        assert got["kernel_totals"][cost]["value"] == pytest.approx(want["kernel_totals"][cost]["value"], rel=1e-12)
    assert got["time_s"]["value"] == pytest.approx(want["time_s"]["value"], rel=1e-12)
    lines_want, lines_got = _by_line(want), _by_line(got)
    assert lines_got.keys() == lines_want.keys()
    for line, value in lines_want.items():
        assert lines_got[line] == pytest.approx(value, rel=1e-9), line
    assert any(k.get("repeat", 1) == CONFIGS[key[0]].get("num_hidden_layers", CONFIGS[key[0]].get("n_layer")) - 2
               for k in got["kernels"])


def test_collapse_is_the_default(pairs):
    full, _ = pairs["gpt2", "prefill"]
    default = analyze("gpt2", "prefill", {"seq_len": 32})
    assert default.ir.meta.collapse is not None and default.ir.meta.collapse.num_layers == 12
