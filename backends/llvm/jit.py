"""From LLVM IR text to callable native code on this host: MCJIT, host CPU and features,
the O3 pipeline with loop and SLP vectorization, and a check that every external symbol
the code needs resolves *before* finalizing (MCJIT aborts the process on a missing one).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re

import llvmlite.binding as llvm


@functools.lru_cache(maxsize=1)
def _init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # libm / libc functions the generated code calls (libm for float64 math, fmod, powf;
    # libc for memset/memcpy the optimizer may introduce): make their symbols resolvable.
    for lib in ("m", "c"):
        path = ctypes.util.find_library(lib)
        if path:
            llvm.load_library_permanently(path)


def new_target_machine() -> llvm.TargetMachine:
    """A target machine for this host. MCJIT takes ownership of the one it is given, so
    every engine gets its own."""
    _init()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, codemodel="jitdefault", jit=True)


@functools.lru_cache(maxsize=1)
def host_target_machine() -> llvm.TargetMachine:
    """A shared target machine for queries (triple, data layout) and codegen, never handed
    to an engine."""
    return new_target_machine()


@functools.lru_cache(maxsize=1)
def host_features() -> frozenset[str]:
    return frozenset(k for k, v in llvm.get_host_cpu_features().items() if v)


def optimize(module: llvm.ModuleRef, tm: llvm.TargetMachine) -> None:
    """The O3 pipeline (new pass manager) with loop + SLP vectorization, in place."""
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


_SYMBOL_USE = re.compile(r"(?:\$|\bcall[q]?\s+|\bjmp[q]?\s+)([A-Za-z_][\w.]*)")
_LABEL = re.compile(r"^([A-Za-z_.][\w.$]*):", re.M)


def external_symbols(asm: str) -> set[str]:
    """Symbols referenced by the assembly but not defined in it (libm, libcalls)."""
    defined = set(_LABEL.findall(asm))
    used = {s for s in _SYMBOL_USE.findall(asm) if not s.startswith(".L")}
    return used - defined


class JitModule:
    """A compiled module: keeps the engine alive and exposes function addresses and the
    text of every stage."""

    def __init__(self, llvm_ir: str):
        tm = host_target_machine()
        mod = llvm.parse_assembly(llvm_ir)
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
        optimize(mod, tm)
        opt_ir = str(mod)
        # Emit the assembly from a copy: codegen passes rewrite the module they run on.
        self.asm = {"llvm": llvm_ir, "llvm-opt": opt_ir,
                    "asm": tm.emit_assembly(llvm.parse_assembly(opt_ir))}
        missing = sorted(s for s in external_symbols(self.asm["asm"])
                         if not llvm.address_of_symbol(s))
        if missing:
            raise NotImplementedError(
                f"llvm backend: the generated code needs symbols this process does not "
                f"provide: {', '.join(missing)}")
        self.engine = llvm.create_mcjit_compiler(mod, new_target_machine())
        self.engine.finalize_object()
        self.module = mod

    def address(self, name: str) -> int:
        return self.engine.get_function_address(name)
