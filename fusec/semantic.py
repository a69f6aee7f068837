"""The meaning of DSL operations on traced values: type promotion, broadcasting, masks, and
the IR ops they become. The AST visitor (codegen.py) and the `fl` builtins call into this.

Masked lanes: every TileVal carries per-dim lane masks (values.TileVal). Elementwise ops
combine them, reductions replace masked lanes with their identity first, stores are masked
at the tensor's bounds and the tile loop's extent.
"""
from __future__ import annotations

import functools

import sympy

from .errors import shape_text
from .ir import Builder, TensorType, TileType, Value, scalar
from .ir import dtypes as D
from .ir.dtypes import DType
from .ir.ops import FLOAT_RESULT_BINARY
from .ir.symbolic import is_zero
from .tensors import TensorSemantic, is_tensor
from .values import SymSize, TensorArg, TileHandle, TileVal, size_expr


@functools.lru_cache(maxsize=4096)
def _same_size(a, b) -> bool:
    """Whether two size expressions are provably equal (memoized, as every trace of a
    kernel asks the same questions)."""
    return is_zero(a - b)


class SemanticError(Exception):
    """A user error found while tracing; codegen adds the source location."""



def broadcast_shapes(*shapes) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for d in range(rank):
        sizes = {s[d - rank + len(s)] for s in shapes if d - rank + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise SemanticError("shapes cannot be broadcast together: "
                                + " and ".join(shape_text(s) for s in shapes))
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


# torch's meaning of arithmetic on bools
_BOOL_ARITH = {"add": "or", "mul": "and", "maximum": "or", "minimum": "and"}


def _weak_kind(value) -> str:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, (int, SymSize)):
        return "i"
    if isinstance(value, float):
        return "f"
    raise SemanticError(f"expected a tile or a number, got {type(value).__name__}")


