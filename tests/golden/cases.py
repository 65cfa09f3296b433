"""Golden report cases: CLI argument lists whose JSON reports were saved before the
architecture move (``tests/golden/*.json``); ``tests/test_golden.py`` re-runs them.

Regenerate (only when a number changes on purpose, named in ``CHANGED``):
``python -m tests.golden.cases``.
"""

from __future__ import annotations

import json
import pathlib

HERE = pathlib.Path(__file__).parent
SMALL = ["--dim", "seq_len=64"]

CASES: dict[str, list[str]] = {
    "attn-prefill": ["analyze", "--format", "json", *SMALL],
    "attn-decode": ["analyze", "--scenario", "decode", "--format", "json", "--dim", "cache_len=100"],
    "attn-symbolic": ["analyze", "--symbolic-config", "--format", "json", *SMALL],
    "attn-flash-h100": ["analyze", "--target", "h100-sxm", "--mode", "flash", "--format", "json", *SMALL],
    "attn-decode-fused-a100": ["analyze", "--scenario", "decode", "--target", "a100-sxm-80gb", "--mode", "fused",
                               "--format", "json"],
    # --all-logits: the LM head on every position, as when these were saved (issue 12 made "last" the default)
    "gpt2-collapse": ["analyze", "gpt2", "--collapse-layers", "--all-logits", "--format", "json", *SMALL],
    "gpt2-collapse-flash": ["analyze", "gpt2", "--collapse-layers", "--all-logits", "--target", "h100-sxm", "--mode",
                            "flash", "--format", "json", *SMALL],
    "onnx-squeezenet": ["analyze", "@zoo/light_squeezenet.onnx", "--format", "json"],
    "onnx-squeezenet-eager": ["analyze", "@zoo/light_squeezenet.onnx", "--target", "a100-sxm-80gb", "--mode", "eager",
                              "--format", "json"],
}


def resolve(argv: list[str]) -> list[str]:
    """Replace ``@zoo/NAME`` with the onnx package's bundled light model zoo file."""
    import onnx

    zoo = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return [str(zoo / a.removeprefix("@zoo/")) if a.startswith("@zoo/") else a for a in argv]


def run_case(name: str, out_dir: pathlib.Path) -> dict:
    """Run one case through the CLI in-process and return its JSON report."""
    from irtools.cli import main

    out = out_dir / f"{name}.json"
    rc = main([*resolve(CASES[name]), "-o", str(out)])
    assert rc in (0, None), f"{name}: exit {rc}"
    return json.loads(out.read_text().replace(str(HERE.parent.parent) + "/", "<repo>/"))


if __name__ == "__main__":
    import tempfile

    tmp = pathlib.Path(tempfile.mkdtemp())
    for case in CASES:
        report = run_case(case, tmp)
        (HERE / f"{case}.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        print("wrote", case)
