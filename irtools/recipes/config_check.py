"""Reading a local ``config.json`` safely: a regular file of bounded size, finite numbers,
and sizes that are positive integers.

transformers accepts ``num_hidden_layers: -3`` or ``hidden_size: 1e30`` and fails much later
(or not at all: a negative layer count builds an empty model); these are refused here with
one line that names the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from irtools.files import MAX_TEXT_BYTES, read_text
from irtools.ir.errors import IrtoolsError

#: sizes every model has: positive integers.
POSITIVE = ("num_hidden_layers", "n_layer", "n_layers", "hidden_size", "n_embd", "dim", "num_attention_heads", "n_head",
            "n_heads", "vocab_size", "intermediate_size", "num_key_value_heads", "head_dim", "max_position_embeddings",
            "n_positions", "n_ctx", "image_size", "patch_size", "num_channels", "hidden_dim", "n_inner", "ffn_dim")
#: other count-like fields (num_*, *_size, *_layers, ...): integers >= 0 when given.
COUNT = re.compile(r"^(num_|n_)|(_size|_dim|_layers|_heads|_experts|_positions)$")
#: no real model comes near this (2**31 tokens, features or layers).
MAX_SIZE = 2**31


class _NonFinite(ValueError):
    pass


def _no_constant(name: str):
    raise _NonFinite(f"{name} is not a number JSON allows")


def check_fields(data: dict[str, Any], where: str, error: type[IrtoolsError]) -> None:
    """Sizes are integers in range (positive for the core ones); null stays allowed."""
    for key, value in data.items():
        if value is None or not isinstance(key, str):
            continue
        if key in POSITIVE or COUNT.search(key):
            if isinstance(value, (dict, list, str)):
                continue  # structured fields (rope_scaling, ...) and names are transformers' business
            low = 1 if key in POSITIVE else 0
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_SIZE:
                kind = "a positive integer" if low else "an integer >= 0"
                raise error(f"{where}: {key} must be {kind} up to {MAX_SIZE}, got {value!r}")


def load_json_config(path, error: type[IrtoolsError]) -> dict[str, Any]:
    """A config.json as a dict with a ``model_type``; every problem is ``error`` (one line)."""
    path = Path(path)
    text = read_text(path, MAX_TEXT_BYTES, "config file", error)
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except _NonFinite as exc:
        raise error(f"cannot read {path}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long integers, deep nesting
        raise error(f"cannot read {path}: not valid JSON ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise error(f"{path}: a transformers config.json needs a 'model_type'")
    check_fields(data, str(path), error)
    return data


__all__ = ["MAX_SIZE", "check_fields", "load_json_config"]
