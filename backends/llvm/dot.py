"""dot: [M, K] x [K, N] -> [M, N] on tile buffers."""
from __future__ import annotations

import llvmlite.ir as ir

from ...ir.core import Op
from . import arith, loops, mma, simt
from .types import F64, I64, compute, is_signed


def dot(L, op: Op):
    """C[m, n] = sum_k A[m, k] B[k, n]: k outside n so that the innermost loop streams rows
    of B and C (vectorized over n); floats accumulate in float32 (halves) or the result
    type, ints wrap in the result type."""
    a_v, b_v = op.operands
    res = op.results[0]
    out = res.type.dtype
    M, K = a_v.type.shape
    N = b_v.type.shape[1]
    b = L.b
    if out.is_int and (a_v.type.dtype.is_float or b_v.type.dtype.is_float):
        raise NotImplementedError("llvm backend: dot of float operands into an int result")
    acc_ty = compute(out) if not out.is_bool else I64
    if out.is_bool:
        raise NotImplementedError("llvm backend: dot with a bool result")
    is_f = out.is_float

    def conv(v, d):
        if is_f:
            if d.is_float:
                return v if v.type == acc_ty else (b.fpext(v, acc_ty) if acc_ty == F64
                                                   else b.fptrunc(v, acc_ty))
            return (b.sitofp if is_signed(d) else b.uitofp)(v, acc_ty)
        w = v.type.width
        if w == acc_ty.width:
            return v
        if w > acc_ty.width:
            return b.trunc(v, acc_ty)
        return b.sext(v, acc_ty) if is_signed(d) else b.zext(v, acc_ty)

    mul = (lambda x, y: b.fmul(x, y, flags=("contract",))) if is_f else b.mul
    add = (lambda x, y: b.fadd(x, y, flags=("contract",))) if is_f else b.add
    if L.ctx.target.simt is not None:
        finish = ((lambda v: arith.round_half(L.ctx, out, v)) if out.is_half
                  else (lambda v: v))
        half = mma.half_type(L, a_v, b_v, acc_ty)
        if half is None:
            simt.dot(L, a_v, b_v, res, acc_ty, conv, mul, add, finish)
            return
        summed = mma.carried_sum(L, op)
        c = mma.dot(L, a_v, b_v, half, out, conv, finish,
                    into=summed[1] if summed else None)
        if summed:                      # the add's value is the slot, the dot's unread
            L.absorbed[summed[0].results[0]] = c
        L.work += M * N * K * L._weight
        L.env[res] = c
        return
    zero = ir.Constant(acc_ty, 0.0 if is_f else 0)
    c = L.new_buffer(out, (M, N), elem_ty=acc_ty)
    L.work += M * N * K * L._weight

    def row(m, _):
        L.for_each((N,), lambda idx: L.raw_store(c, (m, idx[0]), zero))

        def kstep(k, _):
            saved, L.memo = L.memo, {}
            av = conv(L.elem(a_v, (m, k)), a_v.type.dtype)
            L.memo = saved

            def inner(idx):
                n = idx[0]
                bv = conv(L.elem(b_v, (k, n)), b_v.type.dtype)
                cur = L.raw_load(c, (m, n))
                L.raw_store(c, (m, n), add(cur, mul(av, bv)))
            L.for_each((N,), inner)
            return []
        loops.counted(L.ctx, K, kstep, name="k")
        return []
    loops.counted(L.ctx, M, row, name="m")
    if out.is_half:
        L.for_each((M, N), lambda idx: L.raw_store(
            c, idx, arith.round_half(L.ctx, out, L.raw_load(c, idx))))
    L.env[res] = c


