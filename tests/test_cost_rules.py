"""Cost rules by hand: each figure below is computed from the DESIGN conventions."""

import sympy
import torch

from irtools import analyze_module
from irtools.ir.symbols import sym

B, S = sym("batch_size"), sym("seq_len")
A = sym("a_bytes")
DIMS = {"x": {0: "batch_size", 1: "seq_len"}}


def node_costs(result, op_prefix):
    return [a for _, a in result.ir.nodes() if a["op"].startswith(op_prefix)]


class Broadcast(torch.nn.Module):
    def forward(self, x):
        return x[:, :, None, :].expand(-1, -1, 4, -1).contiguous()


def test_a_broadcast_view_is_read_once():
    r = analyze_module(Broadcast(), (torch.randn(3, 5, 8),), dims=DIMS)
    (copy,) = [a for _, a in r.ir.nodes() if a["bytes_written"] != 0]
    assert copy["bytes_read"] == sympy.expand(B * S * 8 * A)  # the base, once
    assert copy["bytes_written"] == sympy.expand(B * S * 4 * 8 * A)


class Mixed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = torch.nn.LayerNorm(16)
        self.emb = torch.nn.Embedding(50, 16)

    def forward(self, ids, x):
        h = self.ln(x + self.emb(ids))
        return torch.nn.functional.gelu(torch.softmax(h, -1), approximate="tanh")


def test_softmax_layernorm_gelu_embedding():
    r = analyze_module(Mixed().eval(), (torch.randint(0, 50, (3, 5)), torch.randn(3, 5, 16)),
                       dims={"ids": {0: "batch_size", 1: "seq_len"}, "x": {0: "batch_size", 1: "seq_len"}})
    n = B * S * 16
    assert node_costs(r, "aten.softmax")[0]["flops"] == 3 * n
    assert node_costs(r, "aten.layer_norm")[0]["flops"] == 5 * n
    assert node_costs(r, "aten.gelu")[0]["flops"] == 8 * n  # tanh form (ELEMENTWISE_FLOPS)
    emb = node_costs(r, "aten.embedding")[0]
    w = sym("w_bytes")
    assert emb["flops"] == 0 and emb["bytes_read"] == sympy.expand(n * w + B * S * 8)  # rows + int64 ids
    assert emb["bytes_written"] == sympy.expand(n * A)  # the gathered rows are activations


@torch.library.custom_op("irtools_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


class Unknown(torch.nn.Module):
    def forward(self, x):
        return mystery(mystery(x)) + 1


def test_unknown_ops_are_flagged_counted_and_free():
    r = analyze_module(Unknown(), (torch.randn(3, 5),), dims=DIMS)
    assert r.unsupported == [("irtools_test.mystery.default", 2)]
    flagged = [a for _, a in r.ir.nodes() if a["unsupported"]]
    assert len(flagged) == 2 and all(a["flops"] == 0 and a["kind"] == "unknown" for a in flagged)
    report = r.to_dict()
    assert report["unsupported"] == [{"op": "irtools_test.mystery.default", "count": 2}]
    assert len(report["coverage"]["unsupported_nodes"]["irtools_test.mystery.default"]) == 2
    assert r.totals["flops"] == B * S  # the add is still costed
