"""scan-flips: a whole-tensor scan between two flips of its axis is the reversed scan,
flip(scan(flip(x, d), d), d) -> scan(x, d, reverse) -- the form autograd gives the gradient
of a cumsum. Each flip is an indexed view (it reads its operand from memory), so the chain
took two launches and an intermediate tensor; the reversed scan is one op of x's group.

Runs before the fuse pass (fusec/compiler.py); only flips used by nothing else fold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import sympy

from ..ir import Module, Op, TensorType, erase, uses
from ..ir.symbolic import is_zero


@dataclass
class ScanFlips:
    name: ClassVar[str] = "scan-flips"

    def run(self, module: Module) -> None:
        for kernel in module.ops:
            fold_scan_flips(kernel)


def fold_scan_flips(kernel: Op) -> None:
    scans = [op for op in kernel.regions[0].ops if op.name == "scan"
             and isinstance(op.results[0].type, TensorType)]
    users = uses(kernel) if scans else {}
    for scan in scans:
        axis = scan.attrs["axis"]
        before = scan.operands[0].op
        readers = users.get(scan.results[0], [])
        after = readers[0] if len(readers) == 1 else None
        if _flipped_dim(before) != axis or _flipped_dim(after) != axis or \
                len(users.get(before.results[0], [])) != 1:
            continue
        scan.operands = [before.operands[0]]
        scan.attrs["reverse"] = not scan.attrs["reverse"]
        for op in users.get(after.results[0], []):
            op.operands = [scan.results[0] if v is after.results[0] else v
                           for v in op.operands]
        scan.results[0].name = after.results[0].name or scan.results[0].name
        erase(after)
        erase(before)
        users = uses(kernel)


def _flipped_dim(op: Op | None) -> int | None:
    """The one dim a whole-tensor slice reverses whole (fl.flip of one dim), else None."""
    if op is None or op.name != "slice" or not isinstance(op.results[0].type, TensorType):
        return None
    shape = op.operands[0].type.shape
    if tuple(shape) != tuple(op.results[0].type.shape):
        return None
    steps, starts = op.attrs["steps"], op.attrs["starts"]
    flipped = [d for d, s in enumerate(steps) if s == -1]
    if len(flipped) != 1 or any(s not in (1, -1) for s in steps):
        return None
    d = flipped[0]
    if all(is_zero(sympy.sympify(start) - (shape[i] - 1 if i == d else 0))
           for i, start in enumerate(starts)):
        return d
    return None
