"""Target-neutral lowering of one program of a launch nest to LLVM IR.

Every IR value has a representation in `env` (values.py: Scalar, Buf, INLINE, Handle,
Tensor). `elem(v, idx)` yields the element of v at a tile index (a tuple of i32 values / ints):
loaded from a buffer, or computed by the op's rule in ELEM_RULES, memoized within one loop
body. Ops that materialize (memory.py: stores, atomics; reduce.py; dot.py; control.py:
loops, ifs) have rules in OP_RULES and emit loop nests (loops.py) whose bodies call elem();
so do values the plan (plan.py) materializes. The target (cpu.py,
nvptx.py) sets up tensors and scalars in `env` (entry.py), provides `sym(expr)` for size
expressions, and wraps programs into functions.
"""
from __future__ import annotations

from typing import Callable

import llvmlite.ir as ir

from ...ir import dtypes as D
from ...ir.core import Op, Value
from ...ir.dtypes import DType
from ...ir.ops import BINARY, COMPARE, UNARY
from . import arith, control, dot, loops, memory, reduce, scan, simt, vectors
from .context import Ctx
from ..carried import CarriedSlots
from ..vector_facts import VectorFacts
from ..walk import OpWalker
from .plan import Plan
from .types import I1, I8, I32, I64, buffer, compute
from .values import INLINE, Buf, Handle, Reg, Scalar, numel, rank


