"""From a kernel function and a specialization to a CompiledKernel: trace -> passes ->
backend, keeping every stage's text in `CompiledKernel.asm`."""
from __future__ import annotations

import importlib
import os
import sys
import types

import numpy as np
import sympy

from . import arrays, fastcall
from .autotune.cache import default_cache
from .autotune.config import Config
from .autotune.facts import KernelFacts
from .autotune.fitting import kernel_facts, probe_factors
from .autotune.space import fit_register_tiles, fit_to_extents, shrink_to_cap
from .autotune.transposes import transpose_blocks, transposed_dims
from .backends.common import size_function
from .backends.numeric import STORAGE
from .backends.stages import Stages
from .codegen import TraceOptions, Tracer, TraceState, _Return, _Source
from .errors import CompilationError, LaunchError
from .ir import Block, Builder, Loc, Module, Op, TensorType, TileType, scalar
from .ir import dtypes as D
from .ir.symbolic import hinted_value, size_symbol
from .passes.fuse import Fuse
from .passes.scan_flips import ScanFlips
from .passes.manager import DEFAULT_PIPELINE, PassManager
from .passes.tensor_graph import whole_tensor_ops
from .passes.tile import Tile
from .tensors import TensorVal
from .specialize import ConstParam, ScalarParam, TensorParam
from .values import SymSize, TensorArg, TileVal

BACKENDS = ("cpu", "interpret", "cuda", "ptx")
DEVICE_BACKENDS = ("cuda", "ptx")    # run on torch CUDA tensors, not numpy views
TILE_ELEMENTS_CAP = {
    "cpu": 16384, "interpret": 16384,   # default tiles stay cache-sized
    "cuda": 4096,     # GPU: a program = one thread block, at most 32 elements a thread
    "ptx": 4096,      # the same mapping (backends/llvm/simt.py)
}


def _default_block(dim: int, parallel: bool, ndims: int, position: int) -> int:
    """The fixed policy (autotune="default", the interpreter, and what the model's pick is
    measured against): long rows of the innermost dim (contiguous, vectorizable), a few of
    the next one, one of each dim before those. Measured on bias+gelu: [8, 512] runs 2x
    faster than [32, 32]; 3-D tiles of 8 everywhere but the last were cut to [8, 8, 64]
    by the tile cap (128-byte bf16 rows: silu(a) * b on 8x512x2048 took 25 us, Inductor's
    10.5)."""
    if not parallel:
        return 32
    if ndims == 1:
        return 1024
    if position == ndims - 1:
        return 512
    return 8 if position == ndims - 2 else 1


def size_hints(params: list) -> dict:
    """Size symbol -> its value in the call being specialized (tensor sizes, int params)."""
    hints = {}
    for p in params:
        if isinstance(p, TensorParam):
            for d, n in enumerate(p.hints):
                hints[f"{p.name}_s{d}"] = n
        elif isinstance(p, ScalarParam) and p.kind == "i":
            hints[p.name] = p.hint
    return hints


