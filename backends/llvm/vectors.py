"""Vector groups of the SIMT mapping (simt.py): a thread's `width` consecutive elements
along a tile's last axis, emitted one after the other, move between memory and registers
in accesses of up to 16 bytes (ld/st.global.v4.b32, ld/st.shared.v4.b32) instead of one
narrow access per element. Tensor accesses qualify where backends/vector_facts.py proves
them contiguous, aligned and valid all together; tile buffers (row-major, 16-byte aligned
starts, a last dim the width divides) always do.

Lane w of a group has lane 0's tile index with `base + w` as its last entry. An access
whose last index is a lane's (and no other index is) belongs to the group: lane 0 makes
the vector access, later lanes take their element from it.

Dominance: lane 0 makes a vector load only at the group's own nesting level (Ctx.scope),
so it dominates all that the group emits after it. A vector store is made when its last
lane has given its value; lanes that cannot join store alone, and a store that never
completes is made lane by lane when the group ends (`finish`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import llvmlite.ir as ir

from . import loops
from .types import I16, I32, I64, byte_size

ACCESS_BYTES = 16                # the widest access of one thread


@dataclass
class PendingStore:
    """A vector store waiting for its lanes. `at`: where a lane's element goes, made when
    the lane is emitted (a tensor store's pointer and mask, which may read the lane's
    register slot; a buffer's index)."""
    write: Callable[[object, list], None]      # (lane 0's at, values): the vector store
    scalar: Callable[[object, ir.Value], None]  # (at, value): one element's store
    lanes: list = field(default_factory=list)  # (at, value) of the lanes so far
    failed: bool = False


@dataclass
class VectorGroup:
    width: int
    scope: int                   # Ctx.scope where the group's lanes are emitted
    outer: "VectorGroup | None"  # the group active when this one started
    lane_of: dict = field(default_factory=dict)   # a lane's last index -> (lane 0's, w)
    loaded: dict = field(default_factory=dict)    # access key -> what lane 0 loaded
    stores: dict = field(default_factory=dict)    # access key -> PendingStore


def start(L, width: int) -> None:
    """Start a group of `width` lanes (1: elements go alone); `finish` ends it."""
    L.vector_group = VectorGroup(width, L.ctx.scope, L.vector_group)


def lanes(L, idx0: tuple) -> list[tuple]:
    """The tile indices of the lanes of the group whose lane 0 has idx0 (just idx0 without
    a group)."""
    g = L.vector_group
    if g is None or g.width == 1:
        return [idx0]
    base = idx0[-1]
    out = []
    for w in range(g.width):
        last = base if w == 0 else L.b.add(base, ir.Constant(I32, w), flags=("nuw", "nsw"))
        g.lane_of[last] = (base, w)
        out.append(idx0[:-1] + (last,))
    return out


def position(L, idx: tuple):
    """(lane 0's index, w) of an access at idx in the active group; None if not one."""
    g = L.vector_group
    if g is None or not idx or isinstance(idx[-1], int):
        return None
    hit = g.lane_of.get(idx[-1])
    if hit is None or any(not isinstance(i, int) and i in g.lane_of for i in idx[:-1]):
        return None
    base, w = hit
    return idx[:-1] + (base,), w


def at_group_level(L) -> bool:
    return L.ctx.scope == L.vector_group.scope


def load(L, key, w: int, provable: Callable[[], bool], read: Callable[[], object]):
    """What lane 0 loaded for access `key` (read() made by lane 0 at the group's level when
    provable()), or None: the lane loads alone."""
    g = L.vector_group
    got = g.loaded.get(key)
    if got is None and w == 0 and at_group_level(L) and provable():
        got = g.loaded[key] = read()
    return got


def store(L, key, w: int, at, value: ir.Value, provable: Callable[[], bool],
          write, scalar, emit: Callable[[Callable[[], None]], None]) -> bool:
    """Lane w's value for store `key`, going to `at` (PendingStore); False: the lane stores
    alone. emit(fn) runs or defers the vector store made once the last lane is in."""
    g = L.vector_group
    pending = g.stores.get(key)
    if pending is None:
        if w != 0 or not at_group_level(L) or not provable():
            return False
        pending = g.stores[key] = PendingStore(write, scalar)
    if pending.failed or len(pending.lanes) != w or not at_group_level(L):
        pending.failed = True
        return False
    pending.lanes.append((at, value))
    if w == g.width - 1:
        del g.stores[key]
        at0 = pending.lanes[0][0]
        values = [v for _, v in pending.lanes]
        emit(lambda: write(at0, values))
    return True


def finish(L, emit: Callable[[Callable[[], None]], None]) -> None:
    """End the group: stores that did not complete are made lane by lane."""
    g = L.vector_group
    L.vector_group = g.outer
    for pending in g.stores.values():
        for at, value in pending.lanes:
            emit(lambda _a=at, _v=value, _s=pending.scalar: _s(_a, _v))


# -- raw vector accesses --------------------------------------------------------------------
def _access_type(nbytes: int) -> ir.Type:
    if nbytes >= 8:
        return ir.VectorType(I32, nbytes // 4)
    return {4: I32, 2: I16}[nbytes]


def _chunks(elem: ir.Type, count: int) -> tuple[int, int, ir.Type, int]:
    """(accesses, elements per access, access type, its bytes: the alignment) of `count`
    consecutive elements."""
    nbytes = count * byte_size(elem)
    chunk = min(ACCESS_BYTES, nbytes)
    return nbytes // chunk, chunk // byte_size(elem), _access_type(chunk), chunk


def read(L, ptr: ir.Value, elem: ir.Type, count: int, valid: ir.Value | None) -> list:
    """`count` consecutive `elem` values from ptr (aligned to the accesses' size), zeros
    where valid is false (nothing read)."""
    b = L.b
    n, per, ty, align = _chunks(elem, count)

    def accesses():
        return [b.load(b.bitcast(b.gep(ptr, [ir.Constant(I64, c * per)]), ty.as_pointer()),
                       align=align) for c in range(n)]
    raw = loops.branch(L.ctx, valid, accesses, [ir.Constant(ty, None)] * n)
    out = []
    for r in raw:
        vec = b.bitcast(r, ir.VectorType(elem, per))
        out += [b.extract_element(vec, ir.Constant(I32, k)) for k in range(per)]
    return out


def write(L, ptr: ir.Value, values: list, valid: ir.Value | None) -> None:
    """Store `values` (one LLVM type) to consecutive elements at ptr (aligned to the
    accesses' size) where valid holds."""
    b = L.b
    elem = values[0].type
    n, per, ty, align = _chunks(elem, len(values))
    vecs = []
    for c in range(n):
        vec = ir.Constant(ir.VectorType(elem, per), None)
        for k in range(per):
            vec = b.insert_element(vec, values[c * per + k], ir.Constant(I32, k))
        vecs.append(b.bitcast(vec, ty))

    def accesses():
        for c, vec in enumerate(vecs):
            b.store(vec, b.bitcast(b.gep(ptr, [ir.Constant(I64, c * per)]), ty.as_pointer()),
                    align=align)
    loops.branch(L.ctx, valid, accesses)
