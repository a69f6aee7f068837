"""compile_cuda: a kernel op (after passes) -> CUDA C -> cubin, and the compiled kernel.

    ck = compile_cuda(kernel_op, arch="sm_90", warps=4)     # no GPU needed
    ck.asm["cuda"], ck.asm["ptx"], ck.asm["cubin"]
    ck.run(args)       # as backends.interpret.run, with torch CUDA tensors (runtime.py)
"""
from __future__ import annotations

from ...ir.core import Op
from ..stages import Stages
from .layout import Layout, c_name
from .runtime import Runtime

# the code generator (emit.py and below) is imported by the first compile: a kernel
# restored from the disk cache (restore) runs without it


def function_names(kernel: Op, n: int) -> list[str]:
    base = "fusec_" + c_name(kernel.attrs.get("name", "kernel"), "kernel")
    return [f"{base}_{k}" for k in range(n)]


def emit_source(kernel: Op, warps: int = 4, arch: str = "", stages: int | None = None
                ) -> tuple[str, Layout, list[str], list[int], list[int]]:
    """(CUDA C source, argument layout, function names, global scratch bytes per program of
    each launch, dynamic shared memory bytes of each launch). stages: the most
    shared-memory stages of a tensor-core K loop (None: tensor_cores.MIN_STAGES)."""
    from .emit import emit_function
    from ..llvm.plan import Plan
    from .prelude import PRELUDE, TENSOR_CORE_PRELUDE
    from .tensor_cores import MIN_STAGES
    stages = MIN_STAGES if stages is None else stages
    if kernel.name != "kernel":
        raise TypeError(f"compile_cuda expects a kernel op, got {kernel.name!r}")
    if not isinstance(warps, int) or not 1 <= warps <= 32:
        raise ValueError(f"cuda backend: warps must be an int in 1..32, got {warps!r}")
    nthreads = warps * 32
    plan = Plan(kernel)
    layout = Layout(kernel)
    names = function_names(kernel, len(layout.launches))
    parts, scratch, shared, tensor_cores = [], [], [], False
    for k, name in enumerate(names):
        src, nbytes, uses_mma, dynamic = emit_function(kernel, plan, layout, k, name,
                                                       nthreads, arch, stages)
        parts.append(src)
        scratch.append(nbytes)
        shared.append(dynamic)
        tensor_cores |= uses_mma
    head = (f"// fusec CUDA C: kernel {kernel.attrs.get('name')!r}"
            + (f" for {arch}" if arch else "")
            + f", {len(names)} launch(es), {nthreads} threads per program\n")
    prelude = PRELUDE + (TENSOR_CORE_PRELUDE if tensor_cores else "")
    return head + prelude + "\n" + "\n".join(parts), layout, names, scratch, shared


class CompiledCUDAKernel:
    """A kernel compiled to a cubin. `run(args)` follows backends.interpret.run with torch
    CUDA tensors for the tensor arguments (params, then one output per alloc)."""

    def __init__(self, kernel: Op, arch: str, warps: int, asm: Stages, layout: Layout,
                 functions: list[str], scratch_bytes: list[int],
                 shared_bytes: list[int] | None = None):
        self.kernel = kernel
        self.name = kernel.attrs.get("name", "kernel")
        self.arch = arch
        self.warps = warps
        self.asm = asm
        self.layout = layout
        self.functions = functions
        self.scratch_bytes = scratch_bytes
        # dynamic shared memory each launch asks for (0: none; > 0: the function's maximum
        # dynamic shared size is raised to it after loading)
        self.shared_bytes = shared_bytes or [0] * len(functions)
        self.num_launches = len(functions)
        self._runtime: Runtime | None = None

    def runtime(self) -> Runtime:
        if self._runtime is None:
            threads = self.warps * 32
            self._runtime = Runtime(self.name, self.asm["cubin"], self.arch, self.functions,
                                    self.layout, threads, self.scratch_bytes,
                                    shared_bytes=self.shared_bytes)
        return self._runtime

    def run(self, args) -> None:
        self.runtime().launch(list(args))

    __call__ = run

    def plan(self, args):
        """A LaunchPlan (runtime.py) for calls shaped like args (params, then outputs)."""
        return self.runtime().plan(list(args))

    def __repr__(self):
        return f"<CompiledCUDAKernel {self.name} {self.arch} launches={self.num_launches}>"

    # -- the disk cache of whole kernels (fusec/kernel_store.py) ---------------------------
    def record(self) -> tuple[dict, dict[str, bytes]]:
        """(JSON facts, artifact files) from which `restore` rebuilds this kernel around the
        same kernel op: the launch facts, the cubin and every text stage."""
        stages, files = {}, {}
        for name, value in self.asm.items():
            binary = isinstance(value, bytes)
            stages[name] = "bytes" if binary else "text"
            files[f"asm.{name}"] = value if binary else value.encode()
        facts = {"arch": self.arch, "warps": self.warps, "functions": self.functions,
                 "scratch": self.scratch_bytes, "shared": self.shared_bytes,
                 "stages": stages}
        return facts, files

    @classmethod
    def restore(cls, kernel: Op, facts: dict, files: dict[str, bytes]):
        asm = Stages({name: files[f"asm.{name}"] if kind == "bytes"
                      else files[f"asm.{name}"].decode()
                      for name, kind in facts["stages"].items()})
        compiled = cls(kernel, facts["arch"], facts["warps"], asm, Layout(kernel),
                       facts["functions"], facts["scratch"], facts["shared"])
        compiled.from_cache = True
        return compiled


def compile_cuda(kernel: Op, arch: str = "sm_90", warps: int = 4, cache=None,
                 stages: int | None = None) -> CompiledCUDAKernel:
    """Emit CUDA C for a kernel op (after passes) and compile it with NVRTC for `arch`.
    cache: an object with key(*parts), get(key, required) and put(key, files, info) (the
    disk cache of fusec.autotune) keeping NVRTC's output by source, arch and NVRTC version
    -- NVRTC is most of a compile -- or None. stages: the most shared-memory stages a tensor-core K
    loop stages its operands in (a config's `stages`; fewer where they do not fit; None:
    tensor_cores.MIN_STAGES)."""
    from . import nvrtc
    nvrtc.check_arch(arch)
    source, layout, names, scratch, shared = emit_source(kernel, warps, arch, stages)
    key = cached = None
    if cache is not None:
        key = cache.key("cuda-cubin", source, arch, nvrtc.OPTIONS, nvrtc.version())
        cached = cache.get(key, required=("kernel.cubin", "kernel.ptx"))
    if cached is not None:
        cubin, ptx = cached["kernel.cubin"], cached["kernel.ptx"].decode()
    else:
        cubin, ptx, _ = nvrtc.compile_source(source, arch,
                                             f"{names[0] if names else 'fusec'}.cu")
        if cache is not None:
            cache.put(key, {"kernel.cubin": cubin, "kernel.ptx": ptx.encode()},
                      {"kind": "cuda-cubin", "arch": arch})
    asm = Stages({"cuda": source, "ptx": ptx, "cubin": cubin})
    compiled = CompiledCUDAKernel(kernel, arch, warps, asm, layout, names, scratch, shared)
    compiled.from_cache = cached is not None
    return compiled
