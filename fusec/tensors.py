"""The meaning of DSL operations on whole tensors (statements outside tile loops).

They become tensor-level IR ops (ir/ops.py) with numpy's broadcasting and torch's type
promotion, exactly as the same operations on tiles; the fuse and tile passes turn them into
tile loops. Whole tensors have no masked lanes, so nothing here deals with masks.

Symbolic sizes: broadcasting two different symbolic sizes (x: [M, N] + b: [K]) assumes them
equal, as torch would require at run time; the pair is recorded (TensorSemantic.equal_sizes,
the kernel's `equal_sizes`) and every call checks it. Sizes whose values in the call being
specialized differ are an error now.
"""
from __future__ import annotations

import sympy

from .errors import shape_text
from .ir import TensorType, Value
from .ir import dtypes as D
from .ir.dtypes import DType
from .ir.symbolic import hinted_value
from .values import SymSize, TensorArg
from .views import ViewSemantic


class TensorVal(TensorArg):
    """A whole tensor computed by tensor-level ops: a value, not memory. It can be returned,
    written into a tensor (`out[:] = y`) and used by further whole-tensor ops."""


def is_tensor(x) -> bool:
    return isinstance(x, TensorArg)


def _describe(x) -> str:
    return shape_text(x.value.type.shape) if is_tensor(x) else type(x).__name__



