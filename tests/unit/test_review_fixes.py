"""Regressions found in review: sign and width of int parameters, count-down loops,
read-only outputs, CompiledKernel argument checks, constexpr keys."""
from __future__ import annotations

import numpy as np
import pytest

import fusec
import fusec.language as fl


@fusec.kernel
def sum_from(x, k: int):
    out = fusec.zeros([1], fl.float32)
    for t in fusec.tile(1, block=1):
        acc = fl.zeros([t], fl.float32)
        for i in range(k, x.shape[0]):
            acc += x[i]
        out[t] = acc
    return out


@fusec.kernel
def sum_down(x, k: int):
    out = fusec.zeros([1], fl.float32)
    for t in fusec.tile(1, block=1):
        acc = fl.zeros([t], fl.float32)
        for i in range(k, -1, -1):
            acc += x[i]
        out[t] = acc
    return out


def test_negative_int_params_keep_bounds_checks(backend):
    x = np.arange(100, dtype=np.float32)
    assert sum_from(x, 5)[0] == x[5:].sum()
    assert sum_from(x, -40)[0] == x.sum()            # x[-40..-1] are out of bounds: 0
    ck = sum_from.compile(x, -40)
    assert "checked = [true]" in ck.asm["dce"]


def test_count_down_loops_keep_bounds_checks(backend):
    x = np.arange(100, dtype=np.float32)
    assert sum_down(x, 50)[0] == x[:51].sum()
    assert sum_down(x, 120)[0] == x.sum()


@fusec.kernel
def add_k(x, k: int):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] + k
    return out


def test_int_params_beyond_int32(backend):
    x = np.arange(4, dtype=np.int64)
    np.testing.assert_array_equal(add_k(x, 2 ** 40 + 5), x + 2 ** 40 + 5)


@fusec.kernel
def plus_c(x, C: fusec.constexpr):
    out = fusec.empty([x.shape[0]], fl.float32)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] + C
    return out


def test_constexpr_keys_tell_types_and_signed_zero_apart():
    x = np.array([127], dtype=np.int8)
    assert plus_c(x, 1.0)[0] == 128.0
    assert plus_c(x, 1)[0] == -128.0                 # int8 wraps: a different compile
    assert len(plus_c._compiled) == 2
    plus_c(x, -0.0)
    plus_c(x, 0.0)
    assert len(plus_c._compiled) == 4


@fusec.kernel
def inc_(x):
    for t in fusec.tile(x.shape[0]):
        x[t] = x[t] + 1.0
    return x


def test_read_only_arguments_written_by_the_kernel_are_refused(backend):
    x = np.frombuffer(bytes(16), dtype=np.float32)
    with pytest.raises(ValueError, match="'x' is read-only"):
        inc_(x)


def test_compiled_kernel_refuses_arguments_outside_its_specialization():
    ck = inc_.compile(fusec.TensorSpec((64,), fl.float32), backend="cpu")
    ok = np.zeros(64, np.float32)
    ck(ok)
    assert (ok == 1).all()
    with pytest.raises(ValueError, match="argument 'x' does not match"):
        ck(np.zeros(100, np.float32)[:50])


def test_rebinding_a_tensor_in_a_runtime_loop_is_an_error():
    @fusec.kernel
    def pingpong(a, b, n: int):
        for t in fusec.tile(a.shape[0]):
            for i in range(n):
                b[t] = a[t] + 1.0
                a, b = b, a
        return a

    with pytest.raises(fusec.CompilationError, match="'a' \\(a tensor\\) is rebound inside a "
                                                     "runtime loop"):
        pingpong(np.zeros(4, np.float32), np.zeros(4, np.float32), 3)


@fusec.kernel
def pick_then_max(x, y, use_y: bool):
    out = fusec.empty([x.shape[0]], fl.float32)
    for tm in fusec.tile(x.shape[0]):
        if use_y:
            r = y[tm, :]
        else:
            r = x[tm, :]
        out[tm] = fl.max(r, axis=1)
    return out


def test_lane_masks_flow_through_runtime_ifs(backend):
    x = -np.arange(1, 31, dtype=np.float32).reshape(3, 10)
    y = x - 100
    np.testing.assert_array_equal(pick_then_max(x, y, False), x.max(1))
    np.testing.assert_array_equal(pick_then_max(x, y, True), y.max(1))


