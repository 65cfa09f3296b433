"""Example inputs of a transformers model or sub-module, from its forward signature and config.

Whole models get the inputs their ``forward`` names: ``input_ids`` (batch_size, seq_len),
``pixel_values`` (batch_size, channels, image, image), ``input_features`` (Whisper's fixed
mel frames), ``input_values`` (raw audio), ``decoder_input_ids`` for encoder-decoders, and
``use_cache=False`` wherever the forward takes it (prefill returns no cache). Sub-modules
get ``hidden_states`` (batch_size, seq_len, hidden) and, where they take
``position_embeddings``, the (cos, sin) their own model's rotary module makes — so partial
rotary (GPT-J's ``rotary_dim``, StableLM's ``partial_rotary_factor``) has the rotated width.
Sizes come from :data:`SIZES`: distinct, >= 2, so torch.export keeps each dim apart.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from irtools.ir.errors import IrtoolsError
from irtools.recipes.recipe import EXAMPLE_SIZES

#: Example sizes: the recipe's (batch 3, seq 5, cache 7) plus the decoder's own length.
SIZES = {**EXAMPLE_SIZES, "decoder_seq_len": 11}
AUDIO_SAMPLES = 1600  # raw-audio inputs (wav2vec2-style): long enough for their conv stacks; kept static
#: Inputs a forward may take that the recipe knows how to make (others keep their defaults).
PRIMARY = ("input_ids", "pixel_values", "input_features", "input_values", "decoder_input_ids")


class InputError(IrtoolsError, ValueError):
    """A forward whose inputs cannot be derived; the message is one line for the user."""


@dataclass
class Inputs:
    """Keyword inputs, named dims per input path, and notes on what was chosen."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    dims: dict[str, dict[int, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _params(fn) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(fn).parameters.items() if n != "self"}


def text_config(config):
    """The config holding the text model's sizes (composite configs: CLIP, LLaVA, ...)."""
    getter = getattr(config, "get_text_config", None)
    return getter() if getter is not None else config


def vision_config(config):
    return getattr(config, "vision_config", None) or config


def _image_size(config) -> tuple[int, int]:
    size = getattr(config, "image_size", 224)
    if isinstance(size, dict):
        size = (size.get("height", 224), size.get("width", 224))
    return (size, size) if isinstance(size, int) else tuple(size)[:2]


