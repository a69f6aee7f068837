"""IR value types.

- TileType: a value held by one program (registers on a GPU): a dtype and a static shape of
  Python ints. Rank 0 is a scalar and prints as the bare dtype (`f32`).
- TensorType: a tensor in memory (a kernel argument or an output allocated by the kernel),
  with a symbolic shape (sympy). Strides are runtime values known to the backends.
- HandleType: the handle of a tile loop (`%tm` in `tile_for`), from which `tile_index` and
  `tile_begin` read the program's indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .dtypes import DType
from .symbolic import as_expr, expr_to_text, is_simple


@dataclass(frozen=True)
class TileType:
    dtype: DType
    shape: tuple[int, ...] = ()

    def __post_init__(self):
        for d in self.shape:
            if not isinstance(d, int) or isinstance(d, bool) or d < 1:
                raise ValueError(f"tile dimensions must be positive ints, got {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def with_dtype(self, dtype: DType) -> "TileType":
        return TileType(dtype, self.shape)

    def with_shape(self, shape) -> "TileType":
        return TileType(self.dtype, tuple(shape))

    def __str__(self) -> str:
        if not self.shape:
            return self.dtype.short
        return f"tile<{self.dtype.short}>[{', '.join(map(str, self.shape))}]"


def scalar(dtype: DType) -> TileType:
    return TileType(dtype, ())


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[sympy.Expr, ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(as_expr(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def __str__(self) -> str:
        dims = (expr_to_text(d) if is_simple(d) else f'e"{expr_to_text(d)}"' for d in self.shape)
        return f"tensor<{self.dtype.short}>[{', '.join(dims)}]"


@dataclass(frozen=True)
class HandleType:
    def __str__(self) -> str:
        return "tileidx"


HANDLE = HandleType()
Type = TileType | TensorType | HandleType
