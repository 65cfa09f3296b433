"""The ``irtools`` command line. Errors: one line on stderr, exit status 2 (``--debug``: traceback)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile

from irtools.ir.errors import IrtoolsError, UsageError

EXIT_BAD_INPUT = 2




MAX_BINDING = 2**53  # larger values are not exact as floats (1e30 would bind 1000000000000000019884624838656)


def parse_number(flag: str, name: str, text: str) -> float:
    """A finite number of at most :data:`MAX_BINDING` (an int when integral); one-line UsageError otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} {name}: {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"{flag} {name}={text}: not a finite number")
    if abs(value) > MAX_BINDING:
        raise UsageError(f"{flag} {name}={text}: too large (at most {MAX_BINDING})")
    return int(value) if value.is_integer() else value


def parse_dims(items: list[str]) -> dict[str, float]:
    """``["seq_len=2048", "w_bytes=0.5"]`` -> ``{"seq_len": 2048, "w_bytes": 0.5}``."""
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--dim expects NAME=VALUE, got {item!r}")
        out[name.strip()] = parse_number("--dim", name, text)
    return out


ONNX_IGNORED = {"--scenario decode": "decode needs a KV cache the file does not describe",
                "--scenario train": "a training step is traced from the model's torch code (autograd)",
                "--symbolic-config": "an ONNX file has no config to write formulas in",
                "--collapse-layers": "an ONNX graph is not traced per block"}


def check_onnx_options(args, argv: list[str]) -> None:
    """Options that mean nothing for an ONNX input are refused (one line) rather than ignored."""
    if not (getattr(args, "model", None) or "").endswith(".onnx"):
        return
    given = {
        "--scenario decode": getattr(args, "scenario", "prefill") == "decode",
        "--scenario train": getattr(args, "scenario", "prefill") == "train",
        "--symbolic-config": bool(getattr(args, "symbolic_config", False)),
        "--collapse-layers": any(a.startswith("--collapse-l") for a in argv),
    }
    for option, why in ONNX_IGNORED.items():
        if given[option]:
            raise UsageError(f"{option} does not apply to an ONNX file ({why})")


def write_output(text: str, path: str | None, force: bool = False) -> None:
    """Print, or write atomically (never half-written; an existing file needs ``force``)."""
    if not path:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from irtools.export import write_atomic

    write_atomic(path, text, force=force)


