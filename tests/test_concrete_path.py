"""The concrete fast path and the symbolic path give the same numbers (issue 17).

A fixed-shape ONNX file (or one whose named dims ``--dim`` binds all: ``capture_onnx(bind=)``)
is analyzed with plain ints (``irtools.ir.numeric``, integer shortcuts in shape inference);
a file with named dims is analyzed with sympy. The same rules serve both, so for every node
the symbolic formula evaluated at the concrete dims must equal the concrete path's cost:
checked on every light model-zoo file (its batch dim made symbolic) and on a tiny GPT-2
exported by torch's legacy ONNX exporter. The integer shortcuts themselves are checked
against the sympy code they stand for."""

from __future__ import annotations

import glob
import importlib.util
import io
import os
import warnings
from contextlib import redirect_stdout

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from irtools.capture.onnx import proto as onnx
from irtools.capture.onnx import shapes
from irtools.capture.onnx.frontend import capture_onnx
from irtools.ir import numeric
from irtools.ir.symbols import sym
from irtools.pipeline import Options, run_ir

COSTS = ("flops", "bytes_read", "bytes_written", "matmul_flops")
_ONNX = importlib.util.find_spec("onnx").submodule_search_locations[0]
ZOO = sorted(glob.glob(os.path.join(_ONNX, "backend", "test", "data", "light", "*.onnx")))


def _analyze(source, **capture):
    ir = capture_onnx(source, **capture)
    return run_ir(ir, Options(), scenario=None)


def _batch_symbolic(path: str) -> onnx.ModelProto:
    """The zoo model with the batch dim (dim 0 = 1) of each real graph input named ``N``."""
    model = onnx.load_model_from_string(open(path, "rb").read())
    inits = {t.name for t in model.graph.initializer}
    changed = 0
    for v in model.graph.input:
        dims = v.type.tensor_type.shape.dim
        if v.name not in inits and len(dims) == 4 and dims[0].dim_value == 1:
            dims[0].dim_param = "N"  # an alias of batch_size
            changed += 1
    assert changed, path
    return model


def _node_costs(result) -> dict[str, dict[str, sympy.Expr]]:
    return {nid: {c: a[c] for c in COSTS} for nid, a in result.ir.nodes()}


def _assert_same(symbolic, concrete, at: dict[str, int]) -> int:
    """Every node's symbolic costs, evaluated at ``at``, equal the concrete path's exactly."""
    subs = {sym(k): v for k, v in at.items()}
    got, want = _node_costs(symbolic), _node_costs(concrete)
    assert got.keys() == want.keys()
    for nid, costs in got.items():
        for c, expr in costs.items():
            value = sympy.sympify(expr).xreplace(subs)
            if value != want[nid][c]:  # equal as polynomials, if not as written
                assert sympy.expand(value - want[nid][c]) == 0, (nid, c, expr, want[nid][c])
    for c in ("flops", "bytes_read", "bytes_written"):
        assert sympy.expand(symbolic.totals[c].xreplace(subs)) == concrete.totals[c]
    return len(got)


def _sympy_only(m: pytest.MonkeyPatch) -> None:
    """Turn every integer shortcut off: sizes and costs go through sympy as before issue 17."""
    from irtools.capture.onnx import layout
    from passes import annotate_costs
    from passes.costs import registry

    m.setattr(numeric, "as_int", lambda x: None)
    m.setattr(numeric, "total", lambda terms: sympy.Add(*terms))
    m.setattr(numeric, "expand", lambda e: e if getattr(e, "is_Number", False) else sympy.expand(e))
    m.setattr(numeric, "numel", lambda shape: sympy.Mul(*shape) if shape else sympy.Integer(1))
    m.setattr(numeric, "product", lambda factors: sympy.Mul(*factors))
    m.setattr(registry, "total", lambda terms: sympy.Add(*terms))
    m.setattr(annotate_costs, "expand", lambda e: e if getattr(e, "is_Number", False) else sympy.expand(e))
    m.setattr(shapes, "as_int", lambda x: None)
    m.setattr(layout, "_int_dims", lambda shape: None)


