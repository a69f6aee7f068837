"""Loads, stores and atomics: lanes address tensor elements through sizes and strides;
lanes out of bounds on a checked dim or masked off never touch memory (the access is
guarded by a branch, which the loop vectorizer turns into masked SIMD loads/stores)."""
from __future__ import annotations

from typing import Callable

import llvmlite.ir as ir

from ...ir import dtypes as D
from ...ir.core import Op
from ...ir.dtypes import DType
from ...ir.ops import memory_operands
from ..joint_stores import group_body
from . import arith, loops, simt, vectors
from .types import F32, I8, I16, I32, I64, is_signed, storage
from .values import Scalar, Tensor


def address(L, op: Op, idx: tuple):
    """(element pointer, valid mask or None) of a load/store/atomic lane."""
    tensor_v, idx_vs, _, mask_v, _ = memory_operands(op)
    t: Tensor = L.env[tensor_v]
    b = L.b
    valid = None
    off = None
    for d, (iv, checked) in enumerate(zip(idx_vs, op.attrs["checked"])):
        x = L.elem(iv, idx)
        if x.type != I64:
            x = b.sext(x, I64) if is_signed(iv.type.dtype) else b.zext(x, I64)
        if checked:
            ok = b.icmp_unsigned("<", x, t.sizes[d])       # also rejects x < 0
            valid = ok if valid is None else b.and_(valid, ok)
        stride = t.strides[d]
        term = x if isinstance(stride, ir.Constant) and stride.constant == 1 \
            else b.mul(x, stride)
        off = term if off is None else b.add(off, term)
    if mask_v is not None:
        m = L.elem(mask_v, idx)
        valid = m if valid is None else b.and_(valid, m)
    ptr = b.gep(t.ptr, [off if off is not None else ir.Constant(I64, 0)])
    return ptr, valid


def guarded(L, valid, then: Callable[[], ir.Value | None], other: ir.Value | None):
    """then() under `valid` (None: always); returns phi(then(), other) when other given."""
    if other is None:
        loops.branch(L.ctx, valid, then)
        return None
    return loops.branch(L.ctx, valid, lambda: [then()], [other])[0]


def load(L, op: Op, idx):
    d = op.operands[0].type.dtype
    _, _, _, _, other_v = memory_operands(op)
    lane = vectors.position(L, idx)
    if lane is not None:
        got = _lane_of_vector_load(L, op, idx, *lane)
        if got is not None:
            return got
    ptr, valid = address(L, op, idx)
    other = L.elem(other_v, idx) if other_v is not None else arith.zero(d)
    return guarded(L, valid, lambda: arith.from_storage(L.ctx, d, L.b.load(ptr)), other)


def _lane_of_vector_load(L, op: Op, idx, idx0, w: int):
    """Lane w's element of its vector group's load (vectors.py), None if not loaded so."""
    d = op.operands[0].type.dtype
    width = L.vector_group.width

    def read():
        ptr, valid = address(L, op, idx0)
        raw = vectors.read(L, ptr, storage(d), width, valid)
        return [arith.from_storage(L.ctx, d, r) for r in raw], valid
    got = vectors.load(L, (op, idx0), w, lambda: _vectorizable(L, op), read)
    if got is None:
        return None
    values, valid = got
    other_v = memory_operands(op)[4]
    if valid is None or other_v is None:        # masked-off lanes read as zeros
        return values[w]
    return L.b.select(valid, values[w], L.elem(other_v, idx))


def _vectorizable(L, op: Op) -> bool:
    """Whether the tensor access `op` may move the active vector group at once."""
    return L.vec.width_bytes(op, L.vector_group.width) is not None


def store(L, op: Op):
    """A store; the stores of its joint group (plan.joint) all at the last one: one loop
    writing each element of all of them, their shared values computed once per element."""
    body = group_body(L.plan, op, lambda s: _store_body(L, s))
    if body is not None:
        L.for_each(memory_operands(op)[2].type.shape, body)


