"""ONNX TensorProtos and type protos -> :class:`irtools.capture.onnx.shapes.TInfo`, without reading weights.

Contents are read only from small tensors stored inside the protobuf (shape operands,
scalars); external data is never opened and large tensors are described by shape alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from irtools.capture.onnx import proto as onnx  # the message classes without onnx's import cost

MAX_READ_ELEMENTS = 64


@dataclass(frozen=True)
class TInfo:
    """What is known of one tensor: symbolic shape, dtype, and small contents if known."""

    shape: tuple
    dtype: str = "float32"
    value: Any = None  # numpy object array (shape == concrete ``shape``) or None

    @property
    def rank(self) -> int:
        return len(self.shape)


DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
    15: "complex128", 16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2",
    20: "float8_e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4_e2m1", 24: "float8_e8m0", 25: "uint2", 26: "int2",
    27: "float6_e2m3", 28: "float6_e3m2",
}


def dtype_name(code: int) -> str:
    return DTYPES.get(int(code), "float32")


def is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


_INTS: dict[int, sympy.Integer] = {}


def integer(d) -> sympy.Integer:
    """``sympy.Integer(int(d))``, memoized (dims repeat a lot)."""
    d = int(d)
    out = _INTS.get(d)
    if out is None:
        out = _INTS[d] = sympy.Integer(d)
    return out


def tensor_info(tensor: onnx.TensorProto):
    """Shape and dtype of a tensor proto; contents too when small, numeric and inline
    (converted to sympy on first use: most small initializers are biases nobody reads)."""
    dims = [int(d) for d in tensor.dims]
    shape = tuple(integer(d) for d in dims)
    dtype = dtype_name(tensor.data_type)
    numel = math.prod(dims)
    if numel > MAX_READ_ELEMENTS or is_external(tensor) or dtype in ("string", "uint4", "int4", "float4_e2m1"):
        return TInfo(shape, dtype)
    return LazyTInfo(shape, dtype, tensor)


def read_value(tensor: onnx.TensorProto):
    """The contents of a small inline tensor as a numpy object array of sympy numbers (or None)."""
    try:
        array = onnx.to_array(tensor)
    except Exception:  # noqa: BLE001 - malformed contents: keep the shape only
        return None
    if array.dtype.kind in "iub":
        values = [integer(v) for v in array.ravel().tolist()]
    else:
        values = [sympy.Float(float(v)) for v in array.ravel()]
    if tensor.data_type == onnx.TensorProto.BOOL:
        values = [sympy.true if v else sympy.false for v in values]
    flat = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        flat[i] = v
    return flat.reshape(array.shape)


class LazyTInfo(TInfo):
    """A TInfo whose ``value`` is read from its TensorProto on first access."""

    __slots__ = ()

    def __init__(self, shape, dtype, tensor):
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "_tensor", tensor)

    @property
    def value(self):
        d = self.__dict__
        if "_value" not in d:
            object.__setattr__(self, "_value", read_value(d["_tensor"]))
        return d["_value"]