def _shapes(result) -> dict[str, list]:
    return {nid: [None if s is None else s.shape for s in a["outputs"]] for nid, a in result.ir.nodes()}


@pytest.mark.parametrize("path", ZOO, ids=[os.path.basename(p)[6:-5] for p in ZOO])
def test_zoo_integer_path_equals_sympy_path(path):
    """A fixed-shape file: the integer shortcuts give every node the costs and shapes sympy gives."""
    concrete = _analyze(path)
    assert not any(concrete.totals[c].free_symbols - {sym("a_bytes"), sym("w_bytes")} for c in COSTS[:3])
    with pytest.MonkeyPatch.context() as m:
        _sympy_only(m)
        slow = _analyze(path)
    assert _node_costs(concrete) == _node_costs(slow) and _shapes(concrete) == _shapes(slow)
    assert _assert_same(slow, concrete, {}) == len(concrete.ir) > 30


@pytest.mark.parametrize("path", ZOO, ids=[os.path.basename(p)[6:-5] for p in ZOO])
def test_zoo_symbolic_batch_formula_at_one_equals_bound(path):
    """The batch dim named: the formula at batch_size=1 equals the --dim path (sizes bound, ints).
    (Not always the fixed file's numbers: files that hardcode batch 1 in a Reshape target make
    that Reshape a view only at batch 1, and a formula is for every batch size.)"""
    symbolic = _analyze(_batch_symbolic(path))
    assert sym("batch_size") in symbolic.totals["flops"].free_symbols  # the batch really is a symbol
    bound = _analyze(_batch_symbolic(path), bind={"batch_size": 1})
    assert not bound.totals["flops"].free_symbols and bound.ir.dims == {"batch_size": 1}
    assert _assert_same(symbolic, bound, {"batch_size": 1}) == len(bound.ir)
    fixed = _analyze(path)
    views = {nid for nid, a in symbolic.ir.nodes() if a["op"] in ("Reshape", "Flatten")}
    bound_costs = _node_costs(bound)
    assert {nid for nid, c in _node_costs(fixed).items() if c != bound_costs[nid]} <= views