def trace(fn, params: list, blocks=None, default_block=_default_block):
    """Trace `fn` for the given param specs. Returns (module, guards, blocks the default
    policy chose by dim, whether it returns a tuple)."""
    source = _Source.of(fn)
    kernel_name = fn.__name__
    body = Block()
    sizes, div16, unit_strides, hints, wide, signed = [], [], [], {}, set(), []
    aligned, stride16 = [], []
    values = {}
    for p in params:
        if isinstance(p, ConstParam):
            values[p.name] = p.value
            continue
        index = len(body.args)
        if isinstance(p, TensorParam):
            dims = []
            for d, (fixed, is16, hint) in enumerate(zip(p.sizes, p.div16, p.hints)):
                if fixed is not None:
                    dims.append(fixed)
                    continue
                sym = size_symbol(f"{p.name}_s{d}")
                sizes.append([sym.name, index, d])
                hints[sym.name] = hint
                if is16:
                    div16.append(sym.name)
                dims.append(sym)
            unit_strides += [[index, d] for d, u in enumerate(p.unit_stride) if u]
            if p.aligned16:
                aligned.append(index)
            stride16 += [[index, d] for d, s16 in enumerate(p.stride16) if s16]
            arg = body.add_arg(TensorType(p.dtype, dims), p.name)
            values[p.name] = TensorArg(arg, p.name)
        else:
            dtype = {"i": D.int64 if p.wide else D.int32, "f": D.float64, "b": D.bool_}[p.kind]
            arg = body.add_arg(scalar(dtype), p.name)
            if p.kind == "i":
                if p.is_one:
                    values[p.name] = 1
                    continue
                if p.nonneg:
                    sym = size_symbol(p.name)
                else:
                    sym = sympy.Symbol(p.name, integer=True)
                    signed.append(p.name)
                sizes.append([sym.name, index, -1])
                hints[sym.name] = p.hint
                if p.div16:
                    div16.append(sym.name)
                if p.wide:
                    wide.add(sym.name)
                values[p.name] = SymSize(sym)
            else:
                values[p.name] = TileVal(arg, weak=True)
    loc = Loc(source.file, source.line0, source.col0 + 1)
    attrs = {"name": kernel_name, "sizes": sizes, "div16": div16, "unit_strides": unit_strides,
             "aligned": aligned, "stride16": stride16}
    if signed:
        attrs["signed"] = signed
    builder = Builder(body, loc)
    kernel = Op("kernel", [], [], attrs, [body], loc)
    used_blocks = []

    def choose(dim, parallel, ndims, position):
        b = default_block(dim, parallel, ndims, position)
        used_blocks.append((dim, b))
        return b

    options = TraceOptions(blocks=list(blocks) if blocks is not None else None,
                           default_block=choose, size_hints=hints, wide_symbols=wide)
    state = TraceState(kernel_name)
    tracer = Tracer(source, builder, options, state)
    tracer.vars = dict(values)
    returned = None
    try:
        tracer.visit_body(source.tree.body)
    except _Return as r:
        returned = r.value
    outs = returned if isinstance(returned, tuple) else (() if returned is None else (returned,))
    with builder.at_end(body):
        outs = tuple(tracer.sem.tensors.materialize(o, f"out{i}" if len(outs) > 1 else "out")
                     if isinstance(o, TensorVal) else o for i, o in enumerate(outs))
    for o in outs:
        if not isinstance(o, TensorArg):
            raise CompilationError(f"kernel {kernel_name!r} must return tensors (its arguments "
                                   f"or outputs made with fusec.empty & co), got "
                                   f"{type(o).__name__}", source.file, source.line0,
                                   source.col0 + 1, kernel_name)
    with builder.at_end(body):
        builder.create("return", [o.value for o in outs])
    if state.equal_sizes:
        attrs["equal_sizes"] = [list(p) for p in state.equal_sizes]
        kernel.attrs["equal_sizes"] = attrs["equal_sizes"]
    module = Module([kernel])
    module.traced_stages = tile_whole_tensor_ops(module, options, hints, state.guards)
    return module, state.guards, dict(used_blocks), isinstance(returned, tuple)


def tile_whole_tensor_ops(module: Module, options: TraceOptions, hints: dict,
                          guards: list) -> dict:
    """Whole-tensor statements -> fusion groups -> tile loops, right after tracing (so that
    block choices, the autotuner's facts and every backend see tile-level IR), reversed scans
    folded first (passes/scan_flips.py). Returns the stages' texts: "ir" (as traced),
    "fuse", "tile" ({} when there are none)."""
    if not whole_tensor_ops(module.kernel()):
        return {}
    stages = {"ir": str(module)}
    ScanFlips().run(module)
    Fuse(hints=hints).run(module)
    stages["fuse"] = str(module)
    kernel = module.kernel()
    try:
        Tile(blocks=options.blocks, default_block=options.default_block, hints=hints,
             guards=guards).run(module)
    except ValueError as exc:
        loc = kernel.loc
        raise CompilationError(str(exc), loc.file, loc.line, loc.col,
                               kernel.attrs["name"]) from None
    stages["tile"] = str(module)
    return stages


def _max_tile_elements(module: Module) -> int:
    biggest = 0
    for op in module.walk():
        for r in op.results:
            if isinstance(r.type, TileType):
                biggest = max(biggest, r.type.numel)
    return biggest


