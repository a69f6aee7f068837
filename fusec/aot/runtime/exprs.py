"""Size formulas of a package (output shapes, tile-loop extents, grids, guards) in postfix
form, evaluated with Python integers -- never with eval.

    tokens: an int (a constant), "$name" (a size symbol bound from the arguments), or an
    operator: "+" "*" "//" (floor division) "%" (floor modulo) "**" "max" "min" (binary)
    and "neg" (unary).  ceiling(M/64) is ["$M", "neg", 64, "//", "neg"].

A formula is checked once (known symbols and operators, a well-formed stack) and turned
into nested closures, so a call costs a few Python calls per formula.
"""
from __future__ import annotations

import operator

from .errors import ManifestError


def _floordiv(a: int, b: int) -> int:
    if b == 0:
        raise ValueError("a size formula divides by zero")
    return a // b


def _mod(a: int, b: int) -> int:
    if b == 0:
        raise ValueError("a size formula takes a modulo by zero")
    return a % b


def _pow(a: int, b: int) -> int:
    if b < 0:
        raise ValueError("a size formula raises to a negative power")
    return a ** b


BINARY = {"+": operator.add, "*": operator.mul, "//": _floordiv, "%": _mod, "**": _pow,
          "max": max, "min": min}
UNARY = {"neg": operator.neg}


def compile_expr(tokens: list, symbols, where: str):
    """A function env -> int for a postfix formula; ManifestError if malformed."""
    stack = []
    for tok in tokens:
        if isinstance(tok, int) and not isinstance(tok, bool):
            stack.append(lambda env, c=tok: c)
        elif isinstance(tok, str) and tok.startswith("$"):
            name = tok[1:]
            if name not in symbols:
                raise ManifestError(f"{where}: unknown size symbol {name!r}")
            stack.append(lambda env, n=name: env[n])
        elif tok in UNARY and stack:
            stack.append(lambda env, f=UNARY[tok], a=stack.pop(): f(a(env)))
        elif tok in BINARY and len(stack) >= 2:
            b, a = stack.pop(), stack.pop()
            stack.append(lambda env, f=BINARY[tok], a=a, b=b: f(a(env), b(env)))
        else:
            raise ManifestError(f"{where}: bad token {tok!r} in size formula {tokens}")
    if len(stack) != 1:
        raise ManifestError(f"{where}: size formula {tokens} does not reduce to one value")
    return stack[0]