class Lowering(OpWalker, CarriedSlots):
    BACKEND = "llvm"
    def __init__(self, ctx: Ctx, kernel: Op, plan: Plan, sym: Callable):
        self.ctx = ctx
        self.kernel = kernel
        self.plan = plan
        self.sym = sym                       # sympy expr -> i64 value (target supplied)
        self.env: dict[Value, object] = {}
        self.memo: dict = {}
        self.work = 0                        # rough element-ops per program (threading)
        self.deferred_stores: list | None = None   # simt.py: tensor stores held back
        self.vector_group = None             # vectors.py: the lanes being emitted together
        # GPU targets: values held in registers (simt.register_tiles), their shapes, and the
        # slot (round, lane) of the element being emitted in the register mapping
        self.registers: set[Value] = set()
        self.register_shapes: set[tuple] = set()
        self.slot: tuple | None = None
        # values an earlier op's rule computed, and where (mma.carried_sum: an add)
        self.absorbed: dict[Value, Buf] = {}
        self.vec = VectorFacts(kernel, self.env, self._unit_last_stride)
        self._weight = 1

    @property
    def b(self) -> ir.IRBuilder:
        return self.ctx.b

    # -- elements --------------------------------------------------------------------------
    def elem(self, v: Value, idx: tuple) -> ir.Value:
        rep = self.env[v]
        if isinstance(rep, Scalar):
            return rep.value
        if isinstance(rep, Reg):
            return rep.values[self._slot_of(rep)]
        if rep is INLINE and self.vector_group is not None:
            lane0 = self._same_as_lane0(v, idx)
            if lane0 is not None:
                return self.elem(v, lane0)
        key = (v, idx)
        hit = self.memo.get(key)
        if hit is None:
            if isinstance(rep, Buf):
                hit = self.buf_load(rep, idx)
            elif rep is INLINE:
                hit = self.elem_rules[v.op.name](self, v.op, idx)
            else:
                raise TypeError(f"{v} is not a tile value ({rep})")
            self.memo[key] = hit
        return hit

    def _same_as_lane0(self, v: Value, idx: tuple) -> tuple | None:
        """Lane 0's index where idx is a later lane of the active vector group and v has one
        value over the group (VectorFacts.uniform: e.g. a bound check `col < n` with n a
        multiple of the width): one compare for the group, not one predicate a lane, which
        ptxas would otherwise keep packed in registers across a row's passes."""
        pos = vectors.position(self, idx)
        if pos is None or pos[1] == 0:
            return None
        width = self.vector_group.width
        return pos[0] if self.vec.uniform(v, len(idx) - 1, width) else None

    def linear(self, buf: Buf, idx) -> ir.Value:
        """Row-major element offset (i64) of idx in a buffer."""
        b = self.b
        off = None
        for i, stride in buf.terms(idx):
            if isinstance(i, int):
                if i == 0:
                    continue
                term = ir.Constant(I64, i * stride)
            else:
                term = b.sext(i, I64)
                if stride != 1:
                    term = b.mul(term, ir.Constant(I64, stride), flags=("nsw", "nuw"))
            off = term if off is None else b.add(off, term, flags=("nsw", "nuw"))
        return off if off is not None else ir.Constant(I64, 0)

    def buf_load(self, buf: Buf, idx) -> ir.Value:
        """An element of a buffer (bool buffers hold i8, read back as i1)."""
        lane = self._buffer_lane(buf, idx)
        if lane is None:
            return self.raw_load(buf, idx)
        idx0, w = lane
        got = vectors.load(self, (buf.ptr, idx0), w, lambda: True,
                           lambda: vectors.read(self, self._element(buf, idx0),
                                                buf.ptr.type.pointee, self.vector_group.width,
                                                None))
        if got is None:
            return self.raw_load(buf, idx)
        return self.b.trunc(got[w], I1) if buf.dtype == D.bool_ else got[w]

    def buf_store(self, buf: Buf, idx, value) -> None:
        if value.type == I1:
            value = self.b.zext(value, I8)
        lane = self._buffer_lane(buf, idx)
        if lane is not None and vectors.store(
                self, (buf.ptr, lane[0]), lane[1], idx, value, lambda: True,
                lambda idx0, values: vectors.write(self, self._element(buf, idx0), values,
                                                   None),
                self._store_element(buf), lambda fn: fn()):
            return
        self.raw_store(buf, idx, value)

    def _element(self, buf: Buf, idx) -> ir.Value:
        return self.b.gep(buf.ptr, [self.linear(buf, idx)], inbounds=True)

    def _store_element(self, buf: Buf):
        return lambda idx, value: self.b.store(value, self._element(buf, idx))

    def _buffer_lane(self, buf: Buf, idx):
        """vectors.position of a buffer access: its rows hold whole vector groups."""
        lane = vectors.position(self, idx)
        if lane is None or buf.shape[-1] % self.vector_group.width:
            return None
        return lane

    def raw_load(self, buf: Buf, idx) -> ir.Value:
        """buf_load that never takes a vector group: read-modify-write accumulators and the
        SIMT mapping's own slots, whose index is not a lane's."""
        v = self.b.load(self._element(buf, idx))
        return self.b.trunc(v, I1) if buf.dtype == D.bool_ else v

    def raw_store(self, buf: Buf, idx, value) -> None:
        if value.type == I1:
            value = self.b.zext(value, I8)
        self._store_element(buf)(idx, value)

    def use_registers(self, values: set[Value]) -> None:
        self.registers = set(values)
        self.register_shapes = {tuple(v.type.shape) for v in values}

    def _slot_of(self, reg: Reg) -> tuple:
        if self.slot is None:
            raise AssertionError(f"a register tile of shape {reg.shape} is accessed outside "
                                 "the register mapping (simt.py)")
        return self.slot

    def emit_store(self, fn: Callable[[], None]) -> None:
        """fn(), a tensor store; deferred while simt.py holds stores back."""
        if self.deferred_stores is not None:
            self.deferred_stores.append(fn)
        else:
            fn()

    def _unit_last_stride(self, tensor: Value) -> bool:
        stride = self.env[tensor].strides[-1]
        return isinstance(stride, ir.Constant) and stride.constant == 1

    def new_buffer(self, dtype: DType | None, shape, elem_ty: ir.Type | None = None) -> Buf:
        """A scratch buffer for a tile of `dtype` (elements of its buffer type), or of an
        explicit element type (accumulators; dtype None)."""
        ty = elem_ty or buffer(dtype)
        ptr = self.ctx.target.alloc_buffer(self.ctx, ty, numel(shape))
        return Buf(ptr, tuple(shape), dtype)

    def typed_buffer(self, ty: ir.Type, shape) -> Buf:
        """A buffer of LLVM type `ty` elements (accumulators; i1 is kept as bool bytes)."""
        if ty == I1:
            return self.new_buffer(D.bool_, shape)
        return self.new_buffer(None, shape, elem_ty=ty)

    def fresh(self, fn: Callable) -> Callable:
        """fn with a fresh element memo: elements it computes belong to one loop iteration
        (or one element of a nest) and are not reused outside it."""
        def body(*args):
            saved, self.memo = self.memo, {}
            result = fn(*args)
            self.memo = saved
            return result
        return body

    def for_each(self, shape, body: Callable[[tuple], None]) -> None:
        """A loop nest over a static tile shape; body(idx) gets a fresh elem memo."""
        self.work += numel(shape) * self._weight

        wrapped = self.fresh(body)
        threads = self.ctx.target.simt
        if threads is not None and threads.depth == 0:
            simt.top_level_nest(self, shape, wrapped)
        else:
            loops.nest(self.ctx, shape, wrapped)

    def materialize(self, v: Value, fn: Callable[[tuple], ir.Value], into: Buf | None = None):
        if into is None and v in self.registers:
            reg = Reg({}, tuple(v.type.shape))
            self.for_each(v.type.shape, lambda idx: reg.values.__setitem__(
                self._slot_of(reg), fn(idx)))
            return reg
        buf = into or self.new_buffer(v.type.dtype, v.type.shape)
        self.for_each(v.type.shape, lambda idx: self.buf_store(buf, idx, fn(idx)))
        return buf

    # -- ops -------------------------------------------------------------------------------
    # hooks of OpWalker
    def scalar_value(self, v: Value, op: Op, value) -> Scalar:
        return Scalar(value)

    def tile_begin(self, coord: ir.Value, block: int, handle: Value) -> Handle:
        return Handle(self.b.mul(coord, ir.Constant(I32, block), flags=("nsw", "nuw")), block)

    # -- carried values ----------------------------------------------------------------------
    def carried_slot(self, v: Value):
        """A fresh home for a loop-carried / if-result tile value (None for scalars)."""
        if rank(v) == 0:
            return None
        return self.new_buffer(v.type.dtype, v.type.shape)

    # hooks of CarriedSlots
    def buffer_key(self, rep):
        return rep.ptr if isinstance(rep, Buf) else None

    def staging_buffer(self, slot: Buf) -> Buf:
        return self.new_buffer(slot.dtype, slot.shape)

    def copy_element(self, dst: Buf, src: Buf, idx) -> None:
        self.buf_store(dst, idx, self.buf_load(src, idx))


