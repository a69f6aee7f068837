"""Matmul kernels for the tensor-core lowering's tests (tests/compile: NVRTC builds and
emulated runs; tests/gpu), beside tests/unit/test_ops.py's plain `matmul` and
examples/matmul_epilogue.py's bias + relu epilogue. Each one reaches a different part of
backends/cuda/mma.py and fragments.py; `reference` gives their float64 results."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import fusec
import fusec.language as fl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "unit"))
sys.path.insert(0, str(HERE.parent / "examples"))
from matmul_epilogue import matmul_bias_relu  # noqa: E402
from test_ops import matmul  # noqa: E402


@fusec.kernel
def matmul_nt(a, bt):
    """b given transposed ([N, K]): a permuted operand, staged through registers."""
    M, K = a.shape
    N = bt.shape[0]
    out = fusec.empty([M, N], a.dtype)
    for tm, tn in fusec.tile([M, N]):
        acc = fl.zeros([tm, tn], fl.float32)
        for tk in fusec.tile(K):
            acc += fl.dot(a[tm, tk], bt[tn, tk].T)
        out[tm, tn] = acc
    return out


@fusec.kernel
def matmul_add_silu(a, b, c, bias):
    """The accumulator starts from a loaded tile; an epilogue value read twice (a register
    tile on the fragment layout)."""
    M, K = a.shape
    N = b.shape[1]
    out = fusec.empty([M, N], a.dtype)
    for tm, tn in fusec.tile([M, N]):
        acc = c[tm, tn].to(fl.float32)
        for tk in fusec.tile(K):
            acc += fl.dot(a[tm, tk], b[tk, tn])
        x = acc + bias[tn].to(fl.float32)[None, :]
        out[tm, tn] = x * fl.sigmoid(x)
    return out


@fusec.kernel
def matmul_softmax(a, b):
    """A row softmax of each program's [tm, tn] block of a @ b (of whole rows when the N
    block covers N): reductions need the accumulator in a buffer."""
    M, K = a.shape
    N = b.shape[1]
    out = fusec.empty([M, N], fl.float32)
    for tm, tn in fusec.tile([M, N]):
        acc = fl.zeros([tm, tn], fl.float32)
        for tk in fusec.tile(K):
            acc += fl.dot(a[tm, tk], b[tk, tn])
        e = fl.exp(acc - fl.max(acc, axis=1, keepdims=True))
        out[tm, tn] = e / fl.sum(e, axis=1, keepdims=True)
    return out


@fusec.kernel
def batched_bias_relu(a, b, bias):
    """Whole tensors: a batched matmul ([B, M, K] @ [B, K, N], or a 2-D b shared by the
    batch) with its epilogue, tiled by the tile pass: one batch element a program."""
    return (fl.relu(a @ b + bias) * 0.5).to(a.dtype)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _silu(x):
    return x / (1 + np.exp(-x))


# name -> (kernel, tensor shapes for (M, K, N), scalar / constexpr arguments after the
# tensors, float64 reference from the tensors' values, output dtype: None for a's)
KERNELS = {
    "plain": (matmul, lambda m, k, n: [(m, k), (k, n)], [fl.float32],
              lambda a, b: a @ b, "float32"),
    "bias_relu": (matmul_bias_relu, lambda m, k, n: [(m, k), (k, n), (n,)], [0.5],
                  lambda a, b, bias: np.maximum(a @ b + bias, 0) * 0.5, None),
    "nt": (matmul_nt, lambda m, k, n: [(m, k), (n, k)], [], lambda a, bt: a @ bt.T, None),
    "add_silu": (matmul_add_silu, lambda m, k, n: [(m, k), (k, n), (m, n), (n,)], [],
                 lambda a, b, c, bias: _silu(a @ b + c + bias), None),
    "batched": (batched_bias_relu, lambda m, k, n: [(3, m, k), (3, k, n), (n,)], [],
                lambda a, b, bias: np.maximum(a @ b + bias, 0) * 0.5, None),
    "batched_shared_b": (batched_bias_relu, lambda m, k, n: [(2, m, k), (k, n), (n,)], [],
                         lambda a, b, bias: np.maximum(a @ b + bias, 0) * 0.5, None),
    "softmax": (matmul_softmax, lambda m, k, n: [(m, k), (k, n)], [],
                lambda a, b: _softmax(a @ b), "float32"),
}
