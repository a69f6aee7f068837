"""What the AOT builder reads from a CompiledKernel beyond its public attributes, in one
place: the backend's compiled kernel (CompiledCPUKernel / CompiledCUDAKernel: the
CompiledKernel's `native`) and the host-side facts the JIT's
CompiledKernel keeps (outputs, results, written params). When the compiler grows public
accessors for these, only this file changes."""
from __future__ import annotations

import re

from ..compiler import CompiledKernel


def backend_kernel(compiled: CompiledKernel):
    kernel = getattr(compiled, "native", None)
    if kernel is None:
        raise TypeError(f"{compiled!r}: the {compiled.backend} backend keeps no compiled "
                        "kernel object an AOT build can read")
    return kernel


def cpu_parts(compiled: CompiledKernel) -> dict:
    """Argument layout, per-launch work estimates, arena bytes and function names of a CPU
    compile."""
    kernel = backend_kernel(compiled)
    optimized = compiled.asm["llvm-opt"]
    names = sorted(set(re.findall(r'^define [^@]*@"?(fusec_\w+?_(\d+))"?\(', optimized,
                                  re.M)), key=lambda m: int(m[1]))
    return {"layout": kernel._layout, "works": list(kernel._works),
            "arena_bytes": kernel._scratch.nbytes, "functions": [n for n, _ in names],
            "optimized_ir": optimized}


def cuda_parts(compiled: CompiledKernel) -> dict:
    """Layout, function names, threads per program, cubin and, per launch, its global
    scratch per program and its dynamic shared memory per block (0: none; the PTX
    backend's kernels ask for none and have no shared_bytes)."""
    kernel = backend_kernel(compiled)
    functions = list(kernel.functions)
    shared = getattr(kernel, "shared_bytes", None) or [0] * len(functions)
    return {"layout": kernel.layout, "functions": functions,
            "threads": kernel.warps * 32, "scratch_bytes": list(kernel.scratch_bytes),
            "shared_bytes": list(shared), "cubin": bytes(compiled.asm["cubin"])}


def host_facts(compiled: CompiledKernel) -> dict:
    """Results (("param", runtime index) | ("alloc", k)), whether they come as a tuple, and
    the runtime params the kernel writes into."""
    return {"returns": [list(r) for r in compiled._returns],
            "returns_tuple": bool(compiled._returns_tuple),
            "written": [i for i, _ in compiled._written]}