# == element rules ================================================================================
def _unary(L: Lowering, op: Op, idx):
    d = op.results[0].type.dtype
    return arith.unary(L.ctx, op.name, d, L.elem(op.operands[0], idx))


def _binary(L: Lowering, op: Op, idx):
    d = op.results[0].type.dtype
    return arith.binary(L.ctx, op.name, d, L.elem(op.operands[0], idx),
                        L.elem(op.operands[1], idx))


def _compare(L: Lowering, op: Op, idx):
    d = op.operands[0].type.dtype
    return arith.compare(L.ctx, op.name, d, L.elem(op.operands[0], idx),
                         L.elem(op.operands[1], idx))


def _where(L: Lowering, op: Op, idx):
    c, a, b = (L.elem(v, idx) for v in op.operands)
    return L.b.select(c, a, b)


def _cast(L: Lowering, op: Op, idx):
    return arith.cast(L.ctx, op.operands[0].type.dtype, op.results[0].type.dtype,
                      L.elem(op.operands[0], idx))


def _broadcast(L: Lowering, op: Op, idx):
    src = op.operands[0].type.shape
    dst = op.results[0].type.shape
    return L.elem(op.operands[0], tuple(0 if s == 1 and t != 1 else i
                                        for i, s, t in zip(idx, src, dst)))


def _expand_dims(L: Lowering, op: Op, idx):
    axis = op.attrs["axis"]
    return L.elem(op.operands[0], idx[:axis] + idx[axis + 1:])


def _permute(L: Lowering, op: Op, idx):
    perm = op.attrs["perm"]
    src = [0] * len(perm)
    for i, p in enumerate(perm):
        src[p] = idx[i]
    return L.elem(op.operands[0], tuple(src))


def _const(L: Lowering, op: Op, idx):
    return arith.constant(op.results[0].type.dtype, op.attrs["value"])


def _lane(L: Lowering, base: ir.Value, i) -> ir.Value:
    if isinstance(i, int):
        return L.b.add(base, ir.Constant(I32, i), flags=("nsw",)) if i else base
    return L.b.add(base, i, flags=("nsw",))


def _arange(L: Lowering, op: Op, idx):
    return _lane(L, ir.Constant(I32, op.attrs["start"]), idx[0])


def _tile_index(L: Lowering, op: Op, idx):
    return _lane(L, L.env[op.operands[0]].begin, idx[0])


def _tile_begin(L: Lowering, op: Op, idx):
    return L.env[op.operands[0]].begin


def _symval(L: Lowering, op: Op, idx):
    v = L.sym(op.attrs["expr"])
    ty = compute(op.results[0].type.dtype)
    return L.b.trunc(v, ty) if ty != I64 else v


ELEM_RULES: dict[str, Callable] = {}
ELEM_RULES.update({n: _unary for n in UNARY})
ELEM_RULES.update({n: _binary for n in BINARY})
ELEM_RULES.update({n: _compare for n in COMPARE})
ELEM_RULES.update({"where": _where, "cast": _cast, "broadcast": _broadcast,
                   "expand_dims": _expand_dims, "permute": _permute, "const": _const,
                   "arange": _arange, "tile_index": _tile_index, "tile_begin": _tile_begin,
                   "symval": _symval, "load": memory.load})


# ops that materialize: they emit their own loop nests
OP_RULES: dict[str, Callable] = {
    "store": memory.store, "atomic_add": memory.atomic_add, "reduce": reduce.reduce,
    "scan": scan.scan,
    "dot": dot.dot, "tile_for": control.tile_for, "for": control.for_, "if": control.if_,
    "alloc": control.alloc,
}

Lowering.op_rules, Lowering.elem_rules = OP_RULES, ELEM_RULES
