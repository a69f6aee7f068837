"""Control flow: sequential tile loops, scalar `for` loops and `if`, with carried values.

Every thread runs the same control flow (its conditions are scalars every thread computes
alike), so barriers inside loops and branches are legal. Scalar carried values are C locals
assigned at `yield` (through temporaries: yields may swap them); tile carried values live in
one buffer per slot, written at `yield` (FunctionEmitter.write_slots computes every new value
from the old contents). The results of a loop are its slots / locals.
"""
from __future__ import annotations

from ...ir.core import Op, Value
from . import mma
from .types import WIDE, compute, zero
from .values import Handle, Scalar


def _setup(E, results: list[Value], inits: list[Value] | None):
    """Slots (tile results) and locals (scalar results), initialized from inits."""
    slots = [E.carried_slot(r) for r in results]
    names = []
    for j, (slot, r) in enumerate(zip(slots, results)):
        if slot is not None:
            if inits is not None:
                E.materialize(inits[j], lambda idx, _v=inits[j]: E.elem(_v, idx), into=slot)
            names.append(None)
        else:
            init = E.elem(inits[j], ()) if inits is not None else zero(r.type.dtype)
            names.append(E.declare(compute(r.type.dtype), init, r.name or "carried",
                                   mutable=True))
    return slots, names


def _bind(E, values: list[Value], slots: list, names: list) -> None:
    for v, slot, name in zip(values, slots, names):
        E.env[v] = slot if slot is not None else Scalar(name)


def _yield(E, slots: list, names: list, values: list[Value]) -> None:
    temps = [(name, E.declare(compute(v.type.dtype), E.elem(v, ()), "next", force=True))
             for name, v in zip(names, values) if name is not None]
    E.write_slots(slots, values)
    for name, tmp in temps:
        E.line(f"{name} = {tmp};")


def _loop(E, op: Op, header: str, bind_iv, inits: list[Value]) -> None:
    body = op.regions[0]
    slots, names = _setup(E, op.results, inits)
    with E.block(header):
        E.need_sync = True       # the previous iteration may end reading what this one writes
        bind_iv()
        _bind(E, body.args[1:], slots, names)
        _yield(E, slots, names, E.emit_block(body))
    E.need_sync = True
    _bind(E, op.results, slots, names)


def tile_for(E, op: Op):
    """A sequential tile loop (also a parallel one that is not a grid dim of this launch):
    begin = 0, block, ... < extent. A K loop of `acc += dot(a, b)` that tensor_cores.py
    picked runs on tensor cores (mma.py)."""
    spec = E.tensor_cores.loops.get(op)
    if spec is not None:
        mma.k_loop(E, op, spec)
        return
    block = op.attrs["block"]
    handle = op.regions[0].args[0]
    iv = E.fresh(f"{handle.name or 'tile'}_begin")
    extent = E.sym(op.attrs["extent"])
    inits = op.operands[len(op.operands) - len(op.results):] if op.results else []
    _loop(E, op, f"for (int {iv} = 0; (long long){iv} < {extent}; {iv} += {block})",
          lambda: E.env.__setitem__(handle, Handle(iv, block)), inits)


def for_(E, op: Op):
    """range(lo, hi, step): counts up for step > 0, down for step < 0, not at all for 0."""
    lo, hi, step = (E.elem(v, ()) for v in op.operands[:3])
    d = op.operands[0].type.dtype
    ty = compute(d)
    iv_arg = op.regions[0].args[0]
    iv = E.fresh(iv_arg.name or "i")
    cond = f"({step} > 0 && {iv} < {hi}) || ({step} < 0 && {iv} > {hi})"
    header = f"for ({ty} {iv} = {lo}; {cond}; {iv} = ({ty})(({WIDE[d]}){iv} + ({WIDE[d]}){step}))"
    _loop(E, op, header, lambda: E.env.__setitem__(iv_arg, Scalar(iv)), op.operands[3:])


def if_(E, op: Op):
    cond = E.elem(op.operands[0], ())
    slots, names = _setup(E, op.results, None)
    before = E.need_sync
    after = False
    for region, header in zip(op.regions, (f"if ({cond})", "else")):
        with E.block(header):
            E.need_sync = before
            _yield(E, slots, names, E.emit_block(region))
            after = after or E.need_sync
    E.need_sync = after
    _bind(E, op.results, slots, names)


def alloc(E, op: Op):
    raise NotImplementedError(f"cuda backend: alloc (at {op.loc}) inside a tile loop")
