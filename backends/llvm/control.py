"""Control flow: sequential tile loops, scalar `for` loops and `if`, with carried values.

Scalar carried values are phis; tile carried values live in one buffer per slot ("slot"),
written at `yield` (Lowering.write_slots computes every new value from the old contents).
The results of a loop are its slots / final phis.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ...ir.core import Op, Value
from . import loops
from .types import I1, I32, is_signed
from .values import Handle, Scalar


def _carried_setup(L, results: list[Value], inits: list[Value]):
    slots = [L.carried_slot(r) for r in results]
    for slot, v in zip(slots, inits):
        if slot is not None:
            L.materialize(v, lambda idx, _v=v: L.elem(_v, idx), into=slot)
    return slots


def _bind_carried(L, args: list[Value], slots: list, phis: list):
    it = iter(phis)
    for arg, slot in zip(args, slots):
        L.env[arg] = slot if slot is not None else Scalar(next(it))


def _yield_values(L, slots: list, values: list[Value]) -> list[ir.Value]:
    """Store tile values into their slots; return the scalar values (for phis)."""
    L.write_slots(slots, values)
    return [L.elem(v, ()) for slot, v in zip(slots, values) if slot is None]


def _seq_loop(L, op: Op, init_iv, cond, step, bind_iv):
    body = op.regions[0]
    n_iv = 1
    carried_args = body.args[n_iv:]
    inits = op.operands[len(op.operands) - len(op.results):] if op.results else []
    slots = _carried_setup(L, op.results, inits)
    scalar_inits = [L.elem(v, ()) for s, v in zip(slots, inits) if s is None]
    L._weight *= 8

    def loop_body(iv, phis):
        bind_iv(iv)
        _bind_carried(L, carried_args, slots, phis)
        saved, L.memo = L.memo, {}
        yielded = L.emit_block(body)
        new = _yield_values(L, slots, yielded)
        L.memo = saved
        return new
    finals = loops.loop(L.ctx, init_iv, cond, step, scalar_inits, loop_body, name=op.name)
    L._weight //= 8
    _bind_carried(L, op.results, slots, finals)


def tile_for(L, op: Op):
    """A sequential tile loop (also a parallel loop not chosen as a grid dim): begin = 0,
    block, ... < extent."""
    block = op.attrs["block"]
    b = L.b
    extent = b.trunc(L.sym(op.attrs["extent"]), I32)
    handle = op.regions[0].args[0]
    _seq_loop(L, op, ir.Constant(I32, 0),
              lambda iv: b.icmp_signed("<", iv, extent),
              lambda iv: b.add(iv, ir.Constant(I32, block), flags=("nsw",)),
              lambda iv: L.env.__setitem__(handle, Handle(iv, block)))


def for_(L, op: Op):
    lo, hi, step = (L.elem(v, ()) for v in op.operands[:3])
    d = op.operands[0].type.dtype
    b = L.b
    zero = ir.Constant(lo.type, 0)
    cmp = b.icmp_signed if is_signed(d) else b.icmp_unsigned
    iv_arg = op.regions[0].args[0]

    def cond(iv):   # Python range(): counts up for step > 0, down for step < 0
        up = b.and_(cmp(">", step, zero), cmp("<", iv, hi))
        down = b.and_(b.icmp_signed("<", step, zero), b.icmp_signed(">", iv, hi)) \
            if is_signed(d) else ir.Constant(I1, 0)
        return b.or_(up, down)
    _seq_loop(L, op, lo, cond, lambda iv: b.add(iv, step),
              lambda iv: L.env.__setitem__(iv_arg, Scalar(iv)))


def if_(L, op: Op):
    cond = L.elem(op.operands[0], ())
    b = L.b
    slots = [L.carried_slot(r) for r in op.results]
    fn = b.function
    then_bb, else_bb, merge = (fn.append_basic_block(n) for n in ("if.then", "if.else",
                                                                   "if.end"))
    b.cbranch(cond, then_bb, else_bb)
    incoming = []
    L.ctx.scope += 1
    for region, bb in zip(op.regions, (then_bb, else_bb)):
        b.position_at_end(bb)
        saved, L.memo = L.memo, {}
        vals = L.emit_block(region)
        scalars = _yield_values(L, slots, vals)
        L.memo = saved
        incoming.append((scalars, b.block))
        b.branch(merge)
    L.ctx.scope -= 1
    b.position_at_end(merge)
    phis = []
    n_scalars = sum(1 for s in slots if s is None)
    for j in range(n_scalars):
        phi = b.phi(incoming[0][0][j].type)
        for scalars, bb in incoming:
            phi.add_incoming(scalars[j], bb)
        phis.append(phi)
    _bind_carried(L, op.results, slots, phis)


def alloc(L, op: Op):
    raise NotImplementedError(f"llvm backend: alloc (at {op.loc}) inside a tile loop")


