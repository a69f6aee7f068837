"""LLVM views of IR dtypes: how a value is stored in memory, computed, and kept in buffers.

- storage: the element type of tensors in memory (bool as i8, bfloat16 as its i16 bits,
  float16 as `half`), matching backends/numeric.py's numpy storage types.
- compute: the type a tile value is computed in (bool as i1; half floats as float holding
  a value already rounded to the half type).
- buffer: the element type of materialized tiles (compute type, but bool as i8 so that
  buffers are plain byte-addressed arrays the vectorizer handles well).
"""
from __future__ import annotations

import llvmlite.ir as ir

from ...ir import dtypes as D
from ...ir.dtypes import DType

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
F16, F32, F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()
VOID = ir.VoidType()
I64P = I64.as_pointer()

STORAGE = {D.bool_: I8, D.int8: I8, D.int16: I16, D.int32: I32, D.int64: I64, D.uint8: I8,
           D.float16: F16, D.bfloat16: I16, D.float32: F32, D.float64: F64}
COMPUTE = {D.bool_: I1, D.int8: I8, D.int16: I16, D.int32: I32, D.int64: I64, D.uint8: I8,
           D.float16: F32, D.bfloat16: F32, D.float32: F32, D.float64: F64}
BUFFER = dict(COMPUTE) | {D.bool_: I8}


def storage(d: DType) -> ir.Type:
    return STORAGE[d]


def compute(d: DType) -> ir.Type:
    return COMPUTE[d]


def buffer(d: DType) -> ir.Type:
    return BUFFER[d]


def byte_size(ty: ir.Type) -> int:
    """Bytes of one element of an LLVM scalar type in memory."""
    if isinstance(ty, ir.IntType):
        return max(1, ty.width // 8)
    return {"half": 2, "float": 4, "double": 8}[str(ty)]


def is_signed(d: DType) -> bool:
    """Signed integer arithmetic (sext, sdiv, icmp slt); bool and uint8 are unsigned."""
    return d.kind == "i"
