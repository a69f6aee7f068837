"""scan: cumsum / cumprod / cummax / cummin of a tile along one axis. A warp walks a row
along the axis in segments of 32 elements, one a lane: each segment is scanned across the
lanes with shuffles (log2(32) steps), the running value of the segments before it (the
carry) is combined in, and the last lane's result becomes the next segment's carry. The
block's warps take rows in turn; every warp runs every round, so the shuffles are never
under a branch (the CPU emulation of tests/compile relies on it).

The accumulators are reduce.py's (`spec`): float sums in double (float under fast_math),
ints in int64, every element rounded once when stored; max/min propagate NaN.
"""
from __future__ import annotations

import contextlib

from ...ir.core import Op
from .reduce import SHUFFLE_AS, spec
from .values import numel

WARP = 32
UNROLL = 8                # segments of a row in flight at once


def scan(E, op: Op) -> None:
    x = op.operands[0]
    res = op.results[0]
    axis, reverse = op.attrs["axis"], op.attrs["reverse"]
    s = spec(op.attrs["kind"], x.type.dtype, res.type.dtype, E.fast_math)
    (ty, init), = s.accs
    via = SHUFFLE_AS.get(ty, ty)
    shape = tuple(x.type.shape)
    n = shape[axis]
    rows_shape = shape[:axis] + shape[axis + 1:]
    out = E.new_buffer(res.type.dtype, shape, base=res.name or "scan")
    warps = E.nthreads // WARP
    if E.need_sync:
        E.sync()
    E.in_loop += 1
    lane = E.declare("int", f"(int)threadIdx.x % {WARP}", "lane", force=True)
    rows = numel(rows_shape)
    first = E.fresh("rows")
    # every warp runs every round (its shuffles with it), rows past the last idle
    with E.block(f"for (int {first} = 0; {first} < {rows}; {first} += {warps})"):
        row = E.declare("int", f"{first} + (int)threadIdx.x / {WARP}", "row", force=True)
        ridx = E.unflatten(row, rows_shape)
        carry = E.declare(ty, init, "carry", mutable=True)
        seg = E.fresh("seg")
        # unrolled, the segments' loads and lane scans overlap; only the carry chains them
        E.line(f"#pragma unroll {UNROLL}")
        with E.block(f"for (int {seg} = 0; {seg} < {n}; {seg} += {WARP})"):
            walked = f"{seg} + {lane}"
            k = E.declare("int", f"{n - 1} - ({walked})" if reverse else walked, "k",
                          force=True)
            live = " && ".join(c for c, needed in (
                (f"{row} < {rows}", rows % warps != 0), (f"{walked} < {n}", n % WARP != 0))
                if needed)
            live = E.declare("bool", live, "live", force=True) if live else None
            idx = ridx[:axis] + (k,) + ridx[axis:]
            v = E.declare(ty, init, "v", mutable=True)
            with _when(E, live):
                E.line(s.step.format(a=v, x=E.elem(x, idx), k=k))
            off = 1
            while off < WARP:         # inclusive scan over the lanes, in walking order
                other = E.declare(ty, f"({ty})__shfl_up_sync(0xffffffffu, ({via}){v}, {off})",
                                  "other", force=True)
                with E.block(f"if ({lane} >= {off})"):
                    E.line(s.combine.format(a=v, b=other))
                off *= 2
            E.line(s.combine.format(a=v, b=carry))
            with _when(E, live):
                E.line(f"{out.at(idx)} = {s.finish.format(a=v)};")
            E.line(f"{carry} = ({ty})__shfl_sync(0xffffffffu, ({via}){v}, {WARP - 1});")
    E.in_loop -= 1
    E.sync()
    E.env[res] = out


def _when(E, cond: str | None):
    return E.block(f"if ({cond})") if cond else contextlib.nullcontext()
