"""The launches of a kernel: what each native function (CPU) / device kernel runs.

Each top-level parallel tile loop nest is one launch whose grid is the product of its
parallel loops' tile counts (backends/common.py). Memory writes the kernel's own block does
outside those loops (stores, atomics, loops and ifs containing them) run as a *serial*
launch of one program, in program order between the nests around them. Pure top-level ops
are recomputed by every program: each launch's function emits the ones before it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.core import Op
from ..common import grid_dims

_WRITES = ("store", "atomic_add")


@dataclass
class Launch:
    ops: list[Op]                         # parallel: [nest]; serial: the ops it runs in order
    loops: list[Op] = field(default_factory=list)    # the grid loops, outermost first

    @property
    def serial(self) -> bool:
        return not self.loops

    @property
    def first(self) -> Op:
        return self.ops[0]


def _writes(op: Op) -> bool:
    return any(o.name in _WRITES for o in op.walk())


def launches(kernel: Op) -> list[Launch]:
    result: list[Launch] = []
    gap: list[Op] = []

    def flush():
        idx = [i for i, o in enumerate(gap) if _writes(o)]
        if idx:
            result.append(Launch(gap[idx[0]:idx[-1] + 1]))
        gap.clear()
    for op in kernel.regions[0].ops:
        if op.name == "tile_for" and op.attrs.get("parallel"):
            flush()
            result.append(Launch([op], grid_dims(op)))
        elif op.name not in ("alloc", "return"):
            gap.append(op)
    flush()
    return result


def serial_ops(all_launches: list[Launch]) -> set[int]:
    """ids of the top-level ops that run inside serial launches (not in prologues)."""
    return {id(o) for launch in all_launches if launch.serial for o in launch.ops}
