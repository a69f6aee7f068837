"""The CPU target: one native function per launch (signature and argument layout in
runtime.py), tile buffers on the stack or in a per-thread scratch arena, float64 math from
the C library, JIT-compiled for the host CPU (jit.py).

    ck = compile_cpu(kernel_op)
    ck.run(args)     # as backends.interpret.run: params, then one array per alloc
    ck.asm           # {"llvm", "llvm-opt", "asm"}
"""
from __future__ import annotations

import ctypes
import math
import re
import threading

import llvmlite.ir as ir

from ...ir import dtypes as D
from ...ir.core import Op
from . import loops
from .buffers import FunctionBuffers
from .context import Ctx, Target
from .entry import bind_arguments, run_program
from .jit import JitModule, host_features, host_target_machine
from .launches import serial_ops
from .lower import Lowering
from .plan import Plan
from .runtime import PROGRAM_FN, ArgLayout, ScratchPool, parts, run_grid
from .types import F64, I8, I64, I64P, VOID

STACK_BUFFER_BYTES = 8 << 10       # buffers up to this size live on the stack ...
STACK_TOTAL_BYTES = 64 << 10       # ... while a function's stack buffers stay below this
_LIBM = {"float": "{}f", "double": "{}"}


class CPUTarget(Target):
    name = "cpu"

    def __init__(self):
        self.scratch_bytes = 0          # the arena size every function needs (max)
        self.buffers: FunctionBuffers | None = None

    def start_function(self, alloca_builder: ir.IRBuilder, scratch_arg) -> None:
        self.buffers = FunctionBuffers(alloca_builder, lambda: scratch_arg,
                                       STACK_BUFFER_BYTES, STACK_TOTAL_BYTES)

    def libm(self, name: str, ty: ir.Type) -> str:
        return _LIBM[str(ty)].format(name)

    def sum_accumulator(self, dtype) -> ir.Type:
        # float64 partial sums: the sum of float32/half tiles rounds once, like the
        # interpreter's float64 sum, at the cost of half-width vectors
        return F64

    def alloc_buffer(self, ctx: Ctx, elem: ir.Type, count: int) -> ir.Value:
        ptr = self.buffers.alloc(elem, count)
        self.scratch_bytes = max(self.scratch_bytes, self.buffers.scratch_bytes)
        return ptr


def _check_host() -> None:
    if "f16c" not in host_features() and "avx512fp16" not in host_features():
        raise NotImplementedError("llvm cpu backend: float16 needs a CPU with F16C")


class CompiledCPUKernel:
    """A kernel compiled for this CPU. `run(args)` follows backends.interpret.run."""

    def __init__(self, kernel: Op, asm: dict, jit: JitModule, layout: ArgLayout,
                 fns: list, works: list[int], scratch_bytes: int, names: list[str]):
        self.kernel = kernel
        self.name = kernel.attrs.get("name", "kernel")
        self.asm = asm
        self._jit = jit                          # keeps the machine code alive
        self.from_cache = jit.from_cache         # object code loaded from the disk cache
        self._layout = layout
        self._fns = fns
        self._works = works
        self._scratch = ScratchPool(scratch_bytes)
        self._scratch_bytes = scratch_bytes
        self._names = names
        self.num_launches = len(fns)

    def run(self, args) -> None:
        args = list(args)
        packed, grids = self._layout.pack(args)
        ptr = ctypes.addressof(packed)
        for fn, grid, work in zip(self._fns, grids, self._works):
            total = 1
            for g in grid:
                total *= g
            run_grid(fn, ptr, total, work, self._scratch)

    __call__ = run

    def fixed_launch(self, args) -> tuple[list[int], object]:
        """(the argument positions of the tensors, `launch(pointers)`) for later calls with
        args' geometry and scalar values (shapes, strides, dtypes: the caller keys them),
        whose tensors' data pointers, in those positions' order, are all that is new: the
        argument slots are worked out here once. One launch at a time (a lock): the slots
        are shared by the calls."""
        packed, slots, launches = self._packed_launches(args)
        address = ctypes.addressof(packed)
        lock = threading.Lock()
        scratch = self._scratch

        def launch(pointers) -> None:
            with lock:
                for slot, pointer in zip(slots, pointers):
                    packed[slot] = pointer
                for fn, total, work in launches:
                    run_grid(fn, address, total, work, scratch)
        return [pos for pos, *_ in self._layout.tensors], launch

    def native_plan(self, args, threshold: int) -> tuple[object, dict[int, int], list]:
        """For a native caller (fusec/fastcall.c) of later calls with args' geometry:
        (the functions' argument array, filled from args and kept alive by the caller;
        {tensor argument position: its data pointer's slot}; per launch (function address,
        programs, ranges to cut them into for the cores, scratch bytes per range)).
        threshold: the element-ops below which a launch runs in one range."""
        packed, slots, launches = self._packed_launches(args)
        positions = [pos for pos, *_ in self._layout.tensors]
        return packed, dict(zip(positions, slots)), [
            (ctypes.cast(fn, ctypes.c_void_p).value, total, parts(total, work, threshold),
             self._scratch_bytes) for fn, total, work in launches]

    def _packed_launches(self, args):
        """(argument array packed from args, the tensors' pointer slots, per launch
        (function, programs, work per program))."""
        packed, grids = self._layout.pack(list(args))
        slots = [slot for _, slot, *_ in self._layout.tensors]
        launches = [(fn, math.prod(grid), work)
                    for fn, grid, work in zip(self._fns, grids, self._works)]
        return packed, slots, launches

    # -- the disk cache of whole kernels (fusec/kernel_store.py) ---------------------------
    def record(self) -> tuple[dict, dict[str, bytes]]:
        """(JSON facts, artifact files) from which `restore` rebuilds this kernel around the
        same kernel op: the object code, its LLVM IR before and after optimization, and the
        launch facts."""
        facts = {"functions": self._names, "works": self._works,
                 "scratch": self._scratch_bytes}
        return facts, self._jit.artifacts()

    @classmethod
    def restore(cls, kernel: Op, facts: dict, files: dict[str, bytes]):
        jit = JitModule.from_artifacts(files)
        fns = [PROGRAM_FN(jit.address(n)) for n in facts["functions"]]
        return cls(kernel, jit.asm, jit, ArgLayout(kernel), fns, facts["works"],
                   facts["scratch"], facts["functions"])


