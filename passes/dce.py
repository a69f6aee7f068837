"""dce: remove pure ops whose results are unused, anywhere in the module.

Loops, `if`s, memory ops, carried values and kernel params are kept as they are.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from ..ir import Module, erase
from ..ir.ops import PURE


def _sweep(module: Module) -> bool:
    n_uses = Counter(v for op in module.walk() for v in op.operands)
    removed = False
    # Users come after their operands' definitions in program order, so walking backwards
    # frees whole chains of dead ops in one sweep.
    for op in reversed(list(module.walk())):
        if op.name in PURE and not op.regions and not any(n_uses[r] for r in op.results):
            n_uses.subtract(op.operands)
            erase(op)
            removed = True
    return removed


@dataclass
class DeadCodeElimination:
    name: ClassVar[str] = "dce"

    def run(self, module: Module) -> None:
        while _sweep(module):
            pass
