"""Which dots run on tensor cores (`mma.sync`), decided per kernel before emission.

A sequential tile loop (`for tk in fusec.tile(K): acc += fl.dot(a[tm, tk], b[tk, tn])`)
qualifies when
- its body computes the two dot operands from pure element ops (loads, casts, masks, index
  arithmetic) and yields `acc + dot(a, b)`: the accumulator is its only carried value;
- both operands hold values exact in one 16-bit float type H (bfloat16 or float16: loads of
  H tensors, casts from or to H, the zeros of masked lanes), so multiplying their H forms is
  exact and only the order of the float32 additions differs from the FMA loop (dot.py);
- the dot accumulates in float32, its tile is [BM, BK] x [BK, BN] with BM % 16 == 0,
  BN % 8 == 0 and BK % 16 == 0, all the program's warps, as a WM x WN grid, split [BM, BN]
  into whole m16n8 tiles (at most MAX_ACCUMULATORS registers of them a thread), and the
  staged operand tiles (2 stages at least) fit in the arch's staging budget
  (staging_budget: dynamic shared memory past 48 KB);
- the target is sm_80 or newer, `ENABLED` is true and the kernel attr `tensor_cores` is not
  false.

The accumulator then lives in registers in the mma fragment layout for the whole loop
(mma.py). After the loop, when every reader of the result is an elementwise op of the same
shape or a store (and so on through those readers), the epilogue runs on the fragment
layout and reads the registers directly (fragments.py); otherwise the accumulator is written
once into a tile buffer that the rest of the program reads (a reduction of the result, a
dot of it, a yield to an outer loop).

Everything else -- other dtypes (float32 operands: tf32 would change results; ints, f64),
tiles that are not multiples of the mma shape, dots outside such a loop -- keeps dot.py.
Hopper's wgmma/TMA would slot in as another lowering of the same `MMALoop`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir import dtypes as D
from ...ir.core import Op, Value
from ...ir.dtypes import DType
from ...ir.ops import BINARY, COMPARE, UNARY, memory_operands
from .. import switches
from ..carried import VIEW_OPS, rank
from ..common import arch_number, per_arch
from ..exact_halves import common_half
from .elements import ELEM_RULES

ENABLED = True                   # the switch: False sends every dot to dot.py's FMA loop
MIN_ARCH = 80                    # mma.sync m16n8k16 with bf16, ldmatrix, cp.async
MMA_M, MMA_N, MMA_K = 16, 8, 16
PAD = 8                          # halves appended to each staged row: ldmatrix's 8 row
#                                  addresses then fall in distinct banks
MIN_STAGES = 2                   # double buffering at least: the next K tile loads during this
#                                  one; a config's `stages` asks for more (copies in flight
#                                  while several tiles are multiplied), as many as fit
STAGING_BYTES = 40 << 10         # staged operands' share of the 48 KB of static shared memory
# The most shared memory one block may use, opted in as dynamic shared memory (CUDA C
# programming guide, compute capabilities table): what a loop's stages may take beyond 48 KB
SHARED_LIMIT = {80: 163 << 10, 86: 99 << 10, 87: 163 << 10, 89: 99 << 10, 90: 227 << 10,
                100: 227 << 10, 120: 99 << 10}
SHARED_RESERVE = 8 << 10         # left to a program's other buffers (the arena) per half
MAX_ACCUMULATORS = 128           # float registers of accumulator per thread
_ELEMENTWISE = frozenset(UNARY + BINARY + COMPARE + ("where", "cast"))
switches.register(__name__, "ENABLED")


@dataclass(frozen=True)
class WarpTiling:
    """How the warps of a program split a [bm, bn] accumulator tile (K step bk)."""
    bm: int
    bn: int
    bk: int
    warps_m: int
    warps_n: int

    @property
    def wtm(self) -> int:                 # rows of the accumulator one warp computes
        return self.bm // self.warps_m

    @property
    def wtn(self) -> int:
        return self.bn // self.warps_n

    @property
    def mi(self) -> int:                  # m16 tiles per warp
        return self.wtm // MMA_M

    @property
    def ni(self) -> int:                  # n8 tiles per warp
        return self.wtn // MMA_N

    @property
    def active_warps(self) -> int:
        return self.warps_m * self.warps_n


@dataclass
class Operand:
    """A dot operand: the IR value, and when it is a direct load of an H tensor (under a
    cast to float32 and a `where(mask, x, 0)`), that load and mask -- candidates for cp.async
    (mma.py decides, knowing the specialization's alignment)."""
    value: Value
    load: Op | None
    mask: Value | None


@dataclass
class MMALoop:
    loop: Op
    dot: Op
    add: Op
    dtype: DType                          # H: the operands' 16-bit float type
    tiling: WarpTiling
    stages: int                           # shared-memory stages of the operand tiles
    a: Operand
    b: Operand
    derived: set[Value] | None            # epilogue values on the fragment layout; None:
    #                                       the accumulator is spilled into a buffer


@dataclass
class TensorCorePlan:
    loops: dict[Op, MMALoop]
    no_registers: set[Value]              # values residency.py must not keep in registers
    #                                       (read by the epilogue in another thread mapping)


REGISTER_FILE = 64 << 10         # 32-bit registers of an SM (sm_80, sm_90)
OTHER_REGISTERS = 48             # what a tensor-core loop needs besides its accumulators
#                                  and fragments (addresses, copy slots, indices)


def programs_per_sm(nthreads: int, accumulators: int, shared: int = 0, arch: str = "") -> int:
    """The programs an SM should hold at once (__launch_bounds__' second argument): two
    when their registers and `shared` bytes of shared memory each allow it -- one
    program's barriers then overlap the other's copies and multiplies -- else ptxas' own
    choice (1)."""
    fits = 2 * shared <= max(shared_limit(arch), 48 << 10)
    return 2 if fits and _two_fit_registers(nthreads, accumulators) else 1


def _two_fit_registers(nthreads: int, accumulators: int) -> bool:
    return REGISTER_FILE // (2 * nthreads) >= accumulators + OTHER_REGISTERS


def loop_registers(t: WarpTiling) -> int:
    """Registers a thread holds through the K loop: accumulators and two K steps of a and
    b fragments (mma.py's _Fragments)."""
    return t.mi * t.ni * 4 + 2 * (t.mi * 4 + t.ni * 2)


def shared_limit(arch: str) -> int:
    """Shared memory one block of `arch` may use (48 KB static where the arch is unknown)."""
    return per_arch(SHARED_LIMIT, arch, 48 << 10)


def staging_budget(arch: str, tiling: WarpTiling | None = None, nthreads: int = 0) -> int:
    """Shared memory a program's staged operands may take, never less than the static
    budget: half the block limit, so that two programs share an SM (programs_per_sm); the
    whole limit when `tiling`'s registers at `nthreads` threads keep one program an SM
    anyway (more stages in flight instead: 128x256x64 in 4 stages on sm_90)."""
    if tiling is not None and not _two_fit_registers(nthreads, loop_registers(tiling)):
        return max(STAGING_BYTES, shared_limit(arch) - SHARED_RESERVE)
    return max(STAGING_BYTES, shared_limit(arch) // 2 - SHARED_RESERVE)


def analyze(kernel: Op, plan, arch: str, warps: int, roots=None,
            stages: int = MIN_STAGES) -> TensorCorePlan:
    """The tensor-core loops among `roots` (ops of one device function and what they
    nest; default: the whole kernel) for `warps` warps a program on `arch`, each staging
    its operands in up to `stages` buffers (fewer where shared memory runs out)."""
    loops: dict[Op, MMALoop] = {}
    staged = 0                  # each loop stages into shared arrays of its own
    if ENABLED and kernel.attrs.get("tensor_cores", True) and arch_number(arch) >= MIN_ARCH:
        walk = (o for root in roots for o in root.walk()) if roots is not None else \
            kernel.walk()
        for op in walk:
            if op.name == "tile_for" and not op.attrs.get("parallel"):
                found = _match(op, plan, warps, stages, arch, staged)
                if found is not None:
                    loops[op] = found
                    staged += staging_bytes(found.tiling, found.stages)
    no_registers: set[Value] = set()
    for found in loops.values():       # read on the fragment layout: the init, the epilogue
        _ancestors(found.loop.operands[-1], no_registers)
        for v in found.derived or ():
            for operand in v.op.operands:
                _ancestors(operand, no_registers)
    return TensorCorePlan(loops, no_registers)


def _match(loop: Op, plan, warps: int, stages: int, arch: str, staged: int
           ) -> MMALoop | None:
    """The loop as an MMALoop, its stages fitting what is left of the staging budget after
    `staged` bytes of earlier loops; None when it does not qualify."""
    body = loop.regions[0]
    if len(loop.results) != 1 or len(body.args) != 2:
        return None
    carried = body.args[1]
    term = body.ops[-1]
    add = term.operands[0].op if term.operands else None
    if add is None or add.name != "add" or add.parent is not body:
        return None
    dots = [o.op for o in add.operands if o is not carried and o.op is not None]
    if len(dots) != 1 or dots[0].name != "dot" or carried not in add.operands:
        return None
    dot = dots[0]
    if any(len(plan.uses.get(v, [])) != 1 for v in (carried, dot.results[0], add.results[0])):
        return None
    if any(o not in (dot, add, term) and (o.regions or o.name not in ELEM_RULES)
           for o in body.ops):
        return None                       # stores, nested loops, reductions: not pure
    res = dot.results[0]
    if res.type.dtype != D.float32 or loop.results[0].type != res.type:
        return None
    a, b = dot.operands
    (bm, bk), bn = a.type.shape, b.type.shape[1]
    if bm % MMA_M or bn % MMA_N or bk % MMA_K:
        return None
    dtype = common_half(a, b)
    if dtype is None:
        return None
    tiling = warp_tiling(bm, bn, bk, warps)
    if tiling is None:
        return None
    fitting = most_stages(tiling, stages,
                          staging_budget(arch, tiling, 32 * warps) - staged)
    if fitting is None:
        return None
    derived = _epilogue(plan, loop.results[0])
    return MMALoop(loop, dot, add, dtype, tiling, fitting, _operand(a, dtype),
                   _operand(b, dtype), derived)


def staging_bytes(t: WarpTiling, stages: int = MIN_STAGES) -> int:
    """Shared memory of a loop's staged operand tiles (mma.py)."""
    return stages * 2 * (t.bm * (t.bk + PAD) + t.bk * (t.bn + PAD))


def most_stages(t: WarpTiling, stages: int, budget: int) -> int | None:
    """The most stages, MIN_STAGES to `stages`, whose staged tiles fit `budget` bytes (None:
    not even MIN_STAGES)."""
    fitting = [s for s in range(MIN_STAGES, max(MIN_STAGES, stages) + 1)
               if staging_bytes(t, s) <= budget]
    return fitting[-1] if fitting else None


def warp_tiling(bm: int, bn: int, bk: int, warps: int) -> WarpTiling | None:
    """Every warp busy, then the least operand traffic per warp (the squarest warp tile)."""
    best = None
    for wm in range(1, warps + 1):
        if warps % wm or bm % (MMA_M * wm) or bn % (MMA_N * (warps // wm)):
            continue
        t = WarpTiling(bm, bn, bk, wm, warps // wm)
        if t.mi * t.ni * 4 > MAX_ACCUMULATORS:
            continue
        if best is None or t.wtm + t.wtn < best.wtm + best.wtn:
            best = t
    return best


# -- operands ---------------------------------------------------------------------------
def constant(v: Value):
    """The value of a tile that is one constant everywhere (through views), else None."""
    op = v.op
    while op is not None and op.name in VIEW_OPS:
        op = op.operands[0].op
    return op.attrs["value"] if op is not None and op.name == "const" else None


def _is_zero(v: Value) -> bool:
    value = constant(v)
    return value is not None and value == 0 and not isinstance(value, bool)


def _operand(v: Value, dtype: DType) -> Operand:
    x, mask = v, None
    if x.op is not None and x.op.name == "where" and _is_zero(x.op.operands[2]):
        mask, x = x.op.operands[0], x.op.operands[1]
    if x.op is not None and x.op.name == "cast" and x.op.operands[0].type.dtype == dtype:
        x = x.op.operands[0]
    op = x.op
    if op is not None and op.name == "load" and x.type.dtype == dtype and \
            x.type.shape == v.type.shape and (memory_operands(op)[4] is None or
                                              _is_zero(memory_operands(op)[4])):
        return Operand(v, op, mask)
    return Operand(v, None, None)


# -- the epilogue ---------------------------------------------------------------------------
def _epilogue(plan, result: Value) -> set[Value] | None:
    """The values to compute on the fragment layout after the loop: the result and its
    elementwise descendants of the same shape in the loop's block. None when some reader
    needs another thread mapping."""
    block = result.op.parent
    shape = result.type.shape
    derived, todo = {result}, [result]
    while todo:
        v = todo.pop()
        for c in plan.uses.get(v, []):
            if c.parent is not block:
                return None
            if c.name in _ELEMENTWISE and c.results[0].type.shape == shape:
                if c.results[0] not in derived:
                    derived.add(c.results[0])
                    todo.append(c.results[0])
            elif c.name == "store" and memory_operands(c)[2].type.shape == shape:
                continue
            else:
                return None
    return derived


def _ancestors(v: Value, out: set) -> None:
    todo = [v]
    while todo:
        u = todo.pop()
        if u in out or rank(u) == 0 or u.op is None:
            continue
        out.add(u)
        todo.extend(u.op.operands)
