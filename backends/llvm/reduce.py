"""reduce: sum / prod / max / min / argmax / argmin of a tile along one axis.

Along the innermost axis each output element is reduced with W interleaved partial
accumulators (lane l accumulates elements l, l + W, l + 2W, ...) kept in a small buffer
and merged at the end: the W-wide update is a plain elementwise step that the vectorizers
turn into SIMD code for every kind (the loop vectorizer does not recognize NaN-propagating
max/min or argmax reductions, nor select-guarded ones). Along an outer axis the
accumulators form a tile of the output's shape, updated in input order (the innermost loop
runs over contiguous elements).

Semantics (the interpreter's): sums and products of ints give int64 (wrapping); float sums
accumulate in the target's accumulator type (CPU: float64), float products in float64, and
round once; max/min propagate NaN;
argmax/argmin give the int32 index of the first extreme, a NaN counting as the extreme.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import llvmlite.ir as ir

from ...ir.core import Op
from ...ir.dtypes import DType
from . import arith, loops, simt
from .types import F32, F64, I32, I64, compute, is_signed
from .values import Scalar

# partial accumulators per innermost-axis reduction: 32 gives the vector units independent
# chains (AVX-512: 2 registers of float partials, 4 of double ones) where 16 made one chain
# of dependent max/add steps (2 cores, [4096, 1024] float32 against 16: softmax 2.17 ->
# 1.85 ms, layernorm 1.61 -> 1.48, rmsnorm 1.09 -> 1.00; 64 doubled layernorm's compile
# time for nothing)
LANES = 32


@dataclass
class Spec:
    """A reduction over accumulator tuples (one value; or value and index for arg kinds)."""
    types: list                  # accumulator LLVM types
    identity: list               # their initial values
    step: Callable               # (accs, element, lane index i32) -> accs
    merge: Callable              # (accs, accs of later lanes) -> accs
    finish: Callable             # accs -> result in the output's compute type
    # (accs, consecutive elements) -> accs, for the vector groups of simt.py: a float sum
    # adds a group's elements in their own type first, then widens once (as the CUDA C
    # backend does: 8x fewer float64 conversions and adds); None: element by element
    group: Callable | None = None


def value_spec(L, kind: str, d: DType, out: DType) -> Spec:
    b, ctx = L.b, L.ctx
    cty = compute(d)
    if kind == "sum" and d.is_float:
        acc = ctx.target.sum_accumulator(d)
        ext = (lambda x: x) if acc == cty else (lambda x: b.fpext(x, acc))
        add = lambda a, x: b.fadd(a, x)                                   # noqa: E731
        to_out = (lambda a: a) if acc == compute(out) else (lambda a: b.fptrunc(a, F32))
        group = None if acc == cty else (lambda a, xs: [add(a[0], ext(_pairwise(b, xs)))])
        return Spec([acc], [ir.Constant(acc, 0.0)], lambda a, x, i: [add(a[0], ext(x))],
                    lambda a, c: [add(a[0], c[0])],
                    lambda a: arith.round_half(ctx, out, to_out(a[0])), group)
    if kind == "prod" and d.is_float:      # in float64, rounded once
        ext = (lambda x: x) if cty == F64 else (lambda x: b.fpext(x, F64))
        to_out = (lambda a: a) if compute(out) == F64 else (lambda a: b.fptrunc(a, F32))
        return Spec([F64], [ir.Constant(F64, 1.0)], lambda a, x, i: [b.fmul(a[0], ext(x))],
                    lambda a, c: [b.fmul(a[0], c[0])],
                    lambda a: arith.round_half(ctx, out, to_out(a[0])))
    if kind in ("sum", "prod"):            # bools and ints: in int64, wrapping
        widen = (lambda x: x) if cty == I64 else (
            (lambda x: b.sext(x, I64)) if is_signed(d) else (lambda x: b.zext(x, I64)))
        op, ident = (b.add, 0) if kind == "sum" else (b.mul, 1)
        return Spec([I64], [ir.Constant(I64, ident)], lambda a, x, i: [op(a[0], widen(x))],
                    lambda a, c: [op(a[0], c[0])], lambda a: a[0])
    if d.is_float:                   # NaN-propagating, like numpy
        name = "maximum" if kind == "max" else "minimum"
        ident = float("-inf") if kind == "max" else float("inf")
        f = lambda x, y: ctx.intrinsic(name, [x, y])                       # noqa: E731
    elif d.is_bool:
        ident = 0 if kind == "max" else 1
        f = b.or_ if kind == "max" else b.and_
    else:
        ident = _int_extreme(d, kind != "max")
        pred = ">" if kind == "max" else "<"
        cmp = b.icmp_signed if is_signed(d) else b.icmp_unsigned
        f = lambda x, y: b.select(cmp(pred, y, x), y, x)                   # noqa: E731
    return Spec([cty], [ir.Constant(cty, ident)], lambda a, x, i: [f(a[0], x)],
                lambda a, c: [f(a[0], c[0])], lambda a: a[0])


def _pairwise(b: ir.IRBuilder, xs: list) -> ir.Value:
    """The float sum of xs as a balanced tree of adds."""
    while len(xs) > 1:
        xs = [b.fadd(xs[k], xs[k + 1]) if k + 1 < len(xs) else xs[k]
              for k in range(0, len(xs), 2)]
    return xs[0]


def _int_extreme(d: DType, high: bool) -> int:
    bits = compute(d).width
    if is_signed(d):
        return (1 << (bits - 1)) - 1 if high else -(1 << (bits - 1))
    return (1 << bits) - 1 if high else 0


def _arg_spec(L, kind: str, d: DType) -> Spec:
    b = L.b
    cty = compute(d)
    op = ">" if kind == "argmax" else "<"
    if d.is_float:
        ident = float("-inf") if kind == "argmax" else float("inf")

        def better(x, best):         # strictly better, or the first NaN
            return b.or_(b.fcmp_ordered(op, x, best),
                         b.and_(b.fcmp_unordered("uno", x, x),
                                b.fcmp_ordered("ord", best, best)))

        def same(x, best):
            return b.or_(b.fcmp_ordered("==", x, best),
                         b.and_(b.fcmp_unordered("uno", x, x),
                                b.fcmp_unordered("uno", best, best)))
    else:
        ident = (0 if kind == "argmax" else 1) if d.is_bool else \
            _int_extreme(d, kind == "argmin")
        cmp = b.icmp_signed if is_signed(d) else b.icmp_unsigned
        better = lambda x, best: cmp(op, x, best)                          # noqa: E731
        same = lambda x, best: b.icmp_unsigned("==", x, best)              # noqa: E731

    def step(a, x, i):
        take = better(x, a[0])
        return [b.select(take, x, a[0]), b.select(take, i, a[1])]

    def merge(a, c):               # c holds later lanes: it wins ties only with a lower index
        take = b.or_(better(c[0], a[0]),
                     b.and_(same(c[0], a[0]), b.icmp_signed("<", c[1], a[1])))
        return [b.select(take, c[0], a[0]), b.select(take, c[1], a[1])]
    return Spec([cty, I32], [ir.Constant(cty, ident), ir.Constant(I32, 0)], step, merge,
                lambda a: a[1])


def reduce(L, op: Op):
    x = op.operands[0]
    kind, axis = op.attrs["kind"], op.attrs["axis"]
    d = x.type.dtype
    res = op.results[0]
    spec = (_arg_spec(L, kind, d) if kind in ("argmax", "argmin")
            else value_spec(L, kind, d, res.type.dtype))
    threads = L.ctx.target.simt is not None
    if axis == x.type.rank - 1:
        (simt.reduce_innermost if threads else _innermost)(L, x, res, spec)
    else:
        (simt.reduce_outer if threads else _outer)(L, x, axis, res, spec)


def _innermost(L, x, res, spec: Spec) -> None:
    shape = x.type.shape
    n = shape[-1]
    out_shape = res.type.shape
    out = L.new_buffer(res.type.dtype, out_shape) if out_shape else None
    scalar = []

    def per_output(out_idx):
        accs = _reduce_row(L, spec, n, lambda lane: L.elem(x, out_idx + (lane,)))
        val = spec.finish(accs)
        if out is not None:
            L.buf_store(out, out_idx, val)
        else:
            scalar.append(val)
    L.for_each(out_shape, per_output)
    L.env[res] = out if out is not None else Scalar(scalar[0])


def _reduce_row(L, spec: Spec, n: int, element) -> list:
    """Reduce element(lane) for lane in range(n) (lane: i32 value or int)."""
    b = L.b
    L.work += n * L._weight

    if n < 2 * LANES:
        if n == 1:
            return spec.step(spec.identity, element(0), ir.Constant(I32, 0))
        return loops.counted(L.ctx, n, L.fresh(lambda i, a: spec.step(a, element(i), i)),
                             spec.identity, name="red")
    chunks = n // LANES
    bufs = [L.typed_buffer(t, (LANES,)) for t in spec.types]
    for buf, v0 in zip(bufs, spec.identity):
        L.for_each((LANES,), lambda idx, buf=buf, v0=v0: L.raw_store(buf, idx, v0))

    def chunk(c, _):
        base = b.mul(c, ir.Constant(I32, LANES), flags=("nsw", "nuw"))

        def lane(idx):
            i = b.add(base, _i32(idx[0]), flags=("nsw", "nuw"))
            cur = [L.raw_load(buf, idx) for buf in bufs]
            for buf, v in zip(bufs, spec.step(cur, element(i), i)):
                L.raw_store(buf, idx, v)
        L.for_each((LANES,), lane)
        return []
    # the loop over chunks stays scalar: its body, the lanes' loop unrolled, is what the SLP
    # vectorizer turns into SIMD code (vectorized across chunks instead, each lane became a
    # reduction of its own and every load a gather with a stride of LANES: a [4096, 1024]
    # row max on one core took 1.0 ms against torch's 0.60)
    loops.counted(L.ctx, chunks, chunk, name="chunk", vectorize=False)
    # the lanes past the last full chunk go to accumulator 0 (they come after its lanes)
    if n % LANES:
        first = chunks * LANES
        acc0 = [L.raw_load(buf, (0,)) for buf in bufs]
        acc0 = loops.counted(L.ctx, n - first, L.fresh(lambda i, a: spec.step(
            a, element(b.add(i, ir.Constant(I32, first), flags=("nsw", "nuw"))),
            b.add(i, ir.Constant(I32, first), flags=("nsw", "nuw")))), acc0, name="tail")
        for buf, v in zip(bufs, acc0):
            L.raw_store(buf, (0,), v)
    accs = [L.raw_load(buf, (0,)) for buf in bufs]
    for lane in range(1, LANES):
        accs = spec.merge(accs, [L.raw_load(buf, (lane,)) for buf in bufs])
    return accs


def _i32(i):
    return ir.Constant(I32, i) if isinstance(i, int) else i


def _outer(L, x, axis: int, res, spec: Spec) -> None:
    out_shape = res.type.shape
    bufs = [L.typed_buffer(t, out_shape) for t in spec.types]
    for buf, v0 in zip(bufs, spec.identity):
        L.for_each(out_shape, lambda idx, buf=buf, v0=v0: L.raw_store(buf, idx, v0))

    def update(idx):
        out_idx = idx[:axis] + idx[axis + 1:]
        cur = [L.raw_load(buf, out_idx) for buf in bufs]
        for buf, v in zip(bufs, spec.step(cur, L.elem(x, idx), _i32(idx[axis]))):
            L.raw_store(buf, out_idx, v)
    L.for_each(x.type.shape, update)
    out = L.new_buffer(res.type.dtype, out_shape)
    L.for_each(out_shape, lambda idx: L.buf_store(
        out, idx, spec.finish([L.raw_load(buf, idx) for buf in bufs])))
    L.env[res] = out

