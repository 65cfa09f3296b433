"""Whole-process measurements for the benchmarks: wall time, CPU time and peak RSS of a child.

Commands are compared in *paired* runs: each round runs every command once, in an order that
alternates between rounds, so a burst of load on the shared machine hits both sides; the
figures reported are medians over the rounds (and ratios of medians).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time

#: Runs ``python -m MOD ...`` / ``python -c CODE ...`` and writes the process's own peak RSS
#: (VmHWM, kB) at exit: the rusage of a child counts the parent's pages copied by fork, so a
#: large benchmark process would inflate every figure alike.
_WRAP = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def _hwm():
    with open("/proc/self/status") as f:
        kb = next((line.split()[1] for line in f if line.startswith("VmHWM:")), "")
    with open(out, "w") as f:
        f.write(kb)
atexit.register(_hwm)
kind, what = sys.argv.pop(1), sys.argv.pop(1)
if kind == "-m":
    sys.argv[0] = what
    runpy.run_module(what, run_name="__main__", alter_sys=True)
else:
    sys.argv[0] = "-c"
    exec(compile(what, "<string>", "exec"), {"__name__": "__main__"})
"""


def measure(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> dict:
    """One run of ``cmd``: ``wall_s``, ``cpu_s`` (user + system), ``peak_mb`` (max RSS), ``rc``."""
    hwm = None
    if len(cmd) > 2 and cmd[1] in ("-m", "-c") and os.path.exists("/proc/self/status"):
        fd, hwm = tempfile.mkstemp(suffix=".hwm")
        os.close(fd)
        cmd = [cmd[0], "-c", _WRAP, hwm, *cmd[1:]]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    deadline = t + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
        time.sleep(0.005)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    rc = os.waitstatus_to_exitcode(status)
    peak_kb = usage.ru_maxrss
    if hwm is not None:
        with open(hwm) as f:
            text = f.read().strip()
        os.unlink(hwm)
        peak_kb = int(text) if text.isdigit() else peak_kb
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": peak_kb / 1024, "rc": rc,
            "error": err.strip().splitlines()[-1] if rc and err.strip() else ""}


def paired(commands: dict[str, tuple[list[str], dict | None]], rounds: int) -> dict[str, dict]:
    """Run every ``name: (cmd, env)`` once per round (order alternating); medians per name."""
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    names = list(commands)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            cmd, env = commands[name]
            runs[name].append(measure(cmd, env))
    out = {}
    for name, ms in runs.items():
        failed = [m for m in ms if m["rc"] != 0]
        if failed:
            out[name] = {"error": failed[0]["error"] or f"exit {failed[0]['rc']}"}
            continue
        out[name] = {k: statistics.median(m[k] for m in ms) for k in ("wall_s", "cpu_s", "peak_mb")}
    return out


def cell(m: dict) -> str:
    """``wall s (cpu s) peak MB`` of one median, or the error."""
    if "error" in m:
        return f"FAILED: {m['error'][:50]}"
    return f"{m['wall_s']:6.2f} s ({m['cpu_s']:5.2f} cpu) {m['peak_mb']:5.0f} MB"


def ratios(a: dict, b: dict) -> str:
    """``a / b`` for wall time, CPU time and peak memory."""
    if "error" in a or "error" in b:
        return "-"
    return (f"{a['wall_s'] / b['wall_s']:5.2f}x wall {a['cpu_s'] / b['cpu_s']:5.2f}x cpu "
            f"{a['peak_mb'] / b['peak_mb']:5.2f}x mem")
