"""How the lowering represents IR values (lower.py's `env`):

  Scalar(value)       a rank-0 value: an SSA value computed at its definition;
  Buf(ptr, shape)     a materialized tile: a row-major buffer of its elements;
  INLINE              a tile computed per element where it is consumed (plan.py);
  Handle(begin)       a tile loop handle (begin: the tile's first index, i32);
  Tensor(ptr, ...)    a tensor in memory: data pointer, sizes and strides in elements;
  Reg(values, shape)  a materialized tile in its threads' registers (GPU targets, simt.py):
                      one SSA value per slot (round, lane) of the register mapping.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from ...ir.core import Value
from ...ir.dtypes import DType
from ..carried import INLINE, numel, rank  # noqa: F401  (re-exported)


@dataclass
class Scalar:
    value: ir.Value


@dataclass
class Buf:
    ptr: ir.Value                    # pointer to the buffer element type
    shape: tuple[int, ...]
    dtype: DType                     # IR dtype of the elements (buffer type from types.py)

    def terms(self, idx) -> list:
        """(index, static stride) pairs of a row-major element offset."""
        stride, terms = 1, []
        for i, n in zip(reversed(idx), reversed(self.shape)):
            terms.append((i, stride))
            stride *= n
        return terms


@dataclass
class Handle:
    begin: ir.Value                  # i32
    block: int


@dataclass
class Tensor:
    ptr: ir.Value                    # pointer to the storage type
    sizes: list                      # i64 values
    strides: list                    # i64 values (constant 1 where known unit)
    dtype: DType
    value: Value                     # the IR value (param or alloc), for diagnostics


@dataclass
class Reg:
    values: dict                     # (round, lane) -> the element's value
    shape: tuple[int, ...]
