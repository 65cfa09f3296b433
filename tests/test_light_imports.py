"""The ONNX path stays light (issue 17): ``irtools analyze x.onnx``, ``irtools annotate``,
``irtools.analyze("x.onnx")``, ``irtools targets``, ``irtools --help`` (and ``irtools ops``
where it exists) never import torch, transformers or matplotlib -- and reading an ONNX file
does not import the ``onnx`` package either (its init costs a second: capture/onnx/proto.py).

Each case runs in a fresh interpreter whose ``atexit`` hook writes ``sorted(sys.modules)``
to a file, so the check sees everything imported up to the very end of the command."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "matplotlib")


def _zoo_model(name: str = "light_squeezenet.onnx") -> str:
    import importlib.util

    spec = importlib.util.find_spec("onnx")  # the package's folder, without importing it here
    return str(pathlib.Path(spec.submodule_search_locations[0]) / "backend" / "test" / "data" / "light" / name)


HOOK = """
import atexit, json, sys
def _dump(path=sys.argv.pop(1)):
    with open(path, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(_dump)
"""


def _modules_after(code: str, tmp_path: pathlib.Path, *args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", HOOK + code, str(out), *args], capture_output=True, text=True,
                          timeout=300, cwd=pathlib.Path(__file__).resolve().parents[1])
    assert out.exists(), proc.stderr[-2000:]
    return {m.split(".")[0] for m in json.loads(out.read_text())}, proc


CLI = "import sys\nfrom irtools.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _cli(tmp_path, *argv):
    mods, proc = _modules_after(CLI, tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return mods, proc.stdout


def test_analyze_onnx_cli_imports_no_torch_nor_onnx(tmp_path):
    mods, out = _cli(tmp_path, "analyze", _zoo_model())
    assert "total FLOPs:   706626160" in out  # squeezenet: a real analysis ran
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))
    assert "onnx" not in mods and "ml_dtypes" not in mods  # the protobuf classes only
    assert "sympy" in mods  # the check itself sees imports (this one is expected)


def test_analyze_onnx_json_and_api_import_no_torch(tmp_path):
    mods, out = _cli(tmp_path, "analyze", _zoo_model("light_resnet50.onnx"), "--format", "json")
    assert json.loads(out)["totals"]["flops"]["value"] > 3e9
    assert not mods & set(HEAVY)
    code = "import sys, irtools\nr = irtools.analyze(sys.argv[1])\nprint(r.totals['flops'])\n"
    mods, proc = _modules_after(code, tmp_path, _zoo_model())
    assert proc.stdout.strip() == "706626160", proc.stderr[-2000:]
    assert not mods & set(HEAVY)


def test_annotate_imports_no_torch(tmp_path):
    out_file = tmp_path / "out.onnx"
    mods, out = _cli(tmp_path, "annotate", _zoo_model(), "-o", str(out_file))
    assert "flops=706626160" in out and out_file.stat().st_size > 0
    assert not mods & set(HEAVY)
    assert "onnx" not in mods


@pytest.mark.parametrize("argv", [["targets"], ["--help"], ["ops"]], ids=["targets", "help", "ops"])
def test_listing_commands_import_no_torch(tmp_path, argv):
    from irtools.cli import COMMANDS

    if argv[0] != "--help" and argv[0] not in COMMANDS:
        pytest.skip(f"no `irtools {argv[0]}` command in this tree")
    mods, out = _cli(tmp_path, *argv)
    assert out.strip()
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_check_sees_torch_when_it_is_imported(tmp_path):
    """The hook is not blind: a command that does need torch shows it."""
    mods, _ = _modules_after("import torch\n", tmp_path)
    assert "torch" in mods
