"""The Kernel's call cache: a repeated call with arguments of the same geometry skips the
dispatch, and anything that changes the compile or the launch parameters misses it."""
import numpy as np
import pytest

import fusec


@fusec.kernel
def scale(x, s):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] * s
    return out


@fusec.kernel
def add_into(x, y):
    for t in fusec.tile(x.shape[0]):
        x[t] = x[t] + y[t]


def test_repeated_calls_hit_the_cache_and_read_new_data():
    x = np.arange(100, dtype=np.float32)
    scale(x, 2.0)
    assert len(scale._calls) == 1
    for k in range(3):
        y = np.random.default_rng(k).standard_normal(100).astype(np.float32)
        np.testing.assert_array_equal(scale(y, 2.0), y * np.float32(2.0))
    assert len(scale._calls) == 1


def test_scalar_values_and_shapes_are_part_of_the_key():
    x = np.ones(37, dtype=np.float32)
    assert np.signbit(scale(x, -0.0)).all()
    assert not np.signbit(scale(x, 0.0)).any()         # -0.0 == 0.0, but not the same call
    np.testing.assert_array_equal(scale(np.ones(38, np.float32), 3.0), np.full(38, 3.0))
    assert scale(np.ones(5, np.float64), 1.5).dtype == np.float64


def test_a_read_only_array_still_gets_its_error_after_a_cached_call():
    x = np.zeros(16, np.float32)
    y = np.ones(16, np.float32)
    add_into(x, y)
    add_into(x, y)
    np.testing.assert_array_equal(x, np.full(16, 2.0))
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        add_into(x, y)


def test_keyword_calls_and_unkeyed_types_take_the_full_dispatch():
    x = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(scale(x, s=2.0), x * 2)
    np.testing.assert_array_equal(scale(x, np.float32(2.0)), x * 2)


def test_parameters_are_keyed_like_tensors():
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.arange(12, dtype=torch.float32), requires_grad=False)
    scale._calls.clear()
    scale(w, 2.0)
    assert len(scale._calls) == 1           # a model's weights take the cached path too
    with torch.no_grad():
        w.mul_(-1)
    torch.testing.assert_close(scale(w, 2.0), w.detach() * 2)
    assert len(scale._calls) == 1


@fusec.kernel
def row_stats(x):
    """Two outputs and a whole-tensor row reduction (a multi-output CPU launch)."""
    return x.sum(axis=1), (x * x).max(axis=1)


@fusec.kernel
def count_positive(x):
    total = fusec.zeros([1], fusec.language.int32)      # a zeroed output, atomically added
    for t in fusec.tile(x.shape[0]):
        fusec.language.atomic_add(total[0], fusec.language.sum(
            (x[t] > 0).to(fusec.language.int32)))
    return total


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_cpu_calls_after_the_first_take_the_fixed_launch(kind):
    """On the CPU a call keyed like an earlier one fills the native functions' argument
    slots with its pointers only (CompiledCPUKernel.fixed_launch): new outputs each call,
    of the inputs' kind, right for new data, strided inputs included."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    as_kind = (lambda a: a) if kind == "numpy" else torch.from_numpy
    row_stats._calls.clear()
    for k in range(3):
        base = rng.standard_normal((9, 70)).astype(np.float32)
        x = as_kind(base[:, 3:60])                       # strided rows
        sums, peaks = row_stats(x)
        want = base[:, 3:60].astype(np.float64)
        np.testing.assert_allclose(np.asarray(sums), want.sum(1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(peaks), (want * want).max(1), rtol=1e-6)
        assert type(sums) is type(x)
        counted = count_positive(as_kind(base.ravel()))
        assert int(np.asarray(counted)[0]) == int((base > 0).sum())
    assert len(row_stats._calls) == 1 and len(count_positive._calls) >= 1
    first, second = row_stats(x), row_stats(x)
    assert first[0] is not second[0]                     # each call its own outputs
