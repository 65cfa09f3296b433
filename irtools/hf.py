"""Whole transformers models from a config, on the meta device: no weights, no download.

``HF_CONFIGS`` holds the published config values of common models (source: each model's
``config.json`` on the Hugging Face hub, named in ``source``); ``load_config_file`` reads a
local ``config.json``. Decoder models get a prefill and a decode (DynamicCache) scenario.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from irtools.presets import EXAMPLE_SIZES, Recipe

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


class ConfigError(ValueError):
    """A config that cannot become a model; the message is one line for the user."""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a local HF ``config.json`` (never fetched; only ``model_type`` and fields)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no such config file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise ConfigError(f"{path}: a transformers config.json needs a 'model_type'")
    return data


def _require_transformers() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError("transformers models need the transformers package: pip install -e '.[hf]'") from None


def make_config(fields: dict[str, Any], attn: str = "sdpa", **overrides):
    """A transformers config object from plain fields (unknown model types rejected)."""
    _require_transformers()
    from transformers import AutoConfig

    fields = {k: v for k, v in {**fields, **overrides}.items() if k != "source"}
    model_type = fields.pop("model_type")
    if model_type not in DECODERS | ENCODERS:
        raise ConfigError(
            f"unknown model_type {model_type!r} (supported: {', '.join(sorted(DECODERS | ENCODERS))})"
        )
    try:
        config = AutoConfig.for_model(model_type, **fields)
    except Exception as exc:  # noqa: BLE001 - transformers rejects a config in many ways
        raise ConfigError(f"transformers rejects this {model_type} config: {' '.join(str(exc).split())}") from None
    config._attn_implementation = attn
    return config


def build_model(config) -> torch.nn.Module:
    """The model on the meta device (decoders with their LM head)."""
    from transformers import AutoModel, AutoModelForCausalLM

    auto = AutoModelForCausalLM if config.model_type in DECODERS else AutoModel
    try:
        with torch.device("meta"):
            return auto.from_config(config).eval()
    except ValueError as exc:
        if "attention implementation" not in str(exc) or config._attn_implementation == "eager":
            raise ConfigError(f"transformers cannot build a {config.model_type} model from this config: {' '.join(str(exc).split())}") from None
        config._attn_implementation = "eager"  # models without SDPA support (gemma2)
        return build_model(config)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"transformers cannot build a {config.model_type} model from this config: {' '.join(str(exc).split())}") from None


def _head_dims(config) -> tuple[int, int]:
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return kv_heads, head_dim


def recipe(config, scenario: str, name: str, model: torch.nn.Module | None = None) -> Recipe:
    """Model + example inputs + dim names for prefill or decode."""
    model = model if model is not None else build_model(config)
    b, s, c = (EXAMPLE_SIZES[k] for k in ("batch_size", "seq_len", "cache_len"))
    if config.model_type in ("vit", "deit"):
        if scenario == "decode":
            raise ConfigError(f"{config.model_type} is an encoder: it has no decode scenario")
        pixels = torch.randn(b, config.num_channels, config.image_size, config.image_size, device="meta")
        return Recipe(model, (), {"pixel_values": pixels}, {"pixel_values": {0: "batch_size"}}, name)
    ids = torch.randint(0, config.vocab_size, (b, s), device="meta")
    dims: dict[str, dict[int, str]] = {"input_ids": {0: "batch_size", 1: "seq_len"}}
    if config.model_type not in DECODERS:
        if scenario == "decode":
            raise ConfigError(f"{config.model_type} is an encoder: it has no decode scenario")
        return Recipe(model, (), {"input_ids": ids}, dims, name)
    if scenario == "prefill":
        return Recipe(model, (), {"input_ids": ids, "use_cache": False}, dims, name)
    from transformers import DynamicCache
    from transformers.integrations.executorch import register_dynamic_cache_export_support

    register_dynamic_cache_export_support()
    kv_heads, head_dim = _head_dims(config)
    cache = DynamicCache(config=config)
    for layer in range(config.num_hidden_layers):
        past = torch.randn(b, kv_heads, c, head_dim, device="meta")
        cache.update(past, past.clone(), layer)
        for kind in ("key_cache", "value_cache"):
            dims[f"cache.{kind}.{layer}"] = {0: "batch_size", 2: "cache_len"}
    return Recipe(model, (), {"input_ids": ids, "cache": cache, "use_cache": True}, dims, name)


def hf_recipe(model: str, scenario: str, attn: str = "sdpa") -> Recipe:
    """A recipe for an HF preset name or a path to a local ``config.json``."""
    from irtools.config_symbols import SPACES

    if model in HF_CONFIGS:
        fields, name = HF_CONFIGS[model], model
    else:
        fields, name = load_config_file(model), Path(model).stem
    return _recipe_at(fields, scenario, name, attn, SPACES.get(fields["model_type"]))


def _recipe_at(fields: dict[str, Any], scenario: str, name: str, attn: str, space, **overrides) -> Recipe:
    config = make_config(fields, attn, **overrides)
    result = recipe(config, scenario, name)
    result.rebuild = lambda more: _recipe_at(fields, scenario, name, attn, space, **{**overrides, **more})
    result.space, result.config = space, config
    return result


def class_recipe(cls: type, scenario: str) -> Recipe:
    """A transformers class given as ``package.module:Class``: a whole model from its
    model type's preset config (or transformers' defaults); a sub-module (attention, MLP,
    decoder layer) built from that config and fed ``hidden_states`` of (batch, seq, hidden)."""
    _require_transformers()
    import re

    from transformers import AutoConfig, PreTrainedModel

    found = re.match(r"transformers\.models\.([^.]+)\.", cls.__module__)
    if not found:
        raise ConfigError(f"{cls.__name__}: not a transformers model class (transformers.models.<type>)")
    model_type = found.group(1)
    fields = next((dict(f) for f in HF_CONFIGS.values() if f["model_type"] == model_type), {"model_type": model_type})
    try:
        config = make_config(fields, "eager")
    except ConfigError:
        config = AutoConfig.for_model(model_type)
        config._attn_implementation = "eager"
    if issubclass(cls, PreTrainedModel):
        with torch.device("meta"):
            model = cls(config).eval()
        return recipe(config, scenario, cls.__name__, model=model)
    if scenario != "prefill":
        raise ConfigError(f"{cls.__name__}: sub-modules are analyzed for prefill; give a whole model for decode")
    import inspect

    known = {
        "config": config, "layer_idx": 0, "hidden_size": config.hidden_size,
        "intermediate_size": getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
        or 4 * config.hidden_size,
    }
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    missing = [p.name for p in params if p.default is p.empty and p.name not in known and p.kind is p.POSITIONAL_OR_KEYWORD]
    if missing:
        raise ConfigError(f"{cls.__name__}: cannot build it from a config (needs {', '.join(missing)})")
    with torch.device("meta"):
        module = cls(**{p.name: known[p.name] for p in params if p.name in known})
    b, s = EXAMPLE_SIZES["batch_size"], EXAMPLE_SIZES["seq_len"]
    forward = [p for p in inspect.signature(module.forward).parameters.values()]
    first = forward[0].name
    kwargs: dict[str, Any] = {first: torch.randn(b, s, config.hidden_size, device="meta")}
    dims = {first: {0: "batch_size", 1: "seq_len"}}
    if "position_embeddings" in (p.name for p in forward):  # rotary models: (cos, sin) per token
        _, head_dim = _head_dims(config)
        cos = torch.randn(b, s, head_dim, device="meta")
        kwargs["position_embeddings"] = (cos, cos.clone())
        dims.update({f"position_embeddings.{i}": {0: "batch_size", 1: "seq_len"} for i in (0, 1)})
    return Recipe(module.eval(), (), kwargs, dims, cls.__name__)
