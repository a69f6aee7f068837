"""Calling convention of compiled CPU kernels: argument packing and parallel launch.

Every launch of a kernel (launches.py: a parallel tile loop nest, or a serial run of
top-level writes) becomes one native function

    void fusec_<kernel>_<k>(i64 *args, i64 pid_begin, i64 pid_end, i8 *scratch)

that runs the programs pid_begin <= pid < pid_end of the launch's grid (pid row-major over
the grid dims, the last dim fastest; a serial launch has one program). `args` is one array
of 64-bit slots shared by all launches of the kernel, laid out once per compiled kernel
(ArgLayout):

    per tensor (params, then allocs in program order): data pointer, sizes[rank],
        strides[rank] (in elements; may be negative or zero)
    per scalar param: the value as i64 (ints, bools) or the bits of a double (floats)
    per size expression (tile loop extents, symval): its value
    per launch and grid dim: the number of tiles

`scratch` is a per-thread arena (cpu.CPUTarget.scratch_bytes, 64-byte aligned) holding
tile buffers too large for the stack. Size symbols and grids are computed here in Python
with backends/common.py (no sympy per call); the grid is split into one contiguous pid range
per core and run on a thread pool (ctypes releases the GIL), or serially when the work is
small. Output arrays (allocs) must be C-contiguous and must not overlap the params (the
code assumes allocs alias nothing; params may alias each other).
"""
from __future__ import annotations

import ctypes
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...ir.core import Op
from ...ir.types import TensorType, TileType
from ..common import bind_symbols, size_expressions, size_function
from ..numeric import STORAGE
from .launches import launches

PROGRAM_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                              ctypes.c_void_p)
PARALLEL_WORK = 1 << 16        # element-ops below which a launch runs on the calling thread
NATIVE_PARALLEL_WORK = 1 << 15  # the same with a native runner (a launch costs microseconds)
MAX_PLANS = 64                 # argument geometries a kernel keeps packed (then starts over)


class ArgLayout:
    def __init__(self, kernel: Op):
        self.kernel = kernel
        body = kernel.regions[0]
        self.n_params = len(body.args)
        self.allocs = [op for op in kernel.walk() if op.name == "alloc"]
        unit = {(p, d) for p, d in kernel.attrs.get("unit_strides", [])}
        # (arg position, first slot, IR value, unit-stride dims, numpy dtype, rank)
        self.tensors = []
        self.scalars = []        # (arg position, slot, IR value)
        slot = 0
        tensor_values = [(i, v) for i, v in enumerate(body.args)] + \
            [(self.n_params + j, op.results[0]) for j, op in enumerate(self.allocs)]
        for pos, v in tensor_values:
            if isinstance(v.type, TensorType):
                r = v.type.rank
                is_alloc = pos >= self.n_params
                dims = {d for d in range(r) if (pos, d) in unit or (is_alloc and d == r - 1)}
                self.tensors.append((pos, slot, v, frozenset(dims),
                                     np.dtype(STORAGE[v.type.dtype]), r))
                slot += 1 + 2 * r
            elif isinstance(v.type, TileType):
                self.scalars.append((pos, slot, v))
                slot += 1
        self.sym_slots = {}
        for e in size_expressions(kernel):
            self.sym_slots[e] = slot
            slot += 1
        self.launches = launches(kernel)
        self.grid_slots = []
        for launch in self.launches:
            self.grid_slots.append(list(range(slot, slot + len(launch.loops))))
            slot += len(launch.loops)
        self.n_slots = slot
        self._sym_fns = [(s, size_function(e)) for e, s in self.sym_slots.items()]
        self._grid_fns = [[(s, size_function(loop.attrs["extent"]), loop.attrs["block"])
                           for s, loop in zip(slots, launch.loops)]
                          for slots, launch in zip(self.grid_slots, self.launches)]
        self._plans: dict = {}      # (shapes and strides, scalar bits) -> _plan's result

    # -- packing -----------------------------------------------------------------------------
    def pack(self, args: list) -> tuple[ctypes.Array, list[list[int]]]:
        """The args slot array for one call, and the grid of every nest. Everything but the
        data pointers is a function of the arguments' geometry and scalar values: worked
        out once per geometry (checks, sizes, symbols, grids) and copied after."""
        n_expected = self.n_params + len(self.allocs)
        if len(args) != n_expected:
            raise TypeError(f"kernel {self.kernel.attrs.get('name')!r} takes {n_expected} "
                            f"arguments ({self.n_params} params + {len(self.allocs)} "
                            f"outputs), got {len(args)}")
        geometry = []
        for pos, slot, v, unit, want, r in self.tensors:
            a = args[pos]
            if not isinstance(a, np.ndarray) or a.dtype != want or a.ndim != r:
                _bad_array(a, pos, v, want)
            geometry.append((a.shape, a.strides))
        scalars = tuple(_scalar_bits(args[pos], v, pos) for pos, _, v in self.scalars)
        # ints by value too: size symbols see the int, its slot only the low 64 bits
        key = (tuple(geometry), scalars, tuple(args[pos] for pos, _, v in self.scalars
                                               if not v.type.dtype.is_float))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._plans[key] = self._plan(args, scalars)
        vals, grids = plan
        packed = (ctypes.c_int64 * max(1, self.n_slots))(*vals)
        for pos, slot, *_ in self.tensors:
            packed[slot] = args[pos].ctypes.data
        return packed, grids

    def _plan(self, args: list, scalars: tuple) -> tuple[list[int], list[list[int]]]:
        """The slot values of a call (data pointers 0) and its grids, the arguments checked."""
        vals = [0] * self.n_slots
        for pos, slot, v, unit, want, r in self.tensors:
            a = args[pos]
            if pos >= self.n_params and not a.flags.c_contiguous:
                _bad_array(a, pos, v, want)
            item = a.itemsize
            for d in range(r):
                n = a.shape[d]
                st = a.strides[d]
                if st % item:
                    raise ValueError(f"argument {pos}: stride {st} is not a multiple of the "
                                     f"element size {item}")
                st //= item
                if d in unit and st != 1 and n > 1 and a.size:
                    raise ValueError(f"argument {pos}: dim {d} was specialized for unit "
                                     f"stride, got stride {st}")
                vals[slot + 1 + d] = n
                vals[slot + 1 + r + d] = st
        for (pos, slot, v), bits in zip(self.scalars, scalars):
            vals[slot] = bits
        symbols = bind_symbols(self.kernel, args[:self.n_params])
        for slot, fn in self._sym_fns:
            vals[slot] = int(fn(symbols))
        grids = []
        for dims in self._grid_fns:
            grid = []
            for slot, fn, block in dims:
                g = max(0, -(-int(fn(symbols)) // block))
                vals[slot] = g
                grid.append(g)
            grids.append(grid)
        return vals, grids


def _bad_array(a, pos: int, v, want: np.dtype):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"argument {pos}: expected a numpy array for {v.type}, "
                        f"got {type(a).__name__}")
    if a.dtype != want:
        raise TypeError(f"argument {pos}: expected dtype {want} for {v.type}, got {a.dtype}")
    if a.ndim != v.type.rank:
        raise ValueError(f"argument {pos}: expected rank {v.type.rank}, got {a.ndim}")
    raise ValueError(f"argument {pos}: outputs (alloc) must be C-contiguous")


def _scalar_bits(value, v, pos: int) -> int:
    d = v.type.dtype
    if d.is_float:
        return struct.unpack("<q", struct.pack("<d", float(value)))[0]
    if d.is_bool:
        return int(bool(value))
    try:
        x = int(value) & 0xFFFFFFFFFFFFFFFF
    except (TypeError, ValueError):
        raise TypeError(f"argument {pos}: expected an int for {v.type}, got "
                        f"{type(value).__name__}") from None
    return x - (1 << 64) if x >> 63 else x


# -- execution ------------------------------------------------------------------------------
_POOL: ThreadPoolExecutor | None = None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist here, and a job given to
    them would never run."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, cpu_count() - 1),
                                   thread_name_prefix="fusec-cpu")
    return _POOL


