"""Scans without a GPU: the CUDA C backend's warp scans run on the CPU emulation
(cuda_emulator.py: real threads, shuffles through memory) against the interpreter, and the
scan kernels of tests/unit/test_scan.py build to sm_80 and sm_90 cubins through both GPU
backends."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import fusec
import fusec.language as fl

import cuda_emulator
import test_cuda_compile as cuda_builds
import test_ptx_compile as ptx_builds
from conftest import assert_close, output_float64

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_scan as scans  # noqa: E402

ARCHS = ("sm_80", "sm_90")
emulated = pytest.mark.skipif(cuda_emulator.compiler() is None,
                              reason="needs a host C++ compiler (g++)")


def _emulated(kernel, args, consts, warps=4):
    ck = kernel.compile(*args, *consts, backend="interpret")
    return (output_float64(cuda_emulator.Emulated(ck, warps)(*args, *consts)),
            output_float64(ck(*args, *consts)))


@emulated
@pytest.mark.parametrize("kind", ["sum", "prod", "max", "min"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.bool_])
def test_warp_scans_of_tiles(kind, reverse, dtype):
    """Rows of 100 (4 segments of 32, the last partial) in tiles of 4 rows, 4 warps."""
    x = scans._input(kind, dtype, (10, 100), 7)
    got, want = _emulated(scans.tile_scans, [x], [kind, reverse])
    assert_close(got, want, "exact" if np.dtype(dtype).kind in "bi" else np.dtype(dtype).name)


@emulated
@pytest.mark.parametrize("shape, axis", [((1, 1), 1), ((7, 33), 0), ((3, 1000), 1),
                                         ((2, 5, 9), 1), ((130,), 0)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("warps", [1, 2, 8])
def test_warp_scans_of_whole_tensors(shape, axis, reverse, warps):
    """Rows fewer than the warps, more, and not a multiple of them; rows along an outer
    axis; a 1-D tensor (one row)."""
    x = scans._input("sum", np.float32, shape, 11)
    got, want = _emulated(scans.tensor_scans, [x], ["sum", axis, reverse], warps)
    assert_close(got, want, "float32")


@emulated
@pytest.mark.parametrize("kind", ["sum", "max"])
@pytest.mark.parametrize("reverse", [False, True])
def test_scans_walked_in_chunks(kind, reverse):
    """9000 > 8192: a loop over chunks with the carry in a loop-carried value."""
    x = scans._input(kind, np.float32, (2, 9000), 13)
    got, want = _emulated(scans.tensor_scans, [x], [kind, 1, reverse])
    assert_close(got, want, "float32")


@emulated
def test_the_fused_softmax_scan_kernel():
    x = np.random.default_rng(1).standard_normal((9, 300)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal(300).astype(np.float32)
    got, want = _emulated(scans.fused_scan, [x, w], [])
    assert_close(got, want, "float32")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_scan_kernels_build(arch, backend):
    check = cuda_builds.assert_cubin if backend == "cuda" else ptx_builds.assert_cubin
    for kind in ("sum", "prod", "max", "min"):
        for dtype in ("bool", "int8", "bfloat16", "float32"):
            x = fusec.TensorSpec([10, 100], getattr(fl, dtype))
            check(scans.tile_scans.compile(x, kind, kind == "max", backend=backend,
                                           target=arch), arch)
    x = fusec.TensorSpec([7, 33], fl.float16)
    check(scans.tensor_scans.compile(x, "sum", 0, True, backend=backend, target=arch), arch)
    x = fusec.TensorSpec([3, 20000], fl.bfloat16)             # walked in chunks
    check(scans.tensor_scans.compile(x, "sum", 1, True, backend=backend, target=arch), arch)
