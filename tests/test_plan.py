"""`irtools plan`: what it returns fits, what it drops does not beat it; decode curves; expert
parallelism; the command line."""

import json

import numpy as np
import pytest
import sympy

pytest.importorskip("transformers")
from irtools.cli import main  # noqa: E402
from irtools.ir.symbols import sym  # noqa: E402
from irtools.plan import PlanOptions, device_model_for  # noqa: E402
from passes.parallel.device import Layout  # noqa: E402
from passes.parallel.ep import ep_collectives  # noqa: E402
from passes.parallel.plan import enumerate_layouts, evaluate_layout, evaluate_layouts, search  # noqa: E402

LLAMA = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 8,
         "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 128, "tie_word_embeddings": False}
MIXTRAL = {"model_type": "mixtral", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
           "intermediate_size": 48, "vocab_size": 128, "num_key_value_heads": 2, "num_experts_per_tok": 2,
           "num_local_experts": 4, "tie_word_embeddings": False}


def _config(tmp_path_factory, name, fields) -> str:
    folder = tmp_path_factory.mktemp(name)
    (folder / "config.json").write_text(json.dumps(fields))
    return str(folder / "config.json")


@pytest.fixture(scope="module")
def llama_cfg(tmp_path_factory):
    return _config(tmp_path_factory, "llama", LLAMA)


@pytest.fixture(scope="module")
def train_model(llama_cfg):
    return device_model_for(PlanOptions(llama_cfg, "h100-sxm", 8, "train", seq_len=64))


@pytest.fixture(scope="module")
def decode_model(llama_cfg):
    return device_model_for(PlanOptions(llama_cfg, "h100-sxm", 8, "decode", context=256))


def _memory(values: dict, layout: Layout) -> float:
    roles = ["first", "last"] + (["middle"] if layout.pp > 2 else [])
    return max(values[r]["memory"]["total"] for r in roles)


def _reserve_for_median(model, devices, batch):
    layouts, _ = enumerate_layouts(model, devices, batch)
    ev = evaluate_layouts(model, layouts)
    mem = [_memory(ev[i], lay) for i, lay in enumerate(layouts)]
    return 1 - float(np.median(mem)) / model.target.memory_size


