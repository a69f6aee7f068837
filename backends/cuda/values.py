"""How the emitter represents IR values (emit.py's `env`); every field is C source text.

  Scalar(expr)        a rank-0 value, computed redundantly by every thread of the block;
  Buf(name, shape)    a materialized tile: a row-major array in the program's arena
                      (shared memory, or a global scratch slice when it is too large);
  INLINE              a tile recomputed per element where it is consumed (plan.py);
  Reg(name, ...)      a register tile (residency.py): each thread's elements in a local
                      array, element j of slot m at name[m * width + j];
  Frag(name, layout)  a tile in the registers of an mma accumulator's fragment layout
                      (fragments.py): each warp holds a block of it, each thread pairs of
                      adjacent elements;
  Handle(begin)       a tile loop handle (begin: the tile's first index, an int);
  Tensor(ptr, ...)    a tensor in global memory: data pointer, sizes and strides (elements).

A tile index is a tuple of C int expressions, Python ints and Lanes: `Lane(base, j, width)`
is the j-th of `width` consecutive indices a thread handles together along a tile's last
axis (base a multiple of width), which lets loads, stores and buffer reads of the group move
as one vector (backends/vector_facts.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir.dtypes import DType
from ..carried import INLINE, numel, rank  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Lane:
    base: str
    j: int
    width: int

    def __str__(self) -> str:
        return self.base if self.j == 0 else f"({self.base} + {self.j})"

    def first(self) -> "Lane":
        return Lane(self.base, 0, self.width)


@dataclass
class Scalar:
    expr: str


@dataclass
class Buf:
    name: str
    shape: tuple[int, ...]
    dtype: DType | None              # IR dtype of the elements (None: an accumulator)
    ctype: str

    def offset(self, idx) -> str:
        """Row-major element offset of idx (ints fold into constants)."""
        stride, terms, const = 1, [], 0
        for i, n in zip(reversed(idx), reversed(self.shape)):
            if isinstance(i, int):
                const += i * stride
            else:
                terms.append(str(i) if stride == 1 else f"{i} * {stride}")
            stride *= n
        if const or not terms:
            terms.append(str(const))
        return " + ".join(reversed(terms))

    def at(self, idx) -> str:
        return f"{self.name}[{self.offset(idx)}]"


@dataclass
class Reg:
    name: str
    shape: tuple[int, ...]
    width: int


@dataclass
class Frag:
    name: str
    layout: object                   # fragments.FragmentLayout
    ctype: str


@dataclass
class Handle:
    begin: str
    block: int


@dataclass
class Tensor:
    ptr: str
    sizes: list[str]
    strides: list[str]               # "1" where the specialization knows a unit stride
    dtype: DType
