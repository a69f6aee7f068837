"""Kernels written with whole-tensor statements (no tile loops): fused and tiled by the
compiler. Shared by the CPU tests (tests/unit/test_tensor_level.py) and the GPU tests; the
anchor ones come from examples/whole_tensor.py."""
import sys
from pathlib import Path

import numpy as np

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
def group_stats(x):
    """GroupNorm's statistics over the last two axes of [N, G, C/G, H*W]."""
    mean = x.mean(axis=(2, 3), keepdims=True)
    d = x - mean
    return mean, (d * d).sum(axis=(2, 3), keepdims=True) / (x.shape[2] * x.shape[3])


@fusec.kernel
def pixel_sums(x, g):
    """GroupNorm's backward: per-channel sums over H x W of [N, C, H, W]."""
    return (x * g).sum(axis=(2, 3)), x.sum(axis=(2, 3))


@fusec.kernel
def bias_grad(x):
    """A convolution's bias gradient after an elementwise op: [N, C, H, W] summed over
    N, H and W, the product written too."""
    y = x * 0.5
    return y.sum(axis=(0, 2, 3)), y


@fusec.kernel
def column_grads(x, g, w):
    """BatchNorm's backward shape: column sums (over many rows) of values computed from the
    inputs, a scaling after the sums, an elementwise output."""
    d = g * (1 - x * x)
    return d.sum(axis=0), (d * x).sum(axis=0) * w, d * w


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


@fusec.kernel
def attention_scores(q, k, scale: float):
    """Batched q @ k^T with a transposed operand (a permute in the launch) and a scale."""
    return (q @ fl.permute(k, (0, 2, 1))) * scale


@fusec.kernel
def batched_mlp(x, w1, b1, w2):
    """[B, T, D] activations through two shared weights: each matmul one launch with its
    epilogue, batch dims as the grid's first."""
    return fl.gelu(x @ w1 + b1) @ w2


@fusec.kernel
def per_batch_bias(a, b, bias):
    """A [B, N] bias per batch element expanded to [B, 1, N]: its batch dim sits in the
    rows' place before the expand, so the expand is not fused (a second launch)."""
    return a @ b + fl.expand_dims(bias, 1)


# -- views (reshape, squeeze, flatten, slices) ------------------------------------------------

@fusec.kernel
def flat_affine(x):
    return x.reshape(-1) * 2.0 + 1.0           # a view of a param: rides in the one launch


@fusec.kernel
def reshape_plus_transpose(x):
    return x.reshape(x.shape[1], x.shape[0]) + x.T


@fusec.kernel
def softmax_of_reshaped(x):
    y = x.reshape(x.shape[0] * 2, -1)
    e = fl.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@fusec.kernel
def grouped_sums(x):
    return x.view(x.shape[0], -1, 4).sum(axis=2)   # a reshape, then a reduction


@fusec.kernel
def reshape_of_transposed(x):
    return x.T.reshape(-1)                      # torch copies a non-contiguous view too


@fusec.kernel
def reshape_of_computed(x):
    y = x * 2.0 + 1.0
    return fl.reshape(y, (-1,))                 # y computed at the reshape's indices


@fusec.kernel
def reshape_of_normalized(x):
    y = x - x.max(axis=1, keepdims=True)
    return fl.reshape(y, (-1,))                 # y needs the row max: written first


@fusec.kernel
def finite_difference(x):
    return x[1:, 2:] - x[:-1, :-2]


@fusec.kernel
def negative_bounds(x):
    return x[-3:, 1:-1:2] * 3.0


@fusec.kernel
def column_times_row(x):
    return x[:, 3][:, None] * x[-2]             # int indices drop their dim


@fusec.kernel
def window(x, k):
    return x[:, k:x.shape[1] - 1] + 0.5         # symbolic bounds


@fusec.kernel
def squeeze_unsqueeze(x, w):
    s = x.sum(axis=1, keepdims=True).squeeze(1)        # folded: no view
    return (s.unsqueeze(1) * w.squeeze(0)).flatten()


@fusec.kernel
def flatten_outer(x):
    return x.flatten(0, 1).max(axis=1)


@fusec.kernel
def rotate_half(x):
    h = x.shape[1] // 2
    return fl.cat((x[:, h:], x[:, :h]), axis=1) * 2.0     # rotary embeddings' halves


