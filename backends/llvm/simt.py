"""The SIMT mapping of the LLVM lowering on GPU targets (nvptx.py): one thread block runs
one program, the mapping backends/cuda/emit.py describes for the CUDA C backend.

- A loop nest over a tile shape at the program's top level is *distributed*: thread t
  takes flattened groups t, t + T, t + 2T, ... of `vector_width` consecutive elements (T
  threads, the last dim fastest, so a warp touches consecutive memory: coalesced; a group
  moves in 16-byte accesses, vectors.py), and a barrier follows it, since other threads
  read what it wrote. A nest over the rank-0 shape runs in every thread alike: its scalar
  results must exist in all of them.
- Register tiles (`register_tiles`, backends/residency.py): a materialized tile whose
  readers all walk each thread's own groups is held as one SSA value per slot (round,
  lane); nests over its shape unroll their rounds, and row reductions over it give each
  row the lanes that hold its groups.
- Nests inside a distributed one run serially in their thread (`depth` > 0); buffers made
  there are the thread's own (local memory), buffers made at the top level are the
  program's (shared memory, else the per-program global scratch).
- Scalars are computed by every thread, so control flow outside nests is uniform and
  barriers in loops and ifs are legal. A barrier also comes before a nest when memory was
  touched outside nests since the last one (a scalar read that the nest could overwrite).
- A reduction along the last axis gives each output a power-of-two group of lanes:
  strided partial accumulators, then warp shuffles, then shared memory across warps;
  every lane of the group ends with the result. Along another axis, and for dot, each
  thread computes whole output elements.
- Side effects of rank 0 that must happen once (an atomic add) run in thread 0, which
  passes the result to the others through shared memory.
"""
from __future__ import annotations

from typing import Callable

import llvmlite.ir as ir

from .. import residency
from ..residency import UNROLL_MAX
from . import loops, vectors
from .types import F32, F64, I32, I64
from .values import Scalar, numel

WARP = 32
# rounds of a distributed nest emitted together, their loads before their stores: loads in
# flight per thread (a tile's inline loads never alias its stores: plan.py materializes
# those that could). With 16-byte vector groups, 4 passed the GPU tests but ran bias+gelu
# 15% slower and the rest the same (H100, 2026-12-06): a round is already 16 bytes a load.
# Nests over the shape of a register tile unroll all their rounds regardless
UNROLL = 1
# consecutive elements of a thread emitted together (vectors.py): 16 bytes of bf16
VECTOR = 8
_FULL_MASK = ir.Constant(I32, -1)
_MEMORY_OPCODES = frozenset(("load", "store", "call", "atomicrmw", "cmpxchg"))


class SimtState:
    """Per-function state of the mapping, held by the target (nvptx.NVPTXTarget)."""

    def __init__(self, tid: ir.Value, nthreads: int):
        self.tid = tid                  # i32 thread index in the block
        self.nthreads = nthreads
        self.depth = 0                  # > 0: inside a nest (serial, private buffers)
        self._synced_at = None          # (block, instruction count) after the last barrier

    def mark_synced(self, b: ir.IRBuilder) -> None:
        self._synced_at = (b.block, len(b.block.instructions))

    def needs_barrier(self, b: ir.IRBuilder) -> bool:
        """Whether memory may have been touched outside nests since the last barrier."""
        if self._synced_at is None:
            return True
        block, count = self._synced_at
        if b.block is not block:
            return True
        return any(i.opname in _MEMORY_OPCODES for i in block.instructions[count:])


def state(L) -> SimtState:
    return L.ctx.target.simt


def barrier(L) -> None:
    fn = L.ctx.declare("llvm.nvvm.barrier0", ir.VoidType(), [])
    L.b.call(fn, [])
    state(L).mark_synced(L.b)


