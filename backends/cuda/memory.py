"""Loads, stores and atomics: lanes address tensor elements through sizes and strides (64-bit
offsets); lanes out of bounds on a checked dim or masked off never touch memory: a load
reads `other` (0 when absent) there, a store or atomic skips the lane."""
from __future__ import annotations

from ...ir import dtypes as D
from ...ir.core import Op
from ...ir.ops import memory_operands
from ..joint_stores import group_body
from . import arith
from .types import SIZEOF, compute, storage, zero
from .values import Lane


def in_bounds(index: str, size: str) -> str:
    """`0 <= index < size` as one unsigned compare (a negative index wraps past any size)."""
    return f"(unsigned long long){index} < (unsigned long long){size}"


def index_terms(E, op: Op, idx: tuple) -> list[tuple[str, str, str | None]]:
    """Per dim of a load/store/atomic lane: (its index as a long long, the index's term of
    the element offset, the dim's size when the index is checked against it, else None)."""
    tensor_v, idx_vs = memory_operands(op)[:2]
    t = E.env[tensor_v]
    out = []
    for d, (iv, checked) in enumerate(zip(idx_vs, op.attrs["checked"])):
        x = f"(long long){E.elem(iv, idx)}"
        out.append((x, x if t.strides[d] == "1" else f"{x} * {t.strides[d]}",
                    t.sizes[d] if checked else None))
    return out


def address(E, op: Op, idx: tuple) -> tuple[str, str | None]:
    """(element offset, valid flag or None) of a load/store/atomic lane, as locals."""
    mask_v = memory_operands(op)[3]
    dims = index_terms(E, op, idx)
    terms = [term for _, term, _ in dims]
    conds = [in_bounds(x, size) for x, _, size in dims if size is not None]
    if mask_v is not None:
        conds.append(E.elem(mask_v, idx))
    off = E.declare("long long", " + ".join(terms) if terms else "0LL", "off", force=True)
    valid = E.declare("bool", " && ".join(conds), "ok", force=True) if conds else None
    return off, valid


def load(E, op: Op, idx):
    tensor_v, _, _, _, other_v = memory_operands(op)
    t = E.env[tensor_v]
    d = tensor_v.type.dtype
    lane = idx[-1] if idx else None
    if isinstance(lane, Lane) and E.vec.width_bytes(op, lane.width):
        return _load_group(E, op, idx)
    other = E.elem(other_v, idx) if other_v is not None else zero(d)
    off, valid = address(E, op, idx)
    E.note_read()
    read = arith.from_storage(d, f"{t.ptr}[{off}]")
    base = op.results[0].name or "ld"
    if valid is None:
        return E.declare(compute(d), read, base, force=True)
    var = E.declare(compute(d), other, base, mutable=True)
    E.line(f"if ({valid}) {var} = {read};")
    return var


def _load_group(E, op: Op, idx):
    """A Lane group's elements by one vector load (backends/vector_facts.py), memoized for
    the group."""
    tensor_v, _, _, _, other_v = memory_operands(op)
    t = E.env[tensor_v]
    d = tensor_v.type.dtype
    group = E.group(idx)
    off, valid = address(E, op, group[0])
    E.note_read()
    base = op.results[0].name or "ld"
    arr = E.read_vector(storage(d), len(group), f"{t.ptr} + {off}",
                        len(group) * SIZEOF[storage(d)], base + "_v", valid)
    v = op.results[0]
    for j, gidx in enumerate(group):
        read = arith.from_storage(d, f"{arr}[{j}]")
        if valid is not None:
            other = E.elem(other_v, gidx) if other_v is not None else zero(d)
            read = f"({valid} ? {read} : {other})"
        E.memo[-1][(v, gidx)] = E.declare(compute(d), read, base, force=True)
    return E.memo[-1][(v, idx)]


def stored_value(E, value_v, d, idx) -> str:
    """The storage form of a stored element. A cast to the tensor's half type is rounded
    once, by the conversion to storage (rounding twice to the same type changes nothing)."""
    op = value_v.op
    if op is not None and op.name == "cast" and d in _HALF and E.plan.is_inline(value_v) \
            and op.operands[0].type.dtype in _FLOAT_SOURCES - {d}:
        return arith.to_storage(d, E.elem(op.operands[0], idx))
    return arith.to_storage(d, E.elem(value_v, idx))


_HALF = frozenset((D.float16, D.bfloat16))
_FLOAT_SOURCES = frozenset((D.float32, D.float16, D.bfloat16))   # computed in float


def store(E, op: Op):
    """A store; the stores of its joint group (plan.joint) all at the last one: one loop
    writing each element of all of them, their shared values computed once per element."""
    body = group_body(E.plan, op, lambda s: _store_group(E, s))
    if body is None:
        return
    # a tensor-core epilogue stores from the accumulator's registers, where they are (a
    # group of several stores never stands beside a dot: joint_stores.py)
    _, idx_vs, value_v, mask_v, _ = memory_operands(op)
    E.for_each(value_v.type.shape, None, body,
               over=E.fragment_layout(value_v, mask_v, *idx_vs))


def _store_group(E, op: Op):
    """The body storing one Lane group's elements of op's value."""
    tensor_v, _, value_v, _, _ = memory_operands(op)
    t = E.env[tensor_v]
    d = tensor_v.type.dtype

    def one(idx):
        off, valid = address(E, op, idx)

        def write():
            val = stored_value(E, value_v, d, idx)
            E.line(f"{t.ptr}[{off}] = {val};")
        if valid is None:
            write()
        else:
            with E.block(f"if ({valid})"):
                write()

    def lanes_body(group):
        if len(group) == 1 or not E.vec.width_bytes(op, len(group)):
            for idx in group:
                one(idx)
            return
        values = [stored_value(E, value_v, d, idx) for idx in group]
        off, valid = address(E, op, group[0])
        E.write_vector(storage(d), values, f"{t.ptr} + {off}", "st", valid)
    return lanes_body


# atomicAdd overloads (sm_60+): float, double, int, and long long through its unsigned twin
_ATOMIC = {
    "float32": "atomicAdd({p}, {v})",
    "float64": "atomicAdd({p}, {v})",
    "int32": "atomicAdd({p}, {v})",
    "int64": "(long long)atomicAdd((unsigned long long*)({p}), (unsigned long long)({v}))",
}


def atomic_add(E, op: Op):
    tensor_v, _, value_v, _, _ = memory_operands(op)
    t = E.env[tensor_v]
    d = tensor_v.type.dtype
    fmt = _ATOMIC.get(d.name)
    if fmt is None:
        raise NotImplementedError(f"cuda backend: atomic_add (at {op.loc}) on {d} tensors "
                                  f"(supported: {', '.join(_ATOMIC)})")
    shape = value_v.type.shape
    out = E.new_buffer(d, shape, base="old")       # the old values (0 where not written)

    def body(idx):
        off, valid = address(E, op, idx)
        val = E.elem(value_v, idx)
        call = fmt.format(p=f"{t.ptr} + {off}", v=val)
        if valid is None:
            E.line(f"{out.at(idx)} = {call};")
        else:
            E.line(f"{out.at(idx)} = {valid} ? {call} : {zero(d)};")
    E.for_each(shape, body)
    E.env[op.results[0]] = out if shape else E.scalar_from(out)