def trace_with_default_blocks(fn, params, cap: int, fit_extents: bool = True,
                              gpu: bool = False):
    """Trace with default blocks, fitted to the extents of this call (fit_to_extents:
    the fitted sizes' power-of-two buckets become guards) and shrunk until every tile
    holds <= cap elements. gpu: transposed loads get autotune/transposes.py's tiles."""
    module, guards, used, returns_tuple = trace(fn, params)
    pairs = transposed_dims(module.kernel()) if gpu else ()
    if pairs:
        parallel = {op.attrs["dim"] for op in module.walk()
                    if op.name == "tile_for" and op.attrs["parallel"]}
        wanted = transpose_blocks(dict(used), pairs, parallel)
        module, guards, used, returns_tuple = trace(
            fn, params, None, lambda dim, *rest: wanted.get(dim) or _default_block(dim, *rest))
    last = {"blocks": dict(used), "module": module}

    def tile_elements(blocks):
        if blocks != last["blocks"]:
            last["module"] = trace(fn, params, None,
                                   lambda dim, *rest: blocks.get(dim) or _default_block(
                                       dim, *rest))[0]
            last["blocks"] = dict(blocks)
        return _max_tile_elements(last["module"])

    hints = size_hints(params)
    used = dict(used)
    loops = [(op.attrs["dim"], op.attrs["extent"], launch) for launch, nest in enumerate(
        o for o in module.kernel().regions[0].ops if o.name == "tile_for")
        for op in nest.walk() if op.name == "tile_for" and op.attrs["parallel"]]
    fitted = used
    if fit_extents:
        fitted = fit_to_extents(used, [(d, hinted_value(e, hints) or 1, launch)
                                       for d, e, launch in loops])
        guards = _with(guards, fit_guards([(d, e, used[d], launch) for d, e, launch in loops
                                           if d in used]))
    blocks = shrink_to_cap(fitted, tile_elements, cap)
    tile_elements(blocks)
    # by dim, with the blocks the source (or the tile pass: a batched matmul's batch dims)
    # fixes among them
    fixed = {op.attrs["dim"]: op.attrs["block"] for op in last["module"].walk()
             if op.name == "tile_for"}
    dims = range(1 + max([*blocks, *fixed], default=-1))
    return last["module"], guards, [blocks.get(d, fixed.get(d, 1)) for d in dims], \
        returns_tuple


def autotune_facts(fn, params) -> KernelFacts:
    """What the autotuner reads (autotune/facts.py): the trace with the default policy's
    blocks, and a probe trace with each tunable dim's block times its own prime."""
    module, guards, used, _ = trace(fn, params)
    base = {op.attrs["dim"]: op.attrs["block"] for op in module.walk()
            if op.name == "tile_for"}
    factors = probe_factors(sorted(used))
    probe = None
    if factors:
        blocks = [base.get(d, 1) * factors.get(d, 1) for d in range(1 + max(base))]
        try:
            probe = trace(fn, params, blocks)[0]
        except CompilationError:      # the source rejects such blocks: no model of it
            pass
    return kernel_facts(module, probe, factors, size_hints(params), set(base) - set(used),
                        guards)


