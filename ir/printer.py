"""The canonical text form. `parse(print_module(m))` prints identically (see parser.py).

    %r = name(%operand, ..., attr = value, ...) : result_type, ... loc("file":line:col) {
    ^(%block_arg: type, ...):
      ...nested ops...
    }

Values keep their name hint (`%row`) when it is free, else get the next number (`%7`).
"""
from __future__ import annotations

import json
import re

import sympy

from .core import UNKNOWN_LOC, Block, Module, Op, Value
from .symbolic import expr_to_text

_HINT = re.compile(r"[A-Za-z_][A-Za-z_0-9.]*$")


def format_attr(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, sympy.Basic):
        return "e" + json.dumps(expr_to_text(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    raise TypeError(f"cannot print attribute value {value!r}")


class _Namer:
    def __init__(self):
        self.names: dict[Value, str] = {}
        self.taken: set[str] = set()
        self.counter = 0

    def define(self, v: Value) -> str:
        hint = v.name if v.name and _HINT.match(v.name) else None
        if hint is not None:
            name, k = hint, 0
            while name in self.taken:
                k += 1
                name = f"{hint}_{k}"
        else:
            while str(self.counter) in self.taken:
                self.counter += 1
            name = str(self.counter)
            self.counter += 1
        self.taken.add(name)
        self.names[v] = name
        return "%" + name

    def use(self, v: Value) -> str:
        try:
            return "%" + self.names[v]
        except KeyError:
            return f"%<undefined {v.type}>"


def _print_op(op: Op, namer: _Namer, indent: str, out: list[str], with_locs: bool) -> None:
    parts = [namer.use(v) for v in op.operands]
    parts += [f"{k} = {format_attr(v)}" for k, v in sorted(op.attrs.items())]
    line = indent
    if op.results:
        line += ", ".join(namer.define(r) for r in op.results) + " = "
    line += f"{op.name}({', '.join(parts)})"
    if op.results:
        line += " : " + ", ".join(str(r.type) for r in op.results)
    if with_locs and op.loc != UNKNOWN_LOC:
        line += f" loc({json.dumps(op.loc.file)}:{op.loc.line}:{op.loc.col})"
    if not op.regions:
        out.append(line)
        return
    for region in op.regions:
        out.append(line + " {")
        _print_block(region, namer, indent, out, with_locs)
        line = indent + "}"
    out.append(line)


def _print_block(block: Block, namer: _Namer, indent: str, out: list[str], with_locs: bool):
    if block.args:
        args = ", ".join(f"{namer.define(a)}: {a.type}" for a in block.args)
        out.append(f"{indent}^({args}):")
    for op in block.ops:
        _print_op(op, namer, indent + "  ", out, with_locs)


def print_op(op: Op, with_locs: bool = True) -> str:
    out: list[str] = []
    _print_op(op, _Namer(), "", out, with_locs)
    return "\n".join(out) + "\n"


def print_module(module: Module, with_locs: bool = True) -> str:
    return "".join(print_op(op, with_locs) for op in module.ops)
