"""Which ATen ops the cost rules cover: the core ATen opset of the installed torch against the registry.

``aten_coverage()`` imports torch when called (never at import, so the ONNX path stays free of it).
"""

from __future__ import annotations

from pathlib import Path

from passes.costs import REGISTRY, lookup

CORE_ATEN_FILE = Path(__file__).with_name("core_aten.txt")


def core_aten_packets() -> list[str]:
    """Names (``"addmm"``) of every ``torch.ops.aten`` packet with an overload tagged ``torch.Tag.core``."""
    import torch

    every = {op.split("::", 1)[1].split(".", 1)[0] for op in torch._C._dispatch_get_all_op_names() if op.startswith("aten::")}
    names = []
    for name in sorted(every | set(dir(torch.ops.aten))):  # dir() lists only the packets loaded so far
        try:
            packet = getattr(torch.ops.aten, name)
        except (AttributeError, RuntimeError):
            continue
        if not isinstance(packet, torch._ops.OpOverloadPacket):
            continue
        if any(torch.Tag.core in getattr(packet, overload).tags for overload in packet.overloads()):
            names.append(name)
    return sorted(names)


def stored_core_aten_packets() -> list[str]:
    """The core ATen packets of torch 2.13 as stored beside this file (no torch import)."""
    lines = CORE_ATEN_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def aten_coverage(live: bool = True) -> tuple[list[str], list[str]]:
    """(core ATen packets, those without a cost rule), as ``aten.<name>`` sorted; ``live``
    enumerates the installed torch, else the stored list is used (no torch import)."""
    names = core_aten_packets() if live else stored_core_aten_packets()
    core = [f"aten.{name}" for name in names]
    return core, [op for op in core if lookup(op) is None]


def rule_table() -> list[dict[str, str]]:
    """Every op with a cost rule: its kind and the convention its rule implements (the rule's
    first docstring line, else the rule's name)."""
    rows = []
    for op in REGISTRY.ops():
        entry = REGISTRY.lookup(op)
        doc = (entry.fn.__doc__ or "").strip().splitlines()
        rows.append({"op": op, "kind": entry.kind, "convention": doc[0] if doc else entry.fn.__name__})
    return rows


__all__ = ["aten_coverage", "core_aten_packets", "rule_table", "stored_core_aten_packets"]
