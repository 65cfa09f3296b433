"""Structural mutations of ONNX models, for the fuzz test (tests/test_onnx_fuzz.py) and the
fuzz benchmark (benchmarks/fuzz.py).

Seeds are small models built here (no download); each mutation edits a copy of a seed's
protobuf the way a broken or hostile file would: inputs dropped or renamed, cycles, huge
and negative dims, unknown ops and domains, bad attributes, broken subgraphs, external-data
locations pointing anywhere, constant folding that explodes, huge ranks, dims named like
sympy constants, metadata naming modules to import.
"""

from __future__ import annotations

import random
import string

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

T = TensorProto


def _const(name: str, values, dtype=np.int64) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values, dtype=dtype), name),
                            name=f"c_{name}")


def _model(nodes, inputs, outputs, inits=(), opset=18, functions=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "seed", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))
    model.ir_version = 8
    return model


def _vi(name, shape, dtype=T.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def seed_mlp() -> onnx.ModelProto:
    w1 = numpy_helper.from_array(np.zeros((16, 32), np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros((32,), np.float32), "b1")
    w2 = numpy_helper.from_array(np.zeros((32, 8), np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"), helper.make_node("Add", ["h", "b1"], ["hb"], name="add"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"), helper.make_node("MatMul", ["r", "w2"], ["o"], name="mm2"),
             helper.make_node("Softmax", ["o"], ["y"], name="sm", axis=-1)]
    return _model(nodes, [_vi("x", ["batch", 16])], [_vi("y", ["batch", 8])], [w1, b1, w2])


def seed_shapes() -> onnx.ModelProto:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape -> Transpose -> MatMul (a legacy-export chain)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"), _const("i0", 0), _const("tail", [4, 8]), _const("ax", [0]),
        helper.make_node("Gather", ["s", "i0"], ["b"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["b", "ax"], ["b1"], name="unsq"),
        _const("m1", [-1]),
        helper.make_node("Concat", ["b1", "m1", "tail"], ["tgt"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "tgt"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["t", "t2"], ["y"], name="mm"),
        helper.make_node("Transpose", ["r"], ["t2"], name="transpose2", perm=[0, 2, 3, 1]),
    ]
    return _model(nodes, [_vi("x", ["batch", "seq", 32])], [_vi("y", None)])


def seed_control() -> onnx.ModelProto:
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["a"], name="t_relu")], "then", [], [_vi("a", None)])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["b"], name="e_neg")], "else", [], [_vi("b", None)])
    body = helper.make_graph(
        [helper.make_node("Add", ["acc", "x"], ["acc2"], name="body_add"), helper.make_node("Identity", ["c_in"], ["c_out"], name="body_id")],
        "body", [_vi("i", [], T.INT64), _vi("c_in", [], T.BOOL), _vi("acc", None)], [_vi("c_out", [], T.BOOL), _vi("acc2", None)])
    nodes = [
        helper.make_node("If", ["cond"], ["z"], name="if", then_branch=then, else_branch=other),
        _const("trip", 3), helper.make_node("Loop", ["trip", "", "z"], ["y"], name="loop", body=body),
    ]
    return _model(nodes, [_vi("x", ["batch", 8]), _vi("cond", [], T.BOOL)], [_vi("y", None)])


def seed_misc() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["c"], ["s0", "s1"], name="split", axis=1, num_outputs=2),
        _const("k", [3]), helper.make_node("TopK", ["s0", "k"], ["tv", "ti"], name="topk", axis=-1),
        _const("p2", [2]), _const("p3", [3]), helper.make_node("Pow", ["p2", "p3"], ["p8"], name="pow"),
        _const("st", [0]), _const("one", [1]), helper.make_node("Range", ["st", "p8", "one"], ["rg"], name="range"),
        helper.make_node("Shape", ["rg"], ["rs"], name="rshape"),
        helper.make_node("ConstantOfShape", ["rs"], ["z"], name="cos", value=numpy_helper.from_array(np.array([1.0], np.float32))),
        _const("sl0", [0]), _const("sl1", [2]), _const("ax3", [3]),
        helper.make_node("Slice", ["s1", "sl0", "sl1", "ax3"], ["sl"], name="slice"),
        helper.make_node("Mul", ["sl", "tv"], ["y"], name="mul"),
    ]
    return _model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", None), _vi("z", None)], [w])


