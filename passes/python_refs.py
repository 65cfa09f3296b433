"""How long CPython keeps each tensor alive in eager mode, read from the nodes' source frames.

A compiled graph frees a tensor after its last use; eager PyTorch frees it when the last
Python reference drops. Two kinds of reference outlive the last use (docs/conventions.md,
"Memory"):

- **call arguments**: a tensor passed into a function or module call is held by the caller
  until the call returns (a value made before a frame instance and read inside it lives
  until that instance ends);
- **names**: ``x = ...`` keeps the statement's result until ``x`` is bound again or its
  frame returns; ``a, b = f(...)`` binds what ``f`` returned, element by element. Returned
  values are the names (or the last expression) of the function's ``return`` statement.

Frame instances come from the frames of consecutive nodes: a frame whose line goes back
without a loop between, or whose callee re-enters from a call site outside any loop, starts
a new instance. Statements come from the source files (``ast``, cached); a file that cannot
be read leaves only the call-argument rule. Returns ``{value id: last node position held}``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache

from irtools.ir import IRGraph

_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_BODIES = (ast.stmt, ast.excepthandler, ast.match_case)


@dataclass
class _Source:
    """One parsed file: the innermost statement, loop and function holding each line."""

    stmt: dict[int, ast.stmt] = field(default_factory=dict)
    loops: dict[int, list[ast.AST]] = field(default_factory=dict)
    func: dict[int, ast.AST] = field(default_factory=dict)


@lru_cache(maxsize=256)
def _source(path: str) -> _Source | None:
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
    src = _Source()

    def visit(node, loops, func):
        lines = range(getattr(node, "lineno", 0), (getattr(node, "end_lineno", 0) or 0) + 1)
        if isinstance(node, _FUNCS):
            func, loops = node, []
            for line in lines:
                src.func[line] = node
        elif isinstance(node, _LOOPS):
            loops = [*loops, node]
        if isinstance(node, ast.stmt):
            for line in lines:
                src.loops[line] = loops
                src.stmt[line] = node  # pre-order: the innermost statement wins
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _BODIES):  # expressions hold no statements
                visit(child, loops, func)

    visit(tree, [], None)
    return src


def _loops(path: str, line: int) -> list:
    src = _source(path)
    return src.loops.get(line, []) if src else []


def _same_loop(path: str, a: int, b: int) -> bool:
    return bool(set(map(id, _loops(path, a))) & set(map(id, _loops(path, b))))


def _stmt(path: str, line: int):
    src = _source(path)
    return src.stmt.get(line) if src else None


@lru_cache(maxsize=4096)
def _returns(fn) -> tuple:
    """A function's ``return`` statements in line order."""
    return tuple(sorted((n for n in ast.walk(fn) if isinstance(n, ast.Return)), key=lambda n: n.lineno))


def _names(expr) -> list[str]:
    return [n.id for n in ast.walk(expr) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)] if expr else []


def _pure_names(expr) -> bool:
    return isinstance(expr, ast.Name) or (isinstance(expr, ast.Tuple | ast.List) and all(_pure_names(e) for e in expr.elts))


@dataclass
class _Instance:
    """One call of one function: where it runs, what its names hold, what it read from outside."""

    file: str
    function: str
    call_line: int | None
    first: int
    last: int
    last_line: int
    binds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    args: set[str] = field(default_factory=set)
    stmt: object = None  # the statement now executing
    direct: tuple[str, ...] = ()  # outputs of its last node, when that node ran in this frame
    from_child: tuple[str, ...] = ()  # what the last callee returned
    last_direct: bool = False
    returned: tuple[str, ...] = ()  # result of a ``return`` statement that ran nodes


