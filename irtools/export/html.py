"""A self-contained, offline HTML report (no CDN, no third-party script).

Formulas travel as small JSON expression trees (built from sympy here) that the page's
own ~150-line script evaluates when the reader changes a symbol; nothing is ``eval``-ed.
Every model-provided string is html-escaped, and the embedded JSON escapes ``<``, ``>``
and ``&``. Symbols can also be set from the URL: ``report.html#seq_len=2048&batch_size=4``.
"""

from __future__ import annotations

import json
from pathlib import Path

import sympy

from irtools.export import as_report, write_atomic
from irtools.export.dot import BOUND_COLORS, shape_text
from irtools.export.escape import finite
from irtools.export.escape import html_text as escape  # control characters shown, not emitted
from irtools.export.memory_svg import memory_section
from irtools.export.text import human, lower_bound_note
from irtools.export.training_html import training_html
from irtools.ir.symbols import from_kv_len, parse

_REL = {sympy.LessThan: "<=", sympy.StrictLessThan: "<", sympy.GreaterThan: ">=", sympy.StrictGreaterThan: ">",
        sympy.Equality: "==", sympy.Unequality: "!="}


def expr_tree(expr):
    """A JSON tree for a sympy expression: numbers, ["s", name], [op, args...]; None if unknown."""
    if expr is sympy.true:
        return True
    if expr is sympy.false:
        return False
    if expr in (sympy.oo, -sympy.oo):
        return ["inf", 1 if expr is sympy.oo else -1]
    if expr.is_Number:
        return float(expr)
    if expr.is_Symbol:
        return ["s", expr.name]
    ops = {sympy.Add: "+", sympy.Mul: "*", sympy.Max: "max", sympy.Min: "min", sympy.And: "and", sympy.Or: "or"}
    op = ops.get(type(expr)) or _REL.get(type(expr))
    if isinstance(expr, sympy.Pow):
        op = "^"
    if isinstance(expr, sympy.Piecewise):
        pieces = [[expr_tree(c), expr_tree(v)] for v, c in expr.args]
        return None if any(None in p for p in pieces) else ["pw", *pieces]
    if op is None:
        return None
    args = [expr_tree(a) for a in expr.args]
    return None if any(a is None for a in args) else [op, *args]


