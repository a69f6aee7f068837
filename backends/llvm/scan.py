"""scan: cumsum / cumprod / cummax / cummin of a tile along one axis, for the CPU and the
NVPTX targets alike: each row along the axis is walked in order by one thread (on the GPU
the rows are spread over the block's threads, simt.py), carrying the accumulator of
reduce.py's spec and storing every prefix's rounded value.

Semantics (the interpreter's): float sums and products accumulate in the target's
accumulator type (float64 on the CPU), every element rounded once; ints in int64; max/min
propagate NaN.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ...ir.core import Op
from . import loops
from .reduce import value_spec
from .types import I32


def scan(L, op: Op) -> None:
    x = op.operands[0]
    res = op.results[0]
    axis, reverse = op.attrs["axis"], op.attrs["reverse"]
    spec = value_spec(L, op.attrs["kind"], x.type.dtype, res.type.dtype)
    shape = x.type.shape
    n = shape[axis]
    rows = shape[:axis] + shape[axis + 1:]
    out = L.new_buffer(res.type.dtype, shape)
    b = L.b

    def per_row(row):
        def step(i, accs):
            k = b.sub(ir.Constant(I32, n - 1), i) if reverse else i
            idx = row[:axis] + (k,) + row[axis:]
            accs = spec.step(accs, L.elem(x, idx), k)
            L.buf_store(out, idx, spec.finish(accs))
            return accs
        loops.counted(L.ctx, n, L.fresh(step), spec.identity, name="scan")
    L.for_each(rows, per_row)
    L.work += n * L._weight
    L.env[res] = out
