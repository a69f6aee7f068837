"""Loads that read across the rows of a tile (a transposed copy: attention's k^T, a permuted
tensor made contiguous) staged through shared memory.

The SIMT mapping gives a tile's consecutive elements along its last axis to consecutive
threads. When a tile is read across its tensor's rows -- a load whose last axis is strided
while another axis walks the rows, or a load along the rows read through a permute that
moves its last axis (an inline view: its consumer's threads walk the load's other axis) --
every thread of a warp reads its own memory sector and uses two bytes of it. Staged, the
load is written into a buffer by threads walking the rows, and the consumers read the
buffer at their own indices after the barrier: the global accesses move along memory, the
transposition happens in shared memory. The buffer's rows get one spare element so that
threads reading or writing down a column hit distinct banks.

Taken for a load of the program's own block (not inside a loop: a dot's operands have
their own staging) whose tile is at least MIN_EDGE along the rows and across them, when
the tensor's last dim has unit stride. `ENABLED` is the switch (off: not yet timed on a
GPU).
"""
from __future__ import annotations

from ...ir.core import Op
from ...ir.ops import memory_operands
from .. import switches

ENABLED = False
MIN_EDGE = 8                    # elements along both axes: a smaller tile gains nothing
switches.register(__name__, "ENABLED")


def across_axis(E, op: Op) -> int | None:
    """The tile axis along which to fill a staging buffer for load `op` -- the axis its
    tensor's rows run along -- when the tile is read across them: the load's own last
    axis is strided and another axis walks the rows, or the load walks the rows along its
    last axis and a permute moving that axis reads it; else None."""
    if not ENABLED or op.name != "load":
        return None
    v = op.results[0]
    shape = tuple(v.type.shape)
    last = len(shape) - 1
    tensor_v, idx_vs = memory_operands(op)[:2]
    body = op.parent
    owner = body.parent if body is not None else None
    if last < 1 or owner is None or owner.name != "tile_for" or \
            not owner.attrs.get("parallel") or E.in_loop or \
            E.env[tensor_v].strides[-1] != "1":
        return None
    row = idx_vs[-1]
    along = [axis for axis in range(len(shape)) if shape[axis] >= MIN_EDGE
             and E.vec.coeff(row, axis) == 1
             and all(E.vec.coeff(i, axis) == 0 for i in idx_vs[:-1])]
    if not along or shape[last] < MIN_EDGE:
        return None
    axis = along[0]
    if axis != last:                 # the load's own last axis reads across the rows
        strided = any(E.vec.coeff(i, last) not in (0, None) for i in idx_vs[:-1])
        return axis if strided and E.vec.coeff(row, last) == 0 else None
    users = E.plan.uses.get(v, [])
    moved = any(u.name == "permute" and u.attrs["perm"][-1] != last for u in users)
    return last if moved else None


def stage(E, op: Op, axis: int, element):
    """A buffer holding load `op`'s tile, filled with `axis` as the threads' fast axis;
    `element(idx)` is the load's element at a tile index."""
    v = op.results[0]
    shape = tuple(v.type.shape)
    padded = shape[:-1] + (shape[-1] + 1,)            # distinct banks down a column
    buf = E.new_buffer(v.type.dtype, padded, base=(v.name or "ld") + "_staged")
    order = [d for d in range(len(shape)) if d != axis] + [axis]
    walked = tuple(shape[d] for d in order)

    def body(walk_idx):
        idx = [None] * len(shape)
        for d, i in zip(order, walk_idx):
            idx[d] = i
        E.line(f"{buf.at(tuple(idx))} = {element(tuple(idx))};")
    E.for_each(walked, body, width=1, sync=True)
    return buf
