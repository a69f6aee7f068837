"""cse: merge identical pure ops (same name, operands, attributes and result types).

An op may be replaced by an identical one earlier in its block or in any enclosing block of
the same kernel (those dominate it); siblings (the two branches of an `if`) never see each
other. Ops with regions and memory ops are never merged.
"""
from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass
from typing import ClassVar

import sympy

from ..ir import Block, Module, Op, TensorType, Value, erase
from ..ir.ops import PURE


def _freeze(attr):
    """A hashable attribute value that tells apart what `==` would merge (0.0 and -0.0,
    True and 1) and matches NaN with itself."""
    if isinstance(attr, (list, tuple)):
        return tuple(_freeze(a) for a in attr)
    if isinstance(attr, sympy.Basic):
        return ("expr", attr)
    return (type(attr).__name__, repr(attr))


def _key(op: Op) -> tuple:
    return (op.name, tuple(op.operands),
            tuple(sorted((k, _freeze(v)) for k, v in op.attrs.items())),
            tuple(r.type for r in op.results))


def _reads_tensors(op: Op) -> bool:
    return any(isinstance(v.type, TensorType) for v in op.operands)


def _cse_block(block: Block, available: ChainMap, replaced: dict[Value, Value]) -> None:
    for op in list(block.ops):
        op.operands = [replaced.get(v, v) for v in op.operands]
        # whole-tensor ops read memory that a `write` between two of them may change
        if op.name in PURE and not op.regions and not _reads_tensors(op):
            key = _key(op)
            earlier = available.get(key)
            if earlier is not None:
                replaced.update(zip(op.results, earlier.results))
                erase(op)
                continue
            available[key] = op
        for region in op.regions:
            _cse_block(region, available.new_child(), replaced)


@dataclass
class CommonSubexpressionElimination:
    name: ClassVar[str] = "cse"

    def run(self, module: Module) -> None:
        for top in module.ops:
            # A fresh scope per kernel: constants of two kernels must stay apart.
            for region in top.regions:
                _cse_block(region, ChainMap(), {})
