"""What the cuda backend does with a kernel's tile values, as far as its cost model needs
it: which values are materialized (computed once into registers or a buffer), whether one
can be a register tile, and which are materialized only to expand a broadcast. Read from
the traced IR the autotuner's facts come from (fitting.py)."""
from __future__ import annotations

from ..backends.carried import VIEW_OPS
from ..backends.llvm.plan import Plan
from ..ir import ops as O
from ..ir.core import Value

# readers that walk a value's elements in its own order (residency.py's, plus broadcasts
# of the same shape)
_ELEMENTWISE = frozenset(O.UNARY + O.BINARY + O.COMPARE + ("where", "cast", "load",
                                                          "broadcast"))


class GPUPlan(Plan):
    """The CUDA backend's fusion plan (backends/llvm/plan.py, which the CUDA backend uses too) with what the
    cost model asks of it, without importing the CUDA backend (85 ms) for a kernel that may
    only ever run on the CPU."""

    def expanded_elements(self, v: Value) -> int:
        """When materialized v's only reason is a broadcast expanding it (through views),
        that broadcast's elements; else 0. With blocks that leave the broadcast a plain
        view (a [1, N] tile of an [N] row), v is not materialized at all."""
        consumers = set(self.uses.get(v, []))
        if len(consumers) != 1:
            return 0
        (c,) = consumers
        if c.parent is not v.op.parent or c.name not in VIEW_OPS:
            return 0
        r = c.results[0]
        if len(set(self.uses.get(r, []))) != 1:
            return 0
        if c.name == "broadcast" and tuple(r.type.shape) != tuple(c.operands[0].type.shape):
            return r.type.numel
        return self.expanded_elements(r)

    def register_eligible(self, v: Value, shape=None) -> bool:
        """Whether materialized v can be a register tile: backends/cuda/residency.py's rule
        (its readers walk v's elements in its own strided order: same-shape elementwise ops
        and stores in its block, last-axis reductions), kept here for the same reason."""
        shape = tuple(v.type.shape) if shape is None else shape
        for c in self.uses.get(v, []):
            if c.parent is not v.op.parent:
                return False
            if c.name in _ELEMENTWISE:
                r = c.results[0]
                if tuple(r.type.shape) != shape or (
                        r not in self.materialized and not self.register_eligible(r, shape)):
                    return False
            elif c.name in ("store", "atomic_add"):
                if tuple(O.memory_operands(c)[2].type.shape) != shape:
                    return False
            elif c.name != "reduce" or c.attrs["axis"] != len(shape) - 1:
                return False
        return True