def _emit_launch(module: ir.Module, target: CPUTarget, kernel: Op, plan: Plan,
                 layout: ArgLayout, k: int, fname: str) -> int:
    """Define the function of launch k; returns its estimated work per program."""
    launch = layout.launches[k]
    fnty = ir.FunctionType(VOID, [I64P, I64, I64, I8.as_pointer()])
    fn = ir.Function(module, fnty, name=fname)
    args_p, pid_begin, pid_end, scratch = fn.args
    args_p.name, pid_begin.name, pid_end.name, scratch.name = "args", "pid_begin", "pid_end", \
        "scratch"
    for a in (args_p, scratch):
        a.add_attribute("noalias")
    entry = fn.append_basic_block("entry")
    start = fn.append_basic_block("start")
    ab = ir.IRBuilder(entry)
    jump = ab.branch(start)
    ab.position_before(jump)
    target.start_function(ab, scratch)
    ctx = Ctx(module, target)
    b = ctx.b = ir.IRBuilder(start)

    def slot(i: int, name: str = "") -> ir.Value:
        return b.load(b.gep(args_p, [ir.Constant(I64, i)], inbounds=True), name=name)

    lowering = Lowering(ctx, kernel, plan,
                        sym=lambda e: slot(layout.sym_slots[e], "size"))
    bind_arguments(lowering, layout, slot)
    lowering.emit_prologue(launch, serial_ops(layout.launches))
    grid = [slot(s, f"grid{d}") for d, s in enumerate(layout.grid_slots[k])]

    def program(pid, _):
        run_program(lowering, launch, grid, pid)
        return []
    loops.loop(ctx, pid_begin, lambda pid: b.icmp_signed("<", pid, pid_end),
               lambda pid: b.add(pid, ir.Constant(I64, 1), flags=("nsw",)), [], program,
               name="pid")
    b.ret_void()
    return max(1, lowering.work)


def _with_function_attributes(text: str) -> str:
    """Attach the program functions' attributes (llvmlite's IR builder has no string
    attributes): with AVX-512, prefer 512-bit vectors -- the math in these loops is
    throughput bound and runs about twice as fast as with LLVM's default of 256 bits."""
    attrs = ["nounwind"]
    if "avx512f" in host_features():
        attrs.append('"prefer-vector-width"="512"')
    text = re.sub(r'^(define void @"fusec_[^\n]*\))', r"\1 #0", text, flags=re.M)
    return _loop_ids(text) + f"\nattributes #0 = {{ {' '.join(attrs)} }}\n"


def _loop_ids(text: str) -> str:
    """Each branch marked loops.NO_VECTORIZE gets a loop ID of its own (a distinct node
    naming itself) asking the loop vectorizer to leave that loop alone."""
    marker = re.compile(r", !" + re.escape(loops.NO_VECTORIZE) + r" !\d+")
    count = len(marker.findall(text))
    if not count:
        return text
    first = 1 + max((int(n) for n in re.findall(r"!(\d+)", text)), default=0)
    ids = iter(range(first + 1, first + 1 + count))
    numbered = []

    def loop_id(_match):
        n = next(ids)
        numbered.append(n)
        return f", !llvm.loop !{n}"
    text = marker.sub(loop_id, text)
    nodes = [f'!{first} = !{{!"llvm.loop.vectorize.enable", i1 false}}']
    nodes += [f"!{n} = distinct !{{!{n}, !{first}}}" for n in numbered]
    return text + "\n" + "\n".join(nodes) + "\n"


def compile_cpu(kernel: Op, cache=None) -> CompiledCPUKernel:
    """Compile a kernel op (after passes) to native code for this CPU. `cache` (see
    JitModule) keeps the optimized object code across processes."""
    if kernel.name != "kernel":
        raise TypeError(f"compile_cpu expects a kernel op, got {kernel.name!r}")
    tm = host_target_machine()
    values = list(kernel.regions[0].args) + [r for op in kernel.walk() for r in op.results]
    if any(getattr(v.type, "dtype", None) == D.float16 for v in values):
        _check_host()
    module = ir.Module(name=kernel.attrs.get("name", "kernel"))
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    target = CPUTarget()
    plan = Plan(kernel, reload=True)
    layout = ArgLayout(kernel)
    base = "fusec_" + "".join(c if c.isalnum() else "_" for c in kernel.attrs.get("name", "k"))
    names, works = [], []
    for k in range(len(layout.launches)):
        names.append(f"{base}_{k}")
        works.append(_emit_launch(module, target, kernel, plan, layout, k, names[-1]))
    jit = JitModule(_with_function_attributes(str(module)), cache)
    fns = [PROGRAM_FN(jit.address(n)) for n in names]
    return CompiledCPUKernel(kernel, jit.asm, jit, layout, fns, works, target.scratch_bytes,
                             names)

