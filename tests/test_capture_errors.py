"""Capture errors a new user meets: a checkout in a folder named ``irtools`` (git clone's
default) still names the model's source line; a size-1 example dim says what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from irtools import analyze_module
from irtools.ir import CaptureError
from tests.bad_models import Tiny

ROOT = Path(__file__).resolve().parent.parent


def test_error_line_from_a_checkout_named_irtools(tmp_path):
    copy = tmp_path / "irtools"
    for part in ("irtools", "passes", "models", "tests"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__", "golden"))
    env = {**os.environ, "PYTHONPATH": str(copy)}
    cmd = [sys.executable, "-m", "irtools.cli", "analyze", "tests.bad_models:DataDependent"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=copy, env=env, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"torch.export failed at {copy / 'tests' / 'bad_models.py'}:" in done.stderr
    assert "if x.sum() > 0:" in done.stderr


@pytest.mark.parametrize("size", [1])
def test_size_one_example_dim_is_named(size):
    with pytest.raises(CaptureError, match=r"dimension 'batch_size' .* example size 1: .* size >= 2"):
        analyze_module(Tiny(), (torch.randn(size, 5, 16),), dims={"x": {0: "batch_size", 1: "seq_len"}})
