"""The per-device model of one analyzed graph: its parts as formulas in the degrees, and the
report of a layout for each device role (first, middle, last pipeline stage).

:func:`device_model` finds the tensor-parallel splits (``tp``), the sequence-parallel ones
(``sp``) and the expert layers (``ep``) once, builds the per-device graph of each variant
(``shard``), groups it into kernels, prices every kernel on the target (roofline) and every
collective on its interconnect (``passes.collectives``), and cuts it into parts (``parts``).
All of it stays symbolic in ``tp``, ``ep`` and the free dims (``batch_size`` = sequences per
micro-batch); ``pp``, ``dp`` and the micro-batch count enter in ``step.assemble``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from irtools.hardware import Target, load_target
from irtools.ir import IRGraph
from irtools.ir.symbols import from_kv_len, sym
from passes.collapse import repeat_kernels
from passes.collectives import Collective, Topology, collective_time
from passes.fusion import KernelGraph, build_kernels
from passes.memory import CATEGORIES, HELD, memory
from passes.parallel import step as steps
from passes.parallel.ep import EP, EPPlan, ep_collectives, expert_parallel
from passes.parallel.parts import PARTS, Cut, Part, find_stack, split_parts
from passes.parallel.pp import MICRO, PP, balanced
from passes.parallel.shard import TP, backward_collectives, forward_collectives, shard
from passes.parallel.sp import SPPlan, sequence_parallel
from passes.parallel.tp import TPPlan, tensor_parallel

DP = sym("dp")
SCENARIOS = ("train", "prefill", "decode")
FIELDS = ("compute", "attention", "flops", "matmul_flops", "bytes", "params", "weights", "kv", "saved", "scores")


@dataclass(frozen=True)
class Layout:
    """One way to spread a model over ``tp · pp · dp`` devices (``ep`` divides ``dp``)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    micro_batch: int = 1  # sequences per micro-batch (the graph's batch_size)
    micro_batches: int = 1
    sp: bool = False
    zero: int = 0
    recompute: str = "none"

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp

    def arrays(self) -> dict[str, np.ndarray]:
        return {"tp": np.array([self.tp]), "pp": np.array([self.pp]), "dp": np.array([self.dp]),
                "ep": np.array([self.ep]), "b": np.array([self.micro_batch]), "m": np.array([self.micro_batches]),
                "zero": np.array([self.zero]), "recompute": np.array([steps.RECOMPUTE.index(self.recompute)])}

    def label(self) -> str:
        extra = [f"zero{self.zero}"] if self.zero else []
        extra += ["sp"] if self.sp else []
        extra += [f"rc={self.recompute}"] if self.recompute != "none" else []
        return (f"tp{self.tp} pp{self.pp} dp{self.dp}" + (f" ep{self.ep}" if self.ep > 1 else "")
                + f" b{self.micro_batch}x{self.micro_batches}" + ("".join(" " + e for e in extra)))


@dataclass
class Variant:
    """The per-device graph of one variant (sequence parallel or not) and its parts."""

    sp: bool
    sharded: IRGraph
    kernels: KernelGraph
    parts: dict[str, Part]
    collectives: list[Collective]
    transient: sympy.Expr


