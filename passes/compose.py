"""Composition: per-class cost templates, ``${Class}(args)`` expansion, repeated blocks.

Each module class gets a template: one instance's subtree costs with its call arguments
(``module_call_args``) replaced by parameters. A template is ``general`` only if it
reproduces every other instance's costs from that instance's arguments; otherwise its
references expand by instance. The model total composes hierarchically (own ops + Σ
repeat × template(args)), with a repeat equal to the config's layer count kept as the
symbol ``num_layers``. ``module_documents`` writes the seed's module-analysis JSON, one
document per class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sympy

from irtools.ir import IRGraph
from irtools.ir.kinds import ALL_COSTS, COSTS
from irtools.ir.symbols import pretty, sym
from passes.hierarchy import layer_factor
from passes.lines import LineEntry, line_table, module_call_args


@dataclass
class Template:
    """The cost of a module class as a function of its call arguments."""

    cls: str
    params: tuple[sympy.Symbol, ...]
    costs: dict[str, sympy.Expr]
    general: bool
    instances: list[str] = field(default_factory=list)

    def at(self, args) -> dict[str, sympy.Expr]:
        """The template's costs at ``args`` (general templates only)."""
        binding = dict(zip(self.params, args))
        return {c: sympy.expand(e.xreplace(binding)) for c, e in self.costs.items()}


def _params(args) -> tuple[sympy.Symbol, ...]:
    """A plain-symbol argument keeps its name (once); the last compound one is
    ``out_features`` (a projection's width), any other ``argN``."""
    params, seen = [], set()
    for i, a in enumerate(args):
        if isinstance(a, sympy.Symbol) and a not in seen:
            params.append(a)
        elif i == len(args) - 1 and sym("out_features") not in seen:
            params.append(sym("out_features"))
        else:
            params.append(sym(f"arg{i}"))
        seen.add(params[-1])
    return tuple(params)


def _abstract(expr: sympy.Expr, args, params) -> sympy.Expr:
    """Rewrite ``expr`` in the parameters: compound symbolic arguments first."""
    for a, p in sorted(zip(args, params), key=lambda ap: -sympy.count_ops(ap[0])):
        if a != p and a.free_symbols:
            expr = expr.subs(a, p)
    return sympy.expand(expr)


def build_templates(ir: IRGraph) -> dict[str, Template]:
    """One template per module class (the root included); writes ``ir.meta.templates``."""
    tree = ir.meta.modules
    by_class: dict[str, list[str]] = {}
    for path, data in tree.nodes(data=True):
        by_class.setdefault(data["cls"], []).append(path)
    templates = {}
    for cls, paths in by_class.items():
        args = module_call_args(ir, paths[0], tree)
        params = _params(args)
        costs = {c: _abstract(tree.nodes[paths[0]][c], args, params) for c in COSTS}
        template = Template(cls, params, costs, True, paths)
        for other in paths[1:]:
            want = {c: tree.nodes[other][c] for c in COSTS}
            got = template.at(module_call_args(ir, other, tree))
            if any(sympy.expand(got[c] - want[c]) != 0 for c in COSTS):
                template.general = False
                break
        templates[cls] = template
    ir.meta.templates = templates
    return templates


def _children_calls(ir: IRGraph, path: str):
    """(class, args, [paths]) groups of the direct children of ``path``."""
    tree = ir.meta.modules
    groups: dict[tuple, list[str]] = {}
    for child in tree.successors(path):
        key = (tree.nodes[child]["cls"], module_call_args(ir, child, tree))
        groups.setdefault(key, []).append(child)
    return groups


def _own(ir: IRGraph, path: str) -> dict[str, sympy.Expr]:
    nodes = [a for _, a in ir.nodes() if a.get("module") == path]
    return {c: sympy.expand(sympy.Add(*(a[c] for a in nodes))) for c in ALL_COSTS}


