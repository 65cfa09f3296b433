"""A GPT-style decoder as an ONNX file, written with onnx.helper (no torch): for large-graph benchmarks.

The graph is what a legacy exporter writes for a pre-norm decoder with rotary attention and
grouped KV heads: every constant is a ``Constant`` node, every reshape target is built from
``Shape -> Gather -> Unsqueeze -> Concat`` on the live tensor, LayerNorm, GELU and rotary
embedding are decomposed into elementwise ops, and the causal mask is sliced from a buffer.
Input ``input_ids`` is ``[batch_size, seq_len]`` (symbolic, or fixed with ``fixed=(B, S)``);
output ``logits`` is ``[batch_size, seq_len, vocab]``. About 200 nodes per layer (48 layers: 9.7k
nodes, 96 layers: 19.4k); onnxruntime runs it.

    python benchmarks/gpt_onnx.py OUT.onnx [--layers 48] [--width 64] [--fixed B S]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Graph:
    """Nodes, initializers and unique names."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def op(self, op_type: str, *inputs: str, n_out: int = 1, **attrs) -> str | list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name(f"/{op_type}"), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=np.int64) -> str:
        """A ``Constant`` node (what exporters write for literals)."""
        return self.op("Constant", value=numpy_helper.from_array(np.asarray(value, dtype=dtype)))

    def weight(self, shape: tuple[int, ...], scale: float = 0.02) -> str:
        name = self.name("w")
        rng = np.random.default_rng(self.count)
        self.inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def dim(self, x: str, axis: int) -> str:
        """``x.shape[axis]`` as a 1-element int64 tensor (Shape -> Gather -> Unsqueeze)."""
        return self.op("Unsqueeze", self.op("Gather", self.op("Shape", x), self.const(axis), axis=0), self.const([0]))

    def reshape(self, x: str, like: str, keep: int, tail: list[int]) -> str:
        """``x.reshape(like.shape[:keep] + tail)``, the target built from the live shape."""
        parts = [self.dim(like, a) for a in range(keep)] + [self.const(tail)]
        return self.op("Reshape", x, self.op("Concat", *parts, axis=0))

    def linear(self, x: str, n_in: int, n_out: int, bias: bool = True) -> str:
        y = self.op("MatMul", x, self.weight((n_in, n_out)))
        return self.op("Add", y, self.weight((n_out,), 0.0)) if bias else y

    def layer_norm(self, x: str, width: int) -> str:
        mean = self.op("ReduceMean", x, axes=[-1], keepdims=1)
        centered = self.op("Sub", x, mean)
        var = self.op("ReduceMean", self.op("Pow", centered, self.const(2.0, np.float32)), axes=[-1], keepdims=1)
        std = self.op("Sqrt", self.op("Add", var, self.const(1e-5, np.float32)))
        normed = self.op("Div", centered, std)
        return self.op("Add", self.op("Mul", normed, self.weight((width,), 1.0)), self.weight((width,), 0.0))

    def gelu(self, x: str) -> str:
        cube = self.op("Mul", self.op("Pow", x, self.const(3.0, np.float32)), self.const(0.044715, np.float32))
        inner = self.op("Mul", self.op("Add", x, cube), self.const(math.sqrt(2 / math.pi), np.float32))
        one_plus = self.op("Add", self.op("Tanh", inner), self.const(1.0, np.float32))
        return self.op("Mul", self.op("Mul", x, one_plus), self.const(0.5, np.float32))

    def rotate(self, x: str, cos: str, sin: str, half: int) -> str:
        """Rotary embedding: ``x * cos + rotate_half(x) * sin`` on ``[B, H, S, D]``."""
        lo = self.op("Slice", x, self.const([0]), self.const([half]), self.const([3]), self.const([1]))
        hi = self.op("Slice", x, self.const([half]), self.const([2**62]), self.const([3]), self.const([1]))
        rotated = self.op("Concat", self.op("Neg", hi), lo, axis=-1)
        return self.op("Add", self.op("Mul", x, cos), self.op("Mul", rotated, sin))

    def heads(self, x: str, n: int, d: int, perm: list[int]) -> str:
        return self.op("Transpose", self.reshape(x, x, 2, [n, d]), perm=perm)

    def repeat_kv(self, x: str, groups: int, kv_heads: int, d: int) -> str:
        """``[B, KV, S, D] -> [B, KV * groups, S, D]``: Unsqueeze, Expand to a built shape, Reshape."""
        grown = self.op("Unsqueeze", x, self.const([2]))
        shape = self.op("Concat", self.dim(x, 0), self.const([kv_heads, groups]), self.dim(x, 2), self.const([d]), axis=0)
        wide = self.op("Expand", grown, shape)
        target = self.op("Concat", self.dim(x, 0), self.const([kv_heads * groups]), self.dim(x, 2), self.const([d]), axis=0)
        return self.op("Reshape", wide, target)


