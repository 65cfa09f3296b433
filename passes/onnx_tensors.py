"""ONNX TensorProtos and type protos -> :class:`passes.onnx_shapes.TInfo`, without reading weights.

Contents are read only from small tensors stored inside the protobuf (shape operands,
scalars); external data is never opened and large tensors are described by shape alone.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import sympy
from onnx import numpy_helper

MAX_READ_ELEMENTS = 64

DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
    15: "complex128", 16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2",
    20: "float8_e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4_e2m1",
}


def dtype_name(code: int) -> str:
    return DTYPES.get(int(code), "float32")


def is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


def tensor_info(tensor: onnx.TensorProto):
    """Shape and dtype of a tensor proto; contents too when small, numeric and inline."""
    from passes.onnx_shapes import TInfo

    shape = tuple(sympy.Integer(int(d)) for d in tensor.dims)
    dtype = dtype_name(tensor.data_type)
    numel = math.prod(int(d) for d in tensor.dims)
    if numel > MAX_READ_ELEMENTS or is_external(tensor) or dtype in ("string", "uint4", "int4", "float4_e2m1"):
        return TInfo(shape, dtype)
    try:
        array = numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - malformed contents: keep the shape only
        return TInfo(shape, dtype)
    values = [sympy.Integer(int(v)) if array.dtype.kind in "iub" else sympy.Float(float(v)) for v in array.ravel()]
    if dtype == "bool":
        values = [sympy.true if v else sympy.false for v in values]
    value = np.empty(array.shape, dtype=object)
    for idx, v in zip(np.ndindex(array.shape), values):
        value[idx] = v
    return TInfo(shape, dtype, value)
