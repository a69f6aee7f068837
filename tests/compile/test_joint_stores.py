"""Stores of one shape emitted in one loop by the CUDA backend (backends/joint_stores.py):
values only they read are computed once per element instead of held in register arrays,
the result matches the interpreter (CUDA C run in the emulator), and the group is not
formed where moving a store later could be seen."""
from __future__ import annotations

import numpy as np
import pytest

import fusec
import fusec.language as fl
from conftest import as_input, assert_close, output_float64, random_array
from fusec.backends.llvm.plan import Plan

import cuda_emulator


@fusec.kernel
def silu_backward(g, u, dy):
    dg = fusec.empty_like(g)
    du = fusec.empty_like(g)
    M, N = g.shape
    for tm in fusec.tile(M):
        x = g[tm, :].to(fl.float32)
        s = fl.sigmoid(x)
        d = dy[tm, :].to(fl.float32)
        du[tm, :] = (d * x * s).to(g.dtype)
        dg[tm, :] = (d * u[tm, :].to(fl.float32) * s * (1.0 + x * (1.0 - s))).to(g.dtype)
    return dg, du


@fusec.kernel
def square_of_exp(x):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        e = fl.exp(x[t])
        out[t] = e * e
    return out


@fusec.kernel
def into_params(x, a, b):
    """a and b are params: they may alias x (and each other), so x is loaded whole first."""
    for t in fusec.tile(x.shape[0]):
        s = fl.sigmoid(x[t])
        a[t] = s * 2.0
        b[t] = s + x[t]
    return a, b


@fusec.kernel
def into_one_param(x, a):
    """a may alias x: x is loaded whole (materialized) before the store."""
    for t in fusec.tile(x.shape[0], block=64):
        s = fl.sigmoid(x[t])
        a[t] = s * 2.0 + s * x[t.index + 1]
    return a


@fusec.kernel
def reads_back(x):
    """The second store reads what the first wrote, shifted (across programs: a plan
    test only): no joint loop."""
    a = fusec.empty_like(x)
    b = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0], block=64):
        s = fl.exp(x[t])
        a[t] = s
        b[t] = s + a[t.index + 1]
    return a, b


@fusec.kernel
def product_two_outputs(a, b):
    M, K = a.shape
    N = b.shape[1]
    o1 = fusec.empty([M, N], fl.float32)
    o2 = fusec.empty([M, N], fl.float32)
    for tm, tn in fusec.tile([M, N]):
        acc = fl.zeros([tm, tn], fl.float32)
        for tk in fusec.tile(K):
            acc += fl.dot(a[tm, tk], b[tk, tn])
        e = fl.exp(acc)
        o1[tm, tn] = e * 2.0
        o2[tm, tn] = e + 1.0
    return o1, o2


def _plan(kernel, *args, **plan_options):
    ck = kernel.compile(*args, backend="cuda", target="sm_90")
    return Plan(ck.module.kernel(), **plan_options)


def _materialized_ops(plan) -> list[str]:
    return sorted(v.op.name for v in plan.materialized)


def test_two_stores_share_their_values_without_materializing_them():
    g, _ = random_array((33, 100), "float32", seed=1)
    plan = _plan(silu_backward, g, g, g)
    groups = {tuple(s for s in grp) for grp in plan.joint.values()}
    assert len(groups) == 1 and len(next(iter(groups))) == 2
    assert _materialized_ops(plan) == []
    assert _materialized_ops(_plan(silu_backward, g, g, g, reload=True)) == []


def test_one_store_reading_a_value_twice_computes_it_once_per_element():
    x, _ = random_array((1000,), "float32", seed=2)
    plan = _plan(square_of_exp, x)
    assert _materialized_ops(plan) == []
    src = square_of_exp.compile(x, backend="cuda", target="sm_90").asm["cuda"]
    assert src.count("__expf") + src.count("expf(") >= 1
    assert src.count("/* slot 0 */") == 1          # one loop: no register array pass


def test_params_that_may_alias_are_loaded_whole_before_the_stores():
    x, _ = random_array((500,), "float32", seed=3)
    plan = _plan(into_params, x, x.copy(), x.copy())
    assert plan.joint == {}                 # a and b may alias each other: kept apart


def test_a_load_of_a_tensor_that_may_be_stored_is_loaded_first():
    x, _ = random_array((500,), "float32", seed=9)
    plan = _plan(into_one_param, x, x.copy())
    assert len(plan.joint) == 1
    assert _materialized_ops(plan) == ["load", "load"]     # not the sigmoid


def test_stores_beside_a_dot_are_not_joined():
    """An epilogue store walks the accumulator's fragment layout: a shared value stays
    materialized rather than being computed once per store."""
    a, _ = random_array((64, 32), "float32", seed=11)
    plan = _plan(product_two_outputs, a.astype(np.float16), a.T.copy().astype(np.float16))
    assert plan.joint == {} and "exp" in _materialized_ops(plan)


def test_a_store_read_back_keeps_its_own_loop():
    x, _ = random_array((500,), "float32", seed=4)
    plan = _plan(reads_back, x)
    assert plan.joint == {}


needs_cxx = pytest.mark.skipif(cuda_emulator.compiler() is None,
                               reason="needs a host C++ compiler (g++)")


def _emulated_vs_interpreter(kernel, args, dtype):
    ck = kernel.compile(*args, backend="interpret")
    want = [output_float64(o) for o in ck(*args)]
    got = [output_float64(o) for o in cuda_emulator.Emulated(ck)(*args)]
    for w, o in zip(want, got):
        assert_close(o, w, dtype)


@needs_cxx
@pytest.mark.parametrize("shape", [(7, 100), (33, 1000)])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_joint_stores_match_the_interpreter(shape, dtype):
    args = [as_input(random_array(shape, dtype, seed=s)[0], dtype) for s in (5, 6, 7)]
    _emulated_vs_interpreter(silu_backward, args, dtype)


@needs_cxx
def test_aliased_params_match_the_interpreter():
    x, _ = random_array((1000,), "float32", seed=8)
    ck = into_params.compile(x, x, x, backend="interpret")
    same = x.copy()
    want = output_float64(ck(same, same, same)[1])
    same = x.copy()
    got = cuda_emulator.Emulated(ck)(same, same, same)
    np.testing.assert_allclose(output_float64(got[1]), want, rtol=1e-6, atol=1e-6)


@needs_cxx
def test_in_place_through_a_joint_store_matches_the_interpreter():
    x, _ = random_array((1000,), "float32", seed=10)
    ck = into_one_param.compile(x, x, backend="interpret")
    same = x.copy()
    want = output_float64(ck(same, same))
    same = x.copy()
    got = output_float64(cuda_emulator.Emulated(ck)(same, same))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_joint_stores_on_the_cpu_match_the_interpreter(dtype):
    args = [as_input(random_array((33, 1000), dtype, seed=s)[0], dtype) for s in (12, 13, 14)]
    want = silu_backward.compile(*args, backend="interpret")(*args)
    got = silu_backward.compile(*args, backend="cpu")(*args)
    for w, o in zip(want, got):
        assert_close(output_float64(o), output_float64(w), dtype)
    x, _ = random_array((1000,), "float32", seed=15)
    same = x.copy()
    want = output_float64(into_one_param.compile(x, x, backend="interpret")(same, same))
    same = x.copy()
    got = output_float64(into_one_param.compile(x, x, backend="cpu")(same, same))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