class Semantic:
    def __init__(self, builder: Builder):
        self.b = builder
        self.tensors = TensorSemantic(self, SemanticError)   # whole-tensor operands

    # -- constants and conversions ---------------------------------------------------------
    def const(self, value, dtype: DType, shape=()) -> TileVal:
        if dtype.is_bool:
            value = bool(value)
        elif dtype.is_int:
            value = int(value)
        else:
            value = float(value)
        return TileVal(self.b.value("const", [], TileType(dtype, tuple(shape)), value=value))

    wide_symbols: set = frozenset()     # int params whose values need int64

    def symval(self, expr: sympy.Expr) -> TileVal:
        wide = any(s.name in self.wide_symbols for s in expr.free_symbols)
        dtype = D.int64 if wide else D.int32
        return TileVal(self.b.value("symval", [], scalar(dtype), expr=expr), weak=True)

    def to_tile(self, x, dtype: DType | None = None) -> TileVal:
        """A Python number or runtime size as a tile (of `dtype` when given)."""
        if isinstance(x, TileVal):
            return x if dtype is None else self.cast(x, dtype)
        if is_tensor(x):
            raise SemanticError(f"{x.name!r} is a whole tensor and cannot be used as a tile; "
                                "index it inside a tile loop (x[tm, :]) to load a tile")
        if isinstance(x, SymSize):
            v = self.symval(x.expr)
            return v if dtype is None else self.cast(v, dtype)
        kind = _weak_kind(x)
        if dtype is None:
            dtype = {"b": D.bool_, "i": D.int32, "f": D.float32}[kind]
        t = self.const(x, dtype)
        t.weak = True
        return t

    def cast(self, x: TileVal, dtype: DType) -> TileVal:
        if not isinstance(dtype, DType):
            raise SemanticError(f"expected a dtype such as fl.float32, got {dtype!r}")
        if is_tensor(x):
            return self.tensors.cast(x, dtype)
        if x.dtype == dtype:
            return x
        return TileVal(self.b.value("cast", [x.value], x.type.with_dtype(dtype)), x.masks, x.weak)

    # -- shapes and masks ------------------------------------------------------------------
    def and_masks(self, m1: Value | None, m2: Value | None) -> Value | None:
        if m1 is None or m1 is m2:
            return m2
        if m2 is None:
            return m1
        return self.b.value("and", [m1, m2], m1.type)

    def broadcast_to(self, x: TileVal, shape: tuple[int, ...]) -> TileVal:
        shape = tuple(shape)
        if x.shape == shape:
            return x
        if broadcast_shapes(x.shape, shape) != shape:
            raise SemanticError(f"cannot broadcast {shape_text(x.shape)} to {shape_text(shape)}")
        v, masks = x.value, list(x.masks)
        while len(v.type.shape) < len(shape):
            v = self.b.value("expand_dims", [v], v.type.with_shape((1,) + v.type.shape), axis=0)
            masks.insert(0, None)
        masks = [m if s == n else None for m, s, n in zip(masks, v.type.shape, shape)]
        v = self.b.value("broadcast", [v], v.type.with_shape(shape))
        return TileVal(v, tuple(masks), x.weak)

    def full_mask(self, masks, shape) -> Value | None:
        """The AND of per-dim lane masks broadcast to `shape` (None when all lanes count)."""
        out = None
        for d, m in enumerate(masks):
            if m is None:
                continue
            v = m
            for axis in range(len(shape)):
                if axis != d:
                    v = self.b.value("expand_dims", [v], v.type.with_shape(
                        v.type.shape[:axis] + (1,) + v.type.shape[axis:]), axis=axis)
            v = self.b.value("broadcast", [v], v.type.with_shape(shape))
            out = self.and_masks(out, v)
        return out

    def expand_dims(self, x: TileVal, axis: int) -> TileVal:
        if is_tensor(x):
            return self.tensors.expand_dims(x, axis)
        if axis < 0:
            axis += x.rank + 1
        if not 0 <= axis <= x.rank:
            raise SemanticError(f"axis {axis} out of range for a rank-{x.rank} tile")
        shape = x.shape[:axis] + (1,) + x.shape[axis:]
        v = self.b.value("expand_dims", [x.value], x.type.with_shape(shape), axis=axis)
        return TileVal(v, x.masks[:axis] + (None,) + x.masks[axis:], x.weak)

    def permute(self, x: TileVal, perm) -> TileVal:
        if is_tensor(x):
            return self.tensors.permute(x, perm)
        perm = [int(p) for p in perm]
        if sorted(perm) != list(range(x.rank)):
            raise SemanticError(f"bad permutation {perm} for a rank-{x.rank} tile")
        v = self.b.value("permute", [x.value], x.type.with_shape([x.shape[p] for p in perm]),
                         perm=perm)
        return TileVal(v, tuple(x.masks[p] for p in perm), x.weak)

    # -- promotion -------------------------------------------------------------------------
    def result_dtype(self, operands) -> DType:
        """torch's rule: dimensioned tiles > rank-0 tiles > Python scalars; a lower group
        only matters when its category (bool < int < float) is higher."""
        groups: dict[int, list[DType]] = {2: [], 1: [], 0: []}
        weak_kinds = []
        for x in operands:
            if is_tensor(x):
                groups[2 if x.ndim else 1].append(x.dtype)
            elif isinstance(x, TileVal) and not x.weak:
                groups[2 if x.rank else 1].append(x.dtype)
            elif isinstance(x, TileVal):
                weak_kinds.append(x.dtype.kind if x.dtype.kind != "u" else "i")
            else:
                weak_kinds.append(_weak_kind(x))
        result = None
        for g in (2, 1):
            if not groups[g]:
                continue
            dt = groups[g][0]
            for other in groups[g][1:]:
                dt = D.promote(dt, other)
            if result is None or D.category(dt) > D.category(result):
                result = dt
        for kind in sorted(set(weak_kinds), key=lambda k: "bif".index(k)):
            if result is None:
                # only weak operands: int tiles among them (sizes, int params) keep their width
                widest_int = max((x.dtype for x in operands
                                  if isinstance(x, TileVal) and x.dtype.is_int),
                                 key=lambda d: d.bits, default=D.DEFAULT_INT)
                result = {"b": D.bool_, "i": widest_int, "f": D.DEFAULT_FLOAT}[kind]
            else:
                result = D.promote_with_weak(result, kind)
        return result

    def _operands(self, xs, dtype: DType | None = None):
        """Cast to the common dtype and broadcast to the common shape."""
        dtype = dtype or self.result_dtype(xs)
        tiles = [self.to_tile(x, dtype) for x in xs]
        shape = broadcast_shapes(*(t.shape for t in tiles))
        tiles = [self.broadcast_to(t, shape) for t in tiles]
        masks = tuple(self._merge_dim(tiles, d) for d in range(len(shape)))
        weak = all(t.weak for t in tiles)
        return tiles, masks, weak

    def _merge_dim(self, tiles, d):
        out = None
        for t in tiles:
            out = self.and_masks(out, t.masks[d])
        return out

    # -- elementwise -----------------------------------------------------------------------
    def binary(self, name: str, a, b) -> TileVal:
        dtype = self.result_dtype([a, b])
        if name in FLOAT_RESULT_BINARY and not dtype.is_float:
            dtype = D.DEFAULT_FLOAT
        if name in ("and", "or", "xor") and dtype.is_float:
            raise SemanticError(f"bitwise {name} needs bool or int operands, got {dtype}")
        if dtype.is_bool and name in _BOOL_ARITH:
            name = _BOOL_ARITH[name]
        if dtype.is_bool and name not in ("and", "or", "xor"):
            raise SemanticError(f"{name} of bools is not supported; cast them with .to() first")
        if is_tensor(a) or is_tensor(b):
            return self.tensors.binary(name, dtype, a, b)
        (ta, tb), masks, weak = self._operands([a, b], dtype)
        v = self.b.value(name, [ta.value, tb.value], ta.type)
        return TileVal(v, masks, weak)

    def compare(self, name: str, a, b) -> TileVal:
        if is_tensor(a) or is_tensor(b):
            return self.tensors.compare(name, a, b)
        (ta, tb), masks, weak = self._operands([a, b])
        v = self.b.value(name, [ta.value, tb.value], ta.type.with_dtype(D.bool_))
        return TileVal(v, masks, weak)

    def unary(self, name: str, x) -> TileVal:
        from .ir.ops import FLOAT_UNARY
        x = x if is_tensor(x) else self.to_tile(x)
        if name in FLOAT_UNARY and not x.dtype.is_float:
            x = self.cast(x, D.DEFAULT_FLOAT)
        if name == "not" and x.dtype.is_float:
            raise SemanticError(f"~ needs a bool or int operand, got {x.dtype}")
        if name in ("neg", "abs", "relu") and x.dtype.is_bool:
            raise SemanticError(f"{name} of a bool tile is not supported")
        if is_tensor(x):
            return self.tensors.unary(name, x, x.dtype)
        return TileVal(self.b.value(name, [x.value], x.type), x.masks, x.weak)

    def where(self, cond, a, b) -> TileVal:
        if any(is_tensor(v) for v in (cond, a, b)):
            return self.tensors.where(cond, a, b, self.result_dtype([a, b]))
        c = self.to_tile(cond)
        if not c.dtype.is_bool:
            c = self.compare("ne", c, 0)
        (tc, ta, tb), masks, weak = self._where_operands(c, a, b, self.result_dtype([a, b]))
        v = self.b.value("where", [tc.value, ta.value, tb.value], ta.type)
        return TileVal(v, masks, weak)

    def _where_operands(self, c, a, b, dtype):
        ta, tb = self.to_tile(a, dtype), self.to_tile(b, dtype)
        shape = broadcast_shapes(c.shape, ta.shape, tb.shape)
        tiles = [self.broadcast_to(t, shape) for t in (c, ta, tb)]
        masks = tuple(self._merge_dim(tiles, d) for d in range(len(shape)))
        return tiles, masks, ta.weak and tb.weak

    # -- reductions ------------------------------------------------------------------------
    def _masked_for_reduce(self, x: TileVal, axes, identity) -> TileVal:
        masks = [m if d in axes else None for d, m in enumerate(x.masks)]
        mask = self.full_mask(masks, x.shape)
        if mask is None:
            return x
        fill = self.const(identity, x.dtype, x.shape)
        return TileVal(self.b.value("where", [mask, x.value, fill.value], x.type), x.masks)

    def _axes(self, x: TileVal, axis):
        if axis is None:
            return list(range(x.rank))
        axes = [axis] if isinstance(axis, int) else list(axis)
        out = []
        for a in axes:
            if not isinstance(a, int) or not -x.rank <= a < x.rank:
                raise SemanticError(f"axis {a} out of range for a tile of shape "
                                    f"{shape_text(x.shape)}")
            out.append(a % x.rank)
        return sorted(set(out))

    def reduce(self, kind: str, x, axis=None, keepdims: bool = False) -> TileVal:
        if is_tensor(x):
            return self.tensors.reduce(kind, x, axis, keepdims)
        x = self.to_tile(x)
        if x.rank == 0:
            raise SemanticError(f"{kind} of a scalar: reductions need a tile")
        axes = self._axes(x, axis)
        if kind in ("argmax", "argmin") and len(axes) != 1:
            raise SemanticError(f"{kind} needs a single axis (the tile has rank {x.rank})")
        if kind in ("sum", "prod") and x.dtype.is_bool:
            x = self.cast(x, D.int64)
        v = self._masked_for_reduce(x, axes, D.reduction_identity(kind, x.dtype))
        value, masks = v.value, list(x.masks)
        for a in reversed(axes):
            t = value.type
            value = self.b.value("reduce", [value], TileType(
                D.reduction_dtype(kind, t.dtype), t.shape[:a] + t.shape[a + 1:]),
                kind=kind, axis=a)
            del masks[a]
        out = TileVal(value, tuple(masks))
        if keepdims:
            for a in axes:
                out = self.expand_dims(out, a)
        return out

    def scan(self, kind: str, x, axis: int, reverse: bool) -> TileVal:
        """fl.cumsum & co: the running reduction along one axis (masked lanes count as the
        identity, as in reductions)."""
        if is_tensor(x):
            return self.tensors.scan(kind, x, axis, reverse)
        x = self.to_tile(x)
        if x.rank == 0:
            raise SemanticError(f"cum{kind} of a scalar: scans need a tile")
        if not isinstance(axis, int):
            raise SemanticError(f"cum{kind}: axis must be one int, got {axis!r}")
        a = self._axes(x, axis)[0]
        if kind in ("sum", "prod") and x.dtype.is_bool:
            x = self.cast(x, D.int64)
        v = self._masked_for_reduce(x, [a], D.reduction_identity(kind, x.dtype))
        value = self.b.value("scan", [v.value], TileType(D.reduction_dtype(kind, x.dtype),
                                                          x.shape), kind=kind, axis=a,
                             reverse=bool(reverse))
        return TileVal(value, x.masks)

    def mean(self, x, axis=None, keepdims: bool = False) -> TileVal:
        if is_tensor(x):
            return self.tensors.mean(x, axis, keepdims)
        x = self.to_tile(x)
        if not x.dtype.is_float:
            raise SemanticError(f"mean needs a float tile, got {x.dtype}; cast it with .to()")
        total = self.reduce("sum", x, axis, keepdims)
        axes = self._axes(x, axis)
        masks = [x.masks[a] for a in axes]
        if all(m is None for m in masks):
            count = 1
            for a in axes:
                count *= x.shape[a]
            return self.binary("div", total, float(count))
        ones = TileVal(self.const(1, D.int32, x.shape).value, x.masks)
        count = self.reduce("sum", ones, axis, keepdims)
        count = self.cast(count, total.dtype if total.dtype != D.float64 else D.float64)
        return self.binary("div", total, count)

    def dot(self, a, b, out_dtype: DType = D.float32) -> TileVal:
        if is_tensor(a) or is_tensor(b):
            return self.tensors.dot(a, b, out_dtype)
        a, b = self.to_tile(a), self.to_tile(b)
        if a.rank != 2 or b.rank != 2:
            raise SemanticError(f"dot needs two 2-D tiles, got {shape_text(a.shape)} and "
                                f"{shape_text(b.shape)}")
        if a.shape[1] != b.shape[0]:
            raise SemanticError(f"dot: inner dimensions differ: {shape_text(a.shape)} x "
                                f"{shape_text(b.shape)}")
        k_mask = self.and_masks(a.masks[1], b.masks[0])
        a = self.cast(a, out_dtype)
        b = self.cast(b, out_dtype)
        if k_mask is not None:
            a = self._masked_for_reduce(TileVal(a.value, (None, k_mask)), [1], 0)
            b = self._masked_for_reduce(TileVal(b.value, (k_mask, None)), [0], 0)
        v = self.b.value("dot", [a.value, b.value], TileType(out_dtype, (a.shape[0], b.shape[1])))
        return TileVal(v, (a.masks[0], b.masks[1]))

    # -- tile loop handles -----------------------------------------------------------------
    def handle_index(self, h: TileHandle) -> TileVal:
        if "index" not in h.cache:
            h.cache["index"] = self.b.value("tile_index", [h.value], TileType(D.INDEX, (h.block,)))
        index = h.cache["index"]
        return TileVal(index, (self.handle_mask(h),))

    def handle_begin(self, h: TileHandle) -> TileVal:
        if "begin" not in h.cache:
            h.cache["begin"] = self.b.value("tile_begin", [h.value], scalar(D.INDEX))
        return TileVal(h.cache["begin"])

    def handle_mask(self, h: TileHandle) -> Value:
        if "mask" not in h.cache:
            index = h.cache.get("index") or self.handle_index(h).value
            h.cache["mask"] = self.lt_size(index, h.extent)
        return h.cache["mask"]

    def lt_size(self, index: Value, size: sympy.Expr) -> Value:
        """index < size, lane by lane (size a symbolic expression)."""
        bound = self.symval(size).value
        bound = self.b.value("broadcast", [self.b.value(
            "expand_dims", [bound], TileType(D.INDEX, (1,)), axis=0)], index.type)
        return self.b.value("lt", [index, bound], index.type.with_dtype(D.bool_))

    # -- memory ----------------------------------------------------------------------------
    def _block_indices(self, tensor: TensorArg, items, full_blocks):
        """Indices of a block access (tile handles, slices, scalars): one result dim per
        handle or slice. Returns (index tiles of the result shape, result per-dim masks,
        extent masks for stores)."""
        dims, per_item = [], []
        for d, (item, size) in enumerate(zip(items, tensor.value.type.shape)):
            if isinstance(item, TileHandle):
                idx = self.handle_index(item).value
                bound = self.lt_size(idx, size)
                extent_mask = None if _same_size(item.extent, size) \
                    else self.handle_mask(item)
                per_item.append((idx, len(dims), self.and_masks(extent_mask, bound), extent_mask))
                dims.append(item.block)
            elif isinstance(item, slice):
                start, stop = item.start, item.stop
                if item.step not in (None, 1):
                    raise SemanticError(f"index {d}: slice steps are not supported "
                                        f"(got step {item.step})")
                if any(isinstance(v, int) and v < 0 for v in (start, stop)):
                    raise SemanticError(f"index {d}: negative slice bounds are not supported "
                                        "(they do not count from the end here)")
                if start is None and stop is None:
                    length = full_blocks(size)
                    idx = self.b.value("arange", [], TileType(D.INDEX, (length,)), start=0,
                                       end=length)
                else:
                    start, stop = start or 0, stop
                    if not isinstance(start, int) or not isinstance(stop, int) or stop <= start:
                        raise SemanticError("slices other than ':' need constant int bounds "
                                            "start < stop")
                    length = stop - start
                    idx = self.b.value("arange", [], TileType(D.INDEX, (length,)), start=start,
                                       end=stop)
                per_item.append((idx, len(dims), self.lt_size(idx, size), None))
                dims.append(length)
            else:
                if isinstance(item, int) and not isinstance(item, bool) and item < 0:
                    raise SemanticError(f"index {d}: negative indices are not supported (they "
                                        "do not count from the end here)")
                s = self.to_tile(item)
                if s.rank != 0 or not (s.dtype.is_int):
                    raise SemanticError(f"index {d} must be a tile handle, a slice, an int or an "
                                        f"int tile, got {s.type}")
                per_item.append((s.value, None, None, None))
        shape = tuple(dims)
        indices, masks, store_masks = [], [None] * len(shape), [None] * len(shape)
        for idx, axis, mask, extent_mask in per_item:
            v = idx
            if axis is not None:
                masks[axis] = mask
                store_masks[axis] = extent_mask
                v = self._place(idx, axis, len(shape))
            indices.append(self.broadcast_to(TileVal(v), shape).value)
        return indices, shape, tuple(masks), store_masks

    def _place(self, v: Value, axis: int, rank: int) -> Value:
        for a in range(rank):
            if a != axis:
                v = self.b.value("expand_dims", [v], v.type.with_shape(
                    v.type.shape[:a] + (1,) + v.type.shape[a:]), axis=a)
        return v

    def _gather_indices(self, tensor: TensorArg, items):
        tiles = [self.to_tile(i) for i in items]
        for d, t in enumerate(tiles):
            if not t.dtype.is_int:
                raise SemanticError(f"index {d} must be an int tile, got {t.type}")
        shape = broadcast_shapes(*(t.shape for t in tiles))
        store_masks = [self._merge_dim([self.broadcast_to(t, shape) for t in tiles], d)
                       for d in range(len(shape))]
        masks = list(store_masks)
        for t, size in zip(tiles, tensor.value.type.shape):
            bound = self._in_bounds_along_one_dim(t, size, len(shape))
            if bound is not None:
                axis, mask = bound
                masks[axis] = self.and_masks(masks[axis], mask)
        tiles = [self.broadcast_to(t, shape) for t in tiles]
        return [t.value for t in tiles], shape, tuple(masks), store_masks

    def _in_bounds_along_one_dim(self, index: TileVal, size, rank: int):
        """Gathered lanes outside the tensor are masked lanes too (reductions skip them).
        Lane masks are per dim, so this is recorded when the index tile varies along one
        dim only (t.index + 1, rows[:, None]); returns (axis, 1-D mask) or None."""
        varying = [d for d, n in enumerate(index.shape) if n != 1]
        if len(varying) != 1:
            return None
        inside = self.binary("and", self.compare("ge", index, 0),
                             self.compare("lt", index, SymSize(size) if not size.is_Integer
                                          else int(size)))
        v = inside.value
        for d in reversed(range(index.rank)):       # squeeze the size-1 dims
            if d != varying[0]:
                v = self.b.value("reduce", [v], v.type.with_shape(
                    v.type.shape[:d] + v.type.shape[d + 1:]), kind="max", axis=d)
        return rank - index.rank + varying[0], v

    def indices(self, tensor: TensorArg, items, full_blocks):
        if len(items) > tensor.ndim:
            raise SemanticError(f"too many indices ({len(items)}) for {tensor.name!r} of "
                                f"rank {tensor.ndim}")
        items = list(items) + [slice(None)] * (tensor.ndim - len(items))
        gathers = [i for i in items if isinstance(i, TileVal) and i.rank > 0]
        if gathers:
            if any(isinstance(i, (TileHandle, slice)) for i in items):
                raise SemanticError(
                    f"indexing {tensor.name!r} mixes index tiles with tile handles or slices; "
                    "use t.index[:, None]-style index tiles for every dim instead")
            return self._gather_indices(tensor, items)
        return self._block_indices(tensor, items, full_blocks)

    def load(self, tensor: TensorArg, items, full_blocks, mask=None, other=None) -> TileVal:
        idx, shape, masks, _ = self.indices(tensor, items, full_blocks)
        operands = [tensor.value, *idx]
        attrs = {"checked": [True] * tensor.ndim, "mask": mask is not None,
                 "other": other is not None}
        if mask is not None:
            operands.append(self.broadcast_to(self.to_tile(mask, D.bool_), shape).value)
        if other is not None:
            operands.append(self.broadcast_to(self.to_tile(other, tensor.dtype), shape).value)
        v = self.b.value("load", operands, TileType(tensor.dtype, shape), **attrs)
        return TileVal(v, masks)

    def store(self, tensor: TensorArg, items, value, full_blocks, mask=None, op="store"):
        idx, shape, _, store_masks = self.indices(tensor, items, full_blocks)
        value = self.to_tile(value)
        if value.dtype != tensor.dtype:
            value = self.cast(value, tensor.dtype)
        try:
            value = self.broadcast_to(value, shape)
        except SemanticError:
            raise SemanticError(f"cannot store a tile of shape {shape_text(value.shape)} into "
                                f"{tensor.name!r} at indices of shape {shape_text(shape)}") from None
        full = self.full_mask(store_masks, shape)
        if mask is not None:
            full = self.and_masks(full, self.broadcast_to(self.to_tile(mask, D.bool_), shape).value)
        operands = [tensor.value, *idx, value.value] + ([full] if full is not None else [])
        attrs = {"checked": [True] * tensor.ndim, "mask": full is not None}
        if op == "atomic_add":
            return TileVal(self.b.value("atomic_add", operands, TileType(tensor.dtype, shape),
                                        **attrs), value.masks)
        self.b.create("store", operands, [], attrs)
        return None


def size_value(x) -> sympy.Expr:
    try:
        return size_expr(x)
    except TypeError as exc:
        raise SemanticError(str(exc)) from None


__all__ = ["Semantic", "SemanticError", "broadcast_shapes", "size_value", "TensorType"]
