"""Symbolic value ranges of integer index tiles, and sympy proofs about them (compile time
only).

A range is (lo, hi), both inclusive sympy expressions over the kernel's size symbols, that
bounds every lane of a tile. Known leaves: `tile_index`/`tile_begin` of a `tile_for`, the
induction variable of a `for`, `arange`, int `const` and `symval`; ranges go through
broadcast/expand_dims/permute, widening int casts, add, sub and mul by a constant. Index
arithmetic is assumed not to overflow its int type (indices are sized for their tensors).
"""
from __future__ import annotations

from typing import Callable

import sympy

from ..ir import Op, Value
from ..ir.symbolic import as_expr, size_symbol
from ..ir.types import TileType
from .const_eval import const_value

Range = tuple[sympy.Expr, sympy.Expr]


def _tile_loop_span(loop: Op) -> tuple[sympy.Expr, int]:
    """(number of tiles * block, block) of a tile_for: begins are 0, B, ..., span - B."""
    extent, block = as_expr(loop.attrs["extent"]), loop.attrs["block"]
    return sympy.ceiling(extent / block) * block, block


def _is_int_tile(v: Value) -> bool:
    return isinstance(v.type, TileType) and v.type.dtype.is_int


def _widens(src, dst) -> bool:
    """Whether casting int src to int dst keeps every value."""
    if not (src.is_int and dst.is_int):
        return False
    if src.kind == dst.kind:
        return dst.bits >= src.bits
    return src.kind == "u" and dst.bits > src.bits


class IndexRanges:
    def __init__(self, kernel: Op):
        # Sizes the specialization proved divisible by 16 become 16 * (a fresh integer).
        self._div16 = {}
        for entry in kernel.attrs.get("div16", ()):
            symbol = size_symbol(entry) if isinstance(entry, str) else entry
            self._div16[symbol] = 16 * sympy.Dummy(f"{symbol}_16ths", integer=True,
                                                   nonnegative=True)
        # int parameters that may be negative (the specialization saw a negative value):
        # their symbols lose the nonnegative assumption every size symbol carries
        self._signed = {size_symbol(name): sympy.Symbol(name, integer=True)
                        for name in kernel.attrs.get("signed", ())}
        self._cache: dict[Value, Range | None] = {}
        self._proofs: dict[sympy.Expr, bool] = {}

    def proves_nonnegative(self, expr) -> bool:
        # the same bounds come back for every load/store of a tile: prove each once
        expr = sympy.sympify(expr)
        if expr not in self._proofs:
            self._proofs[expr] = self._prove_nonnegative(expr)
        return self._proofs[expr]

    def _prove_nonnegative(self, expr) -> bool:
        expr = expr.xreplace(self._signed).xreplace(self._div16)
        if expr.is_nonnegative or sympy.expand(expr).is_nonnegative:
            return True
        # no sympy.simplify: it costs tens of ms per query on the compile path, and the
        # rounding bound below proves what it did in every case seen (tests/filecheck)
        bound = _lower_bound_without_rounding(expr)
        return bound is not None and sympy.expand(bound).is_nonnegative is True

    def proves_within(self, v: Value, size) -> bool:
        """Every lane of v lies in [0, size)."""
        r = self.of(v)
        return r is not None and self.proves_nonnegative(r[0]) \
            and self.proves_nonnegative(as_expr(size) - 1 - r[1])

    def of(self, v: Value) -> Range | None:
        if v not in self._cache:
            self._cache[v] = self._compute(v) if _is_int_tile(v) or v.op is None else None
        return self._cache[v]

    def _compute(self, v: Value) -> Range | None:
        op = v.op
        if op is None:
            return self._block_arg(v)
        rule = _RULES.get(op.name)
        return None if rule is None else rule(self, op)

    def _block_arg(self, v: Value) -> Range | None:
        loop = v.owner.parent
        if loop is None or loop.name != "for" or v.index != 0 or not _is_int_tile(v):
            return None
        lo, hi, step = (self.of(v) for v in loop.operands[:3])
        if lo is None or hi is None or step is None:
            return None
        if self.proves_nonnegative(step[0] - 1):          # counts up: lo <= i < hi
            return (lo[0], hi[1] - 1)
        if self.proves_nonnegative(-1 - step[1]):         # counts down: hi < i <= lo
            return (hi[0] + 1, lo[1])
        return None


