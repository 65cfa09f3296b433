"""Which positions a causal LM computes logits for (``Recipe.logits``, ``GraphMeta.logits``).

Generation (transformers' ``generate`` passes ``logits_to_keep=1``) and serving engines run the
LM head on the last position only, so prefill and decode recipes do the same by default
("last"); ``all_logits`` keeps every position ("all": training, scoring a whole sequence).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch


def keep_logits(model: torch.nn.Module, kwargs: dict[str, Any], all_logits: bool = False, causal: bool = True) -> str | None:
    """Set ``logits_to_keep=1`` in ``kwargs`` unless ``all_logits``; the choice ("last" or
    "all"), or None for a model that is not a causal LM. A causal LM whose forward has no
    ``logits_to_keep`` computes every position ("all")."""
    if not causal:
        return None
    try:
        takes = "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes or all_logits:
        return "all"
    kwargs["logits_to_keep"] = 1
    return "last"
