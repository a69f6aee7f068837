"""The calling convention of a compiled CUDA kernel: one list of 8-byte parameters shared by
every launch (device function) of the kernel, laid out once per specialization.

    per tensor (params, then allocs in program order): data pointer, sizes[rank],
        strides[rank] (in elements; may be negative or zero)
    per scalar param: the value as a long long (ints, bools) or a double (floats)
    per size expression (tile loop extents, symval): its value (long long)
    per launch and grid dim: the number of tiles (long long)
    per launch: the global scratch pointer (0 when its buffers fit in shared memory)

Every parameter is 8 bytes, so the values of one call are one int64 array and the
kernelParams pointers into it never change (runtime.py). Size symbols and grids are
computed in Python with backends/common.py (no sympy per call).
"""
from __future__ import annotations

import re
import struct

from ...ir.core import Op
from ...ir.types import TensorType, TileType
from ..common import bind_symbols, size_expressions, size_function
from ..llvm.launches import Launch, launches
from .types import storage


def c_name(name: str | None, fallback: str) -> str:
    """A C identifier from an IR value name (never a keyword: callers add a suffix).
    Parameter names end in _ptr/_sizeN/_strideN/_raw or are fc_-prefixed without a `_N`
    tail; the emitter's locals always end in `_N` (emit.fresh): they never collide."""
    s = re.sub(r"\W", "_", name or fallback)
    return s if re.match(r"[A-Za-z]", s) else "v" + s


class Layout:
    def __init__(self, kernel: Op):
        self.kernel = kernel
        self.name = kernel.attrs.get("name", "kernel")
        body = kernel.regions[0]
        self.n_params = len(body.args)
        self.allocs = [op for op in kernel.walk() if op.name == "alloc"]
        unit = {(p, d) for p, d in kernel.attrs.get("unit_strides", [])}
        self.params: list[tuple[str, str]] = []     # (C type, C name) per slot
        # (arg position, first slot, IR value, unit-stride dims, rank)
        self.tensors: list[tuple] = []
        self.scalars: list[tuple] = []              # (arg position, slot, IR value)
        values = [(i, v) for i, v in enumerate(body.args)] + \
            [(self.n_params + j, op.results[0]) for j, op in enumerate(self.allocs)]
        for pos, v in values:
            base = f"{c_name(v.name, 'arg')}{pos}"
            if isinstance(v.type, TensorType):
                r = v.type.rank
                is_alloc = pos >= self.n_params
                dims = {d for d in range(r) if (pos, d) in unit or (is_alloc and d == r - 1)}
                self.tensors.append((pos, len(self.params), v, frozenset(dims), r))
                self.params.append((f"{storage(v.type.dtype)}*", f"{base}_ptr"))
                self.params += [("long long", f"{base}_size{d}") for d in range(r)]
                self.params += [("long long", f"{base}_stride{d}") for d in range(r)]
            elif isinstance(v.type, TileType):
                self.scalars.append((pos, len(self.params), v))
                ctype = "double" if v.type.dtype.is_float else "long long"
                self.params.append((ctype, f"{base}_raw"))
        self.sym_slots: dict = {}
        for k, e in enumerate(size_expressions(kernel)):
            self.sym_slots[e] = len(self.params)
            self.params.append(("long long", f"fc_size{k}"))
        self.launches: list[Launch] = launches(kernel)
        self.grid_slots: list[list[int]] = []
        self.scratch_slots: list[int] = []
        for k, launch in enumerate(self.launches):
            self.grid_slots.append([])
            for d in range(len(launch.loops)):
                self.grid_slots[-1].append(len(self.params))
                self.params.append(("long long", f"fc_grid{k}d{d}"))
        for k in range(len(self.launches)):
            self.scratch_slots.append(len(self.params))
            self.params.append(("unsigned char*", f"fc_scratch{k}"))
        self.n_slots = len(self.params)
        self._sym_fns = [(s, size_function(e)) for e, s in self.sym_slots.items()]
        self._grid_fns = [[(s, size_function(loop.attrs["extent"]), loop.attrs["block"])
                           for s, loop in zip(slots, launch.loops)]
                          for slots, launch in zip(self.grid_slots, self.launches)]

    def slot_name(self, slot: int) -> str:
        return self.params[slot][1]

    def signature(self) -> str:
        return ",\n    ".join(f"{ty} {name}" for ty, name in self.params)

    # -- per call ----------------------------------------------------------------------------
    def pack(self, args: list, describe) -> tuple[list[int], list[int]]:
        """(slot values, programs per launch) for one call. describe(array, pos, value,
        unit_dims) -> (data pointer, shape, element strides) checks an array argument
        (raising TypeError/ValueError naming it) and reads its geometry."""
        n_expected = self.n_params + len(self.allocs)
        if len(args) != n_expected:
            raise TypeError(f"kernel {self.name!r} takes {n_expected} arguments "
                            f"({self.n_params} params + {len(self.allocs)} outputs), "
                            f"got {len(args)}")
        vals = [0] * self.n_slots
        for pos, slot, v, unit, r in self.tensors:
            ptr, shape, strides = describe(args[pos], pos, v, unit)
            vals[slot] = ptr
            vals[slot + 1:slot + 1 + r] = shape
            vals[slot + 1 + r:slot + 1 + 2 * r] = strides
        for pos, slot, v in self.scalars:
            vals[slot] = scalar_bits(args[pos], v, pos)
        symbols = bind_symbols(self.kernel, args[:self.n_params])
        for slot, fn in self._sym_fns:
            vals[slot] = int(fn(symbols))
        programs = []
        for dims in self._grid_fns:
            total = 1
            for slot, fn, block in dims:
                g = max(0, -(-int(fn(symbols)) // block))
                vals[slot] = g
                total *= g
            programs.append(total)
        return vals, programs


def scalar_bits(value, v, pos: int) -> int:
    """A scalar argument as the int64 bit pattern of its 8-byte kernel parameter."""
    d = v.type.dtype
    try:
        if d.is_float:
            return struct.unpack("<q", struct.pack("<d", float(value)))[0]
        if d.is_bool:
            return int(bool(value))
        x = int(value) & 0xFFFFFFFFFFFFFFFF
    except (TypeError, ValueError):
        raise TypeError(f"argument {pos}: expected a number for {v.type}, got "
                        f"{type(value).__name__}") from None
    return x - (1 << 64) if x >> 63 else x
