"""What the joint forward+backward capture knows about a training step (``GraphMeta.training``).

Capture (``irtools.capture.torch.joint``) fills it; the training passes (``passes.optimizer``,
``passes.recompute``, ``passes.training``) read it. Value ids name ``IRGraph.values``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PHASES = ("forward", "backward", "recompute", "optimizer")


@dataclass
class JointInfo:
    """The loss, the parameters and their gradients, and what the model's code checkpoints."""

    loss: str  # value id of the scalar loss
    description: str = ""  # what the loss is (irtools/recipes/train.py)
    params: dict[str, str] = field(default_factory=dict)  # parameter value id -> qualified name
    gradients: dict[str, str] = field(default_factory=dict)  # parameter value id -> gradient value id
    frozen: list[str] = field(default_factory=list)  # parameter value ids that get no gradient
    checkpointed: list[str] = field(default_factory=list)  # module paths wrapped in torch.utils.checkpoint
    notes: list[str] = field(default_factory=list)
    prepared: Any = None  # passes.training.TrainingSetup once the training passes have run


    def owner(self, param: str) -> str:
        """Module path of a parameter value (``h.0.attn.c_attn`` for ``h.0.attn.c_attn.weight``)."""
        name = self.params.get(param, "")
        return name.rsplit(".", 1)[0] if "." in name else ""