@pytest.mark.parametrize("objective", ["throughput", "latency"])
def test_returned_layouts_fit_and_no_dropped_fitting_layout_is_better(train_model, objective):
    reserve = _reserve_for_median(train_model, 8, 64)  # half the layouts do not fit
    result = search(train_model, 8, objective, batch=64, reserve=reserve)
    ev = result.evaluation
    assert result.ranked and len(result.ranked) < len(ev)
    mem = [_memory(ev[i], lay) for i, lay in enumerate(ev.layouts)]
    score = ev.column("step", "tokens_per_s") if objective == "throughput" else -ev.column("step", "time")
    fitting = {i for i in range(len(ev)) if mem[i] <= result.budget}
    assert set(result.ranked) == fitting
    assert score[result.ranked[0]] == max(score[i] for i in fitting)
    assert [score[i] for i in result.ranked] == sorted((score[i] for i in fitting), reverse=True)
    for i in list(range(0, len(ev), max(1, len(ev) // 40))) + result.ranked[:5]:
        alone = evaluate_layout(train_model, ev.layouts[i])  # evaluated on its own, not among all layouts
        assert (_memory(alone, ev.layouts[i]) <= result.budget) == (i in fitting)
        assert alone["step"]["tokens_per_s"] == pytest.approx(ev[i]["step"]["tokens_per_s"], rel=1e-12)


def test_layouts_respect_shapes_and_devices(train_model):
    layouts, skipped = enumerate_layouts(train_model, 16, 64)
    assert all(lay.devices == 16 and 8 % lay.tp == 0 and lay.pp <= 4 for lay in layouts)
    assert "tp=16" in skipped and "pp=8" in skipped  # 8 heads; 4 layers
    assert all(lay.micro_batch * lay.micro_batches * lay.dp == 64 for lay in layouts)
    assert {lay.zero for lay in layouts} == {0, 1, 2, 3} and {lay.recompute for lay in layouts} == {"none", "selective", "full"}


def test_train_memory_from_the_sharded_joint_graph(train_model):
    """At pp = 1 a layout's training memory is the largest candidate peak of one rank's joint
    graph (weights, gradients and AdamW states split by tp), ZeRO-1 dividing the states by dp."""
    joint = train_model.joint
    assert joint is not None and joint.plan.tp.columns  # the joint graph was captured and sharded
    at = {sym("tp"): 2, sym("batch_size"): 4, sym("seq_len"): 64, sym("w_bytes"): 2, sym("a_bytes"): 2,
          sym("kv_bytes"): 2}
    peaks = [float(sympy.Add(*c.values()).xreplace(at)) for c in joint.steps[0]]
    plain, zero1 = evaluate_layouts(train_model, [Layout(tp=2, micro_batch=4), Layout(tp=2, dp=2, micro_batch=4, zero=1)])
    assert plain["first"]["memory"]["total"] == pytest.approx(max(peaks))
    states = float(joint.values()["joint.totals.optimizer"].xreplace(at))
    assert zero1["first"]["memory"]["optimizer"] == pytest.approx(states / 2)
    assert plain["first"]["memory"]["weights"] == pytest.approx(2 * plain["first"]["params"])  # bf16 parameters


def test_recompute_trades_memory_for_time(train_model):
    lays = [Layout(tp=2, pp=2, dp=2, micro_batch=4, micro_batches=8, recompute=r) for r in ("none", "selective", "full")]
    none, _, full = evaluate_layouts(train_model, lays)
    assert full["first"]["memory"]["activations"] < none["first"]["memory"]["activations"]
    assert full["step"]["time"] > none["step"]["time"]
    # full recompute repeats exactly one forward of the stage's layers
    extra = full["first"]["compute"] - none["first"]["compute"]
    layers = full["stages"]["first"]
    v = train_model.values(False)
    at = {sym("tp"): 2, sym("ep"): 1, sym("batch_size"): 4}
    assert extra == pytest.approx(layers * float(v["layer.compute"].xreplace(at)))


def test_many_layouts_at_once(train_model):
    import time

    layouts, _ = enumerate_layouts(train_model, 1024, 4096)
    assert len(layouts) > 800
    start = time.perf_counter()
    ev = evaluate_layouts(train_model, layouts * 4)
    assert time.perf_counter() - start < 30  # vectorized: thousands of layouts in seconds (about 0.3 s here)
    assert np.all(np.isfinite(ev.column("step", "time")))


def test_decode_throughput_by_batch_up_to_the_memory_limit(decode_model):
    lays = [Layout(tp=2, pp=2, dp=2, micro_batch=b, micro_batches=2) for b in (1, 2, 4, 8, 16, 32, 64)]
    ev = evaluate_layouts(decode_model, lays)
    tps = ev.column("step", "tokens_per_s")
    tpot = ev.column("step", "latency")
    kv = [ev[i]["first"]["memory"]["kv_cache"] for i in range(len(lays))]
    assert np.all(np.diff(tps) > 0) and np.all(np.diff(tpot) > 0)
    # the KV cache held: 2 (k, v) x layers on the stage x kv heads / tp x head_dim x (context + 1) x 2 bytes,
    # for the pp micro-batches in flight
    stage_layers = ev[0]["stages"]["first"]
    for b, held in zip((1, 2, 4, 8, 16, 32, 64), kv):
        assert held == pytest.approx(2 * stage_layers * (4 / 2) * 8 * 257 * 2 * b * 2)
    budget = _memory(ev[3], lays[3])
    result = search(decode_model, 8, "throughput", reserve=1 - budget / decode_model.target.memory_size)
    best = result.best()
    assert _memory(evaluate_layout(decode_model, best), best) <= result.budget
    bigger = Layout(best.tp, best.pp, best.dp, best.ep, best.micro_batch * 2, best.micro_batches)
    assert _memory(evaluate_layout(decode_model, bigger), bigger) > result.budget


@pytest.mark.slow
def test_expert_parallel(tmp_path_factory):
    model = device_model_for(PlanOptions(_config(tmp_path_factory, "moe", MIXTRAL), "h100-sxm", 8, "prefill", seq_len=16))
    assert len(model.ep.layers) == 2 and model.ep.experts == 4
    a2a = ep_collectives(model.ir, model.ep)
    rows = 2 * sym("batch_size") * sym("seq_len")  # tokens x num_experts_per_tok
    assert len(a2a) == 2 * 2 * 2  # dispatch + combine, forward + backward, per layer
    assert all(sympy.expand(c.nbytes - rows * 32 * sym("a_bytes")) == 0 for c in a2a)
    assert "linear_4" in model.tp.failed  # the router's softmax needs every expert's logit: not split
    w = [evaluate_layout(model, Layout(dp=4, ep=ep, micro_batch=2))["first"]["memory"]["weights"] for ep in (1, 2, 4)]
    expert = 2 * 4 * 3 * 32 * 48 * 2  # layers x experts x (gate, up, down) x hidden x ffn x bytes
    assert w[0] - w[1] == pytest.approx(expert / 2) and w[0] - w[2] == pytest.approx(3 * expert / 4)


@pytest.mark.slow
def test_cli_plan(llama_cfg, capsys, tmp_path):
    from irtools.export.parallel_html import render_plan_html
    from irtools.plan import render_table

    args = ["plan", llama_cfg, "--target", "h100-sxm", "--devices", "4", "--batch", "16", "--seq-len", "32", "--top", "3",
            "--no-overlap", "--format", "json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "irtools.plan/1" and len(report["top"]) == 3 and not report["overlap"]
    assert {s["kind"] for s in report["best"]["timeline"]} >= {"compute", "communication"}
    text = render_table(report)
    assert "rank" in text and "best:" in text and "fell out" in text and "bubble fraction" in text
    assert '<svg class="timeline"' in render_plan_html(report)
    assert main(["plan", llama_cfg, "--target", "h100-sxm", "--devices", "0"]) == 2
    assert "--devices must be a positive integer" in capsys.readouterr().err


def test_joint_capture_failure_falls_back_and_says_so(monkeypatch, train_model):
    """A model whose joint training graph cannot be captured keeps the forward estimate, and the
    report's assumptions say which source the training memory came from."""
    import dataclasses

    from irtools import pipeline, plan
    from irtools.ir.errors import IrtoolsError

    def refuse(options):
        raise IrtoolsError("no joint graph for this model")

    monkeypatch.setattr(pipeline, "run", refuse)
    assert plan._capture_joint(PlanOptions("model", "h100-sxm", 8), {"seq_len": 64}) is None
    assert "joint forward + backward + AdamW graph" in plan._memory_source(train_model)[0]
    fallback = dataclasses.replace(train_model, joint=None, joint_full=None, _values={})
    assert "could not be captured" in plan._memory_source(fallback)[0]
    lay = Layout(tp=2, micro_batch=4)
    assert evaluate_layout(fallback, lay)["first"]["memory"]["total"] != evaluate_layout(train_model, lay)["first"]["memory"]["total"]
