"""CUDA C for a kernel op (after passes): one `extern "C" __global__` function per launch
(launches.py: a top-level parallel tile loop nest, or a serial run of top-level writes).

SIMT mapping (simple and correct for every op; the fast mappings come later):
- one thread block per program; the grid is the product of the nest's parallel loops,
  flattened onto blockIdx.x (the last loop fastest), each program's tile coordinates
  recovered by div/mod with the grid dims;
- a materialized tile value (plan.py) is written by all threads striding over its flattened
  elements into a per-program buffer, then `__syncthreads()`; inline values are recomputed
  per element inside their consumer's loop; a reduce / dot output element is computed by one
  thread looping over the reduced axis / K;
- scalars (rank 0) are computed redundantly by every thread, so control flow (for, if,
  sequential tile loops) is uniform across the block and barriers inside it are legal;
- barriers: after every strided loop (its writes are read by other threads), and before
  one when some thread may still be reading memory outside a loop (a scalar read of a
  buffer or tensor) that the loop could overwrite;
- buffers live in one arena per program: static shared memory when they fit in 48 KB
  (next to the tensor-core loops' staged operand tiles), else a slice of a global scratch
  tensor the runtime allocates (programs x bytes);
- a K loop accumulating a dot of 16-bit floats runs on tensor cores (tensor_cores.py,
  mma.py): its accumulator stays in registers in the mma fragment layout and its epilogue
  walks that layout (fragments.py) instead of the strided mapping.

`elem(v, idx)` yields the element of v at a tile index (a tuple of C int expressions or
Python ints): a buffer read, or the op's rule in ELEM_RULES, bound to a const local and
memoized per C scope (rules: elements.py). Ops that write memory or loop (memory.py,
reduce.py, dot.py, control.py) have rules in OP_RULES.
"""
from __future__ import annotations

import contextlib
import re
from typing import Callable

from ...ir import dtypes as D
from ...ir.core import Op, Value
from ...ir.ops import memory_operands
from ...ir.dtypes import DType
from ..llvm.launches import serial_ops
from . import arith, control, dot, fragments, memory, reduce, scan, tensor_cores, transpose
from .elements import ELEM_RULES
from .layout import Layout, c_name
from ..carried import VIEW_OPS, CarriedSlots
from ..walk import OpWalker
from ..llvm.plan import Plan
from .types import SIZEOF, compute
from ..residency import UNROLL_MAX, register_tiles, slots
from .values import INLINE, Buf, Frag, Handle, Lane, Reg, Scalar, Tensor, numel, rank
from ..vector_facts import VectorFacts

SHARED_BYTES = 48 << 10         # static shared memory a block may declare
# launches with a dot walk their last two grid dims in groups of this many rows of tiles
# (0: row-major): the programs running at once then share operand tiles in L2 -- a row-major
# wave of 8192^3 at 256x128 tiles reads 2 rows of a and all 64 columns of b (136 MB, past
# the L2), in groups of 8 rows a quarter of b (65 MB)
GROUP_ROWS = 8
ALIGN = 16
# expressions not worth a local: names, literals, `(name + name)` lane indices
_TRIVIAL = re.compile(r"^(-?[\w.]+|\(\w+ \+ \w+\))$")
# C types of one vector access by its width in bytes
ACCESS_TYPE = {16: "uint4", 8: "uint2", 4: "unsigned int", 2: "unsigned short"}


# ops that materialize or loop: they emit their own statements
OP_RULES: dict[str, Callable] = {
    "store": memory.store, "atomic_add": memory.atomic_add, "reduce": reduce.reduce,
    "scan": scan.scan, "dot": dot.dot, "tile_for": control.tile_for, "for": control.for_,
    "if": control.if_, "alloc": control.alloc,
}


