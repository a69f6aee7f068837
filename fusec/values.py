"""What names in a kernel are bound to while it is traced into IR."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from .ir import Value
from .ir.dtypes import DType
from .ir.symbolic import constant_difference


@dataclass
class TileVal:
    """A tile (or scalar, rank 0) computed by one program.

    masks[d] is a 1-D bool IR value of length shape[d] saying which lanes along dim d are
    real (inside the tile loop's extent and the tensor's bounds), or None when all are.
    Reductions replace the other lanes with their identity. `weak` marks values typed like
    Python scalars (scalar parameters), which do not decide the dtype of an expression.
    """
    value: Value
    masks: tuple = ()
    weak: bool = False

    def __post_init__(self):
        if not self.masks:
            self.masks = (None,) * len(self.shape)

    @property
    def type(self):
        return self.value.type

    @property
    def dtype(self) -> DType:
        return self.value.type.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.type.shape

    @property
    def rank(self) -> int:
        return len(self.value.type.shape)


@dataclass
class TensorArg:
    """A tensor in memory: a kernel argument or an output allocated by the kernel."""
    value: Value
    name: str

    @property
    def dtype(self) -> DType:
        return self.value.type.dtype

    @property
    def shape(self) -> tuple:
        return tuple(SymSize(d) if not d.is_Integer else int(d) for d in self.value.type.shape)

    @property
    def ndim(self) -> int:
        return self.value.type.rank


@dataclass
class TileHandle:
    """The loop variable of `for t in fusec.tile(extent)`."""
    value: Value
    block: int
    extent: sympy.Expr
    dim: int
    cache: dict = field(default_factory=dict)   # index / begin / mask values, built once


@dataclass(frozen=True, eq=False)
class SymSize:
    """A size known only at run time (a tensor's size or an int parameter), as sympy."""
    expr: sympy.Expr

    def _lift(self, other):
        if isinstance(other, SymSize):
            return other.expr
        if isinstance(other, int) and not isinstance(other, bool):
            return sympy.Integer(other)
        return NotImplemented

    def _wrap(self, expr):
        expr = sympy.simplify(expr) if not expr.is_Atom else expr
        return int(expr) if expr.is_Integer else SymSize(expr)

    def __add__(self, o):
        o = self._lift(o)
        return NotImplemented if o is NotImplemented else self._wrap(self.expr + o)

    __radd__ = __add__

    def __sub__(self, o):
        o = self._lift(o)
        return NotImplemented if o is NotImplemented else self._wrap(self.expr - o)

    def __rsub__(self, o):
        o = self._lift(o)
        return NotImplemented if o is NotImplemented else self._wrap(o - self.expr)

    def __mul__(self, o):
        o = self._lift(o)
        return NotImplemented if o is NotImplemented else self._wrap(self.expr * o)

    __rmul__ = __mul__

    def __floordiv__(self, o):
        o = self._lift(o)
        return NotImplemented if o is NotImplemented else self._wrap(sympy.floor(self.expr / o))

    def __rfloordiv__(self, o):
        o = self._lift(o)
        return NotImplemented if o is NotImplemented else self._wrap(sympy.floor(o / self.expr))

    def __mod__(self, o):
        o = self._lift(o)
        return NotImplemented if o is NotImplemented else self._wrap(sympy.Mod(self.expr, o))

    def __eq__(self, other):
        o = self._lift(other)
        if o is NotImplemented:
            return False
        diff = constant_difference(self.expr, o)
        if diff is not None:
            return diff == 0
        from .semantic import SemanticError
        raise SemanticError(f"whether sizes {self.expr} and {o} are equal is only known at run "
                            "time; compare them on the device (e.g. in fl.where) or specialize "
                            "with static_shapes=True")

    def __hash__(self):
        return hash(self.expr)

    def __repr__(self) -> str:
        return f"SymSize({self.expr})"


def size_expr(value) -> sympy.Expr:
    if isinstance(value, SymSize):
        return value.expr
    if isinstance(value, int) and not isinstance(value, bool):
        return sympy.Integer(value)
    raise TypeError(f"expected a size (int or tensor size), got {type(value).__name__}")
