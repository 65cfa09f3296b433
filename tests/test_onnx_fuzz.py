"""Fuzzing the ONNX frontend: mutated bytes of real small models either capture or raise
CaptureError (one line) -- never another exception, never a hang. Bounded to a few seconds."""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import warnings

import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irtools.capture.onnx.frontend import capture_onnx
from irtools.cli import main
from irtools.ir import CaptureError
from models.gpt2_attention import GPT2Attention, GPT2Config
from passes.annotate_costs import annotate_costs
from tests.onnx_mutations import SEEDS, mutate, mutate_bytes

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light")
# The small zoo graphs (densenet121 / inception_v2 take ~0.3 s a capture: too slow to fuzz here).
LIGHT = ["light_bvlc_alexnet.onnx", "light_squeezenet.onnx", "light_vgg19.onnx", "light_zfnet512.onnx",
         "light_inception_v1.onnx"]
PER_EXAMPLE_S = 10  # a capture taking longer than this is a hang


def _attention_bytes() -> bytes:
    """A small GPT2Attention (legacy export: the Shape -> Gather -> Concat -> Reshape chains),
    weights stripped so that mutations land in the graph rather than in raw data."""
    torch.manual_seed(0)
    module = GPT2Attention(GPT2Config(n_embd=32, n_head=4, n_positions=16)).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(2, 3, 32),), buf, dynamo=False, input_names=["hidden_states"],
                          dynamic_axes={"hidden_states": {0: "batch", 1: "sequence_length"}})
    proto = onnx.load_from_string(buf.getvalue())
    for init in proto.graph.initializer:
        if len(init.raw_data) > 256:  # big float weights: shape only (small int constants stay)
            init.ClearField("raw_data")
    return proto.SerializeToString()


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    found = [open(os.path.join(LIGHT_DIR, name), "rb").read() for name in LIGHT if os.path.exists(os.path.join(LIGHT_DIR, name))]
    return found + [_attention_bytes()]


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so no handler in the frontend can swallow it."""


def _alarm(signum, frame):
    raise Hang(f"capture_onnx ran over {PER_EXAMPLE_S} s")


def _mutate(data: bytes, edits, cut) -> bytes:
    out = bytearray(data)
    for kind, pos, value in edits:
        if not out:
            break
        i = pos % len(out)
        if kind == "set":
            out[i] = value
        elif kind == "flip":
            out[i] ^= 1 << (value % 8)
        elif kind == "insert":
            out[i:i] = bytes([value])
        elif kind == "delete":
            del out[i]
        else:  # varint-ish: a large or negative-looking number where a small one was
            out[i:i + 1] = b"\xff" * (value % 9 + 1) + b"\x01"
    if cut is not None:
        del out[max(1, cut % (len(out) + 1)):]
    return bytes(out)


EDITS = st.lists(st.tuples(st.sampled_from(["set", "flip", "insert", "delete", "varint"]),
                           st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=6)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, 63), edits=EDITS, cut=st.one_of(st.none(), st.integers(0, 2**31)))
def test_mutated_models_capture_or_raise_capture_error(seeds, tmp_path_factory, which, edits, cut):
    data = _mutate(seeds[which % len(seeds)], edits, cut if which % 4 == 0 else None)
    path = tmp_path_factory.getbasetemp() / "fuzz.onnx"
    path.write_bytes(data)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PER_EXAMPLE_S)
    try:
        annotate_costs(capture_onnx(path))
    except CaptureError as exc:
        assert str(exc) and "\n" not in str(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_seeds_capture_cleanly(seeds):
    for data in seeds:
        ir = annotate_costs(capture_onnx(onnx.load_from_string(data)))
        assert not [n for n, a in ir.nodes() if a["unsupported"]]



# ---- structural mutations (issue 18): dropped / renamed inputs, cycles, huge and negative dims,
# unknown ops and domains, bad attributes, broken subgraphs, external-data locations, exploding
# constants, huge ranks, sympy-constant dim names, metadata naming modules --------------------

CRASH = re.compile(r"^irtools: error: [A-Z]\w*(Error|Exception|Exit|Interrupt)\b")  # an uncaught exception's type


def _finite_json(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite {c} in the report"))


@pytest.fixture(scope="module")
def structural_seeds(seeds) -> list[onnx.ModelProto]:
    return [f() for f in SEEDS.values()] + [onnx.load_from_string(seeds[-1])]


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, 63), seed=st.integers(0, 2**32), count=st.integers(1, 3), damage=st.booleans())
def test_structural_mutations_succeed_or_refuse_in_one_line(structural_seeds, tmp_path_factory, capsys, which, seed, count, damage):
    rng = random.Random(seed)
    model, applied = mutate(structural_seeds[which % len(structural_seeds)], rng, count)
    data = model.SerializeToString()
    if damage and which % 3 == 0:
        data = mutate_bytes(data, rng)
    folder = tmp_path_factory.getbasetemp() / "structural" / "model"
    folder.mkdir(parents=True, exist_ok=True)
    path, out = folder / "fuzz.onnx", folder.parent / "report.json"
    path.write_bytes(data)
    out.unlink(missing_ok=True)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PER_EXAMPLE_S)
    try:
        code = main(["analyze", str(path), "--format", "json", "-o", str(out)])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    if code == 0:
        report = _finite_json(out.read_text())
        assert report["totals"]["flops"]["expr"], applied
    else:
        lines = captured.err.splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("irtools: error: "), (applied, captured.err)
        assert not CRASH.match(lines[0]), (applied, lines[0])
        assert not out.exists()
    assert sorted(p.name for p in folder.parent.iterdir()) in (["model"], ["model", "report.json"])  # nothing written elsewhere
