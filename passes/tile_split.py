"""Split reductions for the tile pass: two launches for a group whose reduced axes are long
and either none of them the contiguous one (a column sum x.sum(0) of an [R, C] tensor, or
x.sum((0, 1)) of a [B, T, C] one: bias and norm-weight gradients) or all of its axes (a full
reduction). The longest reduced axis k is chunked (the outermost for a full reduction), the
others are held whole.

Held whole in every program, such a reduction gives few programs (one per block of the
other axes, or one in all) and, for a column sum, loads of a few elements per row. Split,
the first launch runs one program per (chunk of k, block of the other axes): it reduces
its chunk -- CHUNK rows, contiguous blocks of columns -- and stores each reduction's
partial result into a buffer [chunks, ...] (float32 for 16-bit floats, as a reduction
accumulates); it also stores the group's values that vary along k. The second launch
reduces the partials of its block and computes what follows the reductions.

A group splits only when nothing varying along k depends on a reduction over k (the second
launch has no k to walk) and every reduction combines (sum, max, min). Whether it splits
and the chunk depend on the power-of-two bucket of k's size only, which the kernel is
specialized for (its guard).
"""
from __future__ import annotations

import math

import sympy

from ..ir import TensorType, TileType
from ..ir import dtypes as D
from ..ir.ops import INDEXED_VIEWS
from ..ir.symbolic import hinted_value, next_pow2
from .tensor_graph import in_memory, mapped_operands

MAX_WHOLE_REDUCTION = 8192 # a longer reduced axis is not held whole in a tile (tile.py)
SPLIT_ABOVE = 512          # k's power-of-two bucket must be above this (with other axes)
ROW_CHUNK = 64             # rows of k per program when k is not the contiguous axis
FLAT_CHUNK = 4096          # elements per program of a full reduction along memory
FLAT_SPLIT_ABOVE = 8 * FLAT_CHUNK   # a full reduction of fewer runs in one program
FEW_ROWS = 128             # a row reduction with fewer rows (of more elements) splits
MAX_CHUNKS = 8192          # the second launch holds a block's partials in one tile
COMBINABLE = ("sum", "max", "min")
_SPLIT = "split"           # the key of the chunk loop among the emitter's loop handles


def split_plan(emitter) -> tuple[int, int, dict, tuple] | None:
    """(k, chunk, blocks of the reduced axes held whole, reduced axes that are grid axes of
    launch 1) when the group is to be split."""
    axes = emitter.axes
    if not axes.reduced or any(op.name in ("dot", "scan") for op in emitter.ops):
        return None
    blocks = {j: emitter.tiler.whole_block(axes.extent(j)) for j in axes.reduced}   # guards
    buckets = {j: next_pow2(hinted_value(axes.extent(j), emitter.tiler.hints))
               for j in axes.reduced}
    if axes.parallel:
        read = [v for op in emitter.ops for v in mapped_operands(op) if in_memory(v)
                and v not in axes.viewed_only]
        read += [op.results[0] for op in emitter.ops if op.name in INDEXED_VIEWS
                 and op.results[0] not in axes.viewed_only]
        if any(axes.axes(v) and axes.axes(v)[-1] in axes.reduced for v in read):
            return _few_rows_plan(emitter, blocks, buckets)
        k = max(axes.reduced, key=lambda j: (buckets[j], -j))   # the longest is chunked
    else:
        k = axes.reduced[0]           # the outermost: chunks of it are contiguous
    held = {j: n for j, n in blocks.items() if j != k}
    if None in held.values():
        return None                   # another reduced axis is looped
    return _checked(emitter, k, held, buckets[k], SPLIT_ABOVE if axes.parallel
                    else FLAT_SPLIT_ABOVE, ROW_CHUNK if axes.parallel else FLAT_CHUNK, ())


def _few_rows_plan(emitter, blocks: dict, buckets: dict):
    """A row reduction over several axes with few rows (a bias gradient of a convolution:
    [N, C, H, W] summed over N, H and W, C rows of millions of elements): one program a
    row would leave the GPU idle. k is the outermost reduced axis whose inner reduced axes
    fit FLAT_CHUNK elements together; those are held whole, k is chunked, and the reduced
    axes outside k are grid axes of launch 1 (one element a program), reduced in launch 2
    with the chunks' partials."""
    axes = emitter.axes
    extents = [hinted_value(axes.extent(j), emitter.tiler.hints) for j in axes.parallel]
    if None in extents or math.prod(extents) > FEW_ROWS or \
            math.prod(buckets.values()) <= FLAT_SPLIT_ABOVE:
        return None
    reduced = axes.reduced
    k = next((j for i, j in enumerate(reduced)
              if None not in (held := [blocks[m] for m in reduced[i + 1:]])
              and math.prod(held) <= FLAT_CHUNK), None)
    if k is None:
        return None
    grid = tuple(j for j in reduced if j < k)
    # reductions over a grid axis come after k's: launch 1 has one element of it a program
    if any(op.name == "reduce" and axes.axes(op.operands[0])[op.attrs["axis"]] in grid
           and axes.varies_along(op.operands[0], k) for op in emitter.ops):
        return None
    held = {j: blocks[j] for j in reduced if j > k}
    return _checked(emitter, k, held, buckets[k], 0, FLAT_CHUNK, grid)


