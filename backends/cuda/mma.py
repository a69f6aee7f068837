"""The tensor-core lowering of a K loop `acc += dot(a, b)` (a tensor_cores.MMALoop), with S
shared-memory stages (spec.stages, 2 or more):

    float acc[MI * NI * 4] = init                 (registers, fragments.py's layout)
    stage K tiles 0 .. S-2 into stages 0 .. S-2   (one cp.async group each)
    for (k = 0; k < K; k += BK) {
      wait until tile k has landed (S-2 younger groups may still fly); __syncthreads()
      stage K tile k + (S-1) BK into the stage tile k - BK used (every warp is past it)
      per 16-deep K step: ldmatrix the warp's a and b fragments, MI x NI mma.sync
    }

One barrier per K tile: it both publishes tile k and tells each thread that every warp is
done with the stage it refills. Staged tiles are the operands' 16-bit float bits, row-major
([BM][BK] and [BK][BN]), each row padded by tensor_cores.PAD halves so that ldmatrix's
eight row addresses hit distinct banks; b is read with ldmatrix .trans (mma wants it
column-major). An operand that is a direct load whose 8-element rows are contiguous,
16-byte aligned and valid all together (backends/vector_facts.py proves it from the
specialization) is copied by cp.async, 16 bytes a thread, zero-filled out of bounds,
overlapping the copies of the next tiles with the multiplication of this one. When its
indices are the K tile's index or do not depend on K, each thread's copy slots (shared
offset, source pointer at K = 0, bounds checks that do not involve K) are computed once
before the loop and a K tile only adds k times the K stride: the loop then spends its
issue slots on the multiplies. A K tile inside every bound (worked out once: every slot's
K-free checks, and the last K tile begin below every K limit and mask bound) copies
without predicates, in one uniform branch; with SPREAD_COPIES its copies go in shares
after each K step's mma.sync. Any other operand (ragged or unaligned sizes, transposed or
computed tiles) is computed by the usual element rules, 8 elements a thread, converted to
the 16-bit type (exact: tensor_cores checked that its values are) and stored.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir import dtypes as D
from ...ir.core import Op, Value
from ...ir.ops import memory_operands
from .. import switches
from . import arith, fragments, memory
from .tensor_cores import (MMA_K, MMA_M, MMA_N, PAD, MMALoop, Operand, constant,
                           loop_registers)
from .types import literal
from .values import INLINE, Handle, Lane, Scalar, rank

_MMA = {D.bfloat16: "fc_mma_bf16", D.float16: "fc_mma_f16"}
_CHUNK = 8                     # halves a thread stages at once: one 16-byte access
# The next K tile's first fragments load before this tile's last mma.sync (k_loop). Off
# until measured on a GPU (correct in the emulation, tests/compile; not yet timed): the
# schedule measured on the H100 loads them after the barrier. `benchmarks/matmul_configs.py
# --schedules within,across` compares the two in one run
LOAD_ACROSS_BARRIER = False
# The next tile's copies are spread over this tile's K steps, a share after each step's
# mma.sync (CUTLASS's multistage order), instead of all before the first: the first
# multiplies no longer wait behind the copy block. Needs unchecked interior copies (the
# hoisted slots) and the schedule within the barrier. H100, bf16 matmul: 8 warps of 64x64
# gain 7-13% (256x128x64/3s: 314 -> 356 TFLOP/s at 4096^3), 4 warps of 128x128x64 move
# under 1% (they are L2-bound), benchmarks/matmul_configs.py --schedules within,spread
SPREAD_COPIES = True
# the K-loop schedules by name: the values of the two switches above (matmul_configs.py
# and the tests set them by these)
SCHEDULES = {"within": {"LOAD_ACROSS_BARRIER": False, "SPREAD_COPIES": False},
             "across": {"LOAD_ACROSS_BARRIER": True, "SPREAD_COPIES": False},
             "spread": {"LOAD_ACROSS_BARRIER": False, "SPREAD_COPIES": True}}
switches.register(__name__, "LOAD_ACROSS_BARRIER", "SPREAD_COPIES")


class _Staging:
    """One operand's shared-memory tiles (spec.stages of them) and the code that fills one."""

    def __init__(self, E, operand: Operand, rows: int, cols: int, dtype, base: str,
                 stages: int):
        self.operand = operand
        self.shape = (rows, cols)
        self.dtype = dtype
        self.pitch = cols + PAD
        self.size = rows * self.pitch
        self.name = E.shared_array("unsigned short", stages * self.size, base)
        self._async: bool | None = None
        self.slots: list[_Slot] | None = None      # hoisted copy slots (hoist())
        self.all_ok: str | None = None             # every slot's K-free checks at once

    def copies_async(self, E) -> bool:
        """Whether cp.async can stage the operand (asked with the K handle bound)."""
        if self._async is None:
            op, mask = self.operand.load, self.operand.mask
            self._async = op is not None and \
                E.vec.width_bytes(op, _CHUNK) == 2 * _CHUNK and \
                (mask is None or E.vec.uniform(mask, 1, _CHUNK))
        return self._async

    def hoist(self, E, spec: MMALoop) -> None:
        """Each thread's copy slots, computed once before the K loop (K bound to 0), when
        cp.async stages the operand, its indices are the K tile's index or free of K, and
        the block's threads cover the tile's 16-byte chunks evenly."""
        load = self.operand.load
        rows, cols = self.shape
        per_row = cols // _CHUNK
        nthreads = E.nthreads
        if not self.copies_async(E) or (rows * per_row) % nthreads or nthreads % per_row:
            return
        kinds = [_k_role(iv, spec.loop) for iv in memory_operands(load)[1]]
        if None in kinds:
            return
        t = E.env[load.operands[0]]
        col = E.declare("int", f"((int)threadIdx.x % {per_row}) * {_CHUNK}", "copy_col",
                        force=True)
        first_row = E.declare("int", f"(int)threadIdx.x / {per_row}", "copy_row", force=True)
        self.slots = []
        for m in range(rows * per_row // nthreads):
            row = E.declare("int", f"{first_row} + {m * (nthreads // per_row)}", "copy_row",
                            force=True)
            idx = (row, Lane(col, 0, _CHUNK))
            dims = memory.index_terms(E, load, idx)
            fixed = [(x, n) for (x, _, n), role in zip(dims, kinds) if n and role == "fixed"]
            moving = [(x, n) for (x, _, n), role in zip(dims, kinds) if n and role == "k"]
            src = E.declare("unsigned short*",
                            f"{t.ptr} + ({' + '.join(term for _, term, _ in dims)})",
                            "copy_src", force=True)
            ok = E.declare("bool", " && ".join(memory.in_bounds(x, n) for x, n in fixed),
                           "copy_ok", force=True) if fixed else None
            step = [t.strides[d] for d, role in enumerate(kinds) if role == "k"]
            self.slots.append(_Slot(idx, E.declare("int", f"{row} * {self.pitch} + {col}",
                                                    "copy_dst", force=True),
                                    src, ok, moving, step))
        oks = [slot.ok for slot in self.slots if slot.ok]
        if oks:
            self.all_ok = E.declare("bool", " && ".join(oks), "copy_all_ok", force=True)

    def interior_terms(self, E, spec: MMALoop) -> tuple[list[str], set[str]] | None:
        """What makes every copy of a K tile valid, so that it runs without per-copy
        predicates: (flags that must hold, sizes the tile's end must not pass), each free of
        K (asked with the K handle bound); None where the slots or the mask do not allow
        it (the copies keep their checks)."""
        if self.slots is None:
            return None
        limits = {n for slot in self.slots for _, n in slot.moving}
        if self.operand.mask is not None:
            bounds = _k_bounds(self.operand.mask, spec.loop.regions[0].args[0])
            reps = [E.env.get(v) for v in bounds or ()]
            if bounds is None or not all(isinstance(r, Scalar) for r in reps):
                return None
            limits |= {r.expr for r in reps}
        return [self.all_ok] if self.all_ok else [], limits

    def target(self, E, stage: str, begin: str) -> tuple[str, dict]:
        """The stage's tile pointer and, per K stride of the hoisted slots, the K tile's
        offset along it (one multiply): what every share of a fill adds to its slots."""
        tile = E.declare("unsigned short*", f"{self.name} + ({stage}) * {self.size}",
                         self.name, mutable=True)
        moved = {}
        for step in dict.fromkeys(step for slot in self.slots or () for step in slot.step):
            moved[step] = E.declare("long long", f"(long long)({begin})" + (
                f" * {step}" if step != "1" else ""), "k_offset", force=True)
        return tile, moved

    def fill(self, E, stage: str, begin: str, interior: bool = False,
             part: tuple[int, int] = (0, 1), target: tuple[str, dict] | None = None) -> None:
        """Stage the K tile at `begin` into `stage`; `interior`: the caller checked the
        conditions of interior_terms() (every copy is valid); `part` (j, n): only the j-th
        of n shares of the hoisted slots, into `target` (from target(), worked out once
        for all shares)."""
        if self.slots is not None:
            tile, moved = target or self.target(E, stage, begin)
            j, n = part
            share = self.slots[j * len(self.slots) // n:(j + 1) * len(self.slots) // n]
            self._fill_slots(E, tile, moved, begin, interior, share)
            return
        assert part == (0, 1), "only hoisted copy slots are staged in parts"
        tile, _ = self.target(E, stage, begin)
        value, load, mask = self.operand.value, self.operand.load, self.operand.mask
        copy = self.copies_async(E)

        def chunk(group):
            row, lane = group[0]
            dst = f"{tile} + {row} * {self.pitch} + {lane}"
            if copy:
                off, valid = memory.address(E, load, group[0])
                conds = [c for c in (valid, mask and E.elem(mask, group[0])) if c]
                ptr = E.env[load.operands[0]].ptr
                if conds:              # a lane out of bounds copies nothing from the base
                    ok = E.declare("bool", " && ".join(conds), "copy", force=True)
                    E.line(f"fc_cp_async_16({dst}, {ok} ? {ptr} + {off} : {ptr}, {ok});")
                else:
                    E.line(f"fc_cp_async_16({dst}, {ptr} + {off}, true);")
            else:
                bits = [arith.to_storage(self.dtype, E.elem(value, idx)) for idx in group]
                E.write_vector("unsigned short", bits, dst, self.name + "_w")
        E.need_sync = False            # the stage was last read before the loop's barrier
        E.for_each(self.shape, None, chunk, sync=False, width=_CHUNK)

    def _fill_slots(self, E, tile: str, moved: dict, begin: str, interior: bool,
                    slots) -> None:
        mask = self.operand.mask
        for slot in slots:
            conds = [] if interior else \
                [c for c in [slot.ok] + [memory.in_bounds(f"({begin} + {x})", n)
                                         for x, n in slot.moving] if c]
            if mask is not None and not interior:
                conds.append(E.elem(mask, slot.idx))
            src = " + ".join([slot.src] + [moved[step] for step in slot.step])
            dst = f"{tile} + {slot.dst}"
            # a chunk out of bounds reads no byte (source size 0: zero-filled), so its
            # address is never clamped (as CUTLASS's zfill copies)
            ok = E.declare("bool", " && ".join(conds), "copy", force=True) if conds else "true"
            E.line(f"fc_cp_async_16({dst}, {src}, {ok});")


@dataclass
class _Slot:
    """A thread's 16-byte chunk of a staged tile, worked out before the K loop."""
    idx: tuple                     # (row, Lane): the chunk's tile index
    dst: str                       # its offset in a stage
    src: str                       # its source address at K = 0
    ok: str | None                 # the bounds checks that do not involve K
    moving: list                   # (index at K = 0, size) of the checked K dims
    step: list                     # strides the source moves by per unit of K


def _interior(E, spec: MMALoop, a: _Staging, b: _Staging) \
        -> tuple[str | None, str | None] | None:
    """(a flag, the last K tile begin) such that a K tile at begin <= that end, while the
    flag holds, copies every chunk of both operands unchecked (_Staging.interior_terms);
    declared once before the loop. None: the copies keep their checks."""
    terms = [a.interior_terms(E, spec), b.interior_terms(E, spec)]
    if None in terms:
        return None
    flags = terms[0][0] + terms[1][0]
    limits = sorted(terms[0][1] | terms[1][1])
    if not flags and not limits:
        return None                    # no copy has a check to drop
    flag = E.declare("bool", " && ".join(flags), "copy_all_ok", force=True) \
        if len(flags) > 1 else (flags[0] if flags else None)
    if not limits:
        return flag, None
    end = E.declare("long long", f"(long long){limits[0]}", "k_end", force=True, mutable=True)
    for n in limits[1:]:
        E.line(f"if ((long long){n} < {end}) {end} = (long long){n};")
    # the tile's last element below every limit (a limit below one tile: no interior tile)
    E.line(f"{end} -= {spec.tiling.bk};")
    return flag, end


def _k_bounds(mask: Value, handle: Value) -> list[Value] | None:
    """The scalars S of a mask that is a conjunction of `K index < S` (through expand_dims
    and broadcasts; S free of K): the mask holds on a whole K tile when its end is at most
    every S. None for any other mask."""
    op = mask.op
    if op is None:
        return None
    if op.name in ("expand_dims", "broadcast"):
        return _k_bounds(op.operands[0], handle)
    if op.name == "and":
        parts = [_k_bounds(o, handle) for o in op.operands]
        return None if None in parts else parts[0] + parts[1]
    if op.name == "lt":
        index, limit = (_through_views(o) for o in op.operands)
        if index.op is not None and index.op.name == "tile_index" and \
                index.op.operands[0] is handle and rank(limit) == 0 and \
                not _depends_on(limit, handle):
            return [limit]
    return None


def _through_views(v: Value) -> Value:
    while v.op is not None and v.op.name in ("expand_dims", "broadcast"):
        v = v.op.operands[0]
    return v


def _k_role(v: Value, loop: Op) -> str | None:
    """How a load index of the K loop's body depends on K: "k" (the K tile's index, through
    expand_dims and broadcasts: it moves with the tile's begin), "fixed" (not at all), or
    None (any other way)."""
    handle = loop.regions[0].args[0]
    u = _through_views(v)
    if u.op is not None and u.op.name == "tile_index" and u.op.operands[0] is handle:
        return "k"
    return None if _depends_on(v, handle) else "fixed"


def _depends_on(v: Value, handle: Value) -> bool:
    seen, todo = set(), [v]
    while todo:
        u = todo.pop()
        if u is handle:
            return True
        if u in seen or u.op is None:
            continue
        seen.add(u)
        todo.extend(u.op.operands)
    return False


def _bind_iteration(E, spec: MMALoop, begin: str) -> None:
    """The loop body's values for the K tile at `begin`: scalars computed here, tiles
    inline (the staging loops compute each element once)."""
    body = spec.loop.regions[0]
    E.env[body.args[0]] = Handle(begin, spec.loop.attrs["block"])
    for op in body.ops:
        if op is spec.dot or op is spec.add or op.name == "yield":
            continue
        v = op.results[0]
        if rank(v) == 0:
            E.emit_op(op)
        else:
            E.env[v] = INLINE


class _Fragments:
    """The warp's a and b fragments, two K steps of them in registers: the next 16-deep
    step's ldmatrix runs while this step's mma.sync do."""

    def __init__(self, E, spec: MMALoop, layout, a: _Staging, b: _Staging):
        t = spec.tiling
        self.spec, self.layout, self.a, self.b = spec, layout, a, b
        self.af, self.bf = E.fresh("a_frag"), E.fresh("b_frag")
        E.line(f"unsigned {self.af}[2][{t.mi}][4], {self.bf}[2][{t.ni}][2];")

    def load(self, E, stage: str, ks: str) -> None:
        """ldmatrix the fragments of the K step at `ks` of `stage` into buffer
        (ks / 16) & 1."""
        t, lane, a, b = self.spec.tiling, self.layout.lane, self.a, self.b
        buf = f"(({ks}) / {MMA_K}) & 1"
        mi, ni = E.fresh("mi"), E.fresh("ni")
        a_row = f"{self.layout.warp_m} * {t.wtm} + {mi} * {MMA_M} + ({lane} & 15)"
        b_col = f"{self.layout.warp_n} * {t.wtn} + {ni} * {MMA_N}"
        E.line("// the warp's a rows: lanes 0-15 address rows 0-15 at k, lanes 16-31 at k + 8")
        E.line("#pragma unroll")
        with E.block(f"for (int {mi} = 0; {mi} < {t.mi}; ++{mi})"):
            E.line(f"fc_ldmatrix_x4({self.af}[{buf}][{mi}], {a.name} + ({stage}) * {a.size} + "
                   f"({a_row}) * {a.pitch} + {ks} + ({lane} >> 4) * 8);")
        E.line("// the warp's b columns, transposed: k rows 0-15, two n8 tiles per ldmatrix"
               if t.ni % 2 == 0 else "// the warp's b columns, transposed: k rows 0-15")
        step, fn, extra = (2, "fc_ldmatrix_x4_trans", f" + ({lane} >> 4) * 8") \
            if t.ni % 2 == 0 else (1, "fc_ldmatrix_x2_trans", "")
        E.line("#pragma unroll")
        with E.block(f"for (int {ni} = 0; {ni} < {t.ni}; {ni} += {step})"):
            E.line(f"{fn}({self.bf}[{buf}][{ni}], {b.name} + ({stage}) * {b.size} + ({ks} + "
                   f"({lane} & 15)) * {b.pitch} + {b_col}{extra});")

    def multiply(self, E, acc, stage: str, after_last=None, after_step=None) -> None:
        """Every K step of `stage`: the next step's fragments load (after the last step:
        `after_last()`, which may start the next stage's), this step's MI x NI mma.sync
        run, then `after_step(step)`. The first step's fragments were loaded before."""
        t = self.spec.tiling
        steps = t.bk // MMA_K
        for step in range(steps):
            E.line(f"// K step {step}: fragments buffer {step & 1}")
            if step + 1 < steps:
                self.load(E, stage, str((step + 1) * MMA_K))
            elif after_last is not None:
                after_last()
            mi, ni = E.fresh("mi"), E.fresh("ni")
            E.line("#pragma unroll")
            with E.block(f"for (int {mi} = 0; {mi} < {t.mi}; ++{mi})"):
                E.line("#pragma unroll")
                with E.block(f"for (int {ni} = 0; {ni} < {t.ni}; ++{ni})"):
                    E.line(f"{_MMA[self.spec.dtype]}({acc.name} + ({mi} * {t.ni} + {ni}) * 4, "
                           f"{self.af}[{step & 1}][{mi}], {self.bf}[{step & 1}][{ni}]);")
            if after_step is not None:
                after_step(step)


def k_loop(E, op: Op, spec: MMALoop) -> None:
    t = spec.tiling
    stages = spec.stages
    E.line(f"// tensor cores: acc[{t.bm}, {t.bn}] += a[{t.bm}, {t.bk}] . b[{t.bk}, {t.bn}] "
           f"per K tile, mma.sync m16n8k16 {spec.dtype} -> float32, {stages} stages")
    layout = fragments.declare_layout(E, t)
    acc = fragments.new_fragment(E, layout, "float", "acc")
    # accumulators and the two K steps of a and b fragments (_Fragments) stay in registers
    E.accumulators = max(E.accumulators, loop_registers(t))
    init = op.operands[-1]
    const = constant(init)
    if const is not None:
        i = E.fresh("i")
        E.line(f"for (int {i} = 0; {i} < {fragments.registers(layout)}; ++{i}) "
               f"{acc.name}[{i}] = {literal(D.float32, const)};")
    else:
        fragments.fill(E, acc, lambda idx: E.elem(init, idx))
    a = _Staging(E, spec.a, t.bm, t.bk, spec.dtype, "a_tile", stages)
    b = _Staging(E, spec.b, t.bk, t.bn, spec.dtype, "b_tile", stages)
    E.memo.append({})          # the slots' K = 0 elements must not serve the loop's K tiles
    _bind_iteration(E, spec, "0")
    a.hoist(E, spec)
    b.hoist(E, spec)
    interior = _interior(E, spec, a, b)
    E.memo.pop()
    extent = E.sym(op.attrs["extent"])
    block = op.attrs["block"]

    def fill(begin: str, stage: str, part: tuple[int, int] = (0, 1), targets=(None, None)
             ) -> None:
        _bind_iteration(E, spec, begin)
        if interior is None:
            a.fill(E, stage, begin)
            b.fill(E, stage, begin)
            return
        # a K tile inside every bound (all but the last of a ragged K, every tile of an
        # interior program) copies without a predicate a chunk: the loop's issue slots go
        # to the multiplies; the branch is uniform over the block
        flag, end = interior
        header = " && ".join(c for c in (flag, end and f"(long long)({begin}) <= {end}") if c)
        for inside, head in ((True, f"if ({header})"), (False, "else")):
            E.memo.append({})          # the branches declare their elements apart
            with E.block(head):
                a.fill(E, stage, begin, inside, part, targets[0])
                b.fill(E, stage, begin, inside, part, targets[1])
            E.memo.pop()

    for s in range(stages - 1):
        with E.block(f"if ((long long){s * block} < {extent})" if s else
                     "/* K tile 0 into stage 0 */"):
            if s:
                E.line(f"// K tile {s} into stage {s}")
            fill(str(s * block), str(s))
        E.line("fc_cp_async_commit();")
    frags = _Fragments(E, spec, layout, a, b)
    # with an even number of 16-deep steps a K tile ends on fragment buffer 1, so the next
    # tile's first fragments (buffer 0) load across the barrier, under the last mma.sync
    across = LOAD_ACROSS_BARRIER and (t.bk // MMA_K) % 2 == 0
    spread = SPREAD_COPIES and not across and interior is not None and t.bk > MMA_K

    def landed() -> None:
        E.line(f"fc_cp_async_wait<{stages - 2}>();   // this thread's copies of the K tile "
               "have landed")
        E.line("// ... and every thread's, and every warp is past the stage refilled next")
        E.sync()

    if across:
        landed()
        frags.load(E, "0", "0")
    k = E.fresh(f"{op.regions[0].args[0].name or 'tile'}_begin")
    with E.block(f"for (int {k} = 0; (long long){k} < {extent}; {k} += {block})"):
        tile = E.declare("int", f"{k} / {block}", "k_tile", force=True)
        stage = E.declare("int", f"{tile} % {stages}", "stage", force=True)
        if not across:
            landed()
            frags.load(E, stage, "0")     # in flight while the next tile's copies are issued
        nxt = E.declare("int", f"{k} + {(stages - 1) * block}", "k_next", force=True)
        refill = E.declare("int", f"({tile} + {stages - 1}) % {stages}", "refill", force=True)
        steps = t.bk // MMA_K

        # spread: each share's tile pointers and K offsets are worked out once a tile
        targets = (a.target(E, refill, nxt), b.target(E, refill, nxt)) if spread else \
            (None, None)

        def copies(part: tuple[int, int] = (0, 1)) -> None:
            with E.block(f"if ((long long){nxt} < {extent})"):
                E.line(f"// K tile {stages - 1} ahead into the stage the previous one used, "
                       "while this one is multiplied" + (f" (share {part[0] + 1} of "
                                                         f"{part[1]})" if spread else ""))
                fill(nxt, refill, part, targets)

        def next_tile() -> None:
            with E.block(f"if ((long long){k} + {block} < {extent})"):
                landed()
                frags.load(E, f"({tile} + 1) % {stages}", "0")
        if spread:             # one group still: committed after its last share
            frags.multiply(E, acc, stage, after_step=lambda j: copies((j, steps)))
            E.line("fc_cp_async_commit();")
        else:
            copies()
            E.line("fc_cp_async_commit();")
            frags.multiply(E, acc, stage, next_tile if across else None)
    E.line("fc_cp_async_wait<0>();     // no copy outlives the loop")
    E.sync()                   # the stages are free again for whatever follows
    result = op.results[0]
    if spec.derived is not None:
        E.env[result] = acc
        E.fragment_values.update(dict.fromkeys(spec.derived, layout))
        return
    E.line("// the accumulator's readers need another thread mapping: one trip through a "
           "buffer")
    buf = E.new_buffer(D.float32, (t.bm, t.bn), base="acc_tile")
    fragments.loop(E, layout, lambda pair: E.write_buffer_group(
        buf, pair, [fragments.register(E, acc, idx) for idx in pair]))
    E.env[result] = buf