@dataclass
class DeviceModel:
    """Everything needed to evaluate layouts of one model on one target."""

    ir: IRGraph
    scenario: str
    target: Target
    topology: Topology
    mode: str
    bindings: dict[str, float]
    full_flops: sympy.Expr
    tokens: sympy.Expr
    tp: TPPlan
    sp: SPPlan
    ep: EPPlan
    cut: Cut
    flavor: str = "megatron"
    algorithm: str = "auto"
    overlap: bool = True
    joint: Any = None  # passes.parallel.joint_memory.JointMemory: training memory from the joint graph
    joint_full: Any = None  # the same for the joint graph captured with full recompute
    variants: dict[bool, Variant] = field(default_factory=dict)
    _values: dict = field(default_factory=dict, repr=False)

    @property
    def layers(self) -> int:
        return self.cut.layers or 1

    def variant(self, sp: bool) -> Variant:
        if sp not in self.variants:
            self.variants[sp] = _build_variant(self, sp)
        return self.variants[sp]

    # ---- part values ----------------------------------------------------------------------

    def stride(self, group: str, lay):
        if group == "tp":
            return 1
        return lay["tp"] * lay["dp"] if group == "pp" else lay["tp"]

    def ctime_sym(self, kind: str, nbytes, group: str, lay) -> sympy.Expr:
        return collective_time(kind, nbytes, lay[group], self.topology, self.stride(group, lay), self.algorithm)

    def values(self, sp: bool) -> dict[str, sympy.Expr]:
        """Part values (``pre.compute``, ``layer.cf`` ...) in ``tp``, ``ep`` and the free dims."""
        if sp in self._values:
            return self._values[sp]
        var = self.variant(sp)
        lay = {"tp": TP, "ep": EP}
        out: dict[str, sympy.Expr] = {}
        for name in PARTS:
            part = var.parts[name]
            for f in FIELDS:
                out[f"{name}.{f}"] = getattr(part, f)
            for key, group, phase in (("cf", "tp", "forward"), ("cb", "tp", "backward"), ("ef", "ep", "forward"),
                                      ("eb", "ep", "backward")):
                out[f"{name}.{key}"] = sympy.Add(*(c.count * self.ctime_sym(c.kind, c.nbytes, group, lay)
                                                   for c in part.collectives if c.group == group and c.phase == phase))
        out["layer.boundary"] = var.parts["layer"].boundary or var.parts["pre"].boundary
        out["post.tied"], out["post.tied_bytes"] = var.parts["post"].tied
        out["full_flops"], out["tokens"], out["transient"] = self.full_flops, self.tokens, var.transient
        if self.joint is not None:  # training memory of one rank from the sharded joint graph (pp = 1)
            out.update(self.joint.values())
            base = self.variant(False).parts
            out["joint.base_saved"] = base["pre"].saved + self.layers * base["layer"].saved + base["post"].saved
            if self.joint_full is not None:  # full recompute: saved are the layer boundaries, one layer at a time
                out.update(self.joint_full.values("joint_full"))
                out["joint_full.base_saved"] = (base["pre"].saved + self.layers * base["layer"].boundary
                                                + base["post"].saved + base["layer"].saved)
        fixed = {sym(k): v for k, v in self.bindings.items()}
        self._values[sp] = {k: from_kv_len(sympy.sympify(e)).xreplace(fixed) for k, e in out.items()}
        return self._values[sp]

    # ---- evaluation -----------------------------------------------------------------------

    def formulas(self, layout: Layout) -> dict:
        """The per-role figures as formulas in tp, pp, dp, ep, batch_size, micro_batches (even split)."""
        v = self.values(layout.sp)
        lay = {"tp": TP, "pp": PP, "dp": DP, "ep": EP, "b": sym("batch_size"), "m": MICRO,
               "zero": layout.zero, "recompute": steps.RECOMPUTE.index(layout.recompute)}
        return steps.assemble(v, lay, self.scenario, self.ctime_sym, self.peak, self.target.memory_bandwidth,
                              steps.SYMPY, layers=self.layers, overlap=self.overlap)

    @property
    def peak(self) -> float:
        from passes.roofline import compute_dtype

        return self.target.peak(compute_dtype(float(self.bindings.get("a_bytes", 2))))

    def stages(self, v_num: dict, lay: dict) -> tuple:
        """Layers of the first, middle and last stage from a balanced partition (numbers)."""
        layer = v_num["layer.compute"] + v_num["layer.cf"] + v_num["layer.ef"]
        pre = v_num["pre.compute"] + v_num["pre.cf"]
        post = v_num["post.compute"] + v_num["post.cf"]
        _, first, last = balanced(layer, pre, post, self.layers, lay["pp"])
        rest = np.maximum(self.layers - first - last, 0)
        mid = np.where(lay["pp"] > 2, np.ceil(rest / np.maximum(lay["pp"] - 2, 1)), 0)
        return first, mid, last


