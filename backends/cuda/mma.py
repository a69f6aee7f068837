"""The tensor-core lowering of a K loop `acc += dot(a, b)` (a tensor_cores.MMALoop):

    float acc[MI * NI * 4] = init                 (registers, fragments.py's layout)
    stage K tile 0 of a and b into shared stage 0
    for (k = 0; k < K; k += BK) {
      if (k + BK < K) stage K tile k + BK into the other stage
      wait for this stage's copies; __syncthreads()
      per 16-deep K step: ldmatrix the warp's a and b fragments, MI x NI mma.sync
      __syncthreads()                             (this stage is refilled next iteration)
    }

Staged tiles are the operands' 16-bit float bits, row-major ([BM][BK] and [BK][BN]), each
row padded by tensor_cores.PAD halves so that ldmatrix's eight row addresses hit distinct
banks; b is read with ldmatrix .trans (mma wants it column-major). An operand that is a
direct load whose 8-element rows are contiguous, 16-byte aligned and valid all together
(vector.py proves it from the specialization) is copied by cp.async, 16 bytes a thread,
zero-filled out of bounds, overlapping the copy of the next tile with the multiplication of
this one; any other operand (ragged or unaligned sizes, transposed or computed tiles) is
computed by the usual element rules, 8 elements a thread, converted to the 16-bit type
(exact: tensor_cores checked that its values are) and stored.
"""
from __future__ import annotations

from ...ir import dtypes as D
from ...ir.core import Op
from . import arith, fragments, memory
from .tensor_cores import MMA_K, MMA_M, MMA_N, PAD, STAGES, MMALoop, Operand, constant
from .types import literal
from .values import INLINE, Handle, rank

_MMA = {D.bfloat16: "fc_mma_bf16", D.float16: "fc_mma_f16"}
_CHUNK = 8                     # halves a thread stages at once: one 16-byte access


class _Staging:
    """One operand's shared-memory tiles (STAGES of them) and the code that fills one."""

    def __init__(self, E, operand: Operand, rows: int, cols: int, dtype, base: str):
        self.operand = operand
        self.shape = (rows, cols)
        self.dtype = dtype
        self.pitch = cols + PAD
        self.size = rows * self.pitch
        self.name = E.shared_array("unsigned short", STAGES * self.size, base)
        self._async: bool | None = None

    def copies_async(self, E) -> bool:
        """Whether cp.async can stage the operand (asked with the K handle bound)."""
        if self._async is None:
            op, mask = self.operand.load, self.operand.mask
            self._async = op is not None and \
                E.vec.width_bytes(E, op, _CHUNK) == 2 * _CHUNK and \
                (mask is None or E.vec.uniform(mask, 1, _CHUNK))
        return self._async

    def fill(self, E, stage: str) -> None:
        tile = E.declare("unsigned short*", f"{self.name} + ({stage}) * {self.size}",
                         self.name, mutable=True)
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