@contextlib.contextmanager
def quiet_stderr(enabled: bool = True):
    """Silence what torch prints on stderr during capture (graph dumps, warnings) at the fd level."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, contextlib.redirect_stderr(io.StringIO()):
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (status 2), like every other error."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"irtools: error: {message} (see {self.prog} --help)\n")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None, help="preset name (default gpt2-attention), model.onnx, or package.module:Class "
                   "(imported from sys.path; the working directory is searched last)")
    p.add_argument("--scenario", choices=("prefill", "decode", "train"), default="prefill",
                   help="train: forward, backward and optimizer step of the model with its loss")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE", help="bind a symbol (repeatable)")
    p.add_argument("--module", default="", help="module path whose forward gets the line table (default: the root)")
    p.add_argument("--optimizer", default="adamw", metavar="NAME[:VARIANT]",
                   help="train: sgd (momentum 0.9), adam or adamw; variant single, foreach (default) or fused")
    p.add_argument("--recompute", choices=("none", "selective", "full"), default="none",
                   help="train: activation recomputation (selective: attention scores; full: every block's forward)")
    p.add_argument("--micro-batches", type=int, default=1, metavar="N",
                   help="train: forward+backward passes accumulated per optimizer step")
    p.add_argument("--symbolic-config", action="store_true", help="write formulas in config symbols (hidden_size, ...)")
    p.add_argument("--no-collapse", dest="collapse_layers", action="store_false",
                   help="trace every block (default: three blocks of a verified-identical stack, repeated num_layers times)")
    p.add_argument("--collapse-layers", dest="collapse_layers", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--target", default=None, help="accelerator for the roofline (see `irtools targets`)")
    p.add_argument("--mode", choices=("eager", "fused", "flash"), default=None, help="kernel fusion mode")
    p.add_argument("--strict", action="store_true", help="exit 2 when an op has no cost rule (totals would be lower bounds)")
    p.add_argument("--kv-cache", choices=("copy", "static"), default=None,
                   help="decode cache writes: copy (concatenate, as HF DynamicCache) or static (in place); "
                        "default static in fused/flash modes, copy otherwise")
    p.add_argument("--all-logits", action="store_true",
                   help="a causal LM's head on every position (default: the last, as generation does)")
    p.add_argument("--reserve", type=float, default=0.10, metavar="FRACTION",
                   help="share of the target's memory kept free for the CUDA context, allocator and workspaces "
                        "(default 0.10)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="irtools", description="Symbolic FLOP/byte cost analysis of model graphs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command")
    a = sub.add_parser("analyze", help="analyze a model and print per-line costs")
    _add_model_args(a)
    a.add_argument("--format", choices=("table", "json", "md", "csv"), default="table")
    a.add_argument("-o", "--output", default=None, help="write to this file instead of stdout")
    a.add_argument("--force", action="store_true", help="overwrite an existing file")
    a.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    e = sub.add_parser("export", help="write the analysis in a graph / report format")
    _add_model_args(e)
    e.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    e.add_argument("-o", "--output", required=True, help="output file")
    e.add_argument("--depth", type=int, default=None, help="module nesting shown (dot, modules-chart)")
    e.add_argument("--force", action="store_true", help="overwrite an existing file")
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    n = sub.add_parser("annotate", help="write per-node costs into an ONNX model's metadata_props")
    n.add_argument("input", help="model.onnx")
    n.add_argument("-o", "--output", required=True, help="annotated model.onnx")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    n.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub.add_parser("targets", help="list accelerator targets")
    c = sub.add_parser("calibrate", help="measure this machine and write a cpu-local target")
    c.add_argument("-o", "--output", default=None, help="target file (default: the user target folder)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--force", action="store_true", help="overwrite an existing target file")
    w = sub.add_parser("sweep", help="estimated time over a grid of bindings and targets")
    _add_model_args(w)
    w.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...", help="values of one symbol (repeatable)")
    w.add_argument("--targets", default="h100-sxm", help="comma-separated target names")
    w.add_argument("-o", "--output", default=None, help="write CSV here instead of stdout")
    w.add_argument("--force", action="store_true", help="overwrite an existing file")
    w.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    f = sub.add_parser("fit", help="largest batch / context whose peak memory fits a target")
    _add_model_args(f)
    f.add_argument("--solve", choices=("batch_size", "seq_len", "cache_len", "frontier"), default="batch_size",
                   help="what to maximize (frontier: the largest context for each power-of-two batch)")
    f.add_argument("--format", choices=("table", "json"), default="table")
    f.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    _add_plan_parser(sub)
    sub.add_parser("presets", help="list built-in models")
    o = sub.add_parser("ops", help="every op with a cost rule, and coverage of core ATen and the ONNX default domain")
    o.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _add_plan_parser(sub) -> None:
    p = sub.add_parser("plan", help="search the tp/pp/dp/ep layouts of a model on N devices (docs/parallel.md)")
    p.add_argument("model", nargs="?", default=None, help="preset, config.json or package.module:Class")
    p.add_argument("--target", required=True, help="accelerator (see `irtools targets`)")
    p.add_argument("--devices", type=int, required=True, help="number of devices")
    p.add_argument("--scenario", choices=("train", "prefill", "decode"), default="train")
    p.add_argument("--objective", choices=("throughput", "latency"), default="throughput")
    p.add_argument("--batch", type=int, default=None,
                   help="train: global batch in sequences (default 512); prefill: sequences per micro-batch")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (train, prefill; default 2048)")
    p.add_argument("--context", type=int, default=None, help="decode: tokens in the KV cache (default 2048)")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE", help="bind another symbol (repeatable)")
    p.add_argument("--mode", choices=("eager", "fused", "flash"), default="flash", help="kernel fusion mode")
    p.add_argument("--no-overlap", dest="overlap", action="store_false",
                   help="data-parallel traffic does not overlap compute (default: it hides behind the backward)")
    p.add_argument("--top", type=int, default=10, help="layouts shown")
    p.add_argument("--reserve", type=float, default=0.10, metavar="FRACTION", help="share of memory kept free")
    p.add_argument("--format", choices=("table", "json", "html"), default="table")
    p.add_argument("-o", "--output", default=None, help="write to this file instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


EXPORT_FORMATS = (
    "json", "csv", "md", "dot", "graphml", "html", "model-explorer", "trace", "roofline", "modules-chart", "module-analysis",
    "memory-chart",
)


def _tty_progress():
    """A progress line on the terminal (a duplicate of fd 2, which capture silences)."""
    if not os.isatty(2):
        return None, None
    out = os.fdopen(os.dup(2), "w")

    def report(done: int, total: int) -> None:
        out.write(f"\rirtools: {done}/{total} nodes" + ("\r\033[K" if done == total else ""))
        out.flush()

    return report, out


def _options(args, **overrides):
    """The pipeline options of a model command's arguments."""
    from irtools.pipeline import Options

    fields = dict(
        model=args.model, scenario=args.scenario, bindings=parse_dims(args.dim), line_module=args.module,
        symbolic_config=args.symbolic_config, collapse_layers=args.collapse_layers, target=args.target, mode=args.mode,
        kv_cache=args.kv_cache, all_logits=args.all_logits, memory_reserve=args.reserve,
        optimizer=args.optimizer, recompute=args.recompute, micro_batches=args.micro_batches,
    )
    fields.update(overrides)
    return Options(**fields)


