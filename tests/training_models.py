"""Tiny models for the training tests, each captured once per process (joint forward+backward),
and helpers: a fresh copy of a captured IR per analysis, real steps under FlopCounterMode and
MemTracker."""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

TINY = {
    "gpt2": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 128, "n_positions": 64,
             "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
    "llama": {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 48, "vocab_size": 101},
    "bert": {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
             "intermediate_size": 48, "vocab_size": 101, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
}
POINTS = ((2, 7), (3, 16), (5, 9))  # (batch_size, seq_len)


class SmallCNN(nn.Module):
    """A classifier: conv, batch norm, conv with stride 2, pooling, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def hf_recipe(name: str, checkpointing: bool = False):
    """The training recipe of a tiny transformers model with real weights (eager attention)."""
    from irtools.recipes import hf
    from irtools.recipes.train import train_recipe

    torch.manual_seed(0)
    config = hf.make_config(TINY[name], attn="eager")
    model = hf.build_model(config, device="cpu")
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base = hf.recipe(config, "prefill", name, model=model, all_logits=True)
    base.config = config
    return train_recipe(base)


@functools.cache
def captured(name: str, checkpointing: bool = False):
    """(recipe, bare joint IR) of a tiny model, captured once."""
    from irtools.pipeline import capture_recipe
    from irtools.recipes.train import module_recipe

    if name == "cnn":
        torch.manual_seed(0)
        recipe = module_recipe(SmallCNN(), (torch.randn(3, 3, 11, 8),), dims={"x": {0: "batch_size", 2: "seq_len"}})
    else:
        recipe = hf_recipe(name, checkpointing)
    return recipe, capture_recipe(recipe)


def fresh(ir):
    """A copy of a bare captured IR (the passes write into the IR they run on); the exported
    program is shared, not copied."""
    ep = ir.meta.exported_program
    return copy.deepcopy(ir, {id(ep): ep})


def analyze(name: str, checkpointing: bool = False, **options):
    """The pipeline over a fresh copy of the captured joint graph of ``name``."""
    from irtools.pipeline import Options, run_ir

    _, ir = captured(name, checkpointing)
    return run_ir(fresh(ir), Options(scenario="train", **options))


def step_inputs(recipe, batch: int, seq: int) -> dict:
    """The recipe's inputs at (batch, seq): token ids (and labels) or images of height ``seq``."""
    if "x" in recipe.kwargs:
        return {"x": torch.randn(batch, 3, seq, 8)}
    ids = torch.randint(0, 100, (batch, seq))
    return {"input_ids": ids, "labels": ids.clone()}


def loss_of(recipe, inputs):
    out = recipe.module(**inputs)
    return out.loss if hasattr(out, "loss") else out


def real_flops(recipe, batch: int, seq: int, early_stop: bool = True) -> int:
    """FlopCounterMode over a real forward and ``loss.backward()``."""
    from torch.utils.checkpoint import set_checkpoint_early_stop
    from torch.utils.flop_counter import FlopCounterMode

    inputs = step_inputs(recipe, batch, seq)
    recipe.module.zero_grad(set_to_none=True)
    with set_checkpoint_early_stop(early_stop), FlopCounterMode(display=False) as counter:
        loss_of(recipe, inputs).backward()
    recipe.module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def real_memory(recipe, batch: int, seq: int) -> dict[str, int]:
    """MemTracker over a full AdamW step (forward, backward, ``optimizer.step()``, zero_grad)
    after a warm-up step: its peak, the categories at the peak, and gradients after backward."""
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(1)
    model = recipe.module
    inputs = step_inputs(recipe, batch, seq)
    opt = torch.optim.AdamW(model.parameters(), foreach=True)
    loss_of(recipe, inputs).backward()
    opt.step()
    opt.zero_grad()
    tracker = MemTracker()
    tracker.track_external(model, opt, *inputs.values())
    with tracker:
        loss = loss_of(recipe, inputs)
        loss.backward()
        after_backward = next(iter(tracker.get_tracker_snapshot("current").values()))
        opt.step()
        opt.zero_grad()
    del loss
    peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    out = {str(k).rsplit(".", 1)[-1]: v for k, v in peak.items()}
    out["GRAD_AFTER_BACKWARD"] = next(v for k, v in after_backward.items() if str(k).endswith("GRAD"))
    return out
