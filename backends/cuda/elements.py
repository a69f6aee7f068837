"""Element rules: the C expression of one element of an inline tile value at a tile index
(a tuple of C int expressions / Python ints), from its operands' elements (E.elem).
Views (broadcast, expand_dims, permute) remap the index; loads are memory.load."""
from __future__ import annotations

from typing import Callable

from ...ir.core import Op
from ...ir.ops import BINARY, COMPARE, UNARY
from . import arith, memory
from .types import compute, literal


def _unary(E, op: Op, idx):
    return arith.unary(op.name, op.results[0].type.dtype, E.elem(op.operands[0], idx),
                       E.fast_math)


def _binary(E, op: Op, idx):
    return arith.binary(op.name, op.results[0].type.dtype, E.elem(op.operands[0], idx),
                        E.elem(op.operands[1], idx), E.fast_math)


def _compare(E, op: Op, idx):
    return arith.compare(op.name, op.operands[0].type.dtype, E.elem(op.operands[0], idx),
                         E.elem(op.operands[1], idx))


def _where(E, op: Op, idx):
    c, a, b = (E.elem(v, idx) for v in op.operands)
    return f"({c} ? {a} : {b})"


def _cast(E, op: Op, idx):
    return arith.cast(op.operands[0].type.dtype, op.results[0].type.dtype,
                      E.elem(op.operands[0], idx))


def _broadcast(E, op: Op, idx):
    src, dst = op.operands[0].type.shape, op.results[0].type.shape
    return E.elem(op.operands[0], tuple(0 if s == 1 and t != 1 else i
                                        for i, s, t in zip(idx, src, dst)))


def _expand_dims(E, op: Op, idx):
    axis = op.attrs["axis"]
    return E.elem(op.operands[0], idx[:axis] + idx[axis + 1:])


def _permute(E, op: Op, idx):
    src = [0] * len(op.attrs["perm"])
    for i, p in enumerate(op.attrs["perm"]):
        src[p] = idx[i]
    return E.elem(op.operands[0], tuple(src))


def _const(E, op: Op, idx):
    return literal(op.results[0].type.dtype, op.attrs["value"])


def _lane(base: str, i) -> str:
    if isinstance(i, int) and i == 0:
        return base
    return f"({base} + {i})"


def _arange(E, op: Op, idx):
    i, start = idx[0], op.attrs["start"]
    if isinstance(i, int):
        return str(start + i)
    return _lane(str(start), i) if start else str(i)


def _tile_index(E, op: Op, idx):
    return _lane(E.env[op.operands[0]].begin, idx[0])


def _tile_begin(E, op: Op, idx):
    return E.env[op.operands[0]].begin


def _symval(E, op: Op, idx):
    return f"(({compute(op.results[0].type.dtype)}){E.sym(op.attrs['expr'])})"


ELEM_RULES: dict[str, Callable] = {}
ELEM_RULES.update({n: _unary for n in UNARY})
ELEM_RULES.update({n: _binary for n in BINARY})
ELEM_RULES.update({n: _compare for n in COMPARE})
ELEM_RULES.update({"where": _where, "cast": _cast, "broadcast": _broadcast,
                   "expand_dims": _expand_dims, "permute": _permute, "const": _const,
                   "arange": _arange, "tile_index": _tile_index, "tile_begin": _tile_begin,
                   "symval": _symval, "load": memory.load})
