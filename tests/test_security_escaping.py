"""Escaping (issue 18, item 7): names holding NUL, control characters, terminal escapes, bidi
overrides, markup and spreadsheet formulas, through every export format -- each output read
back by its own parser (json, csv, pydot, networkx.read_graphml, html.parser, headless
Chromium where installed, xml for SVG)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import networkx as nx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from irtools.cli import main

EVIL = "n\x00ul\x1b[31m<script>alert(1)</script>\u202e\x07\"'&\x7f\x85"
CONTROL = "\x00\x1b\x07\u202e\x7f\x85"
FORMULAS = ["=1+2", "+cmd|' /C calc'!A0", "@SUM(A1)", "-2+3"]


@pytest.fixture(scope="module")
def evil_onnx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evil")
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w" + EVIL)
    names = [EVIL, *FORMULAS]
    nodes, prev = [], "x" + EVIL
    for i, name in enumerate(names):
        out = f"t{i}" if i < len(names) - 1 else "y" + EVIL
        node = helper.make_node("MatMul", [prev, w.name], [out], name=name)
        node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=repr(["", f"block{EVIL}", FORMULAS[i % 4], name]))
        node.metadata_props.add(key="pkg.torch.onnx.class_hierarchy", value=repr([f"Model{EVIL}", f"Block{EVIL}", "=Sub", "MatMul"]))
        node.metadata_props.add(key="pkg.torch.onnx.stack_trace", value=f'File "/m{EVIL}.py", line 7, in forward\n    y = x @ w  # {EVIL}')
        nodes.append(node)
        prev = out
    graph = helper.make_graph(nodes, "g" + EVIL, [helper.make_tensor_value_info("x" + EVIL, TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y" + EVIL, TensorProto.FLOAT, None)], [w])
    path = folder / "evil.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
    return path


def _export(evil_onnx, tmp_path, capsys, fmt: str, name: str, *extra):
    code = main(["export", str(evil_onnx), "--format", fmt, "-o", str(tmp_path / name), "--dim", "batch_size=2", *extra])
    _, err = capsys.readouterr()
    assert code == 0, err
    return tmp_path / name


def _no_raw_controls(data: bytes) -> None:
    text = data.decode("utf-8")
    assert not any(c in text for c in CONTROL), [c for c in CONTROL if c in text]


def test_json_report_round_trips_every_name(evil_onnx, tmp_path, capsys):
    path = _export(evil_onnx, tmp_path, capsys, "json", "r.json")
    report = json.loads(path.read_text())
    assert EVIL in {n["id"] for n in report["nodes"]}  # JSON escapes them: the exact name survives
    module = _export(evil_onnx, tmp_path, capsys, "module-analysis", "m.json")
    assert json.loads(module.read_text())


def test_csv_cells_are_neutralized(evil_onnx, tmp_path, capsys):
    path = _export(evil_onnx, tmp_path, capsys, "csv", "r.csv")
    _no_raw_controls(path.read_bytes())
    rows = list(csv.reader(io.StringIO(path.read_text())))
    cells = [c for row in rows[1:] for c in row]
    for c in cells:
        if c[:1] in ("=", "+", "@", "-"):
            float(c)  # only numbers may start so
    for f in FORMULAS:
        assert "'" + f in cells


def test_markdown_holds_no_markup(evil_onnx, tmp_path, capsys):
    path = _export(evil_onnx, tmp_path, capsys, "md", "r.md")
    text = path.read_text()
    _no_raw_controls(path.read_bytes())
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_dot_parses_and_holds_no_nul(evil_onnx, tmp_path, capsys):
    path = _export(evil_onnx, tmp_path, capsys, "dot", "g.dot")
    _no_raw_controls(path.read_bytes())
    assert "\\\\x00ul\\\\x1b[31m&lt;script&gt;" in path.read_text()  # shown, as DOT text
    pydot = pytest.importorskip("pydot")
    (graph,) = pydot.graph_from_dot_data(path.read_text())
    assert graph.get_subgraphs()


def test_graphml_is_well_formed_and_reads_back(evil_onnx, tmp_path, capsys):
    path = _export(evil_onnx, tmp_path, capsys, "graphml", "g.graphml")
    _no_raw_controls(path.read_bytes())
    g = nx.read_graphml(path)
    assert g.number_of_nodes() == 5 and g.number_of_edges() == 4
    assert any(n.startswith("n\\x00ul\\x1b[31m<script>") for n in g.nodes)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.tags, self.in_script = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self.in_script = dict(attrs)
            self.scripts.append([dict(attrs), ""])

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = None

    def handle_data(self, data):
        if self.in_script is not None:
            self.scripts[-1][1] += data


def test_html_page_parses_and_runs_no_injected_script(evil_onnx, tmp_path, capsys):
    path = _export(evil_onnx, tmp_path, capsys, "html", "r.html")
    _no_raw_controls(path.read_bytes())
    page = _Page()
    page.feed(path.read_text())
    assert len(page.scripts) == 2  # the data island and the page's own script, nothing injected
    data = next(body for attrs, body in page.scripts if attrs.get("id") == "irtools-data")
    assert json.loads(data, parse_constant=lambda c: pytest.fail(c))
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser:
        dom = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", path.as_uri()],
                             capture_output=True, text=True, timeout=60).stdout
        assert 'data-ready="1"' in dom and '<div id="errors"></div>' in dom  # the page's own script ran cleanly
        assert "<script>alert(1)" not in dom and "&lt;script&gt;alert(1)" in dom  # the name stays text


def test_trace_and_model_explorer_are_json(evil_onnx, tmp_path, capsys):
    trace = _export(evil_onnx, tmp_path, capsys, "trace", "t.json", "--target", "h100-sxm")
    events = json.loads(trace.read_text(), parse_constant=lambda c: pytest.fail(c))["traceEvents"]
    assert any(EVIL in (e.get("args") or {}).get("nodes", []) for e in events)
    _export(evil_onnx, tmp_path, capsys, "model-explorer", "me.json")
    data = json.loads((tmp_path / "me.flops.json").read_text())
    assert EVIL in next(iter(data.values()))["results"]


def test_svg_charts_are_well_formed(evil_onnx, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _export(evil_onnx, tmp_path, capsys, "modules-chart", "chart.svg")
    svg = (tmp_path / "chart.svg").read_bytes()
    _no_raw_controls(svg)
    ET.fromstring(svg)


def test_terminal_table_holds_no_escape_sequence(evil_onnx, capsys):
    assert main(["analyze", str(evil_onnx), "--dim", "batch_size=2"]) == 0
    out, _ = capsys.readouterr()
    assert not any(c in out for c in CONTROL) and "\\x1b[31m" in out
