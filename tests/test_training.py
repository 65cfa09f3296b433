"""The train scenario: the joint forward+backward graph against FlopCounterMode on a real
``loss.backward()``, phases and their mapping to forward lines, gradients as outputs, the
step's memory against MemTracker over a real AdamW step, micro-batches, time and MFU."""

from __future__ import annotations

import pytest
import sympy

from tests.training_models import POINTS, analyze, captured, real_flops, real_memory

pytest.importorskip("transformers")


def matmul_fwd_bwd(result):
    phases = result.training.phases
    return sympy.expand(phases["forward"]["matmul_flops"] + phases["backward"]["matmul_flops"])


@pytest.fixture(scope="module")
def gpt2():
    return analyze("gpt2")


@pytest.fixture(scope="module")
def cnn():
    return analyze("cnn")


def _check_flops(name, result):
    recipe, _ = captured(name)
    formula = matmul_fwd_bwd(result)
    assert formula.free_symbols == {sympy.Symbol("batch_size", positive=True, integer=True),
                                    sympy.Symbol("seq_len", positive=True, integer=True)} or formula.free_symbols
    for b, s in POINTS:
        assert result.value(formula, {"batch_size": b, "seq_len": s}) == real_flops(recipe, b, s), (name, b, s)


def test_gpt2_forward_backward_matmul_flops_equal_flop_counter(gpt2):
    _check_flops("gpt2", gpt2)


def test_cnn_forward_backward_matmul_flops_equal_flop_counter(cnn):
    _check_flops("cnn", cnn)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "bert"])
def test_hf_forward_backward_matmul_flops_equal_flop_counter(name):
    _check_flops(name, analyze(name))


def test_backward_is_twice_the_forward_matmuls(gpt2):
    """Every matmul has two in the backward (input and weight gradients); the embedding
    lookup has none: backward matmul FLOPs = 2 x forward, symbolically."""
    phases = gpt2.training.phases
    assert sympy.expand(phases["backward"]["matmul_flops"] - 2 * phases["forward"]["matmul_flops"]) == 0


def test_every_node_has_a_phase_and_backward_nodes_their_forward_line(gpt2):
    ir = gpt2.ir
    phases = {a.phase for _, a in ir.nodes()}
    assert phases == {"forward", "backward", "optimizer"}
    backward = [(n, a) for n, a in ir.nodes() if a.phase == "backward"]
    mapped = [(n, a) for n, a in backward if a.grad_of]
    assert len(mapped) == len(backward)
    for _n, a in mapped:
        fwd = ir.node(a.grad_of)
        assert fwd.phase == "forward"
        assert a.source == fwd.source and a.scope == fwd.scope
    # the weight gradient of c_attn (mm) sits on the line of the forward addmm it differentiates
    mm = [a for _, a in mapped if a.op.startswith("aten.mm") and ir.node(a.grad_of).module.endswith("h.0.attn.c_attn")]
    assert len(mm) == 2 and all(a.module == "transformer.h.0.attn.c_attn" for a in mm)


def test_line_and_module_tables_split_by_phase(gpt2):
    tr = gpt2.training
    root = gpt2.ir.meta.modules.nodes[""]
    total = sympy.expand(sum(tr.modules[""].values()))
    assert sympy.expand(total - root["flops"]) == 0
    block = tr.modules["transformer.h.0"]
    assert set(block) == {"forward", "backward", "optimizer"}
    for entry in gpt2.lines.entries:  # the phases of a line add up to its FLOPs
        split = tr.lines[str(entry.line)]
        assert sympy.expand(sum(split.values(), sympy.Integer(0)) - entry.flops) == 0, entry.line


def test_gradients_are_graph_outputs_one_per_trainable_parameter(gpt2):
    info = gpt2.ir.meta.training
    outputs = gpt2.ir.meta.output_values
    assert outputs[0] == info.loss
    assert set(info.gradients.values()) <= set(outputs)
    recipe, _ = captured("gpt2")
    trainable = sum(p.numel() for p in recipe.module.parameters())  # tied embedding counted once
    assert gpt2.value(gpt2.training.params) == trainable
    for param, grad in info.gradients.items():
        assert gpt2.ir.values[grad].spec.shape == gpt2.ir.values[param].spec.shape


def test_peak_memory_within_5_percent_of_mem_tracker_parts_exact(gpt2):
    recipe, _ = captured("gpt2")
    b, s = 4, 32
    real = real_memory(recipe, b, s)
    bindings = {"batch_size": b, "seq_len": s}
    mem = gpt2.training.memory
    assert gpt2.value(mem.totals["parameters"], bindings) == real["PARAM"]
    assert gpt2.value(mem.totals["optimizer_states"], bindings) == real["OPT"]  # moments + 4-byte step counters
    assert gpt2.value(mem.totals["gradients"], bindings) == real["GRAD_AFTER_BACKWARD"]
    peak = gpt2.value(mem.peak, bindings)
    assert abs(peak - real["Total"]) <= 0.05 * real["Total"], (peak, real)