def _checked(emitter, k, held, bucket, least, elements, grid):
    """The plan (k, chunk, held, grid) when the group can split along k with about
    `elements` elements a program and k's bucket times the held elements above `least`."""
    axes = emitter.axes
    reduces = _reductions_over(emitter.ops, axes, k)
    if any(op.attrs["kind"] not in COMBINABLE for op in reduces):
        return None
    held_elements = math.prod(held.values())
    if bucket * held_elements <= least:
        return None
    # about ROW_CHUNK rows (of all reduced axes together) or FLAT_CHUNK elements a program
    chunk = max(1, elements // held_elements)
    if _chunk_bucket(axes, k, chunk, emitter.tiler.hints) > MAX_CHUNKS:
        return None
    along = lambda v: axes.varies_along(v, k)  # noqa: E731
    tainted = {op.results[0] for op in reduces}
    for op in emitter.ops:
        if op.name != "write" and any(u in tainted for u in op.operands):
            tainted.add(op.results[0])
            if along(op.results[0]):
                return None           # needs the reduction back along k (x - x.mean(0))
    return k, chunk, held, grid


def whole_block_size(value: int) -> int | None:
    """The tile size holding a reduced axis of `value` elements whole: the next power of
    two, or None past MAX_WHOLE_REDUCTION (looped)."""
    return None if value > MAX_WHOLE_REDUCTION else next_pow2(value)


class _Unknown(Exception):
    """A reduced size without a value hint."""


class _GroupFacts:
    """What split_plan reads of a group's emitter, for a group the fuse pass is forming:
    its ops and axes, and whole blocks without recording guards."""

    def __init__(self, ops, axes, hints):
        self.ops, self.axes, self.hints = ops, axes, hints
        self.tiler = self

    def whole_block(self, extent) -> int | None:
        value = hinted_value(extent, self.hints)
        if value is None:
            raise _Unknown
        return whole_block_size(value)


def _reductions_over(ops, axes, k) -> list:
    """The group's reductions over axis k."""
    return [op for op in ops if op.name == "reduce"
            and axes.axes(op.operands[0])[op.attrs["axis"]] == k]


def _chunk_bucket(axes, k, chunk, hints) -> int:
    """The chunks of k, rounded up to a power of two (launch 2's tile of partials)."""
    return next_pow2(math.ceil(hinted_value(axes.extent(k), hints) / chunk))


def _plan_for(ops, axes, hints):
    """split_plan of a group the fuse pass is forming (None where a size has no hint)."""
    try:
        return split_plan(_GroupFacts(ops, axes, hints))
    except _Unknown:
        return None


def would_split(ops, axes, hints) -> bool:
    """Whether the tile pass will split this group into two launches: its producers then
    run in the first launch and what follows its reductions in the second, none of them
    a launch of its own (the fuse pass asks before joining them to a long reduction)."""
    return _plan_for(ops, axes, hints) is not None


def splits_with_small_partials(ops, axes, hints) -> bool:
    """Whether the tile pass splits this group and its second launch holds each reduction's
    partials in one tile of at most MAX_WHOLE_REDUCTION elements (a full reduction's: one
    number a chunk). Such a group may have no axis to run in parallel: the first launch
    runs a program a chunk (a pass computing row sums takes a full reduction along)."""
    plan = _plan_for(ops, axes, hints)
    if plan is None:
        return False
    k, chunk, held, _ = plan
    chunks = _chunk_bucket(axes, k, chunk, hints)
    return all(chunks * math.prod(held.get(j, 1) for j in axes.axes(op.results[0])
                                  if j is not None) <= MAX_WHOLE_REDUCTION
               for op in _reductions_over(ops, axes, k))


def _partial_dtype(dtype: D.DType) -> D.DType:
    return D.float32 if dtype.is_float and dtype.bits == 16 else dtype


def emit_split(emitter, k: int, chunk: int, held: dict, grid: tuple = ()) -> None:
    axes, b = emitter.axes, emitter.b
    last = emitter.ops[-1]
    reduces = _reductions_over(emitter.ops, axes, k)
    along = lambda v: axes.varies_along(v, k)  # noqa: E731
    extent = axes.extent(k)
    chunks = sympy.ceiling(extent / chunk)
    n_held = _chunk_bucket(axes, k, chunk, emitter.tiler.hints)
    emitter.block.update(held)
    held_elements = math.prod(held.values())
    partials = {}
    for op in reduces:
        r = op.results[0]
        with b.before(emitter.tiler.body.ops[0]):
            buf = b.value("alloc", [], TensorType(_partial_dtype(r.type.dtype),
                                                  (chunks, *r.type.shape)), zero=False)
        buf.name = f"{r.name or 'reduced'}_partials"
        partials[op] = buf

    # launch 1: a chunk of k, an element of each grid axis and a block of the other axes
    # per program
    emitter.block[k] = chunk
    emitter.block[_SPLIT] = 1
    emitter.block.update({g: 1 for g in grid})
    loops = [(chunks, 1, emitter.tiler.new_dim(), _SPLIT)] + [
        (axes.extent(g), 1, emitter.tiler.new_dim(), g) for g in grid] + \
        emitter.parallel_loops(chunk * held_elements)
    with b.at_end(emitter._nest(loops, last)):
        emitter.indices(held)
        chunk_index = emitter.index.pop(_SPLIT)
        rows = b.value("arange", [], TileType(D.INDEX, (chunk,)), start=0, end=chunk)
        first = b.value("mul", [emitter._broadcast(chunk_index, (chunk,)), b.value(
            "const", [], TileType(D.INDEX, (chunk,)), value=chunk)], rows.type)
        emitter.set_index(k, b.value("add", [first, rows], rows.type))
        for op in reduces:
            with b.at_loc(op.loc):
                _store_partial(emitter, op, partials[op], chunk_index)
        for op in emitter.ops:
            if op.name == "write" and along(op.operands[1]):
                with b.at_loc(op.loc):
                    emitter._lower(op)
        b.create("yield")

    # launch 2: a block's partials reduced, then what follows the reductions (the grid
    # axes' reductions among it, their axes whole)
    emitter.env, emitter.loaded = {}, {}
    whole = {**held, **{g: emitter.tiler.whole_block(axes.extent(g)) for g in grid}}
    emitter.block.update(whole)
    loops = emitter.parallel_loops(n_held * math.prod(whole.values())) or [
        (sympy.Integer(1), 1, emitter.tiler.new_dim(), None)]
    with b.at_end(emitter._nest(loops, last)):
        emitter.indices(whole)
        index = b.value("arange", [], TileType(D.INDEX, (n_held,)), start=0, end=n_held)
        bound = b.value("symval", [], TileType(D.INDEX), expr=chunks)
        bound = emitter._broadcast(b.value("expand_dims", [bound], TileType(D.INDEX, (1,)),
                                           axis=0), (n_held,))
        inside = b.value("lt", [index, bound], TileType(D.bool_, (n_held,)))
        for op in reduces:
            with b.at_loc(op.loc):
                _reduce_partials(emitter, op, partials[op], index, inside)
        for op in emitter.ops:
            if op.name == "write" and not along(op.operands[1]):
                with b.at_loc(op.loc):
                    emitter._lower(op)
        b.create("yield")


def _partials_address(emitter, r, first, shape) -> list:
    """Indices into a partials buffer: `first` along its chunk dim, r's own after it."""
    b = emitter.b
    out = [emitter._placed(first, 0, shape)]
    for d, kk in enumerate(emitter.axes.axes(r)):
        out.append(b.value("const", [], TileType(D.INDEX, shape), value=0) if kk is None
                   else emitter._placed(emitter.index[kk], d + 1, shape))
    return out


def _store_partial(emitter, op, buf, chunk_index) -> None:
    b = emitter.b
    r = op.results[0]
    dtype = buf.type.dtype
    x = emitter.get(op.operands[0])
    if x.type.dtype != dtype:
        x = b.value("cast", [x], x.type.with_dtype(dtype))
    part = emitter._reduce(op, x, TileType(dtype, emitter.shape(r)))
    shape = (1, *part.type.shape)
    part = b.value("expand_dims", [part], TileType(dtype, shape), axis=0)
    b.create("store", [buf, *_partials_address(emitter, r, chunk_index, shape), part], [],
             {"checked": [True] * buf.type.rank, "mask": False})


def _reduce_partials(emitter, op, buf, index, inside) -> None:
    b = emitter.b
    r = op.results[0]
    dtype = buf.type.dtype
    shape = (index.type.shape[0], *emitter.shape(r))
    x = b.value("load", [buf, *_partials_address(emitter, r, index, shape)],
                TileType(dtype, shape), checked=[True] * buf.type.rank, mask=False,
                other=False)
    kind = op.attrs["kind"]
    x = b.value("where", [emitter._placed(inside, 0, shape), x,
                          emitter.identity(kind, x.type)], x.type)
    value = b.value("reduce", [x], TileType(dtype, shape[1:]), kind=kind, axis=0)
    if dtype != r.type.dtype:
        value = b.value("cast", [value], value.type.with_dtype(r.type.dtype))
    if r.name:
        value.name = r.name
    emitter.env[r] = value


__all__ = ["split_plan", "emit_split"]
