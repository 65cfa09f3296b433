"""Calibration writes a valid target; a gemm_efficiency table slows skinny GEMMs as hand-computed."""

from __future__ import annotations

import dataclasses

import pytest
import sympy

from irtools.hardware import Target, TargetError, load_target, parse_target, save_target
from irtools.hardware import calibrate as cal
from irtools.ir.symbols import sym
from passes.fusion import build_kernels
from passes.roofline import estimate, gemm_dims, interpolate


def test_calibrate_tiny_budget_writes_a_target_load_target_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(cal, "GEMM_SIZES", (64, 128))
    monkeypatch.setattr(cal, "SKINNY_MS", (1, 8, 64))
    monkeypatch.setattr(cal, "SKINNY_NK", 128)
    monkeypatch.setattr(cal, "COPY_BYTES", 4 * 2**20)
    monkeypatch.setattr(cal, "CURVE_BYTES", (2**16, 2**20))
    out = tmp_path / "cpu-local.toml"
    written = cal.calibrate(progress=False, path=out, budget_s=0.01, curve=True)
    t = load_target(str(out))
    assert t.name == "cpu-local" and t.path == str(out) and written.path == str(out)
    assert set(t.peak_flops) == {"fp32", "bf16"} and all(v > 0 for v in t.peak_flops.values())
    assert t.memory_bandwidth > 0 and 0 < t.launch_overhead < 1e-3
    assert [m for m, _ in t.gemm_efficiency] == [1.0, 8.0, 64.0]
    assert all(0 < eta <= 1 for _, eta in t.gemm_efficiency)
    assert [b for b, _ in t.bandwidth_curve] == [2.0**16, 2.0**20]
    assert "measured by irtools calibrate on" in t.sources["gemm_efficiency"]
    assert t.gemm_efficiency == written.gemm_efficiency and t.peak_flops == written.peak_flops


def test_gemm_efficiency_table_validation_and_round_trip(tmp_path):
    base = {"name": "x", "peak_flops": {"fp32": {"value": 1e11, "source": "s"}},
            "memory_bandwidth": {"value": 1e10, "source": "s"}, "memory_size": {"value": 1e9, "source": "s"},
            "launch_overhead": {"value": 1e-6, "source": "s"}}
    t = parse_target({**base, "gemm_efficiency": {"value": [[1, 0.25], [64, 1.0]], "source": "measured"}})
    assert t.gemm_efficiency == ((1.0, 0.25), (64.0, 1.0))
    back = load_target(str(save_target(t, tmp_path / "t.toml")))
    assert back.gemm_efficiency == t.gemm_efficiency and back.sources["gemm_efficiency"] == "measured"
    for bad in ([[1, 1.5]], [[4, 0.5], [2, 0.6]], [], [[1]], "x"):
        with pytest.raises(TargetError):
            parse_target({**base, "gemm_efficiency": {"value": bad, "source": "measured"}})
    with pytest.raises(TargetError):
        parse_target({**base, "gemm_efficiency": {"value": [[1, 0.5]]}})


def test_interpolate_is_linear_and_clamped():
    pts = [(1, 0.1), (16, 0.5), (128, 1.0)]
    assert float(interpolate(pts, 0.5)) == pytest.approx(0.1)
    assert float(interpolate(pts, 4)) == pytest.approx(0.1 + 0.4 * 3 / 15)
    assert float(interpolate(pts, 1000)) == pytest.approx(1.0)


def test_gemm_efficiency_slows_a_skinny_gemm_as_hand_computed(seed_decode):
    kg = build_kernels(seed_decode.ir, "eager")
    plain = Target(name="slow-cpu", description="", peak_flops={"fp32": 1e11}, memory_bandwidth=1e13,
                   memory_size=1e9, launch_overhead=2e-6, sources={})
    table = dataclasses.replace(plain, gemm_efficiency=((1.0, 0.1), (16.0, 0.5), (128.0, 1.0)))
    bindings = {"batch_size": 4, "seq_len": 1, "cache_len": 100, "a_bytes": 4, "w_bytes": 4, "kv_bytes": 4}
    kt_plain = next(kt for kt in estimate(kg, plain, bindings).kernels if kt.kernel.nodes == ("addmm",))
    kt = next(kt for kt in estimate(kg, table, bindings).kernels if kt.kernel.nodes == ("addmm",))
    m, k, n = 4, 768, 2304  # c_attn at decode: (batch·seq) × 768 @ 768 × 2304
    dims = [int(sympy.sympify(d).subs({sym("batch_size"): 4, sym("seq_len"): 1})) for d in gemm_dims(kg, kt.kernel)]
    assert dims == [m, n, k]
    flops = 2 * m * k * n + m * n
    nbytes = 4 * (m * k + k * n + n + m * n)
    eta = 0.1 + (0.5 - 0.1) * (m - 1) / (16 - 1)
    expected = max(flops / (1e11 * eta), nbytes / 1e13) + 2e-6
    assert kt.values["time"] == pytest.approx(expected, rel=1e-9)
    assert kt_plain.values["time"] == pytest.approx(max(flops / 1e11, nbytes / 1e13) + 2e-6, rel=1e-9)
    assert kt.bound == "compute"
    # non-GEMM kernels are unchanged by the table
    others = zip(estimate(kg, plain, bindings).kernels, estimate(kg, table, bindings).kernels)
    for a, b in others:
        if a.kernel.matmul_flops == 0:
            assert a.values["time"] == pytest.approx(b.values["time"], rel=1e-12)
