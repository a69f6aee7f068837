"""Symbolic sizes: sympy expressions over integer, non-negative size symbols.

Every size symbol is made by `size_symbol` so that the same name always gives the same sympy
object (same assumptions), which the parser relies on for round-tripping.
"""
from __future__ import annotations

import functools
import re

import sympy

_IDENT = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_FUNCTIONS = {"floor": sympy.floor, "ceiling": sympy.ceiling, "Mod": sympy.Mod,
              "Max": sympy.Max, "Min": sympy.Min}


def size_symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, nonnegative=True)


def hinted_value(expr: sympy.Expr, hints: dict) -> int | None:
    """The value of a size expression in the call being specialized (`hints`: size symbol
    name -> value), or None when one of its symbols has no value there."""
    if expr.is_Integer:
        return int(expr)
    try:
        return int(expr.xreplace({s: hints[s.name] for s in expr.free_symbols}))
    except KeyError:
        return None


def constant_difference(a, b) -> sympy.Expr | None:
    """a - b where it is the same number for every value of the size symbols, else None.
    A polynomial difference (the common case: sums and products of sizes) is decided by
    expanding it; only the rest (floor, ceiling, Mod, Max, Min, division by a size) goes to
    sympy.simplify, which takes milliseconds to a tenth of a second (floors of pooled
    sizes) and imports much of sympy (~0.2 s) the first time it runs: answers are kept,
    since the fuse pass asks the same questions of every candidate merge."""
    return _difference(as_expr(a), as_expr(b))


@functools.lru_cache(maxsize=8192)
def _difference(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
    diff = sympy.expand(a - b)
    if diff.is_number:
        return diff
    if diff.is_polynomial():
        return None
    diff = sympy.simplify(diff)
    return diff if diff.is_number else None


def is_zero(expr) -> bool:
    """Whether a size expression is 0 for every value of its symbols."""
    return constant_difference(expr, 0) == 0


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1): tile lengths and size buckets."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def as_expr(value) -> sympy.Expr:
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, bool):
        raise TypeError("a bool is not a size")
    if isinstance(value, int):
        return sympy.Integer(value)
    raise TypeError(f"not a symbolic size: {value!r}")


def expr_to_text(expr: sympy.Expr) -> str:
    return str(expr)


def expr_from_text(text: str) -> sympy.Expr:
    names = {name: size_symbol(name) for name in _IDENT.findall(text) if name not in _FUNCTIONS}
    try:
        return sympy.sympify(text, locals={**names, **_FUNCTIONS})
    except (sympy.SympifyError, SyntaxError, TypeError) as exc:
        raise ValueError(f"bad size expression {text!r}: {exc}") from None


def is_simple(expr: sympy.Expr) -> bool:
    """Integers and bare symbols print without quotes in types."""
    return isinstance(expr, (sympy.Integer, sympy.Symbol))


def ceil_div(a, b) -> sympy.Expr:
    return sympy.ceiling(sympy.Rational(1, 1) * as_expr(a) / as_expr(b))


def floor_div(a, b) -> sympy.Expr:
    return sympy.floor(as_expr(a) / as_expr(b))


def free_names(expr: sympy.Expr) -> set[str]:
    return {s.name for s in expr.free_symbols}
