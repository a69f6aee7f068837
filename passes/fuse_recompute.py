"""Recompute instead of materialize: a value one fusion group computes and another reads (a
merge the fuse pass refused, as a column sum of what a row-wise group computes) is written to
memory by its group and read back. When the value is an elementwise chain of the kernel's
params (nothing written, no reduction, no matmul, no view on the way), the reading group can
compute it again from those params instead; it does when that reads fewer bytes than it
saves: the read of the value, and its write too when no other group needs it.

The layernorm backward of a bf16 MLP is the case this is for: the normalized input and the
gradient it is multiplied by are float32 values of the row-wise group, and the weight and
bias gradients sum them over the rows; recomputed from the bf16 params, the column sums read
6 bytes an element where the buffers cost 16 (8 written, 8 read), and the two sums, now
reading the same params, run as one pass (the fuse pass's horizontal merge).

narrow_crossing_values: a float value that the reading group only rounds to a narrower float
(the input gradient of that backward: float32 in the row pass, stored as bf16 by the launch
that also sums its columns) is rounded in its own group, and the bf16 value crosses.

write_where_computed: a kernel output another group writes with a value of this one (that
bf16 input gradient, widened by its reader and rounded back: the same bits) is written by
this group, and the readers read the output (the tile pass's crossing buffer) instead of a
buffer of their own, then copying it: one full-size write less.
"""
from __future__ import annotations

import sympy

from ..ir import Op, TensorType
from ..ir.ops import BINARY, COMPARE, INDEXED_VIEWS, UNARY
from ..ir.symbolic import hinted_value
from .tensor_graph import Axes, NotOneSpace, in_memory

RECOMPUTABLE = frozenset(UNARY + BINARY + COMPARE + ("where", "cast", "broadcast",
                                                        "expand_dims", "iota"))
MAX_CHAIN = 48          # ops copied into a group for one value: past it, the work outweighs


def recompute_cheap_values(fuser, written: set) -> bool:
    """For each value a group reads from another group: copy its producing chain into the
    reader when that is cheaper (`written`: the tensors the kernel writes). True when it
    copied any."""
    copied = False
    for g in list(fuser.members):
        if g not in fuser.members:
            continue
        for v in _foreign_values(fuser, g):
            chain = _chain(fuser, v, g, written)
            if chain is None:
                continue
            ops, params, narrow = chain
            gain = _saved_bytes(fuser, v, g)
            cost = _new_read_bytes(fuser, params, g)
            extra = _crossing_bytes(fuser, narrow, g)
            cost = None if cost is None or extra is None else cost + extra
            if gain is None or cost is None or cost > gain or not _one_space(fuser, ops, g):
                continue
            _copy_into(fuser, ops, v, g)
            copied = True
            fuser.notes.append(f"recomputed {_label(v)} in the launch that reads it: "
                               f"{cost} bytes read instead of {gain} bytes of a buffer "
                               "written and read")
    return copied


def _foreign_values(fuser, g: int) -> list:
    """Values group g's ops read that another group's (non-free) op computes (not those an
    indexed view reads: it needs them in memory, at indices of its own)."""
    found = []
    for op in fuser.members[g]:
        if op.name in INDEXED_VIEWS:
            continue
        for v in op.operands:
            p = fuser.producer.get(v)
            if p is not None and p not in fuser.free and p in fuser.group \
                    and fuser.group[p] != g and v not in found:
                found.append(v)
    return found


