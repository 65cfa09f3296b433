"""Sliding-window pass: decode shapes of windowed layers capped at the window.

``ir.meta.sliding_windows`` (set from the recipe, see ``irtools/recipes/windows.py``) maps the
module path of each sliding-window layer to its window ``W``. Such a layer's cache keeps the
last ``W - 1`` tokens (transformers' ``DynamicSlidingWindowLayer``), so a decode step after
``cache_len`` tokens attends over ``Min(cache_len, W - 1) + seq_len`` keys — for one new token
``Min(cache_len + 1, W)``. The graph was captured with an uncapped cache of ``cache_len``
tokens; this pass substitutes ``cache_len -> Min(cache_len, W - 1)`` in the shapes and size
arguments of

- every node inside a windowed layer (cache update, attention, its repeat_kv views);
- every node outside them whose cache-length outputs only windowed nodes read (the cache
  inputs' rebuild, the sliding mask);
- the graph inputs (the cached keys and values) only windowed nodes read.

It runs right after capture (before the cost pass), so costs, kernels and time all follow.
"""

from __future__ import annotations

import dataclasses

import sympy

from irtools.ir import IRGraph, TensorSpec
from irtools.ir.symbols import sym

CACHE_LEN = sym("cache_len")


def _has_cache_len(spec: TensorSpec | None) -> bool:
    return spec is not None and any(CACHE_LEN in sympy.sympify(d).free_symbols for d in spec.shape)


def _window_of(scope, windows: dict[str, int]) -> int | None:
    """The window of the innermost windowed module in a node's scope (root first)."""
    found = windows.get("")
    for level in scope:
        if level.path in windows:
            found = windows[level.path]
    return found


def _capped(window: int):
    return {CACHE_LEN: sympy.Min(CACHE_LEN, window - 1)}


def _sub(value, mapping):
    """``value`` with ``cache_len`` replaced (sympy expressions, inside lists, tuples and dicts)."""
    if isinstance(value, sympy.Basic):
        return value.xreplace(mapping)
    if isinstance(value, list | tuple):
        return type(value)(_sub(v, mapping) for v in value)
    if isinstance(value, dict):
        return {k: _sub(v, mapping) for k, v in value.items()}
    return value


def cap_windows(ir: IRGraph) -> dict[str, int]:
    """Cap the cache length of windowed nodes in place; node id -> its window (empty when the
    graph has no windowed layer or no ``cache_len``)."""
    windows = ir.meta.sliding_windows
    if not windows:
        return {}
    capped: dict[str, int] = {}
    for node_id, attrs in ir.nodes():
        window = _window_of(attrs["scope"], windows)
        if window is not None:
            capped[node_id] = window
    uses = ir.uses()
    outputs = set(ir.meta.output_values or ())

    def readers_window(value_id: str) -> int | None:
        """The one window of every reader of a value (None if any reader is unwindowed);
        readers that produce nothing (``_assert_tensor_metadata``) do not count."""
        readers = {capped.get(node) for node, _ in uses.get(value_id, ()) if any(ir.node(node)["output_values"])}
        if value_id in outputs or len(readers) != 1:
            return None
        return readers.pop()

    for node_id, attrs in reversed(list(ir.nodes())):  # producers of windowed-only values
        if node_id in capped:
            continue
        values = [v for v, s in zip(attrs["output_values"], attrs["outputs"]) if v is not None and _has_cache_len(s)]
        found = {readers_window(v) for v in values}
        if values and len(found) == 1 and None not in found:
            capped[node_id] = found.pop()
    memo: dict[tuple[int, int], TensorSpec | None] = {}

    def spec_at(spec: TensorSpec | None, window: int) -> TensorSpec | None:
        if not _has_cache_len(spec):
            return spec
        key = (id(spec), window)
        if key not in memo:
            memo[key] = dataclasses.replace(spec, shape=tuple(_sub(d, _capped(window)) for d in spec.shape))
        return memo[key]

    for node_id, window in capped.items():
        attrs = ir.node(node_id)
        attrs["inputs"] = [spec_at(s, window) for s in attrs["inputs"]]
        attrs["outputs"] = [spec_at(s, window) for s in attrs["outputs"]]
        attrs["args"] = _sub(attrs["args"], _capped(window))
        for value_id, spec in zip(attrs["output_values"], attrs["outputs"]):
            if value_id is not None and value_id in ir.values:
                ir.values[value_id] = dataclasses.replace(ir.values[value_id], spec=spec)
    inputs = {id(v.spec): v.id for v in ir.values.values() if v.producer is None and _has_cache_len(v.spec)}
    for path, spec in list(ir.inputs.items()):  # cached keys / values that only windowed layers read
        value_id = inputs.get(id(spec))
        window = readers_window(value_id) if value_id is not None else None
        if window is not None:
            ir.inputs[path] = spec_at(spec, window)
            ir.values[value_id] = dataclasses.replace(ir.values[value_id], spec=ir.inputs[path])
    return capped
