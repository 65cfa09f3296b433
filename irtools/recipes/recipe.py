"""What capture needs of a model: the module, example inputs, and the names of dynamic dims.

Example sizes are distinct primes >= 2 so torch.export neither specializes a dim (0/1) nor
merges two dims of equal size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

EXAMPLE_SIZES = {"batch_size": 3, "seq_len": 5, "cache_len": 7}
SCENARIOS = ("prefill", "decode", "train")


@dataclass
class Recipe:
    """What capture needs: the module, its example inputs, and the names of dynamic dims.

    ``rebuild(fields)`` makes the same recipe at a config with ``fields`` overridden and
    ``space`` names the config symbols: together they allow config-symbolic formulas."""

    module: torch.nn.Module
    args: tuple
    kwargs: dict[str, Any]
    dims: dict[str, dict[int, str]]
    name: str
    rebuild: Callable[[dict[str, Any]], Recipe] | None = None
    space: Any = None  # irtools.recipes.config_symbols.ProbeSpace
    config: Any = None
    #: what the recipe chose or assumed that a reader of the report should know (one line each)
    notes: list[str] = field(default_factory=list)
    #: positions the LM head runs on: "last" (generation's logits_to_keep=1) or "all"; None: no LM head
    logits: str | None = None
    #: module path of each sliding-window layer -> its window (irtools/recipes/windows.py)
    sliding_windows: dict[str, int] | None = None
    #: train: what the loss is (irtools/recipes/train.py); the module's forward returns it
    loss: str | None = None
