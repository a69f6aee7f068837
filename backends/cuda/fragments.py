"""The mma accumulator's fragment layout, and loops that walk a tile in it.

For `mma.sync.m16n8k16` with float32 accumulators, lane l of a warp holds four elements of
each 16x8 tile: (g, 2q), (g, 2q + 1), (g + 8, 2q), (g + 8, 2q + 1) with g = l / 4, q = l % 4.
A program's [BM, BN] accumulator is split over a WM x WN grid of warps
(tensor_cores.WarpTiling); warp (wm, wn) holds an MI x NI block of those tiles, so register
`acc[(mi * NI + ni) * 4 + h * 2 + j]` of a thread is the element

    row = wm * WTM + mi * 16 + h * 8 + g,    col = wn * WTN + ni * 8 + 2q + j.

`loop` visits a thread's elements in pairs (a Lane group of width 2: two adjacent columns,
one 4-byte bfloat16 or 8-byte float access) in C loops over mi, ni and h that
`#pragma unroll` unrolls fully, so every register index is a constant and the arrays stay
in registers. The epilogue of a tensor-core loop runs in such loops: its elementwise values
materialize into Frags of the same layout and its stores write from them -- the
accumulator never goes through shared memory.
"""
from __future__ import annotations

from dataclasses import dataclass

from .tensor_cores import MMA_M, MMA_N, WarpTiling
from .values import Frag, Lane


@dataclass(frozen=True)
class FragmentLayout:
    tiling: WarpTiling
    warp_m: str               # C names of this thread's warp coordinates and lane parts
    warp_n: str
    lane: str
    group: str                # lane / 4: the row within an 8-row half of an mma tile
    quad: str                 # lane % 4: the column pair within an mma tile


def declare_layout(E, tiling: WarpTiling) -> FragmentLayout:
    E.line(f"// warps as a {tiling.warps_m} x {tiling.warps_n} grid over the [{tiling.bm}, "
           f"{tiling.bn}] accumulator: {tiling.mi} x {tiling.ni} mma tiles of "
           f"{MMA_M}x{MMA_N} each")
    warp = E.declare("int", "(int)threadIdx.x / 32", "warp", force=True)
    lane = E.declare("int", "(int)threadIdx.x % 32", "lane", force=True)
    return FragmentLayout(
        tiling,
        warp_m=E.declare("int", f"{warp} / {tiling.warps_n}", "warp_m", force=True),
        warp_n=E.declare("int", f"{warp} % {tiling.warps_n}", "warp_n", force=True),
        lane=lane,
        group=E.declare("int", f"{lane} / 4", "group", force=True),
        quad=E.declare("int", f"{lane} % 4", "quad", force=True))


def registers(layout: FragmentLayout) -> int:
    """Elements of a fragment-layout tile each thread holds."""
    return layout.tiling.mi * layout.tiling.ni * 4


def new_fragment(E, layout: FragmentLayout, ctype: str, base: str) -> Frag:
    name = E.fresh(base)
    E.line(f"{ctype} {name}[{registers(layout)}];")
    return Frag(name, layout, ctype)


def register(E, frag: Frag, idx: tuple) -> str:
    """The register of frag's element idx, inside a `loop` over frag's layout (idx is one
    of the indices of the pair being visited)."""
    if E.frag_at is None:
        raise AssertionError(f"{frag.name}: a fragment register read outside a fragment loop")
    mi, ni, h = E.frag_at
    j = E.slot_group.index(idx)
    return f"{frag.name}[({mi} * {frag.layout.tiling.ni} + {ni}) * 4 + {h} * 2 + {j}]"


def loop(E, layout: FragmentLayout, group_body, sync: bool = True) -> None:
    """group_body(pair) for every pair of elements this thread holds in the layout; a
    barrier after unless `sync` is False (the body wrote no memory other threads read)."""
    assert not E.in_loop, "element loops do not nest"
    if E.need_sync:
        E.sync()
    t = layout.tiling
    mi, ni, h = E.fresh("mi"), E.fresh("ni"), E.fresh("h")
    E.in_loop += 1
    E.line("#pragma unroll")
    with E.block(f"for (int {mi} = 0; {mi} < {t.mi}; ++{mi})"):
        E.line("#pragma unroll")
        with E.block(f"for (int {ni} = 0; {ni} < {t.ni}; ++{ni})"):
            E.line("#pragma unroll")
            with E.block(f"for (int {h} = 0; {h} < 2; ++{h})"):
                row = E.declare("int", f"{layout.warp_m} * {t.wtm} + {mi} * {MMA_M} + "
                                f"{h} * 8 + {layout.group}", "row", force=True)
                col = E.declare("int", f"{layout.warp_n} * {t.wtn} + {ni} * {MMA_N} + "
                                f"{layout.quad} * 2 + 0", "col", force=True)
                pair = [(row, Lane(col, j, 2)) for j in range(2)]
                E.frag_at, E.slot_group = (mi, ni, h), pair
                group_body(pair)
                E.frag_at = E.slot_group = None
    E.in_loop -= 1
    if sync:
        E.sync()


def fill(E, frag: Frag, fn, sync: bool = False) -> None:
    """frag's registers = fn(idx) for each element. No memory is written, so no barrier
    unless `sync` (the loads must finish before other threads store over them)."""
    def body(pair):
        for idx in pair:
            E.line(f"{register(E, frag, idx)} = {fn(idx)};")
    loop(E, frag.layout, body, sync=sync)
