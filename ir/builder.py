"""Builder: creates ops at an insertion point with the current source location."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from .core import UNKNOWN_LOC, Block, Loc, Op, Value
from .ops import OPS
from .types import Type


class Builder:
    def __init__(self, block: Block | None = None, loc: Loc = UNKNOWN_LOC):
        self.block = block
        self.index: int | None = None   # None: append at the end of the block
        self.loc = loc

    def create(self, name: str, operands: list[Value] = (), result_types: list[Type] = (),
               attrs: dict[str, Any] | None = None, regions: list[Block] = ()) -> Op:
        if name not in OPS:
            raise ValueError(f"unknown op {name!r}")
        op = Op(name, operands, result_types, attrs, regions, self.loc)
        if self.index is None:
            self.block.append(op)
        else:
            self.block.insert(self.index, op)
            self.index += 1
        return op

    def value(self, name: str, operands: list[Value], result_type: Type, **attrs) -> Value:
        """Create a single-result op and return its result."""
        return self.create(name, operands, [result_type], attrs).result

    @contextmanager
    def at_end(self, block: Block):
        saved = self.block, self.index
        self.block, self.index = block, None
        try:
            yield self
        finally:
            self.block, self.index = saved

    @contextmanager
    def before(self, op: Op):
        saved = self.block, self.index
        self.block, self.index = op.parent, op.parent.ops.index(op)
        try:
            yield self
        finally:
            self.block, self.index = saved

    @contextmanager
    def at_loc(self, loc: Loc):
        saved = self.loc
        self.loc = loc
        try:
            yield self
        finally:
            self.loc = saved