def _run_analysis(args, **overrides):
    from irtools import pipeline

    options = _options(args, **overrides)
    report, out = _tty_progress() if (args.model or "").endswith(".onnx") else (None, None)
    options.progress = report
    try:
        with quiet_stderr(not args.debug):
            result = pipeline.run(options)
    finally:
        if out is not None:
            out.close()
    if getattr(args, "strict", False) and result.unsupported:
        ops = ", ".join(f"{op}×{n}" for op, n in result.unsupported)
        raise UsageError(f"--strict: no cost rule for {ops} (the totals would be lower bounds)")
    return result


def _export(args) -> int:
    from irtools.export import EXPORTERS, as_report, write_atomic

    if args.format == "module-analysis":  # the seed's format: one document per module class
        result = _run_analysis(args, module_documents=True)
        text = json.dumps(result.module_documents, indent=2) + "\n"
        print(write_atomic(args.output, text, force=args.force))
        return 0
    report = as_report(_run_analysis(args))
    opts = {"depth": args.depth} if args.depth is not None else {}
    for path in EXPORTERS[args.format](report, args.output, force=args.force, **opts):
        print(path)
    return 0


def _annotate(args) -> int:
    from passes.compiler.onnx_annotate import annotate_onnx

    with quiet_stderr(not args.debug):
        totals = annotate_onnx(args.input, args.output, force=args.force)
    print(f"{args.output}: " + ", ".join(f"{k}={v}" for k, v in totals.items()))
    return 0


def _link(target, key: str) -> str:
    """The link a bandwidth figure's source names (NVLink, PCIe, InfiniBand ...)."""
    source = target.sources.get(key, "")
    for name in ("PCIe", "NVLink", "Infinity Fabric", "ICI", "InfiniBand", "RoCE", "Ethernet", "DCN"):
        if name.lower() in source.lower():
            return name
    return "intra-node" if key.startswith("intra") else "inter-node"


def _targets(_args) -> int:
    from irtools.hardware import list_targets, load_target

    for name in list_targets():
        t = load_target(name)
        bf16 = t.peak_flops.get("bf16") or t.peak_flops.get("fp32", 0)
        print(f"{name:18s} {bf16 / 1e12:8.1f} TFLOP/s bf16  {t.memory_bandwidth / 1e12:6.2f} TB/s  {t.description}")
        if t.gpus_per_node and t.internode_bandwidth:  # interconnect (passes/collectives.py), per device and direction
            intra = t.intranode_bandwidth or t.pcie_bandwidth or 0
            print(f"{'':18s} {t.gpus_per_node:3d} per node  {_link(t, 'intranode_bandwidth')} {intra / 1e9:.0f} GB/s  "
                  f"{_link(t, 'internode_bandwidth')} {t.internode_bandwidth / 1e9:.1f} GB/s  (per device and direction)")
    return 0


def _calibrate(args) -> int:
    from irtools.hardware.calibrate import calibrate

    target = calibrate(progress=not args.quiet, path=args.output, force=args.force)
    print(f"wrote {target.path}")
    return 0