SEEDS = {"mlp": seed_mlp, "shapes": seed_shapes, "control": seed_control, "misc": seed_misc}


# ---- mutations ---------------------------------------------------------------------------------


def _all_graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_graphs(attr.g)
            for g in attr.graphs:
                yield from _all_graphs(g)


def _names(model) -> list[str]:
    out = [i.name for i in model.graph.input] + [t.name for t in model.graph.initializer]
    for n in model.graph.node:
        out += list(n.output)
    return out or ["x"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(1, 8)))


def _node(model, rng):
    nodes = [n for g in _all_graphs(model.graph) for n in g.node]
    return rng.choice(nodes) if nodes else None


def drop_input(model, rng):
    node = _node(model, rng)
    if node is not None and node.input and rng.random() < 0.7:
        i = rng.randrange(len(node.input))
        if rng.random() < 0.5:
            node.input[i] = ""
        else:
            del node.input[i]
    elif model.graph.input:
        del model.graph.input[rng.randrange(len(model.graph.input))]


def rename_input(model, rng):
    node = _node(model, rng)
    if node is None or not node.input:
        return
    i = rng.randrange(len(node.input))
    node.input[i] = rng.choice(["nowhere", rng.choice(_names(model)), *(node.output or ["x"]), _word(rng), "x\x00y"])


def cycle(model, rng):
    nodes = model.graph.node
    if len(nodes) < 2:
        return
    i, j = sorted(rng.sample(range(len(nodes)), 2))
    if nodes[i].input and nodes[j].output:
        nodes[i].input[rng.randrange(len(nodes[i].input))] = nodes[j].output[0]


HUGE = [2**31, 2**40, 2**62, 2**63 - 1, 10**15]


def huge_dim(model, rng):
    if rng.random() < 0.5 and model.graph.input:
        value = rng.choice(list(model.graph.input))
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = rng.choice(HUGE)
        return
    # a shape-like tensor claiming a huge element count (contents absent)
    name = rng.choice(_names(model))
    t = TensorProto(name=f"huge_{rng.randrange(99)}", data_type=T.INT64, dims=[rng.choice(HUGE)])
    model.graph.initializer.append(t)
    model.graph.node.append(helper.make_node(rng.choice(["Reshape", "Expand", "ConstantOfShape", "Tile"]),
                                             [name, t.name] if rng.random() < 0.8 else [t.name], [f"h_{t.name}"]))


def negative_dim(model, rng):
    choice = rng.random()
    if choice < 0.3 and model.graph.input:
        dims = rng.choice(list(model.graph.input)).type.tensor_type.shape.dim
        if dims:
            dims[rng.randrange(len(dims))].dim_value = -rng.randint(1, 10**6)
    elif choice < 0.7:
        for g in _all_graphs(model.graph):
            for node in g.node:
                if node.op_type == "Constant" and rng.random() < 0.5:
                    vals = rng.choice([[-1000], [-1], [-(2**62)], [0], [-3, -4]])
                    node.ClearField("attribute")
                    node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.array(vals, np.int64))))
    else:
        name = rng.choice(_names(model))
        k = f"negk_{rng.randrange(99)}"
        model.graph.node.extend([_const(k, [rng.choice([-1000, -1, 0])]),
                                 helper.make_node(rng.choice(["TopK", "Reshape", "Range", "Tile"]), [name, k], [f"o_{k}", f"i_{k}"])])


def unknown_op(model, rng):
    node = _node(model, rng)
    if node is None:
        return
    if rng.random() < 0.5:
        node.op_type = rng.choice(["Frobnicate", "", _word(rng), "Add\u202e", "If", "Loop", "Scan", "Constant"])
    else:
        node.domain = rng.choice(["evil.domain", "com.microsoft", "ai.onnx.ml", "", "ai.onnx", _word(rng)])


