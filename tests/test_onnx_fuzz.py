"""Fuzzing the ONNX frontend: mutated bytes of real small models either capture or raise
CaptureError (one line) -- never another exception, never a hang. Bounded to a few seconds."""

from __future__ import annotations

import io
import os
import signal
import warnings

import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irtools.ir import CaptureError
from irtools.capture.onnx.frontend import capture_onnx
from models.gpt2_attention import GPT2Attention, GPT2Config
from passes.annotate_costs import annotate_costs

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

