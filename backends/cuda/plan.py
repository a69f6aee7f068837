"""The fusion plan of the CUDA backend: the CPU backend's (backends/llvm/plan.py: a value
is materialized when recomputing it per consumer element would repeat real work, or when
a store to a tensor it was loaded from lies before its consumers), minus the CPU-only rule
that gives guarded loads read by row reductions their own loop (a SIMD vectorization
concern: here each reduce output is one thread's sequential loop)."""
from __future__ import annotations

from ..llvm.plan import Plan as _CPUPlan


class Plan(_CPUPlan):
    def _guarded_row(self, load) -> bool:
        return False
