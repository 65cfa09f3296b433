"""How a decode step writes its new keys and values into the KV cache (``ir.meta.kv_cache``).

- ``copy``: the literal graph. transformers' ``DynamicCache.update`` (and the seed's
  ``torch.cat((past_key, key))``) concatenates: it reads the whole cache and writes a new one,
  and attention then reads it again.
- ``static``: a preallocated static or paged cache written in place, as serving engines
  (vLLM, TensorRT-LLM) and ``torch.compile`` with a static cache do: the update writes only the
  new tokens; attention still reads the whole cache once.

The cost pass calls :func:`cache_update_cost` for every concatenation whose output is KV cache.
"""

from __future__ import annotations

import sympy

from irtools.ir import op_class
from irtools.ir.kinds import op_packet

MODELS = ("copy", "static")
CONCATS = {"aten.cat", "Concat"}


def is_cache_update(attrs) -> bool:
    """A concatenation of cached tokens with new ones whose result is the cache."""
    if op_packet(attrs["op"]) not in CONCATS or op_class(attrs["op"]) != "copy":
        return False
    outs = [o for o in attrs["outputs"] if o is not None]
    ins = [t for t in attrs["inputs"] if t is not None]
    return bool(outs) and outs[0].role == "kv_cache" and any(t.role == "kv_cache" for t in ins)


def cache_update_cost(attrs, model: str) -> tuple[sympy.Expr, sympy.Expr] | None:
    """(bytes read, bytes written) of a cache update under ``model``; None to keep the rule's."""
    if model == "copy" or not is_cache_update(attrs):
        return None
    new = [t for t in attrs["inputs"] if t is not None and t.role != "kv_cache"]
    cache = attrs["outputs"][0]
    read = sympy.Add(*(t.nbytes for t in new))
    written = sympy.Add(*(t.numel * cache.itemsize for t in new))
    return read, written
