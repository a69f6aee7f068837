"""Register tiles, for both GPU backends: materialized tile values kept in each thread's
registers instead of a shared-memory buffer.

Every strided loop over a tile shape gives thread t the same elements: lane groups
t, t + T, t + 2T, ... of the flattened groups (T threads, `lane_width(shape)` elements a
group: cuda/emit.py's Lane, llvm/vectors.py's groups), unrolled at emission so the m-th
group of a thread is a compile-time slot. A reduction along the last axis whose lanes-per-
output follow the groups of a row (a power of two of them) walks the same elements in the
same slots (cuda/reduce.py, llvm/simt.py). So a value whose every reader sits in such a
loop over its own shape -- elementwise chains at the same index, stores of it, last-axis
reductions of it -- can live in a per-thread array indexed by slot: the loads of a row are
all issued before any is used, and no shared memory or barrier is spent on it (a softmax row
stays in registers between its max, its exp and its sum, as in hand-written kernels).
"""
from __future__ import annotations

from ..ir.core import Value
from ..ir.ops import BINARY, COMPARE, UNARY, memory_operands
from .carried import numel

UNROLL_MAX = 16                  # unrolled slots per thread (registers: slots x lane width)
TILE_REGISTERS = 32              # elements per thread of one register tile ...
TOTAL_REGISTERS = 96             # ... and of all of a kernel's (the rest spill to buffers)
_ELEMENTWISE = frozenset(UNARY + BINARY + COMPARE + ("where", "cast", "load"))


def slots(shape, width: int, nthreads: int) -> int:
    """Slots per thread of a strided loop over shape with Lane groups of width."""
    groups = numel(shape) // width
    return -(-groups // nthreads)


def register_tiles(plan, lane_width, nthreads: int, exclude=frozenset()) -> set[Value]:
    """The materialized values of plan that can live in registers (none of `exclude`: for
    CUDA C values read in another thread mapping, tensor_cores.py; for PTX values whose
    shape has no register mapping, llvm/simt.py)."""
    chosen, used = set(), 0
    for op in plan.kernel.walk():            # program order: the first values win the budget
        if not op.results or op.results[0] not in plan.materialized:
            continue
        v = op.results[0]
        if v in exclude:
            continue
        shape = tuple(v.type.shape)
        width = lane_width(shape)
        n_slots = slots(shape, width, nthreads)
        size = n_slots * width
        if not shape or n_slots > UNROLL_MAX or size > TILE_REGISTERS or \
                used + size > TOTAL_REGISTERS:
            continue
        if _readers_aligned(plan, v, shape, width, v.op.parent):
            chosen.add(v)
            used += size
    return chosen


def _readers_aligned(plan, v: Value, shape, width: int, block) -> bool:
    for c in plan.uses.get(v, []):
        if c.parent is not block:
            return False                 # read inside a loop or branch body
        if c.name in _ELEMENTWISE or c.name == "broadcast":
            r = c.results[0]
            if tuple(r.type.shape) != shape:
                return False
            if r not in plan.materialized and not _readers_aligned(plan, r, shape, width,
                                                                      block):
                return False
        elif c.name in ("store", "atomic_add"):
            if tuple(memory_operands(c)[2].type.shape) != shape:
                return False
        elif c.name == "reduce":
            per_row = shape[-1] // width
            if c.attrs["axis"] != len(shape) - 1 or per_row & (per_row - 1):
                return False
        else:
            return False
    return True
