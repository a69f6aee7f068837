"""Whole-tensor statements (no tile loops) on both CPU backends: fused into as few launches
as their dependences allow, tiled, and numerically right against float64 numpy; what does
not fuse says why; bad shapes get clear errors."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import fusec
import fusec.language as fl
from fusec.passes.manager import DEFAULT_PIPELINE, PassManager
from conftest import as_input, assert_close, output_float64, random_array

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dot_kernels as DOT  # noqa: E402
import tensor_kernels as K  # noqa: E402

SHAPES = [(1, 1), (7, 100), (33, 257)]
DTYPES = ["float32", "bfloat16"]
_erf = np.vectorize(math.erf)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _layernorm(x, w, b, eps):
    c = x - x.mean(axis=1, keepdims=True)
    return c / np.sqrt((c * c).mean(axis=1, keepdims=True) + eps) * w + b


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _run(kernel, *args):
    out = kernel(*args)
    compiled = list(kernel._compiled.values())[-1]
    return out, compiled


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_row_kernels_are_one_launch_and_right(backend, dtype, shape):
    x, xd = random_array(shape, dtype, seed=1)
    x = as_input(x, dtype)
    w, wd = random_array(shape[1:], "float32", seed=2)
    b, bd = random_array(shape[1:], "float32", seed=3)
    cases = [
        (K.softmax, (x,), _softmax(xd)),
        (K.log_softmax, (x,), np.log(_softmax(xd))),
        (K.layernorm, (x, w, b, 1e-5), _layernorm(xd, wd, bd, 1e-5)),
        (K.rmsnorm, (x, w, 1e-5), xd / np.sqrt((xd * xd).mean(1, keepdims=True) + 1e-5) * wd),
        (K.bias_gelu, (x, b), _gelu(xd + bd)),
    ]
    for kernel, args, want in cases:
        got, compiled = _run(kernel, *args)
        assert compiled.num_launches == 1, kernel.fn.__name__
        assert_close(output_float64(got), want, dtype, kernel.fn.__name__)


def test_bias_gelu_rowsum_is_one_launch_with_two_outputs(backend):
    x, xd = random_array((37, 45), "float32", seed=4)
    b, bd = random_array((45,), "float32", seed=5)
    (y, s), compiled = _run(K.bias_gelu_rowsum, x, b)
    assert compiled.num_launches == 1
    want = _gelu(xd + bd)
    assert_close(y, want, "float32", "y")
    assert_close(s, want.sum(axis=1), "float32", "row sums")


def test_column_softmax_reduces_the_other_axis(backend):
    x, xd = random_array((50, 19), "float32", seed=6)
    got, compiled = _run(K.column_softmax, x)
    assert compiled.num_launches == 1
    assert_close(got, _softmax(xd.T).T, "float32")


def test_writing_into_an_output_argument(backend):
    x, xd = random_array((9, 30), "float32", seed=7)
    out = np.full((9, 30), np.nan, np.float32)           # poisoned
    got = K.into_output(x, out)
    assert got is out
    assert_close(out, np.where(xd > 0, xd, 0.5 * xd), "float32")


def test_full_reduction_then_broadcast_is_two_launches(backend):
    x, xd = random_array((40, 70), "float32", seed=8)
    got, compiled = _run(K.scale_by_total, x)
    assert compiled.num_launches == 2
    assert "global barrier" in compiled.asm["fuse"]
    assert_close(got, xd / xd.sum(), "float32")


def test_reductions_over_different_axes_split_and_stay_right(backend):
    x, xd = random_array((21, 34), "float32", seed=9)
    got, compiled = _run(K.row_and_column_means, x)
    assert compiled.num_launches == 2
    assert "not fused" in compiled.asm["fuse"]
    assert_close(got, xd - xd.mean(1, keepdims=True) - xd.mean(0, keepdims=True), "float32")


def test_stages_show_the_groups_and_the_tiles():
    x = np.zeros((8, 64), np.float32)
    compiled = K.softmax.compile(x, backend="interpret")
    assert "group = 0" in compiled.asm["fuse"]
    assert "tile_for" not in compiled.asm["ir"] and "tile_for" in compiled.asm["tile"]
    for stage in ("ir", "fuse", "tile"):
        m = fusec.ir.parse(compiled.asm[stage])
        fusec.ir.verify(m)
        assert str(m) == compiled.asm[stage]


def test_a_size_bucket_change_recompiles_and_a_mismatch_is_refused():
    x1 = np.ones((4, 60), np.float32)
    x2 = np.ones((4, 200), np.float32)            # another power-of-two bucket of N
    for x in (x1, x2):
        assert_close(K.softmax(x), np.full(x.shape, 1 / x.shape[1]), "float32")
    K.bias_gelu(x1, np.ones(60, np.float32))      # compiled for this bucket: calls check
    b = np.ones(59, np.float32)
    with pytest.raises(ValueError, match=r"x.shape\[1\] = 60 and b.shape\[0\] = 59"):
        K.bias_gelu(x1, b)


def test_broadcast_of_static_mismatch_is_a_compile_error():
    @fusec.kernel(static_shapes=True)
    def bad(x, b):
        return x + b
    with pytest.raises(fusec.CompilationError, match="cannot be broadcast"):
        bad(np.ones((3, 4), np.float32), np.ones(5, np.float32))


def test_whole_tensor_errors_name_the_construct():
    @fusec.kernel
    def vector_matmul(a, b):
        return a @ b

    @fusec.kernel
    def computed_value_in_a_tile_loop(x):
        y = x * 2
        out = fusec.empty_like(x)
        for tm in fusec.tile(x.shape[0]):
            out[tm, :] = y[tm, :]
        return out

    @fusec.kernel
    def gathered(x, i):
        return x[x] * 2             # a whole tensor as an index: a gather, not a view

    x = np.ones((4, 4), np.float32)
    with pytest.raises(fusec.CompilationError, match="dot/@ of whole tensors needs two "
                                                     "tensors of 2 or more dims"):
        vector_matmul(np.ones(4, np.float32), x)
    with pytest.raises(fusec.CompilationError, match="shapes cannot be broadcast"):
        vector_matmul(np.ones((2, 4, 4), np.float32), np.ones((3, 4, 4), np.float32))
    with pytest.raises(fusec.CompilationError, match="inner dimensions differ"):
        vector_matmul(np.ones((2, 4, 4), np.float32), np.ones((2, 5, 4), np.float32))
    with pytest.raises(fusec.CompilationError, match="write it into a tensor"):
        computed_value_in_a_tile_loop(x)
    with pytest.raises(fusec.CompilationError, match="indexed with ints, sizes, slices and None"):
        gathered(x, 1)


def test_mixing_whole_tensor_statements_with_a_tile_loop(backend):
    @fusec.kernel
    def mixed(x):
        scaled = fusec.empty_like(x)
        scaled[:, :] = x * 3.0                     # a launch of its own
        out = fusec.empty_like(x)
        for tm in fusec.tile(x.shape[0]):          # reads what it wrote: runs after it
            out[tm, :] = scaled[tm, :] + 1.0
        return out

    x, xd = random_array((10, 13), "float32", seed=10)
    got, compiled = _run(mixed, x)
    assert compiled.num_launches == 2
    assert_close(got, xd * 3 + 1, "float32")


def test_in_place_update_of_an_argument(backend):
    @fusec.kernel
    def center_rows(x):
        x[:, :] = x - x.mean(axis=1, keepdims=True)
        return x

    x, xd = random_array((6, 50), "float32", seed=11)
    center_rows(x)
    assert_close(x, xd - xd.mean(1, keepdims=True), "float32")


def test_int_and_bool_tensors(backend):
    @fusec.kernel
    def count_positive(x):
        return (x > 0).sum(axis=1), fl.maximum(x, 0).max(axis=1)

    x = np.random.default_rng(12).integers(-5, 5, size=(9, 23)).astype(np.int32)
    counts, top = count_positive(x)
    np.testing.assert_array_equal(counts, (x > 0).sum(1))
    np.testing.assert_array_equal(top, np.maximum(x, 0).max(1))


def test_rows_longer_than_a_tile_are_walked_in_chunks(backend):
    x, xd = random_array((3, 9001), "float32", seed=13)
    w, wd = random_array((9001,), "float32", seed=14)
    b, bd = random_array((9001,), "float32", seed=15)
    got, compiled = _run(K.softmax, x)
    assert compiled.num_launches == 1
    assert "parallel = false" in compiled.asm["tile"]       # the sequential chunk loops
    assert_close(got, _softmax(xd), "float32", "softmax")
    got, _ = _run(K.layernorm, x, w, b, 1e-5)
    assert_close(got, _layernorm(xd, wd, bd, 1e-5), "float32", "layernorm")
    (y, s), _ = _run(K.bias_gelu_rowsum, x, b)
    assert_close(s, _gelu(xd + bd).sum(axis=1), "float32", "row sums")


def test_argmax_over_a_row_longer_than_a_tile_is_a_clear_error():
    @fusec.kernel
    def row_argmax(x):
        return x.argmax(axis=1)
    with pytest.raises(fusec.CompilationError, match="argmax .* not supported yet"):
        row_argmax(np.ones((2, 10000), np.float32))


def test_explain_says_why_ops_were_not_fused():
    import io
    text = io.StringIO()
    fusec.explain(K.scale_by_total, np.ones((5, 6), np.float32), backend="interpret", file=text)
    out = text.getvalue()
    assert "===== fusion: 2 launch(es) per call =====" in out
    assert "not fused:" in out and "global barrier" in out.split("===== fusion")[1]


def test_residual_mlp_block_fuses_each_matmul_with_its_epilogue(backend):
    rng = np.random.default_rng(16)
    M, D, H = 19, 37, 53
    x, w1, b1, w2, b2 = (rng.uniform(-1, 1, s).astype(np.float32)
                         for s in ((M, D), (D, H), (H,), (H, D), (D,)))
    got, compiled = _run(K.mlp_block, x, w1, b1, w2, b2)
    assert compiled.num_launches == 2
    h = _gelu(x.astype(np.float64) @ w1 + b1)
    assert_close(got, x + (h @ w2 + b2), "float32")


def test_matmul_refusals_keep_results_right(backend):
    rng = np.random.default_rng(17)
    x = rng.uniform(0.5, 2, (23, 41)).astype(np.float32)
    w = rng.uniform(-1, 1, (41, 29)).astype(np.float32)
    got, compiled = _run(K.normalized_rows_matmul, x, w)
    assert compiled.num_launches == 2
    assert "a reduction feeding a matmul" in compiled.asm["fuse"]
    xd = x.astype(np.float64)
    assert_close(got, (xd / xd.sum(1, keepdims=True)) @ w, "float32")
    got, compiled = _run(K.softmax_of_matmul, x, w)
    assert compiled.num_launches == 2
    assert_close(got, _softmax(xd @ w), "float32")


@pytest.mark.parametrize("sa,sb,sbias", [
    ((3, 17, 33), (3, 33, 21), (21,)),          # batched operands, odd sizes
    ((3, 17, 33), (33, 21), (3, 1, 21)),        # a 2-D b shared by the batch, bias per batch
    ((2, 3, 5, 7), (3, 7, 9), (9,)),            # two batch dims, b broadcast along the first
    ((1, 5, 7), (4, 7, 9), (9,)),               # a's batch dim of 1 broadcast
    ((4, 1, 7), (4, 7, 1), (1,)),               # M = N = 1
])
def test_batched_matmul_with_its_epilogue_is_one_launch(backend, sa, sb, sbias):
    a, ad = random_array(sa, "float32", seed=30)
    b, bd = random_array(sb, "float32", seed=31)
    bias, biasd = random_array(sbias, "float32", seed=32)
    got, compiled = _run(DOT.batched_bias_relu, a, b, bias)
    assert compiled.num_launches == 1
    batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    grid = [op for op in compiled.module.walk() if op.name == "tile_for" and op.attrs["parallel"]]
    assert [op.attrs["block"] for op in grid[:len(batch)]] == [1] * sum(n > 1 for n in batch)
    assert_close(got, np.maximum(ad @ bd + biasd, 0) * 0.5, "float32")


def test_batched_matmul_with_a_transposed_operand_and_two_matmuls(backend):
    q, qd = random_array((3, 11, 16), "float32", seed=33)
    k, kd = random_array((3, 13, 16), "float32", seed=34)
    got, compiled = _run(K.attention_scores, q, k, 0.25)
    assert compiled.num_launches == 1
    assert_close(got, qd @ kd.transpose(0, 2, 1) * 0.25, "float32")
    x, xd = random_array((2, 9, 12), "float32", seed=35)
    w1, w1d = random_array((12, 20), "float32", seed=36)
    b1, b1d = random_array((20,), "float32", seed=37)
    w2, w2d = random_array((20, 6), "float32", seed=38)
    got, compiled = _run(K.batched_mlp, x, w1, b1, w2)
    assert compiled.num_launches == 2
    assert_close(got, _gelu(xd @ w1d + b1d) @ w2d, "float32")


def test_a_value_moving_a_batch_dim_is_not_fused_into_the_batched_matmul(backend):
    a, ad = random_array((3, 7, 5), "float32", seed=39)
    b, bd = random_array((3, 5, 4), "float32", seed=40)
    bias, biasd = random_array((3, 4), "float32", seed=41)
    got, compiled = _run(K.per_batch_bias, a, b, bias)
    assert compiled.num_launches == 2
    assert "batch dim" in compiled.asm["fuse"]
    assert_close(got, ad @ bd + biasd[:, None, :], "float32")


def test_half_matmul_with_prologue_casts(backend):
    a, ad = random_array((33, 48), "bfloat16", seed=18, low=-1, high=1)
    b, bd = random_array((48, 20), "bfloat16", seed=19, low=-1, high=1)
    bias, biasd = random_array((20,), "bfloat16", seed=20)
    got, compiled = _run(K.half_matmul_epilogue, *(as_input(v, "bfloat16") for v in (a, b, bias)))
    assert compiled.num_launches == 1
    z = ad @ bd + biasd
    assert_close(output_float64(got), z / (1 + np.exp(-z)), "bfloat16")


def test_adjacent_tile_loops_over_the_same_tiles_fuse(backend):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from device_kernels import two_fusable_passes, two_passes
    x, xd = random_array((1003,), "float32", seed=21)
    got, compiled = _run(two_fusable_passes, x)
    assert compiled.num_launches == 1
    allocs = [op for op in compiled.module.walk() if op.name == "alloc"]
    assert len(allocs) == 1                       # tmp lives in registers only
    assert_close(got, xd * 2 + 1, "float32")
    got, compiled = _run(two_passes, x)           # reads other programs' elements
    assert compiled.num_launches == 2
    assert_close(got, xd[::-1] * 2 + 1, "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_sums_recompute_the_row_pass_values_and_share_one_pass(backend, dtype):
    """LayerNorm backward: in bfloat16 the column sum of g * xhat computes xhat again from
    the params (2 bytes an element each, where a float32 buffer costs 4 written and 4 read)
    and, reading g like the other column sum, runs in one group with it; the input
    gradient's write, no longer behind a launch reading the row pass's values, joins the row
    pass: 2 launches. In float32 the buffer is no dearer than reading x and g again: it
    stays, the row pass stores dx itself (the write moves up before the column sums, which
    read the row pass's values) and the column sums share a launch: 2 launches too."""
    rows, cols = 37, 70
    x, xd = random_array((rows, cols), dtype, seed=21)
    g, gd = random_array((rows, cols), dtype, seed=22)
    w, wd = random_array((cols,), "float32", seed=23)
    meand = xd.mean(1, keepdims=True)
    rstdd = 1 / np.sqrt(((xd - meand) ** 2).mean(1, keepdims=True) + 1e-5)
    mean, rstd = meand.astype(np.float32), rstdd.astype(np.float32)
    got, compiled = _run(K.layernorm_backward, as_input(x, dtype), as_input(g, dtype),
                         mean, rstd, w)
    xhat = (xd - mean) * rstd
    gw = gd * wd
    dx = rstd / cols * (gw * cols - gw.sum(1, keepdims=True)
                        - xhat * (gw * xhat).sum(1, keepdims=True))
    for out, want, dt in zip(got, (dx, (gd * xhat).sum(0), gd.sum(0)),
                             (dtype, "float32", "float32")):
        assert_close(output_float64(out), want, dt)
    notes = compiled.asm["fuse"]
    if dtype == "bfloat16":
        assert "recomputed" in notes, notes
        assert compiled.num_launches == 2, notes
    else:
        assert "recomputed" not in notes and "write(%out0, %dx, group = 0)" in notes, notes
        assert compiled.num_launches == 2, notes


def test_full_and_zeros_outside_tile_loops_are_whole_tensors(backend):
    @fusec.kernel
    def filled(x, k):
        return x + fl.full((x.shape[0], x.shape[1]), 2.5), fl.zeros((x.shape[0], 3),
                                                                   fl.int32) + k

    x, xd = random_array((5, 7), "float32", seed=30)
    got, compiled = _run(filled, x, 4)
    assert_close(got[0], xd + 2.5, "float32")
    np.testing.assert_array_equal(got[1], np.full((5, 3), 4, np.int32))
    assert compiled.num_launches == 2             # two iteration spaces
    with pytest.raises(fusec.CompilationError, match="fl.full outside tile loops takes sizes"):
        fusec.kernel(lambda_free_bad_full).compile(x)


def lambda_free_bad_full(x):
    return fl.full((x, 2), 1.0)


@fusec.kernel
def lower_triangle_and_positions(x, k: int):
    rows = fl.arange(0, x.shape[0])
    cols = fl.arange(x.shape[1])
    lower = fl.where(cols[None, :] <= rows[:, None] + k, x, 0.0)
    rolled = fl.take(x, fl.fmod(cols + 2, x.shape[1]), axis=1)   # an index read through
    return lower, (fl.arange(3, x.shape[1] + 3) * 2).to(fl.float32)[None, :] * x + rolled


@pytest.mark.parametrize("shape", [(1, 1), (7, 100), (33, 257)])
def test_arange_outside_tile_loops_is_an_index_range_computed_where_read(backend, shape):
    """fl.arange of whole tensors (int64, a size as its end): computed from the indices of
    the tiles reading it (nothing stored): tril with an offset, scaled positions, a take
    whose index is computed from one."""
    x, xd = random_array(shape, "float32", seed=31)
    got, compiled = _run(lower_triangle_and_positions, x, 1)
    r, c = np.indices(shape)
    np.testing.assert_array_equal(got[0], np.where(c <= r + 1, x, 0.0))
    rolled = xd[:, (np.arange(shape[1]) + 2) % shape[1]]
    assert_close(got[1], (np.arange(3, shape[1] + 3) * 2.0)[None, :] * xd + rolled, "float32")
    assert "iota" not in str(compiled.module)          # lowered by the tile pass
    assert compiled.num_launches == 1
    for stage, text in compiled.asm.items():           # the text form of every pass's IR
        if stage == "ir" or stage.split(".")[0] in DEFAULT_PIPELINE:
            m = fusec.ir.parse(text)
            fusec.ir.verify(m)
            assert str(m) == text, stage
    PassManager(DEFAULT_PIPELINE, verify=True).run(fusec.ir.parse(compiled.asm["ir"]))


def test_arange_outside_tile_loops_errors():
    def float_start(x):
        return fl.arange(0.5, x.shape[0])

    def backwards(x):
        return fl.arange(5, 2) + x

    x = np.zeros((4,), np.float32)
    with pytest.raises(fusec.CompilationError, match="int start and an int or size end"):
        fusec.kernel(float_start).compile(x)
    with pytest.raises(fusec.CompilationError, match="end is before start"):
        fusec.kernel(backwards).compile(x)


@fusec.kernel
def centered_and_column_sums(x):
    x32 = x.to(fl.float32)
    y = (x32 - x32.mean(axis=1, keepdims=True)).to(fl.bfloat16).to(fl.float32)
    return y.to(fl.bfloat16), y.sum(axis=0)


def test_an_output_is_stored_by_the_launch_computing_it(backend):
    """The row pass's bf16 value, widened and rounded back to be stored by the column-sum
    launch (the same bits), is stored by the row pass into the output, which the column
    sums read: no buffer of its own, no copy."""
    torch = pytest.importorskip("torch")
    x = torch.randn(300, 700, generator=torch.Generator().manual_seed(44)).to(torch.bfloat16)
    (out, sums), compiled = _run(centered_and_column_sums, x)
    xd = x.double()
    y = (xd - xd.mean(1, keepdim=True)).to(torch.bfloat16).double()
    assert_close(out.double().numpy(), y.numpy(), "bfloat16")    # float32 mean: an ulp
    # the column sums add exactly the stored values
    torch.testing.assert_close(sums.double(), out.double().sum(0), rtol=1e-5, atol=1e-4)
    assert compiled.num_launches == 2
    assert [op.results[0].name for op in compiled.module.walk() if op.name == "alloc"] == \
        ["out0", "out1"]
    assert any(n.startswith("written where computed") for n in
               compiled.module.kernel().attrs["fusion_notes"])


def test_row_pass_and_column_sums_of_a_small_tensor_are_one_split_launch(backend):
    """300 x 70: the column sums' partials of all chunks fit one tile, so the row pass
    (its rows whole) takes them along: launch 1 a program per chunk of rows, storing the
    centered values and the chunk's column sums; launch 2 adds the partials."""
    torch = pytest.importorskip("torch")
    x = torch.randn(300, 70, generator=torch.Generator().manual_seed(45)).to(torch.bfloat16)
    (out, sums), compiled = _run(centered_and_column_sums, x)
    xd = x.double()
    y = (xd - xd.mean(1, keepdim=True)).to(torch.bfloat16).double()
    assert_close(out.double().numpy(), y.numpy(), "bfloat16")
    torch.testing.assert_close(sums.double(), out.double().sum(0), rtol=1e-5, atol=1e-4)
    assert compiled.num_launches == 2
    assert sorted(op.results[0].name for op in compiled.module.walk() if op.name == "alloc") \
        == ["out0", "out1", "reduced_partials"]


@fusec.kernel
def two_column_sums(x, y):
    return x.sum(axis=0), (y * 2.0).sum(axis=0), x + y


def test_column_sums_of_sizes_the_call_checks_equal_share_a_launch(backend):
    """x and y are broadcast against each other (x + y): their sizes are checked equal on
    every call, so the column sums of x and of y * 2, which read nothing in common and
    name their sizes apart, reduce the same axes of one domain: one split for both."""
    x, xd = random_array((3000, 70), "float32", seed=42)
    y, yd = random_array((3000, 70), "float32", seed=43)
    (sx, sy, total), compiled = _run(two_column_sums, x, y)
    assert compiled.num_launches == 2
    assert_close(sx, xd.sum(0), "float32")
    assert_close(sy, 2 * yd.sum(0), "float32")
    assert_close(total, xd + yd, "float32")


@fusec.kernel
def output_read_before_its_write(x):
    y = fl.exp(x - x.max(axis=1, keepdims=True))
    out = fusec.zeros(x.shape, fl.float32)
    snap = fusec.zeros(x.shape, fl.float32)
    for t in fusec.tile(x.shape[0]):
        snap[t, :] = out[t, :] + 1.0          # reads out before the write below
    out[:] = y
    return out, snap


@fusec.kernel
def through_float16(x):
    x32 = x.to(fl.float32)
    yb = (x32 - x32.mean(axis=1, keepdims=True)).to(fl.bfloat16)
    y16 = yb.to(fl.float16)
    return y16.to(fl.bfloat16), y16.to(fl.float32).sum(axis=0)


def test_an_output_read_before_it_is_written_keeps_its_write_in_place(backend):
    x, xd = random_array((5, 7), "float32", seed=45)
    (out, snap), _ = _run(output_read_before_its_write, x)
    np.testing.assert_array_equal(snap, np.ones((5, 7), np.float32))
    assert_close(out, np.exp(xd - xd.max(1, keepdims=True)), "float32")


def test_a_round_trip_through_another_16_bit_float_is_no_copy(backend):
    """bf16 -> f16 -> bf16 changes values (f16 overflows past 65504): the stored output
    is the round trip's result, not the bf16 value."""
    torch = pytest.importorskip("torch")
    x = (torch.randn(300, 70, generator=torch.Generator().manual_seed(46)) * 1e5).to(
        torch.bfloat16)
    (out, _), _ = _run(through_float16, x)
    xd = x.float()
    want = (xd - xd.mean(1, keepdim=True)).to(torch.bfloat16).to(torch.float16).to(
        torch.bfloat16)
    assert torch.isinf(want.float()).any()
    assert_close(out.float().numpy(), want.float().numpy(), "bfloat16")


def test_a_config_block_for_a_batch_dim_other_than_one_is_refused():
    a = np.ones((3, 16, 8), np.float32)
    b = np.ones((3, 8, 4), np.float32)
    bias = np.ones(4, np.float32)
    with pytest.raises(fusec.CompilationError, match="batch dim takes one element"):
        DOT.batched_bias_relu.compile(a, b, bias, backend="cpu",
                                      config=fusec.Config(blocks=[2, 16, 4, 8]))
    ck = DOT.batched_bias_relu.compile(a, b, bias, backend="cpu",
                                       config=fusec.Config(blocks=[1, 16, 4, 8]))
    np.testing.assert_allclose(ck(a, b, bias), np.maximum(a @ b + bias, 0) * 0.5)


def test_group_statistics_walk_the_long_axis_and_reduce_the_short_one_after(backend):
    """GroupNorm's statistics (torch's decomposition: var_mean over [C/G, H*W] of an
    [N, G, C/G, H*W] view) with H*W longer than one tile: the long axis is walked in chunks
    and the short one, whole in each tile, reduced after the loop."""
    x, xd = random_array((2, 3, 4, 9001), "float32", seed=21)
    (mean, var), compiled = _run(K.group_stats, x)
    assert "parallel = false" in compiled.asm["tile"]
    assert_close(mean, xd.mean(axis=(2, 3), keepdims=True), "float32", "mean")
    assert_close(var, xd.var(axis=(2, 3), keepdims=True), "float32", "variance")


def test_a_short_axis_reduced_before_the_long_one_is_a_clear_error():
    """Taking the max of the short axis first and summing the long one after leaves values
    varying along the long one to carry out of the chunk loop (a max and a sum do not
    trade places): refused by name, not computed wrong."""
    @fusec.kernel
    def short_first(x):
        return x.max(axis=2).sum(axis=2)
    with pytest.raises(fusec.CompilationError, match="reduced before the others"):
        short_first(np.ones((2, 3, 4, 9001), np.float32))


def test_a_chain_of_sums_reducing_the_short_axis_first_is_reordered(backend):
    """Two sums trade places: the long axis is summed first, in chunks, and the short one
    after the loop."""
    @fusec.kernel
    def short_first(x):
        return x.sum(axis=2).sum(axis=2), x.max(axis=2).max(axis=2)
    x, xd = random_array((2, 3, 4, 9001), "float32", seed=23)
    (total, peak), compiled = _run(short_first, x)
    assert "parallel = false" in compiled.asm["tile"]
    assert_close(total, xd.sum(axis=(2, 3)), "float32", "sum")
    assert_close(peak, xd.max(axis=(2, 3)), "float32", "max")


def test_sums_over_two_axes_too_many_elements_together_loop_over_the_outer(backend):
    """GroupNorm's backward sums H x W (each short, 16384 elements together): H is walked
    in chunks with W whole in each, the sums reordered to reduce H first."""
    x, xd = random_array((2, 3, 96, 100), "float32", seed=24)
    g, gd = random_array((2, 3, 96, 100), "float32", seed=25)
    (a, b), compiled = _run(K.pixel_sums, x, g)
    assert "parallel = false" in compiled.asm["tile"]
    assert_close(a, (xd * gd).sum(axis=(2, 3)), "float32", "sum of x * g")
    assert_close(b, xd.sum(axis=(2, 3)), "float32", "sum of x")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_16_bit_sums_over_several_axes(backend, dtype):
    """Sums and means over several axes of a 16-bit tensor (their partial sums kept in
    float32; the CUDA C emulation checks the rounding: test_cuda_emulated.py) within the
    dtype's tolerance of float64 over 10^5 elements."""
    @fusec.kernel
    def sums(x):
        return x.sum(axis=(0, 2, 3)), x.mean(axis=(2, 3)), x.sum(axis=1)
    x, xd = random_array((16, 3, 101, 90), dtype, seed=27)
    x = as_input(x, dtype)
    total, mean, rows = (output_float64(o) for o in sums(x))
    assert_close(total, xd.sum(axis=(0, 2, 3)), dtype, "sum over N, H, W")
    assert_close(mean, xd.mean(axis=(2, 3)), dtype, "mean over H, W")
    assert_close(rows, xd.sum(axis=1), dtype, "sum over C")


def test_column_sums_of_computed_values_split_with_their_producers(backend):
    """Column sums over 40000 rows of values computed from the inputs (BatchNorm's
    backward): the products are computed in the split's first launch, not written to a
    buffer by a launch of their own, and the scaling after the sums runs in its second."""
    x, xd = random_array((40000, 19), "float32", seed=28)
    g, gd = random_array((40000, 19), "float32", seed=29)
    w, wd = random_array((19,), "float32", seed=30)
    (s, sx, dw), compiled = _run(K.column_grads, x, g, w)
    tiled = compiled.asm["tile"]
    assert compiled.num_launches == 2, tiled
    assert not any("_buf = alloc" in line and "40000" in line for line in tiled.splitlines())
    d = gd * (1 - xd * xd)
    assert_close(s, d.sum(axis=0), "float32", "sum")
    assert_close(sx, (d * xd).sum(axis=0) * wd, "float32", "scaled sum")
    assert_close(dw, d * wd, "float32", "elementwise")


def test_a_bias_gradient_over_few_channels_splits_into_two_launches(backend):
    """A convolution's bias gradient: [N, C, H, W] summed over N, H and W for C = 3 rows of
    millions of elements. One program a row would leave a GPU idle: launch 1 sums chunks of
    H (W whole) for each image, launch 2 the partials of each channel."""
    x, xd = random_array((16, 3, 100, 90), "float32", seed=26)
    (total, scaled), compiled = _run(K.bias_grad, x)
    assert compiled.num_launches == 2 and "_partials" in compiled.asm["tile"]
    assert_close(scaled, xd * 0.5, "float32", "scaled input")
    assert_close(total, (xd * 0.5).sum(axis=(0, 2, 3)), "float32", "bias gradient")


def test_equal_sizes_of_unrelated_dims_get_distinct_axes(backend):
    """A group norm's statistics times its [1, G, C, 1] weight with N = G = C = 4 and static
    shapes: the weight's C dim (reached by no constraint from the [N, G, C, HW] input) must
    take an axis of size 4 that keeps N, G and C apart in the [N, G, C, 1] product."""
    @fusec.kernel(static_shapes=True)
    def scale_and_shift(x, w, b):
        mean = x.mean(axis=(2, 3), keepdims=True)
        scale = fl.rsqrt(((x - mean) * (x - mean)).mean(axis=(2, 3), keepdims=True) + 1e-5)
        scale = scale * w.to(fl.float32)
        return scale, b.to(fl.float32) - mean * scale

    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(4, 4, 4, 9, generator=gen)
    w, b = (torch.randn(1, 4, 4, 1, generator=gen).to(torch.bfloat16) for _ in range(2))
    got = scale_and_shift(x, w, b)
    x64, w64, b64 = (output_float64(t) for t in (x, w, b))
    mean = x64.mean(axis=(2, 3), keepdims=True)
    scale = w64 / np.sqrt(x64.var(axis=(2, 3), keepdims=True) + 1e-5)
    assert_close(output_float64(got[0]), scale, "float32")
    assert_close(output_float64(got[1]), b64 - mean * scale, "float32")


def test_an_update_of_a_split_mean_joins_the_launch_finishing_the_mean(backend):
    """BatchNorm's running-mean update comes after the variance that reads the mean: its
    ops move up before that read, so the launch finishing the split mean computes it (5
    launches: mean and variance two each, the normalization), not a launch of its own."""
    x, xd = random_array((70001, 16), "float32", seed=9)
    rm, rmd = random_array((16,), "float32", seed=10)
    (y, new_mean), compiled = _run(K.batch_norm_with_running_mean, x, rm)
    assert compiled.num_launches == 5, compiled.module.kernel().attrs.get("fusion_notes")
    assert_close(new_mean, xd.mean(0) * 0.1 + rmd * 0.9, "float32")
    assert_close(y, (xd - xd.mean(0)) / np.sqrt(xd.var(0) + 1e-5), "float32")


def test_an_update_in_place_stays_after_the_reads_of_the_old_values(backend):
    """The running mean is read (the old values) before it is overwritten: the write is not
    moved up past that read."""
    x, xd = random_array((70001, 16), "float32", seed=11)
    rm, rmd = random_array((16,), "float32", seed=12)
    y = K.running_mean_updated_in_place(x, rm)
    d = xd - xd.mean(0) + rmd
    assert_close(y, d / np.sqrt((d * d).mean(0) + 1e-5), "float32")
    assert_close(rm, xd.mean(0) * 0.1 + rmd * 0.9, "float32")


def test_a_full_reduction_rides_along_the_row_pass_over_the_same_tensor(backend):
    """The maximum over everything, split in chunk partials, joins the row sums' pass over
    x (one read of x): 2 launches, the second reducing the partials."""
    x, xd = random_array((3001, 1000), "float32", seed=13)
    (sums, top), compiled = _run(K.row_sums_and_total_max, x)
    assert compiled.num_launches == 2, compiled.asm["fuse"]
    assert_close(sums, np.exp(xd).sum(1), "float32")
    assert_close(top, np.abs(xd).max(), "float32")
