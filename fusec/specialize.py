"""Specialization: what a compiled kernel may assume about its arguments, and the key of it.

A key holds, per argument: tensors' dtype, rank, whether the data pointer is 16-byte aligned
and, per size and stride, whether it is 1 or divisible by 16 (every size when
static_shapes=True); ints' ==1 / divisible by 16 / needs
int64; constexpr values. Nothing here runs sympy: it is on every call's path.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import arrays
from .ir import dtypes as D


@dataclass(frozen=True)
class TensorSpec:
    """Stands for a tensor in `kernel.compile(...)`: a shape and a dtype (no data)."""
    shape: tuple
    dtype: object = D.float32
    strides: tuple | None = None
    aligned16: bool = True      # data pointer a multiple of 16 bytes (as fresh allocations)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        dtype = self.dtype
        if isinstance(dtype, str):
            dtype = D.dtype_from_name(dtype)
        elif not isinstance(dtype, D.DType):
            dtype = arrays._torch_dtypes().get(dtype) if arrays._torch() else None
            if dtype is None:
                raise TypeError(f"TensorSpec dtype must be an fl dtype, got {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)
        if self.strides is None:
            strides, acc = [], 1
            for s in reversed(self.shape):
                strides.append(acc)
                acc *= max(s, 1)
            object.__setattr__(self, "strides", tuple(reversed(strides)))


@dataclass(frozen=True)
class TensorParam:
    name: str
    dtype: D.DType
    sizes: tuple          # int where the size is fixed by the key (1, or static), else None
    div16: tuple          # bool per dim
    unit_stride: tuple    # bool per dim
    hints: tuple          # the concrete sizes of the call that triggered the compile
    aligned16: bool = True  # the data pointer is a multiple of 16 bytes (vector access)
    stride16: tuple = ()    # bool per dim: the stride is a multiple of 16 elements


@dataclass(frozen=True)
class ScalarParam:
    name: str
    kind: str             # "i", "f", "b"
    is_one: bool = False
    div16: bool = False
    wide: bool = False    # needs int64
    hint: object = None
    nonneg: bool = True   # >= 0 (sizes, offsets); a negative value gets its own compile


@dataclass(frozen=True)
class ConstParam:
    name: str
    value: object


def _size_fact(n: int):
    return 1 if n == 1 else ("d16" if n % 16 == 0 else "")


_INT32_MAX = 2 ** 31 - 1


def describe(name: str, value, constexpr: bool, static_shapes: bool):
    """(key part, param spec) for one argument; raises TypeError naming the parameter."""
    if constexpr:
        # the type is part of the key (1, 1.0 and True trace differently) and floats go by
        # repr (so -0.0 differs from 0.0 and a NaN matches itself)
        try:
            key_value = repr(value) if isinstance(value, float) else (hash(value), value)[1]
        except TypeError:
            key_value = repr(value)
        return ("c", type(value).__qualname__, key_value), ConstParam(name, value)
    if isinstance(value, TensorSpec) or arrays.is_array(value):
        if isinstance(value, TensorSpec):
            dtype, shape, strides = value.dtype, value.shape, value.strides
            aligned = value.aligned16
        else:
            try:
                dtype = arrays.dtype_of(value)
            except TypeError as exc:
                raise TypeError(f"argument {name!r}: {exc}") from None
            shape, strides = tuple(value.shape), arrays.element_strides(value)
            aligned = arrays.data_address(value) % 16 == 0
        if static_shapes:
            facts = tuple(shape)
        else:
            facts = tuple(_size_fact(n) for n in shape)
        stride_facts = tuple(_size_fact(s) if n != 1 else "b" for s, n in zip(strides, shape))
        key = ("t", dtype.name, len(shape), facts, stride_facts, aligned)
        sizes = tuple(n if (static_shapes or n == 1) else None for n in shape)
        param = TensorParam(name, dtype, sizes, tuple(f == "d16" for f in facts)
                            if not static_shapes else (False,) * len(shape),
                            tuple(s == 1 or n == 1 for s, n in zip(strides, shape)),
                            tuple(shape), aligned,
                            tuple(f == "d16" for f in stride_facts))
        return key, param
    if isinstance(value, bool):
        return ("b",), ScalarParam(name, "b", hint=value)
    if isinstance(value, int):
        wide = not -_INT32_MAX - 1 <= value <= _INT32_MAX
        fact = _size_fact(value) if value > 0 else ""
        nonneg = value >= 0
        return ("i", fact, wide, nonneg), ScalarParam(name, "i", fact == 1, fact == "d16", wide,
                                                      value, nonneg)
    if isinstance(value, float):
        return ("f",), ScalarParam(name, "f", hint=value)
    scalar_types = ("numpy", "torch")
    if type(value).__module__.split(".")[0] in scalar_types and hasattr(value, "item") \
            and getattr(value, "ndim", 0) == 0 and not arrays.is_array(value):
        return describe(name, value.item(), constexpr, static_shapes)
    raise TypeError(f"argument {name!r}: expected a tensor (numpy array, torch tensor or "
                    f"fusec.TensorSpec) or a Python int/float/bool, got {type(value).__name__}")
