"""Op kinds: the canonical kinds cost rules and fusion key on, and which ops move no data
(views) or only move data (copies, dropout). That is IR knowledge: capture needs it to
decide what aliases what, before any cost rule runs. The cost registry checks that every
rule of kind view, copy or dropout covers exactly the ops listed here.
"""

from __future__ import annotations

#: The cost fields every node, module, line and kernel carries, in report order.
COSTS = ("flops", "bytes_read", "bytes_written")
#: ``COSTS`` and the 2·M·N·K part of ``flops`` alone (what FlopCounterMode counts).
ALL_COSTS = (*COSTS, "matmul_flops")

#: Canonical kinds (``OpNode.kind``); ``unknown`` marks an op with no cost rule.
KINDS = (
    "matmul", "conv", "attention", "elementwise", "reduction", "softmax", "norm", "pool", "gather", "scatter",
    "view", "copy", "dropout", "factory", "free", "control", "collective", "unknown",
)

VIEW_OPS = frozenset({
    'Identity', 'Slice', 'Split', 'Squeeze', 'Transpose', 'Unsqueeze', 'aten._reshape_alias',
    'aten._unsafe_view', 'aten.adjoint', 'aten.alias', 'aten.as_strided', 'aten.chunk',
    'aten.detach', 'aten.detach_', 'aten.diagonal', 'aten.expand', 'aten.expand_as', 'aten.flatten',
    'aten.mH', 'aten.mT', 'aten.matrix_H', 'aten.movedim', 'aten.narrow', 'aten.numpy_T',
    'aten.permute', 'aten.reshape_alias', 'aten.resolve_conj', 'aten.resolve_neg', 'aten.select',
    'aten.slice', 'aten.split', 'aten.split_with_sizes', 'aten.squeeze', 'aten.swapaxes', 'aten.t',
    'aten.tensor_split', 'aten.transpose', 'aten.unbind', 'aten.unflatten', 'aten.unfold',
    'aten.unsqueeze', 'aten.view', 'aten.view_as', 'aten.view_as_complex', 'aten.view_as_real',
    'getitem',
    # more ATen views (passes/costs/aten_misc.py)
    'aten._conj', 'aten._neg_view', 'aten.as_strided_', 'aten.atleast_1d', 'aten.atleast_2d', 'aten.atleast_3d',
    'aten.broadcast_tensors', 'aten.broadcast_to', 'aten.conj', 'aten.dsplit', 'aten.hsplit', 'aten.imag',
    'aten.lift', 'aten.meshgrid', 'aten.moveaxis', 'aten.positive', 'aten.real', 'aten.squeeze_', 'aten.swapdims',
    'aten.t_', 'aten.transpose_', 'aten.unsafe_chunk', 'aten.unsafe_split', 'aten.unsafe_split_with_sizes',
    'aten.unsqueeze_', 'aten.vsplit',
})

COPY_OPS = frozenset({
    'Cast', 'CastLike', 'CenterCropPad', 'Compress', 'Concat', 'DepthToSpace', 'Expand', 'Flatten',
    'Pad', 'Reshape', 'ReverseSequence', 'SpaceToDepth', 'Tile', 'Trilu', 'aten._to_copy',
    'aten._unsafe_index_put', 'aten.cat', 'aten.clone', 'aten.constant_pad_nd', 'aten.contiguous',
    'aten.copy', 'aten.copy_', 'aten.fill', 'aten.fill_', 'aten.flip', 'aten.index_put',
    'aten.index_put_', 'aten.lift_fresh_copy', 'aten.masked_scatter', 'aten.pad', 'aten.repeat',
    'aten.reshape', 'aten.roll', 'aten.select_scatter', 'aten.slice_scatter', 'aten.stack',
    'aten.tile', 'aten.to', 'aten.tril', 'aten.triu', 'aten.type', 'aten.type_as', 'aten.zero_',
    # spatial copies (passes/costs/aten_pool.py)
    'aten._pad_circular', 'aten._pad_enum', 'aten.channel_shuffle', 'aten.native_channel_shuffle',
    'aten.pixel_shuffle', 'aten.pixel_unshuffle', 'aten.reflection_pad1d', 'aten.reflection_pad2d',
    'aten.reflection_pad3d', 'aten.replication_pad1d', 'aten.replication_pad2d', 'aten.replication_pad3d',
    # copies of views, scatters into zeros, reorders (passes/costs/aten_misc.py, aten_backward.py)
    'aten._reshape_copy', 'aten.alias_copy', 'aten.as_strided_copy', 'aten.as_strided_scatter', 'aten.block_diag',
    'aten.detach_copy', 'aten.diag', 'aten.diag_embed', 'aten.diagonal_backward', 'aten.diagonal_copy',
    'aten.diagonal_scatter', 'aten.expand_copy', 'aten.fliplr', 'aten.flipud', 'aten.masked_scatter_',
    'aten.narrow_copy', 'aten.permute_copy', 'aten.ravel', 'aten.repeat_interleave', 'aten.reshape_as',
    'aten.rot90', 'aten.select_backward', 'aten.select_copy', 'aten.slice_backward', 'aten.slice_copy',
    'aten.split_copy', 'aten.split_with_sizes_copy', 'aten.squeeze_copy', 'aten.t_copy', 'aten.transpose_copy',
    'aten.tril_', 'aten.triu_', 'aten.unbind_copy', 'aten.unfold_copy', 'aten.unsqueeze_copy',
    'aten.view_as_real_copy', 'aten.view_copy',
})

DROPOUT_OPS = frozenset({
    'Dropout', 'aten.alpha_dropout', 'aten.dropout', 'aten.feature_dropout', 'aten.native_dropout',
    'aten.alpha_dropout_', 'aten.dropout_', 'aten.feature_alpha_dropout', 'aten.feature_alpha_dropout_',
    'aten.feature_dropout_',
})


def op_packet(op: str) -> str:
    """``aten.addmm.default`` -> ``aten.addmm`` (kinds and rules key on the packet, not the overload)."""
    if op.startswith("aten.") and op.count(".") >= 2:
        return op.rsplit(".", 1)[0]
    return op


def op_class(op: str) -> str | None:
    """``view``, ``copy`` or ``dropout`` for ops that only alias or move data, else None."""
    for name in (op, op_packet(op)):
        for kind, ops in (("view", VIEW_OPS), ("copy", COPY_OPS), ("dropout", DROPOUT_OPS)):
            if name in ops:
                return kind
    return None
