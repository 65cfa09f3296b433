"""Every export of GPT2Attention loads back with its own format's reader; names are escaped."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess

import networkx as nx
import pytest

from irtools.export import EXPORTERS, ExportError, as_report
from irtools.ir.symbols import evaluate, parse

ODD = "<script>document.title='pwned'</script>\"q\" 'x' &amp;\nnl"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)


@pytest.fixture(scope="module")
def report():
    from irtools import analyze

    return as_report(analyze("gpt2-attention", "prefill", target="h100-sxm", mode="fused"))


@pytest.fixture(scope="module")
def odd_report(report):
    rep = copy.deepcopy(report)
    for n in rep["nodes"][:6]:
        n["op"] = n["id"] = n["id"] + ODD
        n["module"] = ODD
        if n.get("source"):
            n["source"]["code"] = ODD
    rep["model"] = ODD
    rep["modules"][0]["children"][0]["class"] = ODD
    rep["lines"]["kernels"][0]["code"] = ODD
    rep["edges"] = [[u + ODD if u in {n["id"][: -len(ODD)] for n in rep["nodes"][:6]} else u, v] for u, v in rep["edges"]]
    return rep


def test_json_csv_md(report, tmp_path):
    (p,) = EXPORTERS["json"](report, tmp_path / "r.json")
    back = json.loads(p.read_text())
    assert back["schema"] == "irtools.report/1" and back["totals"] == report["totals"]
    assert EXPORTERS["csv"](report, tmp_path / "r.csv")[0].read_text().startswith("table,id,op_or_class")
    assert "|" in EXPORTERS["md"](report, tmp_path / "r.md")[0].read_text()


def test_graphml_roundtrip(report, tmp_path):
    (p,) = EXPORTERS["graphml"](report, tmp_path / "g.graphml")
    g = nx.read_graphml(p)
    assert g.number_of_nodes() == len(report["nodes"]) and g.number_of_edges() == len(report["edges"])
    assert sum(float(a.get("flops", 0)) for _, a in g.nodes(data=True)) == pytest.approx(report["totals"]["flops"]["value"])
    assert g.graph["total_flops_expr"] == report["totals"]["flops"]["expr"]
    assert {a.get("bound") for _, a in g.nodes(data=True)} >= {"compute"}


def test_dot_parses_and_clusters(report, tmp_path):
    pydot = pytest.importorskip("pydot")
    (p,) = EXPORTERS["dot"](report, tmp_path / "g.dot", depth=2)
    text = p.read_text()
    (g,) = pydot.graph_from_dot_data(text)
    assert g.get_subgraphs() and "cluster_" in g.get_subgraphs()[0].get_name()
    assert len(re.findall(r"^\s*n\d+ \[", text, re.M)) == len(report["nodes"])
    assert "#fdae6b" in text  # compute-bound color
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", str(p), "-o", str(tmp_path / "g.svg")], check=True, timeout=30)


def test_model_explorer(report, tmp_path):
    paths = EXPORTERS["model-explorer"](report, tmp_path / "me.json")
    assert sorted(p.name for p in paths) == ["me.bytes.json", "me.flops.json", "me.time.json"]
    data = json.loads((tmp_path / "me.flops.json").read_text())
    (gid, body), = data.items()
    assert gid == "graph" and {s["stop"] for s in body["gradient"]} >= {0, 1}
    assert sum(v["value"] for v in body["results"].values()) == report["totals"]["flops"]["value"]
    time = json.loads((tmp_path / "me.time.json").read_text())[gid]["results"]
    assert sum(v["value"] for v in time.values()) == pytest.approx(report["time_s"]["value"])


def test_trace(report, tmp_path):
    (p,) = EXPORTERS["trace"](report, tmp_path / "t.json")
    events = [e for e in json.loads(p.read_text())["traceEvents"] if e["ph"] == "X"]
    assert len(events) == len(report["kernels"])
    assert all({"name", "ph", "ts", "dur", "pid", "tid", "args"} <= e.keys() for e in events)
    assert sum(e["dur"] for e in events) == pytest.approx(report["time_s"]["value"] * 1e6)
    assert events[1]["ts"] == pytest.approx(events[0]["dur"]) and "line" in events[0]["args"]
    with pytest.raises(ExportError, match="target"):
        EXPORTERS["trace"]({k: v for k, v in report.items() if k != "kernels"}, tmp_path / "t2.json")


def test_plots(report, tmp_path):
    pytest.importorskip("matplotlib")
    written = EXPORTERS["roofline"](report, tmp_path / "roof.png") + EXPORTERS["modules-chart"](report, tmp_path / "mod")
    assert [p.suffix for p in written] == [".png", ".svg", ".png", ".svg"]
    assert all(p.read_bytes()[:4] in (b"\x89PNG", b"<?xm") for p in written)


def test_existing_file_needs_force(report, tmp_path):
    p = tmp_path / "r.json"
    p.write_text("old")
    with pytest.raises(ExportError, match="exists"):
        EXPORTERS["json"](report, p)
    EXPORTERS["json"](report, p, force=True)
    assert json.loads(p.read_text())["schema"] == "irtools.report/1"
    with pytest.raises(ExportError, match="does not exist"):
        EXPORTERS["dot"](report, tmp_path / "missing" / "g.dot")
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


def test_odd_names_are_escaped(odd_report, tmp_path):
    html = EXPORTERS["html"](odd_report, tmp_path / "odd.html")[0].read_text()
    assert "<script>document" not in html and "&lt;script&gt;document" in html
    assert html.count("<script") == 2  # the data block and the page's own script
    dot = EXPORTERS["dot"](odd_report, tmp_path / "odd.dot")[0].read_text()
    assert "<script>" not in dot and "&lt;script&gt;" in dot
    pydot = pytest.importorskip("pydot")
    (g,) = pydot.graph_from_dot_data(dot)
    assert g is not None
    g2 = nx.read_graphml(EXPORTERS["graphml"](odd_report, tmp_path / "odd.graphml")[0])
    assert any(ODD in n for n in g2.nodes)


def _chromium(*args, timeout=60):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="no /usr/bin/chromium: install Debian's chromium to run the browser test")
def test_html_in_browser(report, odd_report, tmp_path):
    (page,) = EXPORTERS["html"](report, tmp_path / "r.html")
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    dom2 = _chromium("--dump-dom", page.as_uri() + "#seq_len=2048&batch_size=2").stdout

    def total(d):
        m = re.search(r'id="total-flops"><th>[^<]*</th><td [^>]*data-value="([^"]*)"', d)
        return float(m.group(1))

    assert 'data-ready="1"' in dom and '<div id="errors"></div>' in dom
    assert total(dom) == report["totals"]["flops"]["value"]
    want = evaluate(parse(report["totals"]["flops"]["expr"]), {**report["bindings"], "seq_len": 2048, "batch_size": 2})
    assert total(dom2) == want != total(dom)  # the formula, evaluated in the page
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri())
    assert shot.read_bytes()[:4] == b"\x89PNG"
    (odd,) = EXPORTERS["html"](odd_report, tmp_path / "odd.html")
    dom3 = _chromium("--dump-dom", odd.as_uri()).stdout
    assert re.search(r"<title>(.*?)</title>", dom3, re.S).group(1).strip() != "pwned" and "&lt;script" in dom3
    assert 'data-ready="1"' in dom3 and '<div id="errors"></div>' in dom3
