"""Tensor-core dots of the PTX backend: `mma.sync.aligned.m16n8k16` (sm_80+) in the SIMT
mapping (simt.py), for dots whose operands both hold values exact in one 16-bit float type
H (backends/exact_halves.py) and accumulate in float32. The products are then exact; the
sums differ from simt.dot's FMA loop in their order and in the tensor cores' own rounding
within a k16 step (as the CUDA C backend's mma path does).

A qualifying dot [M, K] x [K, N] (M % 16 == 0, N % 8 == 0, K % 16 == 0) at the program's
top level runs in three steps, each fenced by barriers:
1. the threads stage A as H bits in a [M, K + PAD] buffer and B transposed in a
   [N, K + PAD] one (the program's shared memory while it fits): a fragment's two
   consecutive k of one row are then one 32-bit word, and the pad puts the 8 rows a warp
   reads at once in distinct banks;
2. warp w computes the m16n8 output tiles w, w + W, ... (W warps), its accumulators in
   registers over the K steps of 16; fragment layouts from the PTX ISA (warp-level matrix
   fragments for mma.m16n8k16): lane = 4 * group + index-in-group, A registers
   (row, k) = (group [+8], 2 * index [+8]), B registers (k, col) = (2 * index [+8], group),
   accumulators (row, col) = (group [+8], 2 * index + {0, 1});
3. the accumulators are written to the result buffer that the rest of the program reads;
   for `acc += fl.dot(a, b)` in a K loop (carried_sum) that buffer is the accumulator's
   slot: the mma starts from its values and the add and the yield's copy vanish.

The CUDA C backend's lowering (backends/cuda/mma.py) goes further: the accumulator stays in
registers across the sequential K loop, operands stream in with cp.async, ldmatrix loads
the fragments, and the epilogue reads the registers. Here the accumulator makes a round trip
through shared memory each K step and nothing is pipelined.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ...ir import dtypes as D
from ...ir.core import Value
from .. import switches
from ..common import arch_number
from ..exact_halves import common_half
from . import loops, simt
from .types import F16, F32, I16, I32
from .values import Buf

# the switch: False keeps every dot on simt.dot's FMA loop. On since its GPU tests
# (tests/gpu/test_dot_mma_gpu.py's PTX cases) passed on an H100, 2026-12-07
ENABLED = True
MIN_ARCH = 80               # mma.sync m16n8k16 with bf16 operands
MMA_M, MMA_N, MMA_K = 16, 8, 16
PAD = 8                     # halves appended to each staged row (bank spread)
_PTX_TYPE = {D.bfloat16: "bf16", D.float16: "f16"}
_FLOAT32_ACCUMULATED = (D.float32, D.bfloat16, D.float16)     # results types.compute makes f32
switches.register(__name__, "ENABLED")


def half_type(L, a_v: Value, b_v: Value, acc_ty: ir.Type):
    """The 16-bit float type the dot a_v @ b_v runs in on tensor cores, else None."""
    s = simt.state(L)
    if acc_ty != F32 or s.depth:
        return None
    return _half_type(a_v, b_v, L.ctx.target.arch, s.nthreads)


def staged_dots(kernel, arch: str, nthreads: int) -> frozenset:
    """The dots of a kernel that take this path (their operands are read once each, by the
    staging: plan.Plan leaves them inline)."""
    return frozenset(op for op in kernel.walk() if op.name == "dot"
                     and op.results[0].type.dtype in _FLOAT32_ACCUMULATED
                     and _half_type(*op.operands, arch, nthreads) is not None)


def _half_type(a_v: Value, b_v: Value, arch: str, nthreads: int):
    M, K = a_v.type.shape
    N = b_v.type.shape[1]
    if not ENABLED or nthreads % simt.WARP or arch_number(arch) < MIN_ARCH or \
            M % MMA_M or N % MMA_N or K % MMA_K:
        return None
    return common_half(a_v, b_v)


def carried_sum(L, dot_op) -> tuple | None:
    """(add op, accumulator buffer) when the dot's float32 result is only added to a tile
    carried by its loop, that tile read nowhere else and the sum only yielded back into
    the same slot (`acc += fl.dot(a, b)` in a K loop): the mma then starts from the
    accumulator's values and writes the sum into its slot, the add and the yield's copy
    vanish (Lowering.absorbed). Else None."""
    res = dot_op.results[0]
    uses = L.plan.uses
    block = dot_op.parent
    if res.type.dtype != D.float32 or block is None or len(uses.get(res, ())) != 1:
        return None
    add = uses[res][0]
    if add.name != "add" or add.parent is not block:
        return None
    acc = add.operands[0] if add.operands[1] is res else add.operands[1]
    if acc is res or acc not in block.args or uses.get(acc) != [add]:
        return None
    total = add.results[0]
    ends = uses.get(total, [])
    if len(ends) != 1 or ends[0].name != "yield" or ends[0] is not block.ops[-1]:
        return None
    carried = block.args[len(block.args) - len(ends[0].operands):]
    if list(ends[0].operands).count(total) != 1 or acc not in carried or \
            carried.index(acc) != list(ends[0].operands).index(total):
        return None
    slot = L.env.get(acc)
    if not isinstance(slot, Buf) or tuple(slot.shape) != tuple(res.type.shape) or \
            slot.ptr.type.pointee != F32:
        return None
    return add, slot


def dot(L, a_v: Value, b_v: Value, half, out, conv, finish, into=None):
    """The buffer (float32 elements) of a_v @ b_v computed on tensor cores (half_type gave
    `half`); out: the result dtype, conv(value, dtype) an operand element as float32,
    finish the rounding of an accumulator to `out`. into: a float32 buffer of the result's
    shape holding the values to add the product to, which receives the sum (carried_sum)."""
    M, K = a_v.type.shape
    N = b_v.type.shape[1]
    b = L.b
    bits = _bits_of(b, half)
    a_half = L.typed_buffer(I16, (M, K + PAD))
    bt_half = L.typed_buffer(I16, (N, K + PAD))
    # after the staging, which gets shared memory first
    c = into if into is not None else L.new_buffer(out, (M, N), elem_ty=F32)
    L.for_each((M, K), lambda idx: L.buf_store(           # a thread's 8 k at once
        a_half, idx, bits(conv(L.elem(a_v, idx), a_v.type.dtype))))
    L.for_each((K, N), lambda idx: L.raw_store(
        bt_half, (idx[1], idx[0]), bits(conv(L.elem(b_v, idx), b_v.type.dtype))))

    s = simt.state(L)
    warps = s.nthreads // simt.WARP
    tiles_n = N // MMA_N
    tiles = (M // MMA_M) * tiles_n
    warp = b.lshr(s.tid, ir.Constant(I32, 5))
    lane = b.and_(s.tid, ir.Constant(I32, 31))
    group = b.lshr(lane, ir.Constant(I32, 2))
    pair = b.shl(b.and_(lane, ir.Constant(I32, 3)), ir.Constant(I32, 1))   # 2 * index
    instruction = _instruction(half)
    zero = ir.Constant(F32, 0.0)

    def word(buf, row, k):
        """The 32-bit word holding buf[row, k] and buf[row, k + 1] (k even)."""
        element = L.b.gep(buf.ptr, [L.linear(buf, (row, k))], inbounds=True)
        return L.b.load(L.b.bitcast(element, I32.as_pointer()))

    def tile(j):
        bb = L.b
        row = bb.add(bb.mul(bb.udiv(j, ir.Constant(I32, tiles_n)), ir.Constant(I32, MMA_M)),
                     group)
        col = bb.add(bb.mul(bb.urem(j, ir.Constant(I32, tiles_n)), ir.Constant(I32, MMA_N)),
                     group)
        row8 = bb.add(row, ir.Constant(I32, 8))

        def k_step(kk, accs):
            k = L.b.add(L.b.mul(kk, ir.Constant(I32, MMA_K)), pair)
            k8 = L.b.add(k, ir.Constant(I32, 8))
            a_regs = [word(a_half, r, kc) for kc in (k, k8) for r in (row, row8)]
            b_regs = [word(bt_half, col, kc) for kc in (k, k8)]
            out = L.b.call(instruction, a_regs + b_regs + list(accs))
            return [L.b.extract_value(out, i) for i in range(4)]
        out_col = L.b.add(L.b.sub(col, group), pair)         # the tile's first column + 2i
        out_col1 = L.b.add(out_col, ir.Constant(I32, 1))
        places = ((row, out_col), (row, out_col1), (row8, out_col), (row8, out_col1))
        start = [zero] * 4 if into is None else [L.raw_load(into, p) for p in places]
        accs = loops.counted(L.ctx, K // MMA_K, k_step, start, name="mma_k")
        for p, value in zip(places, accs):
            L.raw_store(c, p, finish(value))

    if s.needs_barrier(b):
        simt.barrier(L)
    s.depth += 1
    rounds = -(-tiles // warps)

    def round_(r, _):
        j = L.b.add(warp, L.b.mul(r, ir.Constant(I32, warps)))
        if tiles % warps:           # warp-uniform: mma.sync needs every lane of the warp
            simt.when(L, L.b.icmp_unsigned("<", j, ir.Constant(I32, tiles)), lambda: tile(j))
        else:
            tile(j)
        return []
    loops.counted(L.ctx, rounds, round_, name="mma_tile")
    s.depth -= 1
    simt.barrier(L)
    return c


def _bits_of(b: ir.IRBuilder, half):
    """float32 value exact in `half` -> its 16 bits (no rounding happens: it is exact)."""
    if half == D.bfloat16:
        return lambda v: b.trunc(b.lshr(b.bitcast(v, I32), ir.Constant(I32, 16)), I16)
    return lambda v: b.bitcast(b.fptrunc(v, F16), I16)


def _instruction(half) -> ir.InlineAsm:
    t = _PTX_TYPE[half]
    ty = ir.FunctionType(ir.LiteralStructType([F32] * 4), [I32] * 6 + [F32] * 4)
    return ir.InlineAsm(
        ty, f"mma.sync.aligned.m16n8k16.row.col.f32.{t}.{t}.f32 "
        "{$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};",
        "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f")