def _device(module: torch.nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    return tensor.device if tensor is not None else torch.device("meta")


def model_inputs(model: torch.nn.Module, config) -> Inputs:
    """Prefill inputs of a whole transformers model from its forward signature."""
    params = _params(model.forward)
    device = _device(model)
    b, s = SIZES["batch_size"], SIZES["seq_len"]
    out = Inputs()
    wanted = [n for n in PRIMARY if n in params]
    if getattr(config, "image_token_id", None) is not None or getattr(config, "image_token_index", None) is not None:
        if "input_ids" in wanted and "pixel_values" in wanted:  # image tokens must match image features
            wanted.remove("pixel_values")
            out.notes.append("text-only prefill: image inputs are not fed (their placeholder tokens are model-specific)")
    if not wanted:
        required = [n for n, p in params.items() if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
        raise InputError(f"{type(model).__name__}: no known input in its forward (needs {', '.join(required) or 'nothing known'})")
    if "input_ids" in wanted:
        vocab = getattr(text_config(config), "vocab_size", None) or 2
        out.kwargs["input_ids"] = torch.randint(0, vocab, (b, s), device=device)
        out.dims["input_ids"] = {0: "batch_size", 1: "seq_len"}
    if "pixel_values" in wanted:
        vision = vision_config(config)
        height, width = _image_size(vision)
        out.kwargs["pixel_values"] = torch.randn(b, getattr(vision, "num_channels", 3), height, width, device=device)
        out.dims["pixel_values"] = {0: "batch_size"}
        out.notes.append(f"image size fixed at {height}x{width} (the config's)")
    if "input_features" in wanted:
        out.kwargs["input_features"] = _features(config, device)
        out.dims["input_features"] = {0: "batch_size"}
        out.notes.append(f"audio features fixed at {tuple(out.kwargs['input_features'].shape[1:])} (the config's)")
    if "input_values" in wanted:
        out.kwargs["input_values"] = torch.randn(b, AUDIO_SAMPLES, device=device)
        out.dims["input_values"] = {0: "batch_size"}
        out.notes.append(f"raw audio fixed at {AUDIO_SAMPLES} samples")
    if "decoder_input_ids" in wanted and getattr(config, "is_encoder_decoder", False):
        name = "decoder_seq_len" if "input_ids" in out.kwargs else "seq_len"
        vocab = getattr(text_config(config), "vocab_size", None) or 2
        out.kwargs["decoder_input_ids"] = torch.randint(0, vocab, (b, SIZES[name]), device=device)
        out.dims["decoder_input_ids"] = {0: "batch_size", 1: name}
        if name == "decoder_seq_len":
            out.notes.append("decoder_seq_len (the decoder's tokens) is its own dim: bind it with --dim decoder_seq_len=N")
    if "use_cache" in params:
        out.kwargs["use_cache"] = False
    return out


def _features(config, device) -> torch.Tensor:
    b = SIZES["batch_size"]
    mels = getattr(config, "num_mel_bins", None)
    frames = getattr(config, "max_source_positions", None)
    if mels and frames:  # Whisper: the encoder wants exactly 2 x max_source_positions frames
        return torch.randn(b, mels, 2 * frames, device=device)
    per_frame = getattr(config, "input_feat_per_channel", 80) * getattr(config, "input_channels", 1)
    return torch.randn(b, 64, per_frame, device=device)  # Speech2Text-style (batch, frames, features)


def rotary_embeddings(cls: type, config, device) -> tuple[torch.Tensor, ...] | None:
    """(cos, sin) — in the model's own order and width — from the rotary module defined
    beside ``cls``, for (batch_size, seq_len) positions; None where there is none."""
    b, s = SIZES["batch_size"], SIZES["seq_len"]
    module = sys.modules.get(cls.__module__)
    candidates = [obj for name, obj in vars(module).items() if name.endswith("RotaryEmbedding") and isinstance(obj, type)]
    for rope_cls in candidates:
        try:
            with torch.device("cpu"):
                rope = rope_cls(config=config)
                hidden = torch.zeros(b, s, text_config(config).hidden_size)
                made = rope(hidden, torch.arange(s).expand(b, s))
        except Exception:  # noqa: BLE001 - not this model's rotary module (or another signature)
            continue
        if isinstance(made, tuple) and all(isinstance(t, torch.Tensor) for t in made):
            return tuple(torch.randn(t.shape, dtype=t.dtype, device=device) for t in made)
    return None


def module_inputs(module: torch.nn.Module, config) -> Inputs:
    """Inputs of a sub-module (attention, MLP, MoE block, decoder layer): ``hidden_states``
    of (batch_size, seq_len, hidden), rotary (cos, sin) where taken, caches off."""
    params = _params(module.forward)
    device = _device(module)
    b, s = SIZES["batch_size"], SIZES["seq_len"]
    names = list(params)
    if not names:
        raise InputError(f"{type(module).__name__}.forward takes no inputs")
    first = names[0]
    out = Inputs()
    out.kwargs[first] = torch.randn(b, s, text_config(config).hidden_size, device=device)
    out.dims[first] = {0: "batch_size", 1: "seq_len"}
    if "position_embeddings" in params:
        rope = rotary_embeddings(type(module), config, device)
        if rope is None and params["position_embeddings"].default is inspect.Parameter.empty:
            raise InputError(f"{type(module).__name__}: takes position_embeddings but no rotary module is known for it")
        if rope is not None:
            out.kwargs["position_embeddings"] = rope
            for i, tensor in enumerate(rope):
                out.dims[f"position_embeddings.{i}"] = {a: n for a, n in ((0, "batch_size"), (1, "seq_len"))
                                                        if tensor.dim() > a and tensor.shape[a] == SIZES[n]}
    if "use_cache" in params:
        out.kwargs["use_cache"] = False
    for name in names[1:]:  # required inputs: an additive attention mask of zeros, else None (alibi)
        p = params[name]
        if p.default is not p.empty or p.kind is not p.POSITIONAL_OR_KEYWORD or name in out.kwargs:
            continue
        if name == "attention_mask":
            out.kwargs[name] = torch.zeros(b, 1, s, s, device=device)
            out.dims[name] = {0: "batch_size", 2: "seq_len", 3: "seq_len"}
        else:
            out.kwargs[name] = None
            out.notes.append(f"{name}=None")
    return out
