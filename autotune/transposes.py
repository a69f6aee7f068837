"""Transposed loads and the tiles the GPU policy gives them.

A load whose tile is permuted so that its last axis (the tensor's contiguous one) is no
longer last is read, on the GPU backends, in the lane order of its consumer: a warp's
threads walk the permuted result's last axis, which strides through the tensor. How fast
that runs depends on how many of those strided rows a warp and its block revisit while the
L1 still holds their sectors, which the cost model (block_cost.py) does not price: on an
H100 (benchmarks/transpose_sweep.py, 2026-12-07) its estimates ranked the configs of a
bf16 [8192, 8192] transpose against measurement with a rank correlation of -0.47, and its
pick ([128, 128], 2 warps) ran in 0.56 ms against 0.107 ms for [32, 32]. Square tiles of 32
on the two dims involved were among the fastest on every shape swept, staged through shared
memory or not: [8192, 8192] 0.109 ms ([32, 32], 4 warps; best 0.107), [8, 512, 16, 64] ->
(0, 2, 3, 1) 0.0125 ms (best 0.0101), against 0.0863-0.17 ms for rows of 512 or 1024.
"""
from __future__ import annotations

from ..ir import ops as O
from ..ir.core import Op, Value

TRANSPOSE_BLOCK = 32            # the block of both dims of a transposed load
# ops through which a loaded tile keeps its layout (its elements, one for one)
_SAME_LAYOUT = frozenset(O.UNARY + ("cast",))


def transposed_dims(kernel: Op) -> tuple:
    """(dim the consumer's lanes walk, dim of the tensor's contiguous axis) per transposed
    load, as tile-loop dims (Config.blocks positions): a permute of a loaded tile that moves
    its last axis, or a load of a parameter specialized with a unit stride on another axis
    than its last (a transposed view passed in: the lanes walk its last axis); pairs whose
    axes are not each indexed by exactly one tile loop are left out."""
    handles = {}                  # tile loop handle -> its dim
    for op in kernel.walk():
        if op.name == "tile_for":
            handles[op.regions[0].args[0]] = op.attrs["dim"]
    pairs = _strided_params(kernel, handles)
    readers: dict = {}
    for op in kernel.walk():
        for v in op.operands:
            readers.setdefault(v, []).append(op)
    # permutes read only by other permutes: seen composed there
    permuted = {op for op in kernel.walk() if op.name == "permute" and readers.get(
        op.results[0]) and all(r.name == "permute" for r in readers[op.results[0]])}
    for op in kernel.walk():
        if op.name != "permute" or op in permuted:
            continue
        load, perm = _loaded(op.results[0])
        if load is None or not perm or perm[-1] == len(perm) - 1:
            continue
        idx = O.memory_operands(load)[1]
        if len(idx) != len(perm):
            continue
        last, contiguous = _dim_of(idx[perm[-1]], handles), _dim_of(idx[-1], handles)
        if last is not None and contiguous is not None and last != contiguous:
            pairs.append((last, contiguous))
    return tuple(sorted(set(pairs)))


def _strided_params(kernel: Op, handles: dict) -> list:
    """The pairs of loads of parameters whose unit-stride axis is not their last one."""
    position = {v: i for i, v in enumerate(kernel.regions[0].args)}
    unit: dict = {}
    for p, d in kernel.attrs.get("unit_strides", []):
        unit.setdefault(p, set()).add(d)
    pairs = []
    for op in kernel.walk():
        if op.name != "load":
            continue
        tensor, idx = O.memory_operands(op)[:2]
        shape = tensor.type.shape
        # a dim of size 1 has a unit stride whatever the layout: not a sign of one
        dims = {d for d in unit.get(position.get(tensor), set()) if shape[d] != 1}
        rank = len(idx)
        if not rank or rank - 1 in dims or len(dims) != 1:
            continue
        walked, contiguous = _dim_of(idx[-1], handles), _dim_of(idx[next(iter(dims))], handles)
        if walked is not None and contiguous is not None and walked != contiguous:
            pairs.append((walked, contiguous))
    return pairs


def _loaded(v: Value) -> tuple:
    """(the load whose tile `v` is, elementwise (casts, unary math) and through permutes;
    the permutation: v's axis i is the load's axis perm[i]), or (None, None)."""
    perm = None
    while v.op is not None and (v.op.name in _SAME_LAYOUT or v.op.name == "permute"):
        if v.op.name == "permute":
            p = list(v.op.attrs["perm"])
            perm = p if perm is None else [p[i] for i in perm]
        v = v.op.operands[0]
    if v.op is None or v.op.name != "load":
        return None, None
    return v.op, perm


def _dim_of(v: Value, handles: dict) -> int | None:
    """The one tile loop dim an index tile varies with, else None."""
    dims, seen, stack = set(), set(), [v]
    while stack:
        x = stack.pop()
        if x in seen:
            continue
        seen.add(x)
        if x in handles:
            dims.add(handles[x])
        elif x.op is not None:
            stack.extend(x.op.operands)
    return dims.pop() if len(dims) == 1 else None


def transpose_blocks(blocks: dict, pairs, parallel: set) -> dict:
    """`blocks` (dim -> block) with the dims of transposed loads at TRANSPOSE_BLOCK and the
    other parallel dims at 1 (the programs spread over them instead)."""
    if not pairs:
        return blocks
    involved = {d for pair in pairs for d in pair}
    return {d: TRANSPOSE_BLOCK if d in involved else (1 if d in parallel else b)
            for d, b in blocks.items()}