@fusec.kernel
def rows_joined(x, y):
    return fl.cat([x, y, x[:2]], axis=0) + 1.0


@fusec.kernel
def cat_of_computed(x):
    return fl.cat((x * 2.0, x[:, 3:]), axis=1)          # x * 2 computed where it lies


@fusec.kernel
def cat_then_reduce(x, y):
    return fl.cat((x, y), axis=1).max(axis=1)


@fusec.kernel
def flipped(x):
    """Reversed dims (negative slice steps) read through, of a computed value and in a
    reduction's operand."""
    return (fl.flip(x, 1) * 2.0 + fl.flip(x * 3.0, (0, -1))
            + fl.flip(x, [0]).sum(axis=1, keepdims=True))


@fusec.kernel
def embedding_rows(x, y):
    """Rows of x at positions computed from y (some outside x: they read 0): an embedding
    lookup, the index computed at the view's indices."""
    return fl.take(x, (y * 2.0 + 3.0).to(fl.int32), axis=0) * 2.0


@fusec.kernel
def taken_columns(x, y):
    """Columns of x at positions in an integer tensor, then a row reduction."""
    cols = fl.take(x, (y * 3.0 + 5.0).to(fl.int64), -1)
    return cols - cols.max(axis=1, keepdims=True)


@fusec.kernel
def gathered(x, y):
    """torch.gather along the rows: positions from y (some outside x: 0), a smaller index
    than x on the other dim, then a softmax-like normalization of what was gathered."""
    g = fl.take_along(x, (y * 3.0 + 6.0).to(fl.int32), axis=1)
    return g - g.max(axis=1, keepdims=True)


def _take_along(x, positions, axis):
    positions = positions.astype(np.int64)
    grid = list(np.indices(positions.shape, sparse=True))
    inside = (positions >= 0) & (positions < x.shape[axis])
    grid[axis] = np.where(inside, positions, 0)
    return np.where(inside, x[tuple(grid)], 0.0)


def _take(x, positions, axis):
    positions = positions.astype(np.int64)
    inside = (positions >= 0) & (positions < x.shape[axis])
    out = np.take(x, np.where(inside, positions, 0), axis=axis)
    inside = inside.reshape((1,) * axis + inside.shape + (1,) * (x.ndim - axis - 1))
    return np.where(inside, out, 0.0)


def _softmax_rows(y):
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# kernel, input shapes, int args, float64 numpy reference, launches
VIEW_CASES = [
    (flat_affine, [(7, 13)], (), lambda x: x.reshape(-1) * 2 + 1, 1),
    (reshape_plus_transpose, [(7, 13)], (), lambda x: x.reshape(13, 7) + x.T, 1),
    (softmax_of_reshaped, [(7, 26)], (), lambda x: _softmax_rows(x.reshape(14, 13)), 1),
    (grouped_sums, [(5, 12)], (), lambda x: x.reshape(5, 3, 4).sum(axis=2), 1),
    (reshape_of_transposed, [(7, 13)], (), lambda x: x.T.reshape(-1), 2),
    (reshape_of_computed, [(7, 13)], (), lambda x: (x * 2 + 1).reshape(-1), 1),
    (reshape_of_normalized, [(7, 13)], (), lambda x: (x - x.max(1, keepdims=True)).reshape(-1),
     2),
    (finite_difference, [(7, 13)], (), lambda x: x[1:, 2:] - x[:-1, :-2], 1),
    (negative_bounds, [(7, 13)], (), lambda x: x[-3:, 1:-1:2] * 3, 1),
    (column_times_row, [(7, 13)], (), lambda x: x[:, 3][:, None] * x[-2], 1),
    (window, [(7, 13)], (4,), lambda x, k: x[:, k:12] + 0.5, 1),
    (squeeze_unsqueeze, [(7, 13), (1, 13)], (),
     lambda x, w: (x.sum(1, keepdims=True) * w).reshape(-1), 2),
    (flatten_outer, [(3, 5, 7)], (), lambda x: x.reshape(15, 7).max(axis=1), 1),
    (rotate_half, [(7, 13)], (), lambda x: np.concatenate([x[:, 6:], x[:, :6]], 1) * 2, 1),
    (rows_joined, [(7, 13), (4, 13)], (), lambda x, y: np.concatenate([x, y, x[:2]]) + 1, 1),
    (cat_of_computed, [(7, 13)], (), lambda x: np.concatenate([x * 2, x[:, 3:]], 1), 1),
    (cat_then_reduce, [(7, 13), (7, 5)], (), lambda x, y: np.concatenate([x, y], 1).max(1), 1),
    (embedding_rows, [(7, 13), (4, 5)], (),
     lambda x, y: _take(x, (y * 2 + 3).astype(np.int32), 0) * 2, 1),
    (taken_columns, [(7, 13), (6,)], (),
     lambda x, y: (lambda c: c - c.max(axis=1, keepdims=True))(
         _take(x, (y * 3 + 5).astype(np.int64), 1)), 1),
    (gathered, [(7, 13), (5, 9)], (),
     lambda x, y: (lambda g: g - g.max(axis=1, keepdims=True))(
         _take_along(x, (y * 3 + 6).astype(np.int32), 1)), 1),
    (flipped, [(7, 13)], (), lambda x: (np.flip(x, 1) * 2 + np.flip(x * 3, (0, 1))
                                       + np.flip(x, 0).sum(axis=1, keepdims=True)), 1),
]