def _sweep(args) -> int:
    import numpy as np

    from irtools.result import check_bindings
    from passes.roofline import grid_product, sweep, time_expr

    if not any(t.strip() for t in args.targets.split(",")):  # before the analysis
        raise UsageError(f"--targets {args.targets!r} names no target (see `irtools targets`)")
    result = _run_analysis(args, mode=args.mode or "fused")
    axes = {}
    for item in args.grid:
        name, sep, values = item.partition("=")
        if not sep:
            raise UsageError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        axes[name] = [float(parse_number("--grid", name, v)) for v in values.split(",")]
    for name, values in axes.items():
        for v in values:
            check_bindings(result.symbols, {name: int(v) if float(v).is_integer() else v})
    grid = grid_product(**axes) if axes else {}
    kernels = result.kernels
    fixed = {k: v for k, v in result.bindings.items() if k not in axes}
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if result.training is not None:  # a training step: step time, tokens/s and MFU (passes/training.py)
        from passes.training import sweep_step

        train = {t: sweep_step(result, t, fixed, grid) for t in targets}
        times = {t: v["time"] for t, v in train.items()}
    else:
        times = {t: sweep(time_expr(kernels, t, fixed), grid)["value"] for t in targets}
    peak, budgets = _sweep_memory(result, grid, fixed, targets, args.reserve)
    n = len(next(iter(grid.values()))) if grid else 1
    extra = [f"{k}[{t}]" for k in ("tokens_per_s", "mfu") for t in targets] if result.training is not None else []
    rows = [",".join([*axes, *(f"time_s[{t}]" for t in targets), *extra, "peak_bytes", *(f"fits[{t}]" for t in targets)])]
    for i in range(n):
        cells = [f"{grid[a][i]:g}" for a in axes] + [f"{np.atleast_1d(times[t])[i if n > 1 else 0]:.6g}" for t in targets]
        if extra:
            cells += [f"{np.atleast_1d(train[t][k])[i if n > 1 else 0]:.6g}" for k in ("tokens_per_s", "mfu") for t in targets]
        p = float(np.atleast_1d(peak)[i if n > 1 else 0])
        cells += [f"{p:.6g}", *("yes" if p <= budgets[t] else "no" for t in targets)]
        rows.append(",".join(cells))
    write_output("\n".join(rows) + "\n", args.output, args.force)
    return 0


def _sweep_memory(result, grid, fixed, targets, reserve):
    """Peak memory over the grid (the symbolic peak, vectorized) and each target's usable bytes."""
    from irtools.hardware import load_target
    from irtools.ir.symbols import sym
    from passes.fit import usable
    from passes.roofline import sweep

    peak = result.training.memory.peak if result.training is not None else result.memory.peak
    expr = peak.xreplace({sym(k): v for k, v in fixed.items()})
    return sweep(expr, grid)["value"], {t: usable(load_target(t), reserve) for t in targets}


def _fit(args) -> int:
    from passes.fit import fit_dict, solve

    if not args.target:
        raise UsageError("irtools fit needs --target (see `irtools targets`)")
    result = _run_analysis(args)
    peak = result.training.memory.peak if result.training is not None else result.memory.peak  # train: the step's
    out = solve(peak, result.roofline.target, result.bindings, args.solve, args.reserve)
    data = fit_dict(out, result)
    if args.format == "json":
        write_output(json.dumps(data, indent=2) + "\n", None)
        return 0
    from irtools.export.text import human

    lines = [f"{data['model']} ({data['scenario']}, {data['mode']} mode, KV cache {data['kv_cache']}) on {out.target}: "
             f"{human(out.capacity, 'B')} ({out.source}), {out.reserve:.0%} reserved -> {human(out.usable, 'B')} usable",
             f"peak memory: {data['peak']}"]
    for a in out.answers:
        fixed = ", ".join(f"{k}={v:g}" for k, v in sorted(a.bindings.items()))
        if a.largest is None:
            lines.append(f"nothing fits: at {a.symbol}=1 the peak is {human(a.peak_above, 'B')} ({fixed})")
        elif a.limited:
            lines.append(f"{a.symbol}: no limit up to {a.largest} ({fixed})")
        else:
            lines.append(f"largest {a.symbol}: {a.largest}  (peak {a.peak:,.0f} B; at {a.largest + 1}: "
                         f"{a.peak_above:,.0f} B)  [{fixed}]")
    write_output("\n".join(lines) + "\n", None)
    return 0


