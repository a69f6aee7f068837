"""What the fuse and tile passes know about whole-tensor ops: which ops they are, and how the
dims of every tensor in a group of them map onto one iteration space (the group's domain).

Axes: a group's domain is a list of axes (sizes); each dim of each tensor in the group maps to
one axis, or to none when its size is 1 (a broadcast dim). Elementwise ops map their operands'
dims to the result's, broadcasts, expand_dims, permutes and reductions move them around, and a
reduction's reduced dim marks its axis as reduced. A group whose dims cannot be mapped
consistently (x + x.T over a square x) is not one iteration space: it is not fused.

Indexed views (reshape, slice) are where a group's space begins, as a load is: their result's
dims map to axes, their operand's do not (it is read from memory at indices computed from the
result's, passes/tile_views.py), and a view read only by another view of the same group (a
chain, x[1:].reshape(...)) has no axes either.
"""
from __future__ import annotations

import sympy

from ..ir import Op, TensorType, Value
from ..ir.ops import BINARY, COMPARE, INDEXED_VIEWS, UNARY
from ..ir.symbolic import is_zero

WHOLE_TENSOR_KINDS = ("unary", "binary", "compare", "where", "cast", "shape", "reduce", "scan",
                      "dot")


def is_whole_tensor_op(op: Op) -> bool:
    if op.name == "write":
        return True
    return op.name != "alloc" and any(isinstance(r.type, TensorType) for r in op.results)


def whole_tensor_ops(kernel: Op) -> list[Op]:
    return [op for op in kernel.regions[0].ops if is_whole_tensor_op(op)]


def mapped_operands(op: Op) -> list[Value]:
    """The tensor operands whose dims map onto the group's axes (not a view's operand)."""
    if op.name in INDEXED_VIEWS:
        return []
    return [v for v in op.operands if isinstance(v.type, TensorType)]


POINTWISE = frozenset(UNARY + BINARY + COMPARE + ("where", "cast"))


def pointwise_same_shape(op: Op) -> bool:
    """An elementwise op whose tensor operands all have its result's shape (no broadcast):
    its value at any index is computed from theirs at that index."""
    if op.name not in POINTWISE or len(op.results) != 1:
        return False
    shape = getattr(op.results[0].type, "shape", None)
    return shape is not None and all(
        not isinstance(v.type, TensorType) or tuple(v.type.shape) == tuple(shape)
        for v in op.operands)


def view_internal_ops(ops: list[Op]) -> set:
    """Pointwise ops of a group whose results only its indexed views (or other such ops)
    read: computed at the views' indices (passes/tile_views.py), no tiles of their own (the
    negated half of rotary embeddings' concat)."""
    users: dict = {}
    for op in ops:
        for v in op.operands:
            users.setdefault(v, []).append(op)
    internal: set = set()
    for op in reversed(ops):
        if pointwise_same_shape(op):
            readers = users.get(op.results[0], [])
            if readers and all(u.name in INDEXED_VIEWS or u in internal for u in readers):
                internal.add(op)
    return internal


def chain_sources(values: list[Value], members) -> list[Value]:
    """The values an indexed view of `values` (its operands: a concat has several) reads
    through the views of `members` it is a chain of, and through the pointwise ops of
    `members` computed at its indices."""
    out, todo = [], list(values)
    while todo:
        v = todo.pop(0)
        p = v.op
        if p is not None and p in members and (p.name in INDEXED_VIEWS
                                               or pointwise_same_shape(p)):
            todo = [x for x in p.operands if isinstance(x.type, TensorType)] + todo
        elif v not in out:
            out.append(v)
    return out


def in_memory(v: Value) -> bool:
    """A tensor param or alloc: read from memory by the ops that use it."""
    return isinstance(v.type, TensorType) and (v.op is None or v.op.name == "alloc")


def _repeats(dims: list) -> bool:
    """Two dims of one value on the same axis."""
    taken = [k for k in dims if k is not None]
    return len(taken) != len(set(taken))


class NotOneSpace(Exception):
    """The ops' dims do not map onto one iteration space; the message says where."""


def _is_one(d) -> bool:
    return d == 1


def _size_classes(ops: list[Op]):
    """same(a, b): sizes the kernel's calls check equal (its `equal_sizes`: dims broadcast
    against each other), transitively."""
    kernel = ops[0].parent.parent if ops and ops[0].parent is not None else None
    pairs = kernel.attrs.get("equal_sizes", []) if kernel is not None else []
    root: dict = {}

    def find(x):
        while root.get(x, x) != x:
            x = root[x]
        return x
    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            root[ra] = rb
    return lambda a, b: a == b or (bool(root) and find(a) == find(b))


