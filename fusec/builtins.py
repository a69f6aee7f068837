"""What each `fl.*` function, `fusec.*` host function and tile method means when traced.

Each entry takes (tracer, args, kwargs) and returns the traced value. Argument binding uses
ordinary Python signatures so that wrong arguments read like Python's own errors.
"""
from __future__ import annotations

import inspect

import sympy

from .ir import TensorType, dtypes as D
from .ir.ops import FLOAT_UNARY, NUMERIC_UNARY, SCAN_KINDS
from .semantic import SemanticError, size_value
from .tensors import is_tensor
from .values import SymSize, TensorArg, TileHandle, TileVal


def _dtype(value, what: str):
    if value is None or isinstance(value, D.DType):
        return value
    raise SemanticError(f"{what} must be a dtype such as fl.float32, got {value!r}")


def _tile_shape(tracer, shape):
    """Shape arguments: ints and tile handles (a handle stands for its block size)."""
    if isinstance(shape, (int, TileHandle)):
        shape = [shape]
    dims, masks = [], []
    for s in shape:
        if isinstance(s, TileHandle):
            dims.append(s.block)
            masks.append(tracer.sem.handle_mask(s))
        elif isinstance(s, int) and not isinstance(s, bool) and s > 0:
            dims.append(s)
            masks.append(None)
        else:
            raise SemanticError(f"tile shapes take positive ints and tiles, got {s!r}")
    return tuple(dims), tuple(masks)


def _full_tensor(t, shape, value, dtype):
    """fl.full / fl.zeros outside tile loops: a whole tensor of sizes (ints, x.shape[i],
    int parameters) holding one value."""
    if isinstance(shape, (int, SymSize)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(s, SymSize) or (isinstance(s, int) and not isinstance(s, bool) and s >= 0)
            for s in shape):
        raise SemanticError(f"fl.full outside tile loops takes sizes (ints, tensor sizes, int "
                            f"parameters), got {shape!r}")
    if is_tensor(value) or isinstance(value, TileVal) and value.rank:
        raise SemanticError("fl.full's value is a number or a scalar parameter")
    if dtype is None:
        dtype = t.sem.result_dtype([value])
    _dtype(dtype, "dtype")
    tensors = t.sem.tensors
    return tensors._wrap(tensors.to_tensor(value, dtype, tuple(size_value(s) for s in shape)))


def _zeros(t, shape, dtype=D.float32):
    return _full(t, shape, 0, dtype)


def _full(t, shape, value, dtype=None):
    if not t.state.tile_depth:                  # outside tile loops: a whole tensor
        return _full_tensor(t, shape, value, dtype)
    dims, masks = _tile_shape(t, shape)
    if dtype is None:
        dtype = value.dtype if isinstance(value, TileVal) else t.sem.result_dtype([value])
    _dtype(dtype, "dtype")
    if isinstance(value, (TileVal, SymSize)):
        v = t.sem.broadcast_to(t.sem.to_tile(value, dtype), dims)
        return TileVal(v.value, masks)
    out = t.sem.const(value, dtype, dims)
    out.masks = masks
    return out


def _arange_tensor(t, start, end):
    """fl.arange outside tile loops: the int64 tensor [start, end) (end: an int, a tensor
    size or an int parameter)."""
    if isinstance(start, bool) or not isinstance(start, int) or isinstance(end, bool) or \
            not isinstance(end, (int, SymSize)):
        raise SemanticError(f"fl.arange outside tile loops takes an int start and an int or "
                            f"size end, got ({start!r}, {end!r})")
    n = sympy.sympify(size_value(end)) - start
    if n.is_number and n < 0:
        raise SemanticError(f"fl.arange({start}, {end}): end is before start")
    tensors = t.sem.tensors
    return tensors._wrap(t.b.value("iota", [], TensorType(D.int64, (n,)), start=start, step=1))


def _arange(t, start, end=None):
    if end is None:
        start, end = 0, start
    if not t.state.tile_depth:                  # outside tile loops: a whole tensor
        return _arange_tensor(t, start, end)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or end <= start:
        raise SemanticError(f"fl.arange needs constant ints start < end, got ({start}, {end})")
    from .ir import TileType
    return TileVal(t.b.value("arange", [], TileType(D.INDEX, (end - start,)), start=start,
                             end=end))


def _binary(name):
    return lambda t, a, b: t.sem.binary(name, a, b)


def _unary(name):
    return lambda t, x: t.sem.unary(name, x)


