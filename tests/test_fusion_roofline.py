"""Fusion modes, the hardware database, the roofline and the sweep, on real values."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from irtools.hardware import TargetError, list_targets, load_target, parse_target, save_target
from irtools.ir import IRGraph, TensorSpec
from irtools.ir.symbols import evaluate, parse, sym
from irtools.report import kernels_report
from passes.fusion import build_kernels, is_kernel_node
from passes.roofline import estimate, sweep, time_expr

S, C, B = sym("seq_len"), sym("cache_len"), sym("batch_size")
BF16 = {"a_bytes": 2, "w_bytes": 2, "kv_bytes": 2}

#: Dense BF16 peaks (TFLOP/s) from ../shared/reference/hardware.md.
HARDWARE_MD_BF16 = {
    "h100-sxm": 989.4, "h100-pcie": 756.5, "h200": 989.4, "a100-sxm-80gb": 312,
    "a100-pcie-40gb": 312, "l4": 121, "mi300x": 1307.4, "tpu-v5e": 197,
}
HARDWARE_MD_BW = {
    "h100-sxm": 3.35, "h100-pcie": 2.0, "h200": 4.8, "a100-sxm-80gb": 2.039,
    "a100-pcie-40gb": 1.555, "l4": 0.30, "mi300x": 5.3, "tpu-v5e": 0.819,
}


@pytest.fixture(scope="module")
def prefill_ir(seed_prefill):
    return seed_prefill.ir


@pytest.fixture(scope="module")
def decode_ir(seed_decode):
    return seed_decode.ir


@pytest.fixture(scope="module")
def kernels(prefill_ir):
    return {mode: build_kernels(prefill_ir, mode) for mode in ("eager", "fused", "flash")}


def _node_sum(ir, attr):
    return sympy.expand(sympy.Add(*(a[attr] for _, a in ir.nodes())))


# ---- fusion ------------------------------------------------------------------------------


def test_eager_one_kernel_per_non_alias_non_free_node(prefill_ir, kernels):
    expected = [n for n, a in prefill_ir.nodes() if is_kernel_node(a)]
    eager = kernels["eager"]
    assert len(eager) == len(expected)
    assert [k.nodes[0] for k in eager] == expected
    assert all(not a["alias"] and a["kind"] not in ("view", "free") for n, a in prefill_ir.nodes() if n in expected)


def test_eager_bytes_equal_sum_of_node_bytes(prefill_ir, kernels):
    eager = kernels["eager"]
    assert sympy.expand(eager.total("bytes_read") - _node_sum(prefill_ir, "bytes_read")) == 0
    assert sympy.expand(eager.total("bytes_written") - _node_sum(prefill_ir, "bytes_written")) == 0
    assert sympy.expand(eager.total("flops") - _node_sum(prefill_ir, "flops")) == 0


def test_fused_merges_scale_mask_softmax_and_saves_bytes(kernels):
    fused = kernels["fused"]
    by_node = fused.node_kernel
    assert by_node["div"] == by_node["where"] == by_node["softmax"]
    k = fused.graph.nodes[by_node["softmax"]]["kernel"]
    assert k.pattern == "reduction"
    saved = sympy.expand(kernels["eager"].total("bytes") - fused.total("bytes"))
    # div and where no longer write (and softmax/where no longer read) the S×S scores
    assert sympy.Poly(saved, S).coeff_monomial(S**2) > 0
    assert sympy.expand(kernels["eager"].total("flops") - fused.total("flops")) == 0
    assert len(fused) < len(kernels["eager"])


def test_flash_bytes_linear_in_kv_len_and_same_flops(kernels, decode_ir):
    flash, eager = kernels["flash"], kernels["eager"]
    assert sympy.expand(flash.total("flops") - eager.total("flops")) == 0
    assert sympy.degree(flash.total("bytes"), S) == 1
    assert sympy.degree(eager.total("bytes"), S) == 2
    attn = [k for k in flash if k.pattern == "flash_attention"]
    assert len(attn) == 1 and {"matmul", "softmax", "matmul_1"} <= set(attn[0].nodes)
    # decode: linear in kv_len = cache_len + seq_len (no cache_len·seq_len, no seq_len² term)
    dec = build_kernels(decode_ir, "flash").total("bytes")
    poly = sympy.Poly(dec, S, C)
    assert poly.total_degree() == 1
    eager_dec = sympy.Poly(build_kernels(decode_ir, "eager").total("bytes"), S, C)
    assert eager_dec.total_degree() == 2


def test_flash_reads_q_k_v_and_writes_o(kernels):
    k = next(k for k in kernels["flash"] if k.pattern == "flash_attention")
    a = sym("a_bytes")
    # prefill: Q, K, V are views of the c_attn output (activations); O is written once
    assert sympy.expand(k.bytes_read - 3 * 768 * a * B * S) == 0
    assert sympy.expand(k.bytes_written - 768 * a * B * S) == 0


def test_unknown_mode_raises(prefill_ir):
    with pytest.raises(ValueError, match="unknown fusion mode"):
        build_kernels(prefill_ir, "turbo")


def _synthetic_ir() -> IRGraph:
    """An IR built by hand, with no exported program: x@W -> +bias -> tanh -> sum."""
    n, k, m = sym("batch_size"), 64, 32
    a, w = sym("a_bytes"), sym("w_bytes")
    x = TensorSpec((n, k))
    wt = TensorSpec((k, m), role="weight")
    bias = TensorSpec((m,), role="weight")
    y, z, t = TensorSpec((n, m)), TensorSpec((n, m)), TensorSpec((n, m))
    s = TensorSpec((n,))
    ir = IRGraph(name="synthetic", frontend="onnx")
    ir.add_op("mm", op="MatMul", kind="matmul", inputs=[x, wt], outputs=[y], flops=2 * n * k * m,
              bytes_read=x.nbytes + wt.nbytes, bytes_written=y.nbytes, matmul_flops=2 * n * k * m, alias=False,
              input_values=["x", "w"], output_values=["y"])
    ir.add_op("add", op="Add", kind="elementwise", inputs=[y, bias], outputs=[z], flops=n * m,
              bytes_read=y.nbytes + bias.nbytes, bytes_written=z.nbytes, alias=False,
              input_values=["y", "bias"], output_values=["z"])
    ir.add_op("tanh", op="Tanh", kind="elementwise", inputs=[z], outputs=[t], flops=n * m,
              bytes_read=z.nbytes, bytes_written=t.nbytes, alias=False, input_values=["z"], output_values=["t"])
    ir.add_op("sum", op="ReduceSum", kind="reduction", inputs=[t], outputs=[s], flops=n * m,
              bytes_read=t.nbytes, bytes_written=s.nbytes, alias=False, input_values=["t"], output_values=["s"])
    assert list(ir.graph.edges) == [("mm", "add"), ("add", "tanh"), ("tanh", "sum")]  # edges follow the values
    assert a in x.nbytes.free_symbols and w in wt.nbytes.free_symbols
    return ir


def test_any_irgraph_fuses():
    ir = _synthetic_ir()
    eager = build_kernels(ir, "eager")
    assert len(eager) == 4
    fused = build_kernels(ir, "fused")
    assert [k.nodes for k in fused] == [("mm",), ("add", "tanh", "sum")]
    x, wt = ir.graph.nodes["mm"]["inputs"]
    bias = ir.graph.nodes["add"]["inputs"][1]
    y, s = ir.graph.nodes["mm"]["outputs"][0], ir.graph.nodes["sum"]["outputs"][0]
    red = fused.kernels[1]
    assert sympy.expand(red.bytes - (y.nbytes + bias.nbytes + s.nbytes)) == 0
    epi = build_kernels(ir, "fused", gemm_epilogue=True)
    assert len(epi) == 2  # the reduction keeps its prologue: nothing left to fuse into the GEMM


# ---- hardware database -------------------------------------------------------------------


def test_every_target_has_sources_and_datasheet_peaks():
    names = list_targets(include_user=False)
    assert set(HARDWARE_MD_BF16) <= set(names)
    for name in names:
        t = load_target(name)
        for key in ("memory_bandwidth", "memory_size", "launch_overhead"):
            assert t.sources.get(key), (name, key)
        for dtype in t.peak_flops:
            assert t.sources[f"peak_flops.{dtype}"], (name, dtype)
        assert len(t.sources) >= len(t.peak_flops) + 3
    for name, tflops in HARDWARE_MD_BF16.items():
        t = load_target(name)
        assert t.peak("bf16") == pytest.approx(tflops * 1e12, rel=1e-9)
        assert t.memory_bandwidth == pytest.approx(HARDWARE_MD_BW[name] * 1e12, rel=1e-9)


def test_unknown_target_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"unknown target 'h9000'; known targets: .*h100-sxm"):
        load_target("h9000")


GOOD = {
    "name": "toy",
    "memory_bandwidth": {"value": 1e12, "source": "toy"},
    "memory_size": {"value": 1e9, "source": "toy"},
    "launch_overhead": {"value": 1e-6, "source": "toy"},
    "peak_flops": {"bf16": {"value": 1e14, "source": "toy datasheet, dense"}},
}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"memory_bandwidth": None}, "missing field 'memory_bandwidth'"),
        ({"peak_flops": {"bf16": {"value": 0, "source": "x"}}}, "must be positive"),
        ({"peak_flops": {"bf16": {"value": -1.0, "source": "x"}}}, "must be positive"),
        ({"peak_flops": {"bf17": {"value": 1e12, "source": "x"}}}, "unknown dtype 'bf17'"),
        ({"peak_flops": {"bf16": {"value": 2e14, "source": "datasheet, with sparsity"}}}, "sparse"),
        ({"memory_size": {"value": 1e9}}, "has no source"),
    ],
)
def test_bad_target_files_give_one_line_errors(patch, message):
    data = {**GOOD, **{k: v for k, v in patch.items() if v is not None}}
    for k, v in patch.items():
        if v is None:
            data.pop(k)
    with pytest.raises(TargetError, match=message) as info:
        parse_target(data)
    assert "\n" not in str(info.value)


def test_user_target_file_round_trip(tmp_path):
    t = load_target("h100-sxm")
    path = save_target(t, tmp_path / "mine.toml")
    back = load_target(str(path))
    assert back.peak_flops == t.peak_flops and back.sources == t.sources
    assert back.memory_bandwidth == t.memory_bandwidth and back.num_sms == t.num_sms


# ---- roofline ------------------------------------------------------------------------------


def test_hand_computed_gemm_time_on_h100(kernels):
    t = load_target("h100-sxm")
    bindings = {"batch_size": 8, "seq_len": 512, **BF16}
    result = estimate(kernels["eager"], t, bindings)
    kt = next(kt for kt in result.kernels if kt.kernel.nodes == ("addmm",))
    m, k, n = 8 * 512, 768, 2304
    flops = 2 * m * k * n + m * n  # addmm: GEMM + bias add
    nbytes = 2 * (m * k + k * n + n + m * n)
    expected = max(flops / 989.4e12, nbytes / 3.35e12) + t.launch_overhead
    assert kt.values["time"] == pytest.approx(expected, rel=1e-9)
    assert kt.bound == "compute" and kt.dtype == "bf16"
    assert kt.attainable_flops == pytest.approx(flops / (expected - t.launch_overhead), rel=1e-9)


def test_decode_memory_bound_prefill_compute_bound_gemms(decode_ir, prefill_ir):
    t = load_target("h100-sxm")
    dec = estimate(build_kernels(decode_ir, "flash"), t, {"batch_size": 1, "seq_len": 1, "cache_len": 4096, **BF16})
    assert {kt.bound for kt in dec.kernels} == {"memory"}
    pre = estimate(build_kernels(prefill_ir, "flash"), t, {"batch_size": 1, "seq_len": 2048, **BF16})
    gemms = [kt for kt in pre.kernels if kt.kernel.nodes[0].startswith("addmm")]
    assert len(gemms) == 2 and all(kt.bound == "compute" for kt in gemms)
    assert pre.value == pytest.approx(sum(kt.values["time"] for kt in pre.kernels))


def test_report_keys_and_rollups(kernels):
    result = estimate(kernels["flash"], "h100-sxm", {"batch_size": 2, "seq_len": 128, **BF16})
    report = kernels_report(result)
    assert {"mode", "target", "time_s", "kernels"} <= set(report)
    assert report["mode"] == "flash" and report["target"]["name"] == "h100-sxm"
    assert report["time_s"]["value"] == pytest.approx(evaluate(parse(report["time_s"]["expr"]), result.bindings), rel=1e-9)
    for k in report["kernels"]:
        assert {"id", "nodes", "kinds", "flops", "bytes", "time_s", "bound"} <= set(k)
        assert k["bound"] in ("compute", "memory")
    root = next(r for r in result.modules if r.key == "")
    assert root.value == pytest.approx(result.value) and root.kernels == len(kernels["flash"])
    assert sum(r.value for r in result.lines) == pytest.approx(result.value)


def test_precision_picks_the_peak(kernels):
    t = load_target("h100-sxm")
    kg = kernels["eager"]
    fp8 = estimate(kg, t, {"batch_size": 64, "seq_len": 2048, "a_bytes": 1, "w_bytes": 1, "kv_bytes": 1})
    fp32 = estimate(kg, t, {"batch_size": 64, "seq_len": 2048, "a_bytes": 4, "w_bytes": 4, "kv_bytes": 4})
    gemm8 = next(kt for kt in fp8.kernels if kt.kernel.nodes == ("addmm",))
    gemm32 = next(kt for kt in fp32.kernels if kt.kernel.nodes == ("addmm",))
    assert (gemm8.dtype, gemm8.peak) == ("fp8", 1978.9e12)
    assert (gemm32.dtype, gemm32.peak) == ("fp32", 66.9e12)


# ---- sweep -------------------------------------------------------------------------------


def test_sweep_equals_sympy_evaluation(kernels):
    rng = np.random.default_rng(0)
    grid = {"batch_size": rng.integers(1, 64, 50).astype(float), "seq_len": rng.integers(1, 4096, 50).astype(float)}
    result = estimate(kernels["flash"], "h100-sxm", BF16)
    out = sweep(result, grid, ["h100-sxm", "mi300x"])
    for name in ("h100-sxm", "mi300x"):
        expr = time_expr(kernels["flash"], name, BF16)
        for i in range(0, 50, 7):
            point = {**BF16, "batch_size": grid["batch_size"][i], "seq_len": grid["seq_len"][i]}
            assert out[name][i] == pytest.approx(evaluate(expr, point), rel=1e-9)
    # precision swept too: a Piecewise peak in a_bytes
    grid2 = {**grid, "a_bytes": np.where(np.arange(50) % 2, 1.0, 2.0)}
    out2 = sweep(result, grid2)["h100-sxm"]
    for i in (0, 1, 8, 9):
        b = {**BF16, "batch_size": grid["batch_size"][i], "seq_len": grid["seq_len"][i], "a_bytes": grid2["a_bytes"][i]}
        assert out2[i] == pytest.approx(estimate(kernels["flash"], "h100-sxm", b).value, rel=1e-9)
    plain = sweep(S * B + 1, {"seq_len": np.arange(3.0), "batch_size": np.full(3, 2.0)})["value"]
    assert list(plain) == [1.0, 3.0, 5.0]
    with pytest.raises(ValueError, match="no value for"):
        sweep(S * B, {"seq_len": np.arange(3.0)})


# ---- calibration -------------------------------------------------------------------------


def test_calibrate_writes_a_loadable_target(tmp_path, capsys):
    from irtools.hardware.calibrate import calibrate

    t = calibrate(progress=True, path=tmp_path / "cpu-local.toml", budget_s=0.02)
    assert "calibrate [" in capsys.readouterr().err
    back = load_target(str(tmp_path / "cpu-local.toml"))
    assert back.name == "cpu-local" and back.peak("fp32") > 1e8 and back.memory_bandwidth > 1e8
    assert 0 < back.launch_overhead < 1e-3 and back.sources["memory_bandwidth"].startswith("measured")
    assert t.peak_flops == pytest.approx(back.peak_flops)


def test_cpu_first_touch_term_only_above_threshold(kernels):
    import dataclasses

    cpu = dataclasses.replace(load_target("h100-sxm"), name="toy-cpu", first_touch_bandwidth=2e9, first_touch_threshold=32 * 2**20)
    kg = kernels["eager"]
    small = {"batch_size": 1, "seq_len": 64, "a_bytes": 4, "w_bytes": 4, "kv_bytes": 4}
    large = {**small, "batch_size": 4, "seq_len": 768}
    for b in (small, large):
        plain = estimate(kg, "h100-sxm", b)
        with_ft = estimate(kg, cpu, b)
        for p, f in zip(plain.kernels, with_ft.kernels):
            written = evaluate(p.kernel.bytes_written, b)
            extra = written / 2e9 if written >= 32 * 2**20 else 0.0
            assert f.values["time"] == pytest.approx(p.values["time"] + extra, rel=1e-9)
    softmax = next(kt for kt in estimate(kg, cpu, large).kernels if kt.kernel.nodes == ("softmax",))
    assert softmax.values["time"] > softmax.values["memory"] + 0.01  # 113 MB of fresh pages


def test_onnx_frontend_ir(tmp_path):
    """The same modes on the ONNX frontend's IR (tensor names, shape arithmetic, initializers)."""
    import torch

    from irtools.capture.onnx.frontend import capture_onnx
    from models.gpt2_attention import GPT2Attention
    from passes.annotate_costs import annotate_costs

    path = tmp_path / "attn.onnx"
    torch.onnx.export(GPT2Attention().eval(), (torch.randn(3, 5, 768),), str(path), dynamo=False, input_names=["hidden_states"],
                      dynamic_axes={"hidden_states": {0: "batch", 1: "sequence_length"}})
    ir = annotate_costs(capture_onnx(str(path)))
    eager, fused, flash = (build_kernels(ir, m) for m in ("eager", "fused", "flash"))
    assert len(eager) == sum(is_kernel_node(a) for _, a in ir.nodes())
    assert sympy.expand(eager.total("bytes") - _node_sum(ir, "bytes_read") - _node_sum(ir, "bytes_written")) == 0
    assert sympy.expand(flash.total("flops") - eager.total("flops")) == 0
    assert sympy.degree(flash.total("bytes"), S) == 1 and sympy.degree(eager.total("bytes"), S) == 2
    assert len(flash) < len(fused) < len(eager)
    assert [k.pattern for k in flash].count("flash_attention") == 1
