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
