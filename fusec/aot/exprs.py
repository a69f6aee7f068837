"""Size formulas for packages: a sympy size expression -> the postfix token list the
package loader evaluates (runtime/exprs.py). The expression goes through the backends'
own translation to Python integer arithmetic (backends/common.py), whose small syntax tree
is then written in postfix: one source of truth for what a formula means."""
from __future__ import annotations

import ast

import sympy

from ..backends.common import _py as python_source

_BINARY = {ast.Add: "+", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def _emit(node, out: list) -> None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        out.append(node.value)
    elif isinstance(node, ast.Subscript):          # s['name']: a size symbol
        out.append("$" + node.slice.value)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _emit(node.left, out)
        _emit(node.right, out)
        out.append(_BINARY[type(node.op)])
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        _emit(node.operand, out)
        out.append("neg")
    elif isinstance(node, ast.Call) and node.func.id in ("max", "min") and node.args:
        _emit(node.args[0], out)
        for arg in node.args[1:]:
            _emit(arg, out)
            out.append(node.func.id)
    else:
        raise ValueError(f"size formula part {ast.dump(node)} has no postfix form")


def postfix(expr) -> list:
    """["$M", "neg", 64, "//", "neg"] for ceiling(M/64)."""
    out: list = []
    _emit(ast.parse(python_source(sympy.sympify(expr)), mode="eval").body, out)
    return out


def symbols_of(tokens: list) -> set[str]:
    return {t[1:] for t in tokens if isinstance(t, str) and t.startswith("$")}
