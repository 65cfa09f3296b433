"""A layout's step: per-role time, memory and throughput, from the parts' per-device costs.

One function, :func:`assemble`, written once over a small namespace of operations so that it
runs on numpy arrays (thousands of layouts at once, ``passes.parallel.plan``) and on sympy
expressions (the formulas of the per-device report). Roles: ``first``, ``middle`` and ``last``
pipeline stage (with ``pp = 1`` the first and last are the same device).

Training (per micro-batch on a stage of ``n`` layers): forward compute ``F``; backward ``2F``
(the backward of a matmul is two matmuls of the forward's size; docs/parallel.md); recompute
``F`` of the layers (full) or their attention-score kernels (selective); tensor- and
expert-parallel collectives (the recomputed forward's too); two pipeline transfers; ZeRO-2/3's
per-micro-batch collectives. A step is ``(m + pp − 1)`` slots of the slowest stage (1F1B) plus
the data-parallel collectives and the optimizer's memory-bound update. With ``overlap`` on,
data-parallel traffic (and ZeRO-3's parameter gathers) hides behind the backward (forward)
compute and only its excess counts; tensor-, pipeline- and expert-parallel traffic is always
on the critical path. Inference: a micro-batch's latency crosses every stage; with ``pp``
micro-batches in flight the throughput is set by the slowest stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from passes.parallel.dp import ADAM_STEP_BYTES, MIXED_ADAM

RECOMPUTE = ("none", "selective", "full")
ROLES = ("first", "middle", "last")


@dataclass(frozen=True)
class Ops:
    """max / min / where / eq for numpy arrays or sympy expressions."""

    max: Any
    min: Any
    where: Any
    gt: Any


NUMPY = Ops(np.maximum, np.minimum, np.where, lambda a, b: np.asarray(a) > b)
def _lazy(fn):
    """sympy Max / Min without its (slow, here pointless) search for the larger argument."""
    def call(a, b):
        a, b = sympy.sympify(a), sympy.sympify(b)
        return fn(a, b) if a.is_number and b.is_number else fn(a, b, evaluate=False)
    return call


def _piecewise(c, a, b):
    c = sympy.sympify(c)
    if c is sympy.true or c is sympy.false:
        return a if c is sympy.true else b
    return sympy.Piecewise((a, c), (b, True))


SYMPY = Ops(_lazy(sympy.Max), _lazy(sympy.Min), _piecewise, lambda a, b: sympy.Gt(a, b))


def _pos(ops: Ops, x):
    return ops.max(x, 0)


def _roles(lay, ops: Ops, stages):
    """(n layers, has pre, has post, activations in flight) per role."""
    pp, m = lay["pp"], lay["m"]
    single = ops.where(ops.gt(pp, 1), 0, 1)
    n_first, n_mid, n_last = stages
    return {
        "first": (n_first, 1, single, ops.min(m, pp)),
        "middle": (n_mid, 0, 0, ops.min(m, ops.max(pp // 2 if ops is NUMPY else pp / 2, 1))),
        "last": (n_last, single, 1, ops.min(m, 1 + (pp - 1) * single)),
    }


def assemble(v: dict, lay: dict, scenario: str, ctime, peak: float, bandwidth: float, ops: Ops = NUMPY,
             stages=None, layers=1, overlap: bool = True) -> dict[str, Any]:
    """Per-role figures of layouts ``lay`` (arrays or symbols: tp, pp, dp, ep, b, m, zero,
    recompute index) from part values ``v`` (``pre.compute``, ``layer.cf``, ...; see
    ``passes.parallel.device``). ``ctime(kind, nbytes, group, lay)`` prices a collective;
    ``stages``: layers of the (first, middle, last) stage (even split when None)."""
    pp = lay["pp"]
    if stages is None:
        stages = (layers / pp,) * 3
    roles = _roles(lay, ops, stages)
    send = ctime("send_recv", v["layer.boundary"], "pp", lay) * ops.where(ops.gt(pp, 1), 1, 0)
    if scenario == "train":
        return _train(v, lay, roles, send, ctime, peak, bandwidth, ops, overlap, layers)
    return _serve(v, lay, roles, send, peak, ops, layers)


def _part_sum(v, key, n, pre, post):
    return pre * v[f"pre.{key}"] + n * v[f"layer.{key}"] + post * v[f"post.{key}"]


def _train(v, lay, roles, send, ctime, peak, bandwidth, ops, overlap, layers=1):
    rc = lay["recompute"]
    full = ops.where(ops.gt(rc, 1), 1, 0)
    sel = ops.where(ops.gt(rc, 0), 1, 0) - full
    zero, dp = lay["zero"], lay["dp"]
    z1, z2, z3 = (ops.where(ops.gt(zero, k), 1, 0) for k in (0, 1, 2))
    out: dict[str, Any] = {}
    per_mb, tails = {}, {}
    w, g, k = MIXED_ADAM["weights"], MIXED_ADAM["gradients"], MIXED_ADAM["optimizer"]
    for role, (n, pre, post, flight) in roles.items():
        fwd = _part_sum(v, "compute", n, pre, post)
        bwd = 2 * fwd
        again = full * n * v["layer.compute"] + sel * n * v["layer.attention"]
        tp_comm = _part_sum(v, "cf", n, pre, post) + _part_sum(v, "cb", n, pre, post) + full * n * v["layer.cf"]
        ep_comm = n * (v["layer.ef"] + v["layer.eb"]) + full * n * v["layer.ef"]
        psi = _part_sum(v, "params", n, pre, post) - pre * post * v["post.tied"]
        ag, rs = ctime("all_gather", w * psi, "dp", lay), ctime("reduce_scatter", g * psi, "dp", lay)
        if overlap:
            zmb = z3 * (_pos(ops, ag - fwd) + _pos(ops, ag + rs - bwd)) + (z2 - z3) * _pos(ops, rs - bwd)
        else:
            zmb = z3 * (2 * ag + rs) + (z2 - z3) * rs
        step_dp = ((1 - z1) * ctime("all_reduce", g * psi, "dp", lay) + (z1 - z2) * (rs + ag) + (z2 - z3) * ag)
        exposed = _pos(ops, step_dp - bwd) if overlap else step_dp
        opt_params = psi / ops.where(ops.gt(zero, 0), dp, 1)
        optimizer = opt_params * (ADAM_STEP_BYTES["read"] + ADAM_STEP_BYTES["write"]) / bandwidth
        per_mb[role] = fwd + bwd + again + tp_comm + ep_comm + 2 * send + zmb
        tails[role] = exposed + optimizer
        layer_saved = (1 - full) * (v["layer.saved"] - sel * v["layer.scores"]) + full * v["layer.boundary"]
        acts = flight * (pre * v["pre.saved"] + n * layer_saved) + post * v["post.saved"] + full * v["layer.saved"]
        mem = {"weights": w * psi / ops.where(ops.gt(zero, 2), dp, 1), "gradients": g * psi / ops.where(ops.gt(zero, 1), dp, 1),
               "optimizer": k * psi / ops.where(ops.gt(zero, 0), dp, 1), "activations": acts, "kv_cache": 0 * psi}
        mem["total"] = mem["weights"] + mem["gradients"] + mem["optimizer"] + mem["activations"]
        if "joint.base_saved" in v:
            psi_all = _part_sum(v, "params", layers, 1, 1) - v["post.tied"]
            mem = _joint(v, lay, ops, psi / psi_all, acts / v["joint.base_saved"])
            if "joint_full.base_saved" in v:  # full recompute: the joint graph captured with it
                redone = _joint(v, lay, ops, psi / psi_all, acts / v["joint_full.base_saved"], "joint_full")
                mem = {key: full * redone[key] + (1 - full) * mem[key] for key in mem}
        out[role] = {"memory": mem, "params": psi, "compute": fwd + bwd + again, "forward": fwd, "backward": bwd + again,
                     "per_micro_batch": per_mb[role],
                     "tp_comm": tp_comm, "ep_comm": ep_comm, "pp_comm": 2 * send, "dp_comm": step_dp + zmb * lay["m"],
                     "dp_exposed": exposed + zmb * lay["m"], "optimizer": optimizer,
                     "flops": 3 * _part_sum(v, "flops", n, pre, post) + full * n * v["layer.flops"],
                     "bytes": 3 * _part_sum(v, "bytes", n, pre, post)}
    slowest = ops.max(ops.max(per_mb["first"], per_mb["last"]), ops.where(ops.gt(lay["pp"], 2), per_mb["middle"], 0))
    slots = lay["m"] + lay["pp"] - 1
    step = slots * slowest + ops.max(tails["first"], tails["last"])
    devices = lay["tp"] * lay["pp"] * dp
    model_flops = 3 * v["full_flops"] * lay["m"] * dp
    out["step"] = {"time": step, "bubble": (lay["pp"] - 1) * slowest, "bubble_fraction": (lay["pp"] - 1) / slots,
                   "tokens_per_s": dp * lay["m"] * v["tokens"] / step, "mfu": model_flops / (step * devices * peak),
                   "tflops_per_device": model_flops / (step * devices) / 1e12, "slowest_micro_batch": slowest,
                   "memory": ops.max(out["first"]["memory"]["total"], out["last"]["memory"]["total"])}
    return out


def _joint(v, lay, ops, share, act_share, prefix: str = "joint") -> dict:
    """A role's training memory from the sharded joint graph's candidate peaks (passes.parallel.
    joint_memory): weights, gradients and optimizer states divided by ``dp`` as ZeRO's stage says,
    the largest candidate taken. Exact for ``pp = 1`` without recompute; otherwise an approximation:
    the state scaled by the stage's share of the parameters (``share``), the activations by the
    forward saved-tensor estimate of the stage, its micro-batches in flight and its recompute
    policy over that of the whole model (``act_share``)."""
    zero, dp = lay["zero"], lay["dp"]
    div = {"weights": ops.where(ops.gt(zero, 2), dp, 1), "gradients": ops.where(ops.gt(zero, 1), dp, 1),
           "optimizer": ops.where(ops.gt(zero, 0), dp, 1)}
    totals = {}
    for m in (0, 1):
        best = None
        i = 0
        while f"{prefix}.{m}.{i}.rest" in v:
            c = sum(share * v[f"{prefix}.{m}.{i}.{k}"] / div[k] for k in div) + act_share * v[f"{prefix}.{m}.{i}.rest"]
            best = c if best is None else ops.max(best, c)
            i += 1
        totals[m] = best
    total = ops.where(ops.gt(lay["m"], 1), totals[1], totals[0])
    mem = {"weights": share * v[f"{prefix}.totals.weights"] / div["weights"],
           "gradients": share * v[f"{prefix}.totals.gradients"] / div["gradients"],
           "optimizer": share * v[f"{prefix}.totals.optimizer"] / div["optimizer"], "kv_cache": 0 * share}
    mem["activations"] = total - mem["weights"] - mem["gradients"] - mem["optimizer"]
    mem["total"] = total
    return mem


def _serve(v, lay, roles, send, peak, ops, layers):
    out: dict[str, Any] = {}
    times = {}
    for role, (n, pre, post, _flight) in roles.items():
        compute = _part_sum(v, "compute", n, pre, post)
        comm = _part_sum(v, "cf", n, pre, post) + n * v["layer.ef"]
        times[role] = compute + comm
        kv = n * v["layer.kv"] * lay["pp"]
        weights = _part_sum(v, "weights", n, pre, post) - pre * post * v["post.tied_bytes"]
        mem = {"weights": weights, "gradients": 0 * weights, "optimizer": 0 * weights, "kv_cache": kv,
               "activations": v["transient"]}
        mem["total"] = weights + kv + v["transient"]
        out[role] = {"memory": mem, "compute": compute, "tp_comm": _part_sum(v, "cf", n, pre, post),
                     "ep_comm": n * v["layer.ef"], "pp_comm": send, "dp_comm": 0 * compute, "per_micro_batch": times[role],
                     "flops": _part_sum(v, "flops", n, pre, post), "bytes": _part_sum(v, "bytes", n, pre, post)}
    slowest = ops.max(ops.max(times["first"], times["last"]), ops.where(ops.gt(lay["pp"], 2), times["middle"], 0))
    whole = (v["pre.compute"] + v["pre.cf"] + layers * (v["layer.compute"] + v["layer.cf"] + v["layer.ef"])
             + v["post.compute"] + v["post.cf"])
    latency = whole + (lay["pp"] - 1) * send
    devices = lay["tp"] * lay["pp"] * lay["dp"]
    tokens_per_s = lay["dp"] * v["tokens"] / ops.max(slowest, send)
    out["step"] = {"time": latency, "latency": latency, "bubble": 0 * latency, "bubble_fraction": 0 * latency,
                   "tokens_per_s": tokens_per_s, "slowest_micro_batch": slowest,
                   "mfu": v["full_flops"] * lay["dp"] / (ops.max(slowest, send) * devices * peak),
                   "tflops_per_device": v["full_flops"] * lay["dp"] / ops.max(slowest, send) / devices / 1e12,
                   "memory": ops.max(out["first"]["memory"]["total"], out["last"]["memory"]["total"])}
    return out


__all__ = ["NUMPY", "RECOMPUTE", "ROLES", "SYMPY", "Ops", "assemble"]
