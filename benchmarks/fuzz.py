"""Fuzz campaign of the ONNX path: mutated files through the real command line, each run in a
child process with a wall-clock and a memory limit; prints counts of ok, clean refusal,
crash, hang and non-finite output (issue 18's benchmark; targets: 0 crashes, 0 hangs, 0
non-finite outputs).

Seeds: the small models of tests/onnx_mutations.py, a GPT2Attention exported by torch's
legacy exporter (weights stripped; exported in a separate process so that this one never
imports torch) and two light zoo models shipped with onnx. Each file gets 1-3 structural
mutations (tests/onnx_mutations.py) and, one time in three, byte damage on top. Each file
sits alone in its own folder; it runs as ``analyze --format json`` (8 in 10), ``export
--format graphml --target h100-sxm`` (1 in 10) or ``annotate`` (1 in 10).

A run is: *ok* (exit 0, output parses, every number finite); *refusal* (exit 2, one line
``irtools: error: ...`` from an IrtoolsError); *crash* (any other exit, a signal, a
traceback, several lines, or an uncaught exception's type named in the line -- MemoryError
under the memory limit included); *hang* (killed at the time limit); *non-finite* (exit 0
but NaN / Infinity in the output). Children are forked from a warmed-up parent (imports done
once), so a file costs its analysis, not an interpreter start.

Usage: nice python benchmarks/fuzz.py [--files 10000] [--workers 2] [--timeout 20]
       [--memory-mb 4096] [--seed 0] [--keep DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from tests.onnx_mutations import SEEDS, mutate, mutate_bytes  # noqa: E402

CRASH = re.compile(r"^irtools: error: [A-Z]\w*(Error|Exception|Exit|Interrupt)\b")
PWNED = Path("/tmp/irtools_fuzz_pwned.txt")
LIGHT = ("light_squeezenet.onnx", "light_bvlc_alexnet.onnx")

_ATTENTION = r"""
import io, sys, warnings, torch, onnx
from models.gpt2_attention import GPT2Attention, GPT2Config
torch.manual_seed(0)
m = GPT2Attention(GPT2Config(n_embd=32, n_head=4, n_positions=16)).eval()
buf = io.BytesIO()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.onnx.export(m, (torch.randn(2, 3, 32),), buf, dynamo=False, input_names=["hidden_states"],
                      dynamic_axes={"hidden_states": {0: "batch", 1: "sequence_length"}})
p = onnx.load_from_string(buf.getvalue())
for init in p.graph.initializer:
    if len(init.raw_data) > 256:
        init.ClearField("raw_data")
