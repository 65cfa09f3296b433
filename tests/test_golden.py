"""Golden reports: the JSON of each case in ``tests/golden/cases.py`` equals the report saved
before the architecture move (``tests/golden/<case>.json``), except where a change of this
wave is deliberate; each such change is named in ``CHANGED`` with the keys it touches."""

from __future__ import annotations

import json
import re

import pytest

from tests.golden.cases import CASES, HERE, run_case

_KV = "issue 12: a report of a model with a KV cache states the cache model"
_STATIC = "issue 12: fused/flash modes write new tokens into a static cache in place (no cache copy)"
_THREE = "issue 12: collapse traces three blocks (first, middle, last) so kernels repeat exactly"
_REPEAT = "issue 12: collapsed kernels carry their launch counts (the old report dropped 10 of 12 blocks)"
_KERNELS = (".kernel_totals", ".kernels", ".time_s", ".time_by_module", ".time_by_line")

#: New keys in every report (issue 13): ``matmul_flops`` beside ``flops`` in totals, composed totals
#: and nodes, and ``complete`` (false when an op has no rule: the totals are lower bounds).
EVERY_CASE = (r"\.(totals|composed)\.matmul_flops: only in new", r"\.nodes\[\d+\]\.matmul_flops: only in new",
              r"\.complete: only in new",
              r"\.memory: only in new",  # issue 14: the memory section (peak, breakdown, fit)
              r"\.logits: only in new",  # issue 12: which positions the LM head runs on
              r"\.target\.(sources\.)?\w+: only in new")  # issue 16: interconnect figures of the target

#: Deliberate changes since the golden files were saved: case -> {path prefix of what changed: reason}.
CHANGED: dict[str, dict[str, str]] = {
    "attn-decode": {".kv_cache": _KV},
    "attn-decode-fused-a100": {".kv_cache": _KV, **{k: _STATIC for k in (
        *_KERNELS, ".lines.kernels", ".modules[0].bytes_", ".nodes[13].bytes_", ".nodes[14].bytes_", ".totals.bytes_")}},
    "gpt2-collapse": {p: _THREE for p in (".collapsed.traced_layers", ".nodes", ".lines.kernels[0].nodes",
                                          ".lines.kernels[0].analysis", ".modules[0].children[0].children[3].paths")},
    "gpt2-collapse-flash": {**{p: _THREE for p in (".collapsed.traced_layers", ".nodes", ".lines.kernels[0].nodes",
                                                   ".lines.kernels[0].analysis",
                                                   ".modules[0].children[0].children[3].paths", ".edges")},
                            **{k: _REPEAT for k in _KERNELS}},
}


def _diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in {'new' if k in b else 'golden'}" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += _diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float | int):
        return [] if a == pytest.approx(b, rel=1e-9, abs=1e-15) else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_report_equals_golden(case, tmp_path):
    golden = json.loads((HERE / f"{case}.json").read_text())
    new = run_case(case, tmp_path)
    changed = CHANGED.get(case, {})
    diffs = [d for d in _diff(golden, new)
             if not any(d.startswith(p) for p in changed) and not any(re.match(p, d) for p in EVERY_CASE)]
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:8])
