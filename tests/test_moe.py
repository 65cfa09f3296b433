"""Mixture of experts: tiny Mixtral, Qwen2-MoE and Qwen3-MoE from config.json.

What is compared: the sum of every node's ``matmul_flops`` (irtools' formula in batch_size
and seq_len, evaluated at the run's sizes) against ``FlopCounterMode``'s total for the same
real-random-weights model running transformers' **eager expert loop** (the loop over the
experts a batch hits). They are equal for any routing, not only on average: each token's
top-k experts are distinct, so the loop pushes exactly tokens × k rows through one expert
each, which is what the grouped matmul rule counts. Attention is eager in both.
"""

import itertools
import json
from fractions import Fraction

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("transformers")
from irtools import analyze, analyze_module  # noqa: E402
from irtools.recipes import hf  # noqa: E402
from irtools.recipes.hf_configs import TINY  # noqa: E402
from irtools.recipes.moe_capture import unroute_experts  # noqa: E402
from passes.costs.moe import ROUTING_ASSUMPTION, distinct_experts  # noqa: E402

MOE = ("mixtral", "qwen2_moe", "qwen3_moe")
SIZES = ((3, 5), (1, 7), (2, 1), (4, 9))


def matmul_total(result):
    return sympy.expand(sum(a["matmul_flops"] for _, a in result.ir.nodes()))


def eager_loop_flops(model, b, s, vocab=101):
    """FlopCounterMode on transformers' eager expert loop (irtools' routing undone)."""
    unroute_experts(model)
    model.config._experts_implementation = "eager"
    torch.manual_seed(b * 100 + s)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=torch.randint(0, vocab, (b, s)), use_cache=False)
    return counter.get_total_flops()


@pytest.fixture(scope="module")
def moe_runs(tmp_path_factory):
    """Each tiny MoE from its config.json: CPU model with real random weights, the recipe's
    capture of it, and its matmul formula."""
    runs = {}
    for arch in MOE:
        path = tmp_path_factory.mktemp(arch) / "config.json"
        path.write_text(json.dumps(TINY[arch]))
        config = hf.make_config(hf.load_config_file(path), attn="eager")
        torch.manual_seed(0)
        model = hf.model_class(config).from_config(config).eval()
        recipe = hf.recipe(config, "prefill", arch, model=model, all_logits=True)  # eager_loop_flops: every position
        result = analyze_module(model, recipe.args, recipe.kwargs, recipe.dims)
        runs[arch] = (config, model, recipe, result)
    return runs


@pytest.mark.parametrize("arch", MOE)
def test_matmul_flops_equal_eager_expert_loop(moe_runs, arch):
    config, model, recipe, result = moe_runs[arch]
    assert not result.unsupported
    assert any(a["op"].startswith("irtools.routed_mm") for _, a in result.ir.nodes())
    assert ROUTING_ASSUMPTION in recipe.notes
    expr = matmul_total(result)
    for b, s in SIZES:
        assert eager_loop_flops(model, b, s) == result.value(expr, {"batch_size": b, "seq_len": s}), (arch, b, s)


def test_routed_flops_are_tokens_times_k_times_expert(moe_runs):
    """Mixtral (H 32, I 48, E 4, k 2, two layers): expert matmuls tokens·k·(2·H·2I + 2·I·H)
    per layer, the router 2·tokens·H·E per layer."""
    _, _, _, result = moe_runs["mixtral"]
    h, i, e, k = 32, 48, 4, 2
    b, s = sympy.symbols("batch_size seq_len", positive=True, integer=True)
    tokens = b * s
    nodes = [a for _, a in result.ir.nodes()]
    routed = sum(a["matmul_flops"] for a in nodes if a["op"].startswith("irtools.routed_mm"))
    router = sum(a["matmul_flops"] for a in nodes if (a["module"] or "").endswith("mlp.gate"))
    assert sympy.expand(routed - 2 * tokens * k * (2 * h * 2 * i + 2 * i * h)) == 0
    assert sympy.expand(router - 2 * 2 * tokens * h * e) == 0


def test_expert_weight_bytes_follow_touched_experts(moe_runs):
    """One token reads k of E experts' weights; many tokens approach all E."""
    _, _, _, result = moe_runs["mixtral"]
    node = next(a for _, a in result.ir.nodes() if a["op"].startswith("irtools.routed_mm"))
    x, weight, offs = node["inputs"][:3]
    e, k = 4, 2
    w = sympy.Symbol("w_bytes", positive=True)
    one = {"batch_size": 1, "seq_len": 1}
    per_expert = weight.nbytes / e
    want = (x.nbytes + offs.nbytes + k * per_expert).subs({sympy.Symbol(n, positive=True, integer=True): v for n, v in one.items()})
    assert sympy.simplify(node["bytes_read"].subs({sympy.Symbol(n, positive=True, integer=True): v for n, v in one.items()}) - want) == 0
    many = result.value(node["bytes_read"] - x.nbytes - offs.nbytes, {"batch_size": 64, "seq_len": 64, "w_bytes": 2})
    assert abs(many - result.value(weight.nbytes, {"w_bytes": 2})) < 1e-6
    assert w in node["bytes_read"].free_symbols


