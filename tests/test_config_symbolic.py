"""Issue 3: formulas in config symbols, verified against concrete traces at held-out configs;
composition through ${Class}(args) references; whole models from configs."""

import random

import pytest
import sympy

from irtools.analysis import analyze_module, config_generalizer
from irtools.capture.torch.export import capture_module
from irtools.ir.symbols import sym
from passes.annotate_costs import annotate_costs
from passes.compose import composed_costs, expand_document, module_documents

pytest.importorskip("transformers")
from irtools.ir.kinds import COSTS
from irtools.recipes import hf  # noqa: E402
from irtools.recipes.config_symbols import SPACES  # noqa: E402

GPT2_TINY = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "n_inner": 96, "vocab_size": 101, "n_positions": 64}
LLAMA_TINY = {
    "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 80, "vocab_size": 97,
}


def symbolic(fields, scenario="prefill"):
    recipe = hf._recipe_at(fields, scenario, fields["model_type"], "eager", SPACES[fields["model_type"]])
    result = analyze_module(
        recipe.module, recipe.args, recipe.kwargs, recipe.dims, scenario=scenario, generalize=config_generalizer(recipe)
    )
    return recipe, result


def seed_symbolic():
    from irtools.recipes.presets import PRESETS, resolve_class

    recipe = PRESETS["gpt2-attention"].build(resolve_class(PRESETS["gpt2-attention"].cls_path), "decode")
    result = analyze_module(
        recipe.module, recipe.args, recipe.kwargs, recipe.dims, scenario="decode", generalize=config_generalizer(recipe)
    )
    return recipe, result


@pytest.fixture(scope="session")
def gpt2_sym():
    return symbolic(GPT2_TINY)


@pytest.fixture(scope="session")
def llama_sym():
    return symbolic(LLAMA_TINY)


@pytest.fixture(scope="session")
def seed_sym():
    return seed_symbolic()


def held_out_gpt2(rng):
    heads, head_dim = rng.choice([2, 3, 5, 6]), rng.choice([8, 10, 12, 14])
    return {"n_head": heads, "n_embd": heads * head_dim, "n_inner": rng.randint(20, 90), "vocab_size": rng.randint(50, 120),
            "n_positions": rng.randint(20, 80), "bos_token_id": 0, "eos_token_id": 0}


def held_out_llama(rng):
    # group >= 2 keeps repeat_kv's expand in the graph, as in the real config (control flow)
    kv, group, head_dim = rng.choice([2, 3]), rng.choice([2, 3]), rng.choice([4, 6, 8, 10])  # sizes 1 specialize layouts
    return {"num_key_value_heads": kv, "num_attention_heads": kv * group, "hidden_size": kv * group * head_dim,
            "intermediate_size": rng.randint(20, 90), "vocab_size": rng.randint(50, 120)}


def check_held_out(recipe, result, overrides_list):
    """Node by node and in total: formula at the held-out config == a concrete capture there."""
    space = recipe.space
    for overrides in overrides_list:
        probe = recipe.rebuild(overrides)
        concrete = annotate_costs(capture_module(probe.module, probe.args, probe.kwargs, probe.dims))
        values = {sym(k): v for k, v in space.values(probe.config).items()}
        nodes = dict(result.ir.nodes())
        assert set(nodes) == {n for n, _ in concrete.nodes()}
        for node_id, attrs in concrete.nodes():
            for c in COSTS:
                assert sympy.expand(nodes[node_id][c].xreplace(values) - attrs[c]) == 0, (node_id, c, overrides)
        for c in COSTS:
            flat = sympy.expand(sum(a[c] for _, a in concrete.nodes()))
            assert sympy.expand(result.totals[c].xreplace(values) - flat) == 0


def test_seed_attention_held_out_configs(seed_sym):
    recipe, result = seed_sym
    assert not result.ir.meta["generalized"].numeric
    rng = random.Random(3)
    configs = []
    for _ in range(5):
        heads, head_dim = rng.choice([2, 3, 4, 6, 8]), rng.choice([8, 16, 20, 32])
        configs.append({"n_head": heads, "n_embd": heads * head_dim, "n_positions": rng.randint(20, 200)})
    check_held_out(recipe, result, configs)


def test_gpt2_blocks_held_out_configs(gpt2_sym):
    recipe, result = gpt2_sym
    assert not result.ir.meta["generalized"].numeric
    rng = random.Random(4)
    check_held_out(recipe, result, [held_out_gpt2(rng) for _ in range(5)])


