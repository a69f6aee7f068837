"""Scans (fl.cumsum / cumprod / cummax / cummin, reverse=): the IR op's semantics in the
interpreter, tile- and whole-tensor kernels on the CPU backends against float64 numpy,
the flip-scan-flip fold, the tile pass's limits and the frontend's errors."""
from __future__ import annotations

import numpy as np
import pytest

import fusec
import fusec.language as fl
from fusec import ir
from conftest import CPU_BACKENDS, assert_close

ACCUMULATE = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}


def running(x: np.ndarray, kind: str, axis: int, reverse: bool = False) -> np.ndarray:
    """The float64 (int64 for sums and products of ints) reference."""
    if reverse:
        return np.flip(running(np.flip(x, axis), kind, axis), axis)
    if kind in ("sum", "prod"):
        x = x.astype(np.float64 if x.dtype.kind == "f" else np.int64)
    elif x.dtype.kind == "f":
        x = x.astype(np.float64)
    return ACCUMULATE[kind].accumulate(x, axis=axis)


@fusec.kernel
def tile_scans(x, kind: fusec.constexpr, reverse: fusec.constexpr):
    M, N = x.shape
    out = fusec.empty_like(x, dtype=fl.int64 if kind in ("sum", "prod") and
                           x.dtype in (fl.int32, fl.bool) else x.dtype)
    for tm in fusec.tile(M, block=4):
        row = x[tm, :]
        if kind == "sum":
            out[tm, :] = fl.cumsum(row, axis=1, reverse=reverse)
        elif kind == "prod":
            out[tm, :] = row.cumprod(1, reverse=reverse)
        elif kind == "max":
            out[tm, :] = fl.cummax(row, axis=-1, reverse=reverse)
        else:
            out[tm, :] = fl.cummin(row, 1, reverse)
    return out


@fusec.kernel
def tensor_scans(x, kind: fusec.constexpr, axis: fusec.constexpr, reverse: fusec.constexpr):
    if kind == "sum":
        return x.cumsum(axis, reverse=reverse)
    if kind == "prod":
        return fl.cumprod(x, axis=axis, reverse=reverse)
    if kind == "max":
        return fl.cummax(x, axis=axis, reverse=reverse)
    return fl.cummin(x, axis=axis, reverse=reverse)


def _input(kind: str, dtype, shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.standard_normal(shape) > 0
    if kind == "prod":        # factors near 1 (both signs): no overflow, no underflow
        x = rng.uniform(0.8, 1.2, shape) * rng.choice([-1, 1], shape)
        return x.astype(dtype) if dtype != np.int32 else rng.integers(-3, 4, shape, np.int32)
    if dtype == np.int32:
        return rng.integers(-1000, 1000, shape, dtype=np.int32)
    return (rng.standard_normal(shape) * 3).astype(dtype)


def _check(got, want, dtype, what):
    got = np.asarray(got)
    if np.dtype(dtype).kind in "bi":
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        assert_close(got.astype(np.float64), want, np.dtype(dtype).name, what)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["sum", "prod", "max", "min"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.bool_])
def test_tile_scans(backend, kind, reverse, dtype):
    """Rows of 100 in tiles of 128: the padded lanes (masked) never reach a prefix, also
    reversed (where they come first), and the row tiles past M are masked."""
    x = _input(kind, dtype, (10, 100), 3)
    got = tile_scans.compile(x, kind, reverse, backend=backend)(x, kind, reverse)
    want = running(x, kind, 1, reverse)
    assert got.dtype == (np.int64 if kind in ("sum", "prod") and dtype in (np.int32, np.bool_)
                         else dtype)
    _check(got, want, dtype, f"cum{kind} reverse={reverse} {np.dtype(dtype).name}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape, axis", [((1, 1), 1), ((7, 33), 1), ((7, 33), 0),
                                         ((1000, 3), 0), ((3, 1000), 1), ((2, 5, 9), 1),
                                         ((4097,), 0)])
@pytest.mark.parametrize("kind", ["sum", "max"])
@pytest.mark.parametrize("reverse", [False, True])
def test_whole_tensor_scans(backend, shape, axis, kind, reverse):
    x = _input(kind, np.float32, shape, sum(shape))
    ck = tensor_scans.compile(x, kind, axis, reverse, backend=backend)
    assert ck.num_launches == 1
    _check(ck(x, kind, axis, reverse), running(x, kind, axis, reverse), np.float32,
           f"cum{kind} {shape} axis {axis}")


def test_int_sums_wrap_in_int64_and_max_propagates_nan():
    x = np.array([[2 ** 62, 2 ** 62, 1]], dtype=np.int64)
    for backend in CPU_BACKENDS:
        got = tensor_scans.compile(x, "sum", 1, False, backend=backend)(x, "sum", 1, False)
        np.testing.assert_array_equal(got, np.cumsum(x, axis=1))       # numpy wraps too
    y = np.array([[1.0, np.nan, 3.0, -1.0]], dtype=np.float32)
    for backend in CPU_BACKENDS:
        got = tensor_scans.compile(y, "max", 1, False, backend=backend)(y, "max", 1, False)
        np.testing.assert_array_equal(np.isnan(got), [[False, True, True, True]])


