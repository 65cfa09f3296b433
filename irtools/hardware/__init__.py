"""Accelerator database: one TOML file per target, every figure with its source.

A figure is an inline table ``{ value = ..., source = "..." }``. Peaks are dense (never
"with sparsity") FLOP/s per dtype; bandwidth in B/s, sizes in bytes, overheads in seconds.
``load_target`` takes a packaged name (``h100-sxm``) or a path to a user file.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from irtools.ir.errors import IrtoolsError

HERE = Path(__file__).parent
#: dtypes a peak may be given for.
DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")
REQUIRED = ("memory_bandwidth", "memory_size", "launch_overhead")
#: optional interconnect figures (passes/collectives.py): bytes/s per device and direction, seconds
#: per hop, devices per node; the link's name (NVLink, PCIe, InfiniBand ...) is in the figure's source.
INTERCONNECT = ("gpus_per_node", "intranode_bandwidth", "intranode_latency", "pcie_bandwidth",
                "internode_bandwidth", "internode_latency")
OPTIONAL = ("l2_cache", "sram_per_sm", "num_sms", "eta_c", "eta_m", "gemm_epilogue_fusion",
            "first_touch_bandwidth", "first_touch_threshold", *INTERCONNECT)
#: optional tables of ``[[x, y], ...]`` points (x ascending), interpolated linearly and clamped:
#: ``gemm_efficiency`` [smallest GEMM dimension, fraction of the dense peak attained],
#: ``bandwidth_curve`` [bytes a kernel moves, attained bytes/s] (caches on a CPU).
TABLES = ("gemm_efficiency", "bandwidth_curve")
#: figures that are true or false rather than numbers.
FLAGS = ("gemm_epilogue_fusion",)
#: no figure of any machine comes near this (FLOP/s, B/s, bytes), nor below its inverse (seconds):
#: beyond is a typo or an attack (a peak of 5e-324 FLOP/s makes every time infinite).
MAX_FIGURE = 1e30
MAX_TARGET_BYTES = 1 << 20
_SPARSE = re.compile(r"\bspars(e|ity)\b", re.I)
_DENSE = re.compile(r"\bdense\b", re.I)


class TargetError(IrtoolsError, ValueError):
    """A target name or file is invalid; the message is one line meant for the user."""


@dataclass(frozen=True)
class Target:
    """One accelerator: dense peaks per dtype, memory system, overheads and efficiencies."""

    name: str
    description: str
    peak_flops: dict[str, float]
    memory_bandwidth: float
    memory_size: float
    launch_overhead: float
    eta_c: float = 1.0
    eta_m: float = 1.0
    l2_cache: float | None = None
    sram_per_sm: float | None = None
    num_sms: int | None = None
    gemm_epilogue_fusion: bool = True
    #: CPUs: outputs of at least ``first_touch_threshold`` bytes land in freshly mapped pages
    #: (the allocator mmaps them), whose first touch costs bytes / ``first_touch_bandwidth``.
    first_touch_bandwidth: float | None = None
    first_touch_threshold: float | None = None
    #: optional ``((m, eta), ...)``: a GEMM whose smallest dimension is m attains eta·peak.
    gemm_efficiency: tuple[tuple[float, float], ...] | None = None
    #: optional ``((bytes, B/s), ...)``: a kernel moving that many bytes attains that bandwidth.
    bandwidth_curve: tuple[tuple[float, float], ...] | None = None
    #: interconnect (optional; see INTERCONNECT): devices per node, per-device per-direction bandwidths
    gpus_per_node: int | None = None
    intranode_bandwidth: float | None = None
    intranode_latency: float | None = None
    pcie_bandwidth: float | None = None
    internode_bandwidth: float | None = None
    internode_latency: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    path: str | None = None

    def peak(self, dtype: str) -> float:
        """Dense peak for ``dtype``; a missing low precision falls back to the next wider one."""
        chain = {"fp4": "int4", "int4": "int8", "int8": "fp8", "fp8": "bf16", "fp16": "bf16", "bf16": "fp16",
                 "fp64": "fp32", "fp32": "tf32", "tf32": "bf16"}
        seen = set()
        while dtype not in self.peak_flops:
            if dtype in seen or dtype not in chain:
                raise TargetError(f"target {self.name!r} has no peak for {dtype} (has {', '.join(self.peak_flops)})")
            seen.add(dtype)
            dtype = chain[dtype]
        return self.peak_flops[dtype]

    def to_dict(self) -> dict:
        """Plain figures for a report (``sources`` kept apart)."""
        out = {
            "name": self.name,
            "description": self.description,
            "peak_flops": dict(self.peak_flops),
            "memory_bandwidth": self.memory_bandwidth,
            "memory_size": self.memory_size,
            "launch_overhead": self.launch_overhead,
            "eta_c": self.eta_c,
            "eta_m": self.eta_m,
        }
        for key in ("l2_cache", "sram_per_sm", "num_sms", "first_touch_bandwidth", "first_touch_threshold", *INTERCONNECT):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in TABLES:
            if getattr(self, key) is not None:
                out[key] = [list(p) for p in getattr(self, key)]
        out["sources"] = dict(self.sources)
        return out


def user_dir() -> Path:
    """Where user targets (``irtools calibrate``'s ``cpu-local``) live: $IRTOOLS_TARGETS or ~/.config."""
    return Path(os.environ.get("IRTOOLS_TARGETS") or Path.home() / ".config" / "irtools" / "targets")


def list_targets(include_user: bool = True) -> list[str]:
    """Names of the packaged targets (and of the user's, such as ``cpu-local``)."""
    names = {p.stem for p in HERE.glob("*.toml")}
    if include_user and user_dir().is_dir():
        names |= {p.stem for p in user_dir().glob("*.toml")}
    return sorted(names)


def _sourced(data: dict, key: str, where: str, sources: dict, shape: str):
    """The ``value`` of a ``{ value = ..., source = "..." }`` entry; its source recorded."""
    fig = data[key]
    if not isinstance(fig, dict) or "value" not in fig:
        raise TargetError(f"{where}: {key} must be a table {{ value = {shape}, source = \"...\" }}")
    source = str(fig.get("source", "")).strip()
    if not source:
        raise TargetError(f"{where}: {key} has no source")
    sources[key] = source
    return fig["value"]


def _figure(data: dict, key: str, where: str, sources: dict) -> float | bool:
    value = _sourced(data, key, where, sources, "...")
    if key in FLAGS:
        if not isinstance(value, bool):
            raise TargetError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TargetError(f"{where}: {key} must be a number, got {value!r}")
    if not math.isfinite(value) or abs(value) > MAX_FIGURE or 0 < abs(value) < 1 / MAX_FIGURE:
        raise TargetError(f"{where}: {key} must be a finite number between {1 / MAX_FIGURE:g} and {MAX_FIGURE:g}, got {value!r}")
    if key in ("eta_c", "eta_m"):
        if not 0 < value <= 1:
            raise TargetError(f"{where}: {key} must be in (0, 1], got {value}")
    elif value <= 0:
        raise TargetError(f"{where}: {key} must be positive, got {value}")
    return float(value)


def _table(data: dict, key: str, where: str, sources: dict) -> tuple[tuple[float, float], ...]:
    """An optional ``{ value = [[x, y], ...], source = "..." }`` table: x ascending, y positive."""
    points = _sourced(data, key, where, sources, "[[x, y], ...]")
    ok = isinstance(points, list) and points and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p) for p in points)
    if not ok:
        raise TargetError(f"{where}: {key} must be a non-empty list of [x, y] number pairs")
    if not all(math.isfinite(v) and 1 / MAX_FIGURE <= abs(v) <= MAX_FIGURE for p in points for v in p):
        raise TargetError(f"{where}: {key} values must be finite numbers between {1 / MAX_FIGURE:g} and {MAX_FIGURE:g}")
    xs = [float(p[0]) for p in points]
    if any(b <= a for a, b in zip(xs, xs[1:])) or any(p[0] <= 0 or p[1] <= 0 for p in points):
        raise TargetError(f"{where}: {key} needs positive values and strictly ascending x")
    if key == "gemm_efficiency" and any(p[1] > 1 for p in points):
        raise TargetError(f"{where}: {key} efficiencies must be in (0, 1]")
    return tuple((float(x), float(y)) for x, y in points)