class TensorSemantic:
    def __init__(self, sem, error):
        self.sem = sem             # the tile Semantic: constants, scalars, promotion
        self.b = sem.b
        self.error = error         # the SemanticError class
        self.hints: dict = {}      # size symbol -> its value in the call being specialized
        self.equal_sizes: list = []
        self.views = ViewSemantic(self)   # reshape, squeeze, flatten, slicing

    # -- shapes ----------------------------------------------------------------------------
    def _same_dim(self, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        """The common size of two dims (neither being 1), recording an assumed equality."""
        if a == b:
            return a
        va, vb = hinted_value(a, self.hints), hinted_value(b, self.hints)
        if va is not None and vb is not None and va != vb:
            return None
        if a.is_Integer and b.is_Integer:
            return None
        pair = [a, b]
        if pair not in self.equal_sizes and [b, a] not in self.equal_sizes:
            self.equal_sizes.append(pair)
        return b if b.is_Integer else a          # a static size says more

    def broadcast_shape(self, *shapes) -> tuple:
        rank = max(len(s) for s in shapes)
        out = []
        for d in range(rank):
            dims = [s[d - rank + len(s)] for s in shapes if d - rank + len(s) >= 0]
            dims = [x for x in dims if x != 1]
            size = dims[0] if dims else sympy.Integer(1)
            for other in dims[1:]:
                size = self._same_dim(size, other)
                if size is None:
                    raise self.error("shapes cannot be broadcast together: "
                                     + " and ".join(shape_text(s) for s in shapes))
            out.append(size)
        return tuple(out)

    def to_tensor(self, x, dtype: DType, shape: tuple) -> Value:
        """x (a tensor, a scalar tile, a Python number or a size) as a tensor value of
        `dtype` and `shape`."""
        if is_tensor(x):
            v = x.value
            if v.type.dtype != dtype:
                v = self.b.value("cast", [v], v.type.with_dtype(dtype))
            while v.type.rank < len(shape):
                v = self.b.value("expand_dims", [v], v.type.with_shape(
                    (sympy.Integer(1),) + v.type.shape), axis=0)
            if tuple(v.type.shape) != tuple(shape):
                v = self.b.value("broadcast", [v], v.type.with_shape(shape))
            return v
        tile = self.sem.to_tile(x, dtype)
        if tile.rank != 0:
            raise self.error(f"a tile of shape {list(tile.shape)} cannot be combined with a "
                             "whole tensor; tiles live inside tile loops")
        return self.b.value("broadcast", [tile.value], TensorType(dtype, shape))

    def _wrap(self, value) -> TensorVal:
        return TensorVal(value, value.name or "tensor")

    def _operands(self, xs, dtype: DType):
        shape = self.broadcast_shape(*(tuple(x.value.type.shape) for x in xs if is_tensor(x)))
        return [self.to_tensor(x, dtype, shape) for x in xs], shape

    # -- elementwise -----------------------------------------------------------------------
    def binary(self, name: str, dtype: DType, a, b) -> TensorVal:
        (va, vb), _ = self._operands([a, b], dtype)
        return self._wrap(self.b.value(name, [va, vb], va.type))

    def compare(self, name: str, a, b) -> TensorVal:
        dtype = self.sem.result_dtype([a, b])
        (va, vb), _ = self._operands([a, b], dtype)
        return self._wrap(self.b.value(name, [va, vb], va.type.with_dtype(D.bool_)))

    def unary(self, name: str, x: TensorArg, dtype: DType) -> TensorVal:
        v = self.to_tensor(x, dtype, tuple(x.value.type.shape))
        return self._wrap(self.b.value(name, [v], v.type))

    def where(self, cond, a, b, dtype: DType) -> TensorVal:
        if not (is_tensor(cond) and cond.dtype.is_bool) and is_tensor(cond):
            cond = self.compare("ne", cond, 0)
        shape = self.broadcast_shape(*(tuple(x.value.type.shape) for x in (cond, a, b)
                                       if is_tensor(x)))
        vc = self.to_tensor(cond, D.bool_, shape)
        va, vb = self.to_tensor(a, dtype, shape), self.to_tensor(b, dtype, shape)
        return self._wrap(self.b.value("where", [vc, va, vb], va.type))

    def cast(self, x: TensorArg, dtype: DType) -> TensorArg:
        if x.dtype == dtype:
            return x
        return self._wrap(self.b.value("cast", [x.value], x.value.type.with_dtype(dtype)))

    # -- views -----------------------------------------------------------------------------
    def expand_dims(self, x: TensorArg, axis: int) -> TensorVal:
        rank = x.ndim
        if axis < 0:
            axis += rank + 1
        if not 0 <= axis <= rank:
            raise self.error(f"axis {axis} out of range for a rank-{rank} tensor")
        shape = x.value.type.shape
        return self._wrap(self.b.value("expand_dims", [x.value], x.value.type.with_shape(
            shape[:axis] + (sympy.Integer(1),) + shape[axis:]), axis=axis))

    def permute(self, x: TensorArg, perm) -> TensorVal:
        perm = [int(p) for p in perm]
        if sorted(perm) != list(range(x.ndim)):
            raise self.error(f"bad permutation {perm} for a rank-{x.ndim} tensor")
        shape = x.value.type.shape
        return self._wrap(self.b.value("permute", [x.value], x.value.type.with_shape(
            [shape[p] for p in perm]), perm=perm))

    def _check_broadcastable(self, got: tuple, shape: tuple, what: str) -> None:
        """`got` broadcasts to exactly `shape` (a dim of 1 in shape takes only a 1)."""
        if len(got) > len(shape) or any(g != 1 and d == 1 for g, d in zip(got[::-1],
                                                                           shape[::-1])):
            raise self.error(f"cannot {what}")
        self.broadcast_shape(got, shape)          # raises when they cannot broadcast

    def broadcast_to(self, x: TensorArg, shape: list) -> TensorArg:
        """x broadcast to `shape` (numpy's rule: x's dims align to the right, each 1 or
        equal to the target's)."""
        shape = tuple(shape)
        got = tuple(x.value.type.shape)
        self._check_broadcastable(got, shape, f"broadcast a tensor of shape "
                                              f"{shape_text(got)} to {shape_text(shape)}")
        if got == shape:
            return x
        return self._wrap(self.to_tensor(x, x.dtype, shape))

    def index(self, x: TensorArg, items) -> TensorVal:
        return self.views.index(x, items)

    # -- reductions ------------------------------------------------------------------------
    def axes(self, x: TensorArg, axis) -> list[int]:
        if axis is None:
            return list(range(x.ndim))
        axes = [axis] if isinstance(axis, int) else list(axis)
        out = []
        for a in axes:
            if not isinstance(a, int) or not -x.ndim <= a < x.ndim:
                raise self.error(f"axis {a} out of range for a tensor of shape "
                                 f"{shape_text(x.value.type.shape)}")
            out.append(a % x.ndim)
        return sorted(set(out))

    def reduce(self, kind: str, x: TensorArg, axis, keepdims: bool) -> TensorVal:
        if x.ndim == 0:
            raise self.error(f"{kind} of a 0-d tensor: reductions need dims")
        axes = self.axes(x, axis)
        if kind in ("argmax", "argmin") and len(axes) != 1:
            raise self.error(f"{kind} needs a single axis (the tensor has rank {x.ndim})")
        if kind in ("sum", "prod") and x.dtype.is_bool:
            x = self.cast(x, D.int64)
        # one reduce op an axis: a 16-bit float's partial sums (products) over the first
        # axes would be rounded to 16 bits; they are kept in float32, rounded once
        narrow = x.dtype if len(axes) > 1 and kind in ("sum", "prod") and _is_16_bit(x) \
            else None
        value = (self.cast(x, D.float32) if narrow else x).value
        for a in reversed(axes):
            t = value.type
            value = self.b.value("reduce", [value], TensorType(
                D.reduction_dtype(kind, t.dtype), t.shape[:a] + t.shape[a + 1:]),
                kind=kind, axis=a)
        out = self._wrap(value)
        if narrow:
            out = self.cast(out, narrow)
        if keepdims:
            for a in axes:
                out = self.expand_dims(out, a)
        return out

    def scan(self, kind: str, x: TensorArg, axis, reverse: bool) -> TensorVal:
        if x.ndim == 0:
            raise self.error(f"cum{kind} of a 0-d tensor: scans need dims")
        if not isinstance(axis, int):
            raise self.error(f"cum{kind}: axis must be one int, got {axis!r}")
        a = self.axes(x, axis)[0]
        if kind in ("sum", "prod") and x.dtype.is_bool:
            x = self.cast(x, D.int64)
        t = x.value.type
        return self._wrap(self.b.value("scan", [x.value], TensorType(
            D.reduction_dtype(kind, t.dtype), t.shape), kind=kind, axis=a,
            reverse=bool(reverse)))

    def mean(self, x: TensorArg, axis, keepdims: bool) -> TensorVal:
        if not x.dtype.is_float:
            raise self.error(f"mean needs a float tensor, got {x.dtype}; cast it with .to()")
        narrow = x.dtype if _is_16_bit(x) else None    # the sum and the division in float32
        total = self.reduce("sum", self.cast(x, D.float32) if narrow else x, axis, False)
        count = sympy.Integer(1)
        for a in self.axes(x, axis):
            count *= x.value.type.shape[a]
        n = int(count) if count.is_Integer else SymSize(count)
        divisor = self.sem.cast(self.sem.to_tile(n), total.dtype)
        mean = self.binary("div", total.dtype, total, divisor)
        mean = self.cast(mean, narrow) if narrow else mean
        if keepdims:          # last: a squeeze of the result drops them again, no copy
            for a in self.axes(x, axis):
                mean = self.expand_dims(mean, a)
        return mean

    # -- matmul ----------------------------------------------------------------------------
    def dot(self, a, b, out_dtype: DType) -> TensorVal:
        """[..., M, K] @ [..., K, N] -> [..., M, N] (numpy's matmul: the batch dims before
        the last two broadcast), accumulated in out_dtype (operands cast to it)."""
        if not (is_tensor(a) and is_tensor(b)) or a.ndim < 2 or b.ndim < 2:
            raise self.error("dot/@ of whole tensors needs two tensors of 2 or more dims, got "
                             f"{_describe(a)} and {_describe(b)}")
        sa, sb = tuple(a.value.type.shape), tuple(b.value.type.shape)
        (m, k), (k2, n) = sa[-2:], sb[-2:]
        if self._same_dim(k, k2) is None:
            raise self.error(f"dot: inner dimensions differ: {shape_text(sa)} @ "
                             f"{shape_text(sb)}")
        batch = self.broadcast_shape(sa[:-2], sb[:-2])
        va, vb = self.cast(a, out_dtype).value, self.cast(b, out_dtype).value
        # operands typed with the result's batch sizes and one K where sympy sees two names
        # for one size (the call checks that they are equal, equal_sizes)
        va = self._sized_like(va, batch, (m, k))
        vb = self._sized_like(vb, batch, (k, n))
        return self._wrap(self.b.value("dot", [va, vb], TensorType(out_dtype, (*batch, m, n))))

    def _sized_like(self, v: Value, batch: tuple, last: tuple) -> Value:
        shape = tuple(v.type.shape)
        lead = batch[len(batch) - (len(shape) - 2):] if len(shape) > 2 else ()
        want = tuple(1 if d == 1 else w for d, w in zip(shape[:-2], lead)) + last
        return v if want == shape else self.b.value("broadcast", [v], v.type.with_shape(want))

    # -- memory ----------------------------------------------------------------------------
    def write(self, dst: TensorArg, value) -> None:
        """dst[:] = value: the whole of dst gets value (broadcast, cast to dst's dtype)."""
        if isinstance(dst, TensorVal):
            raise self.error("cannot write into a computed whole-tensor value; write into a "
                             "kernel argument or an output made with fusec.empty & co")
        shape = tuple(dst.value.type.shape)
        if is_tensor(value):
            got = tuple(value.value.type.shape)
            self._check_broadcastable(got, shape, f"write a tensor of shape {shape_text(got)} "
                                                  f"into {dst.name!r} of shape "
                                                  f"{shape_text(shape)}")
        v = self.to_tensor(value, dst.dtype, shape)
        self.b.create("write", [dst.value, v])

    def materialize(self, x: TensorVal, name: str) -> TensorArg:
        """A returned whole-tensor value: an output allocated for it, written."""
        t = x.value.type
        out = self.b.value("alloc", [], TensorType(t.dtype, t.shape), zero=False)
        out.name = name
        self.b.create("write", [out, x.value])
        return TensorArg(out, name)


def _is_16_bit(x) -> bool:
    return x.dtype.is_float and x.dtype.bits == 16