class CompiledKernel:
    """One kernel compiled for one specialization, target and config."""

    def __init__(self, name, module, asm, backend, target, config, guards, run_fn,
                 returns_tuple):
        self.name = name
        self.module = module
        self.asm = asm
        self.backend = backend
        self.target = target
        self.config = config
        self.guards = guards
        self.runtime_positions = None    # set by the Kernel: which call args are not constexpr
        self._run = run_fn
        self._returns_tuple = returns_tuple
        kernel = module.kernel()
        body = kernel.regions[0]
        self._n_params = len(body.args)
        self._allocs = [(op.results[0].type, size_function_list(op.results[0].type),
                         op.attrs.get("zero", False))
                        for op in body.ops if op.name == "alloc"]
        alloc_values = [op.results[0] for op in body.ops if op.name == "alloc"]
        term = body.terminator
        self._returns = []
        for v in term.operands:
            if v in body.args:
                self._returns.append(("param", body.args.index(v)))
            else:
                self._returns.append(("alloc", alloc_values.index(v)))
        self._sizes = kernel.attrs.get("sizes", [])
        # sizes broadcast against each other in whole-tensor ops: equal in every call
        self._equal_sizes = [(a, b, size_function(a), size_function(b))
                             for a, b in kernel.attrs.get("equal_sizes", [])]
        self._size_names = {sym: (f"{body.args[i].name}.shape[{d}]" if d >= 0
                                  else str(body.args[i].name))
                            for sym, i, d in self._sizes}
        written = {op.operands[0] for op in kernel.walk() if op.name in ("store", "atomic_add")}
        self._written = [(i, arg.name) for i, arg in enumerate(body.args) if arg in written]
        self.validate = None     # set by the Kernel: checks call args match the specialization
        # the native call of later calls shaped like the first (fastcall.py; it checks the
        # arguments itself), False where there is none
        self._native_call = None
        # a parallel loop that no other parallel loop encloses starts one launch (also
        # when it sits in a top-level runtime `for` or `if`: counted once per call site)
        self.num_launches = sum(
            1 for op in kernel.walk()
            if op.name == "tile_for" and op.attrs.get("parallel")
            and not (op.parent.parent.name == "tile_for"
                     and op.parent.parent.attrs.get("parallel")))

    def __repr__(self):
        return f"<CompiledKernel {self.name} backend={self.backend} target={self.target}>"

    def __call__(self, *args):
        """Launch with all the kernel's arguments (constexpr ones included, and ignored).
        Arguments that do not match the specialization compiled for raise ValueError."""
        native = self._native_call
        if native:
            result = native(args)
            if result is not NotImplemented:
                return result
        if self.validate is not None:
            self.validate(args)
        runtime_args = list(args) if self.runtime_positions is None else \
            [args[i] for i in self.runtime_positions]
        result = self.run(runtime_args)
        if native is None:
            fast = self.fast_path(runtime_args, args)
            self._native_call = fast if type(fast) is not types.FunctionType else False
        return result

    def fast_path(self, runtime_args: list, args: tuple | None = None, known=frozenset()):
        """A callable running later calls whose arguments match runtime_args in everything
        the compile and the launch geometry depend on (dtypes, shapes, strides, alignment,
        scalar values: the Kernel's call cache keys them so), with only the data pointers
        new: the output shapes and, on a GPU, the launch parameters are worked out once.
        Takes the kernel's whole argument tuple (constexprs included). On a GPU, with `args`
        (this call's whole argument tuple) given, it is the native call path where that is
        available (fastcall.py): it checks the arguments itself and returns NotImplemented
        for arguments that do not match; so on the CPU (torch tensors or numpy arrays).
        `known`: places in `args` of tensors whose dtype, shape, strides and device the
        caller guarantees to be this call's: the native path checks only their alignment."""
        positions = self.runtime_positions or range(len(runtime_args))
        native = getattr(self, "native", None)
        if self.backend == "cpu" and hasattr(native, "fixed_launch"):
            return self._cpu_fast_path(runtime_args, positions, native, args, known)
        if native is None or self.backend not in DEVICE_BACKENDS:
            return lambda args: self.run([args[i] for i in positions])
        torch = arrays._torch()
        device = next(a for a in runtime_args if arrays.is_array(a)).device
        # empty_strided: a third of torch.empty's cost when dtype and device are given
        outs = self._output_specs(self._output_shapes(runtime_args))
        empty = torch.empty_strided

        def outputs():
            made = [empty(shape, strides, dtype=dt, device=device)
                    for shape, strides, dt, _ in outs]
            for out, (*_, zero) in zip(made, outs):
                if zero:
                    out.zero_()
            return made
        made = outputs()
        plan = native.plan(list(runtime_args) + made)
        if args is not None:
            native_call = fastcall.make(self, plan, args, list(positions), outs, made, known)
            if native_call is not None:
                return native_call

        def call(args):
            rargs = [args[i] for i in positions]
            made = outputs()
            self._launch(plan.launch, rargs + made)
            return self._results(rargs, made)
        return call

    def _output_specs(self, shapes, torch_dtypes: bool = True) -> list:
        """(shape, row-major strides, torch or numpy dtype, zeroed) of each output."""
        return [(tuple(shape), arrays.contiguous_strides(shape),
                 arrays.torch_dtype(t.dtype) if torch_dtypes else STORAGE[t.dtype], zero)
                for (t, _, zero), shape in zip(self._allocs, shapes)]

    def _cpu_fast_path(self, runtime_args: list, positions, cpu_kernel, args=None,
                       known=frozenset()):
        """fast_path on the CPU: outputs made as this call's were (torch or numpy), the
        tensors' data pointers read straight off them, the argument slots of the native
        functions filled once (CompiledCPUKernel.fixed_launch); with `args`, the native
        call path where that is available."""
        views = [arrays.numpy_view(a) if arrays.is_array(a) else a for a in runtime_args]
        if any(not views[i].flags.writeable for i, _ in self._written):
            return lambda args: self.run([args[i] for i in positions])   # run() says why
        like = next((a for a in runtime_args if arrays.is_array(a)), None)
        shapes = self._output_shapes(views)
        made = [arrays.allocate(like, shape, t.dtype, zero)
                for (t, _, zero), shape in zip(self._allocs, shapes)]
        now = views + [arrays.numpy_view(o) for o in made]
        if args is not None and like is not None:
            torch_outputs = arrays.is_torch_tensor(like)
            native_call = fastcall.make_cpu(
                self, args, list(positions), self._output_specs(shapes, torch_outputs), now,
                cpu_kernel.native_plan, numpy_outputs=not torch_outputs, known=known)
            if native_call is not None:
                return native_call
        order, launch = cpu_kernel.fixed_launch(now)
        torch = arrays._torch()
        if like is not None and arrays.is_torch_tensor(like):
            outputs = [(torch.zeros if zero else torch.empty, tuple(shape),
                        {"dtype": arrays.torch_dtype(t.dtype), "device": like.device})
                       for (t, _, zero), shape in zip(self._allocs, shapes)]
        else:
            outputs = [(np.zeros if zero else np.empty, tuple(shape),
                        {"dtype": STORAGE[t.dtype]})
                       for (t, _, zero), shape in zip(self._allocs, shapes)]
        tensor_types = (torch.Tensor, torch.nn.Parameter) if torch is not None else ()

        def pointer(a) -> int:
            return a.data_ptr() if type(a) in tensor_types else a.ctypes.data

        def call(args):
            rargs = [args[i] for i in positions]
            made = [new(shape, **kw) for new, shape, kw in outputs]
            every = rargs + made
            self._launch(lambda _: launch([pointer(every[p]) for p in order]), None)
            return self._results(rargs, made)
        return call

    def run(self, runtime_args: list):
        """runtime_args: the kernel's runtime params (arrays and Python scalars) in order."""
        if self.backend in DEVICE_BACKENDS:      # they take the torch tensors themselves
            views = list(runtime_args)
        else:
            views = [arrays.numpy_view(a) if arrays.is_array(a) else a for a in runtime_args]
            for i, name in self._written:
                if not views[i].flags.writeable:
                    raise ValueError(f"kernel {self.name!r}: argument {name!r} is read-only "
                                     "but the kernel writes into it")
        like = next((a for a in runtime_args if arrays.is_array(a)), None)
        outputs = [arrays.allocate(like, shape, t.dtype, zero) for (t, _, zero), shape
                   in zip(self._allocs, self._output_shapes(views))]
        out_views = outputs if self.backend in DEVICE_BACKENDS else \
            [arrays.numpy_view(o) for o in outputs]
        self._launch(self._run, views + out_views)
        return self._results(runtime_args, outputs)

    def _output_shapes(self, runtime_args) -> list[list[int]]:
        symbols = {}
        for name, index, dim in self._sizes:
            v = runtime_args[index]
            symbols[name] = int(v) if dim < 0 else v.shape[dim]
        for a, b, fa, fb in self._equal_sizes:
            if fa(symbols) != fb(symbols):
                raise ValueError(f"kernel {self.name!r}: {self._size_text(a)} = {fa(symbols)} "
                                 f"and {self._size_text(b)} = {fb(symbols)} must be equal "
                                 "(sizes broadcast against each other, element counts of a "
                                 "reshape, or a slice bound that must not count from the end)")
        shapes = []
        for _, shape_fns, _ in self._allocs:
            shape = [f(symbols) for f in shape_fns]
            if any(s < 0 for s in shape):
                raise ValueError(f"kernel {self.name!r}: output shape {shape} is negative")
            shapes.append(shape)
        return shapes

    def _size_text(self, expr) -> str:
        text = str(expr)
        return self._size_names.get(text, text)

    def _launch(self, run, args) -> None:
        """run(args), a backend's failure reported as LaunchError naming the kernel."""
        try:
            run(args)
        except (CompilationError, TypeError, ValueError):
            raise
        except Exception as exc:
            raise LaunchError(f"kernel {self.name!r} failed on backend {self.backend}: "
                              f"{type(exc).__name__}: {exc}") from exc

    def _results(self, runtime_args, outputs):
        """What a call returns: params and outputs, as the kernel's `return` says."""
        results = [runtime_args[i] if kind == "param" else outputs[i]
                   for kind, i in self._returns]
        if self._returns_tuple:
            return tuple(results)
        return results[0] if len(results) == 1 else (None if not results else tuple(results))


