"""Built-in models: a name -> how to build the module and its example inputs per scenario.

Example sizes are distinct primes >= 2 so torch.export neither specializes a dim (0/1) nor
merges two dims of equal size.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from irtools.ir.errors import user_code
from irtools.recipes import hf
from irtools.recipes.builtin import BUILTIN_PACKAGES, load_builtin_package
from irtools.recipes.recipe import EXAMPLE_SIZES, SCENARIOS, Recipe


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    cls_path: str  # "package.module:Class"
    build: Callable[[type, str], Recipe]


def _gpt2_attention_inputs(module: torch.nn.Module, scenario: str, name: str) -> Recipe:
    b, s, c = (EXAMPLE_SIZES[k] for k in ("batch_size", "seq_len", "cache_len"))
    hidden, heads = module.embed_dim, module.num_heads
    x = torch.randn(b, s, hidden)
    dims = {"hidden_states": {0: "batch_size", 1: "seq_len"}}
    kwargs: dict[str, Any] = {}
    if scenario == "decode":
        past = torch.randn(b, heads, c, hidden // heads)
        kwargs["layer_past"] = (past, past.clone())
        for i in (0, 1):
            dims[f"layer_past.{i}"] = {0: "batch_size", 2: "cache_len"}
    return Recipe(module, (x,), kwargs, dims, name)


def _seed_attention(cls: type, scenario: str, **fields) -> Recipe:
    from irtools.recipes.config_symbols import SEED_ATTENTION
    from models.gpt2_attention import GPT2Config

    config = GPT2Config(**fields)
    recipe = _gpt2_attention_inputs(cls(config).eval(), scenario, "GPT2Attention")
    recipe.rebuild = lambda overrides: _seed_attention(cls, scenario, **overrides)
    recipe.space, recipe.config = SEED_ATTENTION, config
    return recipe


PRESETS: dict[str, Preset] = {
    "gpt2-attention": Preset(
        "gpt2-attention",
        "the seed's GPT2Attention (transformers 4.x semantics), GPT-2 small config (768 hidden, 12 heads)",
        "models.gpt2_attention:GPT2Attention",
        _seed_attention,
    ),
}
DEFAULT_PRESET = "gpt2-attention"


def resolve_class(spec: str) -> type:
    """Import ``package.module:Class``. Built-in packages (``models``) load from irtools'
    installation; other modules are searched on ``sys.path``, with the working directory
    appended at its end (never first: an installed module is never shadowed by a local file)."""
    module_name, _, cls_name = spec.partition(":")
    if module_name.split(".")[0] in BUILTIN_PACKAGES:
        load_builtin_package(module_name.split(".")[0])
    elif os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        with user_code(f"importing {module_name}"):
            obj = importlib.import_module(module_name)
        for part in cls_name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {spec!r}: {exc}") from exc
    if not isinstance(obj, type) or not issubclass(obj, torch.nn.Module):
        raise ValueError(f"{spec!r} is not a torch.nn.Module class")
    return obj


def recipe_for(model: str, scenario: str, all_logits: bool = False) -> Recipe:
    """The recipe of a preset name or of a ``package.module:Class`` a preset knows inputs for
    (``all_logits``: a causal LM's head on every position, else the last)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (choose from {', '.join(SCENARIOS)})")
    if scenario == "train":  # the prefill recipe with its loss, logits on every position (recipes/train.py)
        from irtools.recipes.train import train_recipe

        return train_recipe(recipe_for(model, "prefill", all_logits=True))
    if model in hf.HF_CONFIGS or model.endswith(".json"):
        return hf.hf_recipe(model, scenario, all_logits=all_logits)
    if model in PRESETS:
        preset = PRESETS[model]
        return preset.build(resolve_class(preset.cls_path), scenario)
    if ":" in model:
        with user_code(f"building {model}"):
            return _class_recipe(model, scenario, all_logits)
    names = [*PRESETS, *hf.HF_CONFIGS]
    raise ValueError(f"unknown model {model!r}: not a preset ({', '.join(names)}), a config.json, an .onnx file or package.module:Class")


def _class_recipe(model: str, scenario: str, all_logits: bool = False) -> Recipe:
    """The recipe of a ``package.module:Class`` (its own example_inputs, or a preset's)."""
    cls = resolve_class(model)
    if cls.__module__.startswith("transformers."):
        return hf.class_recipe(cls, scenario, all_logits=all_logits)
    for preset in PRESETS.values():
        if preset.cls_path.split(":")[1] == cls.__name__:
            return preset.build(cls, scenario)
    if hasattr(cls, "example_inputs"):
        module = cls()
        args, kwargs, dims = module.example_inputs(scenario)
        return Recipe(module.eval(), tuple(args), dict(kwargs), dims, cls.__name__)
    raise ValueError(
        f"no preset knows the inputs of {cls.__name__}: give the class an example_inputs(scenario) method "
        "returning (args, kwargs, dims), or use the Python API (irtools.analyze_module)"
    )