def _analyze(args) -> int:
    from irtools.export.escape import json_text  # NaN / Infinity never written: null, listed in "non_finite"
    from irtools.export.text import RENDERERS

    report = _run_analysis(args).to_dict()
    text = json_text(report, indent=2) + "\n" if args.format == "json" else RENDERERS[args.format](report)
    write_output(text, args.output, args.force)
    return 0


def _presets(_args) -> int:
    from irtools.recipes.hf import HF_CONFIGS
    from irtools.recipes.presets import PRESETS

    for p in PRESETS.values():
        print(f"{p.name:24s} {p.description}")
    for name, fields in HF_CONFIGS.items():
        print(f"{name:24s} transformers {fields['model_type']} on the meta device (config of {fields['source']})")
    return 0


def _ops(args) -> int:
    from passes.costs.coverage import aten_coverage, rule_table
    from passes.costs.onnx_coverage import onnx_coverage

    rows = rule_table()
    aten, aten_missing = aten_coverage(live=False)
    onnx_ops, onnx_missing = onnx_coverage()
    coverage = {
        "core_aten": {"total": len(aten), "covered": len(aten) - len(aten_missing), "missing": aten_missing},
        "onnx_default_domain": {"total": len(onnx_ops), "covered": len(onnx_ops) - len(onnx_missing), "missing": onnx_missing},
    }
    if args.format == "json":
        sys.stdout.write(json.dumps({"ops": rows, "coverage": coverage}, indent=2) + "\n")
        return 0
    for row in rows:
        print(f"{row['op']:48s} {row['kind']:12s} {row['convention']}")
    for name, c in coverage.items():
        missing = f"; missing: {', '.join(c['missing'])}" if c["missing"] else ""
        print(f"{name}: {c['covered']} of {c['total']} ops have a cost rule{missing}")
    return 0


def _plan(args) -> int:
    from irtools.plan import PlanOptions, render_table, run_plan

    options = PlanOptions(args.model, args.target, args.devices, args.scenario, args.objective, args.batch, args.seq_len,
                          args.context, parse_dims(args.dim), args.mode, args.overlap, args.top, args.reserve)
    with quiet_stderr(not args.debug):
        report = run_plan(options)
    if args.format == "html":
        from irtools.export.parallel_html import render_plan_html

        text = render_plan_html(report)
    else:
        text = json.dumps(report, indent=2) + "\n" if args.format == "json" else render_table(report)
    write_output(text, args.output, args.force)
    return 0


COMMANDS = {
    "analyze": _analyze, "export": _export, "annotate": _annotate, "targets": _targets,
    "calibrate": _calibrate, "sweep": _sweep, "presets": _presets, "plan": _plan, "ops": _ops, "fit": _fit,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        check_onnx_options(args, sys.argv[1:] if argv is None else list(argv))
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line unless --debug
        if args.debug:
            raise
        known = (IrtoolsError, ValueError, FileNotFoundError, OSError)
        prefix = "" if isinstance(exc, known) else f"{type(exc).__name__}: "
        message = " ".join(str(exc).split()) or type(exc).__name__
        from irtools.export.escape import printable  # names in messages never drive the terminal

        print(f"irtools: error: {printable(prefix + message)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def entry() -> None:
    """The ``irtools`` console script: :func:`main` with a quick exit.

    The modules imported so far (sympy, networkx: most of a run's long-lived objects) are
    moved out of the garbage collector's generations (``gc.freeze``), and once the command has
    returned and the streams are flushed the process exits without tearing down the
    interpreter, which spends a fifth of a small ONNX analysis freeing sympy's caches one
    object at a time. Every output file is already complete by then (written to a temporary
    file and renamed, irtools/files.py), and the exit functions registered with ``atexit``
    (coverage, profilers, logging) run first."""
    import atexit
    import gc

    gc.freeze()
    code = main()
    try:
        atexit._run_exitfuncs()  # what a normal exit runs before the teardown this skips
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `irtools analyze ... | head`: the reader left; nothing more to say
        code = code or 0
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
