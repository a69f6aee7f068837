"""dot: [M, K] x [K, N] -> [M, N]; each output element is one thread's loop over K (the path
of every dot that tensor_cores.py does not send to tensor cores, mma.py).
Floats accumulate in float32 (half results, rounded once at the end) or the result type
with explicit fused multiply-adds; ints wrap in the result type."""
from __future__ import annotations

from ...ir.core import Op
from . import arith
from .types import WIDE, compute, zero

_FMA = {"float": "fmaf", "double": "fma"}


def dot(E, op: Op):
    a_v, b_v = op.operands
    res = op.results[0]
    out = res.type.dtype
    M, K = a_v.type.shape
    N = b_v.type.shape[1]
    if out.is_bool:
        raise NotImplementedError(f"cuda backend: dot (at {op.loc}) with a bool result")
    if out.is_int and (a_v.type.dtype.is_float or b_v.type.dtype.is_float):
        raise NotImplementedError(f"cuda backend: dot (at {op.loc}) of float operands into "
                                  "an int result")
    acc_t = compute(out)
    buf = E.new_buffer(out, (M, N), base=res.name or "dot")

    def per_output(idx):
        m, n = idx
        acc = E.declare(acc_t, zero(out), "acc", mutable=True)
        k = E.fresh("k")
        with E.block(f"for (int {k} = 0; {k} < {K}; ++{k})"):
            a = E.elem(a_v, (m, k))
            b = E.elem(b_v, (k, n))
            if out.is_float:
                a = a if compute(a_v.type.dtype) == acc_t else f"(({acc_t}){a})"
                b = b if compute(b_v.type.dtype) == acc_t else f"(({acc_t}){b})"
                E.line(f"{acc} = {_FMA[acc_t]}({a}, {b}, {acc});")
            else:
                w = WIDE[out]
                E.line(f"{acc} = ({acc_t})(({w}){acc} + ({w}){a} * ({w}){b});")
        E.line(f"{buf.at(idx)} = {arith.round_half(out, acc)};")
    E.for_each((M, N), per_output)
    E.env[res] = buf
