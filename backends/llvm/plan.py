"""The fusion plan: which tile values get a buffer and which are computed inline.

A tile value is *materialized* when a loop nest at its definition writes all its elements
into a buffer; it is *inline* when every consumer recomputes the element it needs inside its
own loop nest. Inline is the default, so `out[t] = gelu(x[t] + b[t])` is one loop that
loads, computes and stores each element (and vectorizes). A value is materialized when
recomputing it would repeat real work:

- it has several consumers, is used inside a nested region (a loop body would recompute it
  every iteration), is expanded by a broadcast, or feeds a dot (except one that stages its
  operands itself) -- unless it is cheap (index arithmetic, constants, views of buffers);
- it is a load and a store to a tensor that may alias the loaded one lies between the load
  and the point where its consumers read it (tile semantics: a program loads a whole tile
  before later stores; params may alias each other, allocs alias nothing).

Stores of one shape in a block whose values share work are emitted as one loop at the last
of them (joint_stores.py): a value only they read is then inline, computed once per element.

Views (broadcast, expand_dims, permute) are never materialized themselves: the demand is
passed to the value they view, and the view reads that buffer with remapped indices.
Results of reduce, dot, atomic_add and of loops/ifs always live in buffers (lower.py).
"""
from __future__ import annotations

from ...ir.core import Op, Value
from ...ir.ops import BINARY, COMPARE, UNARY, memory_operands
from ...ir.types import TileType
from ..carried import VIEW_OPS
from ..joint_stores import ancestor_in, joint_groups

INLINE_OPS = frozenset(UNARY + BINARY + COMPARE + (
    "where", "cast", "broadcast", "expand_dims", "permute", "const", "arange", "tile_index",
    "load"))
_FREE = frozenset(("const", "arange", "tile_index"))
_CHEAP = frozenset(("add", "sub", "mul", "and", "or", "xor", "not", "neg", "abs", "relu",
                    "maximum", "minimum", "where", "cast") + COMPARE)
_CHEAP_COST = 3            # arithmetic ops an inline value may repeat instead of a buffer
_INF = 1 << 30


def _rank(v: Value) -> int:
    return v.type.rank if isinstance(v.type, TileType) else 0


def _expanding(op: Op) -> bool:
    return op.name == "broadcast" and op.operands[0].type.shape != op.results[0].type.shape


class Plan:
    def __init__(self, kernel: Op, staged_dots: frozenset = frozenset(),
                 reload: bool = False):
        """staged_dots: dots whose lowering reads each operand element once, staging the
        operands itself (mma.py): their operands need no buffer for the dot's sake.
        reload: a load read by several consumers of its own block is read again by each
        (CPU: the tile is still in the cache, and a copy into a buffer is a pass of its own)
        rather than materialized -- unless a consumer expands it or sits in a nested
        region."""
        self.kernel = kernel
        self.staged_dots = staged_dots
        self.reload = reload
        self.params = set(kernel.regions[0].args)
        self.uses: dict[Value, list[Op]] = {}
        ops = list(kernel.walk())
        for op in ops:
            for v in op.operands:
                self.uses.setdefault(v, []).append(op)
        self.materialized: set[Value] = set()
        repeated: set[Value] = set()            # views whose elements are read repeatedly
        for op in reversed(ops):                # consumers are decided before producers
            if op.name not in INLINE_OPS or not op.results or _rank(op.results[0]) == 0:
                continue
            v = op.results[0]
            if not self._repeated(op, v, repeated) or self.cost(v) <= _CHEAP_COST or \
                    self._reloaded(op, v, repeated):
                continue
            (repeated if op.name in VIEW_OPS else self.materialized).add(v)
        # {store: the stores emitted with it, where the last of them stands}; before the
        # load hazards below, which check loads against where their readers are emitted
        # (joint_stores.py relies on it for loads another group reads)
        self.joint: dict[Op, tuple[Op, ...]] = joint_groups(self)
        for op in ops:
            if op.name == "load" and _rank(op.results[0]) and op.results[0] not in \
                    self.materialized and self._load_hazard(op):
                self.materialized.add(op.results[0])

    def is_inline(self, v: Value) -> bool:
        op = v.op
        return (op is not None and op.name in INLINE_OPS and _rank(v) > 0
                and v not in self.materialized)

    # -- decisions -------------------------------------------------------------------------
    def _repeated(self, op: Op, v: Value, repeated: set) -> bool:
        consumers = self.uses.get(v, [])
        return (len(set(consumers)) > 1
                or any(c.parent is not op.parent for c in consumers)
                or any(_expanding(c) or (c.name == "dot" and c not in self.staged_dots)
                       for c in consumers)
                or any(c.name in VIEW_OPS and c.results[0] in repeated for c in consumers))

    def _reloaded(self, op: Op, v: Value, repeated: set) -> bool:
        """reload: the load is read again by each consumer (none expands it, sits in a
        nested region, is a dot or a view whose elements are read repeatedly)."""
        consumers = self.uses.get(v, [])
        return (self.reload and op.name == "load"
                and all(c.parent is op.parent and not _expanding(c) and c.name != "dot"
                        and not (c.name in VIEW_OPS and c.results[0] in repeated)
                        for c in consumers))

    def cost(self, v: Value, depth: int = 0) -> int:
        """Work to recompute one element of v (0: free to recompute; _INF: never)."""
        op = v.op
        if op is None or _rank(v) == 0 or v in self.materialized or op.name not in INLINE_OPS:
            return 0
        if op.name in _FREE:
            return 0
        if depth > 8:
            return _INF
        if op.name in VIEW_OPS:
            return self.cost(op.operands[0], depth + 1)
        if op.name in _CHEAP:
            return 1 + sum(self.cost(o, depth + 1) for o in op.operands)
        return _INF

    def _eval_sites(self, v: Value, out: list) -> None:
        """The ops where the elements of inline value v are computed: its materializing
        consumers, through chains of inline consumers."""
        for c in self.uses.get(v, []):
            if c.results and self.is_inline(c.results[0]):
                self._eval_sites(c.results[0], out)
            else:
                out.append(c)

    def may_alias(self, a: Value, b: Value) -> bool:
        return a is b or (a in self.params and b in self.params)

    def _load_hazard(self, load: Op) -> bool:
        tensor = load.operands[0]
        block = load.parent
        sites: list[Op] = []
        self._eval_sites(load.results[0], sites)
        positions = [block.ops.index(ancestor_in(self.joint.get(s, (s,))[-1], block))
                     for s in sites]
        start = block.ops.index(load)
        for op in block.ops[start + 1:max(positions, default=start) + 1]:
            for inner in op.walk():
                if inner.name in ("store", "atomic_add") and \
                        self.may_alias(memory_operands(inner)[0], tensor):
                    return True
        return False

