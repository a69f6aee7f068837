"""mask-elim: drop bounds checks and mask comparisons that sympy proves always true.

- load/store/atomic_add: `checked[d]` becomes false when every lane's index along dim d is
  provably within [0, size_d) of the tensor (see index_range.py for the index forms known);
- lt/le/gt/ge on int tiles become a constant when the operands' ranges prove the outcome
  (`lt(tile_index(%t), symval(N))` with N the loop's extent and a multiple of its block).

Proofs use the kernel's `div16` sizes. Anything not proven stays as it is; the constant
masks left behind are folded away by the next `canonicalize`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from ..ir import Module, Op
from ..ir.ops import memory_operands
from .index_range import IndexRanges
from .rewrite import CHANGED, PatternTable, Rewriter, apply_to_fixed_point


def uncheck_proven_dims(ranges: IndexRanges, op: Op, rw: Rewriter):
    tensor, idx, *_ = memory_operands(op)
    checked = list(op.attrs["checked"])
    for d, index in enumerate(idx):
        if checked[d] and ranges.proves_within(index, tensor.type.shape[d]):
            checked[d] = False
    if checked == op.attrs["checked"]:
        return None
    op.attrs["checked"] = checked
    return CHANGED


# (operands swapped?, strict?): gt(a, b) is lt(b, a), ge(a, b) is le(b, a).
_ORDERINGS = {"lt": (False, True), "le": (False, False), "gt": (True, True), "ge": (True, False)}


def fold_proven_compare(ranges: IndexRanges, op: Op, rw: Rewriter):
    swapped, strict = _ORDERINGS[op.name]
    small, large = reversed(op.operands) if swapped else op.operands
    a, b = ranges.of(small), ranges.of(large)
    if a is None or b is None:
        return None
    gap = 1 if strict else 0
    # small < large on every lane when its highest value is below large's lowest.
    if ranges.proves_nonnegative(b[0] - a[1] - gap):
        return rw.const(op.result.type, True)
    if ranges.proves_nonnegative(a[0] - b[1] - (1 - gap)):
        return rw.const(op.result.type, False)
    return None


def _patterns(ranges: IndexRanges) -> PatternTable:
    return [
        (("load", "store", "atomic_add"), partial(uncheck_proven_dims, ranges)),
        (tuple(_ORDERINGS), partial(fold_proven_compare, ranges)),
    ]


@dataclass
class MaskElimination:
    name: ClassVar[str] = "mask-elim"

    def run(self, module: Module) -> None:
        for kernel in module.ops:
            apply_to_fixed_point(kernel, _patterns(IndexRanges(kernel)))
