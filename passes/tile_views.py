"""Indexed views (reshape, slice) in the tile pass: a view's tile is a load of the tensor in
memory it views, at indices computed from the tile's own.

Each view maps the indices of its result to those of its operand -- a slice to start +
step * i, a reshape through the row-major flat index (dims of a common innermost suffix keep
their index) -- down a chain of views of the same group to the tensor in memory (a param, an
alloc, or the buffer the tile pass wrote a value of another group into). The load checks
every dim: lanes past the group's extents may compute indices past the tensor's, and mask
elimination keeps a check only sympy cannot prove unneeded (floordiv and mod have no range
it knows, so a reshape's checks stay).
"""
from __future__ import annotations

import sympy

from ..ir import TileType, Value
from ..ir import dtypes as D
from ..ir.ops import INDEXED_VIEWS
from .tensor_graph import in_memory


def view_load(emitter, op) -> Value:
    r = op.results[0]
    shape = emitter.shape(r)
    idx = emitter._address(r)
    view = op
    while True:
        idx = _MAPS[view.name](_IndexMath(emitter, shape), view, idx)
        source = view.operands[0]
        if source.op is None or source.op.name not in INDEXED_VIEWS or \
                source.op not in emitter.members:
            break
        view = source.op
    assert in_memory(source), f"tile: {op.name} at {op.loc} views a value not in memory"
    return emitter.b.value("load", [source, *idx], TileType(source.type.dtype, shape),
                           checked=[True] * source.type.rank, mask=False, other=False)


class _IndexMath:
    """Index tile arithmetic on tiles of one shape, skipping the identities."""

    def __init__(self, emitter, shape: tuple):
        self.b, self.emitter, self.shape = emitter.b, emitter, shape
        self.type = TileType(D.INDEX, shape)

    def splat(self, expr) -> Value:
        expr = sympy.sympify(expr)
        if expr.is_Integer:
            return self.b.value("const", [], self.type, value=int(expr))
        scalar = self.b.value("symval", [], TileType(D.INDEX), expr=expr)
        return self.emitter._broadcast(scalar, self.shape)

    def op(self, name: str, a: Value, b: Value) -> Value:
        return self.b.value(name, [a, b], self.type)

    def add(self, a: Value, n) -> Value:
        return a if n == 0 else self.op("add", a, self.splat(n))

    def mul(self, a: Value, n) -> Value:
        return a if n == 1 else self.op("mul", a, self.splat(n))


def _slice(m: _IndexMath, op, idx: list) -> list:
    return [m.add(m.mul(i, step), start)
            for i, start, step in zip(idx, op.attrs["starts"], op.attrs["steps"])]


def _reshape(m: _IndexMath, op, idx: list) -> list:
    src, dst = op.operands[0].type.shape, op.results[0].type.shape
    kept = 0                       # innermost dims equal in both: their index is kept
    while kept < min(len(src), len(dst)) - 1 and src[-1 - kept] == dst[-1 - kept]:
        kept += 1
    outer_src, outer_dst = src[:len(src) - kept], dst[:len(dst) - kept]
    flat = None
    for d, i in enumerate(idx[:len(outer_dst)]):
        if outer_dst[d] == 1:
            continue                   # its index is 0
        term = m.mul(i, sympy.Mul(*outer_dst[d + 1:]))
        flat = term if flat is None else m.op("add", flat, term)
    if flat is None:
        flat = m.splat(0)
    out = []
    for d, size in enumerate(outer_src):
        if size == 1:
            out.append(m.splat(0))
            continue
        stride = sympy.Mul(*outer_src[d + 1:])
        q = flat if stride == 1 else m.op("floordiv", flat, m.splat(stride))
        if any(s != 1 for s in outer_src[:d]):    # the outermost dim needs no wrap-around
            q = m.op("mod", q, m.splat(size))
        out.append(q)
    return out + idx[len(outer_dst):]


_MAPS = {"slice": _slice, "reshape": _reshape}

__all__ = ["view_load"]
