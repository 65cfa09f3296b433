"""Whole transformers models from configs: every supported architecture's matmul FLOPs equal
FlopCounterMode's; decode with a DynamicCache; block collapse; config errors in one line."""

import json

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("transformers")
from irtools import analyze, analyze_module  # noqa: E402
from irtools.cli import main  # noqa: E402
from irtools.recipes import hf  # noqa: E402

TINY = {
    "gpt2": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 101, "n_positions": 64},
    "llama": {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 101},
    "mistral": {"model_type": "mistral", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 101, "sliding_window": None},
    "bert": {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
             "intermediate_size": 96, "vocab_size": 101, "max_position_embeddings": 64},
    "vit": {"model_type": "vit", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
            "intermediate_size": 96, "image_size": 32, "patch_size": 8},
}
_SMALL = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 96, "vocab_size": 101}
TINY.update({
    "qwen2": {"model_type": "qwen2", **_SMALL, "num_key_value_heads": 2},
    "qwen3": {"model_type": "qwen3", **_SMALL, "num_key_value_heads": 2, "head_dim": 16},
    "gemma": {"model_type": "gemma", **_SMALL, "num_key_value_heads": 2, "head_dim": 16},
    "gemma2": {"model_type": "gemma2", **_SMALL, "num_key_value_heads": 2, "head_dim": 16},
    "gpt_neox": {"model_type": "gpt_neox", **_SMALL},
    "opt": {"model_type": "opt", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "ffn_dim": 96,
            "vocab_size": 101, "word_embed_proj_dim": 64},
    "roberta": {"model_type": "roberta", **_SMALL},
    "distilbert": {"model_type": "distilbert", "n_layers": 2, "dim": 64, "n_heads": 4, "hidden_dim": 96, "vocab_size": 101},
    "electra": {"model_type": "electra", **_SMALL},
    "deit": {"model_type": "deit", **{k: v for k, v in _SMALL.items() if k != "vocab_size"}, "image_size": 32, "patch_size": 8},
})
VISION = {"vit", "deit"}


def matmul_total(result):
    return sympy.expand(sum(a["matmul_flops"] for _, a in result.ir.nodes()))


def cpu_model(fields):
    from transformers import AutoModel, AutoModelForCausalLM

    config = hf.make_config(fields, attn="eager")
    auto = AutoModelForCausalLM if config.model_type in hf.DECODERS else AutoModel
    torch.manual_seed(0)
    return config, auto.from_config(config).eval()


@pytest.mark.parametrize("arch", sorted(TINY))
def test_matmul_flops_equal_flop_counter(arch):
    config, model = cpu_model(TINY[arch])
    recipe = hf.recipe(config, "prefill", arch, model=model, all_logits=True)
    # capture on the CPU model with CPU example inputs of the recipe's shapes
    args = {k: (torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) else v) for k, v in recipe.kwargs.items()}
    result = analyze_module(model, (), args, recipe.dims)
    assert not result.unsupported
    expr = matmul_total(result)
    for b, s in ((1, 7), (2, 12), (3, 5)):
        if arch in VISION:
            inputs, bind = {"pixel_values": torch.randn(b, 3, 32, 32)}, {"batch_size": b}
        else:
            inputs, bind = {"input_ids": torch.randint(0, 101, (b, s))}, {"batch_size": b, "seq_len": s}
            if config.model_type in hf.DECODERS:
                inputs["use_cache"] = False
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(**inputs)
        assert counter.get_total_flops() == result.value(expr, bind), (arch, b, s)


def test_llama_decode_with_dynamic_cache():
    from transformers import DynamicCache

    config, model = cpu_model(TINY["llama"])
    recipe = hf.recipe(config, "decode", "llama", model=model)
    cache = DynamicCache(config=config)
    for layer in range(2):
        past = torch.zeros(3, 2, 7, 16)
        cache.update(past, past.clone(), layer)
    result = analyze_module(model, (), {"input_ids": torch.zeros(3, 5, dtype=torch.long), "cache": cache, "use_cache": True}, recipe.dims)
    expr = matmul_total(result)
    assert sympy.Symbol("cache_len", positive=True, integer=True) in expr.free_symbols
    for b, s, c in ((1, 1, 9), (2, 3, 4)):
        cache = DynamicCache(config=config)
        for layer in range(2):
            past = torch.randn(b, 2, c, 16)
            cache.update(past, past.clone(), layer)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(input_ids=torch.randint(0, 101, (b, s)), cache=cache, use_cache=True)
        assert counter.get_total_flops() == result.value(expr, {"batch_size": b, "seq_len": s, "cache_len": c})


