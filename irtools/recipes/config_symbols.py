"""Config symbols per architecture: how probe configs are made and named.

A :class:`ProbeSpace` lists free probe variables (each set to a distinct prime times a
fixed small factor), the config fields a probe sets from them, the config symbol each
variable stands for, and how to read the symbols' values off a real config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy

from irtools.ir.symbols import sym


@dataclass(frozen=True)
class ProbeSpace:
    """``variables``: name -> (factor, meaning as an expression in config symbols)."""

    variables: dict[str, tuple[int, sympy.Expr]]
    fields: Callable[[dict[str, int]], dict[str, Any]]
    values: Callable[[Any], dict[str, int]]
    #: products that equal a named symbol in the real config (num_heads*head_dim -> hidden_size)
    canonical: list[tuple[sympy.Expr, sympy.Expr]] = field(default_factory=list)
    #: the config field holding the number of stacked blocks (for block collapse)
    layers_field: str | None = "num_hidden_layers"


def _s(*names: str):
    return tuple(sym(n) for n in names)


HID, NH, NKV, HD, INTER, VOCAB, POS = _s(
    "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size", "max_positions"
)
CANONICAL_HIDDEN = [(NH * HD, HID)]


def _gpt2_values(cfg) -> dict[str, int]:
    return {
        "hidden_size": cfg.n_embd, "num_heads": cfg.n_head, "head_dim": cfg.n_embd // cfg.n_head,
        "intermediate_size": getattr(cfg, "n_inner", None) or 4 * cfg.n_embd,
        "vocab_size": getattr(cfg, "vocab_size", 0), "max_positions": cfg.n_positions,
        "num_layers": getattr(cfg, "n_layer", 1),
    }


GPT2 = ProbeSpace(
    {"nh": (1, NH), "hd": (1, HD), "inter": (1, INTER), "vocab": (1, VOCAB), "pos": (1, POS)},
    lambda v: {
        "n_head": v["nh"], "n_embd": v["nh"] * v["hd"], "n_inner": v["inter"], "vocab_size": v["vocab"],
        "n_positions": v["pos"], "bos_token_id": 0, "eos_token_id": 0,
    },
    _gpt2_values,
    CANONICAL_HIDDEN,
    "n_layer",
)

SEED_ATTENTION = ProbeSpace(
    {"nh": (1, NH), "hd": (1, HD), "pos": (1, POS)},
    lambda v: {"n_head": v["nh"], "n_embd": v["nh"] * v["hd"], "n_positions": v["pos"]},
    lambda cfg: {"hidden_size": cfg.n_embd, "num_heads": cfg.n_head, "head_dim": cfg.n_embd // cfg.n_head, "max_positions": cfg.n_positions},
    CANONICAL_HIDDEN,
    None,
)


def _llama_values(cfg) -> dict[str, int]:
    heads = cfg.num_attention_heads
    return {
        "hidden_size": cfg.hidden_size, "num_heads": heads,
        "num_kv_heads": getattr(cfg, "num_key_value_heads", None) or heads,
        "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
        "intermediate_size": cfg.intermediate_size, "vocab_size": cfg.vocab_size,
        "num_layers": cfg.num_hidden_layers,
    }


LLAMA = ProbeSpace(
    # num_heads = num_kv_heads * group; hidden_size a multiple of num_heads (transformers
    # checks it); head_dim set apart from hidden_size / num_heads and even (rotary halves it)
    {"kv": (1, NKV), "group": (1, NH / NKV), "half": (2, HD), "per_head": (1, HID / NH), "inter": (1, INTER), "vocab": (1, VOCAB)},
    lambda v: {
        "num_key_value_heads": v["kv"], "num_attention_heads": v["kv"] * v["group"], "head_dim": v["half"],
        "hidden_size": v["kv"] * v["group"] * v["per_head"], "intermediate_size": v["inter"], "vocab_size": v["vocab"],
    },
    _llama_values,
    CANONICAL_HIDDEN,
)


def _bert_values(cfg) -> dict[str, int]:
    return {
        "hidden_size": cfg.hidden_size, "num_heads": cfg.num_attention_heads,
        "head_dim": cfg.hidden_size // cfg.num_attention_heads, "intermediate_size": cfg.intermediate_size,
        "vocab_size": getattr(cfg, "vocab_size", 0), "max_positions": getattr(cfg, "max_position_embeddings", 0),
        "num_layers": cfg.num_hidden_layers,
    }


BERT = ProbeSpace(
    {"nh": (1, NH), "hd": (1, HD), "inter": (1, INTER), "vocab": (1, VOCAB), "pos": (1, POS)},
    lambda v: {"num_attention_heads": v["nh"], "hidden_size": v["nh"] * v["hd"], "intermediate_size": v["inter"], "vocab_size": v["vocab"], "max_position_embeddings": v["pos"]},
    _bert_values,
    CANONICAL_HIDDEN,
)
VIT = ProbeSpace(
    {"nh": (1, NH), "hd": (1, HD), "inter": (1, INTER)},
    lambda v: {"num_attention_heads": v["nh"], "hidden_size": v["nh"] * v["hd"], "intermediate_size": v["inter"]},
    lambda cfg: {
        "hidden_size": cfg.hidden_size, "num_heads": cfg.num_attention_heads,
        "head_dim": cfg.hidden_size // cfg.num_attention_heads, "intermediate_size": cfg.intermediate_size,
        "num_layers": cfg.num_hidden_layers,
    },
    CANONICAL_HIDDEN,
)

NEXP, TOPK, MOE_INTER, SHARED_INTER = _s("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                         "shared_expert_intermediate_size")


def _moe_space(experts_field: str, expert_inter: str | None, shared: bool) -> ProbeSpace:
    """A Llama-like decoder whose MLPs are routed experts: ``num_experts_per_tok`` (listed
    before ``num_experts`` so its probe prime is the smaller: top-k <= experts), the expert
    count under ``experts_field``, and the expert (and shared expert) widths."""
    variables = dict(LLAMA.variables)
    variables.update({"topk": (1, TOPK), "experts": (1, NEXP)})
    if expert_inter:
        variables["moe_inter"] = (1, MOE_INTER)
    if shared:
        variables["shared_inter"] = (1, SHARED_INTER)

    def fields(v: dict[str, int]) -> dict[str, Any]:
        out = {**LLAMA.fields(v), "num_experts_per_tok": v["topk"], experts_field: v["experts"]}
        if expert_inter:
            out[expert_inter] = v["moe_inter"]
        if shared:
            out["shared_expert_intermediate_size"] = v["shared_inter"]
        return out

    def values(cfg) -> dict[str, int]:
        out = {**_llama_values(cfg), "num_experts": getattr(cfg, experts_field),
               "num_experts_per_tok": cfg.num_experts_per_tok}
        if expert_inter:
            out["moe_intermediate_size"] = getattr(cfg, expert_inter)
        if shared:
            out["shared_expert_intermediate_size"] = cfg.shared_expert_intermediate_size
        return out

    return ProbeSpace(variables, fields, values, CANONICAL_HIDDEN)


#: Mixtral: experts of intermediate_size; Qwen2-MoE adds a shared expert; Qwen3-MoE none.
MIXTRAL = _moe_space("num_local_experts", None, False)
QWEN2_MOE = _moe_space("num_experts", "moe_intermediate_size", True)
QWEN3_MOE = _moe_space("num_experts", "moe_intermediate_size", False)

SPACES: dict[str, ProbeSpace] = {
    "gpt2": GPT2, "llama": LLAMA, "mistral": LLAMA, "bert": BERT, "vit": VIT,
    "mixtral": MIXTRAL, "qwen2_moe": QWEN2_MOE, "qwen3_moe": QWEN3_MOE,
}

#: Probe prime sets: A builds the formulas, B and C verify them (no prime shared between
#: sets; each set as long as the largest space's variables).
PROBE_PRIMES = (
    [11, 13, 17, 19, 23, 29, 83, 89, 97, 101],
    [31, 37, 41, 43, 47, 53, 103, 107, 109, 113],
    [59, 61, 67, 71, 73, 79, 127, 131, 137, 139],
)


def probe_values(space: ProbeSpace, which: int) -> dict[str, int]:
    """Free variable -> its probe value (prime x factor) for probe set ``which``."""
    primes = PROBE_PRIMES[which]
    return {name: primes[i] * factor for i, (name, (factor, _)) in enumerate(space.variables.items())}