def top_level_nest(L, shape, body: Callable[[tuple], None]) -> None:
    """A nest at the program's top level: distributed over the threads (rank 0: run by
    each), fenced by barriers."""
    s = state(L)
    if s.needs_barrier(L.b):
        barrier(L)
    s.depth += 1
    if shape:
        _distributed(L, shape, body)
    else:
        body(())
    s.depth -= 1
    barrier(L)


def _distributed(L, shape, body) -> None:
    s = state(L)
    n, t = numel(shape), s.nthreads
    b = L.b
    if n % t:                       # the last round has idle threads: one element at a time
        rounds = -(-n // t)

        def one(k):
            lin = _strided(b, k, t, s.tid)
            when(L, b.icmp_unsigned("<", lin, ir.Constant(I32, n)),
                 lambda: body(unflatten(b, lin, shape)))
        if rounds == 1:
            one(0)
        else:
            loops.counted(L.ctx, rounds, lambda k, _: (one(k), [])[1], name="simt")
        return
    width = vector_width(shape[-1], n, t)
    rounds = n // (t * width)
    mapped = tuple(shape) in L.register_shapes          # rounds unrolled: slots known
    unroll = rounds if mapped else UNROLL
    while rounds % unroll:
        unroll //= 2

    def group(g):
        """Rounds g*unroll ... of this thread, their stores after all their loads; a round
        is `width` consecutive elements (vectors.py)."""
        first = _strided(b, g, t * unroll, s.tid)
        L.deferred_stores = []
        vectors.start(L, width)
        for j in range(unroll):
            chunk = first if j == 0 else b.add(first, ir.Constant(I32, j * t),
                                                flags=("nuw", "nsw"))
            lin = chunk if width == 1 else b.mul(chunk, ir.Constant(I32, width),
                                                 flags=("nuw", "nsw"))
            for w, idx in enumerate(vectors.lanes(L, unflatten(b, lin, shape))):
                L.slot = (j, w) if mapped else None
                body(idx)
        L.slot = None
        vectors.finish(L, L.emit_store)
        stores, L.deferred_stores = L.deferred_stores, None
        for store in stores:
            store()
    if rounds == unroll:
        group(0)
    else:
        loops.counted(L.ctx, rounds // unroll, lambda g, _: (group(g), [])[1], name="simt")


def vector_width(last: int, n: int, nthreads: int) -> int:
    """Consecutive elements a thread takes at a time in a nest of n elements whose last
    dim is `last`: up to VECTOR, dividing the last dim, every thread as busy."""
    width = VECTOR
    while width > 1 and (last % width or n % (nthreads * width)):
        width //= 2
    return width


def register_rounds(shape, nthreads: int) -> int | None:
    """Slots per thread of the register mapping of a tile shape (every thread busy on every
    round of `vector_width` elements, rounds unrolled); None: no register tile of it."""
    n = numel(shape)
    if not shape or nthreads & (nthreads - 1):
        return None
    width = vector_width(shape[-1], n, nthreads)
    rounds = n // (nthreads * width)
    return rounds if n % (nthreads * width) == 0 and rounds <= UNROLL_MAX else None


def register_tiles(plan, nthreads: int) -> set:
    """The materialized values of the plan held in registers (backends/residency.py)."""
    unmapped = {op.results[0] for op in plan.kernel.walk() if op.results
                and register_rounds(getattr(op.results[0].type, "shape", ()), nthreads) is None}
    return residency.register_tiles(
        plan, lambda shape: vector_width(shape[-1], numel(shape), nthreads), nthreads,
        exclude=unmapped)


def _strided(b: ir.IRBuilder, k, step: int, start: ir.Value) -> ir.Value:
    """start + k * step (k: an i32 loop counter, or an int for an unrolled round)."""
    if isinstance(k, int):
        return start if k == 0 else b.add(start, ir.Constant(I32, k * step),
                                          flags=("nuw", "nsw"))
    return b.add(b.mul(k, ir.Constant(I32, step), flags=("nuw", "nsw")), start,
                 flags=("nuw", "nsw"))


def when(L, cond: ir.Value, then: Callable[[], object]) -> None:
    loops.branch(L.ctx, cond, then)


def unflatten(b: ir.IRBuilder, lin: ir.Value, shape) -> tuple:
    """The tile index (i32 values; 0 on dims of size 1) of row-major position lin."""
    idx = []
    rest = lin
    for d in range(len(shape) - 1, -1, -1):
        size = shape[d]
        if size == 1:
            idx.append(0)
            continue
        if d == 0:
            idx.append(rest)
            continue
        c = ir.Constant(I32, size)
        idx.append(b.urem(rest, c))
        rest = b.udiv(rest, c)
    return tuple(reversed(idx))


# -- values across threads ------------------------------------------------------------------
def _shuffle(L, v: ir.Value, offset: int) -> ir.Value:
    """v from the lane `offset` away by xor (shfl.sync.bfly over the whole warp)."""
    b = L.b
    fn = L.ctx.declare("llvm.nvvm.shfl.sync.bfly.i32", I32, [I32, I32, I32, I32])

    def move(x32):
        return b.call(fn, [_FULL_MASK, x32, ir.Constant(I32, offset), ir.Constant(I32, 31)])
    ty = v.type
    if ty in (F64, I64):
        bits = b.bitcast(v, I64) if ty == F64 else v
        lo = move(b.trunc(bits, I32))
        hi = move(b.trunc(b.lshr(bits, ir.Constant(I64, 32)), I32))
        got = b.or_(b.zext(lo, I64), b.shl(b.zext(hi, I64), ir.Constant(I64, 32)))
        return b.bitcast(got, F64) if ty == F64 else got
    if ty == F32:
        return b.bitcast(move(b.bitcast(v, I32)), F32)
    if isinstance(ty, ir.IntType) and ty.width < 32:
        return b.trunc(move(b.zext(v, I32)), ty)
    if ty == I32:
        return move(v)
    raise NotImplementedError(f"ptx backend: no warp shuffle of {ty}")


def one_thread(L, fn: Callable[[], ir.Value], ty: ir.Type) -> ir.Value:
    """fn() run by thread 0 alone (a side effect that must happen once); every thread gets
    its value."""
    s = state(L)
    slot = L.typed_buffer(ty, (1,))           # at the top level: the program's own
    if s.needs_barrier(L.b):
        barrier(L)
    when(L, L.b.icmp_unsigned("==", s.tid, ir.Constant(I32, 0)),
         lambda: L.raw_store(slot, (0,), fn()))
    barrier(L)
    value = L.raw_load(slot, (0,))
    barrier(L)                    # the slot is read before anything else can run
    return value


# -- reductions ---------------------------------------------------------------------------
def _pow2_floor(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def reduction_lanes(outputs: int, n: int, nthreads: int) -> int:
    """Lanes (a power of two) that share one output of an innermost-axis reduction of n
    elements: enough to fill the block, at least a warp's worth where the row is long
    enough (a warp then reads consecutive elements), never more than the elements."""
    by_fill = _pow2_floor(max(1, nthreads // max(outputs, 1)))
    return max(1, min(_pow2_floor(n), max(by_fill, WARP), nthreads))


def row_lanes(shape, outs: int, nthreads: int, register_shapes) -> tuple[int, int | None]:
    """(lanes per output, vector width) of an innermost-axis reduction over `shape` with
    `outs` outputs; the width is None unless the lanes follow the register mapping (a
    register shape whose rows hold a power of two of groups: residency.py keeps tiles read
    by row reductions in registers only then)."""
    n = shape[-1]
    width = vector_width(n, numel(shape), nthreads)
    per_row = n // width
    if tuple(shape) in register_shapes and per_row & (per_row - 1) == 0:
        return min(nthreads, per_row), width
    return reduction_lanes(outs, n, nthreads), None


def reduce_innermost(L, x, res, spec) -> None:
    """An innermost-axis reduction of x into res (reduce.Spec `spec`). Over a shape of
    register tiles, the lanes of a row follow the register mapping's groups of it, so that
    each lane reads its own slots (passes and steps unrolled)."""
    s = state(L)
    b = L.b
    shape = x.type.shape
    n = shape[-1]
    out_shape = res.type.shape
    outs = numel(out_shape)
    t = s.nthreads
    lanes, width = row_lanes(shape, outs, t, L.register_shapes)
    mapped = width is not None
    groups = t // lanes
    passes = -(-outs // groups)
    out = L.new_buffer(res.type.dtype, out_shape) if out_shape else None
    if s.needs_barrier(b):
        barrier(L)
    lane = b.urem(s.tid, ir.Constant(I32, lanes)) if lanes < t else s.tid
    group = b.udiv(s.tid, ir.Constant(I32, lanes))
    partials = ([L.typed_buffer(ty, (t // WARP,)) for ty in spec.types]
                if lanes > WARP else None)
    L.work += numel(shape) * L._weight
    result = []

    def one_pass(p):
        o = _strided(b, p, groups, group)
        # rank 0: every group reduces the row; else the groups past the last output idle
        active = (None if not out_shape or passes * groups == outs
                  else b.icmp_unsigned("<", o, ir.Constant(I32, outs)))
        out_idx = unflatten(b, o, out_shape) if out_shape else ()
        first_slot = p * (n // (lanes * width)) if mapped else None
        accs = _row_partials(L, spec, x, out_idx, n, lanes, lane, active, width, first_slot)
        accs = _combine(L, spec, accs, lanes, partials)
        value = spec.finish(accs)
        if out is None:
            result.append(value)
            return
        first = b.icmp_unsigned("==", lane, ir.Constant(I32, 0))
        store_cond = first if active is None else b.and_(first, active)
        when(L, store_cond, lambda: L.buf_store(out, out_idx, value))

    s.depth += 1
    if passes == 1 or mapped:
        for p in range(passes):
            one_pass(p)
    else:
        loops.counted(L.ctx, passes, lambda p, _: (one_pass(p), [])[1], name="rpass")
    s.depth -= 1
    barrier(L)
    L.env[res] = out if out is not None else Scalar(result[0])


def _row_partials(L, spec, x, out_idx, n, lanes, lane, active, width=None,
                  first_slot=None) -> list:
    """Accumulators of one lane over elements lane, lane + lanes, ... of its row. With
    first_slot, the steps are unrolled and step j reads register slot first_slot + j."""
    b = L.b
    # a lane takes `width` consecutive elements at a time (vectors.py) where all lanes
    # of every group are busy on every step
    if width is None:
        width = vector_width(n, n, lanes) if active is None else 1
    steps = -(-n // (lanes * width))

    def step(j, accs):
        first = _strided(b, j, lanes, lane)
        if width > 1:
            first = b.mul(first, ir.Constant(I32, width), flags=("nuw", "nsw"))
        cond = active
        if n % (lanes * width):             # the last step has idle lanes (width 1 then)
            inside = b.icmp_unsigned("<", first, ir.Constant(I32, n))
            cond = inside if cond is None else b.and_(cond, inside)

        def update():
            got = accs
            vectors.start(L, width)
            grouped = []
            for w, (i,) in enumerate(vectors.lanes(L, (first,))):
                L.slot = None if first_slot is None else (first_slot + j, w)
                if spec.group is not None and width > 1:
                    grouped.append(L.elem(x, out_idx + (i,)))
                else:
                    got = spec.step(got, L.elem(x, out_idx + (i,)), i)
            if grouped:
                got = spec.group(got, grouped)
            L.slot = None
            vectors.finish(L, L.emit_store)
            return got
        return loops.branch(L.ctx, cond, L.fresh(update), accs)
    if steps == 1 or first_slot is not None:
        accs = spec.identity
        for j in range(steps):
            accs = step(j, accs)
        return accs
    unroll = UNROLL if active is None and n % (lanes * width) == 0 else 1
    while steps % unroll:
        unroll //= 2

    def steps_from(j, accs):       # unrolled, unguarded: the loads go out together
        base = b.mul(j, ir.Constant(I32, unroll), flags=("nuw", "nsw"))
        for u in range(unroll):
            accs = step(base if u == 0 else b.add(base, ir.Constant(I32, u),
                                                   flags=("nuw", "nsw")), accs)
        return accs
    return loops.counted(L.ctx, steps // unroll, steps_from, spec.identity, name="rstep")


def _combine(L, spec, accs: list, lanes: int, partials) -> list:
    """Merge the accumulators of each group of `lanes` lanes; every lane gets the result
    (merges are commutative, so both partners of a shuffle compute the same value)."""
    offset = 1
    while offset < min(lanes, WARP):
        accs = spec.merge(accs, [_shuffle(L, a, offset) for a in accs])
        offset *= 2
    if partials is None:
        return accs
    s = state(L)
    b = L.b
    warp = b.udiv(s.tid, ir.Constant(I32, WARP))
    leader = b.icmp_unsigned("==", b.urem(s.tid, ir.Constant(I32, WARP)), ir.Constant(I32, 0))
    when(L, leader, lambda: [L.raw_store(p, (warp,), a) for p, a in zip(partials, accs)])
    barrier(L)
    per_group = lanes // WARP
    first = b.mul(b.udiv(warp, ir.Constant(I32, per_group)), ir.Constant(I32, per_group))
    accs = [L.raw_load(p, (first,)) for p in partials]
    for w in range(1, per_group):
        at = b.add(first, ir.Constant(I32, w))
        accs = spec.merge(accs, [L.raw_load(p, (at,)) for p in partials])
    barrier(L)                   # the partials are read before the next pass writes them
    return accs


def reduce_outer(L, x, axis: int, res, spec) -> None:
    """A reduction along an outer axis: each thread reduces whole output elements, in input
    order along the axis (consecutive threads read consecutive elements of a row)."""
    out = L.new_buffer(res.type.dtype, res.type.shape)
    extent = x.type.shape[axis]

    def per_output(out_idx):
        def step(a, accs):
            idx = out_idx[:axis] + (a,) + out_idx[axis:]
            return spec.step(accs, L.elem(x, idx), a)
        accs = loops.counted(L.ctx, extent, L.fresh(step), spec.identity, name="raxis") \
            if extent > 1 else L.fresh(step)(ir.Constant(I32, 0), spec.identity)
        L.buf_store(out, out_idx, spec.finish(accs))
    L.for_each(res.type.shape, per_output)
    L.work += numel(x.type.shape) * L._weight
    L.env[res] = out


# -- dot ------------------------------------------------------------------------------------
def dot(L, a_v, b_v, res, acc_ty, conv, mul, add, finish) -> None:
    """C[m, n] = sum_k A[m, k] B[k, n]: each thread computes whole output elements, k in
    order (the CPU's accumulation order and rounding)."""
    M, K = a_v.type.shape
    N = b_v.type.shape[1]
    zero = ir.Constant(acc_ty, 0.0 if isinstance(acc_ty, (ir.FloatType, ir.DoubleType))
                       else 0)
    c = L.new_buffer(res.type.dtype, (M, N), elem_ty=acc_ty)

    def per_output(idx):
        m, n = idx

        def kstep(k, accs):
            av = conv(L.elem(a_v, (m, k)), a_v.type.dtype)
            bv = conv(L.elem(b_v, (k, n)), b_v.type.dtype)
            return [add(accs[0], mul(av, bv))]
        acc = loops.counted(L.ctx, K, L.fresh(kstep), [zero], name="k")[0]
        L.raw_store(c, idx, finish(acc))
    L.for_each((M, N), per_output)
    L.work += M * N * K * L._weight
    L.env[res] = c

