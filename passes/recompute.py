"""Activation-recomputation pass over a joint training graph: ``none``, ``selective`` or ``full``.

Recomputing a region means: its forward ops run again during the backward, just before the
backward first needs them, and the backward reads the recomputed tensors instead of tensors
saved from the forward. The pass clones the region's forward nodes (phase "recompute", the
same module scope and source line), places them before the first backward node that reads
one of the region's saved tensors and points those reads at the clones; the originals are then
freed as soon as the forward is done with them. Costs, kernels, time and memory follow.

- ``full``: every block of the model's layer stack (``h.0``, ``h.1``...), its whole forward
  once more (Megatron-style full checkpointing: one extra forward per block);
- ``selective`` (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models"): the attention scores only: the forward ops in attention modules whose
  outputs are ``seq × seq`` (QKᵀ, scale, mask, softmax, dropout). A fused attention op
  (SDPA, flash) saves no scores: nothing is added;
- modules the model's own code runs under ``torch.utils.checkpoint`` (found while capturing)
  are recomputed in every policy, as torch does it: the forward re-runs until the last tensor
  the backward needs is recomputed (torch's early stop), no further.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from irtools.ir import IRGraph, is_layer_stack
from irtools.ir.symbols import sym

POLICIES = ("none", "selective", "full")
_SEQ = {sym("seq_len"), sym("kv_len"), sym("cache_len")}


@dataclass
class RecomputePlan:
    """What was recomputed, and why."""

    policy: str
    regions: dict[str, list[str]] = field(default_factory=dict)  # region name -> forward nodes cloned
    detected: list[str] = field(default_factory=list)  # modules the model's code checkpoints
    nodes: list[str] = field(default_factory=list)  # recompute node ids added
    note: str = ""


def _in_module(attrs, path: str) -> bool:
    return any(s.path == path for s in attrs.scope or [])


def _forward_of(ir: IRGraph, path: str) -> list[str]:
    return [n for n, a in ir.nodes() if a.phase == "forward" and _in_module(a, path)]


def layer_blocks(ir: IRGraph) -> list[str]:
    """The blocks of the model's layer stacks (module paths ``<stack>.<i>``), in order."""
    paths = {s.path for _, a in ir.nodes() for s in a.scope or [] if re.fullmatch(r".+\.\d+", s.path)}
    stacks: dict[str, list[str]] = {}
    for p in paths:
        stacks.setdefault(p.rsplit(".", 1)[0], []).append(p)
    blocks = []
    for members in stacks.values():
        members.sort(key=lambda p: int(p.rsplit(".", 1)[1]))
        if is_layer_stack(members) and not any(b in members[0] and members[0].startswith(b + ".") for b in blocks):
            blocks.extend(members)
    return [b for b in blocks if not any(b.startswith(o + ".") for o in blocks)]


def _is_score(spec) -> bool:
    """A ``seq × seq`` tensor: two dims in the sequence symbols."""
    if spec is None:
        return False
    return sum(1 for d in spec.shape if getattr(d, "free_symbols", set()) & _SEQ) >= 2


def score_nodes(ir: IRGraph) -> dict[str, list[str]]:
    """Attention module path -> its forward nodes with ``seq × seq`` outputs (views excepted)."""
    out: dict[str, list[str]] = {}
    for n, a in ir.nodes():
        if a.phase != "forward" or not any(_is_score(o) for o in a.outputs):
            continue
        attn = next((s.path for s in reversed(a.scope or []) if "attention" in s.cls.rsplit(".", 1)[-1].lower()), None)
        if attn is not None:
            out.setdefault(attn, []).append(n)
    return out


def _backward_reads(ir: IRGraph, produced: set[str], scope: str) -> dict[str, list[tuple[str, int]]]:
    """Value id -> (backward node, input position) reads of the values in ``produced`` by the
    backward of forward ops inside module ``scope`` (a checkpoint's output read by the next
    block's backward is that block's saved input: it stays saved)."""
    reads: dict[str, list[tuple[str, int]]] = {}
    for n, a in ir.nodes():
        if a.phase != "backward" or not a.grad_of or a.grad_of not in ir.graph:
            continue
        if not _in_module(ir.node(a.grad_of), scope):
            continue
        for pos, v in enumerate(a.input_values):
            if v in produced:
                reads.setdefault(v, []).append((n, pos))
    return reads