def _chain(fuser, v, g: int, written: set):
    """(ops computing v in program order, the params they read, the narrower floats of
    other groups they widen) when v is an elementwise chain of unwritten params (through
    free ops and scalar constants) and of such narrow values, else None."""
    ops, params, narrow, seen = [], set(), set(), set()

    def visit(value) -> bool:
        p = fuser.producer.get(value)
        if value is not v and p is not None and p in fuser.group and fuser.group[p] != g \
                and p not in fuser.free and value.type.dtype.is_float \
                and value.type.dtype.bits < v.type.dtype.bits:
            narrow.add(value)                         # crosses narrow, widened here
            return True
        if p is None:                                 # a kernel param
            if not isinstance(value.type, TensorType):
                return True
            if not in_memory(value) or value in written:
                return False
            params.add(value)
            return True
        if p in seen:
            return True
        if p in fuser.free:                           # a cast/broadcast of params: a load
            seen.add(p)
            return all(visit(x) for x in p.operands)
        if p not in fuser.group:                      # a scalar op (const, symval)
            return not any(isinstance(r.type, TensorType) for r in p.results)
        if fuser.group[p] == g or p.name not in RECOMPUTABLE:
            return False
        seen.add(p)
        if not all(visit(x) for x in p.operands):
            return False
        ops.append(p)
        return len(ops) <= MAX_CHAIN

    if not visit(v):
        return None
    ops.sort(key=fuser.position.get)
    return ops, params, narrow


def _one_space(fuser, ops: list[Op], g: int) -> bool:
    """The chain maps onto g's iteration space (not a transposed use of the params)."""
    try:
        Axes(fuser.members[g] + ops)
    except NotOneSpace:
        return False
    return True


