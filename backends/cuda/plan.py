"""The fusion plan of the CUDA backend: the shared one (backends/llvm/plan.py: a value is
materialized when recomputing it per consumer element would repeat real work, or when a
store to a tensor it was loaded from lies before its consumers)."""
from __future__ import annotations

from ..llvm.plan import Plan

__all__ = ["Plan"]
