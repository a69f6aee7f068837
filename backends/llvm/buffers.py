"""Tile buffers of one function: small ones are allocas (the CPU stack; a GPU thread's local
memory), the others sit at fixed offsets in a per-program scratch area whose size is known
once the whole function is emitted (FunctionBuffers.scratch_bytes).

Targets pick the limits: the stack / local memory is fast and needs no bookkeeping, but it is
reserved per thread, so big tiles go to the scratch area.
"""
from __future__ import annotations

from typing import Callable

import llvmlite.ir as ir

from .types import I64, byte_size

ALIGN = 64             # bytes: every buffer starts on a cache line / vector boundary


class FunctionBuffers:
    def __init__(self, builder: ir.IRBuilder, scratch_base: Callable[[], ir.Value],
                 buffer_limit: int, total_limit: int):
        """builder: positioned in the function's entry block (allocas are static there);
        scratch_base(): the i8 pointer to this program's scratch area (made on first use);
        buffer_limit / total_limit: the largest alloca and the sum of them, in bytes."""
        self.builder = builder
        self.scratch_base = scratch_base
        self.buffer_limit = buffer_limit
        self.total_limit = total_limit
        self.stack_bytes = 0
        self.scratch_bytes = 0

    def alloc(self, elem: ir.Type, count: int) -> ir.Value:
        """A pointer to `count` elements of `elem`, private to one program: on the stack
        while it fits the limits, else in the scratch area."""
        nbytes = count * byte_size(elem)
        if nbytes <= self.buffer_limit and self.stack_bytes + nbytes <= self.total_limit:
            return self.alloc_stack(elem, count)
        return self.alloc_scratch(elem, count)

    def alloc_stack(self, elem: ir.Type, count: int) -> ir.Value:
        self.stack_bytes += count * byte_size(elem)
        ptr = self.builder.alloca(ir.ArrayType(elem, count))
        ptr.align = ALIGN
        return self.builder.bitcast(ptr, elem.as_pointer())

    def alloc_scratch(self, elem: ir.Type, count: int) -> ir.Value:
        offset = self.scratch_bytes
        self.scratch_bytes = (offset + count * byte_size(elem) + ALIGN - 1) // ALIGN * ALIGN
        b = self.builder
        raw = b.gep(self.scratch_base(), [ir.Constant(I64, offset)], inbounds=True)
        return b.bitcast(raw, elem.as_pointer())