def _store_body(L, op: Op):
    """The body storing one element of op's value."""
    tensor_v, _, value_v, _, _ = memory_operands(op)
    d = tensor_v.type.dtype

    def scalar(at, val):
        ptr, valid = at
        guarded(L, valid, lambda: L.b.store(val, ptr), None)

    def write(at0, values):
        ptr, valid = at0
        vectors.write(L, ptr, values, valid)

    def body(idx):
        val = arith.to_storage(L.ctx, d, L.elem(value_v, idx))
        # pointer and mask now: they may read this element's register slot (simt.py)
        at = address(L, op, idx)
        lane = vectors.position(L, idx)
        if lane is not None:
            idx0, w = lane
            if vectors.store(L, (op, idx0), w, at, val, lambda: _vectorizable(L, op),
                             write, scalar, L.emit_store):
                return
        L.emit_store(lambda: scalar(at, val))
    return body


def atomic_add(L, op: Op):
    tensor_v, _, value_v, _, _ = memory_operands(op)
    d = tensor_v.type.dtype
    result = op.results[0]
    shape = value_v.type.shape
    out = L.new_buffer(d, shape) if shape else None
    scalar = []

    def lane(idx):
        ptr, valid = address(L, op, idx)
        val = L.elem(value_v, idx)
        return guarded(L, valid, lambda: _atomic_rmw_add(L, d, ptr, val), arith.zero(d))

    def body(idx):
        old = lane(idx)
        if out is not None:
            L.buf_store(out, idx, old)
        else:
            scalar.append(old)
    if out is None and L.ctx.target.simt is not None:
        # every GPU thread computes scalars; the add happens once
        L.env[result] = Scalar(simt.one_thread(L, lambda: lane(()), arith.zero(d).type))
        return
    L.for_each(shape, body)
    L.env[result] = out if out is not None else Scalar(scalar[0])


def _atomic_rmw_add(L, d: DType, ptr, val):
    """Atomically add a compute-type value to a storage element; returns the old value."""
    b = L.b
    if d.is_bool:      # np.add.at on bools is a logical or
        old = b.atomic_rmw("or", ptr, b.zext(val, I8), "monotonic")
        return b.icmp_unsigned("!=", old, ir.Constant(I8, 0))
    if d.is_int:
        return b.atomic_rmw("add", ptr, val, "monotonic")
    if not d.is_half:
        return b.atomic_rmw("fadd", ptr, val, "monotonic")
    # half floats: compare-and-swap loop on the 16-bit pattern, rounding each sum
    iptr = b.bitcast(ptr, I16.as_pointer())
    first = b.load_atomic(iptr, "monotonic", 2)
    fn = b.function
    pre = b.block
    loop_bb = fn.append_basic_block("cas.loop")
    done = fn.append_basic_block("cas.done")
    b.branch(loop_bb)
    b.position_at_end(loop_bb)
    cur = b.phi(I16)
    cur_val = _half_bits_to_f32(L, d, cur)
    new = arith.to_storage(L.ctx, d, arith.round_half(L.ctx, d, b.fadd(cur_val, val)))
    new_bits = b.bitcast(new, I16) if new.type != I16 else new
    pair = b.cmpxchg(iptr, cur, new_bits, "monotonic", "monotonic")
    seen = b.extract_value(pair, 0)
    ok = b.extract_value(pair, 1)
    cur.add_incoming(first, pre)
    cur.add_incoming(seen, b.block)
    b.cbranch(ok, done, loop_bb)
    b.position_at_end(done)
    return cur_val


def _half_bits_to_f32(L, d: DType, bits):
    b = L.b
    if d == D.float16:
        return b.fpext(b.bitcast(bits, ir.HalfType()), F32)
    return b.bitcast(b.shl(b.zext(bits, I32), ir.Constant(I32, 16)), F32)


