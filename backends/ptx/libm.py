"""The device math library of the NVPTX code: C math functions behind the `extern "C"`
names it calls (backends/llvm/nvptx.py: DEVICE_LIBM, `__fusec_sin` / `__fusec_sinf`, ...),
written in CUDA C and compiled with NVRTC as relocatable device code, once per arch.

CUDA's own math functions give the same results as the CUDA C backend's (correctly rounded
or within 1-2 ulp, fmod exact); `--fmad=false` (nvrtc.OPTIONS) keeps their float semantics.
No libdevice (it would be a new dependency: the nvcc wheel).
"""
from __future__ import annotations

import functools

from ..cuda import nvrtc
from ..llvm.nvptx import DEVICE_LIBM, device_function

# LLVM type name -> (C type, suffix of the C math function's name)
_C_TYPES = {"float": ("float", "f"), "double": ("double", "")}


def source() -> str:
    """CUDA C of the whole library: one wrapper per function and float type."""
    lines = ["// fusec device math library: C math functions for the NVPTX code"]
    for name, arity in sorted(DEVICE_LIBM.items()):
        for llvm_type, (c_type, suffix) in _C_TYPES.items():
            params = ", ".join(f"{c_type} a{i}" for i in range(arity))
            args = ", ".join(f"a{i}" for i in range(arity))
            symbol = device_function(name, llvm_type)
            lines.append(f'extern "C" __device__ {c_type} {symbol}({params}) '
                         f"{{ return {name}{suffix}({args}); }}")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=None)
def library(arch: str) -> bytes:
    """The library as a relocatable cubin for `arch` (compiled once per process)."""
    cubin, _, _ = nvrtc.compile_source(source(), arch, "fusec_libm.cu", want_ptx=False,
                                       extra_options=("-rdc=true",))
    return cubin
