"""The DSL's semantics: masks, loops with carried values, control flow, helpers, promotion,
and the errors users see."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import fusec
import fusec.language as fl
from conftest import assert_close
from fusec.ir import dtypes as D


# -- masked lanes ------------------------------------------------------------------------------

@fusec.kernel
def shifted_row_stats(x):
    M, N = x.shape
    out = fusec.empty([M, 4], fl.float32)
    for tm in fusec.tile(M):
        row = x[tm, :] + 5.0          # padded lanes would read 0 + 5 = 5 if not masked
        out[tm, 0] = fl.sum(row, axis=1)
        out[tm, 1] = fl.max(-row, axis=1)
        out[tm, 2] = fl.mean(row, axis=1)
        out[tm, 3] = fl.min(fl.exp(row - 100.0), axis=1)
    return out


@pytest.mark.parametrize("n", [1, 7, 100])
def test_reductions_ignore_masked_lanes_through_elementwise_ops(backend, n):
    x = np.random.default_rng(n).standard_normal((13, n)).astype(np.float32)
    out = shifted_row_stats(x)
    r = x.astype(np.float64) + 5
    want = np.stack([r.sum(1), (-r).max(1), r.mean(1), np.exp(r - 100).min(1)], axis=1)
    assert_close(out, want, "float32")


@fusec.kernel
def tile_grid_sum(x):
    out = fusec.zeros([1], fl.float32)
    for t in fusec.tile(x.shape[0], block=16):
        fl.atomic_add(out[0], fl.sum(x[t] * 2.0 + 1.0))
    return out


def test_full_reduction_and_atomic_add(backend):
    x = np.random.default_rng(0).standard_normal(37).astype(np.float32)
    assert_close(tile_grid_sum(x), np.array([(x.astype(np.float64) * 2 + 1).sum()]), "float32")


# -- loops, carried values, control flow -------------------------------------------------------

@fusec.kernel
def carried_forms(x, n_iter: int):
    out = fusec.empty([x.shape[0], 3], fl.float32)
    for t in fusec.tile(x.shape[0]):
        v = x[t]
        a = 0.0                       # widened to a tile by the loop body
        b = fl.zeros([t], fl.float32)
        for i in range(n_iter):
            a = a + v * i
            b += v
        out[t, 0] = a
        out[t, 1] = b
        c = v
        if n_iter > 2:
            c = c * 10.0
        else:
            c = c - 1.0
        out[t, 2] = c
    return out


@pytest.mark.parametrize("n_iter", [0, 1, 5])
def test_loop_carried_and_runtime_if(backend, n_iter):
    x = np.random.default_rng(1).standard_normal(50).astype(np.float32)
    out = carried_forms(x, n_iter)
    xv = x.astype(np.float64)
    want = np.stack([xv * sum(range(n_iter)), xv * n_iter,
                     xv * 10 if n_iter > 2 else xv - 1], axis=1)
    assert_close(out, want, "float32")


@fusec.func
def scaled(v, factor):
    return v * factor


@fusec.kernel
def constexpr_branches(x, MODE: fusec.constexpr):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        if MODE == "double":
            out[t] = scaled(x[t], 2.0)
        elif MODE == "neg":
            out[t] = -x[t]
        else:
            out[t] = fl.where(x[t] > 0, x[t], 0.0)
    return out


def test_constexpr_if_and_func_inlining(backend):
    x = np.random.default_rng(2).standard_normal(33).astype(np.float32)
    assert_close(constexpr_branches(x, "double"), x * 2.0, "float32")
    assert_close(constexpr_branches(x, "neg"), -x, "float32")
    assert_close(constexpr_branches(x, "relu"), np.maximum(x, 0), "float32")
    ir_text = constexpr_branches.compile(x, "neg").asm["ir"]
    assert " if(" not in ir_text and "neg(" in ir_text


@fusec.kernel
def gather_shift(x):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t.index + 1] + fl.load(x[t.index - 1], other=-100.0)
    return out


def test_gather_loads_are_masked_at_bounds(backend):
    x = np.arange(1, 20, dtype=np.float32)
    nxt = np.append(x[1:], 0.0)
    prev = np.insert(x[:-1], 0, -100.0)
    assert_close(gather_shift(x), nxt + prev, "float32")


@fusec.kernel
def transpose(x):
    M, N = x.shape
    out = fusec.empty([N, M], x.dtype)
    for tm, tn in fusec.tile([M, N]):
        out[tn, tm] = x[tm, tn].T
    return out


def test_2d_grid_transpose_strided_and_torch(backend):
    x = np.random.default_rng(3).standard_normal((37, 70)).astype(np.float32)
    np.testing.assert_array_equal(transpose(x), x.T)
    view = x[::2, ::-3]                                   # strided, negative stride
    np.testing.assert_array_equal(transpose(view), view.T)
    t = torch.from_numpy(x).t()                           # torch, non-contiguous
    got = transpose(t)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), x)


# -- type promotion -----------------------------------------------------------------------------

TORCH = {d: getattr(torch, d.name) for d in D.ALL_DTYPES if d.name != "bool"} | {D.bool_: torch.bool}


@pytest.mark.parametrize("a,b", list(itertools.product(D.ALL_DTYPES, repeat=2)))
def test_promotion_matches_torch(a, b):
    assert TORCH[D.promote(a, b)] == torch.promote_types(TORCH[a], TORCH[b])


@pytest.mark.parametrize("a", D.ALL_DTYPES)
@pytest.mark.parametrize("scalar", [True, 2, 2.5])
def test_promotion_with_python_scalars_matches_torch(a, scalar):
    kind = {bool: "b", int: "i", float: "f"}[type(scalar)]
    want = torch.result_type(torch.zeros(2, dtype=TORCH[a]), scalar)
    assert TORCH[D.promote_with_weak(a, kind)] == want


@fusec.kernel
def add_kernel(x, y):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] + y[t]
    return out


def test_traced_types_follow_promotion():
    x = fusec.TensorSpec([10], fl.int8)
    y = fusec.TensorSpec([10], fl.float16)
    ir_text = add_kernel.compile(x, y, backend="interpret").asm["ir"]
    assert "add(" in ir_text and "tile<f16>[16]" in ir_text      # 1024 fitted to 10


# -- errors ---------------------------------------------------------------------------------

@fusec.kernel
def unknown_function(x):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = fl.expp(x[t])
    return out


def test_unknown_fl_function_points_at_the_source():
    with pytest.raises(fusec.CompilationError) as info:
        unknown_function(np.zeros(4, np.float32))
    msg = str(info.value)
    assert "unknown function fl.expp" in msg and "test_frontend.py" in msg and "out[t] = fl.expp(x[t])" in msg
    caret_line = msg.splitlines()[-1]
    source_line = msg.splitlines()[-2]
    assert source_line[caret_line.index("^"):].startswith("fl.expp")


def test_unsupported_syntax_is_named():
    @fusec.kernel
    def bad(x):
        out = fusec.empty_like(x)
        for t in fusec.tile(x.shape[0]):
            while True:
                pass
        return out

    with pytest.raises(fusec.CompilationError, match="While"):
        bad(np.zeros(4, np.float32))


def test_shape_clash_names_both_shapes():
    @fusec.kernel
    def bad(x):
        out = fusec.empty_like(x)
        for tm, tn in fusec.tile([x.shape[0], x.shape[1]], block=[4, 8]):
            out[tm, tn] = x[tm, tn] + fl.zeros([4, 4], fl.float32)
        return out

    with pytest.raises(fusec.CompilationError, match=r"\[4, 8\].*\[4, 4\]"):
        bad(np.zeros((4, 8), np.float32))


def test_argument_errors_name_the_parameter():
    with pytest.raises(TypeError, match="'y'"):
        add_kernel(np.zeros(4, np.float32), "not a tensor")
    with pytest.raises(TypeError, match="add_kernel"):
        add_kernel(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="'x'.*complex"):
        add_kernel(np.zeros(4, np.complex64), np.zeros(4, np.float32))


def test_tile_sizes_spread_into_the_call_get_an_error_saying_how_to_pass_them():
    @fusec.kernel
    def spread(x):
        out = fusec.empty_like(x)
        for tm, tn in fusec.tile(*x.shape):
            out[tm, tn] = x[tm, tn]
        return out
    with pytest.raises(fusec.CompilationError, match=r"fusec.tile\(x.shape\)") as info:
        spread(np.zeros((4, 4), np.float32))
    assert "fusec.tile(*x.shape)" in str(info.value)          # the source line, pointed at


def test_rank_errors():
    with pytest.raises(fusec.CompilationError, match="cannot unpack 1 values into 2 names"):
        transpose(np.zeros(5, np.float32))

    @fusec.kernel
    def bad(x):
        out = fusec.empty_like(x)
        for t in fusec.tile(x.shape[0]):
            out[t] = x[t, t]
        return out

    with pytest.raises(fusec.CompilationError, match="too many indices.*'x' of rank 1"):
        bad(np.zeros(5, np.float32))


def test_frontend_debug_reraises_raw(monkeypatch):
    monkeypatch.setenv("FUSEC_FRONTEND_DEBUG", "1")
    with pytest.raises(Exception) as info:
        unknown_function(np.zeros(4, np.float32))
    assert not isinstance(info.value, fusec.CompilationError)
    assert "fl.expp" in str(info.value)


def test_loop_carried_type_change_is_reported():
    @fusec.kernel
    def bad(x):
        out = fusec.empty_like(x)
        for t in fusec.tile(x.shape[0]):
            acc = fl.zeros([t], fl.int32)
            for i in range(3):
                acc = acc + x[t]
            out[t] = acc
        return out

    with pytest.raises(fusec.CompilationError, match="'acc' changes type"):
        bad(np.zeros(4, np.float32))


def test_mean_of_ints_and_bitwise_on_floats_are_rejected():
    @fusec.kernel
    def bad(x):
        out = fusec.empty_like(x)
        for t in fusec.tile(x.shape[0]):
            out[t] = x[t] & x[t]
        return out

    with pytest.raises(fusec.CompilationError, match="bitwise and needs bool or int"):
        bad(np.zeros(4, np.float32))


def test_fl_outside_kernel_raises():
    with pytest.raises(RuntimeError, match="only be used inside"):
        fl.exp(1.0)
