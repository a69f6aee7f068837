"""Evaluating ops on constants with the IR's dtype semantics (what the backends compute).

Every function answers the folded Python value (bool, int or float) or None when folding
might not match the backends bit for bit; callers then leave the op alone. Math that the
backends approximate (exp, log, sin, pow on floats, ...) is never folded: its result would
depend on whether an input happened to be constant.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from ..ir import Value
from ..ir.dtypes import DType
from ..ir.types import TileType

Scalar = bool | int | float
_EXACT_INT_IN_FLOAT64 = 2 ** 53


def int_bounds(dtype: DType) -> tuple[int, int]:
    if dtype.kind == "u":
        return 0, (1 << dtype.bits) - 1
    return -(1 << (dtype.bits - 1)), (1 << (dtype.bits - 1)) - 1


def all_ones(dtype: DType) -> Scalar:
    """The value with every bit set: the identity of `and`."""
    return True if dtype.is_bool else (-1 if dtype.kind == "i" else (1 << dtype.bits) - 1)


def wrap_int(value: int, dtype: DType) -> int:
    """Two's complement wraparound to the dtype's width."""
    modulus = 1 << dtype.bits
    value &= modulus - 1
    if dtype.kind == "i" and value >= modulus >> 1:
        value -= modulus
    return value


def _float32_bits(x) -> int:
    return int(np.array(np.float32(x)).view(np.uint32))


def _float32_from_bits(bits: int) -> float:
    return float(np.array(bits, dtype=np.uint32).view(np.float32))


def _bfloat16_from_float32_bits(bits: int) -> float:
    return _float32_from_bits((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000)


def _round_bfloat16_direct(x: float) -> float:
    """Correct rounding of a float64 to bfloat16."""
    with np.errstate(all="ignore"):
        bits = _float32_bits(x)
    approx = _float32_from_bits(bits)
    if approx != x and not math.isinf(x):
        # Round to odd on the way to float32, so that rounding that to nearest even is the
        # correct rounding of x (no double rounding).
        if abs(approx) > abs(x):
            bits -= 1
        bits |= 1
    return _bfloat16_from_float32_bits(bits)


def _round_bfloat16_via_float32(x: float) -> float:
    with np.errstate(all="ignore"):
        return _bfloat16_from_float32_bits(_float32_bits(x))


def _round_float16_direct(x: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float16(x))      # numpy rounds float64 -> float16 in one step


def _round_float16_via_float32(x: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float16(np.float32(x)))


def _round_float32(x: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float32(x))


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _round_half(direct, via_float32):
    """A float64 may round differently to a half dtype directly than through float32 (double
    rounding); backends do either, so such values are not folded."""
    def round_(x: float) -> float | None:
        if math.isnan(x):
            return x
        result = direct(x)
        return result if _same_float(result, via_float32(x)) else None
    return round_


_ROUND = {"float64": float, "float32": _round_float32,
          "float16": _round_half(_round_float16_direct, _round_float16_via_float32),
          "bfloat16": _round_half(_round_bfloat16_direct, _round_bfloat16_via_float32)}


def round_float(x: float, dtype: DType) -> float | None:
    """x rounded to nearest even in a float dtype (None: the backends may disagree)."""
    return _ROUND[dtype.name](float(x))


def convert(value: Scalar, dtype: DType) -> Scalar | None:
    """`cast` semantics: float -> int truncates toward zero and saturates, int -> int wraps,
    anything -> bool is `!= 0`, anything -> float rounds to nearest even."""
    if dtype.is_bool:
        return bool(value)
    if dtype.is_int:
        if isinstance(value, float):
            if math.isnan(value):
                return None            # the backends disagree on NaN -> int
            lo, hi = int_bounds(dtype)
            if math.isinf(value):
                truncated = hi + 1 if value > 0 else lo - 1
            else:
                truncated = math.trunc(value)
            if dtype.bits == 64 and not lo <= truncated <= hi:
                # 2**63 - 1 is not a float64: saturating through float64 (as the reference
                # interpreter does) wraps to the minimum, so backends may disagree here.
                return None
            return min(max(truncated, lo), hi)
        return wrap_int(int(value), dtype)
    if not isinstance(value, float) and abs(int(value)) > _EXACT_INT_IN_FLOAT64:
        return None                    # would round twice on the way through float64
    return round_float(float(value), dtype)


# ---- unary ops -------------------------------------------------------------------------

def _relu_float(x: float) -> float | None:
    if x > 0:
        return x
    return 0.0 if x < 0 else None      # sign of relu(-0.0) and relu(nan) differ by backend


_UNARY_INT = {
    "neg": operator.neg,
    "abs": abs,
    "relu": lambda x: max(x, 0),
    "not": operator.invert,
}
_UNARY_FLOAT = {
    "neg": operator.neg,
    "abs": abs,
    "relu": _relu_float,
    "floor": lambda x: float(np.floor(np.float64(x))),    # numpy keeps -0.0 and inf
    "ceil": lambda x: float(np.ceil(np.float64(x))),
}
_UNARY_BOOL = {"not": operator.not_}


def unary(name: str, x: Scalar, dtype: DType) -> Scalar | None:
    if dtype.is_bool:
        fn = _UNARY_BOOL.get(name)
        return None if fn is None else fn(x)
    if dtype.is_int:
        fn = _UNARY_INT.get(name)
        return None if fn is None else wrap_int(fn(x), dtype)
    fn = _UNARY_FLOAT.get(name)
    result = None if fn is None else fn(x)
    # These ops are exact in every precision: no float32 detour is needed for half dtypes.
    return None if result is None else round_float(result, dtype)


# ---- binary ops ------------------------------------------------------------------------

def _floordiv_int(a: int, b: int) -> int:
    return 0 if b == 0 else a // b


def _mod_int(a: int, b: int) -> int:
    return 0 if b == 0 else a % b


def _pow_int(a: int, b: int, dtype: DType) -> int | None:
    if b < 0:
        return None
    return pow(a, b, 1 << dtype.bits)


_BINARY_INT = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul,
    "floordiv": _floordiv_int, "mod": _mod_int,
    "maximum": max, "minimum": min,
    "and": operator.and_, "or": operator.or_, "xor": operator.xor,
}
_BINARY_BOOL = {
    "and": operator.and_, "or": operator.or_, "xor": operator.xor,
    "maximum": operator.or_, "minimum": operator.and_,
}
# IEEE-exact ops, evaluated in the precision the backends use (float64 for float64,
# float32 for everything narrower, then rounded to the dtype).
_BINARY_FLOAT = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
}


def _min_max_float(name: str, a: float, b: float) -> float | None:
    if math.isnan(a) or math.isnan(b) or (a == 0 and b == 0):
        return None                    # NaN propagation and the sign of zero vary by backend
    return max(a, b) if name == "maximum" else min(a, b)


def binary(name: str, a: Scalar, b: Scalar, dtype: DType) -> Scalar | None:
    if dtype.is_bool:
        fn = _BINARY_BOOL.get(name)
        return None if fn is None else bool(fn(a, b))
    if dtype.is_int:
        if name == "pow":
            result = _pow_int(a, b, dtype)
        else:
            fn = _BINARY_INT.get(name)
            result = None if fn is None else fn(a, b)
        return None if result is None else wrap_int(result, dtype)
    if name in ("maximum", "minimum"):
        return _min_max_float(name, a, b)
    fn = _BINARY_FLOAT.get(name)
    if fn is None:
        return None
    wide = np.float64 if dtype.bits == 64 else np.float32
    with np.errstate(all="ignore"):
        result = fn(wide(a), wide(b))
    return round_float(float(result), dtype)


_COMPARE = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt,
            "le": operator.le, "gt": operator.gt, "ge": operator.ge}


def compare(name: str, a: Scalar, b: Scalar) -> bool:
    """Operands are already exact values of their dtype, so Python's (IEEE) comparison of
    them is the backends' comparison, NaN included."""
    return bool(_COMPARE[name](a, b))


def const_value(v: Value) -> Scalar | None:
    """The splat value of a `const` op's result, read into its dtype; None otherwise."""
    op = v.op
    if op is None or op.name != "const" or not isinstance(v.type, TileType):
        return None
    value = op.attrs.get("value")
    return convert(value, v.type.dtype) if isinstance(value, (bool, int, float)) else None
