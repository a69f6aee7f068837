"""Transposed loads (autotune/transposes.py): found in the traced IR as tile-loop dims, and
given square tiles of 32 on those dims by the GPU backends' policy and model mode (the
cost model does not price them); the CPU and kernels without transposes keep their tiles."""
from __future__ import annotations

import pytest

import fusec
import fusec.language as fl
from fusec import TensorSpec
from fusec.autotune.transposes import TRANSPOSE_BLOCK, transpose_blocks, transposed_dims
from fusec.compiler import trace
from fusec.specialize import describe


def permuted(perm, scale=2.0):
    def copy(a):
        return fl.permute(a, perm) * scale
    return copy


def tile_transpose(a):
    M, N = a.shape
    out = fusec.empty((N, M), a.dtype)
    for tn, tm in fusec.tile((N, M)):
        out[tn, tm] = fl.permute(a[tm, tn].to(fl.float32), (1, 0)).to(a.dtype)
    return out


def traced(fn, shape):
    params = [describe("a", TensorSpec(list(shape), "bfloat16"), False, False)[1]]
    return trace(fn, params)[0].kernel()


def test_a_2d_transpose_pairs_the_output_rows_with_the_input_rows():
    kernel = traced(permuted((1, 0)), (300, 200))
    (pair,) = transposed_dims(kernel)
    # out[i, j] = a[j, i]: out's last axis walks a's rows, out's first a's contiguous axis
    loops = {op.attrs["dim"]: op.attrs["extent"] for op in kernel.walk()
             if op.name == "tile_for"}
    assert str(loops[pair[0]]) == "a_s0" and str(loops[pair[1]]) == "a_s1"


def test_a_tile_kernel_permuting_its_load_after_a_cast_is_found():
    assert len(transposed_dims(traced(tile_transpose, (300, 200)))) == 1


def twice_permuted(first, second):
    def copy(a):
        return fl.permute(fl.permute(a, first), second) * 2.0
    return copy


def test_a_chain_of_permutes_is_seen_composed():
    # attention's k^T after the head split: [B, T, H, D] -> (0, 2, 1, 3) -> (0, 1, 3, 2),
    # neither moving the last axis back: a transpose of T and D
    kernel = traced(twice_permuted((0, 2, 1, 3), (0, 1, 3, 2)), (2, 40, 3, 24))
    (pair,) = transposed_dims(kernel)
    loops = {op.attrs["dim"]: str(op.attrs["extent"]) for op in kernel.walk()
             if op.name == "tile_for"}
    assert (loops[pair[0]], loops[pair[1]]) == ("a_s1", "a_s3")
    # two permutes that together keep the last axis are not one
    assert transposed_dims(traced(twice_permuted((1, 0, 2), (1, 0, 2)), (8, 30, 40))) == ()
    assert transposed_dims(traced(twice_permuted((0, 2, 1), (0, 2, 1)), (8, 30, 40))) == ()


def test_a_permute_read_also_by_another_op_counts_on_its_own():
    def both(a):
        p = fl.permute(a, (1, 0))
        return p * 2.0 + fl.permute(p, (1, 0))      # the second composes to the identity
    assert len(transposed_dims(traced(both, (40, 40)))) == 1


@pytest.mark.parametrize("perm", [(1, 0, 2), (0, 1, 2)])
def test_permutes_that_keep_the_last_axis_are_not_transposes(perm):
    assert transposed_dims(traced(permuted(perm), (8, 30, 40))) == ()


def test_transpose_blocks_sets_the_pair_and_flattens_the_other_parallel_dims():
    assert transpose_blocks({0: 1, 1: 8, 2: 8, 3: 512}, [(2, 3)], {0, 1, 2, 3}) == \
        {0: 1, 1: 1, 2: TRANSPOSE_BLOCK, 3: TRANSPOSE_BLOCK}
    assert transpose_blocks({0: 8, 1: 512}, (), {0, 1}) == {0: 8, 1: 512}


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("autotune", [True, "default"])
def test_gpu_backends_tile_a_transpose_32_by_32(backend, autotune):
    kernel = fusec.kernel(permuted((1, 0)), autotune=autotune)
    ck = kernel.compile(TensorSpec([8192, 8192], "bfloat16"), backend=backend,
                        target="sm_90")
    assert list(ck.config.blocks) == [32, 32]
    kernel4 = fusec.kernel(permuted((0, 2, 3, 1)), autotune=autotune)
    ck = kernel4.compile(TensorSpec([8, 512, 16, 64], "bfloat16"), backend=backend,
                         target="sm_90")
    assert list(ck.config.blocks)[2:] == [32, 32]


def test_the_cpu_and_plain_elementwise_kernels_keep_their_tiles():
    kernel = fusec.kernel(permuted((1, 0)))
    cpu = kernel.compile(TensorSpec([2048, 2048], "float32"), backend="cpu")
    assert list(cpu.config.blocks) != [32, 32]
    plain = fusec.kernel(permuted((0, 1)))
    ck = plain.compile(TensorSpec([8192, 8192], "bfloat16"), backend="cuda", target="sm_90")
    assert list(ck.config.blocks) != [32, 32]


def test_a_transpose_runs_correctly_under_its_policy_tiles():
    np = pytest.importorskip("numpy")
    kernel = fusec.kernel(permuted((1, 0), scale=3.0))
    x = np.random.default_rng(0).standard_normal((70, 45)).astype(np.float32)
    got = kernel.compile(x, backend="interpret", config=fusec.Config(blocks=[32, 32]))(x)
    np.testing.assert_allclose(got, 3.0 * x.T, rtol=1e-6)


def added(a, b):
    return a + b


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_a_transposed_view_passed_in_gets_the_transpose_tiles(backend):
    """A parameter whose unit stride is not on its last axis (a transposed view) is read
    across its rows by the lanes: the GPU policy tiles that pair 32 by 32, as a permute."""
    kernel = fusec.kernel(added)
    shape = (8, 512, 1024)
    rows = TensorSpec(shape, "bfloat16")
    columns = TensorSpec(shape, "bfloat16", strides=(512 * 1024, 1, 512))
    ck = kernel.compile(rows, columns, backend=backend, target="sm_90")
    assert list(ck.config.blocks)[1:] == [32, 32]
    assert list(kernel.compile(rows, rows, backend=backend, target="sm_90").config.blocks) \
        != [1, 32, 32]
    params = [describe(n, s, False, False)[1] for n, s in (("a", rows), ("b", columns))]
    (pair,) = transposed_dims(trace(added, params)[0].kernel())
    assert pair == (2, 1)       # lanes walk the last axis; b is contiguous along dim 1


def test_size_one_dims_do_not_count_as_the_contiguous_axis():
    """A size-1 dim has a unit stride whatever the layout: (1, M, N) with strides
    (M N, 1, M) is still a transposed view, a [1, N] row is not one."""
    kernel = fusec.kernel(added)
    rows = TensorSpec((1, 512, 1024), "bfloat16")
    columns = TensorSpec((1, 512, 1024), "bfloat16", strides=(512 * 1024, 1, 512))
    ck = kernel.compile(rows, columns, backend="cuda", target="sm_90")
    assert list(ck.config.blocks)[1:] == [32, 32]
    row = TensorSpec((1, 4096), "bfloat16", strides=(1, 1))
    plain = TensorSpec((1, 4096), "bfloat16")
    params = [describe(n, s, False, False)[1] for n, s in (("a", plain), ("b", row))]
    assert transposed_dims(trace(added, params)[0].kernel()) == ()