class Formulas:
    """Deduplicated formula table: expression string -> index into the page's list."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.trees: list = []
        self.symbols: set[str] = set()

    def add(self, text: str | None) -> int | None:
        if not text:
            return None
        if text not in self.index:
            try:
                expr = from_kv_len(parse(text))
            except Exception:  # references like ${Class}(...) are not expressions
                return None
            tree = expr_tree(expr)
            if tree is None:
                return None
            self.symbols |= {s.name for s in expr.free_symbols}
            self.index[text] = len(self.trees)
            self.trees.append(tree)
        return self.index[text]


def _cell(f: Formulas, cost: dict | None, unit: str = "", expr: str | None = None, value=None, share_of: int | None = None) -> str:
    """A value cell the page recomputes (data-f) and, optionally, a share-of-total cell."""
    expr = expr if expr is not None else (cost or {}).get("expr")
    value = value if cost is None else cost.get("value")
    i = f.add(expr)
    attrs = f' data-f="{i}" data-unit="{escape(unit)}"' if i is not None else ""
    out = f'<td class="num"{attrs} title="{escape(str(expr))}">{escape(human(value, unit))}</td>'
    if share_of is not None:
        sattr = f' data-share="{i}" data-of="{share_of}"' if i is not None else ""
        out += f'<td class="num"{sattr}></td>'
    return out


def _module_tree(m: dict, f: Formulas, total: int | None, depth: int = 0) -> str:
    head = (
        f'<table class="inline"><tr><td class="name">{escape(m["path"] or "(root)")} '
        f'<span class="cls">{escape(m["class"])}</span></td>'
        f'{_cell(f, m["flops"], "FLOP", share_of=total)}{_cell(f, m["bytes_read"], "B")}{_cell(f, m["bytes_written"], "B")}</tr></table>'
    )
    kids = "".join(_module_tree(c, f, total, depth + 1) for c in m.get("children", []))
    if not kids:
        return f'<div class="leaf">{head}</div>'
    return f'<details{" open" if depth < 2 else ""}><summary>{head}</summary><div class="kids">{kids}</div></details>'


def _lines_table(report, f: Formulas) -> str:
    rows = []

    def walk(entries, level):
        for k in entries:
            ex = k.get("memory_access_expanded") or {}
            rows.append(
                f'<tr><td>{"↳ " * level}{escape(str(k["line"]))}</td><td>{escape(k["kernel_type"])}</td>'
                f'<td><code>{escape(k["code"])}</code></td><td><code>{escape(k["flops"])}</code></td>'
                f'<td><code>{escape(k.get("flops_expanded", ""))}</code></td>'
                f'{_cell(f, None, "FLOP", k.get("flops_expanded"), k["values"]["flops"])}'
                f'{_cell(f, None, "B", ex.get("read"), k["values"]["bytes_read"])}'
                f'{_cell(f, None, "B", ex.get("write"), k["values"]["bytes_written"])}</tr>'
            )
            walk(k.get("sub_entries", []), level + 1)

    walk(report["lines"]["kernels"], 0)
    head = "<tr><th>line</th><th>type</th><th>code</th><th>FLOPs (seed form)</th><th>FLOPs formula</th><th>FLOPs</th><th>read</th><th>write</th></tr>"
    return f'<table class="grid">{head}{"".join(rows)}</table>'


def _kernel_table(report, f: Formulas, total_time: int | None) -> str:
    if not report.get("kernels"):
        return "<p>No kernels: export with a target (<code>--target</code>) to see fused kernels and times.</p>"
    head = "<tr><th>kernel</th><th>pattern</th><th>module</th><th>nodes</th><th>bound*</th><th>FLOPs</th><th>bytes</th><th>time</th><th>share</th></tr>"
    rows = []
    for k in report["kernels"]:
        color = BOUND_COLORS.get(k.get("bound"), "#fff")
        rows.append(
            f'<tr><td>{escape(k["id"])}</td><td>{escape(str(k.get("pattern", "+".join(k["kinds"]))))}</td>'
            f'<td>{escape(k.get("module") or "(root)")}</td><td>{escape(", ".join(k["nodes"]))}</td>'
            f'<td style="background:{color}">{escape(str(k.get("bound")))}</td>'
            f'{_cell(f, k["flops"], "FLOP")}{_cell(f, k["bytes"], "B")}{_cell(f, k["time_s"], "s", share_of=total_time)}</tr>'
        )
    note = "<p class='note'>* bound at the report's bindings.</p>"
    return f'<table class="grid">{head}{"".join(rows)}</table>{note}'


def graph_svg(report, max_nodes: int = 1500) -> str:
    """The op graph as SVG with a longest-path layered layout (drawn here, no Graphviz)."""
    nodes = report["nodes"]
    if len(nodes) > max_nodes:
        return f"<p>Graph of {len(nodes)} nodes not drawn (over {max_nodes}); use the DOT export.</p>"
    ids = {n["id"]: i for i, n in enumerate(nodes)}
    preds: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for u, v in report.get("edges") or []:
        if u in ids and v in ids:
            preds[ids[v]].append(ids[u])
    layer = [0] * len(nodes)
    for i in range(len(nodes)):  # report nodes are in topological order
        layer[i] = max((layer[p] + 1 for p in preds[i] if p < i), default=0)
    rows: dict[int, list[int]] = {}
    for i, lv in enumerate(layer):
        rows.setdefault(lv, []).append(i)
    w, h, gx, gy = 170, 38, 20, 34
    pos = {i: (gx + col * (w + gx), gy + lv * (h + gy)) for lv, row in rows.items() for col, i in enumerate(row)}
    width = gx + max(len(r) for r in rows.values()) * (w + gx) if rows else 100
    height = gy + len(rows) * (h + gy)
    bounds = {n: k.get("bound") for k in report.get("kernels") or [] for n in k["nodes"]}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="graph">']
    for v, ps in preds.items():
        for u in ps:
            (x1, y1), (x2, y2) = pos[u], pos[v]
            parts.append(f'<line x1="{x1 + w / 2}" y1="{y1 + h}" x2="{x2 + w / 2}" y2="{y2}" stroke="#999" marker-end="url(#arr)"/>')
    for i, n in enumerate(nodes):
        x, y = pos[i]
        fill = BOUND_COLORS.get(bounds.get(n["id"]), "#fff") if bounds else "#fff"
        src = n.get("source") or {}
        tip = f"{n['id']} — {n['op']} {shape_text(n)}\n{n.get('module') or '(root)'} line {src.get('line', '?')}: {src.get('code', '')}\nFLOPs {n['flops']['expr']}"
        op = n["op"].split(".")[1] if n["op"].startswith("aten.") else n["op"]
        parts.append(
            f'<g><title>{escape(tip)}</title><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5" fill="{fill}" stroke="#555"/>'
            f'<text x="{x + 6}" y="{y + 15}" font-size="11">{escape(op[:24])}</text>'
            f'<text x="{x + 6}" y="{y + 30}" font-size="10" fill="#555">{escape(human(n["flops"]["value"], "FLOP"))}</text></g>'
        )
    parts.insert(1, '<defs><marker id="arr" markerWidth="8" markerHeight="8" refX="6" refY="3" orient="auto">'
                    '<path d="M0,0 L6,3 L0,6 z" fill="#999"/></marker></defs>')
    parts.append("</svg>")
    return "".join(parts)


def _json_for_script(data) -> str:
    return json.dumps(finite(data), allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(report) -> str:
    """The whole page as one string."""
    f = Formulas()
    totals = report["totals"]
    tf = f.add(totals["flops"]["expr"])
    tt = f.add(report["time_s"]["expr"]) if report.get("time_s") else None
    total_rows = [("flops", "FLOPs", totals["flops"], "FLOP"), ("bytes_read", "bytes read", totals["bytes_read"], "B"),
                  ("bytes_written", "bytes written", totals["bytes_written"], "B")]
    if report.get("time_s"):
        total_rows.append(("time_s", f"time ({report.get('mode')} on {report['target'].get('name', '?')})", report["time_s"], "s"))
    totals_html = "".join(
        f'<tr id="total-{key}"><th>{escape(label)}</th>{_cell(f, c, unit)}<td><code>{escape(c["expr"])}</code></td></tr>'
        for key, label, c, unit in total_rows
    )
    modules = "".join(_module_tree(m, f, tf) for m in report.get("modules", []))
    lines = _lines_table(report, f)
    kernels = _kernel_table(report, f, tt)
    kernel_data = [
        {"id": k["id"], "module": k.get("module") or "", "f": f.add(k["flops"]["expr"]), "b": f.add(k["bytes"]["expr"]), "t": f.add(k["time_s"]["expr"])}
        for k in report.get("kernels") or []
    ]
    bindings = report.get("bindings", {})
    symbols = sorted(f.symbols, key=lambda s: (s not in ("batch_size", "seq_len", "cache_len"), s))
    inputs = "".join(
        f'<label>{escape(s)} <input type="number" min="0" step="any" data-sym="{escape(s)}" value="{escape(str(bindings.get(s, "")))}"></label>'
        for s in symbols
    )
    data = {"formulas": f.trees, "kernels": kernel_data, "target": report.get("target") or {}}
    title = f"irtools — {report.get('model', '')}"
    sub = f"{report.get('frontend', '')}, {report.get('scenario') or 'graph'}"
    if report.get("unsupported"):
        sub += " · " + lower_bound_note(report)
    if report.get("kv_cache"):
        sub += f", KV cache: {report['kv_cache']['model']}"
    if report.get("logits"):
        sub += f", logits: {report['logits']}"
    if report.get("collapsed"):
        sub += f", {report['collapsed']['num_layers']} blocks from {report['collapsed']['traced_layers']} traced"
    if report.get("kernels"):
        sub += f", {report.get('mode')} kernels on {report['target'].get('name', '?')}"
    roof = '<svg id="roof" xmlns="http://www.w3.org/2000/svg" width="720" height="420"></svg>' if report.get("kernels") else "<p>No kernels (no target).</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>{escape(title)}</title><style>{CSS}</style></head><body>
<h1>{escape(title)}</h1><p class="sub">{escape(sub)} · schema {escape(report.get("schema", ""))}</p>
<div id="errors"></div>
<section id="symbols"><h2>Symbols</h2><p class="note">Change a value: every number below is recomputed from its formula.</p>{inputs}</section>
<section><h2>Totals</h2><table class="grid">{totals_html}</table></section>
<section id="memory"><h2>Memory</h2>{memory_section(report)}</section>
{f'<section id="training"><h2>Training step</h2>{training_html(report)}</section>' if report.get("training") else ""}
<section><h2>Modules</h2><p class="note">FLOPs, share of total FLOPs, bytes read, bytes written.</p>{modules}</section>
<section><h2>Lines</h2>{lines}</section>
<section><h2>Kernels</h2>{kernels}</section>
<section><h2>Roofline</h2>{roof}</section>
<section><h2>Graph</h2><div class="scroll">{graph_svg(report)}</div></section>
<script type="application/json" id="irtools-data">{_json_for_script(data)}</script>
<script>{SCRIPT}</script></body></html>
"""


