"""Per-device training memory from the sharded joint graph against MemTracker in a fake rank.

A tiny Llama (and GPT-2) is parallelized with ColwiseParallel / RowwiseParallel on torch's fake
process group (``tests/test_parallel.py``'s plan) and trained one steady-state step (a warm-up
step first, so that Adam's states exist; fp32, eager attention, ``Adam(foreach=False)``) under
MemTracker. irtools captures the joint forward+backward+optimizer graph once, shards it
(``passes.parallel.joint_shard``) and costs one rank's step (``passes.train_memory``);
``device_model(..., joint=...)`` turns it into the per-device memory of a layout.
"""

import pytest
import torch

pytest.importorskip("transformers")
dist = pytest.importorskip("torch.distributed")

from irtools import analyze_module  # noqa: E402
from irtools.pipeline import Options, capture_recipe, run_ir  # noqa: E402
from irtools.recipes import hf  # noqa: E402
from irtools.recipes.train import train_recipe  # noqa: E402
from passes.parallel.device import Layout, device_model  # noqa: E402
from passes.parallel.joint_shard import joint_tensor_parallel  # noqa: E402
from passes.parallel.plan import evaluate_layout  # noqa: E402
from tests.test_parallel import TINY, conv1d_to_linear, fake_process_group, parallelize  # noqa: E402

WORLD = 8  # not test_parallel's 4: DTensor caches plans by mesh, and that module's group is destroyed
POINTS = ((2, 16), (4, 64), (8, 128))
FP32 = {"w_bytes": 4, "a_bytes": 4, "kv_bytes": 4}


@pytest.fixture(scope="module", autouse=True)
def fake_pg():
    import tests.test_parallel as tpm

    world, tpm.WORLD = tpm.WORLD, WORLD  # parallelize builds its (dp, tp) mesh over WORLD ranks
    with fake_process_group(WORLD):
        yield
    tpm.WORLD = world


def build(arch):
    config = hf.make_config(dict(TINY[arch]), attn="eager")
    torch.manual_seed(0)
    model = hf.build_model(config, device="cpu")
    return config, (conv1d_to_linear(model) if arch == "gpt2" else model)


@pytest.fixture(scope="module")
def models():
    """arch -> (forward analysis, annotated joint graph), each captured once."""
    cache = {}

    def get(arch):
        if arch not in cache:
            config, model = build(arch)
            recipe = hf.recipe(config, "prefill", arch, model=model, all_logits=True)
            kwargs = {k: (torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) else v)
                      for k, v in recipe.kwargs.items()}
            forward = analyze_module(model.eval(), (), kwargs, recipe.dims)
            recipe.config = config
            joint = run_ir(capture_recipe(train_recipe(recipe)), Options(scenario="train", optimizer="adam:single",
                                                                          bindings=dict(FP32))).ir
            cache[arch] = (forward, joint)
        return cache[arch]

    def full(arch):  # the joint graph captured with full recompute
        key = (arch, "full")
        if key not in cache:
            config, model = build(arch)
            recipe = hf.recipe(config, "prefill", arch, model=model, all_logits=True)
            recipe.config = config
            cache[key] = run_ir(capture_recipe(train_recipe(recipe)), Options(
                scenario="train", optimizer="adam:single", recompute="full", bindings=dict(FP32))).ir
        return cache[key]

    get.full = full
    return get


