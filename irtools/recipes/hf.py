"""Whole transformers models from a config, on the meta device: no weights, no download.

``HF_CONFIGS`` holds the published config values of common models (source: each model's
``config.json`` on the Hugging Face hub, named in ``source``); ``load_config_file`` reads a
local ``config.json``. Decoder models get a prefill and a decode (DynamicCache) scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from irtools.ir.errors import IrtoolsError
from irtools.recipes.recipe import EXAMPLE_SIZES, Recipe

HF_CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2": {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257, "n_positions": 1024, "source": "openai-community/gpt2"},
    "gpt2-medium": {"model_type": "gpt2", "n_layer": 24, "n_embd": 1024, "n_head": 16, "vocab_size": 50257, "n_positions": 1024, "source": "openai-community/gpt2-medium"},
    "gpt2-large": {"model_type": "gpt2", "n_layer": 36, "n_embd": 1280, "n_head": 20, "vocab_size": 50257, "n_positions": 1024, "source": "openai-community/gpt2-large"},
    "gpt2-xl": {"model_type": "gpt2", "n_layer": 48, "n_embd": 1600, "n_head": 25, "vocab_size": 50257, "n_positions": 1024, "source": "openai-community/gpt2-xl"},
    "llama-3-8b": {
        "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
        "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "source": "meta-llama/Meta-Llama-3-8B",
    },
    "llama-3-70b": {
        "model_type": "llama", "num_hidden_layers": 80, "hidden_size": 8192, "intermediate_size": 28672,
        "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
        "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "source": "meta-llama/Meta-Llama-3-70B",
    },
    "mistral-7b": {
        "model_type": "mistral", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32768, "max_position_embeddings": 32768,
        "sliding_window": None, "rope_theta": 1000000.0, "source": "mistralai/Mistral-7B-v0.3",
    },
    "mixtral-8x7b": {
        "model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 32768,
        "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": None, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-5, "source": "mistralai/Mixtral-8x7B-v0.1",
    },
    "qwen3-30b-a3b": {
        "model_type": "qwen3_moe", "num_hidden_layers": 48, "hidden_size": 2048, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
        "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": True, "vocab_size": 151936,
        "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "source": "Qwen/Qwen3-30B-A3B",
    },
    "bert-base": {
        "model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768, "intermediate_size": 3072,
        "num_attention_heads": 12, "vocab_size": 30522, "max_position_embeddings": 512, "source": "google-bert/bert-base-uncased",
    },
    "vit-base": {
        "model_type": "vit", "num_hidden_layers": 12, "hidden_size": 768, "intermediate_size": 3072,
        "num_attention_heads": 12, "image_size": 224, "patch_size": 16, "source": "google/vit-base-patch16-224",
    },
}
DECODERS = {"gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt_neox", "opt", "falcon"}
ENCODERS = {"bert", "roberta", "distilbert", "vit", "deit", "electra"}


class ConfigError(IrtoolsError, ValueError):
    """A config that cannot become a model; the message is one line for the user."""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a local HF ``config.json`` (never fetched; only ``model_type`` and fields)."""
    from irtools.recipes.config_check import load_json_config  # regular file, bounded, finite, sizes > 0

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no such config file: {path}")
    return load_json_config(path, ConfigError)


def _require_transformers() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError("transformers models need the transformers package: pip install -e '.[hf]'") from None


def make_config(fields: dict[str, Any], attn: str = "sdpa", **overrides):
    """A transformers config object from plain fields (any model type transformers knows)."""
    _require_transformers()
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    fields = {k: v for k, v in {**fields, **overrides}.items() if k != "source"}
    model_type = fields.pop("model_type")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise ConfigError(
            f"unknown model_type {model_type!r}: transformers knows {len(CONFIG_MAPPING_NAMES)} model types "
            f"(e.g. {', '.join(sorted(DECODERS | ENCODERS)[:6])}, ...)"
        )
    try:
        config = AutoConfig.for_model(model_type, **fields)
    except Exception as exc:  # noqa: BLE001 - transformers rejects a config in many ways
        raise ConfigError(f"transformers rejects this {model_type} config: {' '.join(str(exc).split())}") from None
    config._attn_implementation = attn
    return config


