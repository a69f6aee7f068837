"""compile_ptx: a kernel op (after passes) -> LLVM IR (the CPU backend's lowering, NVPTX
target) -> PTX (llvmlite) -> cubin (nvJitLink, with the device math library when the code
calls it), and the compiled kernel, launched by the CUDA backend's runtime.

    ck = compile_ptx(kernel_op, arch="sm_90", warps=4)     # no GPU needed
    ck.asm["llvm"], ck.asm["llvm-opt"], ck.asm["ptx"], ck.asm["cubin"]
    ck.run(args)       # as backends.interpret.run, with torch CUDA tensors

One thread block of warps * 32 threads runs one program of a launch's grid
(llvm/simt.py), as in the CUDA C backend.
"""
from __future__ import annotations

from ...ir.core import Op
from ..cuda import nvrtc
from ..cuda.kernel import CompiledCUDAKernel, function_names
from ..cuda.layout import Layout
from ..llvm import nvptx
from ..stages import Stages
from . import libm
from .link import LinkInput, link


class CompiledPTXKernel(CompiledCUDAKernel):
    """A kernel compiled to a cubin through LLVM NVPTX. `run(args)` follows
    backends.interpret.run with torch CUDA tensors (params, then one output per alloc)."""

    def __repr__(self):
        return f"<CompiledPTXKernel {self.name} {self.arch} launches={self.num_launches}>"


def compile_ptx(kernel: Op, arch: str = "sm_90", warps: int = 4) -> CompiledPTXKernel:
    """Lower a kernel op (after passes) to PTX for `arch` and link it into a cubin."""
    if kernel.name != "kernel":
        raise TypeError(f"compile_ptx expects a kernel op, got {kernel.name!r}")
    nvrtc.check_arch(arch, "ptx")
    if not isinstance(warps, int) or isinstance(warps, bool) or not 1 <= warps <= 32:
        raise ValueError(f"ptx backend: warps must be an int in 1..32, got {warps!r}")
    layout = Layout(kernel)
    names = function_names(kernel, len(layout.launches))
    llvm_ir, scratch = nvptx.emit_module(kernel, layout, names, arch, warps * 32)
    opt_ir, ptx, math = nvptx.compile_module(llvm_ir, arch)
    inputs = [LinkInput("ptx", ptx.encode(), f"{names[0] if names else 'fusec'}.ptx")]
    if math:
        inputs.append(LinkInput("cubin", libm.library(arch), "fusec_libm.cubin"))
    cubin = link(inputs, arch)
    asm = Stages({"llvm": llvm_ir, "llvm-opt": opt_ir, "ptx": ptx, "cubin": cubin})
    return CompiledPTXKernel(kernel, arch, warps, asm, layout, names, scratch)