def test_llama_layers_held_out_configs(llama_sym):
    recipe, result = llama_sym
    gen = result.ir.meta["generalized"]
    assert len(gen.verified) > 100 and not gen.numeric
    rng = random.Random(5)
    check_held_out(recipe, result, [held_out_llama(rng) for _ in range(5)])
    # GQA: the K projection is hidden_size x num_kv_heads*head_dim
    k_proj = [a for _, a in result.ir.nodes() if a.get("module", "").endswith("k_proj") and a["kind"] == "matmul"][0]
    b, s, h, kv, hd = (sym(n) for n in ("batch_size", "seq_len", "hidden_size", "num_kv_heads", "head_dim"))
    assert k_proj["flops"] == sympy.expand(2 * b * s * h * kv * hd)


def test_seed_line_table_in_config_symbols(seed_sym):
    _, result = seed_sym
    b, s, c, h, nh, hd = (sym(n) for n in ("batch_size", "seq_len", "cache_len", "hidden_size", "num_heads", "head_dim"))
    entries = {e.code.split("(")[0].strip(): e for e in result.lines.entries}
    c_attn = next(e for e in result.lines.entries if "self.c_attn(" in e.code)
    assert c_attn.references == ["${models.gpt2_attention.Conv1D}(batch_size, seq_len, hidden_size, 3*hidden_size)"]
    assert c_attn.flops == sympy.expand(2 * b * s * h * 3 * h + 3 * b * s * h)  # the seed's formula + the bias term
    c_proj = next(e for e in result.lines.entries if "self.c_proj(" in e.code)
    assert c_proj.flops == sympy.expand(2 * b * s * h * h + b * s * h)
    attn = next(e for e in result.lines.entries if "self._attn(" in e.code)
    qk = next(x for x in attn.sub_entries if "torch.matmul(query" in x.code)
    av = next(x for x in attn.sub_entries if "torch.matmul(attn_weights" in x.code)
    kv_len = c + s
    for e in (qk, av):  # seed: 2 * batch_size * num_heads * seq_len * kv_len * head_dim
        assert sympy.expand(e.flops.subs(h, nh * hd) - 2 * b * nh * s * kv_len * hd) == 0
    assert entries  # the table is keyed by code


def test_expanding_references_gives_the_flat_total(gpt2_sym, seed_sym):
    for _, result in (gpt2_sym, seed_sym):
        docs = module_documents(result.ir)
        root = result.ir.meta["modules"].nodes[""]["cls"]
        layers = result.ir.meta["config_symbols"].get("num_layers", 1)
        for c in COSTS:
            expanded = expand_document(docs, root, c)
            assert sympy.expand(expanded.subs(sym("num_layers"), layers) - result.totals[c]) == 0
    docs = module_documents(gpt2_sym[1].ir)
    model = next(d for d in docs if d["class_name"].endswith("GPT2Model"))
    block_line = next(k for k in model["kernels"] if "GPT2Block" in k["flops"])
    assert block_line["repeat"] == "num_layers" and block_line["kernel_type"] == "composite"
    assert block_line["flops"].startswith("num_layers * ${transformers.models.gpt2.modeling_gpt2.GPT2Block}(batch_size, seq_len, hidden_size)")


def test_one_formula_for_other_sizes(gpt2_sym):
    """The composed formula of a 2-layer model predicts a 3-layer, wider model exactly."""
    recipe, result = gpt2_sym
    composed = composed_costs(result.ir)
    assert sym("num_layers") in composed["flops"].free_symbols
    bigger = recipe.rebuild({"n_layer": 3, "n_head": 6, "n_embd": 96, "n_inner": 130, "vocab_size": 77, "n_positions": 40})
    flat = annotate_costs(capture_module(bigger.module, bigger.args, bigger.kwargs, bigger.dims))
    values = {sym(k): v for k, v in recipe.space.values(bigger.config).items()}
    for c in COSTS:
        assert sympy.expand(composed[c].xreplace(values) - sum(a[c] for _, a in flat.nodes())) == 0


def test_report_collapses_repeated_blocks(gpt2_sym):
    _, result = gpt2_sym
    report = result.to_dict()
    model = report["modules"][0]["children"][0]
    blocks = next(ch for ch in model["children"] if ch.get("repeat"))
    assert blocks["repeat"] == 2 and blocks["repeat_symbol"] == "num_layers" and blocks["paths"] == ["transformer.h.0", "transformer.h.1"]
    assert report["config_symbolic"]["numeric_nodes"] == [] and "num_layers" in report["composed"]["flops"]["expr"]
    assert report["composed"]["flops"]["value"] == report["totals"]["flops"]["value"]
