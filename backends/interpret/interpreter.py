"""The reference interpreter: executes IR with numpy, one program at a time.

This is the living definition of the IR's semantics (see ir/ops.py). Transcendental float
math is evaluated in float64 and rounded to the value's dtype, so it is the most accurate
answer each dtype can hold; half floats are rounded after every op.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes as D
from ...ir.core import Block, Op, Value
from ...ir.ops import memory_operands
from ...ir.types import TensorType, TileType
from ..common import bind_symbols, eval_size
from ..numeric import COMPUTE, cast, round_to, to_compute, to_storage

_erf = np.vectorize(math.erf, otypes=[np.float64])
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))       # exp overflowing to inf gives the right 0


# Float math, evaluated on float64 arrays.
FLOAT_UNARY = {
    "exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "atan": np.arctan, "asin": np.arcsin, "acos": np.arccos, "sinh": np.sinh,
    "cosh": np.cosh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "erfc": _erfc, "log1p": np.log1p, "expm1": np.expm1, "tanh": np.tanh, "erf": _erf, "sigmoid": _sigmoid, "gelu": lambda x: 0.5 * x * _erfc(-x / math.sqrt(2)),
    "gelu_tanh": _gelu_tanh, "silu": lambda x: x * _sigmoid(x), "floor": np.floor,
    "ceil": np.ceil,
}


def _not(x):
    return np.logical_not(x) if x.dtype == np.bool_ else np.invert(x)


NUMERIC_UNARY = {"neg": np.negative, "abs": np.abs, "not": _not,
                 "relu": lambda x: np.maximum(x, np.zeros((), x.dtype))}


def _int_div(a, b, fn):
    safe = np.where(b == 0, np.ones((), b.dtype), b)
    return np.where(b == 0, np.zeros((), a.dtype), fn(a, safe))


def _pow(a, b):
    if a.dtype.kind in "iu":
        return np.power(a, np.maximum(b, 0)).astype(a.dtype)
    return np.power(a, b)


def _bitwise(logical, bitwise):
    return lambda a, b: logical(a, b) if a.dtype == np.bool_ else bitwise(a, b)


BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "floordiv": lambda a, b: (np.floor_divide(a, b) if a.dtype.kind == "f"
                              else _int_div(a, b, np.floor_divide)),
    "mod": lambda a, b: np.mod(a, b) if a.dtype.kind == "f" else _int_div(a, b, np.mod),
    # C's remainder (the dividend's sign); ints: 0 for a zero divisor, as mod
    "fmod": lambda a, b: np.fmod(a, b) if a.dtype.kind == "f" else _int_div(a, b, np.fmod),
    "maximum": np.maximum, "minimum": np.minimum, "pow": _pow, "atan2": np.arctan2,
    "hypot": np.hypot, "copysign": np.copysign,
    "and": _bitwise(np.logical_and, np.bitwise_and), "or": _bitwise(np.logical_or, np.bitwise_or),
    "xor": _bitwise(np.logical_xor, np.bitwise_xor),
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
}


def _reduce(x: np.ndarray, kind: str, axis: int, in_dtype: D.DType, out_dtype: D.DType):
    if kind == "argmax":
        return np.argmax(x, axis=axis).astype(np.int32)
    if kind == "argmin":
        return np.argmin(x, axis=axis).astype(np.int32)
    if kind == "max":
        return np.max(x, axis=axis)
    if kind == "min":
        return np.min(x, axis=axis)
    total = np.prod if kind == "prod" else np.sum
    if in_dtype.is_float:
        return round_to(total(x.astype(np.float64), axis=axis), out_dtype)
    return total(x.astype(np.int64), axis=axis)


_ACCUMULATE = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}


def _scan(x: np.ndarray, kind: str, axis: int, reverse: bool, in_dtype: D.DType,
          out_dtype: D.DType):
    """Inclusive running reductions; float sums and products in float64, each element
    rounded once; max/min propagate NaN (np.maximum does)."""
    if reverse:
        return np.flip(_scan(np.flip(x, axis), kind, axis, False, in_dtype, out_dtype), axis)
    if kind in ("sum", "prod"):
        wide = np.float64 if in_dtype.is_float else np.int64
        out = _ACCUMULATE[kind].accumulate(x.astype(wide), axis=axis)
        return round_to(out, out_dtype) if in_dtype.is_float else out
    return _ACCUMULATE[kind].accumulate(x, axis=axis)


class _Handle:
    __slots__ = ("begin", "block")

    def __init__(self, begin: int, block: int):
        self.begin, self.block = begin, block


class Interpreter:
    def __init__(self, kernel: Op):
        self.kernel = kernel
        self.env: dict[Value, object] = {}

    def run(self, args: list) -> None:
        """args: one per kernel param (numpy arrays in storage type; Python scalars), then
        one preallocated array per `alloc` op in program order."""
        body = self.kernel.regions[0]
        n_params = len(body.args)
        params, outputs = args[:n_params], list(args[n_params:])
        self.symbols = bind_symbols(self.kernel, params)
        for arg, value in zip(body.args, params):
            self.env[arg] = self._scalar_param(arg, value)
        self._outputs = iter(outputs)
        self.block(body)

    def _scalar_param(self, arg: Value, value):
        if isinstance(arg.type, TileType):
            return round_to(np.asarray(value).astype(COMPUTE[arg.type.dtype]), arg.type.dtype)
        return value

    def block(self, block: Block) -> list:
        for op in block.ops:
            if op.name in ("yield", "return"):
                return [self.env[v] for v in op.operands]
            results = self.op(op)
            for r, value in zip(op.results, results):
                self.env[r] = value
        return []

    def op(self, op: Op) -> list:
        # memory ops address their tensor themselves (_lanes); others read tensors whole
        ins = [] if op.name in _ADDRESSING else [self._read(v) for v in op.operands]
        name = op.name
        rtype = op.results[0].type if op.results else None
        with np.errstate(all="ignore"):
            if name in FLOAT_UNARY:
                return [round_to(FLOAT_UNARY[name](ins[0].astype(np.float64)), rtype.dtype)]
            if name in NUMERIC_UNARY:
                return [round_to(NUMERIC_UNARY[name](ins[0]), rtype.dtype)]
            if name in BINARY:
                out = BINARY[name](ins[0], ins[1])
                return [out if out.dtype == np.bool_ and rtype.dtype.is_bool
                        else round_to(out, rtype.dtype)]
            return getattr(self, "op_" + name)(op, ins, rtype)

    def _read(self, v: Value):
        """A whole-tensor op reads a tensor param or alloc as an array of its compute type."""
        value = self.env[v]
        if isinstance(v.type, TensorType) and _in_memory(v):
            return np.array(to_compute(value, v.type.dtype))   # a copy: a later write
        return value                                             # must not change it

    def _shape(self, t) -> tuple:
        if isinstance(t, TensorType):
            return tuple(int(eval_size(d, self.symbols)) for d in t.shape)
        return t.shape

    # -- tile values ------------------------------------------------------------------------
    def op_const(self, op, ins, t):
        return [round_to(np.full(t.shape, op.attrs["value"], dtype=COMPUTE[t.dtype]), t.dtype)]

    def op_arange(self, op, ins, t):
        return [np.arange(op.attrs["start"], op.attrs["end"], dtype=np.int32)]

    def op_symval(self, op, ins, t):
        return [np.asarray(eval_size(op.attrs["expr"], self.symbols), dtype=COMPUTE[t.dtype])]

    def op_tile_index(self, op, ins, t):
        h = ins[0]
        return [np.arange(h.begin, h.begin + h.block, dtype=np.int32)]

    def op_tile_begin(self, op, ins, t):
        return [np.asarray(ins[0].begin, dtype=np.int32)]

    def op_where(self, op, ins, t):
        return [np.where(ins[0], ins[1], ins[2])]

    def op_cast(self, op, ins, t):
        return [cast(ins[0], op.operands[0].type.dtype, t.dtype)]

    def op_broadcast(self, op, ins, t):
        return [np.broadcast_to(ins[0], self._shape(t))]

    def op_expand_dims(self, op, ins, t):
        return [np.expand_dims(ins[0], op.attrs["axis"])]

    def op_permute(self, op, ins, t):
        return [np.transpose(ins[0], op.attrs["perm"])]

    def op_reshape(self, op, ins, t):
        return [np.ascontiguousarray(ins[0]).reshape(self._shape(t))]

    def op_slice(self, op, ins, t):
        starts = [int(eval_size(s, self.symbols)) for s in op.attrs["starts"]]
        # a reversed dim's stop goes below 0: None (-1 would count from the end)
        return [ins[0][tuple(slice(s, s + step * n if s + step * n >= 0 else None, step)
                             for s, step, n in zip(starts, op.attrs["steps"], self._shape(t)))]]

    def op_take(self, op, ins, t):
        x, index = (np.asarray(a) for a in ins)
        axis, n = op.attrs["axis"], x.shape[op.attrs["axis"]]
        inside = (index >= 0) & (index < n)
        out = np.take(x, np.where(inside, index, 0), axis=axis)
        inside = inside.reshape((1,) * axis + inside.shape + (1,) * (x.ndim - axis - 1))
        return [np.where(inside, out, np.zeros((), x.dtype))]

    def op_take_along(self, op, ins, t):
        x, index = (np.asarray(a) for a in ins)
        axis = op.attrs["axis"]
        grid = list(np.indices(index.shape, sparse=True))
        inside = (index >= 0) & (index < x.shape[axis])
        for d, g in enumerate(grid):           # the other dims read where index has them
            if d != axis:
                inside = inside & (g < x.shape[d])
        grid[axis] = index
        out = x[tuple(np.where(inside, g, 0) for g in grid)]
        return [np.where(inside, out, np.zeros((), x.dtype))]

    def op_concat(self, op, ins, t):
        return [np.concatenate([np.asarray(x) for x in ins], axis=op.attrs["axis"])]

    def op_reduce(self, op, ins, t):
        return [np.asarray(_reduce(ins[0], op.attrs["kind"], op.attrs["axis"],
                                   op.operands[0].type.dtype, t.dtype))]

    def op_scan(self, op, ins, t):
        return [np.asarray(_scan(ins[0], op.attrs["kind"], op.attrs["axis"],
                                 op.attrs["reverse"], op.operands[0].type.dtype, t.dtype))]

    def op_dot(self, op, ins, t):
        a, b = ins
        if t.dtype.is_float:
            return [round_to(a.astype(np.float64) @ b.astype(np.float64), t.dtype)]
        return [(a.astype(np.int64) @ b.astype(np.int64)).astype(COMPUTE[t.dtype])]

    # -- memory -----------------------------------------------------------------------------
    def op_write(self, op, ins, t):
        dst = self.env[op.operands[0]]
        value = self._read(op.operands[1])
        dst[...] = to_storage(np.broadcast_to(value, dst.shape), op.operands[0].type.dtype)
        return []

    def _lanes(self, op, ins):
        tensor_v, idx_v, value_v, mask_v, other_v = memory_operands(op)
        env = self.env
        array = env[tensor_v]
        shape = array.shape
        idx = [np.asarray(env[v]).astype(np.int64) for v in idx_v]
        valid = np.ones(idx[0].shape if idx else (), dtype=bool)
        for d, (i, checked) in enumerate(zip(idx, op.attrs["checked"])):
            if checked:
                valid &= (i >= 0) & (i < shape[d])
        if mask_v is not None:
            valid &= env[mask_v]
        safe = tuple(np.where(valid, i, 0) for i in idx)
        return array, safe, valid, (env[value_v] if value_v is not None else None), \
            (env[other_v] if other_v is not None else None)

    def op_load(self, op, ins, t):
        array, safe, valid, _, other = self._lanes(op, ins)
        if array.size == 0:
            values = np.zeros(t.shape, COMPUTE[t.dtype])
        else:
            values = to_compute(array[safe], t.dtype)
        fill = other if other is not None else np.zeros((), COMPUTE[t.dtype])
        return [np.where(valid, values, fill)]

    def op_store(self, op, ins, t):
        array, safe, valid, value, _ = self._lanes(op, ins)
        dtype = op.operands[0].type.dtype
        stored = to_storage(np.broadcast_to(value, valid.shape), dtype)
        if array.ndim == 0:                  # a 0-d tensor: one lane, no index
            if valid:
                array[()] = stored
            return []
        array[tuple(i[valid] for i in safe)] = stored[valid]
        return []

    def op_atomic_add(self, op, ins, t):
        array, safe, valid, value, _ = self._lanes(op, ins)
        dtype = op.operands[0].type.dtype
        lanes = tuple(i[valid] for i in safe)
        old = np.zeros(t.shape, COMPUTE[t.dtype])
        old[valid] = to_compute(array[lanes], dtype)
        total = to_compute(array, dtype).copy()
        np.add.at(total, lanes, np.broadcast_to(value, valid.shape)[valid])
        array[...] = to_storage(round_to(total, dtype), dtype)
        return [old]

    # -- structure --------------------------------------------------------------------------
    def op_alloc(self, op, ins, t):
        return [next(self._outputs)]

    def op_tile_for(self, op, ins, t):
        extent = int(eval_size(op.attrs["extent"], self.symbols))
        block = op.attrs["block"]
        body = op.regions[0]
        carried = ins
        for begin in range(0, extent, block):
            self.env[body.args[0]] = _Handle(begin, block)
            for arg, value in zip(body.args[1:], carried):
                self.env[arg] = value
            carried = self.block(body)
        return carried

    def op_for(self, op, ins, t):
        lo, hi, step, carried = int(ins[0]), int(ins[1]), int(ins[2]), ins[3:]
        body = op.regions[0]
        dtype = COMPUTE[op.operands[0].type.dtype]
        for i in range(lo, hi, step) if step != 0 else ():
            self.env[body.args[0]] = np.asarray(i, dtype=dtype)
            for arg, value in zip(body.args[1:], carried):
                self.env[arg] = value
            carried = self.block(body)
        return carried

    def op_if(self, op, ins, t):
        return self.block(op.regions[0] if bool(ins[0]) else op.regions[1])


_ADDRESSING = ("load", "store", "atomic_add", "write")


def _in_memory(v: Value) -> bool:
    """A tensor param or alloc (not the result of a whole-tensor op)."""
    return v.op is None or v.op.name == "alloc"


def run(kernel: Op, args: list) -> None:
    Interpreter(kernel).run(args)
