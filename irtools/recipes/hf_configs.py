"""Tiny configs of many transformers architectures (hidden 32, 2 layers, vocab 101).

Each builds in milliseconds with real random weights, so tests and
``benchmarks/coverage.py`` can run a model eagerly under FlopCounterMode and compare it
with irtools' formula. ``CLASS_ROUTE`` names one ``package.module:Class`` per architecture.
Sizes are chosen apart from the example sizes (batch 3, seq 5, cache 7, decoder 11).
"""

from __future__ import annotations

from typing import Any

_DEC = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 48, "vocab_size": 101}
_MOE = {**_DEC, "num_key_value_heads": 2, "num_experts_per_tok": 2}

TINY: dict[str, dict[str, Any]] = {
    # mixture of experts
    "mixtral": {"model_type": "mixtral", **_MOE, "num_local_experts": 4},
    "qwen2_moe": {"model_type": "qwen2_moe", **_MOE, "num_experts": 4, "moe_intermediate_size": 24,
                  "shared_expert_intermediate_size": 40},
    "qwen3_moe": {"model_type": "qwen3_moe", **_MOE, "num_experts": 4, "moe_intermediate_size": 24, "head_dim": 8},
    # decoders
    "phi3": {"model_type": "phi3", **_DEC, "num_key_value_heads": 2, "pad_token_id": 0},
    "falcon": {"model_type": "falcon", **_DEC},
    "gptj": {"model_type": "gptj", "n_layer": 2, "n_embd": 32, "n_head": 4, "vocab_size": 101, "rotary_dim": 4,
             "n_positions": 64, "bos_token_id": 0, "eos_token_id": 0},
    "bloom": {"model_type": "bloom", "n_layer": 2, "hidden_size": 32, "n_head": 4, "vocab_size": 101},
    "stablelm": {"model_type": "stablelm", **_DEC, "num_key_value_heads": 2, "partial_rotary_factor": 0.25},
    "starcoder2": {"model_type": "starcoder2", **_DEC, "num_key_value_heads": 2},
    "cohere": {"model_type": "cohere", **_DEC, "num_key_value_heads": 2, "eos_token_id": 0},
    "mamba": {"model_type": "mamba", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 101, "state_size": 4,
              "expand": 2, "conv_kernel": 4},
    # encoder-decoders
    "t5": {"model_type": "t5", "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2, "num_heads": 4, "vocab_size": 101},
    "whisper": {"model_type": "whisper", "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
                "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 48,
                "decoder_ffn_dim": 48, "vocab_size": 101, "num_mel_bins": 8, "max_source_positions": 16,
                "max_target_positions": 32, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0,
                "decoder_start_token_id": 0},
    # multimodal (text + vision towers, composite config)
    "clip": {"model_type": "clip", "projection_dim": 16,
             "text_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                             "num_attention_heads": 4, "vocab_size": 101, "bos_token_id": 0, "eos_token_id": 1},
             "vision_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "image_size": 32, "patch_size": 8}},
}

#: One class per architecture for the ``package.module:Class`` route.
CLASS_ROUTE: dict[str, str] = {
    "mixtral": "transformers.models.mixtral.modeling_mixtral:MixtralSparseMoeBlock",
    "qwen2_moe": "transformers.models.qwen2_moe.modeling_qwen2_moe:Qwen2MoeSparseMoeBlock",
    "qwen3_moe": "transformers.models.qwen3_moe.modeling_qwen3_moe:Qwen3MoeDecoderLayer",
    "phi3": "transformers.models.phi3.modeling_phi3:Phi3DecoderLayer",
    "falcon": "transformers.models.falcon.modeling_falcon:FalconDecoderLayer",
    "gptj": "transformers.models.gptj.modeling_gptj:GPTJBlock",
    "bloom": "transformers.models.bloom.modeling_bloom:BloomForCausalLM",
    "stablelm": "transformers.models.stablelm.modeling_stablelm:StableLmDecoderLayer",
    "starcoder2": "transformers.models.starcoder2.modeling_starcoder2:Starcoder2DecoderLayer",
    "cohere": "transformers.models.cohere.modeling_cohere:CohereDecoderLayer",
    "mamba": "transformers.models.mamba.modeling_mamba:MambaForCausalLM",
    "t5": "transformers.models.t5.modeling_t5:T5ForConditionalGeneration",
    "whisper": "transformers.models.whisper.modeling_whisper:WhisperForConditionalGeneration",
    "clip": "transformers.models.clip.modeling_clip:CLIPTextModel",
}

#: More model types (run from config.json in slow tests and in benchmarks/coverage.py).
MORE: dict[str, dict[str, Any]] = {
    "bart": {"model_type": "bart", "encoder_layers": 2, "decoder_layers": 2, "d_model": 32, "vocab_size": 101,
             "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 48, "decoder_ffn_dim": 48},
    "wav2vec2": {"model_type": "wav2vec2", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
                 "intermediate_size": 48, "vocab_size": 32},
    "llava": {"model_type": "llava", "image_token_index": 150,
              "text_config": {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
                              "intermediate_size": 48, "vocab_size": 200},
              "vision_config": {"model_type": "clip_vision_model", "num_hidden_layers": 2, "hidden_size": 32,
                                "num_attention_heads": 4, "intermediate_size": 48, "image_size": 32, "patch_size": 8}},
    "mamba2": {"model_type": "mamba2", "num_hidden_layers": 2, "hidden_size": 32, "vocab_size": 101, "num_heads": 8,
               "head_dim": 8, "state_size": 8, "n_groups": 1, "expand": 2},
    "gpt_bigcode": {"model_type": "gpt_bigcode", "n_layer": 2, "n_embd": 32, "n_head": 4, "vocab_size": 101},
    "convnext": {"model_type": "convnext", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64], "image_size": 32},
    "swin": {"model_type": "swin", "depths": [1, 1], "num_heads": [2, 4], "embed_dim": 16, "image_size": 32,
             "patch_size": 4, "window_size": 4},
}
