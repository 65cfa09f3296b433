"""Any transformers model from a config.json, and the ``package.module:Class`` route.

Each architecture's tiny config (``irtools.recipes.hf_configs.TINY``: hidden 32, 2 layers)
is built on the CPU with real random weights; the recipe derives its inputs from the
forward signature. What is compared: the sum of every node's ``matmul_flops`` (evaluated at
the run's sizes) against ``FlopCounterMode``'s total for the same model and inputs of the
same shapes, prefill, eager attention — at the example sizes and at a second set of sizes
(the formula is symbolic in the named dims). The meta-device routes (``irtools analyze
config.json``, a class with its default config) are checked to run with every op costed.
"""

import json

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("transformers")
from irtools import analyze, analyze_module  # noqa: E402
from irtools.recipes import hf  # noqa: E402
from irtools.recipes.hf_configs import CLASS_ROUTE, MORE, TINY  # noqa: E402
from irtools.recipes.presets import resolve_class  # noqa: E402

ARCHS = ("phi3", "falcon", "gptj", "bloom", "stablelm", "starcoder2", "t5", "whisper", "clip", "mamba", "cohere")
#: second sizes: every named dim moved (Whisper's mel frames and image sizes stay the config's)
OTHER = {"batch_size": 2, "seq_len": 7, "decoder_seq_len": 4}


def matmul_total(result):
    return sympy.expand(sum(a["matmul_flops"] for _, a in result.ir.nodes()))


def resized(kwargs, dims, sizes):
    """The recipe's inputs with every named dim set to ``sizes`` (token ids kept tiny)."""
    out = {}
    for name, value in kwargs.items():
        if isinstance(value, tuple):
            out[name] = tuple(resized({f"{name}.{i}": v for i, v in enumerate(value)}, dims, sizes).values())
        elif isinstance(value, torch.Tensor):
            shape = list(value.shape)
            for axis, dim in dims.get(name, {}).items():
                shape[axis] = sizes[dim]
            out[name] = torch.randint(0, 2, shape) if not value.is_floating_point() else torch.randn(shape, dtype=value.dtype)
        else:
            out[name] = value
    return out


def counted(module, kwargs):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(**kwargs)
    return counter.get_total_flops()


def check_against_flop_counter(module, recipe):
    result = analyze_module(module, recipe.args, recipe.kwargs, recipe.dims)
    expr = matmul_total(result)
    example = sizes_of(recipe)
    hf.undo_capture(module)  # FlopCounterMode runs transformers' own layers
    assert counted(module, recipe.kwargs) == result.value(expr, example)
    assert counted(module, resized(recipe.kwargs, recipe.dims, OTHER)) == result.value(expr, OTHER)
    return result


def sizes_of(recipe):
    """Each named dim's example size, read off the recipe's own inputs."""
    found = {}
    for name, axes in recipe.dims.items():
        head, _, index = name.partition(".")
        value = recipe.kwargs[head]
        value = value[int(index)] if index else value
        found.update({dim: value.shape[axis] for axis, dim in axes.items()})
    return found


@pytest.mark.parametrize("arch", ARCHS)
def test_config_json_matmul_equals_flop_counter(tmp_path, arch):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY[arch]))
    config = hf.make_config(hf.load_config_file(path), attn="eager")
    torch.manual_seed(0)
    model = hf.build_model(config, device="cpu")
    recipe = hf.recipe(config, "prefill", arch, model=model)
    result = check_against_flop_counter(model, recipe)
    assert not result.unsupported, result.unsupported


#: whole-model classes: the same recipe as their config.json run (above) after the class's config
WHOLE = {"bloom", "mamba", "t5", "whisper"}


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in WHOLE else a for a in ARCHS])
def test_class_route_matmul_equals_flop_counter(arch):
    cls = resolve_class(CLASS_ROUTE[arch])
    config = hf.make_config(TINY[arch], attn="eager")
    torch.manual_seed(0)
    recipe = hf.class_recipe(cls, "prefill", config=config, device="cpu")
    result = check_against_flop_counter(recipe.module, recipe)
    assert not result.unsupported, result.unsupported


