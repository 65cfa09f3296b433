"""Mixture-of-experts layers that torch.export can capture, with their routing visible.

transformers' expert modules (``@use_experts_implementation``: Mixtral, Qwen2-MoE,
Qwen3-MoE, ...) run either an eager loop over the experts a batch hits — which torch.export
rejects (a data-dependent guard on ``nonzero``) — or a grouped matmul whose custom op hides
how many tokens picked how many experts. :func:`route_experts` points each expert module of
one model at :func:`routed_experts_forward`: tokens sorted by expert, one grouped matmul per
projection through ``irtools::routed_mm``, which also takes the ``(tokens, top_k)`` routing
tensor so a cost rule sees tokens and ``num_experts_per_tok`` as shapes (see
``passes/costs/moe.py``). The numbers it computes equal the eager loop's.
"""

from __future__ import annotations

import types

import torch


@torch.library.custom_op("irtools::routed_mm", mutates_args=())
def routed_mm(input: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor, top_k_index: torch.Tensor) -> torch.Tensor:
    """Rows of ``input`` (sorted by expert) times their expert's ``weight[e]`` (E, K, N);
    ``offs`` holds each expert's end row. ``top_k_index`` (tokens, top_k) only carries shapes."""
    out = input.new_zeros(input.shape[0], weight.shape[2])
    start = 0
    for expert, end in enumerate(offs.tolist()):
        if end > start:
            out[start:end] = input[start:end] @ weight[expert]
        start = end
    return out


@routed_mm.register_fake
def _routed_mm_fake(input, weight, offs, top_k_index):
    return input.new_empty(input.shape[0], weight.shape[2])


def routed_experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                           top_k_weights: torch.Tensor) -> torch.Tensor:
    """The expert FFNs of ``self`` (a transformers experts module) for (tokens, hidden) rows."""
    tokens, hidden = hidden_states.shape
    top_k = top_k_index.shape[-1]
    expert_ids = top_k_index.reshape(-1)
    sorted_ids, order = torch.sort(expert_ids)
    rows = hidden_states[order // top_k]
    per_expert = expert_ids.new_zeros(self.num_experts).scatter_add(0, expert_ids, torch.ones_like(expert_ids))
    offs = torch.cumsum(per_expert, dim=0)

    def project(x, weight, bias):
        weight = weight if self.is_transposed else weight.transpose(1, 2)  # (E, in, out)
        out = routed_mm(x, weight, offs, top_k_index)
        return out + bias[sorted_ids] if bias is not None else out

    if self.has_gate:
        x = self._apply_gate(project(rows, self.gate_up_proj, getattr(self, "gate_up_proj_bias", None) if self.has_bias else None))
    else:
        x = self.act_fn(project(rows, self.up_proj, getattr(self, "up_proj_bias", None) if self.has_bias else None))
    x = project(x, self.down_proj, getattr(self, "down_proj_bias", None) if self.has_bias else None)
    if self.has_post_expert_norm:
        x = self.post_expert_norm(x)
    x = x * top_k_weights.reshape(-1)[order].unsqueeze(-1).to(x.dtype)
    unsorted = torch.empty_like(x).index_copy(0, order, x)
    return unsorted.view(tokens, top_k, hidden).sum(dim=1).to(hidden_states.dtype)


def is_experts_module(module: torch.nn.Module) -> bool:
    """A transformers experts module with 3-D expert weights (``@use_experts_implementation``)."""
    return (
        hasattr(module, "_apply_gate") and hasattr(module, "down_proj") and hasattr(module, "num_experts")
        and isinstance(getattr(module, "down_proj", None), torch.nn.Parameter) and module.down_proj.dim() == 3
    )


def route_experts(model: torch.nn.Module) -> int:
    """Point every experts module of ``model`` (this instance only) at
    :func:`routed_experts_forward`; the number of modules changed."""
    count = 0
    for module in model.modules():
        if is_experts_module(module):
            module.forward = types.MethodType(routed_experts_forward, module)
            count += 1
    return count


def unroute_experts(model: torch.nn.Module) -> None:
    """Undo :func:`route_experts` (the class's forward again: the config's implementation)."""
    for module in model.modules():
        if is_experts_module(module) and "forward" in vars(module):
            del module.forward
