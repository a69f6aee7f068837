"""Views of whole tensors (statements outside tile loops): reshape and its forms (view,
squeeze, unsqueeze, flatten), basic slicing (`x[a:b]`, `x[:, ::2]`, `x[:, 3]`) and
concatenation (`fl.cat`).

They become the tensor-level ops `reshape`, `slice` and `concat` (ir/ops.py), except where a cheaper
form exists: a reshape that only inserts size-1 dims is a chain of expand_dims, and one that
removes size-1 dims made by expand_dims (keepdims) drops those ops; both map dims onto the
same axes and fuse like elementwise ops. Every other reshape and every slice is an indexed
view: the group using it reads its operand from memory at computed indices
(passes/tile_views.py).

Element counts of a reshape: equal as sympy sees them, or assumed equal and recorded in
`equal_sizes` (every call checks them), unless the call being specialized contradicts them.
Slice bounds clamp like Python's and torch's. A symbolic bound whose sign sympy does not
know (`x.shape[1] - 1`) is taken as counted from the start; every call checks that it is
not one Python would count from the end.
"""
from __future__ import annotations

import sympy

from .errors import shape_text
from .ir.symbolic import hinted_value
from .values import SymSize, size_expr



def _is_size(x) -> bool:
    return isinstance(x, SymSize) or isinstance(x, int) and not isinstance(x, bool)


def _insertions(src: tuple, dims: tuple) -> list[int] | None:
    """The positions of size-1 dims that, inserted into src, give dims (None: no such)."""
    j, inserted = 0, []
    for i, d in enumerate(dims):
        if j < len(src) and d == src[j]:
            j += 1
        elif d == 1:
            inserted.append(i)
        else:
            return None
    return inserted if j == len(src) else None