class FunctionEmitter(OpWalker, CarriedSlots):
    """Emits the body of one device function (one launch)."""
    BACKEND = "cuda"
    op_rules = OP_RULES
    elem_rules = ELEM_RULES

    def __init__(self, kernel: Op, plan: Plan, layout: Layout, nthreads: int,
                 arch: str = "", roots=None, stages: int = tensor_cores.MIN_STAGES):
        self.kernel = kernel
        self.plan = plan
        self.layout = layout
        self.nthreads = nthreads
        self.lines: list[str] = []
        self.depth = 1
        self.env: dict[Value, object] = {}
        self.memo: list[dict] = [{}]
        self._counts: dict[str, int] = {}
        self.buffers: list[tuple[str, str, int]] = []     # (name, C type, byte offset)
        self.arena_bytes = 0
        self.in_loop = 0              # > 0 inside a strided (per-element) loop
        self.need_sync = False        # a thread may be reading memory a loop could overwrite
        self.vec = VectorFacts(kernel, self.env,
                               lambda tensor: self.env[tensor].strides[-1] == "1")
        self.tensor_cores = tensor_cores.analyze(kernel, plan, arch, nthreads // 32, roots,
                                                 stages)
        self.registers = register_tiles(plan, self.lane_width, nthreads,
                                        exclude=self.tensor_cores.no_registers)
        self.accumulators = 0         # registers a thread's tensor-core accumulators and
        #                               fragments take
        # (C type, name, elements, byte offset among them: where dynamic memory holds it)
        self.shared_arrays: list[tuple[str, str, int, int]] = []
        self.shared_bytes = 0
        # values computed on an mma fragment layout -> that layout (fragments.py), and the
        # (mi, ni, h) loop variables of the fragment loop being emitted
        self.fragment_values: dict[Value, fragments.FragmentLayout] = {}
        self.frag_at: tuple[str, str, str] | None = None
        self.fast_math = bool(kernel.attrs.get("fast_math"))    # arith.py's _FAST_MATH
        self.stored_tensors = [memory_operands(op)[0] for op in kernel.walk()
                               if op.name in ("store", "atomic_add")]
        self.slot: int | None = None           # the unrolled slot of the loop being emitted
        self.slot_group: list | None = None    # ... and the indices of its Lane group

    def emit_op(self, op: Op) -> None:
        axis = transpose.across_axis(self, op)
        if axis is not None:            # a load reading across the tile's rows
            self.env[op.results[0]] = transpose.stage(
                self, op, axis, lambda idx: self.elem_rules["load"](self, op, idx))
            return
        super().emit_op(op)

    # -- text --------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def fresh(self, base: str | None) -> str:
        base = c_name(base, "v")
        n = self._counts.get(base, 0)
        self._counts[base] = n + 1
        return f"{base}_{n}"

    def declare(self, ctype: str, expr: str, base: str | None, force: bool = False,
                mutable: bool = False) -> str:
        """Bind expr to a new local (trivial expressions are returned as they are)."""
        if not force and not mutable and _TRIVIAL.match(expr):
            return expr
        name = self.fresh(base)
        self.line(f"{'' if mutable else 'const '}{ctype} {name} = {expr};")
        return name

    @contextlib.contextmanager
    def block(self, header: str):
        """A C block: `header { ... }` with its own memo scope (locals die at `}`)."""
        self.line(header + " {")
        self.depth += 1
        self.memo.append({})
        try:
            yield
        finally:
            self.memo.pop()
            self.depth -= 1
            self.line("}")

    def sync(self) -> None:
        self.line("__syncthreads();")
        self.need_sync = False

    def note_read(self) -> None:
        """A read of memory (buffer or tensor): outside a strided loop other threads could
        overwrite it next, so the next strided loop starts with a barrier."""
        if not self.in_loop:
            self.need_sync = True

    # -- elements ----------------------------------------------------------------------------
    def elem(self, v: Value, idx: tuple) -> str:
        rep = self.env[v]
        if isinstance(rep, Scalar):
            return rep.expr
        key = (v, idx)
        for scope in reversed(self.memo):
            hit = scope.get(key)
            if hit is not None:
                return hit
        if isinstance(rep, Buf):
            self.note_read()
            lane = idx[-1] if idx else None
            if isinstance(lane, Lane) and rep.shape[-1] % lane.width == 0:
                return self._read_buffer_group(v, rep, idx)
            hit = rep.at(idx)
        elif isinstance(rep, Reg):
            return self.reg_index(rep, idx)
        elif isinstance(rep, Frag):
            return fragments.register(self, rep, idx)
        elif rep is INLINE:
            lane = idx[-1]
            if isinstance(lane, Lane) and lane.j and v.op.name not in VIEW_OPS and \
                    self.vec.uniform(v, len(idx) - 1, lane.width):
                return self.elem(v, idx[:-1] + (lane.first(),))     # one value per group
            hit = self.elem_rules[v.op.name](self, v.op, idx)
            if v.op.name not in VIEW_OPS:     # a view's element is its operand's
                hit = self.declare(compute(v.type.dtype), hit, v.name or v.op.name)
        else:
            raise TypeError(f"{v} is not a tile value ({rep})")
        self.memo[-1][key] = hit
        return hit

    def group(self, idx: tuple) -> list[tuple]:
        """The indices of the Lane group that idx (its last component a Lane) belongs to."""
        lane = idx[-1]
        return [idx[:-1] + (Lane(lane.base, j, lane.width),) for j in range(lane.width)]

    def read_vector(self, ctype: str, width: int, address: str, nbytes: int, base: str,
                    valid: str | None = None) -> str:
        """A local array of `width` ctype elements loaded from `address` (aligned to
        min(16, nbytes)) by accesses of up to 16 bytes; zeros where `valid` is false."""
        arr = self.fresh(base)
        self.line(f"__align__(16) {ctype} {arr}[{width}] = {{}};")
        chunk = min(16, nbytes)
        vt = ACCESS_TYPE[chunk]
        self._guarded(valid, [f"(({vt}*){arr})[{c}] = ((const {vt}*)({address}))[{c}];"
                              for c in range(nbytes // chunk)])
        return arr

    def write_vector(self, ctype: str, values: list[str], address: str, base: str,
                     valid: str | None = None) -> None:
        """Store `values` (ctype expressions) to consecutive elements at `address`."""
        arr = self.fresh(base)
        self.line(f"__align__(16) {ctype} {arr}[{len(values)}] = {{{', '.join(values)}}};")
        nbytes = len(values) * SIZEOF[ctype]
        chunk = min(16, nbytes)
        vt = ACCESS_TYPE[chunk]
        self._guarded(valid, [f"(({vt}*)({address}))[{c}] = ((const {vt}*){arr})[{c}];"
                              for c in range(nbytes // chunk)])

    def _guarded(self, valid: str | None, lines: list[str]) -> None:
        if valid is None:
            for text in lines:
                self.line(text)
            return
        with self.block(f"if ({valid})"):
            for text in lines:
                self.line(text)

    def _read_buffer_group(self, v: Value, buf: Buf, idx: tuple) -> str:
        group = self.group(idx)
        arr = self.read_vector(buf.ctype, len(group), f"&{buf.at(group[0])}",
                               len(group) * SIZEOF[buf.ctype], buf.name + "_v")
        for j, gidx in enumerate(group):
            self.memo[-1][(v, gidx)] = f"{arr}[{j}]"
        return self.memo[-1][(v, idx)]

    def write_buffer_group(self, buf: Buf, group: list[tuple], values: list[str]) -> None:
        self.write_vector(buf.ctype, values, f"&{buf.at(group[0])}", buf.name + "_w")

    def scalar_from(self, buf: Buf) -> Scalar:
        """A rank-0 result held in a one-element buffer, read by every thread."""
        self.note_read()
        return Scalar(self.declare(buf.ctype, buf.at(()), buf.name, force=True))

    def new_buffer(self, dtype: DType | None, shape, ctype: str | None = None,
                   base: str = "buf") -> Buf:
        """A tile buffer in the program's arena (elements of the dtype's compute type, or of
        an explicit C type for accumulators)."""
        ctype = ctype or compute(dtype)
        name = self.fresh(base)
        offset = self.arena_bytes
        self.arena_bytes = (offset + numel(shape) * SIZEOF[ctype] + ALIGN - 1) // ALIGN * ALIGN
        self.buffers.append((name, ctype, offset))
        return Buf(name, tuple(shape), dtype, ctype)

    def shared_array(self, ctype: str, n: int, base: str) -> str:
        """A shared-memory array of its own (not in the arena: cp.async and ldmatrix need
        shared memory even when the arena spills to global scratch)."""
        name = self.fresh(base)
        self.shared_arrays.append((ctype, name, n, self.shared_bytes))
        self.shared_bytes += (n * SIZEOF[ctype] + ALIGN - 1) // ALIGN * ALIGN
        return name

    def fragment_layout(self, *values) -> "fragments.FragmentLayout | None":
        """The fragment layout an op reading `values` at one index must walk (None: the
        strided mapping)."""
        for v in values:
            hit = self.fragment_values.get(v)
            if hit is not None:
                return hit
        return None

    def lane_width(self, shape) -> int:
        """Elements of the last axis a thread handles together in a strided loop: the most
        (up to 8) that still leave every thread of the block work."""
        n, total = (shape[-1], numel(shape)) if shape else (1, 1)
        for width in (8, 4, 2):
            if n % width == 0 and total // width >= self.nthreads:
                return width
        return 1

    def for_each(self, shape, body: Callable[[tuple], None] | None,
                 group_body: Callable[[list], None] | None = None, sync: bool = True,
                 width: int | None = None, over=None) -> None:
        """A strided loop: the block's threads share the flattened elements of `shape`, in
        groups of lane_width (or `width`) consecutive elements of the last axis; body(idx)
        emits one element's work (or group_body(indices) a whole group's). Unrolled at
        emission when each thread has at most UNROLL_MAX groups (slots; register tiles need
        it). Ends with a barrier unless `sync` is False (the loop wrote no memory another
        thread reads). `over`: a FragmentLayout to walk instead (fragments.loop)."""
        if over is not None:
            fragments.loop(self, over, group_body or (lambda g: [body(i) for i in g]), sync)
            return
        # a barrier inside a per-element loop would be divergent (a hang): never nest them
        assert not self.in_loop, "strided loops do not nest"
        if self.need_sync:
            self.sync()
        width = width or self.lane_width(shape)
        groups = list(shape)
        if groups:
            groups[-1] //= width
        total = numel(groups)
        n_slots = slots(shape, width, self.nthreads)

        def one(e: str, slot: int | None):
            idx = self.unflatten(e, groups)
            if width > 1:
                first = self.declare("int", f"{idx[-1]} * {width}", "lane", force=True)
                group = self.group(idx[:-1] + (Lane(first, 0, width),))
            else:
                group = [idx]
            self.slot, self.slot_group = slot, group
            if group_body is not None:
                group_body(group)
            else:
                for gidx in group:
                    body(gidx)
            self.slot = self.slot_group = None

        self.in_loop += 1
        if n_slots <= UNROLL_MAX:
            for m in range(n_slots):
                e = self.fresh("e")
                with self.block(f"/* slot {m} */"):
                    self.line(f"const int {e} = (int)threadIdx.x + {m * self.nthreads};")
                    if (m + 1) * self.nthreads > total:
                        with self.block(f"if ({e} < {total})"):
                            one(e, m)
                    else:
                        one(e, m)
        else:
            e = self.fresh("e")
            with self.block(f"for (int {e} = threadIdx.x; {e} < {total}; "
                            f"{e} += {self.nthreads})"):
                one(e, None)
        self.in_loop -= 1
        if sync:
            self.sync()

    def _loads_stored_tensor(self, v: Value) -> bool:
        """Whether computing v's elements loads from a tensor this kernel may store to."""
        seen, todo = set(), [v]
        while todo:
            u = todo.pop()
            if u in seen or u.op is None or (u is not v and not self.plan.is_inline(u)):
                continue
            seen.add(u)
            if u.op.name == "load" and any(self.plan.may_alias(u.op.operands[0], t)
                                           for t in self.stored_tensors):
                return True
            todo.extend(u.op.operands)
        return False

    def reg_index(self, rep: Reg, idx: tuple) -> str:
        """The register of a register tile's element at idx, read in the loop slot that
        wrote it (residency.py guarantees that readers walk the same slots)."""
        j = self.slot_group.index(idx)
        return f"{rep.name}[{self.slot * rep.width + j}]"

    def unflatten(self, e: str, shape) -> tuple:
        """The tile index of flat row-major element e of shape (dims of extent 1: 0)."""
        idx, inner = [], 1
        for d in reversed(range(len(shape))):
            n = shape[d]
            if n == 1:
                idx.append(0)
            else:
                q = e if inner == 1 else f"{e} / {inner}"
                outer = numel(shape[:d])
                expr = q if outer == 1 else f"{q} % {n}" if inner == 1 else f"({q}) % {n}"
                idx.append(self.declare("int", expr, f"i{d}", force=True))
            inner *= n
        return tuple(reversed(idx))

    def materialize(self, v: Value, fn: Callable[[tuple], str], into: Buf | None = None):
        """A buffer (or, for register tiles and tensor-core epilogue values, a per-thread
        array) holding v's elements."""
        shape = tuple(v.type.shape)
        over = self.fragment_values.get(v)
        if into is None and over is not None:     # an epilogue value of a tensor-core loop
            frag = fragments.new_fragment(self, over, compute(v.type.dtype),
                                          v.name or v.op.name)
            fragments.fill(self, frag, fn, sync=self._loads_stored_tensor(v))
            return frag
        if into is None and v in self.registers:
            width = self.lane_width(shape)
            reg = Reg(self.fresh(v.name or v.op.name), shape, width)
            n = slots(shape, width, self.nthreads) * width
            self.line(f"{compute(v.type.dtype)} {reg.name}[{n}];")

            def write_registers(group):
                for j, idx in enumerate(group):
                    self.line(f"{reg.name}[{self.slot * width + j}] = {fn(idx)};")
            # other threads' later stores must not overtake these loads (in-place kernels)
            self.for_each(shape, None, write_registers, sync=self._loads_stored_tensor(v))
            return reg
        buf = into or self.new_buffer(v.type.dtype, shape, base=v.name or v.op.name)

        def group_body(group):
            values = [fn(idx) for idx in group]
            if len(group) > 1:
                self.write_buffer_group(buf, group, values)
            else:
                self.line(f"{buf.at(group[0])} = {values[0]};")
        self.for_each(shape, None, group_body, over=over)
        return buf

    def sym(self, expr) -> str:
        """A size expression's value (a long long kernel parameter)."""
        return self.layout.slot_name(self.layout.sym_slots[expr])

    # -- ops ---------------------------------------------------------------------------------
    # hooks of OpWalker
    def scalar_value(self, v: Value, op: Op, value: str) -> Scalar:
        return Scalar(self.declare(compute(v.type.dtype), value, v.name or op.name))

    def tile_begin(self, coord: str, block: int, handle: Value) -> Handle:
        return Handle(self.declare("int", f"{coord} * {block}",
                                   f"{handle.name or 'tile'}_begin", force=True), block)

    # -- carried values ----------------------------------------------------------------------
    def carried_slot(self, v: Value) -> Buf | None:
        """A fresh home for a loop-carried / if-result tile value (None for scalars)."""
        if rank(v) == 0:
            return None
        return self.new_buffer(v.type.dtype, v.type.shape, base="carried")

    # hooks of CarriedSlots
    def buffer_key(self, rep):
        return rep.name if isinstance(rep, Buf) else None

    def staging_buffer(self, slot: Buf) -> Buf:
        return self.new_buffer(slot.dtype, slot.shape, base="staged")

    def copy_element(self, dst: Buf, src: Buf, idx) -> None:
        self.line(f"{dst.at(idx)} = {src.at(idx)};")



# == functions ===================================================================================
def _bind_params(E: FunctionEmitter, layout: Layout) -> None:
    """Tensors and scalar params in env; scalars converted from their 8-byte parameter."""
    for pos, slot, v, unit, r in layout.tensors:
        names = [layout.slot_name(slot + i) for i in range(1 + 2 * r)]
        strides = ["1" if d in unit else names[1 + r + d] for d in range(r)]
        E.env[v] = Tensor(names[0], names[1:1 + r], strides, v.type.dtype)
    for pos, slot, v in layout.scalars:
        d = v.type.dtype
        raw = layout.slot_name(slot)
        if d.is_bool:
            expr = f"({raw} != 0)"
        elif d.is_int:
            expr = f"(({compute(d)}){raw})"
        else:            # a double parameter; narrower floats round as the interpreter's
            expr = raw if d == D.float64 else arith.round_half(d, f"((float){raw})")
        E.env[v] = Scalar(E.declare(compute(d), expr, v.name or "param", force=True))


def _program_coordinates(E, launch, grid: list[str]) -> list[str]:
    """Declare each grid dim's tile coordinate from blockIdx.x: row-major, the last dim
    fastest; with a dot in the launch the last two dims go in groups of GROUP_ROWS rows
    (every program of a group row before the next row)."""
    if not launch.loops:
        return []
    E.line("long long fc_rest = blockIdx.x;")
    n = len(grid)
    grouped = GROUP_ROWS > 1 and n >= 2 and any(
        o.name == "dot" for op in launch.ops for o in op.walk())
    coords = [None] * n
    if grouped:
        rows, cols = grid[-2], grid[-1]
        E.line(f"// program coordinates: the last two grid dims in groups of {GROUP_ROWS} "
               "rows (programs running together share operand tiles in L2), column by "
               "column in a group; the others row-major")
        E.line(f"const long long fc_plane = (long long){rows} * {cols}, fc_group = "
               f"{GROUP_ROWS}LL * {cols};")
        E.line("const long long fc_tile = fc_rest % fc_plane;")
        if n > 2:
            E.line("fc_rest /= fc_plane;")
        E.line(f"const long long fc_first = fc_tile / fc_group * {GROUP_ROWS};")
        E.line(f"const long long fc_rows = {rows} - fc_first < {GROUP_ROWS} ? "
               f"{rows} - fc_first : {GROUP_ROWS};")
        coords[n - 2] = E.declare("int", "(int)(fc_first + fc_tile % fc_group % fc_rows)",
                                  f"pid{n - 2}", force=True)
        coords[n - 1] = E.declare("int", "(int)(fc_tile % fc_group / fc_rows)",
                                  f"pid{n - 1}", force=True)
        leading = n - 2
    else:
        E.line("// program coordinates: blockIdx.x row-major over the grid, the last dim "
               "fastest")
        leading = n
    for d in reversed(range(leading)):
        if d == 0:
            coords[0] = E.declare("int", "(int)fc_rest", "pid0", force=True)
        else:
            coords[d] = E.declare("int", f"(int)(fc_rest % {grid[d]})", f"pid{d}",
                                  force=True)
            E.line(f"fc_rest /= {grid[d]};")
    return coords


def emit_function(kernel: Op, plan: Plan, layout: Layout, k: int, fname: str,
                  nthreads: int, arch: str = "", stages: int = tensor_cores.MIN_STAGES
                  ) -> tuple[str, int, bool, int]:
    """The source of launch k's device function, its global scratch bytes per program
    (0: its buffers live in shared memory), whether it uses tensor cores and the dynamic
    shared memory a launch of it asks for (0: none; arch: the
    target, "" for none in particular: no arch-specific instructions; stages: the most
    shared-memory stages a tensor-core loop stages its operands in)."""
    launch = layout.launches[k]
    top = kernel.regions[0].ops
    roots = top[:top.index(launch.first)] + launch.ops      # its prologue and its ops
    E = FunctionEmitter(kernel, plan, layout, nthreads, arch, roots, stages)
    _bind_params(E, layout)
    E.emit_prologue(launch, serial_ops(layout.launches))
    coords = _program_coordinates(E, launch, [layout.slot_name(s)
                                              for s in layout.grid_slots[k]])
    E.emit_program(launch, coords)
    body = E.lines
    while body and body[-1].strip() == "__syncthreads();":     # nothing left to wait for
        body.pop()
    arena = E.arena_bytes
    scratch = 0
    # staged tensor-core operands past the 48 KB a block may declare statically go to
    # dynamic shared memory (the launch asks for it, tensor_cores.shared_limit allows it)
    dynamic = E.shared_bytes > SHARED_BYTES
    limit = tensor_cores.shared_limit(arch) if dynamic else SHARED_BYTES
    arena_shared = arena and arena + E.shared_bytes <= limit
    dynamic_bytes = E.shared_bytes + (arena if arena_shared else 0) if dynamic else 0
    if dynamic:
        head = [f"  extern __shared__ __align__({ALIGN}) unsigned char fc_shared[];"
                f"  // dynamic: {dynamic_bytes} bytes"]
        head += [f"  {ctype}* {name} = ({ctype}*)(fc_shared + {offset});"
                 for ctype, name, _, offset in E.shared_arrays]
        if arena_shared:
            head.append(f"  unsigned char* fc_arena = fc_shared + {E.shared_bytes};")
    else:
        head = [f"  __shared__ __align__({ALIGN}) {ctype} {name}[{n}];"
                for ctype, name, n, _ in E.shared_arrays]
        if arena_shared:
            head.append(f"  __shared__ __align__({ALIGN}) unsigned char fc_arena[{arena}];")
    if arena:
        if not arena_shared:
            scratch = arena
            head.append(f"  // tile buffers ({arena} bytes) exceed shared memory: a slice of "
                        "global scratch per program")
            head.append(f"  unsigned char* fc_arena = {layout.slot_name(layout.scratch_slots[k])}"
                        f" + (unsigned long long)blockIdx.x * {arena}ULL;")
        for name, ctype, offset in E.buffers:
            head.append(f"  {ctype}* {name} = ({ctype}*)(fc_arena + {offset});")
    what = "serial launch (one program)" if launch.serial else \
        f"grid of {len(launch.loops)} parallel tile loop(s)"
    bounds = str(nthreads)
    if E.accumulators:
        per_sm = tensor_cores.programs_per_sm(nthreads, E.accumulators, dynamic_bytes, arch)
        bounds += f", {per_sm}" if per_sm > 1 else ""
    src = (f"// launch {k}: {what}\n"
           f"extern \"C\" __global__ void __launch_bounds__({bounds}) {fname}(\n"
           f"    {layout.signature()}) {{\n" + "\n".join(head + body) + "\n}\n")
    return src, scratch, E.accumulators > 0, dynamic_bytes
