"""Kernels written only from DESIGN.md section 1 (the user contract), on both CPU backends,
numpy and torch inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fusec
import fusec.language as fl
from conftest import assert_close


@fusec.kernel
def masked_row_max(x, limit: float):
    M, N = x.shape
    out = fusec.empty([M], x.dtype)
    idx = fusec.empty([M], fl.int32)
    for tm in fusec.tile(M, block=4):
        row = fl.load(x[tm, :], mask=x[tm, :] < limit, other=-1e30)
        out[tm] = row.max(axis=1)
        idx[tm] = fl.argmax(row, axis=1)
        fl.store(x[tm, 3], fl.full([tm], 7.0, x.dtype), mask=tm.index % 2 == 0)
    return out, idx


def test_load_store_with_masks_and_multiple_outputs(backend):
    x = np.random.default_rng(0).standard_normal((10, 30)).astype(np.float32)
    original = x.copy()
    out, idx = masked_row_max(x, 0.5)
    masked = np.where(original < 0.5, original, -1e30)
    assert_close(out, masked.max(1), "float32")
    np.testing.assert_array_equal(idx, masked.argmax(1))
    assert (x[::2, 3] == 7.0).all() and (x[1::2, 3] == original[1::2, 3]).all()


@fusec.kernel(static_shapes=True)
def outer_product(a, b):
    out = fusec.zeros([a.shape[0], b.shape[0]], fl.float32)
    for ti, tj in fusec.tile([a.shape[0], b.shape[0]]):
        out[ti, tj] = a[ti].to(fl.float32)[:, None] * b[tj].to(fl.float32)[None, :]
    return out


def test_static_shapes_and_broadcasting(backend):
    a = torch.randn(13, dtype=torch.float16)
    b = torch.randn(29, dtype=torch.float64)
    got = outer_product(a, b)
    assert isinstance(got, torch.Tensor)
    assert_close(got.numpy(), a.double().numpy()[:, None] * b.numpy()[None, :], "float32")


@fusec.kernel
def gather_rows(table, ids):
    n = ids.shape[0]
    D = table.shape[1]
    out = fusec.empty([n, D], table.dtype)
    for t in fusec.tile(n):
        rows = ids[t]
        cols = fl.arange(0, 16)
        out[t.index[:, None], cols[None, :]] = table[rows[:, None], cols[None, :]]
    return out


def test_embedding_gather(backend):
    table = np.random.default_rng(1).standard_normal((50, 16)).astype(np.float32)
    ids = np.array([3, 0, 49, 7, 7, 12, 60], dtype=np.int64)     # 60: out of bounds -> 0
    got = gather_rows(table, ids)
    want = np.where((ids < 50)[:, None], table[np.minimum(ids, 49)], 0.0)
    np.testing.assert_array_equal(got, want)


@fusec.kernel
def matmul_t(a, b, ALPHA: fusec.constexpr):
    M, K = a.shape
    N = b.shape[0]
    out = fusec.empty([M, N], fl.float32)
    for tm, tn in fusec.tile([M, N]):
        acc = fl.zeros([tm, tn], fl.float32)
        for tk in fusec.tile(K, block=16):
            acc = acc + fl.dot(a[tm, tk], fl.trans(b[tn, tk]))
        out[tm, tn] = acc * ALPHA
    return out


def test_matmul_with_transposed_operand_and_constexpr(backend):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((33, 45)).astype(np.float32)
    b = rng.standard_normal((21, 45)).astype(np.float32)
    got = matmul_t(a, b, 2.0)
    assert_close(got / 7, (a.astype(np.float64) @ b.T.astype(np.float64)) * 2.0 / 7, "float32")


@fusec.kernel
def count_positive(x, n: int):
    out = fusec.zeros([1], fl.int64)
    for t in fusec.tile(n, block=64):
        fl.atomic_add(out[0], fl.sum((x[t] > 0).to(fl.int64)))
    return out


def test_int_param_as_extent_and_atomics(backend):
    x = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    assert count_positive(x, 1000)[0] == (x > 0).sum()
    assert count_positive(x, 10)[0] == (x[:10] > 0).sum()


def test_empty_tensors(backend):
    @fusec.kernel
    def double(x):
        out = fusec.empty_like(x)
        for t in fusec.tile(x.shape[0]):
            out[t] = x[t] * 2
        return out

    assert double(np.zeros(0, np.float32)).shape == (0,)


def test_compile_for_cpu_from_specs_and_explain(capsys):
    ck = matmul_t.compile(fusec.TensorSpec((64, 32), fl.float32),
                          fusec.TensorSpec((48, 32), fl.float32), 1.0, target="cpu")
    assert ck.num_launches == 1 and "llvm" in ck.asm and "asm" in ck.asm
    text = ck.asm["ir"]
    assert str(fusec.ir.parse(text)) == text
    fusec.explain(matmul_t, fusec.TensorSpec((64, 32), fl.float32),
                  fusec.TensorSpec((48, 32), fl.float32), 1.0)
    assert "dot(" in capsys.readouterr().out


def test_wrong_dtype_and_device_errors_name_the_argument():
    with pytest.raises(TypeError, match="'x'"):
        masked_row_max([[1.0]], 0.5)
    with pytest.raises(TypeError, match="'limit'"):
        masked_row_max(np.zeros((2, 2), np.float32), "high")
