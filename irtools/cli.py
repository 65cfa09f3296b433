"""The ``irtools`` command line. Errors: one line on stderr, exit status 2 (``--debug``: traceback)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input the user can fix; printed as one line."""


def parse_dims(items: list[str]) -> dict[str, float]:
    """``["seq_len=2048", "w_bytes=0.5"]`` -> ``{"seq_len": 2048, "w_bytes": 0.5}``."""
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--dim expects NAME=VALUE, got {item!r}")
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--dim {name}: {text!r} is not a number") from None
        out[name.strip()] = int(value) if value.is_integer() else value
    return out


def write_output(text: str, path: str | None) -> None:
    """Print, or write atomically (a temp file renamed into place: never half-written)."""
    if not path:
        sys.stdout.write(text)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None, help="preset name (default gpt2-attention), model.onnx, or package.module:Class")
    p.add_argument("--scenario", choices=("prefill", "decode"), default="prefill")
    p.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE", help="bind a symbol (repeatable)")
    p.add_argument("--module", default="", help="module path whose forward gets the line table (default: the root)")
    p.add_argument("--symbolic-config", action="store_true", help="write formulas in config symbols (hidden_size, ...)")
    p.add_argument("--target", default=None, help="accelerator for the roofline (see `irtools targets`)")
    p.add_argument("--mode", choices=("eager", "fused", "flash"), default=None, help="kernel fusion mode")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irtools", description="Symbolic FLOP/byte cost analysis of model graphs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command")
    a = sub.add_parser("analyze", help="analyze a model and print per-line costs")
    _add_model_args(a)
    a.add_argument("--format", choices=("table", "json", "md", "csv"), default="table")
    a.add_argument("-o", "--output", default=None, help="write to this file instead of stdout")
    a.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub.add_parser("presets", help="list built-in models")
    return parser


def _analyze(args) -> int:
    from irtools.analysis import analyze
    from irtools.export.text import RENDERERS

    bindings = parse_dims(args.dim)
    with quiet_stderr(not args.debug):
        result = analyze(args.model, args.scenario, bindings, line_module=args.module, symbolic_config=args.symbolic_config)
    report = result.to_dict()
    if args.target or args.mode:
        report.update(_roofline(result, args.target or "h100-sxm", args.mode or "fused"))
    text = json.dumps(report, indent=2) + "\n" if args.format == "json" else RENDERERS[args.format](report)
    write_output(text, args.output)
    return 0


def _roofline(result, target_name: str, mode: str) -> dict:
    try:
        from irtools.hardware import load_target
        from passes.fusion import build_kernels
        from passes.roofline import estimate, kernels_report
    except ImportError as exc:
        raise UsageError(f"roofline estimates are not available in this build ({exc})") from None
    target = load_target(target_name)
    kernels = build_kernels(result.ir, mode)
    return kernels_report(estimate(kernels, target, result.bindings))


def _presets(_args) -> int:
    from irtools.hf import HF_CONFIGS
    from irtools.presets import PRESETS

    for p in PRESETS.values():
        print(f"{p.name:24s} {p.description}")
    for name, fields in HF_CONFIGS.items():
        print(f"{name:24s} transformers {fields['model_type']} on the meta device (config of {fields['source']})")
    return 0


COMMANDS = {"analyze": _analyze, "presets": _presets}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line unless --debug
        if args.debug:
            raise
        from irtools.capture.torch_export import CaptureError

        known = (UsageError, CaptureError, ValueError, FileNotFoundError, OSError)
        prefix = "" if isinstance(exc, known) else f"{type(exc).__name__}: "
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"irtools: error: {prefix}{message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
