"""ONNX's protobuf classes without the ``onnx`` package's import cost.

``import onnx`` runs the package's ``__init__``, which imports ``ml_dtypes`` and onnx's C++
extension: about a second on the 2-core machines irtools is benchmarked on, more than
analyzing most models takes. Reading a file needs only the generated message classes, so
this module loads onnx's own ``onnx_ml_pb2.py`` by path (about 25 ms). protobuf keeps one
class per message descriptor, so ``ModelProto`` here *is* ``onnx.ModelProto`` whichever is
imported first, and a model read here can be handed to any onnx function.

Frontend modules import it as ``onnx`` (``from irtools.capture.onnx import proto as onnx``):
the message classes, :func:`load_model_from_string`, :func:`attribute_value` (onnx.helper's
``get_attribute_value``) and :func:`to_array` (onnx.numpy_helper's, for plain numeric
tensors) are served here; any other name (``shape_inference``, ``defs``, ``inliner``) is
taken from the real package on first use. Where onnx's layout is not the expected one,
everything comes from the real package.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

#: The highest default-domain opset every supported onnx (>= 1.15, pyproject.toml) knows;
#: a file at or below it is checked without importing onnx.defs.
SAFE_OPSET = 20


def _load_messages():
    """onnx's generated ``onnx_ml_pb2`` module, loaded by path (the real one when already imported)."""
    if "onnx" in sys.modules:
        return importlib.import_module("onnx.onnx_ml_pb2")
    try:
        spec = importlib.util.find_spec("onnx")  # finds the package without running its __init__
        folder = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None
        path = os.path.join(folder, "onnx_ml_pb2.py") if folder else None
        if path is None or not os.path.isfile(path):
            raise ImportError("onnx_ml_pb2.py not found")
        name = "irtools.capture.onnx._onnx_ml_pb2"
        loaded = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)
        sys.modules[name] = module
        return module
    except Exception:  # noqa: BLE001 - any surprise: the real package (slower, same classes)
        return importlib.import_module("onnx.onnx_ml_pb2")


_pb = _load_messages()
ModelProto = _pb.ModelProto
GraphProto = _pb.GraphProto
NodeProto = _pb.NodeProto
TensorProto = _pb.TensorProto
SparseTensorProto = _pb.SparseTensorProto
ValueInfoProto = _pb.ValueInfoProto
TensorShapeProto = _pb.TensorShapeProto
TypeProto = _pb.TypeProto
AttributeProto = _pb.AttributeProto
FunctionProto = _pb.FunctionProto
OperatorSetIdProto = _pb.OperatorSetIdProto


def load_model_from_string(data: bytes) -> ModelProto:
    """``onnx.load_model_from_string`` for the protobuf (binary) format."""
    model = ModelProto()
    decoded = model.ParseFromString(data)
    if decoded is not None and decoded != len(data):
        raise ValueError(f"protobuf decoded {decoded} of {len(data)} bytes")
    return model


def max_opset(version: int | None = None) -> int:
    """The highest default-domain opset onnx knows; imports onnx.defs only for a ``version``
    above :data:`SAFE_OPSET` (or when no version is given)."""
    if version is not None and version <= SAFE_OPSET:
        return SAFE_OPSET
    import onnx.defs

    return onnx.defs.onnx_opset_version()


_A = AttributeProto
_ATTRIBUTE_FIELDS = {
    _A.FLOAT: "f", _A.INT: "i", _A.STRING: "s", _A.TENSOR: "t", _A.SPARSE_TENSOR: "sparse_tensor", _A.GRAPH: "g",
    _A.TYPE_PROTO: "tp",
}
_ATTRIBUTE_LISTS = {
    _A.FLOATS: "floats", _A.INTS: "ints", _A.STRINGS: "strings", _A.TENSORS: "tensors",
    _A.SPARSE_TENSORS: "sparse_tensors", _A.GRAPHS: "graphs", _A.TYPE_PROTOS: "type_protos",
}


def attribute_value(attr: AttributeProto):
    """An attribute's value, as ``onnx.helper.get_attribute_value`` gives it."""
    if attr.ref_attr_name:
        raise ValueError(f"Cannot get value of reference attribute: {attr.name}")
    name = _ATTRIBUTE_FIELDS.get(attr.type)
    if name is not None:
        return getattr(attr, name)
    name = _ATTRIBUTE_LISTS.get(attr.type)
    if name is not None:
        return list(getattr(attr, name))
    if attr.type == _A.UNDEFINED:
        return None
    raise ValueError(f"Unsupported ONNX attribute type {attr.type} ({attr.name})")


_T = TensorProto
#: data_type -> (numpy dtype name, storage field, storage numpy dtype) for the dtypes read here.
_NUMERIC = {
    _T.FLOAT: ("float32", "float_data", "float32"), _T.DOUBLE: ("float64", "double_data", "float64"),
    _T.INT64: ("int64", "int64_data", "int64"), _T.INT32: ("int32", "int32_data", "int32"),
    _T.INT8: ("int8", "int32_data", "int32"), _T.UINT8: ("uint8", "int32_data", "int32"),
    _T.UINT32: ("uint32", "uint64_data", "uint64"), _T.UINT64: ("uint64", "uint64_data", "uint64"),
}
_BITS16 = {_T.FLOAT16: "float16", _T.INT16: "int16", _T.UINT16: "uint16"}


def to_array(tensor: TensorProto):
    """``onnx.numpy_helper.to_array`` of an inline tensor: plain numeric dtypes here, the rest
    (bfloat16, float8, 4-bit, strings, complex, external data) through onnx itself."""
    import numpy as np

    code = tensor.data_type
    plain = code in _NUMERIC or code in _BITS16 or code == _T.BOOL
    if not plain or tensor.HasField("segment") or sys.byteorder != "little" or tensor.data_location == _T.EXTERNAL:
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor)
    dims = tuple(tensor.dims)
    dtype = _NUMERIC[code][0] if code in _NUMERIC else _BITS16.get(code, "bool")
    if tensor.HasField("raw_data"):
        return np.frombuffer(tensor.raw_data, dtype=dtype).reshape(dims)
    if code in _BITS16 or code == _T.BOOL:
        bits = np.array(tensor.int32_data, dtype=np.int32).view(np.uint32)
        return bits.astype(np.uint16 if code in _BITS16 else np.uint8).reshape(dims).view(dtype)
    _, field, storage = _NUMERIC[code]
    return np.asarray(getattr(tensor, field), dtype=storage).astype(dtype).reshape(dims)


def __getattr__(name: str):
    """Anything else (``shape_inference``, ``inliner``, ``helper``, ``save``) from onnx itself."""
    import onnx

    if name in ("shape_inference", "inliner", "defs", "helper", "numpy_helper", "checker"):
        return importlib.import_module(f"onnx.{name}")
    return getattr(onnx, name)


__all__ = [
    "SAFE_OPSET", "AttributeProto", "FunctionProto", "GraphProto", "ModelProto", "NodeProto", "OperatorSetIdProto",
    "SparseTensorProto", "TensorProto", "TensorShapeProto", "TypeProto", "ValueInfoProto", "attribute_value",
    "load_model_from_string", "max_opset", "to_array",
]