def _clone_region(ir: IRGraph, name: str, scope: str, members: list[str], early_stop: bool,
                  plan: RecomputePlan) -> tuple[str, list]:
    """Clones of ``members`` (forward order) whose outputs the backward of module ``scope`` reads
    instead; returns the first backward reader (where the clones go) and the clones (id, attrs)."""
    produced = {v: n for n in members for v in ir.node(n).output_values if v is not None}
    reads = _backward_reads(ir, set(produced), scope)
    if not reads:
        return "", []
    order = {n: i for i, n in enumerate(ir.graph.nodes)}
    if early_stop:  # torch.utils.checkpoint stops once the last needed tensor is recomputed
        last = max(order[produced[v]] for v in reads)
        members = [n for n in members if order[n] <= last]
    rename = {v: f"{v}.rc" for n in members for v in ir.node(n).output_values if v is not None}
    clones = []
    for n in members:
        a = ir.node(n)
        attrs = {k: getattr(a, k) for k in ("op", "inputs", "outputs", "args", "scope", "source", "flags")}
        attrs.update(input_values=[rename.get(v, v) for v in a.input_values],
                     output_values=[rename.get(v) if v is not None else None for v in a.output_values],
                     phase="recompute", grad_of=n)
        clones.append((f"{n}.rc", attrs))
    for v, uses in reads.items():
        if v not in rename:
            continue
        for node, pos in uses:
            values = list(ir.node(node).input_values)
            values[pos] = rename[v]
            ir.node(node).input_values = values
    first = min((u for uses in reads.values() for u, _ in uses), key=order.__getitem__)
    plan.regions[name] = [n for n in members]
    plan.nodes.extend(c for c, _ in clones)
    return first, clones


def _rebuild(ir: IRGraph, inserts: dict[str, list]) -> None:
    """Re-add every node in program order, each insert's clones just before its anchor node."""
    old = [(n, {k: getattr(a, k) for k in a}) for n, a in ir.nodes()]
    values = {v: val for v, val in ir.values.items() if val.producer is None}
    ir.graph = type(ir.graph)()
    ir.values = values
    for n, attrs in old:
        for cid, cattrs in inserts.get(n, []):
            ir.add_op(cid, **cattrs)
        ir.add_op(n, **attrs)


def apply_recompute(ir: IRGraph, policy: str = "none") -> RecomputePlan:
    """Recompute the regions of ``policy`` (and the model's own checkpoints) in ``ir`` (a joint
    graph from ``irtools.capture.torch.joint``, before costs are annotated)."""
    if policy not in POLICIES:
        from irtools.ir.errors import UsageError

        raise UsageError(f"unknown recompute policy {policy!r} (choose from {', '.join(POLICIES)})")
    info = ir.meta.training
    detected = list(info.checkpointed) if info is not None else []
    plan = RecomputePlan(policy, detected=detected)
    regions: list[tuple[str, str, list[str], bool]] = []  # name, module, forward nodes, early stop
    if policy == "full":
        for block in layer_blocks(ir):
            regions.append((block, block, _forward_of(ir, block), False))
    elif policy == "selective":
        regions += [(f"{path} (scores)", path, members, True) for path, members in score_nodes(ir).items()]
    covered = {r[1] for r in regions if policy == "full"}
    for path in detected:
        if path not in covered and not any(path.startswith(c + ".") for c in covered):
            regions.append((path, path, _forward_of(ir, path), True))
    inserts: dict[str, list] = {}
    for name, scope, members, early in regions:
        first, clones = _clone_region(ir, name, scope, members, early, plan)
        if clones:
            inserts.setdefault(first, []).extend(clones)
    if inserts:
        _rebuild(ir, inserts)
    plan.note = _note(plan)
    return plan


def _note(plan: RecomputePlan) -> str:
    parts = {"none": "no activation recomputation",
             "full": f"full recomputation: the forward of {len([r for r in plan.regions if r not in plan.detected])} "
                     "blocks runs again in the backward",
             "selective": "selective recomputation (Korthikanti et al. 2022): attention scores of "
                          f"{len([r for r in plan.regions if r.endswith('(scores)')])} attention modules recomputed"}
    text = parts[plan.policy]
    if plan.policy == "selective" and not any(r.endswith("(scores)") for r in plan.regions):
        text += " (none saved: fused attention kernels keep no scores)"
    if plan.detected:
        text += f"; torch.utils.checkpoint in the model's code: {', '.join(plan.detected)} recomputed as torch does"
    return text


__all__ = ["POLICIES", "RecomputePlan", "apply_recompute", "layer_blocks", "score_nodes"]