class ViewSemantic:
    def __init__(self, tensors):
        self.t = tensors              # the TensorSemantic: builder, errors, sizes, wrapping
        self.b = tensors.b
        self.error = tensors.error

    # -- concatenation ---------------------------------------------------------------------
    def concat(self, xs, axis: int):
        """fl.cat: whole tensors of one dtype and rank joined along `axis` (the others'
        sizes equal): an indexed view reading each operand where its part lies."""
        if not isinstance(xs, (list, tuple)) or not xs:
            raise self.error(f"fl.cat takes a non-empty list or tuple of tensors, got {xs!r}")
        first = xs[0]
        rank = first.value.type.rank
        axis = self._axis("fl.cat", axis, rank)
        dims = list(first.value.type.shape)
        total = dims[axis]
        for k, x in enumerate(xs[1:], 1):
            t = x.value.type
            if t.dtype != first.value.type.dtype or t.rank != rank:
                raise self.error(f"fl.cat: tensor {k} is {t}, tensor 0 is {first.value.type}: "
                                 "one dtype and rank (cast with .to())")
            for d in range(rank):
                if d == axis:
                    continue
                size = self.t._same_dim(dims[d], t.shape[d])
                if size is None:
                    raise self.error(f"fl.cat: tensor {k} has size {t.shape[d]} on dim {d}, "
                                     f"tensor 0 has {dims[d]}")
                dims[d] = size
            total = total + t.shape[axis]
        if len(xs) == 1:
            return first
        dims[axis] = total
        return self.t._wrap(self.b.value("concat", [x.value for x in xs],
                                         first.value.type.with_shape(dims), axis=axis))

    # -- reshape ---------------------------------------------------------------------------
    def reshape(self, x, shape, what: str = "reshape"):
        if _is_size(shape):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or not all(_is_size(s) for s in shape):
            raise self.error(f"{what}: sizes must be ints or tensor sizes, got {shape!r}")
        return self._reshaped(x, self._target_shape(x, list(shape), what))

    def _target_shape(self, x, sizes: list, what: str) -> tuple:
        source = tuple(x.value.type.shape)
        total = sympy.Mul(*source)
        free = [i for i, s in enumerate(sizes) if isinstance(s, int) and s == -1]
        wanted = shape_text(["-1" if i in free else size_expr(s) for i, s in enumerate(sizes)])
        if len(free) > 1:
            raise self.error(f"{what}: only one size can be -1, got {wanted}")
        dims = [None if i in free else size_expr(s) for i, s in enumerate(sizes)]
        if any(d is not None and d.is_Integer and d < 0 for d in dims):
            raise self.error(f"{what}: negative size in {wanted}")
        known = sympy.Mul(*[d for d in dims if d is not None])
        mismatch = self.error(f"{what}: cannot view a tensor of shape {shape_text(source)} "
                              f"({total} elements) as {wanted}")
        if free:
            if known == 0:
                raise mismatch
            inferred = sympy.simplify(total / known)
            if not inferred.is_integer:
                inferred = sympy.floor(total / known)
            dims[free[0]] = inferred
        count = sympy.Mul(*dims)
        if self.t._same_dim(total, count) is None:     # records an assumed equality
            raise mismatch
        return tuple(dims)

    def _reshaped(self, x, dims: tuple):
        if x.value.op is not None and x.value.op.name == "reshape":   # a reshape of a reshape
            x = self.t._wrap(x.value.op.operands[0])
        if tuple(x.value.type.shape) == dims:
            return x
        unit = self._unit_reshape(x, dims)
        if unit is not None:
            return unit
        return self.t._wrap(self.b.value("reshape", [x.value], x.value.type.with_shape(dims)))

    def _unit_reshape(self, x, dims: tuple):
        """x with size-1 dims inserted, after dropping expand_dims of it (None: not such a
        reshape): the same axes, fused like elementwise ops."""
        v = x
        while True:
            inserted = _insertions(tuple(v.value.type.shape), dims)
            if inserted is not None:
                for axis in inserted:
                    v = self.t.expand_dims(v, axis)
                return v
            op = v.value.op
            if op is None or op.name != "expand_dims":
                return None
            v = self.t._wrap(op.operands[0])

    def squeeze(self, x, axis=None):
        shape = tuple(x.value.type.shape)
        if axis is None:
            return self._reshaped(x, tuple(d for d in shape if d != 1))
        axes = [axis] if isinstance(axis, int) else list(axis)
        drop = set()
        for a in axes:
            if not isinstance(a, int) or isinstance(a, bool) or not -x.ndim <= a < x.ndim:
                raise self.error(f"squeeze: axis {a!r} out of range for a tensor of shape "
                                 f"{shape_text(shape)}")
            if shape[a] != 1:
                raise self.error(f"squeeze: dim {a % x.ndim} of a tensor of shape "
                                 f"{shape_text(shape)} has size {shape[a]}, not 1")
            drop.add(a % x.ndim)
        return self._reshaped(x, tuple(d for i, d in enumerate(shape) if i not in drop))

    def flatten(self, x, start: int = 0, end: int = -1):
        shape = tuple(x.value.type.shape)
        if not shape:
            return self._reshaped(x, (sympy.Integer(1),))
        lo, hi = (a % x.ndim if isinstance(a, int) and -x.ndim <= a < x.ndim else None
                  for a in (start, end))
        if lo is None or hi is None or lo > hi:
            raise self.error(f"flatten: bad dims ({start}, {end}) for a tensor of shape "
                             f"{shape_text(shape)}")
        return self._reshaped(x, shape[:lo] + (sympy.Mul(*shape[lo:hi + 1]),) + shape[hi + 1:])

    # -- slicing ---------------------------------------------------------------------------
    def index(self, x, items):
        """x[...] of a whole tensor: ':' and slices, int indices (dropping their dim), None
        (a new dim of size 1), one Ellipsis."""
        items = self._without_ellipsis(x, list(items))
        consumed = [i for i in items if i is not None]
        if len(consumed) > x.ndim:
            raise self.error(f"too many indices for a tensor of shape "
                             f"{shape_text(x.value.type.shape)}")
        consumed += [slice(None)] * (x.ndim - len(consumed))
        starts, steps, sizes, dropped = [], [], [], set()
        for d, (item, n) in enumerate(zip(consumed, x.value.type.shape)):
            if isinstance(item, slice):
                start, step, size = self._slice_dim(item, n, d)
            elif _is_size(item):
                start, step, size = self._index_dim(item, n, d), 1, sympy.Integer(1)
                dropped.add(d)
            else:
                raise self.error(f"a whole tensor outside tile loops is indexed with ints, "
                                 f"sizes, slices and None (got {type(item).__name__}); index "
                                 "it inside a tile loop to gather elements")
            starts.append(int(start) if start.is_Integer else start)
            steps.append(step)
            sizes.append(size)
        v = x
        if tuple(sizes) != tuple(x.value.type.shape) or any(s != 0 for s in starts):
            v = self.t._wrap(self.b.value("slice", [x.value], x.value.type.with_shape(sizes),
                                          starts=starts, steps=steps))
        if dropped:
            v = self._reshaped(v, tuple(s for d, s in enumerate(sizes) if d not in dropped))
        position = 0                  # None: a new dim where it stands among the kept ones
        for item in items:
            if item is None:
                v = self.t.expand_dims(v, position)
            if item is None or isinstance(item, slice):
                position += 1
        return v

    def take(self, x, index, axis: int):
        """fl.take: numpy's take -- x at the positions in the integer tensor `index` along
        `axis` (embedding rows, index_select); an indexed view. A position outside
        [0, x.shape[axis]) reads 0."""
        axis = self._axis("fl.take", axis, x.ndim)
        if not index.dtype.is_int:
            raise self.error(f"fl.take: the index must be an integer tensor, got "
                             f"{index.value.type}")
        shape = x.value.type.shape
        result = x.value.type.with_shape(shape[:axis] + index.value.type.shape
                                         + shape[axis + 1:])
        return self.t._wrap(self.b.value("take", [x.value, index.value], result, axis=axis))

    def take_along(self, x, index, axis: int):
        """fl.take_along: torch.gather -- the result has the index's shape, element
        [p, j, q] being x[p, index[p, j, q], q]; an indexed view. What falls outside x reads
        0."""
        rank = x.ndim
        axis = self._axis("fl.take_along", axis, rank)
        if not index.dtype.is_int or index.ndim != rank:
            raise self.error(f"fl.take_along: the index must be an integer tensor of x's rank "
                             f"({rank}), got {index.value.type}")
        result = x.value.type.with_shape(index.value.type.shape)
        return self.t._wrap(self.b.value("take_along", [x.value, index.value], result,
                                         axis=axis))

    def flip(self, x, dims):
        """fl.flip: x with the order of the elements along `dims` reversed (torch.flip):
        an indexed view reading element n - 1 - i for i."""
        rank, given = x.ndim, dims
        dims = [dims] if isinstance(dims, int) and not isinstance(dims, bool) else dims
        if not isinstance(dims, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and -rank <= d < rank
                for d in dims):
            raise self.error(f"fl.flip: dims must be ints in [-{rank}, {rank}), got {given!r}")
        flipped = {d % rank for d in dims}
        if len(flipped) != len(dims):
            raise self.error(f"fl.flip: dim listed twice in {given!r}")
        if not flipped:
            return x
        shape = x.value.type.shape
        starts = [sympy.sympify(n - 1 if d in flipped else 0) for d, n in enumerate(shape)]
        starts = [int(s) if s.is_Integer else s for s in starts]
        steps = [-1 if d in flipped else 1 for d in range(rank)]
        return self.t._wrap(self.b.value("slice", [x.value], x.value.type, starts=starts,
                                         steps=steps))

    def _axis(self, what: str, axis, rank: int) -> int:
        """`axis` of a tensor of `rank` counted from 0, or the error naming `what`."""
        if not isinstance(axis, int) or isinstance(axis, bool) or not -rank <= axis < rank:
            raise self.error(f"{what}: axis must be an int in [-{rank}, {rank}), got {axis!r}")
        return axis % rank

    def _without_ellipsis(self, x, items: list) -> list:
        n = sum(i is Ellipsis for i in items)
        if n > 1:
            raise self.error("an index can only have a single ellipsis ('...')")
        if n == 0:
            return items
        k = items.index(Ellipsis)
        fill = x.ndim - sum(i is not None and i is not Ellipsis for i in items)
        return items[:k] + [slice(None)] * max(fill, 0) + items[k + 1:]

    def _slice_dim(self, item: slice, n: sympy.Expr, d: int):
        """(start, step, size) of a slice of a dim of size n, clamped like Python's."""
        step = 1 if item.step is None else item.step
        if not isinstance(step, int) or isinstance(step, bool):
            raise self.error(f"slice steps of whole tensors must be Python ints, got {step!r}")
        if step <= 0:
            raise self.error(f"slice step must be positive, got {step} (as in torch)")
        bounds = (item.start, item.stop)
        if n.is_Integer and all(b is None or isinstance(b, int) for b in bounds):
            r = range(*slice(item.start, item.stop, step).indices(int(n)))
            return sympy.Integer(r.start), step, sympy.Integer(len(r))
        start = sympy.Integer(0) if item.start is None else self._bound(item.start, n, d)
        stop = n if item.stop is None else self._bound(item.stop, n, d)
        span = stop - start
        size = sympy.ceiling(span / step) if step != 1 else span
        return start, step, size if span.is_nonnegative else sympy.Max(size, 0)

    def _bound(self, bound, n: sympy.Expr, d: int) -> sympy.Expr:
        if not _is_size(bound):
            raise self.error(f"slice bounds of whole tensors must be ints or sizes, got "
                             f"{type(bound).__name__}")
        e = size_expr(bound)
        if e.is_negative:
            return sympy.Max(n + e, 0)
        if not e.is_nonnegative:
            # counted from the start (clamped to [0, n]) is Python's meaning unless
            # -n < e < 0: assumed so, and checked by every call (equal_sizes)
            counts_from_end = sympy.Min(sympy.Max(-e, 0), sympy.Max(e + n, 0))
            if self.t._same_dim(counts_from_end, sympy.Integer(0)) is None:
                raise self.error(f"slice bound {e} of dim {d} (size {n}) is negative, and "
                                 "whether it counts from the end would only be known at run "
                                 "time; compute the bound from the size instead")
            return sympy.Max(sympy.Min(e, n), 0)
        return sympy.Min(e, n)

    def _index_dim(self, index, n: sympy.Expr, d: int) -> sympy.Expr:
        e = size_expr(index)
        if e.is_negative:
            e = n + e
        elif not e.is_nonnegative:
            raise self.error(f"index {e} of dim {d} may be negative: whether it counts from "
                             "the end is only known at run time")
        ve, vn = (hinted_value(v, self.t.hints) for v in (e, n))
        if ve is not None and vn is not None and not 0 <= ve < vn:
            raise self.error(f"index {size_expr(index)} is out of bounds for dim {d} of size "
                             f"{n}")
        return e