def memtracker(arch, tp, b, s, checkpoint=False) -> dict[str, int]:
    """MemTracker over a steady-state step of one rank: its peak categories, and the bytes of the
    rank's local gradients after backward, the embedding's as a shard (DTensor's vocab-parallel
    embedding returns its gradient replicated; Megatron-LM keeps it split)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    model = parallelize(build(arch)[1].train(), arch, tp, False)
    if checkpoint:  # every decoder layer recomputed in backward (full recompute)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.Adam(model.parameters(), foreach=False)
    ids = torch.randint(0, 128, (b, s))
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()  # warm-up: Adam's states exist
    opt.step()
    opt.zero_grad(set_to_none=True)
    tracker = MemTracker()
    tracker.track_external(model, opt)
    with tracker:
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        grads = 0
        for name, p in model.named_parameters():
            g = p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
            shard = p.to_local() if hasattr(p, "to_local") else p
            if g.shape != shard.shape:  # DTensor returns the vocab-parallel embedding's gradient replicated
                assert name.endswith(("embed_tokens.weight", "wte.weight")), name
                g = shard  # Megatron (and irtools) keep it split like the table
            grads += g.numel() * g.element_size()
        opt.step()
        opt.zero_grad(set_to_none=True)
    del loss
    peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    out = {str(getattr(k, "value", k)): v for k, v in peak.items()}
    out["LocalGradients"] = grads
    return out


def check(models, arch, tp, points=POINTS):
    forward, joint = models(arch)
    plan = joint_tensor_parallel(joint)
    assert not plan.unknown and not plan.tp.failed
    for b, s in points:
        real = memtracker(arch, tp, b, s)
        model = device_model(forward.ir, "train", "h100-sxm", bindings={"seq_len": s, **FP32}, joint=joint)
        mem = evaluate_layout(model, Layout(tp=tp, micro_batch=b))["first"]["memory"]
        assert mem["weights"] == real["Parameter"], (b, s)
        assert mem["optimizer"] == real["Optstate"], (b, s)  # moments + the 4-byte step counters
        assert mem["gradients"] == real["LocalGradients"], (b, s)
        assert abs(mem["total"] / real["Total"] - 1) < 0.05, (b, s, mem, real)


def test_llama_tp2_training_memory_within_5pct_of_memtracker_parts_exact(models):
    check(models, "llama", 2)


def test_full_recompute_training_memory_within_5pct_of_memtracker(models):
    """A layout with full recompute reads the joint graph captured with it: within 5 % of
    MemTracker over transformers' per-layer gradient checkpointing in the rank (tp = 2)."""
    forward, joint = models("llama")
    for b, s in POINTS[1:]:
        real = memtracker("llama", 2, b, s, checkpoint=True)
        model = device_model(forward.ir, "train", "h100-sxm", bindings={"seq_len": s, **FP32}, joint=joint,
                             joint_full=models.full("llama"))
        kept, redone = (evaluate_layout(model, Layout(tp=2, micro_batch=b, recompute=r))["first"]["memory"]
                        for r in ("none", "full"))
        assert redone["weights"] == kept["weights"] and redone["optimizer"] == kept["optimizer"]
        assert abs(redone["total"] / real["Total"] - 1) < 0.05, (b, s, redone, real)
        assert redone["activations"] < 0.75 * kept["activations"]


@pytest.mark.slow
def test_llama_tp4_training_memory_within_5pct_of_memtracker(models):
    check(models, "llama", 4)


@pytest.mark.slow
def test_gpt2_tp2_training_memory_within_5pct_of_memtracker(models):
    check(models, "gpt2", 2, ((2, 16), (4, 32), (8, 64)))  # n_positions = 64


def test_splits_carried_through_backward_and_optimizer(models):
    """Every column/row weight's gradient and Adam moments are split like the weight; the
    input gradients of the column projections are partial sums (all-reduced)."""
    _, joint = models("llama")
    plan = joint_tensor_parallel(joint)
    tp, info = plan.tp, joint.meta.training
    assert len(tp.columns) == 2 * 5 + 1 and len(tp.rows) == 2 * 2  # q, k, v, gate, up + lm_head; o, down
    for param, grad in info.gradients.items():
        if param in tp.splits:
            assert tp.splits[grad] == tp.splits[param], param
            for state in ("exp_avg", "exp_avg_sq"):
                assert tp.splits[f"{param}.{state}"] == tp.splits[param]
        else:
            assert grad not in tp.splits, param  # norms: whole
    partial_bw = [n for n in tp.partial.values() if joint.node(n).phase == "backward"]
    assert len(partial_bw) == 2 * 5 + 1  # the input gradient of each column (q, k, v, gate, up; lm_head)
