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

import llvmlite
import llvmlite.binding as llvm

from ...ir.core import Op
from ..cuda import nvrtc
from ..cuda.kernel import CompiledCUDAKernel, function_names
from ..cuda.layout import Layout
from ..llvm import nvptx
from ..stages import Stages
from . import libm
from . import link as nvjitlink
from .link import LinkInput, link


class CompiledPTXKernel(CompiledCUDAKernel):
    """A kernel compiled to a cubin through LLVM NVPTX. `run(args)` follows
    backends.interpret.run with torch CUDA tensors (params, then one output per alloc)."""

    def __repr__(self):
        return f"<CompiledPTXKernel {self.name} {self.arch} launches={self.num_launches}>"


def compile_ptx(kernel: Op, arch: str = "sm_90", warps: int = 4, cache=None
                ) -> CompiledPTXKernel:
    """Lower a kernel op (after passes) to PTX for `arch` and link it into a cubin. cache:
    the disk cache of fusec.autotune (key/get/put) keeping LLVM's and nvJitLink's output
    (two thirds of a compile) by LLVM IR, arch and toolchain versions, or None."""
    if kernel.name != "kernel":
        raise TypeError(f"compile_ptx expects a kernel op, got {kernel.name!r}")
    nvrtc.check_arch(arch, "ptx")
    if not isinstance(warps, int) or isinstance(warps, bool) or not 1 <= warps <= 32:
        raise ValueError(f"ptx backend: warps must be an int in 1..32, got {warps!r}")
    layout = Layout(kernel)
    names = function_names(kernel, len(layout.launches))
    llvm_ir, scratch = nvptx.emit_module(kernel, layout, names, arch, warps * 32)
    key = cached = None
    if cache is not None:
        # the device math library is NVRTC's build of libm.source()
        key = cache.key("ptx-cubin", llvm_ir, arch, llvm.llvm_version_info,
                        llvmlite.__version__, nvjitlink.version(), nvrtc.version(),
                        libm.source())
        cached = cache.get(key, required=_ARTIFACTS)
    if cached is not None:
        opt_ir, ptx = cached["kernel.opt.ll"].decode(), cached["kernel.ptx"].decode()
        cubin = cached["kernel.cubin"]
    else:
        opt_ir, ptx, cubin = _build(llvm_ir, arch, names)
        if cache is not None:
            cache.put(key, {"kernel.opt.ll": opt_ir.encode(), "kernel.ptx": ptx.encode(),
                            "kernel.cubin": cubin}, {"kind": "ptx-cubin", "arch": arch})
    asm = Stages({"llvm": llvm_ir, "llvm-opt": opt_ir, "ptx": ptx, "cubin": cubin})
    compiled = CompiledPTXKernel(kernel, arch, warps, asm, layout, names, scratch)
    compiled.from_cache = cached is not None
    return compiled


_ARTIFACTS = frozenset(("kernel.opt.ll", "kernel.ptx", "kernel.cubin"))


def _build(llvm_ir: str, arch: str, names: list[str]) -> tuple[str, str, bytes]:
    """(optimized LLVM IR, PTX, cubin): LLVM's NVPTX code generation, then nvJitLink with
    the device math library when the code calls it."""
    opt_ir, ptx, math = nvptx.compile_module(llvm_ir, arch)
    inputs = [LinkInput("ptx", ptx.encode(), f"{names[0] if names else 'fusec'}.ptx")]
    if math:
        inputs.append(LinkInput("cubin", libm.library(arch), "fusec_libm.cubin"))
    return opt_ir, ptx, link(inputs, arch)