def parse_target(data: dict, where: str = "target") -> Target:
    """Validate a parsed target file and build the :class:`Target`."""
    if "name" not in data:
        raise TargetError(f"{where}: missing field 'name'")
    peaks_raw = data.get("peak_flops")
    if not isinstance(peaks_raw, dict) or not peaks_raw:
        raise TargetError(f"{where}: missing field 'peak_flops' (dense FLOP/s per dtype)")
    sources: dict[str, str] = {}
    peaks: dict[str, float] = {}
    for dtype in peaks_raw:
        if dtype not in DTYPES:
            raise TargetError(f"{where}: unknown dtype {dtype!r} in peak_flops (known: {', '.join(DTYPES)})")
        key = f"peak_flops.{dtype}"
        peaks[dtype] = _figure({key: peaks_raw[dtype]}, key, where, sources)
        if _SPARSE.search(sources[key]) and not _DENSE.search(sources[key]):
            raise TargetError(f"{where}: {key} looks like a sparse figure (its source mentions sparsity); give the dense peak")
    figures: dict = {}
    for key in REQUIRED:
        if key not in data:
            raise TargetError(f"{where}: missing field {key!r}")
        figures[key] = _figure(data, key, where, sources)
    for key in OPTIONAL:
        if key in data:
            figures[key] = _figure(data, key, where, sources)
    for key in TABLES:
        if key in data:
            figures[key] = _table(data, key, where, sources)
    for key in ("num_sms", "gpus_per_node"):
        if key in figures:
            figures[key] = int(figures[key])
    unknown = set(data) - {"name", "description", "peak_flops", *REQUIRED, *OPTIONAL, *TABLES}
    if unknown:
        raise TargetError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return Target(name=str(data["name"]), description=str(data.get("description", "")), peak_flops=peaks, sources=sources, **figures)