def _bytes(value, hints) -> int | None:
    n = hinted_value(sympy.Mul(*value.type.shape), hints)
    return None if n is None else n * max(value.type.dtype.bits // 8, 1)


def _read_elsewhere(fuser, v, g: int) -> bool:
    """Whether a group other than v's own and g reads v (then v is written anyway)."""
    home = fuser.group[fuser.producer[v]]
    return bool({fuser.group.get(u) for u in fuser.body.ops if v in u.operands} - {home, g})


def _saved_bytes(fuser, v, g: int) -> int | None:
    """The buffer traffic recomputing v in g saves: g's read, and the write when only v's
    own group and g use it."""
    size = _bytes(v, fuser.hints)
    if size is None:
        return None
    return size if _read_elsewhere(fuser, v, g) else 2 * size


def _new_read_bytes(fuser, params: set, g: int) -> int | None:
    """Bytes of the params g does not read already."""
    total = 0
    for p in params - fuser._reads(g):
        size = _bytes(p, fuser.hints)
        if size is None:
            return None
        total += size
    return total


def _crossing_bytes(fuser, narrow: set, g: int) -> int | None:
    """What reading the narrow values in g adds: nothing for one g reads already, else its
    read, and its write when no other group reads it."""
    total = 0
    for x in narrow:
        if any(x in u.operands for u in fuser.members[g]):
            continue
        size = _bytes(x, fuser.hints)
        if size is None:
            return None
        total += size if _read_elsewhere(fuser, x, g) else 2 * size
    return total


def _copy_into(fuser, ops: list[Op], v, g: int) -> None:
    users = [u for u in fuser.members[g] if v in u.operands]
    at = min(fuser.body.ops.index(u) for u in users)
    mapping = {}
    for k, op in enumerate(ops):
        copy = Op(op.name, [mapping.get(x, x) for x in op.operands],
                  [r.type for r in op.results], dict(op.attrs), loc=op.loc)
        for old, new in zip(op.results, copy.results):
            new.name = old.name
            mapping[old] = new
            fuser.producer[new] = copy
        fuser.body.insert(at + k, copy)
        fuser.group[copy] = g
        fuser.members[g].append(copy)
    for u in users:
        u.operands = [mapping.get(x, x) for x in u.operands]
    fuser.position = {o: i for i, o in enumerate(fuser.body.ops)}
    fuser.members[g].sort(key=fuser.position.get)


def _label(v) -> str:
    p = v.op
    return f"%{v.name} ({p.name} at line {p.loc.line})" if v.name else f"{p.name} at line " \
        f"{p.loc.line}"


def _move_after(fuser, ops: list, producer, g: int) -> None:
    """Move `ops` of group g right after `producer`, into producer's group (g is dropped
    when left empty)."""
    home = fuser.group[producer]
    at = fuser.body.ops.index(producer) + 1
    for op in ops:
        fuser.body.ops.remove(op)
        fuser.body.insert(at, op)
        fuser.members[g].remove(op)
        fuser.members[home].append(op)
        fuser.group[op] = home
    fuser.position = {o: i for i, o in enumerate(fuser.body.ops)}
    fuser.members[home].sort(key=fuser.position.get)
    if not fuser.members[g]:
        del fuser.members[g]


def narrow_crossing_values(fuser) -> bool:
    """A float value another group reads only to round it to a narrower float (a bf16
    region's float32 value, stored as bf16 by its reader): the rounding moves into the
    value's own group, right after it, and the narrow value crosses instead (half the
    bytes written and read). True when it moved any."""
    moved = False
    for g in list(fuser.members):
        for v in _foreign_values(fuser, g) if g in fuser.members else []:
            users = [u for u in fuser.members[g] if v in u.operands]
            if not v.type.dtype.is_float or not users or not all(
                    u.name == "cast" and u.results[0].type.dtype.is_float
                    and u.results[0].type.dtype.bits < v.type.dtype.bits for u in users):
                continue
            if _read_elsewhere(fuser, v, g):
                continue             # written wide for another group anyway
            _move_after(fuser, users, fuser.producer[v], g)
            moved = True
            fuser.notes.append(f"narrowed: {_label(v)} crosses to the launch reading it as "
                               f"its {users[0].results[0].type.dtype.name} rounding")
    return moved


def _same_bits(v):
    """The value v is an exact copy of: through float casts that widen and round back
    (bf16 -> f32 -> bf16), else v."""
    p = v.op
    if p is not None and p.name == "cast" and p.operands[0].op is not None \
            and p.operands[0].op.name == "cast":
        wide, x = p.operands[0], p.operands[0].op.operands[0]
        # a float type of more bits holds every value of a narrower one (16-bit floats
        # do not hold each other's: bf16's range, f16's precision)
        if isinstance(x.type, TensorType) and x.type.dtype == v.type.dtype and \
                x.type.dtype.is_float and wide.type.dtype.is_float and \
                wide.type.dtype.bits > x.type.dtype.bits:
            return x
    return v


def write_where_computed(fuser) -> bool:
    """Move a write of an output (an alloc written once, in full) whose value another
    group computes into that group, storing the bits it computes (which then cross to the
    other groups through the output). True when it changed any."""
    moved = False
    for w in [op for op in fuser.body.ops if op.name == "write" and op in fuser.group]:
        dst, value = w.operands
        source = _same_bits(value)
        p = fuser.producer.get(source)
        if p is None or p not in fuser.group or \
                dst.op is None or dst.op.name != "alloc" or \
                tuple(dst.type.shape) != tuple(source.type.shape) or \
                dst.type.dtype != source.type.dtype or \
                any(dst in o.operands for o in fuser.kernel.walk()
                    if o is not w and o.name != "return"):
            continue                # read or written elsewhere (tile loops included)
        # stored by the launch computing it already (moved up there by the fuse pass): it
        # then stores the bits other launches read, which they read from there
        here = fuser.group[p] == fuser.group[w]
        if here and (value is source or not any(
                source in o.operands and g != fuser.group[p] for o, g in fuser.group.items())):
            continue
        w.operands = [dst, source]
        if not here:
            if fuser.body.ops.index(dst.op) > fuser.body.ops.index(p):
                fuser.body.ops.remove(dst.op)       # defined before the write's new place
                fuser.body.insert(0, dst.op)
            _move_after(fuser, [w], p, fuser.group[w])
        readers = ("the launches reading it read it from there" if here else
                   f"the launch that stored %{dst.name} before reads it from there")
        fuser.notes.append(f"written where computed: {_label(source)} is stored into "
                           f"%{dst.name} by the launch computing it; {readers}")
        moved = True
    return moved
