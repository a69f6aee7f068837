"""Split reductions (passes/tile_split.py): long column reductions and full reductions run
as two launches (chunk partials, then their reduction and the epilogue) and agree with
float64 numpy; groups that must not split (a row reduction, a value varying along the
reduced axis that needs the reduction) keep one launch per group and stay right."""
import sys
from pathlib import Path

import numpy as np
import pytest

import fusec
import fusec.language as fl


@fusec.kernel
def column_stats(x, w):
    total = (x * w).sum(axis=0)
    top = x.max(axis=0, keepdims=True)
    low = x.min(axis=0)
    return total * 2.0 + 1.0, top, low, x * 3.0


@fusec.kernel
def weight_grad(x, g):
    """A norm weight's gradient: a sum over the batch and sequence dims."""
    return (x * g).sum(axis=(0, 1), keepdims=True), (x * g).max(axis=(0, 1))


@fusec.kernel
def column_mean(x):
    return x.to(fl.float32).mean(axis=0)


@fusec.kernel
def total(x):
    return x.sum()


@fusec.kernel
def centered(x):
    return x - x.mean(axis=0, keepdims=True)


@fusec.kernel
def row_sums(x):
    return x.sum(axis=1)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) - 0.25


@pytest.mark.parametrize("rows, cols", [(513, 1), (1000, 37), (4097, 5), (2000, 130)])
def test_column_reductions_split_and_match_float64(rows, cols):
    x, w = _rand(rows, cols), _rand(1, cols, seed=1)
    total_, top, low, tripled = column_stats(x, w)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(total_, (x64 * w).sum(0) * 2 + 1, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(top, x.max(0, keepdims=True))
    np.testing.assert_array_equal(low, x.min(0))
    np.testing.assert_array_equal(tripled, x * np.float32(3.0))
    assert column_stats.compile(x, w).num_launches == 2


@pytest.mark.parametrize("shape", [(8, 512, 100), (3, 700, 33)])
def test_reductions_over_leading_dims_chunk_the_longest(shape):
    x, g = _rand(*shape), _rand(*shape, seed=2)
    total_, top = weight_grad(x, g)
    compiled = weight_grad.compile(x, g)
    assert compiled.num_launches == 2
    assert "ceiling(g_s1/" in compiled.asm["tile"]       # the 512 / 700 dim is chunked
    prod = x.astype(np.float64) * g
    np.testing.assert_allclose(total_, prod.sum((0, 1), keepdims=True), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(top, (x * g).max((0, 1)))


def test_small_column_reductions_are_not_split():
    x, w = _rand(300, 40), _rand(1, 40)
    assert column_stats.compile(x, w).num_launches == 1
    np.testing.assert_array_equal(column_stats(x, w)[1], x.max(0, keepdims=True))


def test_bfloat16_column_mean_accumulates_partials_in_float32():
    torch = pytest.importorskip("torch")
    x = torch.randn(3000, 24, dtype=torch.bfloat16) + 3.0      # a sum of same-sign values
    got = column_mean(x)
    want = x.double().mean(0)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    assert column_mean.compile(x).num_launches == 2


@pytest.mark.parametrize("n", [300, 40000, 100000])
def test_full_reductions(n):
    x = _rand(n)
    np.testing.assert_allclose(total(x), x.astype(np.float64).sum(), rtol=1e-5, atol=1e-4)


def test_full_reduction_of_a_matrix_chunks_its_rows():
    x = _rand(100, 3000)
    compiled = total.compile(x)
    assert compiled.num_launches == 2
    np.testing.assert_allclose(compiled(x), x.astype(np.float64).sum(), rtol=1e-5, atol=1e-3)


def test_full_reduction_in_the_interpreter():
    x = _rand(40000)
    compiled = total.compile(x, backend="interpret")
    assert "ceiling(x_s0/4096)" in compiled.asm["tile"]
    np.testing.assert_allclose(compiled(x), x.astype(np.float64).sum(), rtol=1e-5, atol=1e-4)


def test_a_reduction_broadcast_back_and_row_reductions_are_not_split():
    x = _rand(2000, 33)
    np.testing.assert_allclose(centered(x), x - x.astype(np.float64).mean(0, keepdims=True),
                               rtol=1e-4, atol=1e-4)
    assert "_partials" not in centered.compile(x).asm["tile"]
    y = _rand(33, 2000)
    np.testing.assert_allclose(row_sums(y), y.astype(np.float64).sum(1), rtol=1e-4, atol=1e-3)
    assert row_sums.compile(y).num_launches == 1


@fusec.kernel
def squares_total(x):
    return (x * x).sum()


def test_elementwise_producers_fuse_into_a_full_reduction():
    """(x * x).sum(): the product is computed where it is summed (one launch below the split
    threshold, the chunk launch of the split above it), never written out."""
    for shape in ((1000,), (300, 500)):
        x = _rand(*shape)
        compiled = squares_total.compile(x)
        assert compiled.num_launches == (1 if len(shape) == 1 else 2)
        assert "not fused" not in str(compiled.module.kernel().attrs.get("fusion_notes", ""))
        np.testing.assert_allclose(compiled(x), (x.astype(np.float64) ** 2).sum(), rtol=1e-5)


@pytest.mark.parametrize("shape", [(8, 100, 96), (3, 700, 33)])
def test_row_and_column_sums_of_a_shared_cast_stay_apart(shape):
    """RMSNorm's backward: the weight's gradient sums over (0, 1), the input's needs a row
    sum; both read g.to(float32). Kept in separate groups (the cast copied into each), each
    with an axis to run in parallel, and right against float64."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tensor_kernels import rmsnorm_backward
    rng = np.random.default_rng(shape[1])
    x, g = (rng.standard_normal(shape).astype(np.float32) - 0.2 for _ in range(2))
    w = rng.standard_normal(shape[2]).astype(np.float32)
    rstd = (1.0 / np.sqrt((x.astype(np.float64) ** 2).mean(2, keepdims=True) + 1e-6)
            ).astype(np.float32)
    compiled = rmsnorm_backward.compile(x, g, w, rstd)
    assert compiled.num_launches == 3          # the split column sum (2), the row group (1)
    dw, dx = compiled(x, g, w, rstd)
    x64, g64, w64, r64 = (a.astype(np.float64) for a in (x, g, w, rstd))
    row = (g64 * w64 * x64).sum(2, keepdims=True)
    np.testing.assert_allclose(dw, (g64 * x64 * r64).sum((0, 1)), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx, g64 * w64 * r64 - x64 * row * r64 ** 3 / shape[2],
                               rtol=1e-4, atol=1e-4)
