"""The compiled CPU backend's IR-level tests (tests/unit/test_llvm_cpu.py: every op on every
dtype with inf/NaN/-0.0 and full-range ints, casts, reductions, dot, masks, strides,
atomics, control flow, grids, scalar params, outputs poisoned with 0xFF) re-run on the
GPU, through each GPU backend (compile_cuda, compile_ptx) for this device's arch: numpy
arguments copied to CUDA tensors with the same strides, results copied back, compared with
the interpreter."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fusec
from fusec.backends.cuda import compile_cuda
from fusec.backends.ptx import compile_ptx
from fusec.ir.types import TensorType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_llvm_cpu as cpu_tests  # noqa: E402

pytestmark = pytest.mark.gpu

# CPU-only checks (vector instructions, thread pools); negative strides: torch has none
_SKIP = {"test_contiguous_elementwise_is_vectorized", "test_bias_gelu_large_runs_on_threads",
         "test_strided_negative_and_broadcast_inputs", "test_argument_errors",
         "test_atomic_add"}
COMPILERS = {"cuda": compile_cuda, "ptx": compile_ptx}
# CUDA C's atomicAdd overloads; the PTX backend's LLVM atomics take every dtype
ATOMIC_DTYPES = {"cuda": ("i32", "i64", "f32", "f64"),
                 "ptx": ("i32", "i64", "u8", "f32", "f64", "f16", "bf16", "bool")}


def _torch_dtype(dtype):
    return getattr(torch, dtype.name)


class OnGPU:
    """compile_cpu's stand-in: `run(args)` with numpy arrays, executed on the GPU."""

    def __init__(self, kernel, compile_gpu):
        self.ck = compile_gpu(kernel, arch=fusec.arrays.cuda_arch())
        self.num_launches = self.ck.num_launches
        body = kernel.regions[0]
        allocs = [op.results[0] for op in kernel.walk() if op.name == "alloc"]
        self.values = list(body.args) + allocs

    def run(self, args) -> None:
        dev, back = [], []
        for a, v in zip(args, self.values):
            if isinstance(a, np.ndarray) and isinstance(v.type, TensorType):
                t, flat_dev, flat_host = self._to_device(a, v.type.dtype)
                dev.append(t)
                back.append((flat_dev, flat_host))
            else:
                dev.append(a)
        self.ck.run(dev)
        torch.cuda.synchronize()
        for flat_dev, flat_host in back:
            if flat_host.size and flat_host.flags.writeable:    # (broadcast views are not)
                flat_host[...] = flat_dev.cpu().view(_int_view(flat_host)).numpy().view(
                    flat_host.dtype)

    @staticmethod
    def _to_device(a: np.ndarray, dtype):
        """A CUDA tensor with a's shape and strides over a copy of the memory it spans."""
        item = a.itemsize
        strides = [s // item for s in a.strides]
        if any(s < 0 for s in strides):
            pytest.skip("torch tensors have no negative strides")
        span = 1 + sum((n - 1) * s for n, s in zip(a.shape, strides)) if a.size else 0
        flat = np.lib.stride_tricks.as_strided(a, shape=(span,), strides=(item,))
        host = torch.from_numpy(flat.copy().view(_np_int_view(flat)))
        flat_dev = host.cuda().view(_torch_dtype(dtype))
        return torch.as_strided(flat_dev, a.shape, strides), flat_dev, flat


def _np_int_view(a: np.ndarray):
    return {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}[a.itemsize]


def _int_view(a: np.ndarray):
    return {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.itemsize]


@pytest.fixture(autouse=True, params=sorted(COMPILERS))
def gpu_backend(request, monkeypatch):
    compile_gpu = COMPILERS[request.param]
    monkeypatch.setattr(cpu_tests, "compile_cpu",
                        lambda kernel, *a, **k: OnGPU(kernel, compile_gpu))
    return request.param


for _name in dir(cpu_tests):
    if _name.startswith("test_") and _name not in _SKIP:
        globals()[_name] = getattr(cpu_tests, _name)


@pytest.mark.parametrize("short", ATOMIC_DTYPES["ptx"])
def test_atomic_add(short, gpu_backend):
    if short not in ATOMIC_DTYPES[gpu_backend]:
        pytest.skip(f"no {short} atomic_add on the {gpu_backend} backend")
    cpu_tests.test_atomic_add(short)