def _build_variant(model: DeviceModel, sp: bool) -> Variant:
    ir, tp = model.ir, model.tp
    sp_plan = model.sp if sp else None
    sharded = shard(ir, tp, sp_plan)
    kernels = build_kernels(sharded, model.mode, target=model.target)
    if sharded.meta.collapse is not None and model.cut.stack:
        repeat_kernels(kernels, sharded.meta.collapse)
    coll = forward_collectives(sharded)
    if model.scenario == "train":
        coll += backward_collectives(ir, tp, sp_plan, model.flavor)
        if model.flavor == "megatron":  # vocab-parallel cross entropy: no logits gather (Megatron-LM)
            coll = [c for c in coll if c.why != "graph output"] + _cross_entropy(ir, tp)
    coll += ep_collectives(sharded, model.ep)
    parts, _ = split_parts(sharded, kernels, model.target, model.bindings, coll, model.ep.nodes, 1 / EP, model.ep.params)
    transient = sympy.Integer(0)
    if model.scenario != "train":
        mem = memory(sharded, kernels)
        totals = [sympy.Add(*(mem.breakdown(i)[c] for c in CATEGORIES if c not in HELD or c in ("inputs", "outputs")))
                  for i in mem.candidates]
        transient = sympy.Max(*totals) if totals else transient
    return Variant(sp, sharded, kernels, parts, coll, transient)


def _cross_entropy(ir: IRGraph, tp: TPPlan) -> list[Collective]:
    """Megatron's vocab-parallel cross entropy: three all-reduces of one fp32 value per token."""
    out = []
    for v in tp.gathers:
        spec = ir.values[v].spec
        tokens = sympy.Mul(*spec.shape[:-1])
        module = ir.node(ir.values[v].producer).module or ""
        for what in ("max", "sum of exp", "target logit"):
            out.append(Collective("all_reduce", "tp", 4 * tokens, "forward", f"ce_{what}_{v}", module,
                                  f"vocab-parallel cross entropy ({what})"))
    return out


def device_model(ir: IRGraph, scenario: str, target: Target | str, *, full_flops=None, bindings=None,
                 mode: str = "flash", flavor: str = "megatron", algorithm: str = "auto", overlap: bool = True,
                 joint: IRGraph | None = None, joint_full: IRGraph | None = None) -> DeviceModel:
    """The per-device model of an annotated forward graph ``ir`` (prefill or decode capture;
    ``train`` reads a forward capture with logits at every position). ``joint``: the annotated
    joint training graph of the same model (``--scenario train`` capture, optimizer nodes
    included): training memory then comes from its sharded copy (``passes.parallel.joint_memory``);
    ``joint_full``: the joint graph captured with full recompute, for the layouts that recompute."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    target = load_target(target)
    topo = Topology.of(target)
    tp = tensor_parallel(ir)
    sp = sequence_parallel(ir, tp)
    ep = expert_parallel(ir)
    cut = find_stack(ir)
    if full_flops is None:
        full_flops = sympy.Add(*(a.flops for _, a in ir.nodes() if a.flops is not None))
    b, s = sym("batch_size"), sym("seq_len")
    tokens = b * (s if scenario != "decode" else 1)
    bindings = dict(bindings or {})
    bindings.setdefault("a_bytes", 2)
    bindings.setdefault("w_bytes", 2)
    bindings.setdefault("kv_bytes", bindings["a_bytes"])
    model = DeviceModel(ir, scenario, target, topo, mode, bindings, full_flops, tokens, tp, sp, ep, cut, flavor,
                        algorithm, overlap)
    if joint is not None and scenario == "train":
        from passes.parallel.joint_memory import joint_memory

        model.joint = joint_memory(joint)
        if joint_full is not None:
            model.joint_full = joint_memory(joint_full)
    return model


__all__ = ["DP", "DeviceModel", "Layout", "SCENARIOS", "Variant", "device_model"]
