"""Which ops of the ONNX default domain have a cost rule (for ``irtools ops``)."""

from __future__ import annotations

from passes.costs import lookup


def default_domain_ops() -> list[str]:
    """Non-deprecated ops of the ONNX default domain at the latest opset the installed onnx ships."""
    from onnx import defs  # imported here: the cost registry itself does not need onnx

    latest: dict[str, object] = {}
    for schema in defs.get_all_schemas_with_history():
        if schema.domain not in ("", "ai.onnx"):
            continue
        seen = latest.get(schema.name)
        if seen is None or schema.since_version > seen.since_version:
            latest[schema.name] = schema
    return sorted(name for name, schema in latest.items() if not schema.deprecated)


def onnx_coverage() -> tuple[list[str], list[str]]:
    """(default-domain ops, those without a cost rule), both sorted."""
    ops = default_domain_ops()
    return ops, [op for op in ops if lookup(op) is None]
