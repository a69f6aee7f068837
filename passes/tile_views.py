"""Indexed views (reshape, slice, concat, take, take_along) in the tile pass: a view's tile
is a load of the tensor in memory it views, at indices computed from the tile's own (a
concat's, a load of each operand where its part of the axis lies, put together with
`where`; a take's, at the positions loaded from its index tensor; a take_along's, at its
own indices but for the axis, where its index tensor says).

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

from ..ir import TensorType, TileType, Value
from ..ir import dtypes as D
from ..ir.ops import INDEXED_VIEWS
from .tensor_graph import in_memory, pointwise_same_shape


def op_attrs(op) -> dict:
    """An op's attributes for its tile-level form (the fuse pass's group dropped)."""
    return {k: v for k, v in op.attrs.items() if k != "group"}


def iota_tile(b, op, index: Value, rtype: TileType) -> Value:
    """The values of an iota (start + step * i) at the index tile `index`."""
    v = b.value("cast", [index], rtype)
    for name, attr, identity in (("mul", "step", 1), ("add", "start", 0)):
        k = op.attrs[attr]
        if k != identity:
            v = b.value(name, [v, b.value("const", [], rtype, value=k)], rtype)
    return v


def view_load(emitter, op) -> Value:
    r = op.results[0]
    shape = emitter.shape(r)
    return _view_tile(_IndexMath(emitter, shape), op, emitter._address(r), None)


def _view_tile(m: "_IndexMath", view, idx: list, mask) -> Value:
    """The tile of `view`'s result at indices idx (lanes where `mask` is false unread)."""
    reader = _READERS.get(view.name)
    if reader is not None:
        return reader(m, view, idx, mask)
    return _source_tile(m, view.operands[0], _MAPS[view.name](m, view, idx), mask)


def _source_tile(m: "_IndexMath", source, idx: list, mask) -> Value:
    """The tile of `source` at idx: through its own view when the group computes it there,
    else a load of it from memory."""
    if source.op is not None and source.op.name in INDEXED_VIEWS and \
            source.op in m.emitter.members:
        return _view_tile(m, source.op, idx, mask)
    p = source.op
    if p is not None and p in m.emitter.members and pointwise_same_shape(p):
        ins = [_source_tile(m, v, idx, mask) if isinstance(v.type, TensorType)
               else m.emitter._broadcast(m.emitter.get(v), m.shape) for v in p.operands]
        return m.b.value(p.name, ins, TileType(source.type.dtype, m.shape), **op_attrs(p))
    if p is not None and p in m.emitter.members and p.name in ("broadcast", "expand_dims"):
        return _reshaped_source_tile(m, p, idx, mask)
    if p is not None and p.name == "iota":          # computed at idx, never stored
        return iota_tile(m.b, p, idx[0], TileType(source.type.dtype, m.shape))
    assert in_memory(source), f"tile: a view reads {source}, a value not in memory"
    operands = [source, *idx] + ([mask] if mask is not None else [])
    return m.b.value("load", operands, TileType(source.type.dtype, m.shape),
                     checked=[True] * source.type.rank, mask=mask is not None, other=False)


def _reshaped_source_tile(m: "_IndexMath", op, idx: list, mask) -> Value:
    """A broadcast or expand_dims of a scalar or a param (a free op of the group) at idx:
    the operand at idx with the broadcast (size-1) dims at 0 and the inserted dim left
    out."""
    x = op.operands[0]
    if not isinstance(x.type, TensorType):
        return m.emitter._broadcast(m.emitter.get(x), m.shape)
    if op.name == "expand_dims":
        inner = idx[:op.attrs["axis"]] + idx[op.attrs["axis"] + 1:]
    else:
        out = op.results[0].type.shape
        lead = len(out) - x.type.rank
        inner = [m.splat(0) if x.type.shape[d] == 1 and out[lead + d] != 1 else idx[lead + d]
                 for d in range(x.type.rank)]
    return _source_tile(m, x, inner, mask)


def _concat(m: "_IndexMath", view, idx: list, mask) -> Value:
    """Each operand read where its part of the axis lies (at the index less its offset),
    the parts put together with `where`: lanes of the other parts read nothing."""
    axis = view.attrs["axis"]
    parts, start = [], sympy.Integer(0)
    for k, operand in enumerate(view.operands):
        end = start + operand.type.shape[axis]
        inside = None
        if k > 0:
            inside = m.compare("ge", idx[axis], start)
        if k < len(view.operands) - 1:
            below = m.compare("lt", idx[axis], end)
            inside = below if inside is None else m.both(inside, below)
        shifted = list(idx)
        shifted[axis] = m.add(idx[axis], -start)
        read = inside if mask is None else (mask if inside is None else m.both(mask, inside))
        parts.append((inside, _source_tile(m, operand, shifted, read)))
        start = end
    tile = parts[-1][1]
    for inside, part in reversed(parts[:-1]):
        tile = m.b.value("where", [inside, part, tile], part.type)
    return tile


def _take(m: "_IndexMath", view, idx: list, mask) -> Value:
    """x at the positions the index tensor holds (read at the result's index dims) along
    the axis."""
    x, index = view.operands
    axis, k = view.attrs["axis"], index.type.rank
    return _read_at(m, x, axis, _source_tile(m, index, idx[axis:axis + k], mask),
                    idx[:axis], idx[axis + k:], mask)


def _take_along(m: "_IndexMath", view, idx: list, mask) -> Value:
    """x at the same indices but along the axis, where the index tensor (of the result's
    shape) says."""
    x, index = view.operands
    axis = view.attrs["axis"]
    return _read_at(m, x, axis, _source_tile(m, index, idx, mask), idx[:axis],
                    idx[axis + 1:], mask)


def _read_at(m: "_IndexMath", x, axis: int, position: Value, before: list, after: list,
             mask) -> Value:
    """x at [before..., position, after...], 0 where the position is outside the axis:
    checked in the position's own type (an int64 past 2**31 must not wrap into range)
    and applied here, not left to the load (x may be a view of the group, whose indices
    map into a larger tensor, or a value computed from one)."""
    t = TileType(position.type.dtype, m.shape)
    zero = m.b.value("const", [], t, value=0)
    extent = sympy.sympify(x.type.shape[axis])
    if extent.is_Integer:
        end = m.b.value("const", [], t, value=int(extent))
    else:
        end = m.splat(extent) if t.dtype == D.INDEX else m.b.value("cast", [m.splat(extent)], t)
    inside = m.both(m.b.value("ge", [position, zero], TileType(D.bool_, m.shape)),
                    m.b.value("lt", [position, end], TileType(D.bool_, m.shape)))
    if position.type.dtype != D.INDEX:
        position = m.b.value("cast", [position], m.type)
    read = inside if mask is None else m.both(mask, inside)
    tile = _source_tile(m, x, before + [position] + after, read)
    nothing = m.b.value("const", [], tile.type, value=False if tile.type.dtype.is_bool
                        else 0.0 if tile.type.dtype.is_float else 0)
    return m.b.value("where", [inside, tile, nothing], tile.type)


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

    def compare(self, name: str, a: Value, n) -> Value:
        return self.b.value(name, [a, self.splat(n)], TileType(D.bool_, self.shape))

    def both(self, a: Value, b: Value) -> Value:
        return self.b.value("and", [a, b], TileType(D.bool_, self.shape))

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


# views mapping their indices to their one operand's, and views reading for themselves
_MAPS = {"slice": _slice, "reshape": _reshape}
_READERS = {"concat": _concat, "take": _take, "take_along": _take_along}

__all__ = ["op_attrs", "view_load"]
