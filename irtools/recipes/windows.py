"""Sliding-window attention in transformers decoders: which layers slide, and their decode cache.

transformers gives each sliding layer of ``DynamicCache(config=...)`` a
``DynamicSlidingWindowLayer`` (Mistral's ``sliding_window``, Qwen2's ``use_sliding_window``,
Gemma 2's alternating ``layer_types``): it keeps the last ``window - 1`` tokens, and a decode
step attends over those plus the new ones. Its length is a Python int and its update slices
the cache, so torch.export guards the cache length against the window — or, for a window below
the example cache, specializes it (``Found the following conflicts …``). Decode recipes of such
models therefore feed plain ``DynamicLayer`` caches of ``cache_len`` tokens (guard-free at any
length and window) and name the sliding layers; ``passes/sliding_window.py`` then caps those
layers' cache length at ``Min(cache_len, window - 1)``.
"""

from __future__ import annotations

import torch


def layer_windows(config) -> dict[int, int]:
    """Decoder layer index -> window, for the layers transformers' cache keeps a window of."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicSlidingWindowLayer

    try:
        layers = DynamicCache(config=config).layers
    except Exception:  # noqa: BLE001 - a config transformers' cache cannot read: no windows known
        return {}
    return {i: int(layer.sliding_window) for i, layer in enumerate(layers) if isinstance(layer, DynamicSlidingWindowLayer)}


def decode_cache(config):
    """An empty DynamicCache for a decode recipe: transformers' own per-layer cache, or plain
    layers where some layers slide (see the module docstring)."""
    from transformers import DynamicCache

    return DynamicCache() if layer_windows(config) else DynamicCache(config=config)


def _layer_stack(model: torch.nn.Module, count: int) -> str | None:
    """Path of the ModuleList holding the ``count`` decoder layers (``model.layers``)."""
    found = [name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == count]
    return next((n for n in found if n.endswith("layers")), found[0] if found else None)


def window_paths(model: torch.nn.Module, config) -> dict[str, int] | None:
    """Module path of each sliding layer -> its window (``Recipe.sliding_windows``); None
    where no layer slides. Where the layer list is not found and every layer slides by one
    window, the whole model (``""``) is windowed."""
    windows = layer_windows(config)
    if not windows:
        return None
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    count = getattr(text, "num_hidden_layers", len(windows))
    stack = _layer_stack(model, count)
    if stack is not None:
        return {f"{stack}.{i}": w for i, w in windows.items()}
    if len(windows) == count and len(set(windows.values())) == 1:
        return {"": next(iter(windows.values()))}
    return None


def window_note(paths: dict[str, int]) -> str:
    """The report's line on the windows (one window, or the range of them)."""
    sizes = sorted(set(paths.values()))
    size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    return (f"sliding window {size} in {len(paths)} layer(s): a decode step attends over Min(cache_len, window - 1) "
            "cached tokens plus the new ones (transformers' DynamicSlidingWindowLayer keeps window - 1)")
