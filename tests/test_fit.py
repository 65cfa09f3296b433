"""Fit (passes/fit.py, ``irtools fit``): the largest batch / context whose symbolic peak fits a
target's memory less the reserve, checked by evaluating the expressions on both sides."""

import json
import math

import pytest
import sympy

from irtools.cli import main
from irtools.hardware import HERE, load_target
from irtools.ir.symbols import parse, sym
from passes.fit import DEFAULT_RESERVE, check_fit, largest, solve, usable

B = sym("batch_size")


@pytest.fixture(scope="module")
def small_target(tmp_path_factory):
    """The H100 file with 1 GB of memory: the seed attention block's batch limit is in the tens."""
    text = (HERE / "h100-sxm.toml").read_text()
    text = text.replace('name = "h100-sxm"', 'name = "small-gpu"').replace("memory_size = { value = 80e9", "memory_size = { value = 1e9")
    path = tmp_path_factory.mktemp("targets") / "small-gpu.toml"
    path.write_text(text)
    return str(path)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_largest_by_hand():
    assert largest(100 + 7 * B, "batch_size", {}, 1000).largest == 128  # 996 fits, 1003 does not
    peak = sympy.Max(10 * B**2, 500 + B, evaluate=False)
    answer = largest(peak, "batch_size", {}, 1000)
    assert (answer.largest, answer.peak, answer.peak_above) == (10, 1000, 1210)
    assert largest(2000 + B, "batch_size", {}, 1000).largest is None
    assert largest(sym("seq_len") + 0 * B, "seq_len", {"batch_size": 1}, 10).largest == 10
    assert largest(5 + 0 * B + sym("seq_len"), "seq_len", {}, 1e30).limited


def test_fit_cli_largest_batch_and_sweep_agree(capsys, small_target):
    code, out, _ = run_cli(capsys, "fit", "--target", small_target, "--dim", "seq_len=512", "--format", "json")
    assert code == 0
    data = json.loads(out)
    (answer,) = data["answers"]
    b, peak = answer["largest"], parse(data["peak"])
    at = {**answer["bindings"], "seq_len": 512}
    budget = 1e9 * (1 - DEFAULT_RESERVE)
    assert data["usable"] == budget
    value = lambda n: float(peak.xreplace({sym(k): v for k, v in {**at, "batch_size": n}.items()}))  # noqa: E731
    assert 1 < b and value(b) <= budget < value(b + 1)
    assert (answer["peak"], answer["peak_above"]) == (value(b), value(b + 1))
    code, out, _ = run_cli(capsys, "sweep", "--targets", small_target, "--dim", "seq_len=512",
                           "--grid", f"batch_size={b},{b + 1}")
    rows = [line.split(",") for line in out.strip().splitlines()]
    assert rows[0][-2:] == ["peak_bytes", f"fits[{small_target}]"]
    assert [r[-1] for r in rows[1:]] == ["yes", "no"]
    assert [float(r[-2]) for r in rows[1:]] == pytest.approx([value(b), value(b + 1)], rel=1e-6)


def test_report_says_whether_it_fits(small_target):
    from irtools import analyze

    result = analyze("gpt2-attention", "prefill", {"seq_len": 512, "batch_size": 40}, target=small_target)
    fit = result.to_dict()["memory"]["fit"]
    peak = result.value(result.memory.peak)
    assert fit["usable"] == 0.9e9 and fit["capacity_source"].startswith("NVIDIA H100")
    assert fit["fits"] is (peak <= 0.9e9) is False and fit["headroom"] == pytest.approx(0.9e9 - peak)
    check = check_fit(result.memory.peak, load_target(small_target), {**result.bindings, "batch_size": 1}, 0.5)
    assert check.fits and check.usable == 0.5e9


def test_frontier_context_shrinks_with_batch(small_target):
    from irtools import analyze

    result = analyze("gpt2-attention", "decode", target=small_target)
    out = solve(result.memory.peak, load_target(small_target), result.bindings, "frontier")
    contexts = [a.largest for a in out.answers]
    assert len(contexts) >= 3 and contexts == sorted(contexts, reverse=True) and contexts[0] > contexts[-1]
    assert all(a.symbol == "cache_len" and a.peak <= out.usable < a.peak_above for a in out.answers)


def test_fit_errors_are_one_line(capsys, small_target):
    for argv, text in ((["fit"], "needs --target"), (["fit", "--target", small_target, "--reserve", "1.5"], "--reserve"),
                       (["fit", "--target", small_target, "--solve", "cache_len"], "cache_len")):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and text in err and err.count("\n") == 1


@pytest.mark.slow
def test_llama_3_8b_on_80gb_by_hand():
    """Llama-3-8B, 16-bit, decode at context 8192 on an 80 GB H100: weights + batch × 1 GiB of
    KV cache (2·32 layers·8 kv heads·128·8192 tokens·2 bytes) under 80 GB less 10 %."""
    from irtools import analyze

    bytes16 = {"w_bytes": 2, "a_bytes": 2, "kv_bytes": 2, "cache_len": 8191, "seq_len": 1}
    result = analyze("llama-3-8b", "decode", bytes16, target="h100-sxm", mode="flash")
    h, kv, inter, vocab, layers = 4096, 1024, 14336, 128256, 32
    params = layers * (2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h) + 2 * vocab * h + h
    weights = 2 * params
    assert result.value(result.memory.held["weights"]) == weights
    assert result.value(result.memory.held["kv_cache"], {"batch_size": 1}) == 2**30
    budget = usable(load_target("h100-sxm"))
    by_hand = math.floor((budget - weights) / 2**30)
    answer = solve(result.memory.peak, result.roofline.target, result.bindings, "batch_size").answers[0]
    assert answer.largest == by_hand == 52
    assert answer.peak - weights - by_hand * 2**30 < 0.01 * answer.peak  # activations: a few MB per sequence
