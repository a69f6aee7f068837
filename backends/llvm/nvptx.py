"""The NVPTX target: the CPU backend's lowering in the SIMT mapping (simt.py: one thread
block per program, tile loop nests spread over its threads), emitted as PTX.

Each launch of a kernel (launches.py) becomes one kernel entry

    .entry fusec_<kernel>_<k>(.param .u64 slot_0, ..., .param .u64 slot_n-1)

taking the 8-byte parameters of backends/cuda/layout.py's Layout in its order, so that the
CUDA backend's runtime launches it as it launches CUDA C: block pid = ctaid.x runs program
pid of the launch's grid (entry.run_program) with warps * 32 threads.

- Tensors are global memory: a data address becomes an addrspace(1) pointer cast to a
  generic one, from which LLVM's address space inference emits ld/st/atom.global.
- Tile buffers of the program (buffers.py): shared memory (addrspace(3) globals) up to
  SHARED_BYTES a block, the others in the launch's global scratch: the scratch parameter
  + pid * the function's scratch bytes per program. Buffers of one thread (made inside a
  nest) are local memory (allocas).
- Float math: float32 from math.py's own implementations. What the CPU target takes from the
  C math library (float64 math, sin/cos, pow) and the float remainder (NVPTX lowers `frem`
  through a rounded division; C's fmod is exact) call `__fusec_<name>[f]` device functions,
  DEVICE_LIBM, which backends/ptx links in.
- Rounding: the target machine does not fuse floating-point ops on its own, so NVPTX emits
  add.rn / mul.rn, which ptxas never contracts; only explicit fma (math.py) and the dot's
  `contract` flags fuse -- the same float semantics as the CPU and the interpreter.
"""
from __future__ import annotations

import functools

import llvmlite.binding as llvm
import llvmlite.ir as ir

from ...ir.core import Op
from ...ir.ops import LIBM_UNARY
from .. import switches
from ..common import arch_number, resident_blocks
from .buffers import FunctionBuffers
from .context import Ctx, Target
from .entry import bind_arguments, run_program
from .jit import optimize
from .launches import serial_ops
from .lower import Lowering
from .mma import staged_dots
from .plan import Plan
from .simt import SimtState, register_tiles
from .types import F64, I8, I16, I32, I64, VOID, byte_size

TRIPLE = "nvptx64-nvidia-cuda"
GLOBAL = 1                       # NVPTX address space of global memory
SHARED = 3                       # ... and of shared memory
SHARED_BYTES = 48 << 10          # static shared memory a block may declare
# exp/exp2 (and erf, gelu, tanh, sigmoid, silu through them) take 2**f from the hardware's
# ex2 instead of a range reduction and a degree-7 polynomial
HARDWARE_EX2 = True
# materialized tiles whose readers walk the same elements per thread stay in registers
# (simt.register_tiles) instead of shared memory
REGISTER_TILES = True
# threads an SM should hold at once (ptxas caps each thread's registers to fit them; 0: no
# cap), for kernels with register tiles (64 registers: a row's 32 elements and what works
# on them; unrolled vector groups and register tiles otherwise take ~100 registers and a
# quarter of the SM: the cap gave softmax +10%, layernorm +7%, bias+gelu +7%, H100,
# 2026-12-06) ...
RESIDENT_THREADS = 1024
# ... and for those without (32 registers: a whole SM of threads; elementwise code such as
# bias+gelu took 55 registers and 56% of the SM's warps (ncu, H200), and needs no more
# than 32 without spilling, as the CUDA C backend's)
RESIDENT_THREADS_NO_TILES = 2048
MATH_PREFIX = "__fusec_"
# the device math library: C math function -> number of arguments (float and double
# versions: `__fusec_sinf`, `__fusec_sin`)
DEVICE_LIBM = {"sin": 1, "cos": 1, "tan": 1, "atan": 1, "exp": 1, "exp2": 1, "log": 1,
               "log2": 1, "tanh": 1, "erf": 1, "erfc": 1, "pow": 2, "atan2": 2, "fmod": 2,
               "hypot": 2, **{name: 1 for name in LIBM_UNARY}}
