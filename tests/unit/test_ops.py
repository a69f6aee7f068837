"""Every fl op against a float64 numpy reference, for every dtype, on sizes that are not
multiples of 16, on both CPU backends (interpret and compiled LLVM)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fusec
import fusec.language as fl
from fusec.ir.ops import FLOAT_RESULT_BINARY
from conftest import (as_input, assert_close, erf64, output_float64, random_array,
                      round_to_dtype)
from device_kernels import cast

SIZES = (1, 7, 100, 1000)
ALL = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16", "float32",
       "float64")
FLOATS = ("float16", "bfloat16", "float32", "float64")
INTS = ("int8", "int16", "int32", "int64", "uint8")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


UNARY_REF = {
    "exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "atan": np.arctan, "tanh": np.tanh, "erf": erf64, "sigmoid": _sigmoid, "silu": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1.0 + erf64(x / math.sqrt(2.0))),
    "floor": np.floor, "ceil": np.ceil, "asin": np.arcsin, "acos": np.arccos,
    "sinh": np.sinh, "cosh": np.cosh, "asinh": np.arcsinh, "acosh": np.arccosh,
    "atanh": np.arctanh, "erfc": np.vectorize(math.erfc, otypes=[np.float64]),
    "log1p": np.log1p, "expm1": np.expm1,
}
NUMERIC_REF = {"abs": np.abs, "relu": lambda x: np.maximum(x, 0)}


def _unary_kernel(fn):
    @fusec.kernel
    def unary(x, OUT: fusec.constexpr):
        out = fusec.empty(x.shape, OUT)
        for t in fusec.tile(x.shape[0]):
            out[t] = fn(x[t])
        return out
    return unary


UNARY_KERNELS = {name: _unary_kernel(getattr(fl, name)) for name in {**UNARY_REF, **NUMERIC_REF}}


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("name", sorted(UNARY_REF))
def test_float_unary(backend, name, dtype):
    out_dtype = dtype if dtype in FLOATS else "float32"
    for n in SIZES:
        x, xv = random_array((n,), dtype, seed=n)
        out = UNARY_KERNELS[name](as_input(x, dtype), getattr(fl, out_dtype))
        want = round_to_dtype(UNARY_REF[name](xv), out_dtype)
        with np.errstate(all="ignore"):
            assert_close(output_float64(out), want, out_dtype, f"{name}({dtype}[{n}])")


@pytest.mark.parametrize("dtype", [d for d in ALL if d != "bool"])
@pytest.mark.parametrize("name", sorted(NUMERIC_REF))
def test_numeric_unary(backend, name, dtype):
    for n in SIZES:
        x, xv = random_array((n,), dtype, seed=n)
        out = UNARY_KERNELS[name](as_input(x, dtype), getattr(fl, dtype))
        want = round_to_dtype(NUMERIC_REF[name](xv), dtype)
        assert_close(output_float64(out), want, dtype, f"{name}({dtype}[{n}])")


@fusec.func
def _apply(op, a, b):
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        return a / b
    if op == "atan2":
        return fl.atan2(a, b)
    if op == "floordiv":
        return a // b
    if op == "mod":
        return a % b
    if op == "fmod":
        return fl.fmod(a, b)
    if op == "hypot":
        return fl.hypot(a, b)
    if op == "copysign":
        return fl.copysign(a, b)
    if op == "pow":
        return a ** b
    if op == "and":
        return a & b
    if op == "or":
        return a | b
    if op == "xor":
        return a ^ b
    if op == "maximum":
        return fl.maximum(a, b)
    if op == "minimum":
        return fl.minimum(a, b)
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if op == "lt":
        return a < b
    if op == "le":
        return a <= b
    if op == "gt":
        return a > b
    return a >= b


@fusec.kernel
def binary(x, y, OP: fusec.constexpr, OUT: fusec.constexpr):
    out = fusec.empty(x.shape, OUT)
    for t in fusec.tile(x.shape[0]):
        out[t] = _apply(OP, x[t], y[t])
    return out


def _int_ref(op, a, b, dtype):
    a, b = a.astype(np.int64), b.astype(np.int64)
    safe = np.where(b == 0, 1, b)
    table = {"add": a + b, "sub": a - b, "mul": a * b,
             "floordiv": np.where(b == 0, 0, a // safe), "mod": np.where(b == 0, 0, a % safe),
             "fmod": np.where(b == 0, 0, np.fmod(a, safe)),
             "maximum": np.maximum(a, b), "minimum": np.minimum(a, b),
             "and": a & b, "or": a | b, "xor": a ^ b, "pow": a ** np.abs(b % 4)}
    return table[op].astype(dtype).astype(np.float64)


def _float_ref(op, a, b):
    with np.errstate(all="ignore"):
        return {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b,
                "floordiv": np.floor_divide(a, b), "mod": np.mod(a, b), "fmod": np.fmod(a, b), "maximum": np.maximum(a, b),
                "minimum": np.minimum(a, b), "pow": np.power(np.abs(a), b),
                "atan2": np.arctan2(a, b), "hypot": np.hypot(a, b),
                "copysign": np.copysign(a, b)}[op]


COMPARES = ("eq", "ne", "lt", "le", "gt", "ge")


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "floordiv", "mod", "fmod",
                                "maximum", "minimum", "pow", "atan2", "hypot", "copysign",
                                "and", "or", "xor", *COMPARES])
def test_binary(backend, op, dtype):
    is_float = dtype in FLOATS
    if dtype == "bool" and op not in ("add", "mul", "maximum", "minimum", "and", "or", "xor",
                                      "atan2", "hypot", "copysign", *COMPARES):
        pytest.skip("not defined on bools (raises, see test_frontend)")
    if is_float and op in ("and", "or", "xor"):
        pytest.skip("bitwise ops need ints (raises, see test_frontend)")
    for n in SIZES:
        x, xv = random_array((n,), dtype, seed=n)
        y, yv = random_array((n,), dtype, seed=n + 1000)
        if op == "pow":
            if is_float:
                x, xv = random_array((n,), dtype, seed=n, low=0.1, high=3.0)
            elif dtype != "bool":
                y = np.abs(y % 4).astype(y.dtype)
                yv = y.astype(np.float64)
        if op in COMPARES:
            out_dtype = "bool"
            want = getattr(np, {"eq": "equal", "ne": "not_equal", "lt": "less",
                                "le": "less_equal", "gt": "greater",
                                "ge": "greater_equal"}[op])(xv, yv).astype(np.float64)
        elif op in FLOAT_RESULT_BINARY:       # true division, atan2, ...: ints as float32
            out_dtype = dtype if is_float else "float32"
            want = round_to_dtype(_float_ref(op, xv, yv), out_dtype)
        elif dtype == "bool":
            out_dtype = "bool"
            fn = {"add": np.logical_or, "mul": np.logical_and, "maximum": np.logical_or,
                  "minimum": np.logical_and, "and": np.logical_and, "or": np.logical_or,
                  "xor": np.logical_xor}[op]
            want = fn(xv > 0, yv > 0).astype(np.float64)
        elif is_float:
            out_dtype = dtype
            want = round_to_dtype(_float_ref(op, xv, yv), dtype)
        else:
            out_dtype = dtype
            want = _int_ref(op, x, y, dtype)
        out = binary(as_input(x, dtype), as_input(y, dtype), op, getattr(fl, out_dtype))
        assert_close(output_float64(out), want, out_dtype, f"{op}({dtype}[{n}])")


@pytest.mark.parametrize("src", ALL)
def test_casts(backend, src):
    x, xv = random_array((100,), src, seed=3, low=-200.0, high=200.0)
    for dst in ALL:
        inp = as_input(x, src)
        if dst == "bfloat16" and isinstance(inp, np.ndarray):
            import torch
            inp = torch.from_numpy(inp)          # numpy has no bfloat16 outputs
        out = cast(inp, getattr(fl, dst))
        if dst == "bool":
            want = (xv != 0).astype(np.float64)
        elif dst in FLOATS:
            want = round_to_dtype(xv, dst)
        else:
            info = np.iinfo(dst)
            t = np.trunc(xv) if src in FLOATS else xv
            if src in FLOATS:
                want = np.clip(t, info.min, info.max)
            else:
                want = xv.astype(np.int64).astype(dst).astype(np.float64)
        assert_close(output_float64(out), want, dst if dst in FLOATS else "exact",
                     f"{src}->{dst}")


def _reduce_kernel(kind):
    fn = getattr(fl, kind)

    @fusec.kernel
    def row_reduce(x, OUT: fusec.constexpr):
        out = fusec.empty([x.shape[0]], OUT)
        for tm in fusec.tile(x.shape[0]):
            out[tm] = fn(x[tm, :], axis=1)
        return out

    @fusec.kernel
    def col_reduce(x, OUT: fusec.constexpr):
        out = fusec.empty([x.shape[1]], OUT)
        for tn in fusec.tile(x.shape[1], block=8):
            out[tn] = fn(x[:, tn], axis=0)
        return out
    return row_reduce, col_reduce


REDUCE_KERNELS = {k: _reduce_kernel(k) for k in ("sum", "prod", "max", "min", "mean",
                                                  "argmax", "argmin")}


def _prod_input(shape, dtype, seed):
    """Factors whose products stay in range (and ints' products mostly off zero): floats of
    magnitude 0.97..1.03 with random signs, ints mostly +-1 with some 2s and 3s (their
    products wrap in int64), bools mostly true."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        a = rng.random(shape) < 0.995
        return a, a.astype(np.float64)
    if dtype not in FLOATS:
        values = rng.choice([1, 1, 1, 1, 1, 1, 2, 3] if dtype == "uint8" else
                            [1, -1, 1, -1, 1, -1, 2, -3], size=shape)
        a = values.astype(dtype)
        return a, a.astype(np.float64)
    x, xv = random_array(shape, dtype, seed=seed, low=0.97, high=1.03)
    flip = rng.random(shape) < 0.5
    if dtype == "bfloat16":
        return x ^ np.where(flip, 0x8000, 0).astype(x.dtype), np.where(flip, -xv, xv)
    return np.where(flip, -x, x).astype(x.dtype), np.where(flip, -xv, xv)


def _reduce_ref(kind, xv, axis, dtype):
    if kind in ("sum", "prod"):
        if kind == "prod" and dtype not in FLOATS:        # int64, wrapping
            return np.prod(xv.astype(np.int64), axis=axis).astype(np.float64)
        r = getattr(xv, kind)(axis=axis)
        return round_to_dtype(r, dtype) if dtype in FLOATS else r
    if kind == "mean":
        return round_to_dtype(xv.mean(axis=axis), dtype)
    return {"max": np.max, "min": np.min, "argmax": np.argmax, "argmin": np.argmin}[kind](
        xv, axis=axis).astype(np.float64)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("kind", sorted(REDUCE_KERNELS))
def test_reductions(backend, kind, dtype):
    if kind == "mean" and dtype not in FLOATS:
        pytest.skip("mean needs floats (raises, see test_frontend)")
    for n in SIZES:
        x, xv = (_prod_input if kind == "prod" else random_array)((5, n), dtype, seed=n)
        if kind in ("argmax", "argmin"):
            out_dtype = "int32"
        elif kind in ("sum", "prod") and dtype not in FLOATS:
            out_dtype = "int64"
        else:
            out_dtype = dtype
        tol_dtype = out_dtype if out_dtype in FLOATS else "exact"
        if kind == "sum" and dtype in FLOATS:
            tol_dtype = dtype if dtype != "float32" else "float32"
        rows, cols = REDUCE_KERNELS[kind]
        got = output_float64(rows(as_input(x, dtype), getattr(fl, out_dtype)))
        want = _reduce_ref(kind, xv, 1, dtype)
        assert_close(got / (1 if kind != "sum" else max(1, n ** 0.5)),
                     want / (1 if kind != "sum" else max(1, n ** 0.5)), tol_dtype,
                     f"{kind}(rows of {dtype}[5, {n}])")
        xt = np.ascontiguousarray(x.T)
        got = output_float64(cols(as_input(xt, dtype), getattr(fl, out_dtype)))
        want = _reduce_ref(kind, xv.T, 0, dtype)
        assert_close(got / (1 if kind != "sum" else max(1, n ** 0.5)),
                     want / (1 if kind != "sum" else max(1, n ** 0.5)), tol_dtype,
                     f"{kind}(cols of {dtype}[{n}, 5])")


@fusec.kernel
def matmul(a, b, OUT: fusec.constexpr):
    M, K = a.shape
    N = b.shape[1]
    out = fusec.empty([M, N], OUT)
    for tm, tn in fusec.tile([M, N]):
        acc = fl.zeros([tm, tn], OUT)
        for tk in fusec.tile(K):
            acc += fl.dot(a[tm, tk], b[tk, tn], out_dtype=OUT)
        out[tm, tn] = acc
    return out


@pytest.mark.parametrize("dtype,out", [("float32", "float32"), ("float16", "float32"),
                                       ("bfloat16", "float32"), ("float64", "float64"),
                                       ("int32", "int32"), ("int8", "int32")])
@pytest.mark.parametrize("mkn", [(1, 1, 1), (7, 100, 33), (65, 47, 100)])
def test_dot(backend, dtype, out, mkn):
    m, k, n = mkn
    a, av = random_array((m, k), dtype, seed=1)
    b, bv = random_array((k, n), dtype, seed=2)
    got = output_float64(matmul(as_input(a, dtype), as_input(b, dtype), getattr(fl, out)))
    want = av @ bv
    scale = max(1.0, math.sqrt(k))
    assert_close(got / scale, round_to_dtype(want, out) / scale,
                 out if out in FLOATS else "exact", f"dot {dtype} {mkn}")


@fusec.kernel
def row_products(x):
    return x.prod(axis=1)


def test_prod_of_rows_longer_than_a_tile(backend):
    """A product over 40000 elements walks the row in chunks, multiplying the chunks'
    products (tile_loop's combine), in float64."""
    rng = np.random.default_rng(8)
    sign = np.where(rng.random((3, 40000)) < 0.5, -1.0, 1.0)
    x = (rng.uniform(0.999, 1.001, (3, 40000)) * sign).astype(np.float32)
    got = output_float64(row_products(as_input(x, "float32")))
    assert_close(got, np.prod(x.astype(np.float64), axis=1), "float32")
