"""Pipeline parallelism: stage partition of the layer stack, 1F1B schedule, stage transfers.

- **Partition**: ``p`` stages hold whole layers; the first also runs what comes before the
  stack (embeddings), the last what follows it (final norm, LM head). :func:`balanced` gives
  the layer counts that minimize the slowest stage's time (each stage at least one layer); the
  symbolic per-device formulas use the even split ``num_layers / pp``.
- **1F1B** (PipeDream-Flush, Narayanan et al. 2021): ``m`` micro-batches through ``p`` stages
  take ``(m + p − 1)`` slots of one micro-batch's forward + backward on the slowest stage; the
  idle share, the bubble, is ``(p − 1) / (m + p − 1)``. Stage ``i`` (0-based) holds the
  activations of ``min(m, p − i)`` micro-batches at once: the first stage ``p``.
- **Transfers**: per micro-batch each stage boundary sends the activation forward and its
  gradient backward (send/recv of the boundary tensor; ``passes.collectives``).
"""

from __future__ import annotations

import numpy as np
import sympy

from irtools.ir.symbols import sym

PP = sym("pp")
MICRO = sym("micro_batches")


def bubble_fraction(p, m):
    """Idle share of a 1F1B step: (p − 1) / (m + p − 1)."""
    return (p - 1) / (m + p - 1)


def slots(p, m):
    """Micro-batch slots a 1F1B step takes on the slowest stage: m + p − 1."""
    return m + p - 1


def in_flight(p, m, stage=0):
    """Micro-batches whose activations stage ``stage`` holds at once under 1F1B: min(m, p − stage)."""
    if isinstance(p, sympy.Basic) or isinstance(m, sympy.Basic):
        return sympy.Min(m, p - stage)
    return np.minimum(m, np.asarray(p) - stage)


def balanced(layer, pre, post, layers: int, p):
    """(slowest stage time, layers on the first stage, layers on the last) of the partition of
    ``layers`` layers of time ``layer`` over ``p`` stages that minimizes the slowest stage, the
    first adding ``pre`` and the last ``post``. Vectorized over numpy arrays."""
    layer, pre, post, p = (np.asarray(x, dtype=float) for x in (layer, pre, post, p))
    layer, pre, post, p = np.broadcast_arrays(layer, pre, post, p)
    single = p <= 1
    safe = np.where(layer > 0, layer, 1e-30)
    low = (pre + post + layers * layer) / np.maximum(p, 1)
    best = np.full(layer.shape, np.inf)
    for offset in (pre, post, np.zeros_like(pre)):
        k0 = np.ceil((low - offset) / safe - 1e-9)
        for step in range(4):
            cand = offset + (k0 + step) * layer
            first = np.floor((cand - pre) / safe + 1e-9)
            last = np.floor((cand - post) / safe + 1e-9)
            mid = np.floor(cand / safe + 1e-9)
            ok = (first >= 1) & (last >= 1) & (first + last + np.maximum(p - 2, 0) * np.maximum(mid, 1) >= layers)
            ok &= (p - 2) * 1 <= layers - 2
            best = np.where(ok & (cand < best), cand, best)
    best = np.where(single, pre + post + layers * layer, best)
    first = np.where(single, layers, np.clip(np.floor((best - pre) / safe + 1e-9), 1, layers))
    last = np.where(single, layers, np.clip(np.floor((best - post) / safe + 1e-9), 1, layers))
    return best, first, last


def even_stage(layer, pre, post, layers, p, role: str):
    """A stage's per-micro-batch time under the even split ``layers / p`` (symbolic formulas)."""
    n = sympy.sympify(layers) / p
    single = sympy.Piecewise((1, sympy.Eq(p, 1)), (0, True))
    if role == "first":
        return pre + n * layer + single * post
    if role == "last":
        return post + n * layer + single * pre
    return n * layer


__all__ = ["MICRO", "PP", "balanced", "bubble_fraction", "even_stage", "in_flight", "slots"]
