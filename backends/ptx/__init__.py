"""The PTX backend: the LLVM lowering of backends/llvm with its NVPTX target, PTX emitted by
llvmlite, linked into a cubin for an exact arch by nvJitLink, launched by the CUDA backend's
runtime (one GPU thread per program: a correct-first mapping).

  kernel.py    compile_ptx() and CompiledPTXKernel
  link.py      PTX + relocatable device code -> cubin (nvJitLink), errors with its log
  libm.py      the device math library the NVPTX code calls (CUDA C, NVRTC, -rdc)
"""
from .kernel import CompiledPTXKernel, compile_ptx
from .link import NVJitLinkError

__all__ = ["CompiledPTXKernel", "NVJitLinkError", "compile_ptx"]