@pytest.mark.parametrize("experts,k,tokens", [(4, 2, 1), (4, 2, 2), (4, 1, 3), (5, 2, 3), (6, 3, 2)])
def test_distinct_experts_formula_equals_enumeration(experts, k, tokens):
    """E·(1 − (1 − k/E)^T) equals the exact average over every uniform routing."""
    picks = list(itertools.combinations(range(experts), k))
    counts = [len(set().union(*route)) for route in itertools.product(picks, repeat=tokens)]
    assert distinct_experts(experts, k, tokens) == sympy.Rational(Fraction(sum(counts), len(counts)))


@pytest.mark.parametrize("dtype,op", [(torch.float32, "transformers.grouped_mm_fallback.default"),
                                      (torch.bfloat16, "aten._grouped_mm.default")])
def test_default_grouped_mm_rules(dtype, op):
    """transformers' default expert path, grouped_mm, exports as its custom op
    transformers.grouped_mm_fallback (float32) or torch's aten._grouped_mm (bfloat16): both
    cost the eager loop's matmul FLOPs."""
    config = hf.make_config(TINY["qwen3_moe"], attn="eager")
    torch.manual_seed(0)
    model = hf.model_class(config).from_config(config).eval().to(dtype)
    model.config._experts_implementation = "grouped_mm"
    ids = torch.randint(0, 101, (3, 5))
    result = analyze_module(model, (), {"input_ids": ids, "use_cache": False}, {"input_ids": {0: "batch_size", 1: "seq_len"}})
    ops = {a["op"] for _, a in result.ir.nodes()}
    assert op in ops and not result.unsupported
    expr = matmul_total(result)
    for b, s in SIZES[:2]:
        assert eager_loop_flops(model, b, s) == result.value(expr, {"batch_size": b, "seq_len": s})


@pytest.mark.parametrize("arch,cls", [
    ("mixtral", "transformers.models.mixtral.modeling_mixtral:MixtralSparseMoeBlock"),
    ("qwen3_moe", "transformers.models.qwen3_moe.modeling_qwen3_moe:Qwen3MoeDecoderLayer"),
    ("qwen2_moe", "transformers.models.qwen2_moe.modeling_qwen2_moe:Qwen2MoeSparseMoeBlock"),
])
def test_class_route_moe_blocks(arch, cls):
    """The class route on a tiny config, built on the CPU with real random weights: its
    matmul formula equals FlopCounterMode on the module's eager expert loop."""
    from irtools.recipes.presets import resolve_class

    config = hf.make_config(TINY[arch], attn="eager")
    torch.manual_seed(0)
    recipe = hf.class_recipe(resolve_class(cls), "prefill", config=config, device="cpu")
    result = analyze_module(recipe.module, recipe.args, recipe.kwargs, recipe.dims)
    assert not result.unsupported
    unroute_experts(recipe.module)
    config._experts_implementation = "eager"
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        recipe.module(**recipe.kwargs)
    assert counter.get_total_flops() == result.value(matmul_total(result), {"batch_size": 3, "seq_len": 5})


@pytest.mark.slow
def test_config_symbols_for_experts(tmp_path):
    """--symbolic-config on Mixtral: expert matmuls tokens·k·6·H·I per layer and their weight
    bytes in num_experts / num_experts_per_tok, the router 2·tokens·H·E (verified at probes)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY["mixtral"]))
    result = analyze(str(path), symbolic_config=True)
    b, s, h, i, e, k = (sympy.Symbol(n, positive=True, integer=True) for n in (
        "batch_size", "seq_len", "hidden_size", "intermediate_size", "num_experts", "num_experts_per_tok"))
    w = sympy.Symbol("w_bytes", positive=True)
    nodes = [a for _, a in result.ir.nodes()]
    routed = [a for a in nodes if a["op"].startswith("irtools.routed_mm")]
    assert len(routed) == 4 and all(a["config_symbolic"] for a in routed)
    assert sympy.expand(sum(a["matmul_flops"] for a in routed) - 2 * 6 * b * s * h * i * k) == 0
    touched = e * (1 - (1 - k / e) ** (b * s))
    up = routed[0]
    want = b * s * k * h * up["inputs"][0].itemsize + 8 * e + 2 * h * i * w * touched
    assert sympy.simplify(up["bytes_read"] - want) == 0
    router = [a for a in nodes if (a["module"] or "").endswith("mlp.gate") and a["matmul_flops"] != 0]
    assert len(router) == 2 and all(sympy.expand(a["matmul_flops"] - 2 * b * s * h * e) == 0 for a in router)


def test_class_route_meta_defaults():
    """``package.module:Class`` with transformers' default Mixtral config (meta device):
    per token, the router plus k experts of 3 projections."""
    result = analyze("transformers.models.mixtral.modeling_mixtral:MixtralSparseMoeBlock")
    h, i, e, k = 4096, 14336, 8, 2  # MixtralConfig defaults
    assert not result.unsupported
    per_token = 2 * h * e + k * (2 * h * 2 * i + 2 * i * h)
    assert result.value(matmul_total(result), {"batch_size": 2, "seq_len": 3}) == 6 * per_token
