"""Which ATen ops the cost rules cover: the core ATen opset of the installed torch against the registry.

``aten_coverage()`` imports torch when called (never at import, so the ONNX path stays free of it).
"""

from __future__ import annotations

from passes.costs import lookup


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


def aten_coverage() -> tuple[list[str], list[str]]:
    """(core ATen packets, those without a cost rule), as ``aten.<name>`` sorted."""
    core = [f"aten.{name}" for name in core_aten_packets()]
    return core, [op for op in core if lookup(op) is None]


__all__ = ["aten_coverage", "core_aten_packets"]