@fusec.kernel
def gather_stats(x):
    out = fusec.empty([2], fl.float32)
    for t in fusec.tile(x.shape[0], block=16):
        g = x[t.index + 1]
        out[0] = fl.max(g)
        out[1] = fl.mean(g)
    return out


def test_out_of_bounds_gather_lanes_are_masked_for_reductions(backend):
    x = -np.arange(1, 11, dtype=np.float32)
    got = gather_stats(x)
    np.testing.assert_allclose(got, [x[1:].max(), x[1:].mean()], rtol=1e-6)


def test_loop_carried_value_from_a_python_number_takes_the_tile_dtype(backend):
    @fusec.kernel
    def k(x32, h16):
        out = fusec.empty([x32.shape[0]], fl.float32)
        for t in fusec.tile(x32.shape[0]):
            acc = 0.0
            for i in range(2):
                acc = acc + x32[t]
            out[t] = acc * h16[t]
        return out

    got = k(np.full(3, 1.0001, np.float32), np.ones(3, np.float16))
    np.testing.assert_allclose(got, 2.0002, rtol=1e-6)


def test_slice_steps_negative_indices_and_size_equality_are_refused():
    @fusec.kernel
    def steps(x):
        out = fusec.empty([x.shape[0]], fl.float32)
        for tm in fusec.tile(x.shape[0]):
            out[tm] = fl.sum(x[tm, ::2], axis=1)
        return out

    @fusec.kernel
    def last(x):
        out = fusec.empty([x.shape[0]], fl.float32)
        for tm in fusec.tile(x.shape[0]):
            out[tm] = x[tm, -1]
        return out

    @fusec.kernel
    def same_shape(x, y):
        assert x.shape == y.shape
        return x

    with pytest.raises(fusec.CompilationError, match="slice steps are not supported"):
        steps(np.zeros((2, 8), np.float32))
    with pytest.raises(fusec.CompilationError, match="negative indices are not supported"):
        last(np.zeros((2, 8), np.float32))
    with pytest.raises(fusec.CompilationError, match="only known at run time"):
        same_shape(np.zeros(3, np.float32), np.zeros(3, np.float32))


def test_float_floordiv_and_mod_follow_python(backend):
    @fusec.kernel
    def divmod_(a, b):
        out = fusec.empty([2, a.shape[0]], a.dtype)
        for t in fusec.tile(a.shape[0]):
            out[0, t] = a[t] // b[t]
            out[1, t] = a[t] % b[t]
        return out

    a = np.array([7.0, 1.0, -7.5, 5.0], np.float64)
    b = np.array([0.1, 0.1, 2.0, -3.0], np.float64)
    got = divmod_(a, b)
    np.testing.assert_array_equal(got[0], a // b)
    np.testing.assert_allclose(got[1], a % b)


def test_float64_sigmoid_and_gelu_keep_their_tails(backend):
    @fusec.kernel
    def tails(x):
        out = fusec.empty([2, x.shape[0]], x.dtype)
        for t in fusec.tile(x.shape[0]):
            out[0, t] = fl.sigmoid(x[t])
            out[1, t] = fl.gelu(x[t])
        return out

    got = tails(np.array([-40.0, -10.0], np.float64))
    np.testing.assert_allclose(got[0], [4.248354255291589e-18, 4.5397868702434395e-05])
    np.testing.assert_allclose(got[1][1], -7.619853024160527e-23)


def test_num_launches_counts_loops_inside_runtime_control_flow():
    @fusec.kernel
    def repeated(x, n: int):
        for i in range(n):
            for t in fusec.tile(x.shape[0]):
                x[t] = x[t] + 1.0
        return x

    ck = repeated.compile(np.zeros(3, np.float32), 3, backend="interpret")
    assert ck.num_launches == 1


def test_address_argument_may_index_with_loaded_values(backend):
    @fusec.kernel
    def histogram(idx, n_bins: int):
        out = fusec.zeros([n_bins], fl.int32)
        for t in fusec.tile(idx.shape[0], block=16):
            fl.atomic_add(out[idx[t]], fl.full([t], 1, fl.int32))
        return out

    idx = np.array([0, 2, 2, 1, 2, 0, 3], dtype=np.int32)
    np.testing.assert_array_equal(histogram(idx, 4), np.bincount(idx, minlength=4))