def size_function_list(t: TensorType):
    return [size_function(d) for d in t.shape]


def _record_stage(asm: dict):
    counts: dict[str, int] = {}

    def on_stage(name, module):
        counts[name] = counts.get(name, 0) + 1
        key = name if counts[name] == 1 else f"{name}.{counts[name]}"
        asm[key] = str(module)
    return on_stage


def _dump(asm: dict):
    wanted = os.environ.get("FUSEC_DUMP")
    if not wanted:
        return
    for stage in wanted.split(","):
        stages = list(asm) if stage == "all" else [stage]
        for s in stages:
            if s in asm:
                text = asm[s]
                print(f"// ----- fusec stage: {s} -----", file=sys.stderr)
                print(text if isinstance(text, str) else f"<{len(text)} bytes>", file=sys.stderr)


def cuda_target(target: str | None, backend: str = "cuda") -> str:
    """The GPU arch to compile for: an explicit "sm_XY", or ("cuda"/None) the current
    device's."""
    if target not in (None, "cuda"):
        if not target.startswith("sm_"):
            raise ValueError(f"backend {backend!r} compiles for a GPU arch like 'sm_80' or "
                             f"'sm_90', not target {target!r}")
        return target
    arch = arrays.cuda_arch()
    if arch is None:
        raise ValueError(f"backend {backend!r}: no CUDA GPU here to read the arch from; pass "
                         "target='sm_80' or target='sm_90' to compile without one")
    return arch