def test_inputs_follow_the_forward_signature(tmp_path):
    """Decoder inputs for seq2seq, fixed mel frames for Whisper, both towers for CLIP,
    use_cache off wherever taken; sizes distinct and the dims named."""
    for arch, want in {
        "t5": {"input_ids": {0: "batch_size", 1: "seq_len"}, "decoder_input_ids": {0: "batch_size", 1: "decoder_seq_len"}},
        "whisper": {"input_features": {0: "batch_size"}, "decoder_input_ids": {0: "batch_size", 1: "seq_len"}},
        "clip": {"input_ids": {0: "batch_size", 1: "seq_len"}, "pixel_values": {0: "batch_size"}},
        "bloom": {"input_ids": {0: "batch_size", 1: "seq_len"}},
    }.items():
        config = hf.make_config(TINY[arch])
        recipe = hf.recipe(config, "prefill", arch)
        assert recipe.dims == want, arch
        assert recipe.kwargs.get("use_cache", False) is False
        sizes = sizes_of(recipe)
        assert len(set(sizes.values())) == len(sizes) and min(sizes.values()) >= 2
    path = tmp_path / "whisper.json"
    path.write_text(json.dumps(TINY["whisper"]))
    whisper = hf.hf_recipe(str(path), "prefill")
    assert tuple(whisper.kwargs["input_features"].shape[1:]) == (8, 32)  # num_mel_bins, 2 x max_source_positions
    assert any("no config symbols" in n for n in whisper.notes)


def test_partial_rotary_width():
    """GPT-J rotates rotary_dim of each head, StableLM partial_rotary_factor of it: the class
    route's (cos, sin) have that width, not the head's."""
    gptj = hf.class_recipe(resolve_class(CLASS_ROUTE["gptj"]), "prefill", config=hf.make_config(TINY["gptj"]))
    assert [t.shape[-1] for t in gptj.kwargs["position_embeddings"]] == [2, 2]  # rotary_dim 4: sin, cos halves
    stablelm = hf.class_recipe(resolve_class(CLASS_ROUTE["stablelm"]), "prefill", config=hf.make_config(TINY["stablelm"]))
    assert [t.shape[-1] for t in stablelm.kwargs["position_embeddings"]] == [2, 2]  # head 8 x 0.25


def test_decode_refused_for_encoder_decoders():
    with pytest.raises(hf.ConfigError, match="t5 is an encoder-decoder: it has no decode scenario"):
        hf.recipe(hf.make_config(TINY["t5"]), "decode", "t5")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_cli_config_json_runs(tmp_path, capsys, arch):
    """``irtools analyze config.json`` end to end (meta device): every op costed."""
    from irtools.cli import main

    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY[arch]))
    code = main(["analyze", str(path), "--format", "json", "--dim", "decoder_seq_len=9"] if arch == "t5" else
                ["analyze", str(path), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and not report["unsupported"] and report["totals"]["flops"]["value"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("spec", [
    "transformers.models.gptj.modeling_gptj:GPTJBlock",
    "transformers.models.stablelm.modeling_stablelm:StableLmDecoderLayer",
    "transformers.models.bloom.modeling_bloom:BloomForCausalLM",
    "transformers.models.t5.modeling_t5:T5ForConditionalGeneration",
    "transformers.models.clip.modeling_clip:CLIPTextModel",
    "transformers.models.mamba.modeling_mamba:MambaForCausalLM",
])
def test_class_route_default_configs(spec):
    """The classes the issue names, with transformers' default (full-size) configs on meta."""
    result = analyze(spec)
    at = {"batch_size": 1, "seq_len": 16, **({"decoder_seq_len": 9} if "T5" in spec else {})}
    assert not result.unsupported and result.value(result.totals["flops"], at) > 0


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(MORE))
def test_more_model_types_from_config_json(tmp_path, arch):
    """Other model types (BART, wav2vec2 raw audio, LLaVA text-only, Mamba-2, GPTBigCode,
    ConvNeXt, Swin) from config.json on the meta device: every op costed, FLOPs > 0."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MORE[arch]))
    result = analyze(str(path))
    at = {"batch_size": 2, "seq_len": 7, "decoder_seq_len": 4}
    assert not result.unsupported and result.value(result.totals["flops"], at) > 0


def test_model_class_from_config():
    """``architectures`` names the class when it is a transformers model; otherwise decoders
    get their causal LM, encoder-decoders their seq2seq LM (speech too), the rest the base model."""
    import transformers

    bert = {k: v for k, v in TINY["phi3"].items() if k != "model_type"}
    assert hf.model_class(hf.make_config({"model_type": "bert", **bert, "architectures": ["BertForMaskedLM"]})) \
        is transformers.BertForMaskedLM
    assert hf.model_class(hf.make_config({"model_type": "bert", **bert, "architectures": ["Trainer"]})) \
        is transformers.AutoModel
    assert hf.model_class(hf.make_config(TINY["t5"])) is transformers.AutoModelForSeq2SeqLM
    assert hf.model_class(hf.make_config(TINY["whisper"])) is transformers.AutoModelForSpeechSeq2Seq
    assert hf.model_class(hf.make_config(TINY["mamba"])) is transformers.AutoModelForCausalLM
    assert hf.model_class(hf.make_config(TINY["clip"])) is transformers.AutoModel