@pytest.fixture(scope="module")
def gpt2_legacy(tmp_path_factory):
    """A 2-layer, 64-wide GPT-2 through torch's legacy exporter, dynamic batch_size / seq_len."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tests.test_onnx_cli import LogitsOnly, _register_legacy_diff

    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=128)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LogitsOnly(transformers.GPT2LMHeadModel(cfg).eval())
    path = tmp_path_factory.mktemp("gpt2") / "legacy.onnx"
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        _register_legacy_diff()
        try:
            torch.onnx.export(model, (torch.randint(0, 128, (3, 5)),), str(path), dynamo=False,
                              input_names=["input_ids"], output_names=["logits"],
                              dynamic_axes={"input_ids": {0: "batch_size", 1: "seq_len"}})
        finally:
            torch.onnx.unregister_custom_op_symbolic("aten::diff", 9)
    return str(path)


@pytest.mark.parametrize("batch, seq", [(1, 1), (2, 7), (3, 64)])
def test_gpt2_export_formula_at_dims_equals_concrete(gpt2_legacy, batch, seq):
    symbolic = _analyze(gpt2_legacy)
    assert {sym("batch_size"), sym("seq_len")} <= symbolic.totals["flops"].free_symbols
    concrete = _analyze(gpt2_legacy, bind={"batch_size": batch, "seq_len": seq})
    assert concrete.totals["flops"].is_Integer and concrete.ir.dims == {"batch_size": batch, "seq_len": seq}
    assert all(d.is_Integer for _, a in concrete.ir.nodes() for s in a["outputs"] if s is not None for d in s.shape)
    assert _assert_same(symbolic, concrete, {"batch_size": batch, "seq_len": seq}) > 300
    # 2 layers x (qkv + proj + fc + fc2) + lm_head, 2*M*N*K each: a hand count of the matmuls
    m = batch * seq
    mm = 2 * (2 * m * 64 * 192 + 2 * m * 64 * 64 + 2 * m * 64 * 256 + 2 * m * 256 * 64) + 2 * m * 64 * 128
    attn = 2 * (2 * 2 * batch * 4 * seq * seq * 16)  # QK^T and PV per layer
    assert concrete.totals["matmul_flops"] == mm + attn


def test_bind_only_when_every_named_dim_is_bound(gpt2_legacy):
    partial = _analyze(gpt2_legacy, bind={"seq_len": 7})
    assert sym("seq_len") in partial.totals["flops"].free_symbols  # not all bound: stays symbolic
    ignored = _analyze(gpt2_legacy, bind={"batch_size": 2, "seq_len": 0.5})
    assert sym("seq_len") in ignored.totals["flops"].free_symbols  # not a size: stays symbolic


# ---- the integer shortcuts against the sympy code they replace -------------------------------


_SENTINELS = st.sampled_from([2**62, -(2**62), 2**63 - 1, -(2**63)])


@settings(max_examples=300, deadline=None)
@given(dim=st.integers(0, 40), start=st.integers(-50, 50) | _SENTINELS, end=st.integers(-50, 50) | _SENTINELS,
       step=st.integers(-4, 4).filter(bool))
def test_slice_len_integer_path_matches_sympy(monkeypatch_module, dim, start, end, step):
    fast = shapes.slice_len(sympy.Integer(dim), start, end, step)
    with monkeypatch_module.context() as m:
        m.setattr(shapes, "as_int", lambda x: None)  # force the symbolic clamps
        slow = shapes.slice_len(sympy.Integer(dim), start, end, step)
    assert fast == slow == len(range(dim)[start:end:step])


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


_B, _S, _A, _W = sym("batch_size"), sym("seq_len"), sym("a_bytes"), sym("w_bytes")
_TERMS = st.sampled_from([
    sympy.Integer(7), 3, 0, -5, _A, 802816 * _A, 8 * _A * _B * _S, 2 * _W * _S**2 + 3 * _A, _B * _S + 1,
    sympy.Rational(1, 2) * _A * _B, sympy.Max(_B, _S), -4 * _A, _S**2 * _B / 3, (_B + 1) * _S, sympy.Float(0.5),
])


@settings(max_examples=300, deadline=None)
@given(terms=st.lists(_TERMS, max_size=12))
def test_total_and_expand_equal_sympy(terms):
    want = sympy.Add(*terms)
    got = numeric.total(terms)
    assert sympy.srepr(got) == sympy.srepr(want)  # the same canonical expression, not just equal
    assert sympy.srepr(numeric.expand(want)) == sympy.srepr(sympy.expand(want))


@given(shape=st.lists(st.integers(0, 10**6) | st.sampled_from([_B, _S, 2 * _S]), max_size=5))
def test_numel_equals_sympy_mul(shape):
    assert sympy.srepr(numeric.numel(tuple(shape))) == sympy.srepr(sympy.Mul(*shape) if shape else sympy.Integer(1))


_NAMES = ("a_bytes", "w_bytes", "batch_size", "seq_len", "x2", "x10", "unk_3", "Z_1")


@settings(max_examples=400, deadline=None)
@given(const=st.integers(-10**20, 10**20) | st.sampled_from([0, 1, -1]),
       terms=st.lists(st.tuples(st.integers(-10**13, 10**13), st.sampled_from(_NAMES)), max_size=5),
       values=st.lists(st.integers(1, 10**6), min_size=len(_NAMES), max_size=len(_NAMES)))
def test_linear_text_and_value_equal_sympy(const, terms, values):
    """Reports print and evaluate ``k*a_bytes + m*w_bytes + n`` without sympy: same text, same number."""
    from irtools.ir.symbols import evaluate

    expr = sympy.Add(const, *(k * sym(n) for k, n in terms))
    assert numeric.term_text(expr) == str(expr)
    bindings = dict(zip(_NAMES, values, strict=True))
    fast = numeric.linear_value(expr, bindings)
    with pytest.MonkeyPatch.context() as m:
        import irtools.ir.symbols as symbols

        m.setattr(symbols, "linear_value", lambda e, b: None)
        slow = evaluate(expr, bindings)
    assert fast == slow and type(fast) is type(slow)