def _gpu_compiler(backend: str):
    """compile_<backend>(kernel, arch=, warps=) of fusec.backends.<backend>, a GPU backend
    (imported on first use: compiling for the CPU never loads the CUDA libraries)."""
    module = importlib.import_module(f".backends.{backend}", __package__)
    return getattr(module, f"compile_{backend}")


def policy_cap(backend: str) -> int:
    return TILE_ELEMENTS_CAP.get(backend, 16384)


# The fixed policy for a dot of 16-bit floats in a sequential tile loop on the CUDA backend:
# tiles the tensor cores take (backends/cuda/tensor_cores.py). H200, bf16 4096^3 matmul with
# bias+relu: 128x128x32 runs at 285 TFLOP/s, the elementwise policy's 8x512 FMA loop at 3.1.
# Where the default stages of K steps of 64 fit a program's staging budget (sm_90: 3 stages,
# 105 KB), the K block is 64: H100, 309 / 313 TFLOP/s at 4096^3 / 8192^3 against 297 / 284
# with 32 (half the barriers a multiply; benchmarks/matmul_configs.py). Elsewhere (sm_86 and
# sm_89 hold 42 KB of staging: not even two stages of 64) it stays 32.
TENSOR_CORE_BLOCKS = {"dot_m": 128, "dot_n": 128, "dot_k": 32}
TENSOR_CORE_LONG_K = 64
TENSOR_CORE_SMALL = 64          # M or N blocks for extents under 1024 (more programs)
# Large products on archs whose shared memory holds 3 stages of 256x128x64 for one program
# an SM (sm_90, sm_100: 163 KB of 227): 8 warps of 64x64, the copies spread over the K
# steps. H100, relu(a @ b + bias) * 0.5: 356 / 346 TFLOP/s at 4096^3 / 8192^3 against
# 302 / 309 for 128x128x64 at 4 warps, which is L2-bound (ncu: L2 82% busy, 74% here)
TENSOR_CORE_LARGE = {"dot_m": 256, "dot_n": 128, "dot_k": 64}
TENSOR_CORE_LARGE_WARPS = 8
TENSOR_CORE_LARGE_PROGRAMS = 256    # at least this many programs of them (two waves of an
#                                     H100's 132 SMs): smaller products keep 128x128


def _target_arch(target: str | None) -> str | None:
    try:
        return cuda_target(target)
    except ValueError:                 # no GPU to ask
        return None


def tensor_core_k_block(target: str | None) -> int:
    """The fixed policy's K block for `target` ("sm_XY", or "cuda"/None: this GPU's)."""
    arch = _target_arch(target)
    if arch is None:                   # the block every arch takes
        return TENSOR_CORE_BLOCKS["dot_k"]
    from .backends.cuda import tensor_cores as tc
    tiling = tc.warp_tiling(TENSOR_CORE_BLOCKS["dot_m"], TENSOR_CORE_BLOCKS["dot_n"],
                            TENSOR_CORE_LONG_K, Config().warps)
    stages = Config().stages
    fits = tc.most_stages(tiling, stages, tc.staging_budget(arch)) == stages
    return TENSOR_CORE_LONG_K if fits else TENSOR_CORE_BLOCKS["dot_k"]


# The PTX backend's tensor-core dots (backends/llvm/mma.py) stage their operands and write
# their result per K step: at these blocks the operands, the result and the accumulator fit
# the 48 KB of static shared memory (128 x 128 puts the last two in global scratch). Not
# timed yet; the same for every size (no guards)
PTX_TENSOR_CORE_BLOCKS = {"dot_m": 64, "dot_n": 64, "dot_k": 32}


def _large_tiles_fit(target: str | None) -> bool:
    """Whether `target` stages Config().stages of the large tiles for one program an SM."""
    arch = _target_arch(target)
    if arch is None:
        return False
    from .backends.cuda import tensor_cores as tc
    tiling = tc.warp_tiling(TENSOR_CORE_LARGE["dot_m"], TENSOR_CORE_LARGE["dot_n"],
                            TENSOR_CORE_LARGE["dot_k"], TENSOR_CORE_LARGE_WARPS)
    stages = Config().stages
    budget = tc.staging_budget(arch, tiling, 32 * TENSOR_CORE_LARGE_WARPS)
    return tc.most_stages(tiling, stages, budget) == stages


