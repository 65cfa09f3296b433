"""Deployment semantics of decoder analyses (issue 12): sliding-window decode capped at the
window and last-token logits, each against FlopCounterMode on real transformers runs (tiny
configs, random weights) — a real prefill fills the cache, then one decode step is counted."""

import json

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("transformers")
from irtools.ir.symbols import sym  # noqa: E402
from irtools.pipeline import Options, run  # noqa: E402
from irtools.recipes import hf  # noqa: E402

WINDOW = 16
MISTRAL = {"model_type": "mistral", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 101, "sliding_window": WINDOW}
VOCAB, HIDDEN = MISTRAL["vocab_size"], MISTRAL["hidden_size"]


def config_file(tmp_path_factory, fields) -> str:
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(fields))
    return str(path)


def matmul(result) -> sympy.Expr:
    return sympy.expand(sum(a["matmul_flops"] for _, a in result.ir.nodes()))


def value(expr, **bind) -> int:
    return int(expr.xreplace({sym(k): v for k, v in bind.items()}))


def cpu_model(fields):
    from transformers import AutoModelForCausalLM

    config = hf.make_config(fields, attn="eager")  # FlopCounterMode counts no CPU flash-attention op
    torch.manual_seed(0)
    return config, AutoModelForCausalLM.from_config(config).eval()


def decode_flops(fields, batch: int, cache_len: int, seq_len: int = 1) -> int:
    """Matmul FLOPs of one decode step of ``seq_len`` tokens after a real prefill of ``cache_len``."""
    from transformers import DynamicCache

    config, model = cpu_model(fields)
    ids = torch.randint(0, VOCAB, (batch, cache_len + seq_len))
    cache = DynamicCache(config=config)
    with torch.no_grad():
        model(input_ids=ids[:, :cache_len], cache=cache, use_cache=True)
        with FlopCounterMode(display=False) as counter:
            model(input_ids=ids[:, cache_len:], cache=cache, use_cache=True, logits_to_keep=1)
    return counter.get_total_flops()


@pytest.fixture(scope="module")
def window_decode(tmp_path_factory):
    return run(Options(model=config_file(tmp_path_factory, MISTRAL), scenario="decode"))


def test_sliding_window_decode_equals_flop_counter(window_decode):
    """Caches below, at and far above the window (16): transformers keeps window - 1 tokens, so a
    decode step attends over Min(cache_len, 15) + seq_len keys."""
    expr = matmul(window_decode)
    cache = sym("cache_len")
    assert sympy.Min(cache, WINDOW - 1) in expr.atoms(sympy.Min)
    assert cache not in expr.xreplace({sympy.Min(cache, WINDOW - 1): sym("capped")}).free_symbols
    assert window_decode.ir.meta.sliding_windows == {"model.layers.0": WINDOW, "model.layers.1": WINDOW}
    for c in (9, 16, 17, 40, 100):
        assert value(expr, batch_size=1, seq_len=1, cache_len=c) == decode_flops(MISTRAL, 1, c), c
    assert value(expr, batch_size=2, seq_len=3, cache_len=40) == decode_flops(MISTRAL, 2, 40, 3)
    far = window_decode.evaluate(batch_size=1, seq_len=1, cache_len=100_000)
    assert far == window_decode.evaluate(batch_size=1, seq_len=1, cache_len=15)  # bytes and time too


def test_window_caps_cache_bytes(window_decode):
    """The cached keys and values the graph reads are capped too (all four are inputs)."""
    capped = sympy.Min(sym("cache_len"), WINDOW - 1)
    for path, spec in window_decode.ir.inputs.items():
        if path.startswith("cache."):
            assert spec.shape[2] == capped, path


def test_decode_capture_with_window_4(tmp_path_factory):
    """A window below the example cache (7) used to specialize the cache length."""
    fields = {**MISTRAL, "sliding_window": 4, "num_hidden_layers": 1}
    expr = matmul(run(Options(model=config_file(tmp_path_factory, fields), scenario="decode")))
    assert sympy.Min(sym("cache_len"), 3) in expr.atoms(sympy.Min)
    for c in (2, 3, 10):
        assert value(expr, batch_size=1, seq_len=1, cache_len=c) == decode_flops(fields, 1, c), c


@pytest.fixture(scope="module")
def prefill(tmp_path_factory):
    path = config_file(tmp_path_factory, {**MISTRAL, "sliding_window": None})
    return run(Options(model=path)), run(Options(model=path, all_logits=True))


def test_prefill_last_token_logits_equal_flop_counter(prefill):
    last, every = prefill
    assert (last.ir.meta.logits, every.ir.meta.logits) == ("last", "all")
    _, model = cpu_model({**MISTRAL, "sliding_window": None})
    for b, s in ((1, 7), (2, 12)):
        ids = torch.randint(0, VOCAB, (b, s))
        for result, keep in ((last, 1), (every, 0)):
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(input_ids=ids, use_cache=False, logits_to_keep=keep)
            assert value(matmul(result), batch_size=b, seq_len=s) == counter.get_total_flops(), (b, s, keep)
    # the difference is the LM head on the other seq_len - 1 positions
    diff = sympy.expand(matmul(every) - matmul(last))
    assert diff == sympy.expand(2 * sym("batch_size") * (sym("seq_len") - 1) * HIDDEN * VOCAB)


def test_all_logits_flag():
    from irtools.cli import _options, build_parser

    args = build_parser().parse_args(["analyze", "llama-3-8b", "--all-logits"])
    assert _options(args).all_logits is True
    assert _options(build_parser().parse_args(["analyze", "llama-3-8b"])).all_logits is False