CSS = """body{font:13px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:20px;margin:0}
.sub,.note{color:#666}section{margin:1.2em 0}.grid{border-collapse:collapse}.grid td,.grid th{border:1px solid #ddd;padding:2px 6px;vertical-align:top}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}.cls{color:#777;font-size:11px}code{font-size:11px}
table.inline td{padding:0 8px}.name{min-width:22em}.kids{margin-left:1.5em}summary{cursor:pointer}.leaf{margin-left:1.1em}
#symbols label{margin-right:1em;display:inline-block}#symbols input{width:7em}.scroll{overflow:auto;max-height:700px;border:1px solid #eee}
#errors{color:#b00}"""

SCRIPT = r"""
(function(){
'use strict';
var errs=document.getElementById('errors');
window.addEventListener('error',function(e){errs.textContent+='error: '+e.message+' ';});
var D=JSON.parse(document.getElementById('irtools-data').textContent);
var env={};
function ev(t){
  if(t===null||t===undefined)return NaN;
  if(typeof t==='number')return t;
  if(typeof t==='boolean')return t;
  var op=t[0],a=t.slice(1),i,r;
  switch(op){
    case 's': return (a[0] in env)?env[a[0]]:NaN;
    case 'inf': return a[0]*Infinity;
    case '+': r=0;for(i=0;i<a.length;i++)r+=ev(a[i]);return r;
    case '*': r=1;for(i=0;i<a.length;i++)r*=ev(a[i]);return r;
    case '^': return Math.pow(ev(a[0]),ev(a[1]));
    case 'max': return Math.max.apply(null,a.map(ev));
    case 'min': return Math.min.apply(null,a.map(ev));
    case 'and': return a.every(function(x){return ev(x)===true;});
    case 'or': return a.some(function(x){return ev(x)===true;});
    case '<=': return ev(a[0])<=ev(a[1]);
    case '<': return ev(a[0])<ev(a[1]);
    case '>=': return ev(a[0])>=ev(a[1]);
    case '>': return ev(a[0])>ev(a[1]);
    case '==': return ev(a[0])===ev(a[1]);
    case '!=': return ev(a[0])!==ev(a[1]);
    case 'pw': for(i=0;i<a.length;i++){if(ev(a[i][0])===true)return ev(a[i][1]);}return NaN;
  }
  return NaN;
}
function human(v,u){
  if(v===null||isNaN(v))return '-';
  var P=[[1e15,'P'],[1e12,'T'],[1e9,'G'],[1e6,'M'],[1e3,'k']];
  if(u==='s'){if(v===0)return '0 s';if(Math.abs(v)<1e-3)return (v*1e6).toPrecision(3)+' µs';if(Math.abs(v)<1)return (v*1e3).toPrecision(3)+' ms';}
  for(var i=0;i<P.length;i++){if(Math.abs(v)>=P[i][0])return (v/P[i][0]).toPrecision(3).replace(/(\.\d*?)0+$/,'$1').replace(/\.$/,'')+' '+P[i][1]+u;}
  return (Number(v.toPrecision(4))+' '+u).trim();
}
function readInputs(){
  env={};
  document.querySelectorAll('input[data-sym]').forEach(function(el){
    var v=parseFloat(el.value); if(isFinite(v))env[el.getAttribute('data-sym')]=v;});
}
var vals=[];
function update(){
  readInputs();
  vals=D.formulas.map(function(t){var v=ev(t);return typeof v==='number'?v:NaN;});
  document.querySelectorAll('[data-f]').forEach(function(el){
    var v=vals[+el.getAttribute('data-f')];
    el.textContent=human(v,el.getAttribute('data-unit')||'');
    el.setAttribute('data-value',isNaN(v)?'':String(v));});
  document.querySelectorAll('[data-share]').forEach(function(el){
    var v=vals[+el.getAttribute('data-share')],t=vals[+el.getAttribute('data-of')];
    el.textContent=(isNaN(v)||isNaN(t)||!t)?'-':(100*v/t).toFixed(1)+'%';});
  drawRoof();
}
var NS='http://www.w3.org/2000/svg';
function mk(svg,tag,at,text){var e=document.createElementNS(NS,tag);for(var k in at)e.setAttribute(k,at[k]);if(text!==undefined)e.textContent=text;svg.appendChild(e);return e;}
function drawRoof(){
  var svg=document.getElementById('roof'); if(!svg)return;
  while(svg.firstChild)svg.removeChild(svg.firstChild);
  var T=D.target||{},bw=(T.memory_bandwidth||0)*(T.eta_m||1),peaks=T.peak_flops||{},pts=[];
  D.kernels.forEach(function(k){var f=vals[k.f],b=vals[k.b],t=vals[k.t];
    if(f>0&&b>0&&t>0)pts.push({x:f/b,y:f/t,id:k.id,m:k.module});});
  var W=720,H=420,L=70,R=20,Tp=20,B=45,ys=[],xs=pts.map(function(p){return p.x;});
  var pk=Object.keys(peaks).map(function(d){return [d,peaks[d]*(T.eta_c||1)];}).filter(function(p){return p[1]>0;});
  pk.forEach(function(p){ys.push(p[1]);if(bw)xs.push(p[1]/bw);});
  pts.forEach(function(p){ys.push(p.y);});
  if(!xs.length||!ys.length){mk(svg,'text',{x:20,y:30},'no kernel has values at these symbols');return;}
  var x0=Math.log10(Math.min.apply(null,xs))-0.5,x1=Math.log10(Math.max.apply(null,xs))+0.5;
  var y0=Math.log10(Math.min.apply(null,ys))-0.5,y1=Math.log10(Math.max.apply(null,ys))+0.3;
  function X(v){return L+(Math.log10(v)-x0)/(x1-x0)*(W-L-R);} function Y(v){return H-B-(Math.log10(v)-y0)/(y1-y0)*(H-Tp-B);}
  mk(svg,'rect',{x:L,y:Tp,width:W-L-R,height:H-Tp-B,fill:'none',stroke:'#ccc'});
  for(var e=Math.ceil(x0);e<=x1;e++){mk(svg,'text',{x:X(Math.pow(10,e))-8,y:H-B+14,'font-size':10},'1e'+e);}
  for(e=Math.ceil(y0);e<=y1;e++){mk(svg,'text',{x:L-40,y:Y(Math.pow(10,e))+4,'font-size':10},'1e'+e);}
  mk(svg,'text',{x:L+200,y:H-8,'font-size':11},'arithmetic intensity (FLOP/byte)');
  mk(svg,'text',{x:12,y:Tp+10,'font-size':11},'FLOP/s');
  var xa=Math.pow(10,x0),xb=Math.pow(10,x1);
  pk.forEach(function(p){var knee=bw?p[1]/bw:xa;
    var d='M'+X(xa)+','+Y(Math.max(xa*bw,Math.pow(10,y0)))+' L'+X(knee)+','+Y(p[1])+' L'+X(xb)+','+Y(p[1]);
    mk(svg,'path',{d:d,fill:'none',stroke:'#888','stroke-width':1});
    mk(svg,'text',{x:X(xb)-70,y:Y(p[1])-3,'font-size':9,fill:'#666'},p[0]+' '+(p[1]/1e12).toPrecision(3)+'T');});
  pts.forEach(function(p){var c=mk(svg,'circle',{cx:X(p.x),cy:Y(p.y),r:4,fill:'#d62728'});
    mk(c,'title',{},p.id+' '+(p.m||'(root)')+': '+human(p.y,'FLOP/s'));
    mk(svg,'text',{x:X(p.x)+5,y:Y(p.y)-4,'font-size':9},p.id);});
}
function fromHash(){
  var h=window.location.hash.replace(/^#/,'');
  if(!h)return;
  h.split('&').forEach(function(kv){var p=kv.split('=');if(p.length!==2)return;
    var name=decodeURIComponent(p[0]),v=parseFloat(decodeURIComponent(p[1]));
    document.querySelectorAll('input[data-sym]').forEach(function(el){
      if(el.getAttribute('data-sym')===name&&isFinite(v))el.value=String(v);});});
}
document.querySelectorAll('input[data-sym]').forEach(function(el){el.addEventListener('input',update);});
window.addEventListener('hashchange',function(){fromHash();update();});
fromHash(); update();
document.body.setAttribute('data-ready','1');
})();
"""


def write_html(obj, path, *, force: bool = False, **opts) -> list[Path]:
    """Write the HTML report for a result or report."""
    return [write_atomic(path, render_html(as_report(obj)), force=force)]