def _layer(g: _Graph, x: str, width: int, heads: int, kv_heads: int, cos: str, sin: str, mask: str) -> str:
    d = width // heads
    h = g.layer_norm(x, width)
    q = g.heads(g.linear(h, width, width), heads, d, [0, 2, 1, 3])
    k = g.heads(g.linear(h, width, kv_heads * d), kv_heads, d, [0, 2, 1, 3])
    v = g.heads(g.linear(h, width, kv_heads * d), kv_heads, d, [0, 2, 1, 3])
    q, k = g.rotate(q, cos, sin, d // 2), g.rotate(k, cos, sin, d // 2)
    k, v = g.repeat_kv(k, heads // kv_heads, kv_heads, d), g.repeat_kv(v, heads // kv_heads, kv_heads, d)
    scores = g.op("Div", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), g.const(math.sqrt(d), np.float32))
    probs = g.op("Softmax", g.op("Add", scores, mask), axis=-1)
    ctx = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    attn = g.linear(g.reshape(ctx, ctx, 2, [width]), width, width)
    x = g.op("Add", x, attn)
    m = g.linear(g.gelu(g.linear(g.layer_norm(x, width), width, 4 * width)), 4 * width, width)
    return g.op("Add", x, m)


def gpt_model(layers: int = 48, width: int = 64, heads: int = 4, kv_heads: int = 2, vocab: int = 512,
              positions: int = 2048, fixed: tuple[int, int] | None = None) -> onnx.ModelProto:
    """The decoder as a ModelProto; ``fixed=(batch, seq)`` writes numbers instead of dim names."""
    g = _Graph()
    ids = "input_ids"
    x = g.op("Gather", g.weight((vocab, width)), ids, axis=0)
    seq = g.op("Gather", g.op("Shape", ids), g.const(1), axis=0)
    pos = g.op("Range", g.const(0), seq, g.const(1))
    half = width // heads // 2
    freqs = g.weight((positions, half), 1.0)
    angles = g.op("Gather", freqs, pos, axis=0)  # [S, D/2]
    angles = g.op("Concat", angles, angles, axis=-1)
    cos = g.op("Unsqueeze", g.op("Cos", angles), g.const([0, 1]))
    sin = g.op("Unsqueeze", g.op("Sin", angles), g.const([0, 1]))
    seq1 = g.op("Unsqueeze", seq, g.const([0]))
    causal = numpy_helper.from_array(np.triu(np.full((positions, positions), -1e9, np.float32), 1), "causal")
    g.inits.append(causal)
    mask = g.op("Slice", "causal", g.const([0, 0]), g.op("Concat", seq1, seq1, axis=0), g.const([0, 1]))
    for _ in range(layers):
        x = _layer(g, x, width, heads, kv_heads, cos, sin, mask)
    logits = g.linear(g.layer_norm(x, width), width, vocab, bias=False)
    dims = list(fixed) if fixed else ["batch_size", "seq_len"]
    inputs = [helper.make_tensor_value_info(ids, TensorProto.INT64, dims)]
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="/logits"))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [*dims, vocab])]
    graph = helper.make_graph(g.nodes, f"gpt_{layers}l", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="irtools-benchmark")
    model.ir_version = 8
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--fixed", type=int, nargs=2, default=None, metavar=("BATCH", "SEQ"))
    args = ap.parse_args()
    model = gpt_model(args.layers, args.width, fixed=tuple(args.fixed) if args.fixed else None)
    onnx.save(model, args.out)
    print(f"{args.out}: {len(model.graph.node)} nodes")


if __name__ == "__main__":
    main()
