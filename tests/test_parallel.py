"""Tensor / sequence parallelism against torch.distributed.tensor.parallel, and closed forms.

Tiny Llama-style (GQA) and GPT-2 models are parallelized with ColwiseParallel / RowwiseParallel
(with and without SequenceParallel) on torch's fake process group, in this process; the
collectives DTensor issues in forward and backward are counted with CommDebugMode (their NCCL
sizes recorded beside it) and must equal irtools' list for the same degree. Per-device matmul
FLOPs are checked against FlopCounterMode on a model built in one rank's shapes; per-device
memory against MemTracker run in a fake rank.
"""

import contextlib
from collections import Counter

import pytest
import sympy
import torch

pytest.importorskip("transformers")
dist = pytest.importorskip("torch.distributed")
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.tensor import Replicate, Shard  # noqa: E402
from torch.distributed.tensor.debug import CommDebugMode  # noqa: E402
from torch.distributed.tensor.parallel import (  # noqa: E402
    ColwiseParallel,
    PrepareModuleInput,
    PrepareModuleOutput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from irtools import analyze_module  # noqa: E402
from irtools.ir.symbols import evaluate, sym  # noqa: E402
from irtools.recipes import hf  # noqa: E402
from passes import collectives as coll  # noqa: E402
from passes.parallel import dp, pp  # noqa: E402
from passes.parallel.device import Layout, device_model  # noqa: E402
from passes.parallel.plan import evaluate_layout  # noqa: E402
from passes.parallel.shard import backward_collectives, forward_collectives, shard  # noqa: E402
from passes.parallel.sp import sequence_parallel  # noqa: E402
from passes.parallel.tp import tensor_parallel  # noqa: E402

WORLD, B, S = 4, 3, 8
TINY = {
    "llama": {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8,
              "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 128, "tie_word_embeddings": False},
    "gpt2": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 128, "n_positions": 64,
             "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0},
}
FUNCOL = {"all_reduce": "all_reduce", "all_gather_into_tensor": "all_gather", "reduce_scatter_tensor": "reduce_scatter",
          "all_to_all_single": "all_to_all"}


@contextlib.contextmanager
def fake_process_group(world: int):
    """torch's fake process group of ``world`` ranks (this process is rank 0), unless one is up."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    started = not dist.is_initialized()
    if started:
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
    try:
        yield
    finally:
        if started:
            dist.destroy_process_group()


@pytest.fixture(scope="module", autouse=True)
def fake_pg():
    with fake_process_group(WORLD):
        yield


def conv1d_to_linear(model):
    """GPT-2's Conv1D as nn.Linear (DTensor's ColwiseParallel takes Linear and Embedding only)."""
    from transformers.pytorch_utils import Conv1D

    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, Conv1D):
                lin = torch.nn.Linear(*child.weight.shape)
                with torch.no_grad():
                    lin.weight.copy_(child.weight.T)
                    lin.bias.copy_(child.bias)
                setattr(mod, name, lin)
    return model


def tiny(arch, attn="sdpa", **overrides):
    from transformers import AutoModelForCausalLM

    config = hf.make_config({**TINY[arch], **overrides}, attn=attn)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    return config, (conv1d_to_linear(model) if arch == "gpt2" else model)


def capture(arch, attn="sdpa"):
    config, model = tiny(arch, attn)
    recipe = hf.recipe(config, "prefill", arch, model=model, all_logits=True)
    kwargs = {k: (torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) else v)
              for k, v in recipe.kwargs.items()}
    return analyze_module(model, (), kwargs, recipe.dims)


@pytest.fixture(scope="module")
def captured():
    return {arch: capture(arch) for arch in TINY}


def parallelize(model, arch, tp, sp):
    """The usual plan: Colwise q/k/v and up projections, Rowwise o / down, vocab-parallel
    embedding and lm_head; with ``sp`` norms under SequenceParallel and blocks gathering their input."""
    mesh = init_device_mesh("cpu", (WORLD // tp, tp), mesh_dim_names=("dp", "tp"))["tp"]
    row = (lambda: RowwiseParallel(output_layouts=Shard(1), use_local_output=False)) if sp else RowwiseParallel
    gather = PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=True)
    if arch == "llama":
        blocks, cols, rows = model.model.layers, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                  "mlp.gate_proj", "mlp.up_proj"], ["self_attn.o_proj", "mlp.down_proj"]
        norms, attn, embed, final = ["input_layernorm", "post_attention_layernorm"], "self_attn", "model.embed_tokens", "model.norm"
        attn_gather = PrepareModuleInput(input_kwarg_layouts={"hidden_states": Shard(1)}, use_local_output=True,
                                         desired_input_kwarg_layouts={"hidden_states": Replicate()})
    else:
        blocks, cols, rows = model.transformer.h, ["attn.c_attn", "mlp.c_fc"], ["attn.c_proj", "mlp.c_proj"]
        norms, attn, embed, final = ["ln_1", "ln_2"], "attn", "transformer.wte", "transformer.ln_f"
        attn_gather = gather
        for b in blocks:
            b.attn.split_size = b.attn.embed_dim // tp  # the fused QKV output splits into local q, k, v
    for b in blocks:
        plan = {**{c: ColwiseParallel() for c in cols}, **{r: row() for r in rows}}
        if sp:
            plan.update({n: SequenceParallel() for n in norms})
            plan.update({attn: attn_gather, "mlp": gather})
        parallelize_module(b, mesh, plan)
    top = {embed: RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1) if sp else Replicate(),
                                  use_local_output=not sp),
           "lm_head": ColwiseParallel(input_layouts=Shard(1) if sp else Replicate(), output_layouts=Replicate())}
    if sp:
        top[final] = SequenceParallel()
        if arch == "gpt2":  # the position embedding joins the sequence-split residual as a slice
            top["transformer.wpe"] = PrepareModuleOutput(output_layouts=Replicate(), desired_output_layouts=Shard(1),
                                                         use_local_output=False)
    parallelize_module(model, mesh, top)
    return model


class CommBytes(CommDebugMode):
    """CommDebugMode that also records each collective's NCCL size (gathered output, reduced input)."""

    def __init__(self, group: int):
        super().__init__()
        self.group, self.log = group, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if not isinstance(func, torch._ops.HigherOrderOperator) and func._overloadpacket in self.comm_registry:
            kind = FUNCOL[func._overloadpacket.__name__]
            t = args[0]
            size = t.numel() * t.element_size() * (self.group if kind == "all_gather" else 1)
            self.log.append((kind, "backward" if self.advanced_module_tracker.is_bw else "forward", size))
        return out


def irtools_collectives(result, sp: bool, flavor="dtensor"):
    ir = result.ir
    plan = tensor_parallel(ir)
    spp = sequence_parallel(ir, plan) if sp else None
    per_device = shard(ir, plan, spp)
    return per_device, forward_collectives(per_device) + backward_collectives(ir, plan, spp, flavor)


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("sp", [False, True], ids=["tp", "tp+sp"])
@pytest.mark.parametrize("tp", [2, 4])
def test_collectives_equal_dtensor(captured, arch, sp, tp):
    _, ours = irtools_collectives(captured[arch], sp)
    bind = {"batch_size": B, "seq_len": S, "a_bytes": 4, "tp": tp}
    mine = Counter((c.kind, c.phase, evaluate(c.nbytes, bind)) for c in ours)
    _, model = tiny(arch)
    parallelize(model, arch, tp, sp)
    with CommBytes(tp) as comm:
        model(input_ids=torch.randint(0, 128, (B, S)), use_cache=False).logits.sum().backward()
    assert comm.get_total_counts() == len(ours)
    assert mine == Counter(comm.log)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_megatron_closed_form_per_layer(captured, arch):
    """Megatron-LM: per layer 2 all-reduces of b·s·h·a_bytes in forward and 2 in backward
    (one per whole input of the fused column projections), each moving 2(tp−1)/tp of its size
    per device on a ring."""
    ir = captured[arch].ir
    _, ours = irtools_collectives(captured[arch], False, flavor="megatron")
    size = sym("batch_size") * sym("seq_len") * 64 * sym("a_bytes")
    stack = "model.layers" if arch == "llama" else "transformer.h"
    for layer in range(2):
        mine = [c for c in ours if c.module.startswith(f"{stack}.{layer}.")]
        assert sorted((c.kind, c.phase) for c in mine) == [("all_reduce", "backward")] * 2 + [("all_reduce", "forward")] * 2
        assert all(sympy.expand(c.nbytes - size) == 0 for c in mine)
    tp = sym("tp")
    assert sympy.simplify(coll.wire_bytes("all_reduce", size, tp) - size * 2 * (tp - 1) / tp) == 0
    link = coll.Link("nvlink", 450e9, 1e-6)
    t = coll.ring_time("all_reduce", size, tp, link)
    assert sympy.simplify(t - (size * 2 * (tp - 1) / tp / 450e9 + 2 * (tp - 1) * 1e-6)) == 0
    assert len(ir.nodes()) > 0


def test_sequence_parallel_replaces_allreduce_by_rs_and_ag(captured):
    """Under SP each forward all-reduce becomes a reduce-scatter plus an all-gather of the same size."""
    _, plain = irtools_collectives(captured["llama"], False, "megatron")
    _, seq = irtools_collectives(captured["llama"], True, "megatron")
    fwd = lambda cs, k: [c for c in cs if c.phase == "forward" and c.kind == k]  # noqa: E731
    assert len(fwd(seq, "reduce_scatter")) == len(fwd(plain, "all_reduce")) == 5
    assert len(fwd(seq, "all_gather")) == 5 + 1  # four block inputs + lm_head input, and the logits
    assert not fwd(seq, "all_reduce")


def _local_model(tp):
    """A Llama in one rank's shapes: heads, KV heads, FFN and vocab divided by ``tp`` (eager
    attention: FlopCounterMode counts its two matmuls; CPU SDPA kernels it does not count)."""
    from transformers import AutoModelForCausalLM

    f = TINY["llama"]
    config = hf.make_config({**f, "num_attention_heads": 8 // tp, "num_key_value_heads": 4 // tp, "head_dim": 8,
                             "intermediate_size": 128 // tp, "vocab_size": 128 // tp}, attn="eager")
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("tp", [2, 4])
def test_per_device_matmul_flops(captured, tp):
    from torch.utils.flop_counter import FlopCounterMode

    result = captured["llama"]
    ir = result.ir
    plan = tensor_parallel(ir)
    per_device = shard(ir, plan)
    for n in plan.columns + plan.rows:  # split layers: exactly total / tp
        assert sympy.expand(per_device.node(n).matmul_flops - ir.node(n).matmul_flops / sym("tp")) == 0
    replicated = {ir.node(n).module for n in plan.replicated(ir)}
    assert {"model.layers.0.input_layernorm", "model.layers.1.post_attention_layernorm", "model.norm",
            "model.rotary_emb", "model.layers.0"} <= replicated  # norms, rotary tables, residual adds
    assert not any(m.endswith(("_proj", "lm_head")) for m in replicated)
    total = sympy.Add(*(a.matmul_flops for _, a in per_device.nodes()))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        _local_model(tp)(input_ids=torch.randint(0, 128 // tp, (B, S)), use_cache=False)
    assert evaluate(total, {"batch_size": B, "seq_len": S, "tp": tp}) == counter.get_total_flops()


def _memtracker_peak(model, ids):
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    tracker.track_external(model)
    with tracker, torch.no_grad():
        model(input_ids=ids, use_cache=False)
    snap = next(iter(tracker.get_tracker_snapshot("peak").values()))
    params = next(v for k, v in snap.items() if getattr(k, "value", "") == "Parameter")
    return snap["Total"], params


@pytest.fixture(scope="module")
def memory_points():
    """Eager attention: transformers' SDPA path skips the causal mask (and GQA's repeat_kv
    copies) when it runs eagerly but builds them when traced, so an SDPA capture is not the
    program MemTracker watches; eager attention is the same program both ways."""
    from passes.memory import memory

    ir = capture("llama", "eager").ir
    whole = memory(ir)
    per_device = memory(shard(ir, tensor_parallel(ir)))
    points = []
    for b, s in ((2, 16), (4, 64), (8, 128)):
        ids = torch.randint(0, 128, (b, s))
        full_mt, _ = _memtracker_peak(tiny("llama", "eager")[1], ids)
        rank_mt, params = _memtracker_peak(parallelize(tiny("llama", "eager")[1], "llama", 2, False), ids)
        bind = {"batch_size": b, "seq_len": s, "tp": 2, "w_bytes": 4, "a_bytes": 4, "kv_bytes": 4}
        points.append({"full": (evaluate(whole.peak, bind), full_mt), "rank": (evaluate(per_device.peak, bind), rank_mt),
                       "weights": (evaluate(per_device.held["weights"], bind), params)})
    return points


def test_per_device_weights_exact_and_sharding_adds_no_memory_error(memory_points):
    """The rank's parameter bytes equal MemTracker's exactly; the per-device peak is off from
    MemTracker's by the same ratio as the memory pass on the unsharded model (within 5 points):
    sharding itself adds no error."""
    for p in memory_points:
        assert p["weights"][0] == p["weights"][1]
        full_ratio = p["full"][0] / p["full"][1]
        rank_ratio = p["rank"][0] / p["rank"][1]
        assert abs(rank_ratio - full_ratio) < 0.05, p


def test_per_device_memory_within_5pct_of_memtracker(memory_points):
    for p in memory_points:
        assert abs(p["rank"][0] / p["rank"][1] - 1) < 0.05, p


def test_bubble_fraction_and_step():
    p, m = sym("pp"), sym("micro_batches")
    assert sympy.simplify(pp.bubble_fraction(p, m) - (p - 1) / (m + p - 1)) == 0
    assert pp.bubble_fraction(4, 8) == pytest.approx(3 / 11)


def test_zero_memory_closed_forms():
    """ZeRO paper, section 5: Ψ parameters, mixed-precision Adam (K = 12)."""
    psi, d = sym("psi"), sym("dp")
    expect = {0: 2 * psi + 2 * psi + 12 * psi, 1: 2 * psi + 2 * psi + 12 * psi / d,
              2: 2 * psi + (2 * psi + 12 * psi) / d, 3: (2 * psi + 2 * psi + 12 * psi) / d}
    for stage, total in expect.items():
        assert sympy.simplify(sum(dp.zero_memory(psi, d, stage).values()) - total) == 0
    # bytes on the wire per step: 2Ψ (as 2-byte gradients, counted as reduce-scatter + all-gather) for
    # stages 0-2, 1.5x that for stage 3
    for stage in (0, 1, 2):
        assert sympy.simplify(dp.wire_bytes_per_step(psi, stage) - 2 * (2 * psi)) == 0
    assert sympy.simplify(dp.wire_bytes_per_step(psi, 3) - 3 * (2 * psi)) == 0


def test_device_model_train_formulas(captured):
    """The per-device report: bubble (p−1)/(m+p−1) in the formulas, ZeRO-1 memory 2Ψ+2Ψ+12Ψ/dp
    with Ψ the rank's parameters, and the numbers equal the formulas at a layout."""
    model = device_model(captured["llama"].ir, "train", "h100-sxm", bindings={"seq_len": S})
    lay = Layout(tp=2, pp=2, dp=2, micro_batch=B, micro_batches=4, zero=1)
    f = model.formulas(lay)
    p, m = sym("pp"), sym("micro_batches")
    assert sympy.simplify(f["step"]["bubble_fraction"] - (p - 1) / (m + p - 1)) == 0
    num = evaluate_layout(model, lay)
    assert num["step"]["bubble_fraction"] == pytest.approx(1 / 5)
    psi = num["first"]["params"]
    mem = num["first"]["memory"]
    assert (mem["weights"], mem["gradients"], mem["optimizer"]) == pytest.approx((2 * psi, 2 * psi, 12 * psi / 2))
    at = {"tp": 2, "pp": 2, "dp": 2, "ep": 1, "batch_size": B, "micro_batches": 4}
    for key in ("time", "tokens_per_s", "bubble"):
        assert float(f["step"][key].xreplace({sym(k): v for k, v in at.items()})) == pytest.approx(num["step"][key], rel=1e-9)
    # every parameter of the rank is counted: the per-device graph's parameter elements at tp = 2
    per_device = model.variant(False).sharded
    elements = sum(evaluate(v.spec.numel, {"tp": 2}) for v in per_device.values.values()
                   if v.producer is None and v.spec is not None and v.spec.role == "weight")
    assert num["first"]["params"] + num["last"]["params"] == pytest.approx(elements)