_SUFFIX = {"float": "f", "double": ""}
# LLVM math intrinsics (llvm.<name>.*) NVPTX has no exact instruction for
UNSELECTABLE = frozenset(("pow", "powi", "exp", "exp2", "exp10", "log", "log2", "log10",
                          "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh",
                          "cosh", "tanh", "sincos", "frexp", "ldexp", "modf"))
switches.register(__name__, "REGISTER_TILES")


def device_function(name: str, type_name: str) -> str:
    """The symbol of the device math library's `name` on "float" or "double" values."""
    return f"{MATH_PREFIX}{name}{_SUFFIX[type_name]}"


@functools.lru_cache(maxsize=1)
def _init() -> None:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()


@functools.lru_cache(maxsize=None)
def target_machine(arch: str) -> llvm.TargetMachine:
    """The NVPTX target machine of a GPU arch ("sm_90"): LLVM's cpu name is the arch."""
    _init()
    target = llvm.Target.from_triple(TRIPLE)
    return target.create_target_machine(cpu=arch, features="", opt=3)


def _bf16_bits(ctx: Ctx, x: ir.Value) -> ir.Value:
    """cvt.rn.bf16.f32 (sm_80+), as the CUDA C backend rounds: a NaN becomes 0x7FFF.
    llvmlite has no bfloat type, hence the inline PTX."""
    cvt = ir.InlineAsm(ir.FunctionType(I16, [x.type]), "cvt.rn.bf16.f32 $0, $1;", "=h,f")
    return ctx.b.zext(ctx.b.call(cvt, [x]), I32)


class NVPTXTarget(Target):
    name = "nvptx"
    gelu_tail_absolute = True           # torch's gelu, as the CUDA C backend computes it
    library_fallbacks = {"pow": "pow", "frem": "fmod"}

    def __init__(self, arch: str):
        self.arch = arch
        self.buffers: FunctionBuffers | None = None
        self.simt: SimtState | None = None
        self.shared_bytes = 0
        self.exp2_hardware = _hardware_exp2 if HARDWARE_EX2 else None
        self.fma_saturate = _fma_saturate
        # cvt.rn.bf16.f32 needs sm_80; older archs round bf16 in integer arithmetic
        self.bf16_bits = _bf16_bits if arch_number(arch) >= 80 else None

    def start_function(self, entry: ir.IRBuilder, pid: ir.Value, tid: ir.Value,
                       nthreads: int, scratch: ir.Value,
                       per_program: ir.GlobalVariable) -> None:
        """entry: positioned in the kernel's entry block after pid (i64, the program) and
        tid (i32, the thread in its block) are known; scratch: the launch's global scratch
        address (i64); per_program: the i64 constant that will hold the function's scratch
        bytes per program (known once the function is emitted)."""
        base = []

        def scratch_base() -> ir.Value:
            if not base:
                offset = entry.mul(pid, entry.load(per_program), flags=("nuw",))
                raw = entry.add(scratch, offset, flags=("nuw",))
                base.append(self.tensor_pointer_at(entry, raw, I8))
            return base[0]
        self.buffers = FunctionBuffers(entry, scratch_base, 0, 0)
        self.simt = SimtState(tid, nthreads)
        self.shared_bytes = 0

    def libm(self, name: str, ty: ir.Type) -> str:
        if name not in DEVICE_LIBM:
            raise NotImplementedError(f"ptx backend: no device math function {name!r}")
        return device_function(name, str(ty))

    def sum_accumulator(self, dtype) -> ir.Type:
        # as the CPU and CUDA backends; on the GPU a vector group's (at most 8) elements
        # are added in float32 first (reduce.Spec.group), as CUDA C does
        return F64

    def alloc_buffer(self, ctx: Ctx, elem: ir.Type, count: int) -> ir.Value:
        if self.simt.depth > 0:                     # one thread's own
            return self.buffers.alloc_stack(elem, count)
        nbytes = count * byte_size(elem)
        if self.shared_bytes + nbytes > SHARED_BYTES:
            return self.buffers.alloc_scratch(elem, count)
        self.shared_bytes = (self.shared_bytes + nbytes + 15) // 16 * 16
        b = self.buffers.builder
        array = ir.ArrayType(elem, count)
        name = ctx.module.get_unique_name(f"{b.function.name}.shared")
        g = ir.GlobalVariable(ctx.module, array, name=name, addrspace=SHARED)
        g.linkage = "internal"
        g.align = 16
        g.initializer = ir.Constant(array, ir.Undefined)
        first = b.gep(g, [ir.Constant(I32, 0), ir.Constant(I32, 0)], inbounds=True)
        return b.addrspacecast(first, elem.as_pointer())

    def tensor_pointer(self, ctx: Ctx, address: ir.Value, elem: ir.Type) -> ir.Value:
        return self.tensor_pointer_at(ctx.b, address, elem)

    @staticmethod
    def tensor_pointer_at(b: ir.IRBuilder, address: ir.Value, elem: ir.Type) -> ir.Value:
        return b.addrspacecast(b.inttoptr(address, elem.as_pointer(GLOBAL)), elem.as_pointer())