def _dot_roles(facts: KernelFacts) -> dict:
    """dim -> "dot_m" | "dot_n" | "dot_k" for the dims whose blocks are a dot's."""
    return {dim: t.resource for t in facts.terms if t.resource in TENSOR_CORE_BLOCKS
            for dim, _ in t.amount.powers}


def tensor_core_policy(facts: KernelFacts, backend: str, target: str | None = None
                       ) -> tuple[dict, int] | None:
    """({dim: block}, warps) for a kernel whose dot can run on tensor cores, else None."""
    if backend not in ("cuda", "ptx") or not facts.has_dot or not {"bfloat16", "float16"} & set(
            facts.dtypes):
        return None
    roles = _dot_roles(facts)
    launches = {d.launch for d in facts.dims if d.dim in roles}
    if backend == "ptx":
        from .backends.llvm import mma
        if not mma.ENABLED:
            return None
    extents = {roles[d.dim]: d.extent for d in facts.tunable if d.dim in roles}
    large = backend == "cuda" and {"dot_m", "dot_n", "dot_k"} <= set(extents) and \
        extents["dot_k"] >= 1024 and min(extents["dot_m"], extents["dot_n"]) >= 1024 and \
        extents["dot_m"] * extents["dot_n"] >= TENSOR_CORE_LARGE_PROGRAMS * \
        TENSOR_CORE_LARGE["dot_m"] * TENSOR_CORE_LARGE["dot_n"] and _large_tiles_fit(target)
    blocks = {}
    for d in facts.tunable:
        if d.dim in roles:
            role = roles[d.dim]
            if backend == "ptx":
                blocks[d.dim] = PTX_TENSOR_CORE_BLOCKS[role]
            elif large:
                blocks[d.dim] = TENSOR_CORE_LARGE[role]
            elif role == "dot_k":
                blocks[d.dim] = tensor_core_k_block(target) if d.extent >= 1024 else \
                    TENSOR_CORE_BLOCKS[role]
            else:
                blocks[d.dim] = TENSOR_CORE_SMALL if d.extent < 1024 else \
                    TENSOR_CORE_BLOCKS[role]
        elif d.parallel and d.launch in launches:
            blocks[d.dim] = 1                 # batch-like grid dims: one per program
    return blocks, (TENSOR_CORE_LARGE_WARPS if large else Config().warps)


def fit_guards(dims) -> list:
    """The guards of blocks fitted to extents (fit_to_extents) for `dims`, (dim, extent
    expression, policy block, launch) of the parallel dims with policy blocks: per dim,
    Min(extent, the largest block the fit can give it: its own times those of the dims
    inside it in its launch). The fit depends on those values' power-of-two buckets only,
    and every extent past the threshold is one bucket."""
    guards, launches = [], {}
    for dim, extent, block, launch in dims:
        launches.setdefault(launch, []).append((dim, extent, block))
    for found in launches.values():
        carry = 1
        for dim, extent, block in sorted(found, key=lambda d: d[0], reverse=True):
            carry *= block
            if not sympy.sympify(extent).is_Integer:
                guards.append(sympy.Min(extent, carry))
    return guards


def _with(guards: list, more: list) -> list:
    return list(guards) + [g for g in more if g not in guards]


# A dot's tensor-core blocks depend on whether M, N and K reach these (tensor_core_policy)
TENSOR_CORE_THRESHOLDS = {"dot_m": 8192, "dot_n": 8192, "dot_k": 1024}


def policy_guards(facts: KernelFacts, backend: str, target: str | None = None) -> list:
    """The sizes whose power-of-two buckets default_config's choice depends on, as guards."""
    if tensor_core_policy(facts, backend, target):
        if backend == "ptx":
            return []
        roles = _dot_roles(facts)
        return [sympy.Min(d.extent_expr, TENSOR_CORE_THRESHOLDS[roles[d.dim]])
                for d in facts.tunable if d.dim in roles and d.extent_expr is not None
                and not sympy.sympify(d.extent_expr).is_Integer]
    return fit_guards([(d.dim, d.extent_expr, d.block, d.launch) for d in facts.tunable
                       if d.parallel and d.extent_expr is not None])


