"""Vector access, for both GPU backends: when the `width` elements of a lane group (the
consecutive elements of one thread along a tile's last axis: cuda/values.py's Lane, the
vector groups of llvm/simt.py) of a load or store are consecutive in memory, 16-byte
aligned where the access is, and all valid or all invalid, they move as one access of up
to 16 bytes per thread instead of `width` narrow ones (a bf16 row: one 16-byte load per 8
elements).

Proved from the IR and the specialization (kernel attrs `aligned`, `stride16`, `div16`,
`unit_strides`), per access:
- along the tile's last axis the index of the tensor's last dim steps by exactly 1 (its
  *lane coefficient* is 1) and every other index does not change (coefficient 0);
- the last-dim index at a group's first lane is a multiple of the width (group bases are);
- the tensor's last dim has unit stride, its other dims strides of 16 elements, and its
  data pointer is 16-byte aligned (allocated outputs: contiguous and aligned);
- bounds checks and masks give every lane of a group the same answer: the last dim's size
  is a multiple of the width, other checked indices have coefficient 0, and the mask is
  uniform over the group (coefficient 0, or bound checks of the lane index against
  multiples of the width: a concat's parts along the last axis).
"""
from __future__ import annotations

import math

from typing import Callable

from ..ir.core import Op, Value
from ..ir.ops import BINARY, COMPARE, UNARY, memory_operands
from ..ir.types import TileType

_BIG = 1 << 30                  # divisor of 0: a multiple of anything
# i < n and i >= n (and mirrored: n > i, n <= i) answer alike for a whole group when i's
# first lane and n are multiples of the group's width
_BOUND_CHECKS = ("lt", "ge", "gt", "le")
# ops whose element at an index depends only on their operands' elements at that index: equal
# operands along a group give equal results (not so for the results of loops, ifs,
# reductions and dots, whose operands are not their elements)
_PER_ELEMENT = frozenset(UNARY + BINARY + COMPARE + ("where", "cast", "load"))


def _integral(expr) -> bool:
    """A polynomial in the sizes with integer coefficients (an integer for every size)."""
    if expr.is_Integer or expr.is_Symbol:
        return True
    if expr.is_Add or expr.is_Mul:
        return all(_integral(a) for a in expr.args)
    if expr.is_Pow:
        base, exp = expr.args
        return exp.is_Integer and exp >= 0 and _integral(base)
    return False


def _rank(v: Value) -> int:
    return v.type.rank if isinstance(v.type, TileType) else 0