class Axes:
    """The domain of a group and the axis of every dim of its tensors."""

    def __init__(self, ops: list[Op]):
        self.ops = ops
        self.of: dict[Value, list] = {}
        self.same_size = _size_classes(ops)
        values = []
        internal = view_internal_ops(ops)
        mapped = {v for op in ops if op not in internal for v in mapped_operands(op)}
        # links of view chains (and what pointwise ops computed at a view's indices read):
        # read through by the last view, no tiles of their own
        self.viewed_only = ({v for op in ops if op.name in INDEXED_VIEWS for v in op.operands}
                            | {v for op in internal for v in (*op.operands, *op.results)}
                            ) - mapped
        for op in ops:
            if op in internal:
                continue
            for v in mapped_operands(op) + list(op.results):
                if isinstance(v.type, TensorType) and v not in self.of \
                        and v not in self.viewed_only:
                    self.of[v] = [None] * v.type.rank
                    values.append(v)
        # the domain's axes in the order of the dims of what the group writes (its grid order)
        written = {op.operands[1] for op in ops if op.name == "write"}
        results = {r for op in ops for r in op.results}
        anchor = max(values, key=lambda v: (v.type.rank, -sum(map(_is_one, v.type.shape)),
                                            v in written, v in results))
        self.domain = list(anchor.type.shape)
        self.of[anchor] = [k if not _is_one(d) else None for k, d in enumerate(anchor.type.shape)]
        self._solve()
        # a scan's axis is held whole in every program too, as a reduction's is
        self.reduced = sorted(({self.of[op.operands[0]][op.attrs["axis"]] for op in ops
                                if op.name in ("reduce", "scan")}
                               | {self.of[op.operands[0]][-1] for op in ops if op.name == "dot"})
                              - {None})
        self.parallel = [k for k in range(len(self.domain)) if k not in self.reduced]
        self.frame_rank, self.batch = self._batch_frame()

    # -- batched matmuls -------------------------------------------------------------------
    def _batch_frame(self) -> tuple[int | None, frozenset]:
        """(R, batch axes) of a group holding a batched dot ([..., M, K] x [..., K, N], rank
        R > 2): its programs take one element of every batch axis (the tile-level dot is
        2-D), so the tiles of every value keep only its last two dims (dims aligned to the
        right, as broadcasting aligns them). That needs the dims before those to be batch
        axes (or of size 1) and no batch axis among the last two; (None, {}) without one."""
        dots = [op for op in self.ops if op.name == "dot"]
        rank = dots[0].results[0].type.rank if dots else 2
        if rank == 2:
            return None, frozenset()
        r = dots[0].results[0]
        batch = frozenset(k for k in self.of[r][:rank - 2] if k is not None)
        for v, dims in self.of.items():
            if v.type.rank > rank:
                raise NotOneSpace(f"a {v.type} has more dims than the batched matmul's "
                                  f"{r.type} it would share a launch with")
            for d, k in enumerate(dims):
                dropped = d < v.type.rank - 2
                if k is not None and (k in batch) != dropped:
                    raise NotOneSpace(
                        f"dim {d} of a {v.type} is {'not ' if dropped else ''}a batch dim of "
                        f"the batched matmul's {r.type} where its place says it is"
                        f"{'' if dropped else ' not'} (a batched matmul's launch takes its "
                        "batch dims first, aligned to the right)")
        self.frame_rank = rank
        for op in self.ops:
            if op.name in ("expand_dims", "permute") and self.tile_form(op) is None:
                raise NotOneSpace(f"{op.name} at line {op.loc.line} moves a dim between the "
                                  "batch dims of a batched matmul and its rows or columns")
        return rank, batch

    def kept_dims(self, v: Value) -> list[int]:
        """The dims of v its tiles have: all but those in a batched matmul's batch places."""
        if self.frame_rank is None:
            return list(range(v.type.rank))
        return list(range(max(v.type.rank - 2, 0), v.type.rank))

    def tile_form(self, op: Op) -> tuple | None:
        """What an expand_dims or permute does to tiles whose batch dims are dropped:
        ("same",) (nothing: only size-1 dims move), (name, attrs) or None (it moves a dim
        in or out of the batch places)."""
        if self.frame_rank is None:
            return (op.name, {k: v for k, v in op.attrs.items() if k != "group"})
        x, r = op.operands[0], op.results[0]
        kept_x, kept_r = self.kept_dims(x), self.kept_dims(r)
        if op.name == "permute":
            sources = [op.attrs["perm"][i] for i in kept_r]
            if not set(sources) <= set(kept_x):
                return None
            perm = [kept_x.index(s) for s in sources]
            return ("same",) if perm == sorted(perm) else ("permute", {"perm": perm})
        axis = op.attrs["axis"]
        sources = [j if j < axis else j - 1 for j in kept_r if j != axis]
        if sources != kept_x:
            return None
        return ("expand_dims", {"axis": kept_r.index(axis)}) if axis in kept_r else ("same",)

    # -- constraint propagation ------------------------------------------------------------
    def _unify(self, a: Value, da: int, b: Value, db: int) -> bool:
        """dim da of a and dim db of b are the same axis (unless one is a size-1 dim)."""
        if _is_one(a.type.shape[da]) or _is_one(b.type.shape[db]):
            return False
        if a not in self.of or b not in self.of:
            return False               # read only through views: no axes of its own
        x, y = self.of[a][da], self.of[b][db]
        if x == y:
            return False
        if x is not None and y is not None:
            raise NotOneSpace(f"dim {da} of a {a.type} and dim {db} of a {b.type} would have to "
                              f"be both axis {x} and axis {y} of one iteration space (a "
                              "transposed use of the same data)")
        if x is None:
            self.of[a][da] = y
        else:
            self.of[b][db] = x
        return True

    def _pairs(self, op: Op):
        """(operand, its dim, result-or-other value, its dim) that are the same axis."""
        if op.name == "write":
            dst, v = op.operands
            return [(v, d, dst, d) for d in range(v.type.rank)]
        r = op.results[0]
        tensors = mapped_operands(op)
        if not tensors:              # an indexed view (its result's dims start here), a splat
            return []
        if op.name == "expand_dims":
            a = op.attrs["axis"]
            src = op.operands[0]
            return [(src, d, r, d if d < a else d + 1) for d in range(src.type.rank)]
        if op.name == "permute":
            perm = op.attrs["perm"]
            return [(op.operands[0], p, r, i) for i, p in enumerate(perm)]
        if op.name == "reduce":
            a = op.attrs["axis"]
            src = op.operands[0]
            return [(src, d, r, d if d < a else d - 1) for d in range(src.type.rank) if d != a]
        if op.name == "dot":             # [..., M, K] x [..., K, N]: K is an axis of its own
            a, b = op.operands
            ra, rb, rr = a.type.rank, b.type.rank, r.type.rank
            batch = [(v, d, r, d + rr - v.type.rank) for v in (a, b)
                     for d in range(v.type.rank - 2)]
            return batch + [(a, ra - 2, r, rr - 2), (b, rb - 1, r, rr - 1),
                            (a, ra - 1, b, rb - 2)]
        # elementwise and broadcast: same rank, dims in place
        return [(v, d, r, d) for v in tensors for d in range(r.type.rank)
                if v.type.rank == r.type.rank]

    def _solve(self):
        self.pairs = [p for op in self.ops for p in self._pairs(op)]
        self._propagate()
        for op in self.ops:              # a matmul's K: an axis of its own, never M or N
            a = op.operands[0] if op.name == "dot" else None
            if a is not None and self.of[a][-1] is None and not _is_one(a.type.shape[-1]):
                self.domain.append(a.type.shape[-1])
                self.of[a][-1] = len(self.domain) - 1
                self._propagate()
        for v, dims in self.of.items():
            for d, k in enumerate(dims):
                if k is None and not _is_one(v.type.shape[d]):
                    self._adopt(v, d)
        for v, dims in self.of.items():
            if _repeats(dims):
                raise NotOneSpace(f"two dims of a {v.type} map to the same axis")

    def _propagate(self):
        changed = True
        while changed:
            changed = False
            for a, da, b, db in self.pairs:
                changed |= self._unify(a, da, b, db)

    def _adopt(self, v: Value, d: int):
        """A dim no constraint reached from the anchor (a reduction's reduced dim seen from
        its result only): the first axis of that size the value does not use yet and
        that, propagated, leaves no value with two dims on one axis (a [1, G, C, 1] weight
        of a group norm whose N, G and C are all 4 must not take N's axis for its C: its
        product with the [N, G, 1, 1] statistics would have N twice), else a new axis."""
        size = v.type.shape[d]
        used = set(self.of[v])
        for k, dsize in enumerate(self.domain):
            if k in used or not (is_zero(dsize - size) or self.same_size(dsize, size)):
                continue
            before = {u: list(dims) for u, dims in self.of.items()}
            self.of[v][d] = k
            try:
                self._propagate()
                if not any(_repeats(dims) for dims in self.of.values()):
                    return
            except NotOneSpace:
                pass
            self.of = before
        self.domain.append(size)
        self.of[v][d] = len(self.domain) - 1
        self._propagate()

    # -- queries ---------------------------------------------------------------------------
    def axes(self, v: Value) -> list:
        return self.of[v]

    def varies_along(self, v: Value, k: int) -> bool:
        """Whether v is a tensor with a dim on axis k."""
        return isinstance(v.type, TensorType) and k in self.of[v]

    def extent(self, k: int) -> sympy.Expr:
        """An axis's size: the largest size of a dim on it (size-1 dims broadcast)."""
        sizes = [v.type.shape[d] for v, dims in self.of.items() for d, a in enumerate(dims)
                 if a == k]
        return next((s for s in sizes if not _is_one(s)), self.domain[k])