def _rounding_bounds(atom: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """(lowest, highest) value of floor(a) or ceiling(a) in terms of a. For a = n/d with n
    an integer and d a positive integer, rounding moves a by at most (d-1)/d, else by < 1."""
    a = atom.args[0]
    numerator, denominator = a.as_numer_denom()
    exact_fraction = denominator.is_Integer and denominator > 0 and numerator.is_integer
    slack = 1 - sympy.Rational(1, denominator) if exact_fraction else sympy.Integer(1)
    return (a, a + slack) if atom.func == sympy.ceiling else (a - slack, a)


def _lower_bound_without_rounding(expr: sympy.Expr) -> sympy.Expr | None:
    """A lower bound of expr free of floor/ceiling, which sympy cannot bound by itself (it
    does not know ceiling(x/16)*16 <= x + 16). Each rounding is replaced by whichever of its
    bounds makes expr smallest, which needs expr linear in it with a coefficient of known
    sign. None when that does not hold."""
    for _ in range(32):
        atoms = expr.atoms(sympy.floor, sympy.ceiling)
        if not atoms:
            return expr
        # Outermost first: a rounding nested in another one's argument is reached once the
        # outer one has been replaced by a bound in terms of that argument.
        atom = next(a for a in atoms if not any(b is not a and b.has(a) for b in atoms))
        slot = sympy.Dummy("rounded")
        linear = sympy.expand(expr.xreplace({atom: slot}))
        try:
            if sympy.degree(linear, slot) != 1:
                return None
        except sympy.PolynomialError:
            return None
        coefficient = linear.coeff(slot, 1)
        lowest, highest = _rounding_bounds(atom)
        if coefficient.is_nonnegative:
            expr = linear.xreplace({slot: lowest})
        elif coefficient.is_nonpositive:
            expr = linear.xreplace({slot: highest})
        else:
            return None
    return None


def _handle_loop(op: Op) -> Op | None:
    handle = op.operands[0]
    loop = handle.owner.parent if handle.op is None else None
    return loop if loop is not None and loop.name == "tile_for" else None


def _tile_index(ranges: IndexRanges, op: Op) -> Range | None:
    loop = _handle_loop(op)
    if loop is None:
        return None
    span, _ = _tile_loop_span(loop)
    return sympy.Integer(0), span - 1


def _tile_begin(ranges: IndexRanges, op: Op) -> Range | None:
    loop = _handle_loop(op)
    if loop is None:
        return None
    span, block = _tile_loop_span(loop)
    return sympy.Integer(0), span - block


def _const(ranges: IndexRanges, op: Op) -> Range | None:
    c = const_value(op.result)
    if c is None or isinstance(c, (bool, float)):
        return None
    return sympy.Integer(c), sympy.Integer(c)


def _symval(ranges: IndexRanges, op: Op) -> Range | None:
    try:
        expr = as_expr(op.attrs.get("expr"))
    except TypeError:
        return None
    return expr, expr


def _arange(ranges: IndexRanges, op: Op) -> Range:
    return sympy.Integer(op.attrs["start"]), sympy.Integer(op.attrs["end"] - 1)


def _same_values(ranges: IndexRanges, op: Op) -> Range | None:
    return ranges.of(op.operands[0])


def _cast(ranges: IndexRanges, op: Op) -> Range | None:
    src = op.operands[0]
    if not isinstance(src.type, TileType) or not _widens(src.type.dtype, op.result.type.dtype):
        return None
    return ranges.of(src)


def _add(ranges: IndexRanges, op: Op) -> Range | None:
    a, b = (ranges.of(v) for v in op.operands)
    return None if a is None or b is None else (a[0] + b[0], a[1] + b[1])


def _sub(ranges: IndexRanges, op: Op) -> Range | None:
    a, b = (ranges.of(v) for v in op.operands)
    return None if a is None or b is None else (a[0] - b[1], a[1] - b[0])


def _mul(ranges: IndexRanges, op: Op) -> Range | None:
    """Only by an int constant, whose sign orders the bounds."""
    a, b = op.operands
    for x, c in ((a, b), (b, a)):
        factor, r = const_value(c), ranges.of(x)
        if isinstance(factor, int) and not isinstance(factor, bool) and r is not None:
            return (r[0] * factor, r[1] * factor) if factor >= 0 else \
                (r[1] * factor, r[0] * factor)
    return None


_RULES: dict[str, Callable[[IndexRanges, Op], Range | None]] = {
    "tile_index": _tile_index,
    "tile_begin": _tile_begin,
    "const": _const,
    "symval": _symval,
    "arange": _arange,
    "broadcast": _same_values,
    "expand_dims": _same_values,
    "permute": _same_values,
    "cast": _cast,
    "add": _add,
    "sub": _sub,
    "mul": _mul,
}
