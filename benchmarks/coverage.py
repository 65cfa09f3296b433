"""Coverage: op-rule counts, and which transformers architectures irtools costs in full.

Prints the core-ATen and ONNX default-domain rule coverage (where those modules exist), then
one row per architecture — the tiny configs of ``irtools.recipes.hf_configs`` (mixture of
experts, decoders, encoder-decoders, CLIP, Mamba; ``MORE``: BART, wav2vec2, LLaVA, Mamba-2,
GPTBigCode, ConvNeXt, Swin) and the held-out set of
``tests/test_hf_models.py`` — each built on the CPU with real random weights, eager
attention, prefill at batch_size 3, seq_len 5 (decoder 11):

- runs: the config builds, the recipe derives inputs, torch.export captures it;
- unsupported: ops without a rule, and their share of FLOPs, estimated as one flop per
  output element of those nodes over (irtools' total + that estimate) — their true cost is
  unknown, which is the point;
- matmul / FlopCounterMode: the sum of node ``matmul_flops`` over FlopCounterMode's total on
  transformers' own layers (eager expert loop, eager scan); 1.000 is exact.

Usage: python benchmarks/coverage.py [arch ...]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode


def op_coverage() -> list[str]:
    lines = []
    for module, fn, label in (("passes.costs.coverage", "aten_coverage", "core ATen packets"),
                              ("passes.costs.onnx_coverage", "onnx_coverage", "ONNX default-domain ops")):
        try:
            all_ops, missing = getattr(__import__(module, fromlist=[fn]), fn)()
        except (ImportError, AttributeError) as exc:
            lines.append(f"{label}: not available ({exc})")
            continue
        shown = ", ".join(missing[:12]) + (" ..." if len(missing) > 12 else "")
        lines.append(f"{label}: {len(all_ops) - len(missing)} of {len(all_ops)} have a rule"
                     + (f"; missing: {shown}" if missing else ""))
    return lines


def architectures() -> dict[str, dict]:
    from irtools.recipes.hf_configs import MORE, TINY

    archs = {name: ("issue 13", fields) for name, fields in TINY.items()}
    archs.update({name: ("more", fields) for name, fields in MORE.items()})
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's tests package
    try:
        from tests.test_hf_models import TINY as HELD_OUT
    except ImportError:
        HELD_OUT = {}
    archs.update({name: ("held-out", fields) for name, fields in HELD_OUT.items() if name not in archs})
    return archs


def measure(fields: dict) -> dict:
    from irtools import analyze_module
    from irtools.recipes import hf

    config = hf.make_config(fields, attn="eager")
    torch.manual_seed(0)
    model = hf.build_model(config, device="cpu")
    recipe = hf.recipe(config, "prefill", fields["model_type"], model=model)
    start = time.perf_counter()
    result = analyze_module(model, recipe.args, recipe.kwargs, recipe.dims)
    seconds = time.perf_counter() - start
    sizes = {dim: value.shape[axis] for name, axes in recipe.dims.items() for axis, dim in axes.items()
             for value in [recipe.kwargs[name.partition(".")[0]]] if isinstance(value, torch.Tensor)}
    nodes = [a for _, a in result.ir.nodes()]
    matmul = result.value(sympy.Add(*(a["matmul_flops"] for a in nodes)), sizes)
    flops = result.value(result.totals["flops"], sizes) or 0
    unsupported = [a for a in nodes if a["unsupported"]]
    guess = sum(result.value(sum((t.numel for t in a["outputs"] if t is not None), sympy.Integer(0)), sizes) or 0
                for a in unsupported)
    hf.undo_capture(model)
    model.config._experts_implementation = "eager"  # the reference: transformers' loop over the experts hit
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**recipe.kwargs)
    reference = counter.get_total_flops()
    return {
        "ok": True, "seconds": seconds, "unsupported": sorted({a["op"] for a in unsupported}),
        "share": guess / (flops + guess) if flops + guess else 0.0,
        "ratio": matmul / reference if reference else float("nan"),
    }


def main(names: list[str]) -> int:
    warnings.filterwarnings("ignore")
    for line in op_coverage():
        print(line)
    archs = architectures()
    names = names or list(archs)
    print(f"\n{'architecture':<12} {'set':<9} {'runs':<5} {'capture':>8} {'unsupp.':>8} {'matmul/FCM':>11}  unsupported ops")
    failed = 0
    for name in names:
        group, fields = archs[name]
        try:
            row = measure(fields)
        except Exception as exc:  # noqa: BLE001 - a row per architecture, whatever breaks
            failed += 1
            print(f"{name:<12} {group:<9} {'no':<5} {'':>8} {'':>8} {'':>11}  {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
            continue
        print(f"{name:<12} {group:<9} {'yes':<5} {row['seconds']:>7.1f}s {row['share']:>8.2%} {row['ratio']:>11.3f}  "
              f"{', '.join(row['unsupported']) or '-'}")
    print(f"\n{len(names) - failed} of {len(names)} architectures run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
