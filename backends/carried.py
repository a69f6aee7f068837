"""What both tile lowerings (LLVM, CUDA C) share about their value representation: the
INLINE marker, shape helpers, and writing loop-carried / if-result tiles into their slots.

A lowering that mixes in `CarriedSlots` provides: `env` (value -> Buf | INLINE | ...),
`elem(v, idx)`, `materialize(v, fn, into)`, `for_each(shape, body)`, and three hooks:
`buffer_key(rep)` (what identifies a buffer; None for other representations), `staging_buffer(slot)` (a temporary of the
slot's shape) and `copy_element(dst, src, idx)`.
"""
from __future__ import annotations

from ..ir.core import Value
from ..ir.types import TileType

VIEW_OPS = ("broadcast", "expand_dims", "permute")


class _Inline:
    def __repr__(self):
        return "INLINE"


INLINE = _Inline()


def rank(v: Value) -> int:
    return v.type.rank if isinstance(v.type, TileType) else 0


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class CarriedSlots:
    def write_slots(self, slots: list, values: list[Value]) -> None:
        """Write yielded tile values into their slots, each computed from the slots' old
        contents: a slot that another value reads, or that its own value reads at another
        element, is staged through a temporary."""
        reads = [self.buffers_read(v, set()) if slot is not None else set()
                 for slot, v in zip(slots, values)]
        staged, direct = [], []
        for i, (slot, v) in enumerate(zip(slots, values)):
            if slot is None or self.env[v] is slot:
                continue
            key = self.buffer_key(slot)
            others = any(key in r for j, r in enumerate(reads) if j != i)
            if others or (key in reads[i] and not self._same_element(v, key)):
                tmp = self.staging_buffer(slot)
                self.materialize(v, lambda idx, _v=v: self.elem(_v, idx), into=tmp)
                staged.append((slot, tmp))
            else:
                direct.append((slot, v))
        for slot, v in direct:
            self.materialize(v, lambda idx, _v=v: self.elem(_v, idx), into=slot)
        for slot, tmp in staged:
            self.for_each(slot.shape, lambda idx, s=tmp, d=slot: self.copy_element(d, s, idx))

    def _same_element(self, v: Value, key) -> bool:
        """Every path from inline value v to the buffer `key` keeps the element index."""
        if self.env.get(v) is not INLINE:
            return True
        same_index = v.op.name not in VIEW_OPS
        for o in v.op.operands:
            if key in self.buffers_read(o, set()) and not (same_index and
                                                            self._same_element(o, key)):
                return False
        return True

    def buffers_read(self, v: Value, out: set, seen: set | None = None) -> set:
        """Keys of the buffers an inline value's elements read."""
        seen = set() if seen is None else seen
        if v in seen:
            return out
        seen.add(v)
        rep = self.env.get(v)
        if rep is INLINE:
            for o in v.op.operands:
                self.buffers_read(o, out, seen)
        elif rep is not None:
            key = self.buffer_key(rep)
            if key is not None:
                out.add(key)
        return out
