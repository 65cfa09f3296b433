"""Parallelism passes: shard an analyzed IR over many devices (docs/parallel.md).

- ``tp``: tensor parallel (Megatron column/row pairs found from the data flow), ``sp``:
  sequence parallel, ``shard``: the per-device graph with its collective nodes;
- ``pp``: pipeline stages, 1F1B bubble, point-to-point transfers; ``dp``: data parallel and
  ZeRO-1/2/3 (FSDP); ``ep``: expert parallel all-to-all for mixture-of-experts layers;
- ``device``: the per-device report of a layout, as formulas in the degrees ``tp``, ``pp``,
  ``dp``, ``ep``; ``plan``: the vectorized search over layouts.
"""
