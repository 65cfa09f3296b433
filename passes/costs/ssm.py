"""Cost rules of state-space scans (Mamba's selective scan as one op).

``irtools.selective_scan`` (``irtools/recipes/ssm_capture.py``) runs the recurrence
state_t = decay_t·state_{t-1} + input_t and reads out y_t = state_t·readout_t for every
position: per (batch, channel, position, state) element one multiply and one add of the
update, and the readout, a (state)-long dot product per output, is the matmul part that
FlopCounterMode counts (2·batch·channels·seq·state, docs/conventions.md).
"""

from __future__ import annotations

from passes.costs.registry import Cost, OpCall, RuleSet, read_all, write_all

RULES = RuleSet()


@RULES.rule("irtools.selective_scan.default", kind="reduction")
def selective_scan(call: OpCall) -> Cost:
    """decay, inputs (batch, channels, seq, state); readout (batch, seq, state)."""
    inputs = call.inputs[1]
    readout = 2 * inputs.numel
    return Cost(2 * inputs.numel + readout, read_all(call), write_all(call), readout)