@fusec.kernel
def fused_scan(x, w):
    """A softmax's exp, its running sum and a normalization: one launch."""
    e = fl.exp(x - x.max(axis=1, keepdims=True))
    c = e.cumsum(1)
    return c / c.max(axis=1, keepdims=True) * w


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_scan_fuses_with_the_reductions_of_its_rows(backend):
    x = np.random.default_rng(1).standard_normal((37, 300)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal(300).astype(np.float32)
    ck = fused_scan.compile(x, w, backend=backend)
    assert ck.num_launches == 1
    e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    c = np.cumsum(e, 1)
    assert_close(ck(x, w), c / c.max(1, keepdims=True) * w, "float32")


@fusec.kernel
def flipped(x):
    return fl.flip(fl.flip(x * 2, 1).cumsum(1), 1) + 1


def test_flip_scan_flip_folds_into_a_reversed_scan():
    """The form autograd gives cumsum's gradient: one launch, no flip left."""
    x = np.random.default_rng(4).standard_normal((37, 100)).astype(np.float32)
    ck = flipped.compile(x, backend="cpu")
    assert ck.num_launches == 1
    assert "reverse = true" in ck.asm["fuse"] and "slice" not in ck.asm["fuse"]
    assert_close(ck(x), running(x * 2.0, "sum", 1, True) + 1, "float32")
    module = ir.parse(ck.asm["fuse"])
    assert str(module) == ck.asm["fuse"]                          # round-trips
    ir.verify(module)


@fusec.kernel
def flipped_twice_used(x):
    f = fl.flip(x, 1)
    return fl.flip(f.cumsum(1), 1), f


def test_a_flip_used_elsewhere_stays():
    x = np.random.default_rng(5).standard_normal((5, 9)).astype(np.float32)
    ck = flipped_twice_used.compile(x, backend="cpu")
    assert "reverse = false" in ck.asm["fuse"]
    got, f = ck(x)
    assert_close(got, running(x, "sum", 1, True), "float32")
    np.testing.assert_array_equal(f, np.flip(x, 1))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["sum", "prod", "max"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape, axis", [((3, 17000), 1), ((20000, 2), 0), ((9000,), 0)])
def test_scans_longer_than_a_tile_walk_it_in_chunks(backend, kind, reverse, shape, axis):
    """The chunks' carry is loop-carried (float64 for a float sum: the 1e-5 float32
    tolerance holds over 20000 elements); a reversed scan walks the chunks from the end."""
    x = _input(kind, np.float32, shape, 8)
    ck = tensor_scans.compile(x, kind, axis, reverse, backend=backend)
    assert ck.num_launches == 1
    _check(ck(x, kind, axis, reverse), running(x, kind, axis, reverse), np.float32,
           f"cum{kind} {shape} reverse={reverse}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_long_scan_is_recomputed_in_each_loop_that_needs_it(backend):
    """c / c.max() over 20000: the max's loop and the stores' loop each scan the row."""
    x = np.random.default_rng(1).standard_normal((3, 20000)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal(20000).astype(np.float32)
    ck = fused_scan.compile(x, w, backend=backend)
    e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    c = np.cumsum(e, 1)
    assert_close(ck(x, w), c / c.max(1, keepdims=True) * w, "float32")


@fusec.kernel
def both_ways(x):
    return x.cumsum(1) + x.cumsum(1, reverse=True)


@pytest.mark.parametrize("n", [100, 20000])
def test_scans_both_ways(n):
    """Held whole, one launch; walked in chunks, each direction its own launch (a loop
    walks one way)."""
    x = np.random.default_rng(3).standard_normal((4, n)).astype(np.float32)
    ck = both_ways.compile(x, backend="cpu")
    assert ck.num_launches == (1 if n == 100 else 3)
    assert_close(ck(x), running(x, "sum", 1) + running(x, "sum", 1, True), "float32")


@fusec.kernel
def scan_then_column_sum(x):
    return x.cumsum(2).sum(1)


def test_a_scan_does_not_take_reductions_whose_axes_overflow_a_tile():
    """cumsum over 128 then a sum over 512 of the same [4, 512, 128] group: 65536 elements
    held whole; the fuse pass keeps them apart (the sum loops on its own)."""
    x = np.random.default_rng(6).standard_normal((4, 512, 128)).astype(np.float32)
    ck = scan_then_column_sum.compile(x, backend="cpu")
    notes = ck.module.kernel().attrs.get("fusion_notes", [])
    assert any("a scan holds every reduced axis" in n for n in notes), notes
    assert_close(ck(x), np.cumsum(x.astype(np.float64), 2).sum(1), "float32")


@pytest.mark.parametrize("source, message", [
    ("fl.cumsum(x, axis=(0, 1))", "axis must be one int"),
    ("fl.cumsum(x, axis=2)", "axis 2 out of range"),
    ("fl.cumsum(x, reverse=1)", "reverse must be a constant bool"),
    ("fl.cumsum(x.sum())", "scans need"),
])
def test_scan_errors_name_the_problem(source, message):
    namespace = {"fusec": fusec, "fl": fl}
    code = f"@fusec.kernel\ndef bad(x):\n    return {source}\n"
    path = f"/tmp/fusec_scan_error_{abs(hash(source))}.py"
    with open(path, "w") as f:
        f.write(code)
    exec(compile(code, path, "exec"), namespace)
    with pytest.raises(fusec.CompilationError, match=message):
        namespace["bad"].compile(np.zeros((3, 4), np.float32), backend="cpu")


def test_the_verifier_checks_scans():
    text = """kernel(name = "k", sizes = []) {
^(%x: tensor<f32>[4, 8]):
  %0 = scan(%x, axis = 1, kind = "sum", reverse = 1) : tensor<f32>[4, 8]
  return(%0)
}
"""
    with pytest.raises(ir.VerificationError, match="bool `reverse`"):
        ir.verify(ir.parse(text))
    with pytest.raises(ir.VerificationError, match="unknown scan 'argmax'"):
        ir.verify(ir.parse(text.replace('"sum"', '"argmax"').replace("= 1)", "= false)")))