def composed_costs(ir: IRGraph, path: str = "") -> dict[str, sympy.Expr]:
    """Costs of ``path`` composed from its own ops and its children, a group of identical
    siblings counted once times its size — ``num_layers`` when that is the config's layer
    count. With ``num_layers`` bound, this equals the flat (captured) costs."""
    tree = ir.meta.modules
    total = _own(ir, path)
    for paths in _children_calls(ir, path).values():
        first = tree.nodes[paths[0]]
        alike = all(all(sympy.expand(tree.nodes[p][c] - first[c]) == 0 for c in COSTS) for p in paths[1:])
        parts = [(composed_costs(ir, paths[0]), len(paths))] if alike else [(composed_costs(ir, p), 1) for p in paths]
        for costs, count in parts:
            factor = layer_factor(ir, paths) if count > 1 else 1
            total = {c: total[c] + factor * costs[c] for c in ALL_COSTS}
    return {c: sympy.expand(v) for c, v in total.items()}


def _kernel(entry: LineEntry, template: Template, args) -> dict[str, Any]:
    def abstract(e):
        return pretty(_abstract(e, args, template.params))

    refs = []
    for call in entry.calls:
        call_args = [pretty(_abstract(a, args, template.params)) for a in call.args]
        count = call.repeat_symbol if call.repeat_symbol is not None else call.repeat
        refs.append({"class": call.cls, "args": call_args, "repeat": str(count), "paths": call.paths})
    own = {c: abstract(e) for c, e in (("flops", entry.own_flops), ("read", entry.own_read), ("write", entry.own_write))}

    def formula(key):
        parts = [("" if r["repeat"] == "1" else f"{r['repeat']} * ") + f"${{{r['class']}}}({', '.join(r['args'])})" for r in refs]
        if own[key] != "0" or not parts:
            parts.append(own[key])
        return " + ".join(parts)

    return {
        "line": entry.line,
        "code": entry.code,
        "kernel_type": entry.kernel_type,
        "repeat": refs[0]["repeat"] if len(refs) == 1 else "1",
        "operation": entry.operation or "view / no-op",
        "analysis": f"{len(entry.nodes)} graph node(s) of {entry.function}()",
        "flops": formula("flops"),
        "memory_access": {"read": formula("read"), "write": formula("write")},
        "flops_expanded": abstract(entry.flops),
        "references": refs,
        "own": own,
    }


def module_documents(ir: IRGraph) -> list[dict[str, Any]]:
    """The seed's module-analysis JSON: one document per class, in its own parameters."""
    templates = ir.meta.templates or build_templates(ir)
    docs = []
    for cls, template in templates.items():
        path = template.instances[0]
        args = module_call_args(ir, path, ir.meta.modules)
        table = line_table(ir, path)
        docs.append({
            "class_name": cls,
            "parameters": [str(p) for p in template.params],
            "general": template.general,
            "instances": template.instances,
            "total": {c: str(e) for c, e in template.costs.items()},
            "kernels": [_kernel(e, template, args) for e in table.entries],
        })
    return docs


def expand_document(docs: list[dict[str, Any]], cls: str, cost: str = "flops") -> sympy.Expr:
    """Expand a class's document through its ``${Class}(args)`` references (recursively),
    in the class's own parameters; at the root this is the model total."""
    from irtools.ir.symbols import from_kv_len, parse

    def read(text: str) -> sympy.Expr:
        return from_kv_len(parse(text))

    by_class = {d["class_name"]: d for d in docs}
    key = {"flops": "flops", "bytes_read": "read", "bytes_written": "write"}[cost]

    def expand(name: str) -> sympy.Expr:
        doc = by_class[name]
        total = sympy.Integer(0)
        for k in doc["kernels"]:
            total += read(k["own"][key])
            for ref in k["references"]:
                child = by_class[ref["class"]]
                binding = {sym(p): read(a) for p, a in zip(child["parameters"], ref["args"])}
                total += read(ref["repeat"]) * expand(ref["class"]).xreplace(binding)
        return sympy.expand(total)

    return expand(cls)