def default_config(facts: KernelFacts, backend: str, target: str | None = None,
                   fit_extents: bool = True, fit_registers: bool = True) -> Config:
    """The fixed policy's config for a kernel, from its facts (no tracing); `target`: the
    GPU arch (tensor-core tiles depend on its shared memory; None: this GPU's, if any).
    policy_guards gives the sizes the choice depends on. On the CUDA backend (with
    fit_registers), fewer rows a program where a thread's register tiles would pass
    space.REGISTER_TILE_BUDGET (the traced policy, trace_with_default_blocks, has no such
    step: it needs the facts)."""
    dot = tensor_core_policy(facts, backend, target)
    if dot:
        blocks, warps = dot
        return Config(blocks=facts.full_blocks([blocks.get(d.dim, d.block) for d in facts.dims]),
                      warps=warps)
    cap = policy_cap(backend)
    used = {d.dim: d.block for d in facts.tunable}
    if backend in DEVICE_BACKENDS:
        used = transpose_blocks(used, facts.transposed, {d.dim for d in facts.dims
                                                         if d.parallel})
    if fit_extents:
        used = fit_to_extents(used, [(d.dim, d.extent, d.launch) for d in facts.dims
                                     if d.parallel])
    blocks = shrink_to_cap(used, lambda b: facts.tile_elements(facts.full_blocks(
        [b.get(i, 1) for i in range(1 + max(b))])), cap) if used else {}
    config = Config(blocks=facts.full_blocks([blocks.get(d.dim, 1) for d in facts.dims]))
    if backend == "cuda" and fit_registers and facts.fitted:   # its register tiles
        config = fit_register_tiles(facts, config)
    return config


def build(fn, params, backend: str, target: str, config: Config | None,
          fast_math: bool = False, fit_extents: bool = True):
    """fit_extents=False: the fixed policy's blocks as they are (an AOT package's kernel
    serves every size of its variant, not one power-of-two bucket of them)."""
    cap = policy_cap(backend)
    policy = []
    if config is None:
        module, guards, blocks, returns_tuple = trace_with_default_blocks(
            fn, params, cap, fit_extents, gpu=backend in DEVICE_BACKENDS)
        if backend in ("cuda", "ptx") and any(op.name == "dot" for op in module.walk()):
            facts = autotune_facts(fn, params)
            config = default_config(facts, backend, target, fit_extents)
            policy = policy_guards(facts, backend, target) if fit_extents else []
    if config is not None:
        module, guards, used, returns_tuple = trace(fn, params, config.blocks)
        blocks = list(config.blocks)
        if policy:                # the fixed policy's choice depends on these sizes
            guards = _with(guards, policy)
    if fast_math:             # read by the GPU backends' math tables
        module.kernel().attrs["fast_math"] = True
    asm = Stages(dict(module.traced_stages) or {"ir": str(module)})
    PassManager(DEFAULT_PIPELINE, on_stage=_record_stage(asm)).run(module)
    kernel = module.kernel()
    if backend == "interpret":
        from .backends.interpret import run as interpret_run
        _dump(asm)
        return assemble(fn.__name__, module, asm, backend, target, config or Config(
            blocks=blocks), guards, None, returns_tuple,
            run_fn=lambda args: interpret_run(kernel, args))
    if backend == "cpu":
        from .backends.llvm import compile_cpu
        native = compile_cpu(kernel, cache=default_cache())
    elif backend in DEVICE_BACKENDS:
        target = cuda_target(target, backend)
        warps = config.warps if config is not None else Config().warps
        # both keep their cubins on disk
        extra = {"cache": default_cache()}
        if backend == "cuda":
            extra["stages"] = (config or Config()).stages
        native = _gpu_compiler(backend)(kernel, arch=target, warps=warps, **extra)
    else:
        raise NotImplementedError(f"backend {backend!r} (target {target}) is not available")
    asm.update(native.asm)
    _dump(asm)
    return assemble(fn.__name__, module, asm, backend, target, config or Config(blocks=blocks),
                    guards, native, returns_tuple)


def assemble(name: str, module: Module, asm: Stages, backend: str, target: str,
             config: Config, guards: list, native, returns_tuple: bool, run_fn=None
             ) -> CompiledKernel:
    """The CompiledKernel around a traced module (after passes) and the backend's compiled
    kernel `native` (None: the interpreter, with its run_fn): what build() returns, and
    what the disk cache of whole kernels (kernel_store.py) restores."""
    compiled = CompiledKernel(name, module, asm, backend, target, config, guards,
                              run_fn or native.run, returns_tuple)
    compiled.from_cache = getattr(native, "from_cache", False)   # native code from disk
    compiled.native = native
    if backend == "cpu":
        fastcall.cpu_threads()          # its parallel launches on native threads, if built
    return compiled