@fusec.kernel
def column_sums(x):
    """Column reductions and an elementwise result in one group (split in two launches
    when the columns are long)."""
    s = x.to(fl.float32).sum(axis=0)
    return s, x.max(axis=0, keepdims=True), x * 2.0


@fusec.kernel
def full_sum(x):
    return x.to(fl.float32).sum()


@fusec.kernel
def leading_sums(x):
    """A norm weight's gradient shape: a sum over the batch and sequence dims."""
    return x.to(fl.float32).sum(axis=(0, 1))


@fusec.kernel
def rmsnorm_backward(x, g, w, rstd):
    """RMSNorm's backward as AOT autograd gives it (bf16 in, float32 math): the weight's
    gradient (a sum over the batch and sequence dims) and the input's (a row sum), both of
    `g.to(float32)`: the shared cast must not put the column and the row sums in one group
    (no axis would be left to run in parallel)."""
    x32, g32, w32 = x.to(fl.float32), g.to(fl.float32), w.to(fl.float32)
    dw = (g32 * x32 * rstd).sum(axis=(0, 1))
    gw = g32 * w32
    row = (gw * x32).sum(axis=2, keepdims=True)
    dx = gw * rstd - x32 * (row * rstd * rstd * rstd / x.shape[2])
    return dw.to(w.dtype), dx.to(x.dtype)


@fusec.kernel
def layernorm_backward(x, g, mean, rstd, w):
    """LayerNorm's backward as aten decomposes it: the input gradient needs row sums, the
    weight and bias gradients column sums of values the row pass computes."""
    x32, g32 = x.to(fl.float32), g.to(fl.float32)
    xhat = (x32 - mean) * rstd
    gw = g32 * w
    n = x.shape[1]
    dx = rstd / n * (gw * n - gw.sum(axis=1, keepdims=True)
                     - xhat * (gw * xhat).sum(axis=1, keepdims=True))
    return dx.to(x.dtype), (g32 * xhat).sum(axis=0), g32.sum(axis=0)


@fusec.kernel
def batch_norm_with_running_mean(x, running_mean):
    """BatchNorm's statistics over rows with the running-mean update written after the
    variance that reads the mean (fuse's hoist)."""
    m = x.mean(axis=0)
    d = x - m
    v = (d * d).mean(axis=0)
    return d * fl.rsqrt(v + 1e-5), m * 0.1 + running_mean * 0.9


@fusec.kernel
def running_mean_updated_in_place(x, running_mean):
    """The same with the running mean read (old values) and then overwritten in place."""
    m = x.mean(axis=0)
    d = x - m + running_mean
    v = (d * d).mean(axis=0)
    running_mean[:] = m * 0.1 + running_mean * 0.9
    return d * fl.rsqrt(v + 1e-5)


@fusec.kernel
def row_sums_and_total_max(x):
    """A full reduction beside a row pass over the same tensor (one split launch)."""
    return fl.exp(x).sum(axis=1), fl.abs(x).max()
