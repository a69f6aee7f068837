"""tile: turn each fusion group of whole-tensor ops (the fuse pass's `group` attr; the fuse
pass runs first when they have none) into a parallel tile-loop nest -- the tile-level IR a
person would have written.

Per group (passes/tensor_graph.Axes gives its iteration space):
  - the axes no reduction covers are the grid: one parallel `tile_for` each, with block
    sizes from the config (`blocks`, by `dim`, numbered after the kernel's own tile dims)
    or the default policy (`default_block`);
  - a reduced axis (and a scan's axis) is held whole in every program: a tile of its size
    rounded up to a power of two (the size is recorded in `guards`: the compiled kernel is
    specific to its power-of-two bucket), lanes past the size masked out of the reductions;
    a reduced axis longer than MAX_WHOLE_REDUCTION is walked in chunks instead
    (passes/tile_loop.py);
  - a long reduction over an axis that is not the contiguous one (a column sum), or over
    all of a group's axes, is split into two launches (passes/tile_split.py);
  - tensors the group reads are loaded with masked loads at the tile's indices, values are
    computed as tiles, and `write`s become masked stores; reshapes and slices load the
    tensor they view at indices computed from the tile's (passes/tile_views.py);
  - a batched matmul's batch axes are grid loops of one element a program (not tuned): the
    tiles of its group drop those dims (tensor_graph.Axes.kept_dims) and the tile-level
    dot stays 2-D;
  - a value another group uses is stored into a buffer (a new `alloc`) and loaded there,
    or read from the output the group stores it into anyway.
The nest takes the place of the group's last op, so launches run in program order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import sympy

from ..ir import HANDLE, Block, Builder, Module, Op, TensorType, TileType, Value, erase, uses
from ..ir import dtypes as D
from ..ir.ops import INDEXED_VIEWS
from ..ir.symbolic import hinted_value
from .fuse import Fuse
from .tensor_graph import Axes, in_memory, whole_tensor_ops
from .tile_loop import emit_looped, looped_scan, reorder_reductions
from .tile_split import MAX_WHOLE_REDUCTION, emit_split, split_plan, whole_block_size
from .tile_views import iota_tile, op_attrs, view_load


FALLBACK_TILE_ELEMENTS = 4096
# A reduced axis up to MAX_WHOLE_REDUCTION long (tile_split.py) is held whole in every
# program (one tile); a longer one is walked in chunks of LOOP_BLOCK by sequential loops
# (passes/tile_loop.py).
LOOP_BLOCK = 2048


def _fallback_block(position: int, ndims: int, reduced_elements: int) -> int:
    """Blocks when no policy is given (`fusec opt`): long rows of the innermost dim, a few of
    the others, fewer when the reduced axes already fill the tile."""
    block = 512 if position == ndims - 1 else 8
    while block > 1 and block * reduced_elements > FALLBACK_TILE_ELEMENTS:
        block //= 2
    return block


@dataclass
class Tile:
    name: ClassVar[str] = "tile"
    blocks: list | None = None             # Config.blocks, by tile dim
    default_block: Callable | None = None  # (dim, parallel, n dims, position) -> block
    hints: dict | None = None              # size symbol -> value (else the kernel's `hints`)
    guards: list = field(default_factory=list)   # out: sizes whose pow2 bucket was used

    def run(self, module: Module) -> None:
        for kernel in module.ops:
            _Tiler(kernel, self).run()


class _Tiler:
    def __init__(self, kernel: Op, options: Tile):
        self.kernel = kernel
        self.body = kernel.regions[0]
        self.options = options
        self.hints = options.hints if options.hints is not None else dict(
            kernel.attrs.get("hints", []))
        dims = [op.attrs["dim"] for op in kernel.walk() if op.name == "tile_for"]
        self.next_dim = 1 + max(dims) if dims else 0

    def run(self):
        ops = whole_tensor_ops(self.kernel)
        if not ops:
            return
        if any("group" not in op.attrs for op in ops):     # not fused yet: fuse first
            Fuse(hints=self.hints).run_on(self.kernel)
            ops = whole_tensor_ops(self.kernel)     # fuse copies and erases free ops
        groups: dict[int, list[Op]] = {}
        for op in ops:
            groups.setdefault(op.attrs["group"], []).append(op)
        for gid in sorted(groups):
            self._buffer_crossing_values(groups[gid])
        for gid in sorted(groups):
            _GroupEmitter(self, groups[gid]).emit()

    def _buffer_crossing_values(self, ops: list[Op]):
        """Values of this group used elsewhere: written to a new buffer, read from there."""
        inside = set(ops)
        users_of = uses(self.kernel)        # the group's results are used only as they were
        for op in list(ops):
            for r in op.results:
                users = [u for u in dict.fromkeys(users_of.get(r, ())) if u not in inside]
                if not users:
                    continue
                written = next((w.operands[0] for w in ops if w.name == "write"
                                and w.operands[1] is r and w.operands[0].op is not None
                                and w.operands[0].op.name == "alloc"
                                and w.operands[0].type == r.type), None)
                if written is not None and sum(
                        u.name in ("write", "store", "atomic_add") and u.operands[0] is written
                        for u in set(users_of.get(written, ()))) == 1:
                    # the group stores it into an output written nowhere else: readers
                    # read that
                    for u in users:
                        u.operands = [written if v is r else v for v in u.operands]
                    continue
                b = Builder(self.body, op.loc)
                with b.before(self.body.ops[0]):
                    buf = b.value("alloc", [], TensorType(r.type.dtype, r.type.shape), zero=False)
                buf.name = f"{r.name or 'tmp'}_buf"
                after = self.body.ops[self.body.ops.index(op) + 1]
                with b.before(after):
                    write = b.create("write", [buf, r], [], {"group": op.attrs["group"]})
                ops.insert(ops.index(op) + 1, write)
                for u in users:
                    u.operands = [buf if v is r else v for v in u.operands]

    def new_dim(self) -> int:
        """The next tile dim number (Config order: after the kernel's own tile dims)."""
        self.next_dim += 1
        return self.next_dim - 1

    def block_for(self, parallel: bool, position: int, ndims: int,
                  fallback: int) -> tuple[int, int]:
        """(dim, block) of the next tunable tile dim: the config's block, else the default
        policy's, else `fallback` (`fusec opt` without a policy)."""
        dim = self.new_dim()
        o = self.options
        if o.blocks is not None and dim < len(o.blocks):
            return dim, o.blocks[dim]
        if o.blocks is not None:
            raise ValueError(f"the config lists {len(o.blocks)} block sizes but the tiled "
                             f"kernel has more tile dims (dim {dim})")
        if o.default_block is None:
            return dim, fallback
        return dim, o.default_block(dim, parallel, ndims, position)

    def whole_block(self, extent: sympy.Expr) -> int | None:
        """A tile holding the whole extent: its size rounded up to a power of two (None:
        too long, to be looped over)."""
        value = hinted_value(extent, self.hints)
        if value is None:
            raise ValueError(f"tile: the reduced size {extent} has no value hint (the "
                             "kernel's `hints` attr gives sizes for `fusec opt`)")
        if not extent.is_Integer and extent not in self.options.guards:
            self.options.guards.append(extent)
        return whole_block_size(value)


class _GroupEmitter:
    """Builds one group's loop nest and the tile ops of its whole-tensor ops."""

    def __init__(self, tiler: _Tiler, ops: list[Op]):
        self.tiler = tiler
        self.ops = ops
        self.members = set(ops)
        self.axes = Axes(ops)
        self.env: dict[Value, Value] = {}
        self.loaded: dict[Value, Value] = {}
        self.scan_carry = None       # in a looped phase: scan op -> its loop-carried value
        self.scan_next = None        # ... and the value it carries to the next chunk

    def emit(self):
        axes = self.axes
        last = self.ops[-1]
        self.b = Builder(self.tiler.body, last.loc)
        self.block = {}
        self.looped = None
        split = split_plan(self)
        if split is not None:          # a long column sum or full reduction: two launches
            emit_split(self, *split)
            for op in reversed(self.ops):
                erase(op)
            return
        dots = [op for op in self.ops if op.name == "dot"]
        k_axis = axes.axes(dots[0].operands[0])[-1] if dots else None
        long_axes = []
        for k in axes.reduced:
            if k == k_axis:
                self.looped = k          # a matmul walks K in chunks: block set below
                continue
            self.block[k] = self.tiler.whole_block(axes.extent(k))
            if self.block[k] is None:
                self.block[k], self.looped = LOOP_BLOCK, k
                long_axes.append(k)
        if self.looped is None and not dots and \
                math.prod(self.block[k] for k in axes.reduced) > MAX_WHOLE_REDUCTION:
            long_axes = self._loop_outer_reduced_axis()
        elif len(long_axes) == 1 and not dots:
            self._reorder_to_reduce_first(self.looped)
        axes = self.axes
        scans = [op for op in self.ops if op.name == "scan"]
        if scans and self.looped is not None and (len(axes.reduced) > 1 or dots):
            raise ValueError(
                f"the scan (cum{scans[0].attrs['kind']}) at {scans[0].loc} runs over "
                f"{' x '.join(map(str, (axes.extent(k) for k in axes.reduced)))} elements "
                f"held in one program; more than {MAX_WHOLE_REDUCTION} are walked in chunks "
                "only where the scanned axis is the one reduced axis (not supported yet)")
        if self.looped is not None and len(axes.reduced) > 1 and not (
                len(long_axes) == 1 and not dots and self._reduced_first(self.looped)):
            raise ValueError(f"the whole-tensor reductions at {last.loc} run over several axes, "
                             f"one longer than {MAX_WHOLE_REDUCTION} elements; looping over it "
                             "is supported where that axis is the only long one and is "
                             "reduced before the others, or where one chain of reductions of "
                             "one kind (sum, prod, max, min) reduces them all (GroupNorm's "
                             "statistics)")
        loops = self.parallel_loops(math.prod(self.block.values()))
        self.loop_dim = None
        if k_axis is not None:          # the K loop's dim comes after M's and N's
            self.loop_dim, self.block[k_axis] = self.tiler.block_for(False, 0, 1, 32)
        if not loops:             # every axis reduced: one program
            dim = self.tiler.new_dim()
            loops.append((sympy.Integer(1), 1, dim, None))
        inner = self._nest(loops, last)
        with self.b.at_end(inner):
            self.indices([k for k in axes.reduced if k != self.looped])
            if self.looped is None:
                for op in self.ops:
                    with self.b.at_loc(op.loc):
                        self._lower(op)
            else:
                emit_looped(self, self.looped)
            self.b.create("yield")
        for op in reversed(self.ops):
            erase(op)

    def _loop_outer_reduced_axis(self) -> list:
        """Several reduced axes, each short but too many elements together (GroupNorm's
        backward sums H x W): walk the outermost of them in chunks, the inner ones whole in
        each chunk, where every reduction along it can reduce it first (chains of one kind
        are reordered: `reorder_reductions`); else all stay whole. Returns [the looped
        axis] or []."""
        k = next(k for k in self.axes.reduced if self.block[k] > 1)
        self._reorder_to_reduce_first(k)
        if not self._reduced_first(k):
            return []
        inner = math.prod(self.block[j] for j in self.axes.reduced if j != k)
        self.block[k], self.looped = max(1, LOOP_BLOCK // inner), k
        return [k]

    def _reorder_to_reduce_first(self, k: int) -> None:
        """Chains of one kind of reduction covering k reduce it first (the group's axes
        rebuilt when one changed)."""
        if reorder_reductions(self.ops, self.axes, k):
            self.axes = Axes(self.ops)

    def _reduced_first(self, k: int) -> bool:
        """Every reduction of a value varying along axis k reduces k itself: the looped
        reduction (tile_loop.py) then accumulates only sums over k, and the short reduced
        axes, whole in each tile, are reduced after the loop (a reduction over one of them
        first would carry values varying along k out of the loop)."""
        return all(self.axes.axes(op.operands[0])[op.attrs["axis"]] == k for op in self.ops
                   if op.name == "reduce" and self.axes.varies_along(op.operands[0], k))

    def parallel_loops(self, reduced_elements: int) -> list:
        """(extent, block, dim, axis) of a parallel loop per parallel axis, blocks from the
        config or the policy (setting self.block), `reduced_elements` per program besides.
        A batched matmul's batch axes take one element a program (not tuned)."""
        loops = []
        tuned = [k for k in self.axes.parallel if k not in self.axes.batch]
        n = len(tuned)
        for k in self.axes.parallel:
            if k in self.axes.batch:
                dim = self.tiler.new_dim()
                given = self.tiler.options.blocks
                if given is not None and dim < len(given) and given[dim] != 1:
                    raise ValueError(f"the config's block {given[dim]} for tile dim {dim}: a "
                                     "batched matmul's batch dim takes one element a program "
                                     "(give 1)")
                self.block[k] = 1
                loops.append((self.axes.extent(k), 1, dim, k))
                continue
            position = tuned.index(k)
            dim, block = self.tiler.block_for(True, position, n, _fallback_block(
                position, n, reduced_elements))
            self.block[k] = block
            loops.append((self.axes.extent(k), block, dim, k))
        return loops

    def _nest(self, loops, before: Op) -> Block:
        """The parallel loops, outermost first, in place of `before`; returns the innermost
        body (its `yield` comes after the ops lowered into it)."""
        self.handles = {}
        bodies = []
        for extent, block, dim, k in loops:
            body = Block([HANDLE])
            op = Op("tile_for", [], [], {"extent": extent, "block": block, "parallel": True,
                                         "dim": dim}, [body], before.loc)
            if bodies:
                bodies[-1].append(op)
            else:
                before.parent.insert(before.parent.ops.index(before), op)
            bodies.append(body)
            if k is not None:
                self.handles[k] = body.args[0]
        for outer in bodies[:-1]:
            outer.append(Op("yield", [], [], {}, [], before.loc))
        return bodies[-1]

    # -- indices ---------------------------------------------------------------------------
    def indices(self, whole):
        """The indices of each loop's block (its handle's tile_index) and of the reduced axes
        `whole` that every program holds whole (with their masks)."""
        self.index: dict = {}
        self.mask: dict[int, Value] = {}
        for k, h in self.handles.items():
            if k in self.axes.batch:       # a scalar: the program's element of the axis
                self.index[k] = self.b.value("tile_begin", [h], TileType(D.INDEX))
                continue
            self.index[k] = self.b.value("tile_index", [h], TileType(D.INDEX, (self.block[k],)))
        for k in whole:
            n = self.block[k]
            self.set_index(k, self.b.value("arange", [], TileType(D.INDEX, (n,)), start=0,
                                           end=n))

    def set_index(self, k: int, idx: Value):
        """The indices along reduced axis k and the mask of those inside its extent."""
        n = idx.type.shape[0]
        self.index[k] = idx
        bound = self.b.value("symval", [], TileType(D.INDEX), expr=self.axes.extent(k))
        bound = self.b.value("expand_dims", [bound], TileType(D.INDEX, (1,)), axis=0)
        bound = self.b.value("broadcast", [bound], TileType(D.INDEX, (n,)))
        self.mask[k] = self.b.value("lt", [idx, bound], TileType(D.bool_, (n,)))

    def shape(self, v: Value) -> tuple[int, ...]:
        """v's tile shape (without a batched matmul's batch dims)."""
        axes = self.axes.axes(v)
        return tuple(1 if axes[d] is None else self.block[axes[d]]
                     for d in self.axes.kept_dims(v))

    def _placed(self, along: Value, d: int, shape: tuple) -> Value:
        """A 1-D tile `along` put at dim d of a tile of `shape` (other dims broadcast)."""
        v = along
        for a in range(len(shape)):
            if a != d:
                t = v.type
                v = self.b.value("expand_dims", [v], t.with_shape(t.shape[:a] + (1,)
                                                                  + t.shape[a:]), axis=a)
        return self._broadcast(v, shape)

    def _broadcast(self, v: Value, shape: tuple) -> Value:
        if v.type.shape == tuple(shape):
            return v
        while v.type.rank < len(shape):
            v = self.b.value("expand_dims", [v], v.type.with_shape((1,) + v.type.shape), axis=0)
        return self.b.value("broadcast", [v], v.type.with_shape(shape))

    def _address(self, v: Value) -> list[Value]:
        """An index tile per dim of v (a batch dim's is its program's element everywhere)."""
        shape = self.shape(v)
        place = {d: i for i, d in enumerate(self.axes.kept_dims(v))}
        out = []
        for d, k in enumerate(self.axes.axes(v)):
            if k is None:
                out.append(self.b.value("const", [], TileType(D.INDEX, shape), value=0))
            elif d not in place:
                out.append(self._broadcast(self.index[k], shape))
            else:
                out.append(self._placed(self.index[k], place[d], shape))
        return out

    # -- ops -------------------------------------------------------------------------------
    def get(self, v: Value) -> Value:
        if isinstance(v.type, TileType):
            return v                      # a scalar of the kernel's own block
        if v in self.env:
            return self.env[v]
        if v.op is not None and v.op in self.members:    # computed on demand (looped phases)
            self._lower(v.op)
            return self.env[v]
        if v not in self.loaded:
            assert in_memory(v), f"tile: {v} is neither in memory nor computed in the group"
            t = v.type
            self.loaded[v] = self.b.value(
                "load", [v, *self._address(v)], TileType(t.dtype, self.shape(v)),
                checked=[True] * t.rank, mask=False, other=False)
        return self.loaded[v]

    def get_or_lower(self, op: Op) -> None:
        if op.name == "write" or op.results[0] not in self.env:
            self._lower(op)

    def _lower(self, op: Op):
        if op.name == "write":
            dst, v = op.operands
            self.b.create("store", [dst, *self._address(dst), self.get(v)],
                          [], {"checked": [True] * dst.type.rank, "mask": False})
            return
        r = op.results[0]
        if r in self.axes.viewed_only:     # read through by a view of it (a chain's link,
            return                         # a pointwise value computed at its indices)
        if op.name in INDEXED_VIEWS:
            self.env[r] = view_load(self, op)
            return
        rtype = TileType(r.type.dtype, self.shape(r))
        ins = [self.get(v) for v in op.operands]
        form = self.axes.tile_form(op) if op.name in ("expand_dims", "permute") else None
        if op.name == "broadcast":
            self.env[r] = self._broadcast(ins[0], rtype.shape)
        elif op.name == "iota":
            self.env[r] = iota_tile(self.b, op, self._address(r)[0], rtype)
        elif op.name in ("reduce", "scan"):
            self.env[r] = self._reduce(op, ins[0], rtype)
        elif form is not None:        # batch dims dropped: the form the tiles take
            self.env[r] = ins[0] if form == ("same",) else self.b.value(
                form[0], ins, rtype, **form[1])
        else:
            self.env[r] = self.b.value(op.name, ins, rtype, **op_attrs(op))
        if r.name and self.env[r].name is None:
            self.env[r].name = r.name

    def _reduce(self, op: Op, x: Value, rtype: TileType) -> Value:
        """A reduce or scan: lanes past the reduced size do not count (a reversed scan
        meets them first)."""
        axis = op.attrs["axis"]
        k = self.axes.axes(op.operands[0])[axis]
        if k in self.mask:
            mask = self._placed(self.mask[k], axis, x.type.shape)
            x = self.b.value("where", [mask, x, self.identity(op.attrs["kind"], x.type)],
                             x.type)
        if self.scan_carry and op in self.scan_carry:       # walked in chunks
            return looped_scan(self, op, x, rtype)
        return self.b.value(op.name, [x], rtype, **op_attrs(op))

    def identity(self, kind: str, t: TileType) -> Value:
        fill = D.reduction_identity(kind, t.dtype)
        return self.b.value("const", [], t, value=_attr_number(fill, t.dtype))


def _attr_number(value, dtype: D.DType):
    if dtype.is_bool:
        return bool(value)
    if dtype.is_int:
        return int(value)
    return float(value) if not math.isinf(value) else value