def _gelu(t, x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise SemanticError(f'gelu: approximate must be "none" or "tanh", got {approximate!r}')
    return t.sem.unary("gelu" if approximate == "none" else "gelu_tanh", x)


def _reduction(kind):
    def reduce(t, x, axis=None, keepdims=False):
        if kind == "mean":
            return t.sem.mean(x, axis, keepdims)
        return t.sem.reduce(kind, x, axis, keepdims)
    return reduce


def _scan(kind):
    def scan(t, x, axis=0, reverse=False):
        if not isinstance(reverse, bool):
            raise SemanticError(f"cum{kind}: reverse must be a constant bool, got {reverse!r}")
        return t.sem.scan(kind, x, axis, reverse)
    return scan


SCANS = {f"cum{kind}": _scan(kind) for kind in SCAN_KINDS}


def _dot(t, a, b, out_dtype=D.float32):
    return t.sem.dot(a, b, _dtype(out_dtype, "out_dtype"))


def _trans(t, x):
    x = x if is_tensor(x) else t.sem.to_tile(x)
    if len(x.shape) != 2:
        raise SemanticError(f"trans needs a 2-D tile, got shape {list(x.shape)}")
    return t.sem.permute(x, [1, 0])


def _permute(t, x, dims):
    x = x if is_tensor(x) else t.sem.to_tile(x)
    return t.sem.permute(x, dims)


def _expand_dims(t, x, axis):
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise SemanticError(f"fl.expand_dims: axis must be a constant int, got {axis!r}")
    return t.sem.expand_dims(x if is_tensor(x) else t.sem.to_tile(x), axis)


def _broadcast_to(t, x, shape):
    """Whole tensors take sizes (ints, x.shape[i], int parameters); tiles take ints and
    tiles, as fl.zeros does."""
    if is_tensor(x):
        shape = [shape] if isinstance(shape, (int, SymSize)) else list(shape)
        return t.sem.tensors.broadcast_to(x, [size_value(s) for s in shape])
    return t.sem.broadcast_to(t.sem.to_tile(x), _tile_shape(t, shape)[0])


def _cast(t, x, dtype):
    return t.sem.cast(x if is_tensor(x) else t.sem.to_tile(x), _dtype(dtype, "dtype"))


def _address(t, ref, what):
    if not isinstance(ref, tuple) or len(ref) != 2 or not isinstance(ref[0], TensorArg):
        raise SemanticError(f"{what} takes a tensor access such as x[tm, :] as its first "
                            "argument")
    return ref


def _load(t, ref, mask=None, other=None):
    tensor, items = _address(t, ref, "fl.load")
    return t.sem.load(tensor, items, t.full_block, mask=mask, other=other)


def _store(t, ref, value, mask=None):
    tensor, items = _address(t, ref, "fl.store")
    t.check_device("fl.store")
    t.sem.store(tensor, items, value, t.full_block, mask=mask)


def _atomic_add(t, ref, value, mask=None):
    tensor, items = _address(t, ref, "fl.atomic_add")
    t.check_device("fl.atomic_add")
    return t.sem.store(tensor, items, value, t.full_block, mask=mask, op="atomic_add")


def _cdiv(t, a, b):
    if isinstance(a, (int, SymSize)) and isinstance(b, (int, SymSize)):
        expr = sympy.ceiling(size_value(a) / size_value(b))
        return int(expr) if expr.is_Integer else SymSize(expr)
    return t.sem.binary("floordiv", t.sem.binary("sub", t.sem.binary("add", a, b), 1), b)


def _whole(x, what: str):
    if not is_tensor(x):
        raise SemanticError(f"{what} takes a whole tensor (statements outside tile loops), got "
                            f"{type(x).__name__}: it does not apply to tiles")
    return x


def _reshape(t, x, shape):
    return t.sem.tensors.views.reshape(_whole(x, "fl.reshape"), shape)


def _cat(t, tensors, axis=0):
    if not isinstance(tensors, (list, tuple)):
        raise SemanticError(f"fl.cat takes a list or tuple of whole tensors, got "
                            f"{type(tensors).__name__}")
    return t.sem.tensors.views.concat([_whole(x, "fl.cat") for x in tensors], axis)


def _take(t, x, index, axis=0):
    return t.sem.tensors.views.take(_whole(x, "fl.take"), _whole(index, "fl.take"), axis)


def _take_along(t, x, index, axis):
    return t.sem.tensors.views.take_along(_whole(x, "fl.take_along"),
                                          _whole(index, "fl.take_along"), axis)


def _flip(t, x, dims):
    return t.sem.tensors.views.flip(_whole(x, "fl.flip"), dims)


BUILTINS = {
    "zeros": _zeros, "full": _full, "arange": _arange, "dot": _dot, "trans": _trans,
    "reshape": _reshape, "cat": _cat, "flip": _flip, "take": _take,
    "take_along": _take_along,
    "where": lambda t, cond, a, b: t.sem.where(cond, a, b),
    **{name: _binary(name) for name in ("maximum", "minimum", "atan2", "fmod", "hypot",
                                          "copysign")},
    "load": _load, "store": _store, "atomic_add": _atomic_add, "cast": _cast, "gelu": _gelu,
    "cdiv": _cdiv, "permute": _permute, "expand_dims": _expand_dims,
    "broadcast_to": _broadcast_to, **SCANS,
}
for _n in FLOAT_UNARY + NUMERIC_UNARY:
    if _n not in ("gelu", "gelu_tanh", "neg"):
        BUILTINS[_n] = _unary(_n)
for _n in ("sum", "prod", "max", "min", "mean", "argmax", "argmin"):
    BUILTINS[_n] = _reduction(_n)


def _call(table, prefix: str, tracer, name: str, args, kwargs):
    fn = table[name]
    try:
        inspect.signature(fn).bind(tracer, *args, **kwargs)
    except TypeError as exc:
        raise SemanticError(f"{prefix}{name}: {exc}") from None
    return fn(tracer, *args, **kwargs)


def call_builtin(tracer, name: str, args, kwargs):
    return _call(BUILTINS, "fl.", tracer, name, args, kwargs)


# -- host functions (fusec.empty & co) --------------------------------------------------------

def _alloc(tracer, shape, dtype, zero, what):
    tracer.check_host(what)
    if isinstance(shape, (int, SymSize)):
        shape = (shape,)
    dims = tuple(size_value(s) for s in shape)
    for d in dims:
        if d.is_Integer and d < 0:
            raise SemanticError(f"{what}: negative size {d}")
    _dtype(dtype, "dtype")
    value = tracer.b.value("alloc", [], TensorType(dtype, dims), zero=zero)
    value.name = tracer.current_target or None
    return TensorArg(value, value.name or "output")


def _like(tracer, x, dtype, zero, what):
    if not isinstance(x, TensorArg):
        raise SemanticError(f"{what} needs a tensor, got {type(x).__name__}")
    return _alloc(tracer, x.shape, dtype or x.dtype, zero, what)


HOST_BUILTINS = {
    "empty": lambda t, shape, dtype=D.float32: _alloc(t, shape, dtype, False, "fusec.empty"),
    "zeros": lambda t, shape, dtype=D.float32: _alloc(t, shape, dtype, True, "fusec.zeros"),
    "empty_like": lambda t, x, dtype=None: _like(t, x, dtype, False, "fusec.empty_like"),
    "zeros_like": lambda t, x, dtype=None: _like(t, x, dtype, True, "fusec.zeros_like"),
}


def call_host_builtin(tracer, name: str, args, kwargs):
    return _call(HOST_BUILTINS, "fusec.", tracer, name, args, kwargs)


# -- methods of tiles -------------------------------------------------------------------------

TILE_METHODS = {
    "to": lambda t, x, dtype: _cast(t, x, dtype),
    "sum": _reduction("sum"), "prod": _reduction("prod"), "max": _reduction("max"),
    "min": _reduction("min"),
    "mean": _reduction("mean"), "argmax": _reduction("argmax"), "argmin": _reduction("argmin"),
    "exp": _unary("exp"), "log": _unary("log"), "sqrt": _unary("sqrt"), "abs": _unary("abs"),
    "sigmoid": _unary("sigmoid"), "tanh": _unary("tanh"), **SCANS,
}


# -- methods of whole tensors only (views) -----------------------------------------------------

def _shape_args(shape: tuple):
    """x.reshape(a, b) and x.reshape((a, b)) alike."""
    return shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def _reshape_method(what: str):
    return lambda t, x, *shape: t.sem.tensors.views.reshape(x, _shape_args(shape), what)


TENSOR_METHODS = {
    "reshape": _reshape_method(".reshape"), "view": _reshape_method(".view"),
    "squeeze": lambda t, x, axis=None: t.sem.tensors.views.squeeze(x, axis),
    "unsqueeze": lambda t, x, axis: t.sem.tensors.expand_dims(x, axis),
    "flatten": lambda t, x, start=0, end=-1: t.sem.tensors.views.flatten(x, start, end),
}