open(sys.argv[1], "wb").write(p.SerializeToString())
"""


def seed_models(work: Path) -> dict[str, onnx.ModelProto]:
    seeds = {name: build() for name, build in SEEDS.items()}
    path = work / "attention.onnx"
    proc = subprocess.run([sys.executable, "-c", _ATTENTION, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode == 0:
        seeds["gpt2_attention"] = onnx.load(str(path))
    else:
        print(f"(no GPT2Attention seed: {proc.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
    light = Path(onnx.__file__).parent / "backend/test/data/light"
    for name in LIGHT:
        if (light / name).exists():
            model = onnx.load(str(light / name))
            for init in model.graph.initializer:
                if len(init.raw_data) > 256:
                    init.ClearField("raw_data")
            seeds[name.removesuffix(".onnx")] = model
    return seeds


def make_case(index: int, seeds: dict, base_seed: int, folder: Path) -> dict:
    rng = random.Random(base_seed * 1_000_003 + index)
    name = rng.choice(sorted(seeds))
    model, applied = mutate(seeds[name], rng)
    data = model.SerializeToString()
    if rng.random() < 1 / 3:
        data = mutate_bytes(data, rng)
        applied.append("bytes")
    folder.mkdir(parents=True)
    src = folder / "model" / "m.onnx"
    src.parent.mkdir()
    src.write_bytes(data)
    roll = rng.random()
    if roll < 0.8:
        kind, out = "analyze", folder / "out" / "report.json"
        args = ["analyze", str(src), "--format", "json", "-o", str(out)]
    elif roll < 0.9:
        kind, out = "graphml", folder / "out" / "g.graphml"
        args = ["export", str(src), "--format", "graphml", "--target", "h100-sxm", "-o", str(out)]
    else:
        kind, out = "annotate", folder / "out" / "m.onnx"
        args = ["annotate", str(src), "-o", str(out)]
    out.parent.mkdir()
    return {"index": index, "seed": name, "mutations": applied, "kind": kind, "args": args, "out": str(out),
            "folder": str(folder)}


def child(case: dict, memory_mb: int, cpu_s: int) -> None:
    """In the forked child: limits, silenced output into files, the CLI, exit with its status."""
    try:
        os.setpgid(0, 0)
        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
        folder = Path(case["folder"])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            f = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        from irtools.cli import main

        code = main(case["args"])
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a crash of the harness itself shows as an odd status
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        code = 99
    os._exit(code if isinstance(code, int) else 98)


def _no_constant(c):
    raise ValueError(f"non-finite {c}")


def _finite_output(case: dict) -> bool:
    out = Path(case["out"])
    if case["kind"] == "analyze":
        json.loads(out.read_text(), parse_constant=_no_constant)
        return True
    if case["kind"] == "graphml":
        import networkx as nx

        g = nx.read_graphml(out)
        values = [v for _, a in g.nodes(data=True) for v in a.values()] + list(g.graph.values())
        return all(math.isfinite(v) for v in values if isinstance(v, float))
    model = onnx.load(str(out), load_external_data=False)
    props = list(model.metadata_props) + [p for n in model.graph.node for p in n.metadata_props]
    texts = [p.value for p in props if p.key.startswith("irtools.") and p.key != "irtools.dims"]
    dims = {d.dim_param for v in list(model.graph.input) + list(model.graph.output) for d in v.type.tensor_type.shape.dim}
    words = {w for t in texts for w in re.findall(r"[A-Za-z_]\w*", t)}
    return not ({"zoo", "nan", "oo"} & words) - dims  # sympy's non-finite atoms, unless a dim has that name


def classify(case: dict, status: int | None) -> tuple[str, str]:
    folder = Path(case["folder"])
    err = (folder / "stderr").read_text(errors="replace") if (folder / "stderr").exists() else ""
    lines = err.splitlines()
    if status is None:
        return "hang", ""
    if os.WIFSIGNALED(status):
        return "crash", f"signal {os.WTERMSIG(status)}"
    code = os.WEXITSTATUS(status)
    if code == 0:
        try:
            return ("ok", "") if _finite_output(case) else ("non-finite", "NaN/inf in the output")
        except Exception as exc:  # noqa: BLE001 - unreadable output of a successful run
            text = str(exc)
            return ("non-finite" if "non-finite" in text else "crash"), f"output: {type(exc).__name__}: {text[:120]}"
    if code == 2 and len(lines) == 1 and lines[0].startswith("irtools: error: ") and not CRASH.match(lines[0]):
        reason = re.sub(r"\S*m\.onnx", "FILE", lines[0][16:])
        reason = re.sub(r"'[^']*'", "'…'", reason)
        return "refusal", reason[:90]
    return "crash", f"exit {code}: {(lines or ['(no output)'])[-1][:160]}"


def campaign(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="irtools-fuzz-"))
    PWNED.unlink(missing_ok=True)
    seeds = seed_models(work)
    from irtools.cli import main  # warm up: every lazy import done before forking

    warm = work / "warm"
    warm.mkdir()
    onnx.save(seeds["mlp"], str(warm / "m.onnx"))
    with open(os.devnull, "w") as null:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = null
        try:
            main(["analyze", str(warm / "m.onnx"), "--format", "json", "-o", str(warm / "r.json")])
            main(["export", str(warm / "m.onnx"), "--format", "graphml", "--target", "h100-sxm", "-o", str(warm / "g.graphml")])
        finally:
            sys.stdout, sys.stderr = saved
    counts: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    bad: list[dict] = []
    durations: list[float] = []
    running: dict[int, tuple[dict, float]] = {}
    next_index, done, started = 0, 0, time.perf_counter()

    def finish(pid: int, status: int | None) -> None:
        nonlocal done
        case, t0 = running.pop(pid)
        durations.append(time.perf_counter() - t0)
        outcome, why = classify(case, status)
        counts[outcome] += 1
        if outcome == "refusal":
            reasons[why] += 1
        elif outcome != "ok":
            case.update(outcome=outcome, why=why, seconds=round(durations[-1], 2))
            bad.append(case)
            if args.keep:
                dest = Path(args.keep) / f"{outcome}-{case['index']}"
                shutil.copytree(case["folder"], dest, dirs_exist_ok=True)
        shutil.rmtree(case["folder"], ignore_errors=True)
        done += 1
        if done % 500 == 0:
            rate = done / (time.perf_counter() - started)
            print(f"  {done}/{args.files} files, {rate:.1f}/s: {dict(counts)}", file=sys.stderr, flush=True)

    while done < args.files:
        while len(running) < args.workers and next_index < args.files:
            case = make_case(next_index, seeds, args.seed, work / f"case{next_index}")
            next_index += 1
            pid = os.fork()
            if pid == 0:
                child(case, args.memory_mb, int(args.timeout * 2))
            running[pid] = (case, time.perf_counter())
        if not running:
            continue
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            finish(pid, status)
            continue
        now = time.perf_counter()
        for pid, (_case, t0) in list(running.items()):
            if now - t0 > args.timeout:
                for kill in (os.killpg, os.kill):  # its group (it made one), else the child alone
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                os.waitpid(pid, 0)
                finish(pid, None)
        time.sleep(0.005)
    shutil.rmtree(work, ignore_errors=True)
    durations.sort()
    return {
        "files": args.files, "seed": args.seed, "seeds": sorted(seeds), "timeout_s": args.timeout, "memory_mb": args.memory_mb,
        "counts": {k: counts.get(k, 0) for k in ("ok", "refusal", "crash", "hang", "non-finite")},
        "wall_s": round(time.perf_counter() - started, 1),
        "seconds": {"median": round(statistics.median(durations), 3), "p99": round(durations[int(0.99 * (len(durations) - 1))], 3),
                    "max": round(durations[-1], 3)},
        "escaped_write": PWNED.exists(),
        "top_refusals": reasons.most_common(15),
        "bad": bad[:50],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=20.0, help="wall seconds before a run counts as a hang")
    p.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of each child")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default=None, help="copy the files of bad runs here")
    p.add_argument("--json", default=None, help="write the summary here")
    args = p.parse_args(argv)
    result = campaign(args)
    c = result["counts"]
    print(f"{result['files']} mutated files, {result['wall_s']} s, seeds {', '.join(result['seeds'])}")
    print(f"ok {c['ok']}  clean refusal {c['refusal']}  crash {c['crash']}  hang {c['hang']}  non-finite {c['non-finite']}")
    s = result["seconds"]
    print(f"seconds per file: median {s['median']}, p99 {s['p99']}, max {s['max']}; write outside the folders: {result['escaped_write']}")
    print("most common refusals:")
    for reason, n in result["top_refusals"]:
        print(f"  {n:6d}  {reason}")
    for case in result["bad"][:20]:
        print(f"  {case['outcome']}: #{case['index']} {case['seed']} {case['mutations']} {case['kind']}: {case['why']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if c["crash"] == c["hang"] == c["non-finite"] == 0 and not result["escaped_write"] else 1


if __name__ == "__main__":
    sys.exit(main())
