"""Cost rules of ATen data movement and setup beyond ``torch_ops``: more views and copies,
in-place scatters, random and index factories, bag embeddings and weight normalisation.

Conventions (docs/conventions.md): views cost nothing; copies read their inputs and write
their outputs; a random or index factory writes its output (and reads the tensors it is
given, such as probabilities); a gather reads the rows it picks.
"""

from __future__ import annotations

import sympy

from passes.costs.registry import (
    ZERO,
    Cost,
    OpCall,
    RuleSet,
    alias,
    aten_ops,
    copy,
    free,
    per_input_element,
    read_all,
    write_all,
)
from passes.costs.torch_ops import copy_if_strided, scatter

RULES = RuleSet()
cost_rule = RULES.rule
register_handle = RULES.handle


_ops = aten_ops


# shape queries and storage resizes move no data
register_handle(_ops("sym_is_contiguous", "resize_", "resize_as_"), "free", free)

# ---- views and copies (each listed in irtools/ir/kinds.py) ------------------------------

register_handle(
    _ops("_conj", "_neg_view", "as_strided_", "atleast_1d", "atleast_2d", "atleast_3d", "broadcast_tensors",
         "broadcast_to", "conj", "dsplit", "hsplit", "imag", "lift", "meshgrid", "moveaxis", "positive", "real",
         "squeeze_", "swapdims", "t_", "transpose_", "unsafe_chunk", "unsafe_split", "unsafe_split_with_sizes",
         "unsqueeze_", "vsplit"),
    "view",
    alias,
)
register_handle(
    _ops("_reshape_copy", "alias_copy", "as_strided_copy", "as_strided_scatter", "block_diag", "detach_copy", "diag",
         "diag_embed", "diagonal_copy", "diagonal_scatter", "expand_copy", "fliplr", "flipud", "masked_scatter_",
         "narrow_copy", "permute_copy", "repeat_interleave", "rot90", "select_copy", "slice_copy", "split_copy",
         "split_with_sizes_copy", "squeeze_copy", "t_copy", "transpose_copy", "tril_", "triu_", "unbind_copy",
         "unfold_copy", "unsqueeze_copy", "view_as_real_copy", "view_copy"),
    "copy",
    copy,
)
RULES.rule("aten.ravel", "aten.reshape_as", kind="copy")(copy_if_strided)
register_handle(
    _ops("scatter_", "scatter_add_", "scatter_reduce_", "index_add_", "index_copy_", "index_reduce", "index_reduce_",
         "put", "put_"),
    "scatter",
    scatter,
)


@cost_rule("aten.one_hot", kind="scatter")
def one_hot(call: OpCall) -> Cost:
    """Zeros with a one per index: read the indices, write the table."""
    return Cost(ZERO, read_all(call), write_all(call))


@cost_rule("aten.masked_select", "aten.take", kind="gather")
def select_gather(call: OpCall) -> Cost:
    """No flops: read the input and the mask or indices, write what was picked."""
    return Cost(ZERO, read_all(call), write_all(call))


# ---- factories ------------------------------------------------------------------------------


@cost_rule(
    *_ops("randperm", "bernoulli", "bernoulli_", "normal", "normal_", "uniform", "uniform_", "randint", "randint_like",
          "exponential_", "random_", "cauchy_", "log_normal_", "geometric_", "multinomial", "poisson", "eye",
          "tril_indices", "triu_indices", "logspace", "empty_permuted", "new_empty_strided", "hann_window",
          "hamming_window", "blackman_window", "bartlett_window", "kaiser_window"),
    kind="factory",
)
def random_or_index(call: OpCall) -> Cost:
    """Write the output; a functional sampler also reads its parameter tensors (an in-place
    fill such as ``bernoulli_`` only overwrites)."""
    in_place = call.op.split(".")[1].endswith("_")
    return Cost(ZERO, ZERO if in_place else read_all(call), write_all(call))


# ---- bag embeddings -------------------------------------------------------------------------


@cost_rule("aten._embedding_bag", "aten.embedding_bag", "aten._embedding_bag_forward_only", kind="gather")
def embedding_bag(call: OpCall) -> Cost:
    """Gather one row per index and reduce them per bag: one flop per gathered element (two
    with per-sample weights); read those rows, the indices and offsets; write every output."""
    table, indices, *rest = call.tensors_in
    row = table.numel / table.shape[0]
    gathered = indices.numel * row
    weighted = len(rest) > 1
    reads = gathered * table.itemsize + indices.nbytes + sympy.Add(*(t.nbytes for t in rest))
    return Cost((2 if weighted else 1) * gathered, reads, write_all(call))


# ---- normalisation of weights -------------------------------------------------------------

# ‖v‖ over all dims but one (square, add) and the rescale g·v/‖v‖ (1): 3 per element of v
register_handle(_ops("_weight_norm", "_weight_norm_interface"), "norm", per_input_element(3))
register_handle(_ops("norm_except_dim"), "reduction", per_input_element(2))
# batch norm variants: a scale and a shift per element, as ``torch_ops``' batch norms
register_handle(
    _ops("_batch_norm_with_update", "_batch_norm_no_update", "_native_batch_norm_legit_functional",
         "batch_norm_elemt"),
    "norm",
    per_input_element(2),
)


__all__ = ["RULES"]
