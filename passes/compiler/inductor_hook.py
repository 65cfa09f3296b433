"""Record the kernels Inductor actually builds: an opt-in hook on its scheduler, post-fusion.

    with record_inductor_kernels() as rec:
        torch.compile(model, backend="inductor")(x)
    for k in rec.graphs[0].kernels:
        print(k.name, k.kind, k.op, k.bytes_read, k.bytes_written, k.origins)

Private API (torch 2.13): ``torch._inductor.config._post_fusion_custom_pass``, a callable
``list[BaseSchedulerNode] -> list[BaseSchedulerNode]`` the scheduler calls right after
``fuse_nodes``. Per scheduler node (one launched kernel) the hook keeps the FX nodes of the
post-grad aten graph it covers (``node.node.get_origins()``, with their ``from_node``
provenance), its kind and Inductor's own byte count (``get_read_write_buffer_accesses``:
each buffer's size, or the accessed elements when fewer, at the example shape). Inductor's
FX-graph and AOT-autograd caches are switched off inside the block so every graph is
scheduled; a graph dynamo compiled before the block is not recompiled, hence not recorded.
Recording never raises inside the user's compile: failures land in ``RecordedGraph.error``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

GEMM_OPS = ("mm", "addmm", "bmm", "baddbmm", "convolution", "_int_mm", "linear")
ATTENTION_OPS = ("scaled_dot_product", "flash_attention", "efficient_attention")


@dataclass(frozen=True)
class Origin:
    """One post-grad FX node a kernel covers."""

    name: str
    target: str  # the post-grad op (``aten.addmm.default``)
    original_aten: str  # the op before Inductor's decompositions
    roots: tuple[str, ...]  # ``from_node`` leaves: names in the graph dynamo handed over
    is_view: bool
    primary: bool = False  # the FX node that produced one of the kernel's buffers (not inlined)


@dataclass
class InductorKernel:
    """One scheduler node after fusion: what Inductor launches (or folds away, ``nop``)."""

    name: str  # Inductor's name (``op0``, ``op1_op2``)
    kind: str  # gemm | attention | extern | template | reduction | pointwise | foreach | nop
    op: str  # extern/template op or the anchor origin's target
    origins: tuple[Origin, ...]
    reads: dict[str, int] = field(default_factory=dict)  # buffer -> bytes
    writes: dict[str, int] = field(default_factory=dict)
    device: str = "cpu"
    group: tuple[str, ...] = ()  # names of the pre-fusion scheduler nodes

    @property
    def bytes_read(self) -> int:
        return sum(self.reads.values())

    @property
    def bytes_written(self) -> int:
        return sum(self.writes.values())

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def compute_origins(self) -> tuple[Origin, ...]:
        return tuple(o for o in self.origins if not o.is_view)


@dataclass
class RecordedGraph:
    """The kernels of one Inductor-compiled graph (graph breaks and backward give several)."""

    index: int
    kernels: list[InductorKernel] = field(default_factory=list)
    graph_module: torch.fx.GraphModule | None = None  # the post-grad graph Inductor scheduled
    error: str | None = None

    @property
    def launched(self) -> list[InductorKernel]:
        """Kernels that run (``nop`` entries excluded)."""
        return [k for k in self.kernels if k.kind != "nop"]

    def of_kind(self, *kinds: str) -> list[InductorKernel]:
        return [k for k in self.kernels if k.kind in kinds]

    @property
    def total_bytes(self) -> int:
        return sum(k.bytes for k in self.kernels)


@dataclass
class Recording:
    """What one ``record_inductor_kernels()`` block saw."""

    graphs: list[RecordedGraph] = field(default_factory=list)
    skipped: str | None = None  # why nothing could be hooked (torch lacks the API)


def hook_unavailable() -> str | None:
    """A one-line reason when the installed torch has no post-fusion pass, else None."""
    try:
        from torch._inductor import config, scheduler  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"torch._inductor unavailable: {type(exc).__name__}: {exc}"
    if not hasattr(config, "_post_fusion_custom_pass"):
        return f"torch {torch.__version__} has no torch._inductor.config._post_fusion_custom_pass"
    return None


_VIEW_OPS = {"view", "reshape", "permute", "transpose", "expand", "slice", "select", "split", "squeeze",
             "unsqueeze", "t", "alias", "as_strided", "unfold", "_unsafe_view", "getitem", "split_with_sizes"}


def _op_short(target: str) -> str:
    """``aten.addmm.default`` -> ``addmm``."""
    parts = str(target).split(".")
    if parts[0] == "aten" and len(parts) >= 2:
        return parts[1]
    return parts[-1] if parts[-1] not in ("default", "Tensor") else parts[-2]


def _roots(node: torch.fx.Node) -> tuple[str, ...]:
    """Names of the oldest ``from_node`` ancestors (nodes of the graph dynamo produced)."""
    out, stack = [], list(node.meta.get("from_node") or ())
    while stack:
        src = stack.pop()
        parents = getattr(src, "from_node", None) or ()
        if parents:
            stack.extend(parents)
        elif getattr(src, "name", None):
            out.append(src.name)
    return tuple(dict.fromkeys(out))


def _origin(node: torch.fx.Node, primary: bool) -> Origin:
    target = str(node.target) if node.op == "call_function" else f"{node.op}:{node.target}"
    target = target.removeprefix("torch.ops.")
    original = str(node.meta.get("original_aten") or target).removeprefix("torch.ops.")
    return Origin(node.name, target, original, _roots(node), _op_short(target) in _VIEW_OPS, primary)


def _origins(snode) -> tuple[Origin, ...]:
    found: dict[str, torch.fx.Node] = {}
    primary: set[str] = set()
    for sub in snode.get_nodes():
        ir_node = getattr(sub, "node", None)
        if ir_node is None:
            continue
        for o in ir_node.get_origins() or ():
            found.setdefault(o.name, o)
        own = getattr(ir_node, "origin_node", None)
        if own is not None:
            primary.add(own.name)
            found.setdefault(own.name, own)
    order = {}
    with contextlib.suppress(Exception):
        graph = next(iter(found.values())).graph
        order = {n.name: i for i, n in enumerate(graph.nodes)}
    return tuple(_origin(found[n], n in primary) for n in sorted(found, key=lambda n: order.get(n, 0)))


def _is_extern_op(target: str) -> bool:
    short = _op_short(target)
    return short in GEMM_OPS or any(a in short for a in ATTENTION_OPS)


def _kind(snode, origins: tuple[Origin, ...]) -> tuple[str, str]:
    from torch._inductor import ir, scheduler

    if isinstance(snode, scheduler.NopKernelSchedulerNode):
        return "nop", ""
    if snode.is_extern():
        node = snode.get_nodes()[0].node
        if isinstance(node, ir.MultiOutput):
            return "nop", "MultiOutput"
        op = getattr(node, "op_overload", None) or getattr(node, "python_kernel_name", None) or type(node).__name__
        short = _op_short(str(op).removeprefix("torch.ops.").removeprefix("extern_kernels."))
        if any(a in short for a in ATTENTION_OPS):
            return "attention", short
        return ("gemm" if short in GEMM_OPS else "extern"), short
    if snode.is_template():
        return "template", next((_op_short(o.target) for o in origins if _op_short(o.target) in GEMM_OPS), "template")
    if snode.is_foreach():
        return "foreach", ""
    own = [o for o in origins if not o.is_view and not _is_extern_op(o.original_aten)]
    anchor = next((o for o in reversed(own) if o.primary), own[-1] if own else (origins[-1] if origins else None))
    op = _op_short(anchor.target) if anchor else ""
    return ("reduction" if snode.is_reduction() else "pointwise"), op


def _bytes(snode, reads: bool) -> dict[str, int]:
    try:
        found = snode.get_read_write_buffer_accesses(include_reads=reads, include_writes=not reads)
        return {k: int(v) for k, v in found.items()}
    except Exception:  # noqa: BLE001 - bytes unknown for this node kind
        return {}


def _device(snode) -> str:
    with contextlib.suppress(Exception):
        dev = snode.get_device()
        return str(dev) if dev is not None else "cpu"
    return "cpu"


def record_nodes(nodes, index: int = 0) -> RecordedGraph:
    """A :class:`RecordedGraph` of the scheduler's post-fusion ``nodes``; never raises."""
    rec = RecordedGraph(index)
    try:
        from torch._inductor.virtualized import V

        with contextlib.suppress(Exception):
            rec.graph_module = V.graph.module
        for snode in nodes:
            origins = _origins(snode)
            kind, op = _kind(snode, origins)
            rec.kernels.append(InductorKernel(
                name=snode.get_name(), kind=kind, op=op, origins=origins,
                reads=_bytes(snode, True), writes=_bytes(snode, False), device=_device(snode),
                group=tuple(s.get_name() for s in snode.get_nodes()),
            ))
    except Exception as exc:  # noqa: BLE001 - recording never breaks compilation
        rec.error = f"{type(exc).__name__}: {exc}"
    return rec


@contextlib.contextmanager
def record_inductor_kernels():
    """Record every graph Inductor schedules inside the block (yields a :class:`Recording`).

    Chains a post-fusion pass already installed; where torch lacks the hook, ``skipped``
    says why and compilation proceeds unrecorded."""
    recording = Recording()
    reason = hook_unavailable()
    if reason:
        recording.skipped = reason
        yield recording
        return
    from torch._functorch import config as functorch_config
    from torch._inductor import config

    previous = config._post_fusion_custom_pass

    def post_fusion(nodes):
        recording.graphs.append(record_nodes(nodes, len(recording.graphs)))
        return previous(nodes) if previous is not None else nodes

    patches: dict[str, Any] = {"_post_fusion_custom_pass": post_fusion, "fx_graph_cache": False,
                               "fx_graph_remote_cache": False}
    with config.patch(patches), contextlib.ExitStack() as stack:
        if hasattr(functorch_config, "enable_autograd_cache"):
            stack.enter_context(functorch_config.patch(enable_autograd_cache=False))
        yield recording


__all__ = ["InductorKernel", "Origin", "RecordedGraph", "Recording", "hook_unavailable", "record_inductor_kernels",
           "record_nodes"]