def test_cnn_peak_memory_within_5_percent_of_mem_tracker(cnn):
    recipe, _ = captured("cnn")
    b, s = 8, 16
    real = real_memory(recipe, b, s)
    bindings = {"batch_size": b, "seq_len": s}
    mem = cnn.training.memory
    assert cnn.value(mem.totals["parameters"], bindings) == real["PARAM"]
    assert cnn.value(mem.totals["optimizer_states"], bindings) == real["OPT"]
    peak = cnn.value(mem.peak, bindings)
    assert abs(peak - real["Total"]) <= 0.05 * real["Total"], (peak, real)


def test_micro_batches_accumulate_gradients_and_hold_them():
    one, four = analyze("cnn"), analyze("cnn", micro_batches=4)
    t1, t4 = one.training, four.training
    params = t1.params
    assert sympy.expand(t4.model_flops - 4 * t1.model_flops) == 0
    assert sympy.expand(t4.step_flops - (4 * t1.model_flops + 3 * params + t1.phases["optimizer"]["flops"])) == 0
    assert sympy.expand(t4.tokens - 4 * t1.tokens) == 0
    # gradients held from the first step (accumulated from the previous micro-batch)
    first = t4.memory.breakdown(0)
    assert sympy.expand(first["gradients"] - t4.memory.totals["gradients"]) == 0
    assert t1.memory.breakdown(0)["gradients"] == 0


def test_step_time_tokens_and_mfu_on_a_target():
    r = analyze("gpt2", target="h100-sxm", mode="fused", bindings={"batch_size": 16, "seq_len": 64})
    tr = r.training
    times = {k: r.value(v) for k, v in tr.time.items()}
    assert times["step"] == pytest.approx(times["forward"] + times["backward"] + times["optimizer"])
    assert times["step"] == pytest.approx(r.roofline.value)  # every kernel belongs to one phase
    peak = r.roofline.target.peak("fp32")
    assert r.value(tr.mfu) == pytest.approx(r.value(tr.model_flops) / (times["step"] * peak))
    assert r.value(tr.tokens_per_s) == pytest.approx(16 * 64 / times["step"])
    report = r.to_dict()["training"]
    assert report["time"]["mfu"]["value"] == pytest.approx(r.value(tr.mfu))
    assert {n["phase"] for n in r.to_dict()["nodes"]} == {"forward", "backward", "optimizer"}


def test_exports_show_phases(gpt2):
    from irtools.export.html import render_html
    from irtools.export.text import render_csv, render_markdown, render_table

    report = gpt2.to_dict()
    table = render_table(report)
    assert "fwd FLOPs" in table and "bwd FLOPs" in table and "training:" in table and "saved activations" in table
    md = render_markdown(report)
    assert "## Training step" in md and "| fwd FLOPs | bwd FLOPs |" in md.replace(" optim FLOPs |", "")
    csv = render_csv(report)
    assert "\nphase,line:" in csv and "\nphase,module:transformer.h.0,backward" in csv
    html = render_html(report)
    assert 'id="training"' in html and "FLOPs per phase" in html and "Lines by phase" in html


@pytest.mark.slow
def test_cli_train_collapsed_equals_full_trace(tmp_path):
    """``irtools analyze --scenario train`` on a 5-layer config traces three blocks and counts
    five: FLOPs, bytes, time and memory parts equal a full trace's (the peak within 1 %); the
    sweep gets step time, tokens/s and MFU columns."""
    import json

    from irtools.cli import main
    from irtools.pipeline import Options, run

    cfg = tmp_path / "tiny-llama.json"
    cfg.write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 5, "hidden_size": 32, "num_attention_heads": 4,
                               "num_key_value_heads": 2, "intermediate_size": 48, "vocab_size": 101}))
    out = tmp_path / "r.json"
    args = [str(cfg), "--scenario", "train", "--target", "h100-sxm", "--mode", "fused", "--dim", "batch_size=4",
            "--dim", "seq_len=64"]
    assert main(["analyze", *args, "--format", "json", "-o", str(out)]) == 0
    collapsed = json.loads(out.read_text())
    assert collapsed["collapsed"]["num_layers"] == 5
    full = run(Options(model=str(cfg), scenario="train", collapse_layers=False, target="h100-sxm", mode="fused",
                       bindings={"batch_size": 4, "seq_len": 64})).to_dict()
    a, b = collapsed["training"], full["training"]
    for key in ("model", "step"):
        assert a["flops"][key]["value"] == b["flops"][key]["value"]
    for phase in ("forward", "backward", "optimizer"):
        assert a["time"][phase]["value"] == pytest.approx(b["time"][phase]["value"])
    for cat in ("parameters", "gradients", "optimizer_states", "saved_activations"):
        assert a["memory"]["totals"][cat]["value"] == b["memory"]["totals"][cat]["value"]
    assert a["memory"]["peak"]["value"] == pytest.approx(b["memory"]["peak"]["value"], rel=0.01)
    sweep = tmp_path / "s.csv"
    assert main(["sweep", *args, "--grid", "batch_size=2,4", "--targets", "h100-sxm", "-o", str(sweep)]) == 0
    rows = sweep.read_text().splitlines()
    assert rows[0].startswith("batch_size,time_s[h100-sxm],tokens_per_s[h100-sxm],mfu[h100-sxm],peak_bytes")
    assert float(rows[2].split(",")[1]) == pytest.approx(a["time"]["step"]["value"], rel=1e-6)
