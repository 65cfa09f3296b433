"""Selective state-space scans (Mamba) that torch.export captures with a symbolic seq_len.

transformers' torch path of ``mamba_selective_scan`` loops over positions in Python, so
export specializes ``seq_len``. :func:`route_scans` wraps each mixer of one model so that,
while it runs, its module's ``mamba_selective_scan`` is :func:`selective_scan`: the same
discretization, with the recurrence itself one op, ``irtools::selective_scan`` (costed in
``passes/costs/ssm.py``). Its eager result equals the loop's; the final-state variant (a
cache being filled) keeps the original path.
"""

from __future__ import annotations

import inspect
import sys
import types

import torch
import torch.nn.functional as F

SCAN = "mamba_selective_scan"


@torch.library.custom_op("irtools::selective_scan", mutates_args=())
def scan_op(decay: torch.Tensor, inputs: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
    """state_t = decay_t * state_{t-1} + inputs_t; y_t = state_t @ readout_t.
    decay, inputs: (batch, channels, seq, state); readout: (batch, seq, state) -> (batch, channels, seq)."""
    state = torch.zeros_like(inputs[:, :, 0])
    out = []
    for t in range(inputs.shape[2]):
        state = decay[:, :, t] * state + inputs[:, :, t]
        out.append((state @ readout[:, t, :].unsqueeze(-1))[..., 0])
    return torch.stack(out, dim=-1)


@scan_op.register_fake
def _scan_fake(decay, inputs, readout):
    return inputs.new_empty(inputs.shape[:3])


def selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, original=None, **kwargs):
    """``mamba_selective_scan`` with the recurrence as one op (no final state)."""
    if return_last_state:
        return original(hidden_states, dt, A, B, C, D=D, z=z, delta_bias=delta_bias,
                        delta_softplus=delta_softplus, return_last_state=True, **kwargs)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[..., None]
    if delta_softplus:
        dt = F.softplus(dt)
    B, C = B.transpose(1, 2), C.transpose(1, 2)
    decay = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
    inputs = dt[:, :, :, None] * B[:, None, :, :].float() * hidden_states[:, :, :, None].float()
    out = scan_op(decay, inputs, C.to(inputs.dtype)).to(hidden_states.dtype)
    if D is not None:
        out = out + hidden_states * D[None, :, None]
    if z is not None:
        out = out * F.silu(z)
    return out


def _wrapped_forward(self, *args, **kwargs):
    py_module = sys.modules[type(self).__module__]
    original = getattr(py_module, SCAN)
    setattr(py_module, SCAN, lambda *a, **k: selective_scan(*a, original=original, **k))
    try:
        return type(self).forward(self, *args, **kwargs)
    finally:
        setattr(py_module, SCAN, original)


def route_scans(model: torch.nn.Module) -> int:
    """Wrap every mixer of ``model`` (this instance only) whose forward calls its module's
    ``mamba_selective_scan``; the number of mixers wrapped."""
    count = 0
    for module in model.modules():
        py_module = sys.modules.get(type(module).__module__)
        forward = getattr(type(module), "forward", None)
        code = getattr(inspect.unwrap(forward), "__code__", None) if forward is not None else None
        if py_module is not None and hasattr(py_module, SCAN) and code is not None and SCAN in code.co_names:
            module.forward = types.MethodType(_wrapped_forward, module)
            count += 1
    return count


def unroute_scans(model: torch.nn.Module) -> None:
    """Undo :func:`route_scans` (transformers' own scan again)."""
    for module in model.modules():
        if getattr(vars(module).get("forward"), "__func__", None) is _wrapped_forward:
            del module.forward
