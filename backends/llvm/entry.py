"""What every target's function around one program does with the launch's arguments: bind
the tensors and scalar params to the lowering's env from 8-byte argument slots (the CPU
reads them from an array, a GPU kernel gets them as parameters), and turn a program id into
the tile coordinates of the launch's grid.

Both layouts (llvm/runtime.ArgLayout, cuda/layout.Layout) list tensors as (arg position,
first slot, IR value, unit-stride dims, ...): data address, sizes[rank], strides[rank]; and
scalars as (arg position, slot, IR value): an int as i64, a float as the bits of a double.
"""
from __future__ import annotations

from typing import Callable

import llvmlite.ir as ir

from ...ir import dtypes as D
from . import arith
from .context import Ctx
from .types import F32, F64, I32, I64, compute, storage
from .values import Scalar, Tensor


def bind_arguments(L, layout, slot: Callable[[int, str], ir.Value]) -> None:
    """env entries for the layout's tensors and scalars; slot(i, name) reads slot i."""
    ctx = L.ctx
    for pos, s, v, unit, *_ in layout.tensors:
        r = v.type.rank
        ptr = ctx.target.tensor_pointer(ctx, slot(s, f"t{pos}.ptr"), storage(v.type.dtype))
        sizes = [slot(s + 1 + d, f"t{pos}.size{d}") for d in range(r)]
        strides = [ir.Constant(I64, 1) if d in unit else slot(s + 1 + r + d, f"t{pos}.stride{d}")
                   for d in range(r)]
        L.env[v] = Tensor(ptr, sizes, strides, v.type.dtype, v)
    for pos, s, v in layout.scalars:
        L.env[v] = Scalar(scalar_param(ctx, v.type.dtype, slot(s, f"p{pos}")))


def scalar_param(ctx: Ctx, d, raw: ir.Value) -> ir.Value:
    """A scalar param's compute value from its 8-byte slot."""
    b = ctx.b
    if d.is_bool:
        return b.icmp_unsigned("!=", raw, ir.Constant(I64, 0))
    if d.is_int:
        ty = compute(d)
        return raw if ty == I64 else b.trunc(raw, ty)
    x = b.bitcast(raw, F64)
    if d == D.float64:
        return x
    return arith.round_half(ctx, d, b.fptrunc(x, F32))


def run_program(L, launch, grid: list[ir.Value], pid: ir.Value) -> None:
    """Emit program `pid` (i64, row-major over the grid dims `grid`, the last dim fastest)
    of a launch."""
    b = L.b
    coords = []
    rest = pid
    for g in reversed(grid[1:]):
        coords.append(b.trunc(b.urem(rest, g), I32))
        rest = b.udiv(rest, g)
    if grid:
        coords.append(b.trunc(rest, I32))
    L.emit_program(launch, coords[::-1])
