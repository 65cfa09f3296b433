"""Collective communication costs on a target's interconnect, in NCCL's terms.

A collective of ``S`` bytes (NCCL's size: the whole tensor — the gathered output of an
all-gather, the reduced input of an all-reduce or reduce-scatter) over ``n`` ranks takes
``t``; its algorithm bandwidth is ``algbw = S / t`` and its bus bandwidth ``busbw = algbw ·
factor(n)``, the factor being the share of ``S`` each rank sends on a ring (NCCL's
``PERFORMANCE.md`` in nccl-tests): all-reduce ``2(n−1)/n``, all-gather, reduce-scatter and
all-to-all ``(n−1)/n``, send/recv and broadcast 1. A link that sustains ``B`` bytes/s per
direction therefore runs a ring collective in

    t_ring = S · factor(n) / B + steps(n) · α

with ``steps`` the ring's sequential hops (all-reduce ``2(n−1)``, all-gather / reduce-scatter
/ all-to-all ``n−1``, send/recv 1) and ``α`` the link's per-hop latency. A tree all-reduce
(NCCL's double binary tree) moves ``2·S/B`` with ``2·⌈log2 n⌉`` hops of latency.

Topology: ranks are numbered with the innermost parallel dim fastest (tensor parallel, then
data / expert, then pipeline: Megatron-LM's order), so a group of ``n`` ranks ``stride`` apart
holds ``k = min(n, max(1, gpus_per_node / stride))`` ranks per node. A group inside one node
uses the intra-node link (NVLink, Infinity Fabric, PCIe where there is none); one spanning
``n/k`` nodes runs hierarchically, as NCCL does: the intra-node part over ``k`` ranks and the
inter-node part (InfiniBand / RoCE, one NIC per device) over the nodes on ``S/k`` bytes per
device. Sizes, degrees and strides may be sympy symbols: every time is an expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from irtools.hardware import Target, TargetError, load_target

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv", "broadcast")
ALGORITHMS = ("ring", "tree", "auto")


@dataclass(frozen=True)
class Collective:
    """One collective one device takes part in (a typed record of the per-device report)."""

    kind: str
    group: str  # tp | dp | pp | ep
    nbytes: sympy.Expr  # NCCL's size S (the whole tensor)
    phase: str  # forward | backward | optimizer
    id: str = ""
    module: str = ""
    why: str = ""
    count: sympy.Expr = sympy.Integer(1)  # times per micro-batch (or per step, for optimizer-phase ones)


@dataclass(frozen=True)
class Link:
    """One interconnect: bytes/s per device and direction, and seconds per hop."""

    name: str
    bandwidth: float
    latency: float


@dataclass(frozen=True)
class Topology:
    """Devices per node and the links within and between nodes."""

    gpus_per_node: int
    intra: Link
    inter: Link

    @classmethod
    def of(cls, target: Target | str) -> Topology:
        """The topology a target file describes (its interconnect figures)."""
        t = load_target(target)
        intra_bw = t.intranode_bandwidth or t.pcie_bandwidth
        if not (t.gpus_per_node and intra_bw and t.internode_bandwidth):
            raise TargetError(f"target {t.name!r} has no interconnect figures (gpus_per_node, intranode_bandwidth, "
                              "internode_bandwidth): add them to its TOML file")
        intra = Link("intranode", intra_bw, t.intranode_latency or 0.0)
        inter = Link("internode", t.internode_bandwidth, t.internode_latency or 0.0)
        return cls(int(t.gpus_per_node), intra, inter)


def _min(a, b) -> sympy.Expr:
    """Min without sympy's (slow, here pointless) search for which argument is smaller."""
    if a.is_number and b.is_number:
        return sympy.Min(a, b)
    return sympy.Min(a, b, evaluate=False)


def _max(a, b) -> sympy.Expr:
    if a.is_number and b.is_number:
        return sympy.Max(a, b)
    return sympy.Max(a, b, evaluate=False)


def bus_factor(kind: str, n) -> sympy.Expr:
    """NCCL's bus-bandwidth factor: the share of ``S`` each rank sends on a ring."""
    n = sympy.sympify(n)
    if kind == "all_reduce":
        return 2 * (n - 1) / n
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if kind in ("send_recv", "broadcast"):
        return sympy.Integer(1)
    raise ValueError(f"unknown collective {kind!r} (one of {', '.join(KINDS)})")


def ring_steps(kind: str, n) -> sympy.Expr:
    n = sympy.sympify(n)
    if kind == "all_reduce":
        return 2 * (n - 1)
    if kind in ("all_gather", "reduce_scatter", "all_to_all", "broadcast"):
        return n - 1
    return sympy.Integer(1)