class ScratchPool:
    """Per-thread scratch arenas of one compiled kernel, reused across calls."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self._free: list[np.ndarray] = []

    def take(self) -> np.ndarray | None:
        if not self.nbytes:
            return None
        try:
            return self._free.pop()
        except IndexError:
            return np.empty(self.nbytes + 64, dtype=np.uint8)

    def give(self, arena) -> None:
        if arena is not None:
            self._free.append(arena)

    @staticmethod
    def address(arena) -> int | None:
        if arena is None:
            return None
        addr = arena.ctypes.data
        return (addr + 63) & ~63


def parts(total: int, work_per_program: int, threshold: int = PARALLEL_WORK) -> int:
    """How many ranges (one per core) a launch of `total` programs is cut into: 1 when
    its work is below `threshold` element-ops."""
    if total * work_per_program < threshold:
        return 1
    return max(1, min(cpu_count(), total))


# run(fn address, args address, total, arena addresses): a native runner of parallel
# launches (fusec/fastcall.py sets native_pool.c's where it is built), else the thread pool
_native_runner = None


def use_native_runner(run) -> None:
    global _native_runner
    _native_runner = run


def run_grid(fn, args_ptr, total: int, work_per_program: int, scratch: ScratchPool) -> None:
    """Run programs [0, total) of one launch, split over the cores when worth it."""
    if total <= 0:
        return
    runner = _native_runner
    n = parts(total, work_per_program, NATIVE_PARALLEL_WORK if runner else PARALLEL_WORK)
    arenas = [scratch.take() for _ in range(n)]
    try:
        addresses = [ScratchPool.address(a) for a in arenas]
        if n == 1:
            fn(args_ptr, 0, total, addresses[0])
        elif runner is not None:
            runner(ctypes.cast(fn, ctypes.c_void_p).value, args_ptr, total,
                   tuple(a or 0 for a in addresses))
        else:
            bounds = [total * i // n for i in range(n + 1)]
            futures = [_pool().submit(fn, args_ptr, bounds[i], bounds[i + 1], addresses[i])
                       for i in range(1, n)]
            fn(args_ptr, bounds[0], bounds[1], addresses[0])
            for f in futures:
                f.result()
    finally:
        for a in arenas:
            scratch.give(a)
