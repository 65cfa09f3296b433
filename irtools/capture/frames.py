"""Source frames from a stack-trace text (torch.export's ``stack_trace``, the dynamo ONNX
exporter's ``pkg.torch.onnx.stack_trace``): shared by both frontends, imports no torch."""

from __future__ import annotations

import functools
import re

from irtools.ir import Frame

_FRAME_RE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)\n(?P<code>[^\n]*)')
_SKIP_FRAMES = ("torch/nn/modules/module.py", "torch/fx/", "torch/_", "torch/export/", "torch/utils/")


@functools.lru_cache(maxsize=4096)
def parse_frames(stack_trace: str | None) -> tuple[Frame, ...]:
    if not stack_trace:
        return ()
    frames = []
    for m in _FRAME_RE.finditer(stack_trace):
        file = m["file"]
        if any(s in file for s in _SKIP_FRAMES) and "torch/nn/modules/module.py" not in file:
            if not file.endswith(("torch/nn/functional.py",)) and "/torch/nn/modules/" not in file:
                continue
        if "torch/nn/modules/module.py" in file:
            continue
        frames.append(Frame(file, int(m["line"]), m["func"], m["code"].strip()))
    return tuple(frames)
