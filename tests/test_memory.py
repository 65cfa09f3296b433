"""Peak memory from tensor lifetimes (passes/memory.py, passes/python_refs.py).

Differential: the symbolic peak, evaluated (never re-traced), against MemTracker running the
real model on CPU; hand-computed KV-cache and weight bytes; kernel-level memory; reports."""

import json

import pytest
import sympy
import torch
from torch import nn

pytest.importorskip("transformers")
from torch.distributed._tools.mem_tracker import MemTracker  # noqa: E402

from irtools import analyze_module  # noqa: E402
from irtools.ir.symbols import sym  # noqa: E402
from irtools.pipeline import Options, run  # noqa: E402
from irtools.recipes import hf  # noqa: E402
from passes.fusion import build_kernels  # noqa: E402
from passes.memory import memory  # noqa: E402

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 101, "n_positions": 4096}
LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 101}
POINTS = ((1, 8), (2, 32), (3, 64))  # (batch, sequence length or image side)
B, S = sym("batch_size"), sym("seq_len")


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = self.features(x)
        x = self.pool(x).flatten(1)
        return self.head(x)


def lm(fields):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf.make_config(fields, attn="eager")).eval()


@pytest.fixture(scope="module")
def models():
    """name -> (model, result, inputs(b, s), bindings(b, s)); each captured once."""
    out = {}
    for name, fields in (("gpt2", GPT2), ("llama", LLAMA)):
        model = lm(fields)
        result = analyze_module(model, (), {"input_ids": torch.zeros(3, 5, dtype=torch.long), "use_cache": False},
                                {"input_ids": {0: "batch_size", 1: "seq_len"}})
        out[name] = (model, result, lambda b, s: {"input_ids": torch.randint(0, 101, (b, s)), "use_cache": False},
                     lambda b, s: {"batch_size": b, "seq_len": s})
    torch.manual_seed(0)
    cnn = SmallCNN().eval()
    result = analyze_module(cnn, (torch.randn(2, 3, 32, 32),), dims={"x": {0: "batch_size", 2: "height", 3: "width"}})
    out["cnn"] = (cnn, result, lambda b, s: {"x": torch.randn(b, 3, s, s)},
                  lambda b, s: {"batch_size": b, "height": s, "width": s})
    return out


def tracked_peak(model, make_inputs) -> int:
    """MemTracker's peak over one no-grad forward; inputs are made inside, as the graph counts them."""
    tracker = MemTracker()
    tracker.track_external(model)
    with torch.no_grad(), tracker:
        model(**make_inputs())
    return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


@pytest.mark.parametrize("name", ["gpt2", "llama", "cnn"])
def test_eager_peak_matches_memtracker(models, name):
    model, result, inputs, binds = models[name]
    mem = result.memory
    assert mem.mode == "eager" and mem.lifetimes == "python"
    for b, s in POINTS:
        measured = tracked_peak(model, lambda b=b, s=s: inputs(b, s))
        predicted = result.value(mem.peak, binds(b, s))  # the symbolic peak, evaluated
        assert abs(predicted / measured - 1) < 0.05, (name, b, s, predicted, measured)
    params = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights once
    assert result.value(mem.held["weights"]) == params


def test_graph_lifetimes_match_the_exported_program(models):
    """A compiled graph frees after the last use: MemTracker on the exported program itself."""
    model, result, inputs, binds = models["llama"]
    mem = memory(result.ir, python_refs=False)
    program = result.ir.meta.exported_program.module()
    for b, s in POINTS:
        measured = tracked_peak(program, lambda b=b, s=s: inputs(b, s))
        assert abs(result.value(mem.peak, binds(b, s)) / measured - 1) < 0.01
    eager = result.value(result.memory.peak, binds(3, 64))
    assert result.value(mem.peak, binds(3, 64)) < eager  # Python's references hold tensors longer


def test_peak_names_its_node_and_largest_tensors(models):
    _, result, _, binds = models["gpt2"]
    from passes.memory import summarize

    info = summarize(result.memory, result.ir, {**result.bindings, **binds(4, 64)})
    assert info.bytes == result.value(result.memory.peak, binds(4, 64))
    assert sum(info.breakdown.values()) == info.bytes
    assert result.ir.node(info.node).module.endswith("mlp.act")  # GELU's temporaries, as MemTracker sees
    sizes = [t.bytes for t in info.largest]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 4096 * 64 * 4  # wpe: n_positions·hidden fp32
    transient = [t.bytes for t in info.largest if t.category in ("activations", "temporaries")]
    assert transient[0] == 4 * 64 * 256 * 4  # c_fc's output, b·s·4h fp32 (and the scores, b·h·s·s)
    made = [t for t in info.largest if t.node is not None]
    assert made and all(t.source is not None and t.source.line > 0 for t in made)


