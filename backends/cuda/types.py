"""CUDA C views of IR dtypes and constants.

- storage: the element type of tensors in memory. bool is a byte read as `!= 0` (a byte other
  than 0/1 in a C++ `bool` is undefined behaviour); float16 and bfloat16 are their 16-bit
  patterns (`unsigned short`), converted by the prelude's bit-manipulation functions, so
  the source needs no header.
- compute: the type a tile element is computed in (half floats as float holding a value
  already rounded to the half type), also the element type of tile buffers.
- wide: the unsigned type integer arithmetic wraps in (signed overflow is undefined in C++;
  8/16-bit values are promoted to int by C anyway).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes as D
from ...ir.dtypes import DType
from ..numeric import round_to

STORAGE = {D.bool_: "unsigned char", D.int8: "signed char", D.int16: "short", D.int32: "int",
           D.int64: "long long", D.uint8: "unsigned char", D.float16: "unsigned short",
           D.bfloat16: "unsigned short", D.float32: "float", D.float64: "double"}
COMPUTE = {D.bool_: "bool", D.int8: "signed char", D.int16: "short", D.int32: "int",
           D.int64: "long long", D.uint8: "unsigned char", D.float16: "float",
           D.bfloat16: "float", D.float32: "float", D.float64: "double"}
WIDE = {D.int8: "unsigned int", D.int16: "unsigned int", D.int32: "unsigned int",
        D.int64: "unsigned long long", D.uint8: "unsigned int"}
SIZEOF = {"bool": 1, "signed char": 1, "unsigned char": 1, "short": 2, "unsigned short": 2,
          "int": 4, "unsigned int": 4, "long long": 8, "unsigned long long": 8, "float": 4,
          "double": 8}
# the C math type a float dtype is computed in: selects the float/double math table
MATH_TYPE = {D.float16: "float", D.bfloat16: "float", D.float32: "float", D.float64: "double"}


def storage(d: DType) -> str:
    return STORAGE[d]


def compute(d: DType) -> str:
    return COMPUTE[d]


def is_signed(d: DType) -> bool:
    """Signed integer semantics (bool and uint8 are unsigned)."""
    return d.kind == "i"


def int_limits(d: DType) -> tuple[int, int]:
    info = np.iinfo(np.dtype(d.name))
    return int(info.min), int(info.max)


def int_literal(d: DType, v: int) -> str:
    """An integer of dtype d (wrapped into its range) as a C expression of its type."""
    lo, hi = int_limits(d)
    span = hi - lo + 1
    v = (int(v) - lo) % span + lo
    ty = compute(d)
    if d == D.int64:
        if v == lo:          # -9223372036854775808LL is not a literal: unary minus of one
            return "((long long)0x8000000000000000ULL)"
        return f"{v}LL"
    if d == D.int32:
        return "(-2147483647 - 1)" if v == lo else str(v)
    return f"(({ty}){v})"


def float_literal(value: float, ctype: str) -> str:
    """A float/double constant; inf and NaN through their bit patterns (no headers)."""
    if math.isnan(value):
        return "fc_f32_from_bits(0x7FC00000u)" if ctype == "float" else \
            "fc_f64_from_bits(0x7FF8000000000000ULL)"
    if math.isinf(value):
        sign = "-" if value < 0 else ""
        return f"{sign}fc_f32_from_bits(0x7F800000u)" if ctype == "float" else \
            f"{sign}fc_f64_from_bits(0x7FF0000000000000ULL)"
    text = repr(float(value))
    if "e" not in text and "." not in text:
        text += ".0"
    return f"{text}f" if ctype == "float" else text


def literal(d: DType, value) -> str:
    """A Python bool/int/float as a compute-type constant of dtype d (half floats rounded,
    as the interpreter's `const`)."""
    if d.is_bool:
        return "true" if value else "false"
    if d.is_int:
        return int_literal(d, int(value))
    with np.errstate(all="ignore"):
        v = float(round_to(np.asarray(float(value), dtype=np.float64 if d == D.float64
                                      else np.float32), d))
    return float_literal(v, MATH_TYPE[d])


def zero(d: DType) -> str:
    return literal(d, 0)