def _multiply(E, spec: MMALoop, layout, acc, a: _Staging, b: _Staging, stage: str) -> None:
    t = spec.tiling
    lane = layout.lane
    sa = E.declare("unsigned short*", f"{a.name} + {stage} * {a.size}", "a_stage",
                   force=True)
    sb = E.declare("unsigned short*", f"{b.name} + {stage} * {b.size}", "b_stage",
                   force=True)
    ks, mi, ni = E.fresh("ks"), E.fresh("mi"), E.fresh("ni")
    af, bf = E.fresh("a_frag"), E.fresh("b_frag")
    a_row = f"{layout.warp_m} * {t.wtm} + {mi} * {MMA_M} + ({lane} & 15)"
    b_col = f"{layout.warp_n} * {t.wtn} + {ni} * {MMA_N}"
    E.line("#pragma unroll")
    with E.block(f"for (int {ks} = 0; {ks} < {t.bk}; {ks} += {MMA_K})"):
        E.line(f"unsigned {af}[{t.mi}][4], {bf}[{t.ni}][2];")
        E.line("// the warp's a rows: lanes 0-15 address rows 0-15 at k, lanes 16-31 at k + 8")
        E.line("#pragma unroll")
        with E.block(f"for (int {mi} = 0; {mi} < {t.mi}; ++{mi})"):
            E.line(f"fc_ldmatrix_x4({af}[{mi}], {sa} + ({a_row}) * {a.pitch} + {ks} + "
                   f"({lane} >> 4) * 8);")
        E.line("// the warp's b columns, transposed: k rows 0-15, two n8 tiles per ldmatrix"
               if t.ni % 2 == 0 else "// the warp's b columns, transposed: k rows 0-15")
        step, fn, extra = (2, "fc_ldmatrix_x4_trans", f" + ({lane} >> 4) * 8") \
            if t.ni % 2 == 0 else (1, "fc_ldmatrix_x2_trans", "")
        E.line("#pragma unroll")
        with E.block(f"for (int {ni} = 0; {ni} < {t.ni}; {ni} += {step})"):
            E.line(f"{fn}({bf}[{ni}], {sb} + ({ks} + ({lane} & 15)) * {b.pitch} + {b_col}"
                   f"{extra});")
        E.line("#pragma unroll")
        with E.block(f"for (int {mi} = 0; {mi} < {t.mi}; ++{mi})"):
            E.line("#pragma unroll")
            with E.block(f"for (int {ni} = 0; {ni} < {t.ni}; ++{ni})"):
                E.line(f"{_MMA[spec.dtype]}({acc.name} + ({mi} * {t.ni} + {ni}) * 4, "
                       f"{af}[{mi}], {bf}[{ni}]);")


def k_loop(E, op: Op, spec: MMALoop) -> None:
    t = spec.tiling
    E.line(f"// tensor cores: acc[{t.bm}, {t.bn}] += a[{t.bm}, {t.bk}] . b[{t.bk}, {t.bn}] "
           f"per K tile, mma.sync m16n8k16 {spec.dtype} -> float32")
    layout = fragments.declare_layout(E, t)
    acc = fragments.new_fragment(E, layout, "float", "acc")
    E.accumulators = max(E.accumulators, fragments.registers(layout))
    init = op.operands[-1]
    const = constant(init)
    if const is not None:
        i = E.fresh("i")
        E.line(f"for (int {i} = 0; {i} < {fragments.registers(layout)}; ++{i}) "
               f"{acc.name}[{i}] = {literal(D.float32, const)};")
    else:
        fragments.fill(E, acc, lambda idx: E.elem(init, idx))
    a = _Staging(E, spec.a, t.bm, t.bk, spec.dtype, "a_tile")
    b = _Staging(E, spec.b, t.bk, t.bn, spec.dtype, "b_tile")
    extent = E.sym(op.attrs["extent"])
    block = op.attrs["block"]
    with E.block("/* K tile 0 into stage 0 */"):
        _bind_iteration(E, spec, "0")
        a.fill(E, "0")
        b.fill(E, "0")
    E.line("fc_cp_async_commit();")
    k = E.fresh(f"{op.regions[0].args[0].name or 'tile'}_begin")
    with E.block(f"for (int {k} = 0; (long long){k} < {extent}; {k} += {block})"):
        stage = E.declare("int", f"({k} / {block}) & 1", "stage", force=True)
        nxt = E.declare("int", f"{k} + {block}", "k_next", force=True)
        with E.block(f"if ((long long){nxt} < {extent})"):
            E.line("// the next K tile into the other stage while this one is multiplied")
            _bind_iteration(E, spec, nxt)
            a.fill(E, f"{stage} ^ 1")
            b.fill(E, f"{stage} ^ 1")
        E.line("fc_cp_async_commit();")
        E.line("fc_cp_async_wait<1>();   // all but the newest group: this stage has landed")
        E.sync()
        _multiply(E, spec, layout, acc, a, b, stage)
        E.line("// every warp is done with this stage before the next iteration refills it")
        E.sync()
    E.line("fc_cp_async_wait<0>();     // no copy outlives the loop (K = 0: tile 0's)")
    E.need_sync = False
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
