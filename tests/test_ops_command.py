"""``irtools ops``: every supported op with its kind and convention, and coverage of the core
ATen set and the ONNX default domain — computed without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

from irtools.cli import main
from passes.costs import registered_ops
from passes.costs.coverage import core_aten_packets, stored_core_aten_packets
from passes.costs.onnx_coverage import default_domain_ops


def test_stored_core_aten_list_is_the_installed_torchs():
    assert stored_core_aten_packets() == core_aten_packets()


def test_ops_json_lists_rules_and_coverage(capsys):
    assert main(["ops", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["op"] for r in data["ops"]] == registered_ops()
    assert all(r["kind"] and r["convention"] for r in data["ops"])
    aten, onnx_cov = data["coverage"]["core_aten"], data["coverage"]["onnx_default_domain"]
    assert aten["total"] == len(core_aten_packets()) and onnx_cov["total"] == len(default_domain_ops())
    assert aten["covered"] + len(aten["missing"]) == aten["total"]
    assert aten["missing"] == [] and onnx_cov["missing"] == []


def test_ops_table_runs_without_torch():
    code = ("import sys, atexit; atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'LIGHT'));"
            "from irtools.cli import main; main(['ops'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("LIGHT")
    assert "core_aten: " in done.stdout and "onnx_default_domain: " in done.stdout