class VectorFacts:
    def __init__(self, kernel: Op, handles, unit_last_stride: Callable[[Value], bool]):
        """handles: the backend's env, mapping tile loop handle values to an object with
        `block` (the tile size: tile begins are its multiples); unit_last_stride(tensor):
        whether the backend knows the tensor's last dim has stride 1."""
        attrs = kernel.attrs
        self.params = list(kernel.regions[0].args)
        self.aligned = set(attrs.get("aligned", []))
        self.stride16 = {tuple(x) for x in attrs.get("stride16", [])}
        self.div16 = set(attrs.get("div16", []))
        self.handles = handles
        self.unit_last_stride = unit_last_stride
        self._coeff: dict = {}
        self._uniform: dict = {}

    # -- analyses -----------------------------------------------------------------------------
    def coeff(self, v: Value, axis: int) -> int | None:
        """c with v[idx + e_axis] = v[idx] + c for every idx inside a Lane group along `axis`
        (0: the same value; None: unknown)."""
        if _rank(v) == 0:
            return 0
        key = (v, axis)
        if key not in self._coeff:
            self._coeff[key] = self._coeff_of(v, axis)
        return self._coeff[key]

    def _coeff_of(self, v: Value, axis: int) -> int | None:
        op = v.op
        if op is None:
            return None
        name = op.name
        if name in ("tile_index", "arange"):
            return 1
        if name == "const":
            return 0
        if name == "expand_dims":
            a = op.attrs["axis"]
            return 0 if axis == a else self.coeff(op.operands[0], axis - (axis > a))
        if name == "broadcast":
            src = op.operands[0]
            if _rank(src) == 0 or src.type.shape[axis] == 1:
                return 0
            return self.coeff(src, axis)
        if name == "permute":
            return self.coeff(op.operands[0], op.attrs["perm"][axis])
        if name == "cast" and op.results[0].type.dtype.is_int and \
                op.operands[0].type.dtype.is_int:
            return self.coeff(op.operands[0], axis)
        if name in ("add", "sub"):
            a, b = (self.coeff(o, axis) for o in op.operands)
            if a is None or b is None:
                return None
            c = a + b if name == "add" else a - b
            return c if c in (0, 1) else None
        if name in _PER_ELEMENT and all(self.coeff(o, axis) == 0 for o in op.operands):
            return 0                # values that do not change along the group
        return None

    def uniform(self, v: Value, axis: int, width: int) -> bool:
        """Whether v has one value over every Lane group of `width` along `axis` (its lane
        coefficient is 0, or it is a bound check `lane < n` with the group's first index
        and n multiples of width, or built from such values)."""
        key = (v, axis, width)
        hit = self._uniform.get(key)
        if hit is None:
            hit = self._uniform[key] = self._uniform_of(v, axis, width)
        return hit

    def _uniform_of(self, v: Value, axis: int, width: int) -> bool:
        if self.coeff(v, axis) == 0:
            return True
        op = v.op
        if op is None or op.name in ("tile_index", "arange"):
            return False
        if op.name in _BOUND_CHECKS:
            a, b = op.operands
            if op.name in ("gt", "le"):          # n > i, n <= i: the same checks mirrored
                a, b = b, a
            return (self.coeff(a, axis) == 1 and self.coeff(b, axis) == 0
                    and self.divisor(a, axis) % width == 0
                    and self.divisor(b, axis) % width == 0)
        if op.name == "expand_dims":
            a = op.attrs["axis"]
            return axis == a or self.uniform(op.operands[0], axis - (axis > a), width)
        if op.name == "broadcast":
            src = op.operands[0]
            return _rank(src) == 0 or src.type.shape[axis] == 1 or \
                self.uniform(src, axis, width)
        if op.name == "permute":
            return False
        return op.name in _PER_ELEMENT and op.name != "load" and all(
            self.uniform(o, axis, width) for o in op.operands)

    def divisor(self, v: Value, axis: int | None) -> int:
        """A d such that v's value at the first lane of every group along `axis` is a
        multiple of d; axis None: every element of v is (1: nothing known). A value that
        does not change along `axis` (expanded or broadcast there) must be a multiple at
        every element: the groups start in every row."""
        op = v.op
        if op is None:
            return 1
        name = op.name
        if name == "tile_index":
            return 1 if axis is None else self.handles[op.operands[0]].block
        if name == "arange":
            return 1 if axis is None else abs(op.attrs["start"]) or _BIG
        if name == "const" and isinstance(op.attrs["value"], int) and \
                not isinstance(op.attrs["value"], bool):
            return abs(op.attrs["value"]) or _BIG
        if name == "symval":
            return self.expr_divisor(op.attrs["expr"])
        if name in ("expand_dims", "broadcast", "permute") or (
                name == "cast" and op.results[0].type.dtype.is_int):
            src = op.operands[0]
            if axis is not None:
                if name == "expand_dims":
                    a = op.attrs["axis"]
                    axis = None if axis == a else axis - (axis > a)
                elif name == "broadcast":
                    if _rank(src) == 0 or src.type.shape[axis] == 1:
                        axis = None
                elif name == "permute":
                    axis = op.attrs["perm"][axis]
            if axis is not None:
                axis = min(axis, max(_rank(src) - 1, 0))
            return self.divisor(src, axis)
        if name in ("add", "sub"):
            return math.gcd(*(self.divisor(o, axis) for o in op.operands))
        if name == "mul":
            a, b = (self.divisor(o, axis) for o in op.operands)
            return min(a * b, _BIG)
        return 1

    def expr_divisor(self, expr) -> int:
        """A d dividing every value of a size expression: sums and integer multiples of
        sizes known to be multiples of 16 (a concat's part offsets a_s1, a_s1 + b_s1)."""
        if isinstance(expr, int) or expr.is_Integer:
            return abs(int(expr)) or _BIG
        if not _integral(expr):         # (a/2 + 1/2) * b: nothing known
            return 1
        if expr.is_Symbol:
            return 16 if expr.name in self.div16 else 1
        if expr.is_Add:
            return math.gcd(*(self.expr_divisor(t) for t in expr.args))
        if expr.is_Mul:
            return min(math.prod(self.expr_divisor(f) for f in expr.args), _BIG)
        if expr.is_Pow:                 # a nonnegative integer power (_integral)
            return min(self.expr_divisor(expr.args[0]) ** int(expr.args[1]), _BIG)
        return 1

    # -- tensors -------------------------------------------------------------------------------
    def _size_multiple(self, size, width: int) -> bool:
        return self.expr_divisor(size) % width == 0

    def _stride_ok(self, tensor: Value, d: int) -> bool:
        """The stride of dim d (not the last) is a multiple of 16 elements."""
        shape = tensor.type.shape
        if tensor in self.params:
            return (self.params.index(tensor), d) in self.stride16
        # an allocated output is contiguous: its stride is the product of the later sizes
        return any(self._size_multiple(s, 16) for s in shape[d + 1:])

    def _aligned(self, tensor: Value) -> bool:
        return tensor not in self.params or self.params.index(tensor) in self.aligned

    def width_bytes(self, op: Op, width: int) -> int | None:
        """The bytes of one vector access of a Lane group of `width` elements of load/store/
        atomic op (None: scalar accesses)."""
        if op.name == "atomic_add":
            return None
        tensor, idx_vs, _, mask, _ = memory_operands(op)
        esize = tensor.type.dtype.itemsize
        nbytes = width * esize
        if nbytes < 2 or nbytes & (nbytes - 1) or not self._aligned(tensor):
            return None
        axis = _rank(op.results[0] if op.name == "load" else memory_operands(op)[2]) - 1
        r = tensor.type.rank
        if axis < 0 or r == 0 or not self.unit_last_stride(tensor):
            return None
        checked = op.attrs["checked"]
        for d, iv in enumerate(idx_vs):
            want = 1 if d == r - 1 else 0
            if self.coeff(iv, axis) != want:
                return None
            if d < r - 1 and tensor.type.shape[d] != 1 and not self._stride_ok(tensor, d):
                return None
        if self.divisor(idx_vs[-1], axis) % width:
            return None
        if checked[-1] and not self._size_multiple(tensor.type.shape[-1], width):
            return None
        if mask is not None and not self.uniform(mask, axis, width):
            return None                 # (a concat's part checks: uniform where aligned)
        return min(16, nbytes)