def test_meta_presets_analyze(tmp_path):
    """A config.json on the meta device (no weights): Llama's FLOPs ≈ 2 × parameters per token."""
    path = tmp_path / "config.json"
    fields = {k: v for k, v in hf.HF_CONFIGS["llama-3-8b"].items() if k != "source"}
    path.write_text(json.dumps({**fields, "num_hidden_layers": 2}))
    result = analyze(str(path), "prefill", {"batch_size": 1, "seq_len": 1})
    params = 2 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336) + 128256 * 4096
    assert abs(result.evaluate()["flops"] / (2 * params) - 1) < 0.01


def test_collapsed_layers_equal_full_trace():
    fields = {**TINY["gpt2"], "n_layer": 4}
    recipe = hf._recipe_at(fields, "decode", "gpt2", "sdpa", hf_space("gpt2"))
    full = analyze_module(recipe.module, recipe.args, recipe.kwargs, recipe.dims, scenario="decode")
    from irtools.pipeline import Options, _run_collapsed

    collapsed = _run_collapsed(recipe, Options(scenario="decode"))
    assert collapsed is not None and collapsed.ir.meta.collapse.num_layers == 4
    for c in ("flops", "bytes_read", "bytes_written"):
        assert sympy.expand(collapsed.totals[c].subs(sympy.Symbol("num_layers", positive=True, integer=True), 4) - full.totals[c]) == 0
        assert collapsed.evaluate()[c] == full.evaluate()[c]


def hf_space(model_type):
    from irtools.recipes.config_symbols import SPACES

    return SPACES[model_type]


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not valid JSON"),
        ('{"hidden_size": 8}', "needs a 'model_type'"),
        ('{"model_type": "nonsense"}', "unknown model_type 'nonsense'"),
        ('{"model_type": "llama", "hidden_size": 100, "num_attention_heads": 7}', "transformers rejects this llama config"),
    ],
)
def test_bad_configs_one_line_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    out = tmp_path / "out.json"
    code = main(["analyze", str(path), "--format", "json", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_encoder_has_no_decode(capsys):
    assert main(["analyze", "bert-base", "--scenario", "decode"]) == 2
    assert "bert is an encoder: it has no decode scenario" in capsys.readouterr().err


def test_gpt2_small_bounds_on_h100():
    """GPT-2 small (transformers, meta device): decode at cache_len 4096 is memory-bound in
    every GEMM, prefill at seq_len 2048 compute-bound in every projection GEMM (bf16, H100 SXM);
    the LM head of prefill runs on the last token only (a GEMV: memory-bound)."""
    from passes.fusion import build_kernels
    from passes.roofline import estimate

    bf16 = {"w_bytes": 2, "a_bytes": 2, "kv_bytes": 2}
    for scenario, binds, want in (
        ("decode", {"batch_size": 1, "seq_len": 1, "cache_len": 4096}, "memory"),
        ("prefill", {"batch_size": 1, "seq_len": 2048}, "compute"),
    ):
        result = analyze("gpt2", scenario, collapse_layers=True)
        roof = estimate(build_kernels(result.ir, "flash"), "h100-sxm", {**result.bindings, **binds, **bf16})
        gemms = [kt for kt in roof.kernels if kt.kernel.pattern.startswith("gemm") and kt.kernel.matmul_flops != 0]
        head = [kt for kt in gemms if {result.ir.node(n).module for n in kt.kernel.nodes} == {"lm_head"}]
        assert len(head) == 1 and head[0].bound == "memory", scenario
        gemms = [kt for kt in gemms if kt not in head]
        assert len(gemms) >= 8 and {kt.bound for kt in gemms} == {want}, scenario


def test_transformers_classes_by_name(capsys):
    """``package.module:Class`` of transformers: sub-modules from the preset config."""
    code = main(["analyze", "transformers.models.llama.modeling_llama:LlamaMLP", "--format", "json",
                 "--dim", "seq_len=16", "--dim", "batch_size=2"])
    report = json.loads(capsys.readouterr().out)
    h, i = 4096, 14336  # llama-3-8b: gate, up, down projections + silu (5) and the product (1) per element
    assert code == 0 and report["totals"]["flops"]["value"] == 2 * 16 * (6 * h * i + 6 * i)
    code = main(["analyze", "transformers.models.llama.modeling_llama:LlamaDecoderLayer", "--format", "json", "--dim", "seq_len=16"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and not report["unsupported"] and report["totals"]["flops"]["value"] > 16 * 6 * h * i