def load_target(name_or_path: str | Path) -> Target:
    """A packaged target by name, or a user TOML file by path; TargetError (a ValueError) otherwise."""
    if isinstance(name_or_path, Target):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix == ".toml" or path.exists()):
        path = HERE / f"{text}.toml"
        if not path.exists():
            path = user_dir() / f"{text}.toml"
        if not path.exists():
            raise TargetError(f"unknown target {text!r}; known targets: {', '.join(list_targets())} (or a path to a .toml file)")
    if not path.exists():
        raise TargetError(f"target file {text} does not exist")
    from irtools.files import read_text

    try:
        data = tomllib.loads(read_text(path, MAX_TARGET_BYTES, "target file", TargetError))
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: not valid TOML: {' '.join(str(exc).split())}") from None
    target = parse_target(data, where=str(path))
    return Target(**{**target.__dict__, "path": str(path)})


def save_target(target: Target, path: str | Path, force: bool = False) -> Path:
    """Write ``target`` as a TOML file that ``load_target`` reads back (atomically; an existing
    file needs ``force``)."""
    import json  # a JSON string is a valid TOML basic string (escapes included)

    def fig(key: str, value) -> str:
        source = json.dumps(target.sources.get(key, "unknown"))
        val = ("true" if value else "false") if isinstance(value, bool) else repr(float(value))
        return f'{key.split(".")[-1]} = {{ value = {val}, source = {source} }}'

    lines = [f"name = {json.dumps(target.name)}", f"description = {json.dumps(target.description)}"]
    for key in REQUIRED + OPTIONAL:
        value = getattr(target, key)
        if value is not None and (key in REQUIRED or key in target.sources):
            lines.append(fig(key, value))
    for key in TABLES:
        points = getattr(target, key)
        if points is not None:
            source = json.dumps(target.sources.get(key, "unknown"))
            pts = ", ".join(f"[{float(x)!r}, {float(y)!r}]" for x, y in points)
            lines.append(f"{key} = {{ value = [{pts}], source = {source} }}")
    lines += ["", "[peak_flops]"] + [fig(f"peak_flops.{d}", v) for d, v in target.peak_flops.items()]
    from irtools.files import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, "\n".join(lines) + "\n", force=force, error=TargetError)


__all__ = ["DTYPES", "Target", "TargetError", "list_targets", "load_target", "parse_target", "save_target"]
