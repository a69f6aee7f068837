"""Scalar element types of the IR and torch-style type promotion.

The IR never imports torch or numpy: a DType knows its own name, size and kind, and the
layers above map it to numpy/torch/LLVM/CUDA types through their own tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    name: str        # user-facing name, as in `fl.float32`
    short: str       # the IR's text form, as in `tile<f32>[64]`
    kind: str        # "b" bool, "i" signed int, "u" unsigned int, "f" float
    bits: int

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in ("i", "u")

    @property
    def is_bool(self) -> bool:
        return self.kind == "b"

    @property
    def is_half(self) -> bool:
        """Half-precision floats are computed in float32 and rounded after every op."""
        return self.kind == "f" and self.bits == 16

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    def __repr__(self) -> str:
        return f"fl.{self.name}"

    def __str__(self) -> str:
        return self.name


bool_ = DType("bool", "bool", "b", 1)
int8 = DType("int8", "i8", "i", 8)
int16 = DType("int16", "i16", "i", 16)
int32 = DType("int32", "i32", "i", 32)
int64 = DType("int64", "i64", "i", 64)
uint8 = DType("uint8", "u8", "u", 8)
float16 = DType("float16", "f16", "f", 16)
bfloat16 = DType("bfloat16", "bf16", "f", 16)
float32 = DType("float32", "f32", "f", 32)
float64 = DType("float64", "f64", "f", 64)

ALL_DTYPES = (bool_, int8, int16, int32, int64, uint8, float16, bfloat16, float32, float64)
BY_NAME = {d.name: d for d in ALL_DTYPES} | {d.short: d for d in ALL_DTYPES}
INDEX = int32            # dtype of tile indices (`t.index`, `fl.arange`, argmax results)
DEFAULT_INT = int64      # what a Python int becomes when it must become a tensor type
DEFAULT_FLOAT = float32  # what a Python float / true division of ints becomes


def dtype_from_name(name: str) -> DType:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of "
                         f"{', '.join(d.name for d in ALL_DTYPES)}") from None


_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def category(d: DType) -> int:
    """0 bool, 1 integer, 2 floating: the order in which torch promotes across kinds."""
    return _CATEGORY[d.kind]


def promote(a: DType, b: DType) -> DType:
    """torch.promote_types for two (strong) dtypes."""
    if a == b:
        return a
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    if a.is_float:
        if a.bits == b.bits == 16:       # float16 with bfloat16
            return float32
        return a if a.bits > b.bits else b
    if a.kind == b.kind:
        return a if a.bits > b.bits else b
    unsigned, signed = (a, b) if a.kind == "u" else (b, a)
    if signed.bits > unsigned.bits:
        return signed
    return {8: int16, 16: int32, 32: int64}.get(unsigned.bits, int64)


def promote_with_weak(strong: DType, weak_kind: str) -> DType:
    """Promotion of a tensor dtype with a Python scalar (a "weak" operand) of kind b/i/f:
    the scalar only changes the dtype when it is of a higher category."""
    if _CATEGORY[weak_kind] <= category(strong):
        return strong
    return DEFAULT_FLOAT if weak_kind == "f" else DEFAULT_INT


def reduction_identity(kind: str, dtype: DType):
    """The value a masked lane takes in a reduction of `kind` (sum, prod, max, min, argmax,
    argmin) over `dtype`: it never changes the result."""
    high = kind in ("max", "argmax")
    if kind == "sum":
        return False if dtype.is_bool else (0.0 if dtype.is_float else 0)
    if kind == "prod":
        return True if dtype.is_bool else (1.0 if dtype.is_float else 1)
    if dtype.is_float:
        return -math.inf if high else math.inf
    if dtype.is_bool:
        return not high
    bits = dtype.bits
    lo, hi = (0, 2 ** bits - 1) if dtype.kind == "u" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return lo if high else hi


def reduction_dtype(kind: str, dtype: DType) -> DType:
    """The result dtype of a reduction of `kind` over `dtype`: arg reductions give the lane
    index (int32), sums and products of bools and ints int64, the others the input's
    dtype."""
    if kind in ("argmax", "argmin"):
        return INDEX
    if kind in ("sum", "prod") and not dtype.is_float:
        return int64
    return dtype