class _Refs:
    def __init__(self):
        self.hold: dict[str, int] = {}
        self.stack: list[_Instance] = []

    def keep(self, values, pos: int) -> None:
        for v in values:
            if self.hold.get(v, -1) < pos:
                self.hold[v] = pos

    # -- statements and bindings --
    def bind(self, inst: _Instance, targets, values: tuple[str, ...], pos: int) -> None:
        for target in targets:
            pairs = []
            if isinstance(target, ast.Name):
                pairs = [(target.id, values)]
            elif isinstance(target, ast.Tuple | ast.List):
                names = [e for e in target.elts if isinstance(e, ast.Name)]
                if len(names) == len(target.elts) == len(values):
                    pairs = [(n.id, (v,)) for n, v in zip(names, values)]
                else:
                    pairs = [(n.id, values) for n in names]
            for name, vals in pairs:
                self.keep(inst.binds.get(name, ()), pos)
                inst.binds[name] = vals

    def finish_stmt(self, inst: _Instance) -> None:
        stmt = inst.stmt
        result = inst.direct if inst.last_direct else inst.from_child
        if isinstance(stmt, ast.Assign):
            self.bind(inst, stmt.targets, result, inst.last)
        elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
            self.bind(inst, [stmt.target], result, inst.last)
        elif isinstance(stmt, ast.Return):
            inst.returned = result
        inst.stmt, inst.direct, inst.from_child, inst.last_direct = None, (), (), False

    def copies_between(self, inst: _Instance, after: int, before: int) -> None:
        """``residual = hidden_states`` runs no op: replay such name copies between two statements."""
        src = _source(inst.file)
        if src is None or before <= after:
            return
        seen = set()
        for line in range(after + 1, before):
            stmt = src.stmt.get(line)
            if id(stmt) in seen or not isinstance(stmt, ast.Assign) or not _pure_names(stmt.value):
                continue
            seen.add(id(stmt))
            values = tuple(v for n in _names(stmt.value) for v in inst.binds.get(n, ()))
            if values:
                self.bind(inst, stmt.targets, values, inst.last)

    def close(self, inst: _Instance, parent: _Instance | None) -> None:
        last_stmt = inst.stmt
        self.finish_stmt(inst)
        src = _source(inst.file)
        ret = None
        if isinstance(last_stmt, ast.Return):
            ret = last_stmt
        elif src is not None and inst.last_line in src.func:
            ret = next((r for r in _returns(src.func[inst.last_line]) if r.lineno > inst.last_line), None)
        if ret is not None and ret is last_stmt:  # the return expression ran ops: its result
            values = list(inst.returned)
        else:  # ``return a, b`` or ``return Output(x=a)``: what those names hold
            values = [v for n in _names(ret.value if ret is not None else None) for v in inst.binds.get(n, ())]
        for vals in inst.binds.values():
            self.keep(vals, inst.last)
        self.keep(inst.args, inst.last)
        if parent is not None:
            parent.from_child, parent.last_direct = tuple(dict.fromkeys(values)), False

    # -- one node --
    def node(self, pos: int, frames, outputs: tuple[str, ...], inputs: list[tuple[str, int]]) -> None:
        stack = self.stack
        d0, reentry = len(frames), False
        for d, f in enumerate(frames):
            inst = stack[d] if d < len(stack) else None
            if inst is None or inst.file != f.file or inst.function != f.function or (
                    d > 0 and inst.call_line != frames[d - 1].line):
                d0 = d
                break
            if f.line < inst.last_line and not _same_loop(f.file, inst.last_line, f.line):
                d0, reentry = d, True
                break
        while reentry and d0 > 0 and not _loops(frames[d0 - 1].file, frames[d0 - 1].line):
            d0 -= 1  # the callee ran again from a call site outside any loop: its caller did too
        for d in range(len(stack) - 1, min(d0, len(frames)) - 1, -1):
            self.close(stack[d], stack[d - 1] if d > 0 else None)
        del stack[min(d0, len(frames)):]
        if reentry and 0 < d0 <= len(stack):  # a loop calls again: its statement ran once more
            self.finish_stmt(stack[d0 - 1])
        for d, f in enumerate(frames):
            if d < len(stack):
                inst = stack[d]
                stmt = _stmt(f.file, f.line)
                if stmt is not inst.stmt:
                    after = inst.stmt.end_lineno if inst.stmt is not None else inst.last_line
                    self.finish_stmt(inst)
                    if stmt is not None:
                        self.copies_between(inst, after, stmt.lineno)
                    inst.stmt = stmt
            else:
                stack.append(_Instance(f.file, f.function, frames[d - 1].line if d else None, pos, pos, f.line,
                                       stmt=_stmt(f.file, f.line)))
            inst = stack[d]
            inst.last, inst.last_line = pos, f.line
            if d == len(frames) - 1:
                inst.direct, inst.last_direct = outputs, True
        for v, made in inputs:
            for inst in stack:
                if inst.first > made:
                    inst.args.add(v)
                    break

    def finish(self) -> dict[str, int]:
        for d in range(len(self.stack) - 1, -1, -1):
            self.close(self.stack[d], self.stack[d - 1] if d > 0 else None)
        self.stack = []
        return self.hold


def python_holds(ir: IRGraph) -> dict[str, int]:
    """Value id -> the position (capture order) of the last node during which Python still
    references it; values no frame holds past their last use are absent."""
    refs = _Refs()
    made: dict[str, int] = {}
    for pos, (_node_id, a) in enumerate(ir.nodes()):
        outs = tuple(v for v in a.output_values if v is not None)
        for v in outs:
            made[v] = pos
        frames = a.source.frames if a.source is not None else ()
        if not frames or a.input_setup:
            continue
        ins = [(v, made[v]) for v in a.input_values if v is not None and v in made]
        refs.node(pos, frames, outs, ins)
    return refs.finish()


__all__ = ["python_holds"]