def _hardware_exp2(ctx: Ctx, q: ir.Value) -> ir.Value:
    """2**q by ex2.approx, within 2 ulp (tests/gpu/test_ptx_math_gpu.py checks the exp
    family built on it). `.ftz` spares ptxas' subnormal fix-ups: math.py asks for no
    subnormal result (exp's 2**f is at least 2**-24 wherever its product is not 0)."""
    return ctx.intrinsic("nvvm.ex2.approx.ftz.f", [q], overload=[])


def _fma_saturate(ctx: Ctx, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
    """fma.rn.sat.f32: the product-sum clamped to [0, 1], NaN to 0 (FFMA.SAT). LLVM has no
    intrinsic for it, hence the inline PTX."""
    fn = ir.InlineAsm(ir.FunctionType(a.type, [a.type] * 3), "fma.rn.sat.f32 $0, $1, $2, $3;",
                      "=f,f,f,f")
    return ctx.b.call(fn, [a, b, c])


def _special_register(ctx: Ctx, b: ir.IRBuilder, name: str) -> ir.Value:
    fn = ctx.declare(f"llvm.nvvm.read.ptx.sreg.{name}", I32, [])
    return b.zext(b.call(fn, []), I64)


def _emit_launch(module: ir.Module, target: NVPTXTarget, kernel: Op, plan: Plan, layout,
                 k: int, name: str, nthreads: int, registers: set) -> int:
    """Define the kernel entry of launch k; returns its global scratch bytes per program.
    registers: the values held in registers (simt.register_tiles)."""
    launch = layout.launches[k]
    fn = ir.Function(module, ir.FunctionType(VOID, [I64] * layout.n_slots), name=name)
    fn.calling_convention = "ptx_kernel"
    for i, arg in enumerate(fn.args):
        arg.name = layout.slot_name(i)
    # the calling convention marks a kernel for LLVM >= 20, the annotation for older ones
    _annotate(module, fn, "kernel", 1)
    _annotate(module, fn, "maxntidx", nthreads)
    entry, start, past = (fn.append_basic_block(n) for n in ("entry", "start", "past_grid"))
    ctx = Ctx(module, target)
    eb = ir.IRBuilder(entry)
    pid = _special_register(ctx, eb, "ctaid.x")
    tid = eb.trunc(_special_register(ctx, eb, "tid.x"), I32, name="tid")
    grid = [fn.args[s] for s in layout.grid_slots[k]]
    programs = ir.Constant(I64, 1)
    for g in grid:
        programs = eb.mul(programs, g, flags=("nuw",))
    branch = eb.cbranch(eb.icmp_unsigned("<", pid, programs), start, past)
    eb.position_before(branch)
    per_program = ir.GlobalVariable(module, I64, name=f"{name}.scratch_per_program")
    per_program.global_constant = True
    per_program.linkage = "internal"
    target.start_function(eb, pid, tid, nthreads, fn.args[layout.scratch_slots[k]],
                          per_program)
    b = ctx.b = ir.IRBuilder(start)
    target.simt.mark_synced(b)          # nothing touched memory yet
    lowering = Lowering(ctx, kernel, plan, sym=lambda e: fn.args[layout.sym_slots[e]])
    lowering.use_registers(registers)
    bind_arguments(lowering, layout, lambda i, _name: fn.args[i])
    lowering.emit_prologue(launch, serial_ops(layout.launches))
    run_program(lowering, launch, grid, pid)
    b.ret_void()
    ir.IRBuilder(past).ret_void()
    scratch = target.buffers.scratch_bytes
    per_program.initializer = ir.Constant(I64, scratch)
    return scratch


def emit_module(kernel: Op, layout, names: list[str], arch: str,
                nthreads: int) -> tuple[str, list[int]]:
    """(LLVM IR text of the kernel's launches for `arch`, global scratch bytes per program of
    each launch). layout: backends/cuda/layout.py's Layout of the kernel."""
    tm = target_machine(arch)
    module = ir.Module(name=kernel.attrs.get("name", "kernel"))
    module.triple = TRIPLE
    module.data_layout = str(tm.target_data)
    target = NVPTXTarget(arch)
    plan = Plan(kernel, staged_dots(kernel, arch, nthreads))
    registers = register_tiles(plan, nthreads) if REGISTER_TILES else set()
    scratch = [_emit_launch(module, target, kernel, plan, layout, k, name, nthreads,
                            registers) for k, name in enumerate(names)]
    # the device math library's functions take up to ~50 registers, which a kernel calling
    # them must allow (nvJitLink refuses the link otherwise)
    library = any(f.is_declaration and f.name.startswith(MATH_PREFIX) for f in module.functions)
    # tensor-core dots hold fragments (and their shared memory caps residency anyway): at
    # 32 registers the 64x64x32 matmul spilled 8.5M local-memory requests (ncu, H100)
    resident = RESIDENT_THREADS if registers or library or plan.staged_dots else \
        RESIDENT_THREADS_NO_TILES
    if resident:                # registers per thread capped for this many threads an SM
        blocks = resident_blocks(arch, nthreads, resident)
        for name in names:
            _annotate(module, module.get_global(name), "minctasm", blocks)
    return str(module), scratch


def _annotate(module: ir.Module, fn: ir.Function, key: str, value: int) -> None:
    module.add_named_metadata("nvvm.annotations", [fn, ir.MetaDataString(module, key),
                                                   ir.Constant(I32, value)])


def math_functions(mod: llvm.ModuleRef) -> set[str]:
    """The device math functions an (optimized) module calls."""
    return {f.name for f in mod.functions if f.is_declaration and f.name.startswith(MATH_PREFIX)}


def check_selectable(mod: llvm.ModuleRef) -> None:
    """NotImplementedError for a call NVPTX cannot lower exactly: LLVM's code generator would
    abort the process on one it cannot select at all (`llvm.pow`), or emit an approximate
    instruction (`llvm.sin.f32` -> sin.approx)."""
    bad = sorted(f.name for f in mod.functions if f.is_declaration
                 and f.name.startswith("llvm.") and f.name.split(".")[1] in UNSELECTABLE)
    if bad:
        raise NotImplementedError(f"ptx backend: the generated code calls {', '.join(bad)}, "
                                  "which NVPTX cannot lower exactly")


def compile_module(llvm_ir: str, arch: str) -> tuple[str, str, set[str]]:
    """(optimized LLVM IR, PTX text, device math functions it calls) for `arch`."""
    tm = target_machine(arch)
    mod = llvm.parse_assembly(llvm_ir)
    mod.verify()
    optimize(mod, tm)
    check_selectable(mod)
    return str(mod), tm.emit_assembly(mod), math_functions(mod)
