"""Memory layout (symbolic strides) of ONNX tensors under irtools' view convention.

DESIGN counts Transpose/Slice/Split/Squeeze/Unsqueeze as views (eager PyTorch semantics;
onnxruntime materializes a Transpose, irtools does not charge it). A Reshape/Flatten is a
view when PyTorch's ``view`` could produce it from the input's strides (the algorithm of
ATen's ``computeStride``) and a copy otherwise — exactly where eager code needs
``.contiguous()`` or ``reshape`` copies, which keeps ONNX and torch byte counts equal.
"""

from __future__ import annotations

import sympy

from irtools.capture.onnx.tensors import integer

ONE = sympy.Integer(1)


def _eq(a, b) -> bool:
    if a == b:  # structurally equal (the common case: equal integers)
        return True
    if _is_int(a) and _is_int(b):
        return False
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def _is_int(x) -> bool:
    return isinstance(x, int | sympy.Integer)


def _int_dims(shape) -> list[int] | None:
    out = []
    for d in shape:
        if not isinstance(d, sympy.Integer):
            return None
        out.append(int(d))
    return out


def contiguous_strides(shape) -> tuple:
    dims = _int_dims(shape)
    if dims is not None:  # all sizes known: plain ints, then sympy
        strides, acc = [], 1
        for d in reversed(dims):
            strides.append(acc)
            acc *= d
        return tuple(integer(s) for s in reversed(strides))
    strides, acc = [], ONE
    for d in reversed(tuple(shape)):
        strides.append(acc)
        acc = acc * d
    return tuple(reversed(strides))


def is_contiguous(shape, strides) -> bool:
    """Row-major dense, ignoring size-1 dims (as torch's ``is_contiguous``)."""
    dims = _int_dims(shape)
    if dims is not None and len(dims) == len(strides) and all(isinstance(s, sympy.Integer) for s in strides):
        expected = 1
        for d, s in zip(reversed(dims), reversed(tuple(strides))):
            if d == 1:
                continue
            if s != expected:
                return False
            expected *= d
        return True
    expected = ONE
    for d, s in zip(reversed(tuple(shape)), reversed(tuple(strides)), strict=True):
        if d == 1:
            continue
        if not _eq(s, expected):
            return False
        expected = expected * d
    return True


def permute(strides, perm) -> tuple:
    return tuple(strides[p] for p in perm)


def squeeze(strides, axes) -> tuple:
    return tuple(s for i, s in enumerate(strides) if i not in axes)


def unsqueeze(shape, strides, axes) -> tuple:
    out_shape, out = list(shape), list(strides)
    for a in sorted(axes):
        out.insert(a, out[a] * out_shape[a] if a < len(out) else ONE)
        out_shape.insert(a, ONE)
    return tuple(out)


def view_strides(old_shape, old_strides, new_shape) -> tuple | None:
    """Strides of ``x.view(new_shape)``, or None when a view is impossible (a copy is needed)."""
    old_shape, old_strides, new_shape = tuple(old_shape), tuple(old_strides), tuple(new_shape)
    if not old_shape:
        return contiguous_strides(new_shape)
    new_strides = [ONE] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base = old_strides[-1]
    tensor_numel, view_numel = ONE, ONE
    for tensor_d in range(len(old_shape) - 1, -1, -1):
        tensor_numel = tensor_numel * old_shape[tensor_d]
        chunk_ends = tensor_d == 0 or (
            old_shape[tensor_d - 1] != 1 and not _eq(old_strides[tensor_d - 1], tensor_numel * chunk_base)
        )
        if chunk_ends:
            while view_d >= 0 and (not _eq(view_numel, tensor_numel) or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base
                view_numel = view_numel * new_shape[view_d]
                view_d -= 1
            if not _eq(view_numel, tensor_numel):
                return None
            if tensor_d > 0:
                chunk_base = old_strides[tensor_d - 1]
                tensor_numel, view_numel = ONE, ONE
    if view_d != -1:
        return None
    return tuple(new_strides)