def model_class(config) -> type:
    """The class a config stands for: its ``architectures`` entry when transformers has it,
    else a causal LM for decoders, a seq2seq LM for encoder-decoders, the base model otherwise."""
    import transformers
    from transformers.models.auto import modeling_auto as auto

    for name in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, name, None) if isinstance(name, str) else None
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    model_type = config.model_type
    if model_type in ENCODERS:
        return transformers.AutoModel
    if getattr(config, "is_encoder_decoder", False):
        for mapping, cls in (("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", "AutoModelForSeq2SeqLM"),
                             ("MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "AutoModelForSpeechSeq2Seq")):
            if model_type in getattr(auto, mapping, {}):
                return getattr(transformers, cls)
        return transformers.AutoModel
    if model_type in getattr(auto, "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", {}):
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def is_causal_lm(model: torch.nn.Module) -> bool:
    return type(model).__name__.endswith("ForCausalLM") or type(model).__name__.endswith("LMHeadModel")


def build_model(config, device: str = "meta") -> torch.nn.Module:
    """The model on the meta device (decoders with their LM head); ``device="cpu"`` gives
    real random weights (tests)."""
    cls = model_class(config)
    try:
        with torch.device(device):
            model = (cls.from_config(config) if hasattr(cls, "from_config") and cls.__name__.startswith("Auto")
                     else cls(config)).eval()
    except ValueError as exc:
        if "attention implementation" not in str(exc) or config._attn_implementation == "eager":
            raise ConfigError(f"transformers cannot build a {config.model_type} model from this config: {' '.join(str(exc).split())}") from None
        config._attn_implementation = "eager"  # models without SDPA support (gemma2)
        return build_model(config, device)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"transformers cannot build a {config.model_type} model from this config: {' '.join(str(exc).split())}") from None
    return model.to(device) if device == "meta" else model  # legacy torch.Tensor(...) ignores the device context


def prepare_capture(model: torch.nn.Module) -> list[str]:
    """Point layers torch.export cannot capture symbolically at irtools' equivalents (this
    instance only): expert loops (``moe_capture``), selective scans (``ssm_capture``).
    Returns the notes the report should show."""
    from irtools.recipes.moe_capture import route_experts
    from irtools.recipes.ssm_capture import route_scans

    notes = []
    if route_experts(model):
        from passes.costs.moe import ROUTING_ASSUMPTION

        notes.append(ROUTING_ASSUMPTION)
    if route_scans(model):
        notes.append("selective scans are one op (irtools.selective_scan) so seq_len stays symbolic")
    return notes


def undo_capture(model: torch.nn.Module) -> None:
    """Undo :func:`prepare_capture`: transformers' own layers run again (eager references)."""
    from irtools.recipes.moe_capture import unroute_experts
    from irtools.recipes.ssm_capture import unroute_scans

    unroute_experts(model)
    unroute_scans(model)


def _head_dims(config) -> tuple[int, int]:
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return kv_heads, head_dim


def recipe(config, scenario: str, name: str, model: torch.nn.Module | None = None, all_logits: bool = False) -> Recipe:
    """Model + example inputs (from its forward signature, ``hf_inputs``) + dim names for
    prefill, or for decode with a ``DynamicCache`` of ``cache_len`` tokens (causal LMs).
    Causal LMs compute logits for the last position unless ``all_logits`` (``logits.py``)."""
    from irtools.recipes.hf_inputs import model_inputs, text_config
    from irtools.recipes.logits import keep_logits
    from irtools.recipes.windows import decode_cache, window_note, window_paths

    model = model if model is not None else build_model(config)
    notes = prepare_capture(model)
    if scenario == "decode" and not is_causal_lm(model):
        kind = "an encoder" if config.model_type in ENCODERS or not getattr(config, "is_decoder", True) else "not a causal LM"
        if getattr(config, "is_encoder_decoder", False):
            kind = "an encoder-decoder"
        raise ConfigError(f"{config.model_type} is {kind}: it has no decode scenario")
    if scenario == "prefill":  # models that take use_cache through **kwargs read the config's
        for part in {id(c): c for c in (config, text_config(config))}.values():
            if hasattr(part, "use_cache"):
                part.use_cache = False
    inputs = model_inputs(model, config)
    notes = inputs.notes + notes
    logits = keep_logits(model, inputs.kwargs, all_logits, causal=is_causal_lm(model))
    if scenario == "prefill":
        return Recipe(model, (), inputs.kwargs, inputs.dims, name, notes=notes, logits=logits)
    from transformers.integrations.executorch import register_dynamic_cache_export_support

    register_dynamic_cache_export_support()
    b, c = EXAMPLE_SIZES["batch_size"], EXAMPLE_SIZES["cache_len"]
    kv_heads, head_dim = _head_dims(config)
    cache = decode_cache(config)  # plain layers where layers slide: windows.py
    dims = dict(inputs.dims)
    for layer in range(config.num_hidden_layers):
        past = torch.randn(b, kv_heads, c, head_dim, device="meta")
        cache.update(past, past.clone(), layer)
        for kind in ("key_cache", "value_cache"):
            dims[f"cache.{kind}.{layer}"] = {0: "batch_size", 2: "cache_len"}
    kwargs = {**inputs.kwargs, "cache": cache, "use_cache": True}
    windows = window_paths(model, config)
    notes += [window_note(windows)] if windows else []
    return Recipe(model, (), kwargs, dims, name, notes=notes, logits=logits, sliding_windows=windows)


def hf_recipe(model: str, scenario: str, attn: str = "sdpa", all_logits: bool = False) -> Recipe:
    """A recipe for an HF preset name or a path to a local ``config.json`` (``all_logits``:
    the LM head on every position, else the last)."""
    from irtools.recipes.config_symbols import SPACES

    if model in HF_CONFIGS:
        fields, name = HF_CONFIGS[model], model
    else:
        fields, name = load_config_file(model), Path(model).stem
    return _recipe_at(fields, scenario, name, attn, SPACES.get(fields["model_type"]), all_logits=all_logits)


def _recipe_at(fields: dict[str, Any], scenario: str, name: str, attn: str, space, all_logits: bool = False,
               **overrides) -> Recipe:
    config = make_config(fields, attn, **overrides)
    result = recipe(config, scenario, name, all_logits=all_logits)
    result.rebuild = lambda more: _recipe_at(fields, scenario, name, attn, space, all_logits, **{**overrides, **more})
    result.space, result.config = space, config
    if space is None:
        result.notes.append(f"no config symbols are known for {config.model_type}: formulas are in runtime dims only")
    return result


def _class_config(cls: type, model_type: str):
    """The config a class is built from: its model type's preset, else transformers' defaults;
    a class with its own config class (CLIPTextModel: CLIPTextConfig) gets that one."""
    from transformers import AutoConfig

    fields = next((dict(f) for f in HF_CONFIGS.values() if f["model_type"] == model_type), {"model_type": model_type})
    try:
        config = make_config(fields, "eager")
    except ConfigError:
        config = AutoConfig.for_model(model_type)
        config._attn_implementation = "eager"
    return own_config(cls, config)


def own_config(cls: type, config):
    """``config``, or the part of a composite config that ``cls`` is built from (CLIPTextModel:
    its text_config), or that class's defaults."""
    own = getattr(cls, "config_class", None)
    if not isinstance(own, type) or isinstance(config, own):
        return config
    for name in getattr(config, "sub_configs", {}) or {}:
        part = getattr(config, name, None)
        if isinstance(part, own):
            return part
    config = own()
    config._attn_implementation = "eager"
    return config


def class_recipe(cls: type, scenario: str, config=None, device: str = "meta", all_logits: bool = False) -> Recipe:
    """A transformers class given as ``package.module:Class``: a whole model from its
    model type's preset config (or transformers' defaults); a sub-module (attention, MLP,
    MoE block, decoder layer) built from that config (its text part where composite) and fed
    the inputs its forward takes (``hf_inputs.module_inputs``). ``config``: a transformers
    config to build it from instead, and ``device`` to build on (tests: tiny, on the CPU)."""
    _require_transformers()
    import inspect
    import re

    from transformers import PreTrainedModel

    from irtools.recipes.hf_inputs import module_inputs, text_config

    found = re.match(r"transformers\.models\.([^.]+)\.", cls.__module__)
    if not found:
        raise ConfigError(f"{cls.__name__}: not a transformers model class (transformers.models.<type>)")
    config = own_config(cls, config) if config is not None else _class_config(cls, found.group(1))
    if issubclass(cls, PreTrainedModel):
        try:
            with torch.device(device):
                model = cls(config).eval()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"{cls.__name__}: cannot build it from its config: {' '.join(str(exc).split())}") from None
        return recipe(config, scenario, cls.__name__, model=model, all_logits=all_logits)
    if scenario != "prefill":
        raise ConfigError(f"{cls.__name__}: sub-modules are analyzed for prefill; give a whole model for decode")
    config = config if hasattr(config, "hidden_size") else text_config(config)
    known = {
        "config": config, "layer_idx": 0, "hidden_size": config.hidden_size,
        "intermediate_size": getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
        or 4 * config.hidden_size,
    }
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    missing = [p.name for p in params if p.default is p.empty and p.name not in known and p.kind is p.POSITIONAL_OR_KEYWORD]
    if missing:
        raise ConfigError(f"{cls.__name__}: cannot build it from a config (needs {', '.join(missing)})")
    with torch.device(device):
        module = cls(**{p.name: known[p.name] for p in params if p.name in known}).eval()
    notes = prepare_capture(module)
    inputs = module_inputs(module, config)
    return Recipe(module, (), inputs.kwargs, inputs.dims, cls.__name__, notes=inputs.notes + notes)
