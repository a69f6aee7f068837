"""The compiled CPU backend's IR-level tests (tests/unit/test_llvm_cpu.py: every op on
every dtype with inf/NaN/-0.0 and full-range ints, casts, reductions, dot, masks, strides,
atomics, control flow, grids, scalar params, poisoned outputs) re-run on the CUDA backend's
generated source in the CPU emulation (cuda_emulator.py), against the interpreter."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import cuda_emulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_llvm_cpu as cpu_tests  # noqa: E402

pytestmark = pytest.mark.skipif(cuda_emulator.compiler() is None,
                                reason="needs a host C++ compiler (g++)")

# CPU-only checks (vector instructions, thread pools) are not re-run.
_SKIP = {"test_contiguous_elementwise_is_vectorized", "test_bias_gelu_large_runs_on_threads"}


@pytest.fixture(autouse=True)
def _emulated_cuda(monkeypatch):
    monkeypatch.setattr(cpu_tests, "compile_cpu", lambda kernel, *a, **k:
                        cuda_emulator.EmulatedKernel(kernel))


for _name in dir(cpu_tests):
    if _name.startswith("test_") and _name not in _SKIP | {"test_atomic_add"}:
        globals()[_name] = getattr(cpu_tests, _name)

ATOMIC_DTYPES = ("i32", "i64", "f32", "f64")       # CUDA's atomicAdd overloads


@pytest.mark.parametrize("short", ["i32", "i64", "u8", "f32", "f64", "f16", "bf16", "bool"])
def test_atomic_add(short):
    if short in ATOMIC_DTYPES:
        cpu_tests.test_atomic_add(short)
        return
    name = cpu_tests.DTYPES[short].name
    with pytest.raises(NotImplementedError, match=f"atomic_add .* on {name} tensors"):
        cpu_tests.test_atomic_add(short)
