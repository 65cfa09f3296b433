"""Compare the kernels Inductor built (passes/compiler/inductor_hook.py) with irtools' ``fused`` grouping.

IR nodes are mapped to Inductor kernels in three steps:

1. provenance: an IR node and an Inductor origin whose ``from_node`` chains end at the same
   node of the graph dynamo handed over (the IR must come from that graph: the
   ``torch_backend`` report's ``aten_graph``); a kernel's own outputs first, then ops it
   inlined (an op inlined into two kernels maps to both: Inductor recomputes it);
2. attention: IR nodes of a QKᵀ → softmax → ·V pattern Inductor's pattern matcher replaced
   by an SDPA call (replacement nodes carry no provenance) map to that attention kernel;
3. op order: the k-th unmatched IR node of an aten op maps to the kernel of the k-th
   unclaimed Inductor origin of the same op (``original_aten``).

Kernels linked by mapped nodes form connected components: one irtools kernel ↔ one Inductor
kernel is an agreement; any other component is a difference, with its reasons.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import networkx as nx
import torch

from passes.compiler.inductor_hook import RecordedGraph, _op_short, _roots
from passes.fusion import KernelGraph, _attention_patterns, _Tensors


@dataclass(frozen=True)
class Agreement:
    ir_kernel: str
    inductor_kernel: str
    ir_bytes: float | None  # irtools' boundary bytes at the example shape
    inductor_bytes: int


@dataclass(frozen=True)
class Difference:
    ir_kernels: tuple[str, ...]
    inductor_kernels: tuple[str, ...]
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class Comparison:
    agreements: list[Agreement] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    node_map: dict[str, tuple[str, ...]] = field(default_factory=dict)  # IR node -> Inductor kernels
    how: dict[str, str] = field(default_factory=dict)  # IR node -> provenance | attention | op-order
    ir_kernel_count: int = 0
    inductor_kernel_count: int = 0

    @property
    def agreement_rate(self) -> float:
        """Share of irtools ``fused`` kernels Inductor groups the same way."""
        return len(self.agreements) / self.ir_kernel_count if self.ir_kernel_count else 0.0

    def summary(self) -> str:
        lines = [f"{len(self.agreements)}/{self.ir_kernel_count} irtools kernels agree "
                 f"({self.agreement_rate:.0%}); Inductor launched {self.inductor_kernel_count} kernels"]
        for d in self.differences:
            lines.append(f"- irtools {','.join(d.ir_kernels) or '-'} vs Inductor "
                         f"{','.join(d.inductor_kernels) or '-'}: {d.reason}")
        return "\n".join(lines)


def _ir_roots(kg: KernelGraph, aten_graph: torch.fx.GraphModule | None) -> dict[str, tuple[str, ...]]:
    if aten_graph is None:
        ep = kg.ir.meta.exported_program
        aten_graph = ep.graph_module if ep is not None else None
    if aten_graph is None:
        return {}
    return {n.name: _roots(n) for n in aten_graph.graph.nodes}


def _map_nodes(rec: RecordedGraph, kg: KernelGraph, aten_graph) -> tuple[dict, dict]:
    launched = [k for k in rec.kernels if k.kind != "nop"]
    own, inlined = defaultdict(list), defaultdict(list)
    for k in launched:
        for o in k.compute_origins:
            for r in o.roots:
                if o.primary:
                    own[r].append(k.name)
                elif k.kind not in ("gemm", "extern", "attention", "template"):
                    inlined[r].append(k.name)
    roots = _ir_roots(kg, aten_graph)
    mapping, how = {}, {}
    for n in kg.node_kernel:
        rs = roots.get(n, ())
        hits = [x for r in rs for x in own.get(r, ())] or [x for r in rs for x in inlined.get(r, ())]
        if hits:
            mapping[n], how[n] = tuple(dict.fromkeys(hits)), "provenance"
    attention = [k.name for k in launched if k.kind == "attention"]
    patterns = _attention_patterns(_Tensors(kg.ir)) if attention else []
    for members, name in zip(patterns, attention):
        for n in members:
            if n in kg.node_kernel and n not in mapping:
                mapping[n], how[n] = (name,), "attention"
    claimed = set().union(*mapping.values()) if mapping else set()
    free = defaultdict(list)
    for k in launched:
        if k.name in claimed:
            continue
        for o in k.compute_origins:
            if not o.roots:
                free[_op_short(o.original_aten)].append(k.name)
    for n in kg.node_kernel:
        if n in mapping:
            continue
        op = _op_short(kg.ir.graph.nodes[n].get("op", ""))
        if free.get(op):
            mapping[n], how[n] = (free[op].pop(0),), "op-order"
    return mapping, how


def _ops(kg: KernelGraph, kid: str) -> str:
    k = kg.graph.nodes[kid]["kernel"]
    return "+".join(_op_short(kg.ir.graph.nodes[n].get("op", n)) for n in k.nodes)


def _reasons(kg, rec, ks: list[str], isx: list[str], mapping, unmatched) -> list[str]:
    by_name = {k.name: k for k in rec.kernels}
    ind = [by_name[i] for i in isx]
    kern = {k: kg.graph.nodes[k]["kernel"] for k in ks}
    out = []
    for i in ind:
        if i.kind == "attention":
            out.append(f"Inductor's pattern matcher rewrote QKᵀ→scale/mask→softmax→·V ({len(ks)} irtools fused "
                       f"kernels: {', '.join(_ops(kg, k) for k in ks)}) into one {i.op} call — irtools' flash-mode grouping")
    for k in ks:
        main = mapping.get(kern[k].anchor, ())
        rest = sorted({x for n in kern[k].nodes for x in mapping.get(n, ())} - set(main))
        if kern[k].pattern == "gemm+epilogue" and len(main) == 1 and rest:
            g = by_name[main[0]]
            out.append(f"Inductor's {g.kind} {g.op} on {g.device} takes no epilogue: irtools' {_ops(kg, k)} "
                       f"splits, the epilogue runs in {', '.join(rest)}")
    for n in [n for k in ks for n in kern[k].nodes if len(mapping.get(n, ())) > 1]:
        out.append(f"Inductor recomputes {n} inline in {', '.join(mapping[n])} instead of materializing it once")
    for i in ind:
        owners = [k for k in ks if any(mapping.get(n) == (i.name,) for n in kern[k].nodes)]
        if len(owners) > 1 and i.kind != "attention":
            reds = [k for k in owners if kern[k].pattern == "reduction"]
            what = f"{len(reds)} reductions" if len(reds) > 1 else "kernels"
            out.append(f"Inductor fuses {what} {', '.join(_ops(kg, k) for k in owners)} into {i.name} ({i.kind}); "
                       "irtools keeps them apart (one reduction per kernel, nothing fuses into a GEMM's input)")
    for n in unmatched:
        attrs = kg.ir.graph.nodes[n]
        if attrs.get("kind") == "copy":
            out.append(f"Inductor elides the copy {n}: the producer's layout already matches, or the consumer indexes it")
        else:
            out.append(f"no Inductor kernel covers {n} ({_op_short(attrs.get('op', ''))}): rewritten or decomposed away")
    if not ks:
        for i in ind:
            ops = {_op_short(o.original_aten) for o in i.compute_origins}
            if "where" in ops and any(k.kind == "attention" for k in rec.kernels):
                out.append(f"{i.name} materializes the boolean causal mask as an additive float mask for SDPA's attn_mask")
            elif i.op == "clone" and any(k.kind == "attention" for k in rec.kernels):
                out.append(f"{i.name} copies a strided Q/K/V view into the contiguous layout the SDPA kernel wants")
            elif i.op == "clone":
                out.append(f"{i.name} is a layout copy irtools counts as a view")
            else:
                out.append(f"{i.name} ({i.kind} {i.op}) has no irtools counterpart")
    if not out:
        out.append("grouping differs: irtools " + "; ".join(f"{k}={_ops(kg, k)}" for k in ks)
                   + " vs Inductor " + "; ".join(f"{i.name}={i.kind}:{i.op}" for i in ind))
    return out


def _ir_bytes(kg: KernelGraph, kid: str) -> float | None:
    from irtools.ir.symbols import evaluate

    k = kg.graph.nodes[kid]["kernel"]
    return evaluate(k.bytes, {**kg.ir.default_bindings, **kg.ir.dims})


def compare_with_fused(recorded: RecordedGraph, ir_kernel_graph: KernelGraph,
                       aten_graph: torch.fx.GraphModule | None = None) -> Comparison:
    """Agreements and differences between Inductor's kernels and irtools' kernel grouping.

    ``aten_graph``: the FX graph whose node names are the IR's node ids (the backend report's
    ``aten_graph``); default: the IR's exported program, if any."""
    kg = ir_kernel_graph
    mapping, how = _map_nodes(recorded, kg, aten_graph)
    launched = [k for k in recorded.kernels if k.kind != "nop"]
    bip = nx.Graph()
    bip.add_nodes_from(("ir", k) for k in kg.graph.nodes)
    bip.add_nodes_from(("ind", k.name) for k in launched)
    for n, kernels in mapping.items():
        for i in kernels:
            bip.add_edge(("ir", kg.node_kernel[n]), ("ind", i))
    by_name = {k.name: k for k in launched}
    cmp = Comparison(node_map=mapping, how=how, ir_kernel_count=len(kg), inductor_kernel_count=len(launched))
    order = {k: i for i, k in enumerate(kg.graph.nodes)}
    for comp in sorted(nx.connected_components(bip), key=lambda c: min(order.get(n, 1e9) for _, n in c)):
        ks = sorted((n for s, n in comp if s == "ir"), key=order.__getitem__)
        isx = sorted((n for s, n in comp if s == "ind"), key=[k.name for k in launched].index)
        unmatched = [n for k in ks for n in kg.graph.nodes[k]["kernel"].nodes if n not in mapping]
        if len(ks) == 1 and len(isx) == 1 and not unmatched:
            cmp.agreements.append(Agreement(ks[0], isx[0], _ir_bytes(kg, ks[0]), by_name[isx[0]].bytes))
        else:
            cmp.differences.append(Difference(tuple(ks), tuple(isx), tuple(_reasons(kg, recorded, ks, isx, mapping, unmatched))))
    return cmp


__all__ = ["Agreement", "Comparison", "Difference", "compare_with_fused"]