def bad_attribute(model, rng):
    node = _node(model, rng)
    if node is None:
        return
    name = rng.choice([a.name for a in node.attribute] + ["axis", "perm", "num_outputs", "value", "to", "axes", "k", _word(rng)])
    value = rng.choice([2**62, -(2**62), -1, 10**7, 1000, [], [0] * 1000, list(range(100)), "x" * 50, float("nan"),
                        float("inf"), [2**62, -5], numpy_helper.from_array(np.array([1e30], np.float32))])
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    try:
        node.attribute.append(helper.make_attribute(name, value))
    except (ValueError, TypeError):
        pass


def broken_subgraph(model, rng):
    holders = [n for g in _all_graphs(model.graph) for n in g.node if any(a.HasField("g") for a in n.attribute)]
    if not holders:
        bad = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["q"])], "bad", [], [_vi("q", None)])
        model.graph.node.append(helper.make_node("If", [rng.choice(_names(model))], ["if_out"], then_branch=bad, else_branch=bad))
        return
    node = rng.choice(holders)
    attr = rng.choice([a for a in node.attribute if a.HasField("g")])
    g = attr.g
    what = rng.random()
    if what < 0.25:
        g.ClearField("output")
    elif what < 0.5 and g.input:
        del g.input[rng.randrange(len(g.input))]
    elif what < 0.75 and g.node:
        g.node[rng.randrange(len(g.node))].input.append("outer_nowhere")
    else:
        g.node.append(helper.make_node("Identity", [g.output[0].name if g.output else "v"], [g.output[0].name if g.output else "v"]))


LOCATIONS = ["../../../../tmp/irtools_fuzz_pwned.txt", "/etc/passwd", "sub/../../x.bin", "a\x00b", "", "ok.bin",
             "C:\\x.bin", "..", "./../x", "d/./../../y", "weights.bin"]


def external_data(model, rng):
    tensors = list(model.graph.initializer)
    for g in _all_graphs(model.graph):
        for n in g.node:
            tensors += [a.t for a in n.attribute if a.HasField("t")]
    if not tensors:
        return
    t = rng.choice(tensors)
    t.ClearField("raw_data")
    for field in ("float_data", "int64_data", "int32_data", "double_data"):
        t.ClearField(field)
    t.data_location = T.EXTERNAL
    del t.external_data[:]
    t.external_data.add(key="location", value=rng.choice(LOCATIONS))
    if rng.random() < 0.5:
        t.external_data.add(key="offset", value=rng.choice(["0", "-5", "99999999999999999999", "x"]))
        t.external_data.add(key="length", value=rng.choice(["16", "-1", str(2**62)]))


def exploding_constants(model, rng):
    k = f"e{rng.randrange(999)}"
    base, exp = rng.choice([(10, 10**9), (2, 2**40), (10, 64), (-7, 3), (0, -1), (3, 70)])
    nodes = [_const(f"{k}a", [base]), _const(f"{k}b", [exp])]
    op = rng.choice(["Pow", "Mul", "Div", "Sub"])
    nodes.append(helper.make_node(op, [f"{k}a", f"{k}b"], [f"{k}p"]))
    prev = f"{k}p"
    for i in range(rng.choice([0, 5, 40])):  # repeated squaring
        nodes.append(helper.make_node("Mul", [prev, prev], [f"{k}sq{i}"]))
        prev = f"{k}sq{i}"
    nodes.append(helper.make_node("Reshape", [rng.choice(_names(model)), prev], [f"{k}out"]))
    model.graph.node.extend(nodes)


def big_rank(model, rng):
    rank = rng.choice([65, 100, 1000])
    name = f"r{rank}"
    model.graph.input.append(_vi(name, [1] * rank))
    model.graph.node.append(helper.make_node(rng.choice(["Identity", "Relu", "Unsqueeze"]), [name], [f"{name}_o"]))


