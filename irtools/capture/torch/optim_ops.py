"""The ATen ops of a real ``torch.optim`` step, as an IR (what ``passes.optimizer`` is checked against).

A step of the optimizer runs on small real parameters (states already made by a first step)
under a dispatch mode that records every ATen call with its tensors. A ``_foreach_*`` op is
the per-tensor op applied to each member of its lists, so it becomes one node per member
(``aten._foreach_lerp_.Scalar`` -> ``aten.lerp_``); fused kernels (``aten._fused_adamw_``)
stay one node. Nodes on 0-dim tensors (step counters) are flagged ``scalar`` in their args.
"""

from __future__ import annotations

import re

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from irtools.ir import IRGraph, TensorSpec

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
VARIANT_KWARGS = {"single": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def _spec(t: torch.Tensor) -> TensorSpec:
    return TensorSpec(tuple(int(d) for d in t.shape), str(t.dtype).removeprefix("torch."))


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, list[torch.Tensor], list[torch.Tensor]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func)
        if not name.startswith("aten."):
            return out
        schema = func._schema.arguments
        bound = dict(zip([a.name for a in schema], args))
        bound.update(kwargs or {})
        lists = [v for v in bound.values() if isinstance(v, list | tuple) and v and isinstance(v[0], torch.Tensor)]
        if name.startswith("aten._foreach_") and lists:
            base = "aten." + re.sub(r"^_foreach_", "", name.split(".")[1])
            outs = out if isinstance(out, list | tuple) and out else lists[0]  # in-place: the first list
            for i in range(len(lists[0])):
                ins = [v[i] if isinstance(v, list | tuple) else v for v in bound.values()
                       if isinstance(v, torch.Tensor) or (isinstance(v, list | tuple) and v and isinstance(v[0], torch.Tensor))]
                self.calls.append((base, ins, [outs[i]]))
        else:
            ins = [t for t in tree_leaves(list(bound.values())) if isinstance(t, torch.Tensor)]
            outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            if name.startswith("aten._fused_") and not outs:  # in-place fused kernel: it writes its tensor lists
                outs = [t for v in list(bound.values())[:1] + list(bound.values())[2:4] for t in (v if isinstance(v, list | tuple) else [])]
            self.calls.append((name, ins, outs))
        return out


def step_ir(optimizer: str, variant: str, sizes: tuple[int, ...] = (7, 11), **hyper) -> IRGraph:
    """The IR of one step of ``optimizer`` (sgd | adam | adamw) in ``variant`` (single |
    foreach | fused) on fp32 parameters of ``sizes`` elements; SGD gets momentum 0.9."""
    cls = OPTIMIZERS[optimizer]
    if optimizer == "sgd":
        hyper = {"lr": 0.1, "momentum": 0.9, **hyper}
    params = [torch.nn.Parameter(torch.randn(n)) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = cls(params, **hyper, **VARIANT_KWARGS[variant])
    opt.step()  # the states exist: a steady-state step
    recorder = _Recorder()
    with torch.no_grad(), recorder:
        opt.step()
    ir = IRGraph(name=f"{optimizer}-{variant}", frontend="torch")
    for k, (op, ins, outs) in enumerate(recorder.calls):
        ins_spec, outs_spec = [_spec(t) for t in ins], [_spec(t) for t in outs]
        scalar = all(t.dim() == 0 for t in ins + outs)
        ir.add_op(f"n{k}", op=op, inputs=ins_spec, outputs=outs_spec, args={"scalar": scalar},
                  input_values=[None] * len(ins_spec), output_values=[None] * len(outs_spec))
    return ir