def wire_bytes(kind: str, nbytes, n) -> sympy.Expr:
    """Bytes each rank sends for one collective on a ring: ``S · factor(n)``."""
    return sympy.sympify(nbytes) * bus_factor(kind, n)


def algbw(nbytes, seconds) -> sympy.Expr:
    return sympy.sympify(nbytes) / seconds


def busbw(kind: str, nbytes, n, seconds) -> sympy.Expr:
    return algbw(nbytes, seconds) * bus_factor(kind, n)


def ring_time(kind: str, nbytes, n, link: Link) -> sympy.Expr:
    """One flat ring over ``n`` ranks on ``link``."""
    return wire_bytes(kind, nbytes, n) / link.bandwidth + ring_steps(kind, n) * link.latency


def tree_time(nbytes, n, link: Link) -> sympy.Expr:
    """A (double binary) tree all-reduce: reduce up then broadcast down, pipelined."""
    n = sympy.sympify(n)
    return 2 * sympy.sympify(nbytes) / link.bandwidth + 2 * sympy.ceiling(sympy.log(n, 2)) * link.latency


def _hierarchical(kind: str, nbytes, n, k, topo: Topology, algorithm: str) -> sympy.Expr:
    """A group of ``n`` ranks, ``k`` per node: intra-node part, then inter-node on ``S/k``."""
    s = sympy.sympify(nbytes)
    nodes = n / k
    intra, inter = topo.intra, topo.inter
    if kind == "all_reduce":
        inner = 2 * ring_time("reduce_scatter", s, k, intra)
        outer = ring_time("all_reduce", s / k, nodes, inter)
        if algorithm in ("tree", "auto"):
            tree = tree_time(s / k, nodes, inter)
            outer = tree if algorithm == "tree" else _min(outer, tree)
        return inner + outer
    if kind in ("all_gather", "reduce_scatter"):
        return ring_time(kind, s, k, intra) + ring_time(kind, s / k, nodes, inter)
    if kind == "all_to_all":  # the off-node share crosses the NICs, the rest NVLink, at once
        off = s * (n - k) / n / inter.bandwidth + (nodes - 1) * k * inter.latency
        on = s * (k - 1) / n / intra.bandwidth + (k - 1) * intra.latency
        return _max(off, on)
    return ring_time(kind, s, n, inter)


def collective_time(kind: str, nbytes, n, topo: Topology, stride=1, algorithm: str = "auto") -> sympy.Expr:
    """Seconds one collective of ``nbytes`` (NCCL's size) takes over ``n`` ranks ``stride`` apart.

    ``algorithm``: ``ring``, ``tree`` (all-reduce only; others use the ring, as NCCL does) or
    ``auto`` (the faster of the two, as NCCL's tuner picks). Send/recv crosses nodes when
    ``stride`` reaches ``gpus_per_node``."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r} (one of {', '.join(ALGORITHMS)})")
    n, stride = sympy.sympify(n), sympy.sympify(stride)
    gpn = sympy.Integer(topo.gpus_per_node)
    if kind == "send_recv":
        return sympy.Piecewise((ring_time(kind, nbytes, 2, topo.intra), stride < gpn),
                               (ring_time(kind, nbytes, 2, topo.inter), True))

    def flat(link: Link) -> sympy.Expr:
        ring = ring_time(kind, nbytes, n, link)
        if kind != "all_reduce" or algorithm == "ring":
            return ring
        tree = tree_time(nbytes, n, link)
        return tree if algorithm == "tree" else _min(ring, tree)

    if n.is_number and n <= 1:
        return sympy.Integer(0)
    inside = flat(topo.intra)
    k = _min(n, _max(sympy.Integer(1), gpn / stride))
    spanning = _hierarchical(kind, nbytes, n, k, topo, algorithm)
    fits = n * stride <= gpn
    if fits is sympy.true:
        return inside
    if fits is sympy.false:
        return spanning
    return sympy.Piecewise((sympy.Integer(0), n <= 1), (inside, fits), (spanning, True))


def total_time(collectives, degrees: dict[str, object], strides: dict[str, object], topo: Topology,
               algorithm: str = "auto") -> sympy.Expr:
    """The summed time of ``collectives`` (each ``count`` times) over their groups."""
    return sympy.Add(*(c.count * collective_time(c.kind, c.nbytes, degrees[c.group], topo, strides.get(c.group, 1),
                                                 algorithm) for c in collectives))


__all__ = ["ALGORITHMS", "KINDS", "Collective", "Link", "Topology", "algbw", "bus_factor", "busbw",
           "collective_time", "ring_steps", "ring_time", "total_time", "tree_time", "wire_bytes"]
