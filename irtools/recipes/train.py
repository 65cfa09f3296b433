"""Training recipes: a model with its loss, so that the joint forward+backward graph can be
captured (``irtools.capture.torch.joint``). The model runs in train mode (dropout active).

- transformers models that take ``labels`` compute their own loss: causal LMs get the input
  ids as labels (transformers shifts them; logits at every position, never ``logits_to_keep``),
  masked LMs labels at every position, classifiers one label per example;
- a transformers encoder built as its base model (``bert-base``) is rebuilt as its masked-LM
  class (``AutoModelForMaskedLM``) so that it has a loss;
- any other module is wrapped (:class:`LossWrapper`): a (batch, classes) output gets a
  cross-entropy against class targets made in the graph (class 0: the values do not change
  the cost), anything else a stand-in loss, the mean of the first output's squares (noted).
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree

from irtools.recipes.recipe import Recipe

SEQUENCE_LABELS = ("ForCausalLM", "LMHeadModel", "ForMaskedLM", "ForTokenClassification", "ForPreTraining")
EXAMPLE_LABELS = ("ForSequenceClassification", "ForImageClassification", "ForAudioClassification")
STAND_IN = "stand-in loss: the mean of the output's squares (the model has no loss of its own)"


class LossWrapper(nn.Module):
    """``model``'s forward followed by a loss; the model sits at attribute ``model``. Its
    forward takes the model's inputs by name (:func:`wrap` gives it their signature)."""

    irtools_model_attr = "model"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **inputs):
        out = self.model(**inputs)
        first = next(t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point())
        if first.dim() == 2:  # (batch, classes): cross-entropy against class targets
            self.irtools_loss = "cross-entropy of the (batch, classes) output against class targets"
            targets = torch.zeros(first.shape[0], dtype=torch.long, device=first.device)
            return F.cross_entropy(first, targets)
        self.irtools_loss = STAND_IN
        return first.float().pow(2).mean()


def wrap(model: nn.Module, names: list[str]) -> LossWrapper:
    """A :class:`LossWrapper` whose forward's signature names ``names`` (keyword-only), so
    that torch.export binds each input (and its dynamic dims) by name."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names]

    def forward(self, **inputs):
        return LossWrapper.forward(self, **inputs)

    forward.__signature__ = inspect.Signature(params)
    cls = type(LossWrapper.__name__, (LossWrapper,), {"forward": forward, "__module__": __name__})
    return cls(model)


def loss_kind(model: nn.Module) -> str | None:
    """How a transformers model's own loss is fed: "sequence" (labels per position),
    "example" (one label per example), or None (no loss of its own)."""
    try:
        takes = "labels" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        takes = False
    name = type(model).__name__
    if takes and name.endswith(SEQUENCE_LABELS):
        return "sequence"
    if takes and name.endswith(EXAMPLE_LABELS):
        return "example"
    return None


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _masked_lm(config, device) -> nn.Module | None:
    """The masked-LM model of an encoder config, or None where transformers has none."""
    try:
        from transformers import AutoModelForMaskedLM
        from transformers.models.auto import modeling_auto
    except ImportError:
        return None
    if config.model_type not in getattr(modeling_auto, "MODEL_FOR_MASKED_LM_MAPPING_NAMES", {}):
        return None
    with torch.device(device):
        return AutoModelForMaskedLM.from_config(config)


def _labels(kind: str, kwargs: dict[str, Any], dims: dict, device) -> tuple[torch.Tensor, dict[int, str]]:
    ids = kwargs.get("input_ids")
    if kind == "sequence" and isinstance(ids, torch.Tensor):
        return ids.clone(), dict(dims.get("input_ids", {}))
    batch_input = next((k for k, v in kwargs.items() if isinstance(v, torch.Tensor)), None)
    b = kwargs[batch_input].shape[0] if batch_input else 3
    batch_dim = {a: n for a, n in dims.get(batch_input, {}).items() if a == 0}
    return torch.zeros(b, dtype=torch.long, device=device), batch_dim


def train_recipe(recipe: Recipe) -> Recipe:
    """The training recipe of a prefill recipe (its logits on every position): the model in
    train mode with its loss; ``rebuild`` and config symbols carry over."""
    model, kwargs, dims = recipe.module, dict(recipe.kwargs), dict(recipe.dims)
    notes = list(recipe.notes)
    kind = loss_kind(model)
    if kind is None and recipe.config is not None and type(model).__module__.startswith("transformers."):
        rebuilt = _masked_lm(recipe.config, _device(model))
        if rebuilt is not None:
            model, kind = rebuilt, loss_kind(rebuilt)
            named = inspect.signature(model.forward).parameters
            kwargs = {k: v for k, v in kwargs.items() if k in named}  # the base model's use_cache
            notes.append(f"trained as {type(model).__name__} (masked-LM loss on every position)")
    if kind is not None:
        labels, label_dims = _labels(kind, kwargs, dims, _device(model))
        kwargs["labels"] = labels
        if label_dims:
            dims["labels"] = label_dims
        kwargs.pop("logits_to_keep", None)
        module, loss = model, f"{type(model).__name__}'s own loss ({'labels per position' if kind == 'sequence' else 'one label per example'})"
    else:
        if recipe.args:
            bound = inspect.signature(model.forward).bind_partial(*recipe.args)
            kwargs = {**bound.arguments, **kwargs}
        module, loss = wrap(model, list(kwargs)), "cross-entropy on the (batch, classes) output, or " + STAND_IN
    module.train()
    out = replace(recipe, module=module, args=(), kwargs=kwargs, dims=dims, notes=notes,
                  logits="all" if recipe.logits else None, loss=loss)
    if recipe.rebuild is not None:
        out.rebuild = lambda overrides: train_recipe(recipe.rebuild(overrides))
    return out


def module_recipe(module: nn.Module, args=(), kwargs=None, dims=None, name: str | None = None) -> Recipe:
    """The training recipe of a module and its example inputs (the Python API)."""
    base = Recipe(module, tuple(args), dict(kwargs or {}), dict(dims or {}), name or type(module).__name__)
    return train_recipe(base)
