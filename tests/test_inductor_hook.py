"""Inductor's post-fusion kernels, recorded by passes/compiler/inductor_hook.py and compared with the
``fused`` mode (passes/compiler/inductor_compare.py). Each model is compiled once, tiny, on the CPU."""

from __future__ import annotations

import shutil

import pytest
import torch

from irtools.ir.symbols import evaluate
from passes.compiler import torch_backend
from passes.compiler.inductor_compare import compare_with_fused
from passes.compiler.inductor_hook import hook_unavailable, record_inductor_kernels, record_nodes
from passes.fusion import _attention_patterns, _Tensors, build_kernels

F32 = 4


def _compile(module, x):
    """Compile with the irtools backend in front of Inductor, recording Inductor's kernels."""
    if reason := hook_unavailable():
        pytest.skip(reason)
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("no C++ compiler for Inductor's CPU backend")
    torch_backend.clear_reports()
    torch._dynamo.reset()
    try:
        with record_inductor_kernels() as rec, torch.no_grad():
            out = torch.compile(module, backend=torch_backend.make_backend(inner="inductor"))(x)
    except Exception as exc:  # noqa: BLE001 - a broken toolchain is a skip, not a failure
        pytest.skip(f"Inductor could not compile on this machine: {type(exc).__name__}: {str(exc)[:200]}")
    (report,) = torch_backend.reports()
    assert len(rec.graphs) == 1 and rec.graphs[0].error is None
    kg = build_kernels(report.result.ir, "fused")
    return module, x, out, rec.graphs[0], report, kg, compare_with_fused(rec.graphs[0], kg, report.aten_graph)


@pytest.fixture(scope="session")
def attention_run():
    from models.gpt2_attention import GPT2Attention, GPT2Config

    torch.manual_seed(0)
    return _compile(GPT2Attention(GPT2Config(n_embd=64, n_head=4, n_positions=32)).eval(), torch.randn(2, 8, 64))


@pytest.fixture(scope="session")
def block_run():
    transformers = pytest.importorskip("transformers")
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    cfg = transformers.GPT2Config(n_embd=64, n_head=4, n_layer=1)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    return _compile(GPT2Block(cfg, layer_idx=0).eval(), torch.randn(2, 8, 64))


def _gemm_bytes(k: int, n: int, rows: int = 16) -> tuple[int, int]:
    """addmm: A (rows×k) + B (k×n) + bias (n) read, C (rows×n) written, fp32."""
    return (rows * k + k * n + n) * F32, rows * n * F32


@pytest.mark.parametrize("run, gemm_shapes", [
    ("attention_run", [(64, 192), (64, 64)]),
    ("block_run", [(64, 192), (64, 64), (64, 256), (256, 64)]),
])
def test_recorded_kernels_are_plausible(run, gemm_shapes, request):
    module, x, out, graph, report, kg, _ = request.getfixturevalue(run)
    with torch.no_grad():
        torch.testing.assert_close(out[0], module(x)[0])
    ir = report.result.ir
    matmuls = [n for n, a in ir.nodes() if a.get("kind") == "matmul"]
    in_attention = {n for p in _attention_patterns(_Tensors(ir)) for n in p} & set(matmuls)
    gemms, attention = graph.of_kind("gemm", "template"), graph.of_kind("attention")
    # every matmul-class node is an extern GEMM, or one of the two GEMMs of an SDPA rewrite
    assert len(gemms) + 2 * len(attention) == len(matmuls)
    assert len(gemms) == len(matmuls) - len(in_attention)
    assert [(g.bytes_read, g.bytes_written) for g in gemms] == [_gemm_bytes(k, n) for k, n in gemm_shapes]
    for k in graph.launched:
        assert k.bytes > 0 and k.origins, k
    # the whole graph moves at least its weights and input once, and at most every eager byte
    at = {**ir.default_bindings, **ir.dims}
    weights = evaluate(sum(s.nbytes for s in ir.inputs.values() if s.role == "weight"), at)
    eager = evaluate(build_kernels(ir, "eager").total("bytes"), at)
    assert weights < graph.total_bytes <= eager


@pytest.mark.parametrize("run, agree", [("attention_run", 2), ("block_run", 3)])
def test_comparison_names_every_difference(run, agree, request):
    *_, kg, cmp = request.getfixturevalue(run)
    print(cmp.summary())
    assert len(cmp.agreements) == agree
    assert cmp.agreement_rate == pytest.approx(agree / len(kg))
    for a in cmp.agreements:  # same grouping -> same boundary bytes as Inductor counts them
        assert a.ir_bytes == a.inductor_bytes
    assert cmp.differences and all(d.reasons and d.reason for d in cmp.differences)
    covered = {k for d in cmp.differences for k in d.ir_kernels} | {a.ir_kernel for a in cmp.agreements}
    assert covered == set(kg.graph.nodes)
    sdpa = [d for d in cmp.differences if any("pattern matcher rewrote" in r for r in d.reasons)]
    assert len(sdpa) == 1 and len(sdpa[0].ir_kernels) == 3


def test_block_differences_have_reasons(block_run):
    *_, cmp = block_run
    text = cmp.summary()
    assert "takes no epilogue" in text  # extern addmm + separate gelu / residual kernel
    assert "recomputes add" in text  # the first residual add is inlined into two kernels
    assert "contiguous layout the SDPA kernel wants" in text


def test_attention_mask_kernel_is_inductor_only(attention_run):
    *_, cmp = attention_run
    only = [d for d in cmp.differences if not d.ir_kernels]
    assert len(only) == 1 and "additive float mask" in only[0].reason


def test_recording_never_raises():
    graph = record_nodes([object()])
    assert graph.error and not graph.kernels


def test_missing_api_is_a_skip_reason(monkeypatch):
    import passes.compiler.inductor_hook as hook

    monkeypatch.setattr(hook, "hook_unavailable", lambda: "torch 0.0 has no _post_fusion_custom_pass")
    with hook.record_inductor_kernels() as rec:
        pass
    assert rec.skipped.startswith("torch 0.0") and rec.graphs == []
