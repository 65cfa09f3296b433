"""Escaping of model-provided text (node names, module paths, source code, class names) for
each output: a terminal, XML, HTML, Markdown, CSV, JSON.

Names come from the model file, so they can hold anything: NUL and other control
characters (not well-formed in XML, cut C strings short), terminal escape sequences,
bidirectional overrides, ``<script>``, or a CSV cell starting with ``=``. Every exporter
passes such text through one of these functions; what is replaced is shown as a visible
``\\xNN`` / ``\\uNNNN`` escape, so nothing is lost silently.
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata
from typing import Any

# C0 and C1 controls, DEL, line/paragraph separators, bidi controls and other format
# characters, noncharacters U+FFFE/U+FFFF, lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufffe\uffff\ud800-\udfff]")
_UNSAFE_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufffe\uffff\ud800-\udfff]")
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _visible(match: re.Match) -> str:
    c = match.group(0)
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def printable(text, keep_newlines: bool = False) -> str:
    """``text`` with control, format and bidi characters shown as escapes (terminal-safe;
    ``keep_newlines`` keeps ``\\n`` and ``\\t``). Also XML 1.0-safe."""
    text = str(text)
    pattern = _UNSAFE_KEEP_LINES if keep_newlines else _UNSAFE
    out = pattern.sub(_visible, text)
    if any(unicodedata.category(c) == "Cf" for c in out if ord(c) > 0x7f):  # rare: other format characters
        out = "".join(f"\\u{ord(c):04x}" if ord(c) > 0x7f and unicodedata.category(c) == "Cf" else c for c in out)
    return out


def html_text(text, quote: bool = True) -> str:
    """Escaped for HTML text and attribute values (``& < > " '``), control characters visible."""
    return html.escape(printable(text, keep_newlines=True), quote)


def md_text(text) -> str:
    """A Markdown table cell: HTML-escaped (no ``<script>`` reaches a renderer), ``|`` and
    newlines neutralized."""
    return html_text(text, quote=False).replace("|", "\\|").replace("\n", " ").replace("\t", " ")


def md_code(text) -> str:
    """A Markdown code span in a table cell, fenced by more backticks than the text holds."""
    body = printable(text).replace("|", "\\|")
    run = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * (run + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip() else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def csv_cell(value):
    """A CSV cell: text starting with ``= + - @`` (a spreadsheet formula) gets a leading ``'``."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    return "'" + value if value.startswith(_CSV_FORMULA) else value


def finite(obj: Any, path: str = "", found: list[str] | None = None) -> Any:
    """A copy of a JSON-able object with every non-finite float replaced by None; the paths
    replaced are appended to ``found``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        if found is not None:
            found.append(path or "$")
        return None
    if isinstance(obj, dict):
        return {k: finite(v, f"{path}.{k}" if path else str(k), found) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v, f"{path}[{i}]", found) for i, v in enumerate(obj)]
    return obj


def json_text(obj: Any, **kwargs) -> str:
    """``json.dumps`` that never writes ``NaN`` or ``Infinity`` (not JSON): such values become
    ``null``, and a top-level dict gets ``"non_finite": [paths]`` naming them."""
    found: list[str] = []
    clean = finite(obj, "", found)
    if found and isinstance(clean, dict):
        clean["non_finite"] = found
    return json.dumps(clean, allow_nan=False, **kwargs)


__all__ = ["csv_cell", "finite", "html_text", "json_text", "md_code", "md_text", "printable"]
