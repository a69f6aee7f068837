"""numpy views of IR dtypes, shared by the backends.

Tensors live in memory in their *storage* type (bfloat16 as its uint16 bit pattern, numpy
having no bfloat16); tile values are computed in their *compute* type (half floats as float32
holding values already rounded to the half type).
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes as D

STORAGE = {D.bool_: np.bool_, D.int8: np.int8, D.int16: np.int16, D.int32: np.int32,
           D.int64: np.int64, D.uint8: np.uint8, D.float16: np.float16,
           D.bfloat16: np.uint16, D.float32: np.float32, D.float64: np.float64}
COMPUTE = dict(STORAGE) | {D.float16: np.float32, D.bfloat16: np.float32}


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16, nearest even; NaN stays a (quiet) NaN."""
    x = np.array(x, dtype=np.float32)         # keeps 0-d shapes (ascontiguousarray would not)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), out)


def round_to(x, dtype: D.DType) -> np.ndarray:
    """Round a compute-type array to `dtype`'s precision, keeping the compute type."""
    x = np.asarray(x)
    if dtype == D.float16:
        return x.astype(np.float16).astype(np.float32)
    if dtype == D.bfloat16:
        return bf16_bits_to_f32(f32_to_bf16_bits(x))
    return x.astype(COMPUTE[dtype], copy=False)


def to_compute(stored: np.ndarray, dtype: D.DType) -> np.ndarray:
    if dtype == D.bfloat16:
        return bf16_bits_to_f32(stored)
    return np.asarray(stored).astype(COMPUTE[dtype], copy=False)


def to_storage(values: np.ndarray, dtype: D.DType) -> np.ndarray:
    if dtype == D.bfloat16:
        return f32_to_bf16_bits(values)
    return np.asarray(values).astype(STORAGE[dtype], copy=False)


def cast(x: np.ndarray, src: D.DType, dst: D.DType) -> np.ndarray:
    """The IR's `cast`: float->int truncates toward zero and saturates (NaN -> 0)."""
    x = np.asarray(x)
    if dst.is_bool:
        return x != 0
    if src.is_float and dst.is_int:
        info = np.iinfo(STORAGE[dst])
        with np.errstate(invalid="ignore"):
            t = np.trunc(np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=np.inf,
                                       neginf=-np.inf))
            # compare in float64 before converting: float(2**63 - 1) rounds up to 2**63
            too_high, too_low = t >= float(info.max), t <= float(info.min)
            inner = np.where(too_high | too_low, 0, t).astype(STORAGE[dst])
            return np.where(too_high, info.max, np.where(too_low, info.min, inner)).astype(
                STORAGE[dst])
    if dst.is_float:
        return round_to(x.astype(np.float64) if src.is_int else x, dst)
    return x.astype(STORAGE[dst])          # int -> int wraps, bool -> int is 0/1
