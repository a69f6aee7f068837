"""From LLVM IR text to callable native code on this host: MCJIT, host CPU and features,
the O3 pipeline with loop and SLP vectorization, and a check that every external symbol
the code needs resolves *before* finalizing (MCJIT aborts the process on a missing one).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import llvmlite.binding as llvm

from ..stages import Lazy, Stages


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


def elf_undefined_symbols(obj: bytes) -> set[str]:
    """Names an ELF64 (little-endian) object file uses but does not define."""
    shoff = int.from_bytes(obj[0x28:0x30], "little")
    shentsize = int.from_bytes(obj[0x3A:0x3C], "little")
    shnum = int.from_bytes(obj[0x3C:0x3E], "little")
    sections = []
    for i in range(shnum):
        h = obj[shoff + i * shentsize: shoff + (i + 1) * shentsize]
        sections.append((int.from_bytes(h[4:8], "little"), int.from_bytes(h[24:32], "little"),
                         int.from_bytes(h[32:40], "little"), int.from_bytes(h[40:44], "little")))
    undefined = set()
    for kind, offset, size, link in sections:
        if kind != 2:                                   # SHT_SYMTAB
            continue
        _, str_offset, str_size, _ = sections[link]
        names = obj[str_offset:str_offset + str_size]
        for at in range(offset + 24, offset + size, 24):   # entry 0 is the null symbol
            name_at = int.from_bytes(obj[at:at + 4], "little")
            shndx = int.from_bytes(obj[at + 6:at + 8], "little")
            if shndx == 0 and name_at:
                undefined.add(names[name_at:names.index(b"\0", name_at)].decode())
    return undefined


class JitModule:
    """A compiled module: keeps the engine alive and exposes function addresses and the
    text of every stage. Code is generated once, as an object file, which the engine loads
    after its undefined symbols are checked; the assembly text is made only if read."""

    def __init__(self, llvm_ir: str, cache=None):
        """cache: an object with key(*parts), get(key, required) and put(key, files, info)
        (the disk cache of fusec.autotune, handed down by the compiler), or None."""
        tm = host_target_machine()
        key = None
        if cache is not None:
            key = cache.key("llvm-cpu-object", llvm_ir, tm.triple, llvm.get_host_cpu_name(),
                            llvm.get_host_cpu_features().flatten(), list(llvm.llvm_version_info))
            cached = cache.get(key, required=("object.o", "llvm-opt.ll"))
            if cached is not None:
                self._load(llvm_ir, cached["llvm-opt.ll"].decode(), cached["object.o"], tm)
                self.from_cache = True
                return
        mod = llvm.parse_assembly(llvm_ir)
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
        optimize(mod, tm)
        opt_ir = str(mod)
        obj = tm.emit_object(mod)
        self._load(llvm_ir, opt_ir, obj, tm)
        self.from_cache = False
        if cache is not None:
            cache.put(key, {"object.o": obj, "llvm-opt.ll": opt_ir.encode()},
                      {"kind": "llvm-cpu-object"})

    @classmethod
    def from_artifacts(cls, files: dict[str, bytes]) -> "JitModule":
        """A module from what `artifacts()` gave (no code generation)."""
        self = cls.__new__(cls)
        self._load(files["llvm.ll"].decode(), files["llvm-opt.ll"].decode(),
                   files["object.o"], host_target_machine())
        self.from_cache = True
        return self

    def artifacts(self) -> dict[str, bytes]:
        return {"object.o": self._object, "llvm.ll": self.asm["llvm"].encode(),
                "llvm-opt.ll": self.asm["llvm-opt"].encode()}

    def _load(self, llvm_ir: str, opt_ir: str, obj: bytes, tm) -> None:
        self._object = obj
        self.asm = Stages({"llvm": llvm_ir, "llvm-opt": opt_ir, "asm": Lazy(
            lambda: host_target_machine().emit_assembly(llvm.parse_assembly(opt_ir)))})
        missing = sorted(s for s in elf_undefined_symbols(obj)
                         if not llvm.address_of_symbol(s))
        if missing:
            raise NotImplementedError(
                f"llvm backend: the generated code needs symbols this process does not "
                f"provide: {', '.join(missing)}")
        empty = llvm.parse_assembly("")
        empty.triple = tm.triple
        self.engine = llvm.create_mcjit_compiler(empty, new_target_machine())
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()

    def address(self, name: str) -> int:
        return self.engine.get_function_address(name)