def dim_names(model, rng):
    values = [v for g in _all_graphs(model.graph) for v in list(g.input) + list(g.output)]
    if not values:
        return
    dims = rng.choice(values).type.tensor_type.shape.dim
    if dims:
        dims[rng.randrange(len(dims))].dim_param = rng.choice(
            ["oo", "nan", "E", "I", "pi", "zoo", "__import__('os').system('false')", "a b", "", "batch", "1e999", "x.y"])


def opset(model, rng):
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid(rng.choice(["", "ai.onnx", "com.microsoft"]), rng.choice([0, 1, 7, 13, 18, 999, -1])))


def duplicate_output(model, rng):
    nodes = model.graph.node
    if len(nodes) >= 2 and nodes[0].output:
        nodes[rng.randrange(1, len(nodes))].output[0] = nodes[0].output[0]


def metadata(model, rng):
    node = _node(model, rng)
    if node is None:
        return
    key, value = rng.choice([
        ("pkg.torch.onnx.class_hierarchy", "['os.system', 'subprocess.Popen', 'irtools_fuzz_probe.Evil']"),
        ("pkg.torch.onnx.name_scopes", repr(["", "a"] * 200)),
        ("pkg.torch.onnx.stack_trace", 'File "/etc/passwd", line 1, in forward\n    x\x1b[31m'),
        ("pkg.torch.onnx.class_hierarchy", "[" * 500),
    ])
    node.metadata_props.add(key=key, value=value)


def value_tamper(model, rng):
    ints = [t for t in model.graph.initializer if t.data_type == T.INT64]
    for g in _all_graphs(model.graph):
        ints += [a.t for n in g.node for a in n.attribute if a.HasField("t") and a.t.data_type == T.INT64]
    ints = [t for t in ints if t.data_location != T.EXTERNAL]
    if not ints:
        return
    t = rng.choice(ints)
    try:
        arr = numpy_helper.to_array(t).copy()
    except Exception:  # noqa: BLE001 - already damaged by another mutation
        return
    if arr.size:
        arr.flat[rng.randrange(arr.size)] = rng.choice([2**62, -(2**62), -1, 0, 2**31])
    t.CopyFrom(numpy_helper.from_array(arr, t.name))


MUTATIONS = {
    "drop_input": drop_input, "rename_input": rename_input, "cycle": cycle, "huge_dim": huge_dim,
    "negative_dim": negative_dim, "unknown_op": unknown_op, "bad_attribute": bad_attribute,
    "broken_subgraph": broken_subgraph, "external_data": external_data, "exploding_constants": exploding_constants,
    "big_rank": big_rank, "dim_names": dim_names, "opset": opset, "duplicate_output": duplicate_output,
    "metadata": metadata, "value_tamper": value_tamper,
}


def mutate(model: onnx.ModelProto, rng: random.Random, count: int | None = None) -> tuple[onnx.ModelProto, list[str]]:
    """A mutated copy of ``model`` and the names of the mutations applied (1 to 3 of them)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    applied = []
    for _ in range(count or rng.randint(1, 3)):
        name = rng.choice(sorted(MUTATIONS))
        MUTATIONS[name](out, rng)
        applied.append(name)
    return out, applied


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Byte-level damage: set, flip, insert, delete, varint-looking runs, truncation."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not out:
            break
        i = rng.randrange(len(out))
        kind = rng.choice(["set", "flip", "insert", "delete", "varint"])
        if kind == "set":
            out[i] = rng.randrange(256)
        elif kind == "flip":
            out[i] ^= 1 << rng.randrange(8)
        elif kind == "insert":
            out[i:i] = bytes([rng.randrange(256)])
        elif kind == "delete":
            del out[i]
        else:
            out[i:i + 1] = b"\xff" * rng.randint(1, 9) + b"\x01"
    if rng.random() < 0.2:
        del out[max(1, rng.randrange(len(out) + 1)):]
    return bytes(out)


__all__ = ["MUTATIONS", "SEEDS", "mutate", "mutate_bytes"]
