"""Kernels written with whole-tensor statements (no tile loops): fused and tiled by the
compiler. Shared by the CPU tests (tests/unit/test_tensor_level.py) and the GPU tests; the
anchor ones come from examples/whole_tensor.py."""
import sys
from pathlib import Path

import fusec
import fusec.language as fl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from whole_tensor import (bias_gelu, bias_gelu_rowsum, layernorm, rmsnorm,  # noqa: E402,F401
                          softmax)


@fusec.kernel
def log_softmax(x):
    x32 = x.to(fl.float32)
    shifted = x32 - x32.max(axis=1, keepdims=True)
    return (shifted - fl.log(fl.exp(shifted).sum(axis=1, keepdims=True))).to(x.dtype)


@fusec.kernel
def column_softmax(x):
    e = fl.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


@fusec.kernel
def into_output(x, out):
    out[:, :] = fl.where(x > 0, x, 0.5 * x)
    return out


@fusec.kernel
def scale_by_total(x):
    return x / x.sum()          # a full reduction, then its broadcast: two launches


@fusec.kernel
def row_and_column_means(x):
    return x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True)


@fusec.kernel
def mlp_block(x, w1, b1, w2, b2):
    """A residual MLP block: two matmuls, each with its epilogue fused (two launches)."""
    h = fl.gelu(x @ w1 + b1)
    return x + (h @ w2 + b2)


@fusec.kernel
def normalized_rows_matmul(x, w):
    """A reduction feeding the matmul's K dimension: not fused into the matmul."""
    return (x / x.sum(axis=1, keepdims=True)) @ w


@fusec.kernel
def softmax_of_matmul(x, w):
    logits = x @ w
    e = fl.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@fusec.kernel
def half_matmul_epilogue(a, b, bias):
    """bf16/fp16 in: the prologue casts ride along in the K loop, f32 accumulation."""
    return fl.silu(a @ b + bias).to(a.dtype)