def test_flash_drops_the_score_tensor(models):
    _, result, _, _ = models["gpt2"]
    ir = result.ir
    at = {"batch_size": 1, "seq_len": 4096, "a_bytes": 2, "w_bytes": 2}
    eager = result.value(memory(ir, python_refs=False).peak, at)
    flash = result.value(memory(ir, build_kernels(ir, "flash")).peak, at)
    scores = 1 * 4 * 4096 * 4096 * 2  # one layer's S×S scores: batch·heads·S²·a_bytes
    assert eager - flash >= scores
    fused = memory(ir, build_kernels(ir, "fused"))
    materialized = {s.id for s in fused.storages}
    for k in build_kernels(ir, "fused").kernels:  # made and read inside one kernel: never stored
        for n in k.nodes[:-1]:
            readers = {c for c, _ in ir.uses().get(n, [])}
            if readers and readers <= set(k.nodes) and n not in (ir.meta.output_values or []):
                assert n not in materialized


def test_report_and_exports(models, tmp_path):
    _, result, _, _ = models["gpt2"]
    report = result.to_dict()
    m = report["memory"]
    assert m["peak"]["value"] == result.value(result.memory.peak)
    assert m["at_peak"]["node"] and len(m["timeline"]["steps"]) == len(result.memory.steps)
    assert sum(m["timeline"]["steps"][m["at_peak"]["step"]]["bytes"]) == m["peak"]["value"]
    json.dumps(m)
    from irtools.export import EXPORTERS
    from irtools.export.text import render_table

    assert "peak memory:" in render_table(report)
    html = EXPORTERS["html"](result, tmp_path / "r.html")[0].read_text()
    assert 'id="memory"' in html and html.count("data-step=") == len(result.memory.steps)
    assert m["at_peak"]["node"] in html
    pytest.importorskip("matplotlib")
    paths = EXPORTERS["memory-chart"](report, tmp_path / "mem.png")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)


@pytest.fixture(scope="module")
def decode(tmp_path_factory):
    """Llama-style GQA decode and the same with a sliding window of 16: captured once each."""
    folder = tmp_path_factory.mktemp("configs")
    out = {}
    for name, window in (("llama", None), ("window", 16)):
        fields = {**LLAMA, "model_type": "mistral", "sliding_window": window} if window else LLAMA
        (folder / f"{name}.json").write_text(json.dumps(fields))
        out[name] = run(Options(str(folder / f"{name}.json"), "decode", collapse_layers=False))
    return out


@pytest.mark.parametrize("name", ["llama", "window"])
def test_decode_kv_cache_bytes_exact(decode, name):
    result = decode[name]
    layers, kv_heads, head_dim, kv = 2, 2, 16, sym("kv_bytes")
    cache = sym("cache_len") if name == "llama" else sympy.Min(sym("cache_len"), 15)  # the window keeps W - 1
    per_token = 2 * layers * kv_heads * head_dim * kv * B
    assert result.ir.meta.kv_cache == "copy"  # eager HF: the input cache and a concatenated new one
    assert sympy.expand(result.memory.held["kv_cache"] - per_token * (2 * cache + S)) == 0
    result.ir.meta.kv_cache = "static"  # serving: written in place into a cache of cache_len + seq_len
    try:
        static = memory(result.ir, build_kernels(result.ir, "flash"))
    finally:
        result.ir.meta.kv_cache = "copy"
    assert sympy.expand(static.held["kv_cache"] - per_token * (cache + S)) == 0


@pytest.mark.slow
def test_collapsed_equals_full(tmp_path):
    """Three traced blocks standing for five: every memory figure equals the full trace's."""
    path = tmp_path / "llama5.json"
    path.write_text(json.dumps({**LLAMA, "num_hidden_layers": 5}))
    full = run(Options(str(path), "decode", collapse_layers=False))
    collapsed = run(Options(str(path), "decode"))
    assert collapsed.ir.meta.collapse is not None and full.ir.meta.collapse is None
    pairs = [(full.memory, collapsed.memory)]  # eager, Python lifetimes, copied cache
    for r in (full, collapsed):
        r.ir.meta.kv_cache = "static"
    pairs.append((memory(full.ir, build_kernels(full.ir, "flash")), memory(collapsed.ir, build_kernels(collapsed.ir, "flash"))))
    for f, c in pairs:
        for cat in ("weights", "kv_cache"):
            assert sympy.expand(c.held[cat] - f.held[cat]) == 0
        for b, cache in ((1, 5), (3, 100), (8, 4000)):
            at = {"batch_size": b, "cache_len": cache}
            assert collapsed.value(c.peak, at) == full.value(f.peak, at)
