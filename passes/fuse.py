"""fuse: put the kernel's whole-tensor ops into fusion groups, each to become one launch.

Greedy in program order: every op starts a group, and the groups producing its operands are
merged into it (vertical fusion: elementwise into elementwise, into reductions, reductions
into the elementwise ops that broadcast their result back -- softmax, layernorm, rmsnorm are
one group each). Groups that read the same tensor over the same iteration space are then
merged too (horizontal fusion: x * 2 and x.sum(axis=1) from one pass over x). A value crossing
groups is written to memory by its group and read back by the other (the tile pass does it),
unless it is an elementwise chain of params cheaper to compute again in the group reading it
(passes/fuse_recompute.py; before the horizontal merges, which it can enable); a float value
its reader only rounds to a narrower float crosses as that rounding.

Casts, broadcasts and expand_dims of the kernel's params (and of constants) are free: they
cost a load, which every group that uses them does anyway. They join no group while groups
are merged (two ops sharing `x.to(float32)` are not fused for that alone), and at the end each
group that uses one gets it, a copy of its own where several do.

A merge is refused, and the reason kept in the kernel's `fusion_notes`, when
  - the ops' dims do not map onto one iteration space (a transposed use of the same data);
  - reductions over different axes (row sums and column sums of one tensor) would leave no
    axis of the merged space to run in parallel, though each side had some -- unless the
    tile pass splits the merged group and its second launch holds every reduction's
    partials in one tile (tile_split.splits_with_small_partials: the column sums of a
    small tensor, a full reduction beside a row pass over the same tensor), the first
    launch then running a program per chunk of rows;
  - it would need a global barrier: a reduction over every axis of the space (one program)
    and ops after it that run over the reduced axes (x / x.sum());
  - a reduced axis is longer than one program can hold in one tile (`max_reduce` elements),
    unless the tile pass will split the merged group in two launches (tile_split.py: the
    ops computing the reduced values run in the first, what follows the reductions in the
    second); other such reductions stay alone (the tile pass loops over them);
  - a scan would share its launch with reductions over other axes whose elements, with
    the scan's, do not fit one tile (scans are not walked in chunks);
  - a matmul would take a second matmul or a reduction (one feeding its K dimension, or one
    of its result): a matmul group is the matmul, the element ops computing its operands
    (prologue casts) and those applied to its result (bias, activation, residual, scaling);
  - it would reorder memory effects: a write of a tensor another op reads or writes lies
    between the ops, or the group's values are already read by another group placed earlier
    (unless the merged group's later ops, and what they need, can move up before that
    reader's first read: BatchNorm's running-statistics updates after the variance);
  - an indexed view (reshape, slice) would be in the group that computes its operand: it
    reads the operand from memory at computed indices, so the operand is written by its own
    launch first (the view itself rides in its consumers' group; a chain of views, and a
    view of a param, need no extra launch).
Each op gets `group = k` (groups numbered in the order their launches run).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..ir import Module, Op, TensorType, erase
from ..ir.ops import INDEXED_VIEWS
from ..ir.symbolic import hinted_value, next_pow2
from .fuse_recompute import (narrow_crossing_values, recompute_cheap_values,
                             write_where_computed)
from .tensor_graph import Axes, NotOneSpace, chain_sources, in_memory, whole_tensor_ops
from .tile_split import MAX_WHOLE_REDUCTION, splits_with_small_partials, would_split


def reads(op: Op) -> set:
    if op.name == "write":
        return {op.operands[1]} if in_memory(op.operands[1]) else set()
    return {v for v in op.operands if in_memory(v)}


def writes(op: Op) -> set:
    return {op.operands[0]} if op.name == "write" else set()


def effects(op: Op) -> tuple[set, set]:
    """(tensors read, tensors written) by a top-level op, loops included."""
    if op.name == "write" or not op.regions:
        return reads(op), writes(op)
    r, w = set(), set()
    for inner in op.walk():
        if inner.name == "load":
            r.add(inner.operands[0])
        elif inner.name in ("store", "atomic_add"):
            w.add(inner.operands[0])
    return r, w


def _all_effects(ops) -> tuple[set, set]:
    """(tensors read, tensors written) by any of ops."""
    r, w = set(), set()
    for op in ops:
        a, b = effects(op)
        r |= a
        w |= b
    return r, w


@dataclass
class Fuse:
    name: ClassVar[str] = "fuse"
    max_reduce: int = 16384       # elements of a reduced axis one program holds in a tile
    hints: dict | None = None     # size symbol -> value (else the kernel's `hints` attr)

    def run(self, module: Module) -> None:
        for kernel in module.ops:
            self.run_on(kernel)

    def run_on(self, kernel: Op) -> None:
        _Fuser(kernel, self).run()


class _Fuser:
    def __init__(self, kernel: Op, options: Fuse):
        self.kernel = kernel
        self.body = kernel.regions[0]
        self.max_reduce = options.max_reduce
        hints = options.hints if options.hints is not None else dict(kernel.attrs.get("hints",
                                                                                    []))
        self.hints = hints
        self.position = {op: i for i, op in enumerate(self.body.ops)}
        self.group: dict[Op, int] = {}
        self.members: dict[int, list[Op]] = {}
        self.notes: list[str] = []
        self.producer = {r: op for op in self.body.ops for r in op.results}

    def run(self):
        ops = whole_tensor_ops(self.kernel)
        if not ops or all("group" in op.attrs for op in ops):
            return                 # none, or fused already (a second run changes nothing)
        self.free = _free_ops(ops)
        for gid, op in enumerate(ops):
            if op in self.free:
                continue
            self.group[op] = gid
            self.members[gid] = [op]
            self._merge_producers(op)
        if recompute_cheap_values(self, {v for op in ops for v in writes(op)}):
            for op in ops:                # a recomputed value no longer ties its readers
                if op in self.group:
                    self._merge_producers(op, retry=True)
        narrow_crossing_values(self)
        write_where_computed(self)
        self._horizontal()
        self._place_free_ops(len(ops))
        self._number()

    # -- merging ---------------------------------------------------------------------------
    def _merge_producers(self, op: Op, retry: bool = False) -> None:
        """Vertical fusion: the groups computing op's operands merged into op's."""
        for v in op.operands:
            p = self.producer.get(v)
            if p is None or p not in self.group or self.group[p] == self.group[op]:
                continue
            what = f"{_name(p)} -> {_name(op)}"
            if retry:
                if self._try_merge(self.group[p], self.group[op], what, note=False):
                    self.notes = [n for n in self.notes if not n.startswith(
                        f"not fused: {what}:")]
            else:
                self._try_merge(self.group[p], self.group[op], what)

    def _try_merge(self, g1: int, g2: int, what: str, note: bool = True) -> bool:
        merged = sorted(self.members[g1] + self.members[g2], key=self.position.get)
        reason = self._refusal(g1, g2, merged)
        if reason is not None:
            if note:
                self.notes.append(f"not fused: {what}: {reason}")
            return False
        for op in self.members.pop(g1):
            self.group[op] = g2
        self.members[g2] = merged
        return True

    def _refusal(self, g1: int, g2: int, merged: list[Op]) -> str | None:
        reason = self._view_of_member(merged)
        if reason is not None:
            return reason
        try:
            axes = Axes(merged)
        except NotOneSpace as exc:
            return str(exc)
        reason = _cross_product(merged, axes)
        if reason is not None:
            return reason
        dots = [op for op in merged if op.name == "dot"]
        if dots:
            reason = _matmul_refusal(dots, merged)
            if reason is not None:
                return reason
        k_axes = {axes.of[op.operands[0]][-1] for op in dots}   # a matmul walks K in chunks
        too_long = [k for k in axes.reduced if k not in k_axes and (
            (n := hinted_value(axes.extent(k), self.hints)) is None or n > self.max_reduce)]
        if too_long and not would_split(merged, axes, self.hints):
            return (f"the reduced axis of size {axes.extent(too_long[0])} does not fit one "
                    f"tile (> {self.max_reduce} elements); the reduction is tiled on its own")
        reason = self._scan_refusal(merged, axes)
        if reason is not None:
            return reason
        if not axes.parallel and not splits_with_small_partials(merged, axes, self.hints):
            if all(self._has_parallel_axes(g) for g in (g1, g2)):
                return ("reductions over different axes would leave no axis to run in "
                        "parallel (each side has some)")
            if _runs_after_full_reduction(merged, axes):
                return ("it would need a global barrier: the reduction covers every axis and "
                        "ops after it run over them")
        return self._reordering(g1, g2, merged)

    def _scan_refusal(self, merged: list[Op], axes: Axes) -> str | None:
        """A scan holds the group's reduced axes whole in every program (it is not walked in
        chunks): they must fit one tile together."""
        if not any(op.name == "scan" for op in merged) or len(axes.reduced) < 2:
            return None
        sizes = [hinted_value(axes.extent(k), self.hints) for k in axes.reduced]
        if None in sizes or math.prod(map(next_pow2, sizes)) > MAX_WHOLE_REDUCTION:
            return (f"a scan holds every reduced axis of its launch whole, and "
                    f"{' x '.join(str(axes.extent(k)) for k in axes.reduced)} elements do not "
                    f"fit one tile (> {MAX_WHOLE_REDUCTION})")
        return None

    def _view_of_member(self, merged: list[Op]) -> str | None:
        inside = set(merged)
        for op in merged:
            if op.name not in INDEXED_VIEWS:
                continue
            for operand in op.operands:
                for source in map(self.producer.get, chain_sources([operand], inside)):
                    if source in inside:
                        read = self.producer.get(operand)
                        why = "" if read is source else (
                            f" ({_name(source)} is not computed at the view's indices)")
                        return (f"{op.name} reads its operand from memory at computed "
                                f"indices; {_name(read)} is written by a launch of its own "
                                f"first{why}")
        return None

    def _has_parallel_axes(self, g: int) -> bool:
        try:
            return bool(Axes(self.members[g]).parallel)
        except NotOneSpace:
            return True

    def _reordering(self, g1: int, g2: int, merged: list[Op]) -> str | None:
        """The merged group runs where its last op is: nothing between its first and last
        op may write what it reads or touch what it writes, and no other group may already
        read its values."""
        inside = set(merged)
        r, w = _all_effects(merged)
        lo, hi = self.position[merged[0]], self.position[merged[-1]]
        for op in self.body.ops[lo:hi]:
            if op in inside:
                continue
            a, b = effects(op)
            if b & (r | w) or a & w:
                return f"{_name(op)} between them reads or writes the same tensors"
        reader = self._earlier_reader(g1, g2, merged)
        if reader is not None and self._hoist(merged, inside):
            merged.sort(key=self.position.get)
            return self._reordering(g1, g2, merged)
        if reader is not None:
            return f"{_name(reader)} (another launch, earlier) already reads its values"
        return None

    def _last(self, gid: int) -> int:
        return max(self.position[op] for op in self.members[gid])

    def _earlier_reader(self, g1: int, g2: int, merged: list[Op]) -> Op | None:
        """An op of another group reading the merged group's values, where that group runs
        (at its last op) before the merged one would."""
        results = {res for op in merged for res in op.results}
        end = self.position[merged[-1]]
        for op, gid in self.group.items():
            if gid not in (g1, g2) and any(v in results for v in op.operands) and \
                    self._last(gid) < end:
                return op
        return None

    def _hoist(self, merged: list[Op], inside: set) -> bool:
        """Move the merged group's ops placed after the first op of another group that reads
        its values (and what they need from there on) up before that op, so that the group
        runs first: BatchNorm's running-mean update, written after the variance that reads
        the mean, joins the launch finishing the mean. Only where nothing they pass over
        touches their memory and every value they read is computed by then; returns whether
        it moved them."""
        results = {res for op in merged for res in op.results}
        readers = [op for op, gid in self.group.items()
                   if op not in inside and any(v in results for v in op.operands)]
        start = min(self.position[op] for op in readers)
        move, todo = set(), [op for op in merged if self.position[op] > start]
        while todo:
            op = todo.pop()
            if op in move:
                continue
            move.add(op)
            gid = self.group.get(op)
            if gid is not None and op not in inside:    # another group's op moves: all of it
                members = self.members[gid]
                if any(self.position[m] < start or any(v in results for v in m.operands)
                       for m in members):
                    return False
                todo += members
            for v in op.operands:
                p = self.producer.get(v)
                if p is None:
                    continue
                if self.position[p] >= start:
                    todo.append(p)
                elif p in self.group and p not in inside and \
                        self._last(self.group[p]) >= start:
                    return False              # a group that runs after the new place
        if not move:
            return False
        end = max(self.position[op] for op in move)
        stay = [op for op in self.body.ops[start:end] if op not in move]
        r, w = _all_effects(move)
        for op in stay:
            a, b = effects(op)
            if b & (r | w) or a & w:
                return False
        ops = self.body.ops
        ops[start:end + 1] = [op for op in ops[start:end + 1] if op in move] + stay
        self.position = {o: i for i, o in enumerate(ops)}
        return True

    def _horizontal(self):
        """Groups reading a common tensor over the same iteration space: one pass over it;
        and siblings, groups reading values of one other group (its column sums), or groups
        reducing the same axes of one domain: one launch for them."""
        gids = list(self.members)
        for i, g1 in enumerate(gids):
            for g2 in gids[i + 1:]:
                if g1 not in self.members or g2 not in self.members:
                    continue
                try:
                    a, b = Axes(self.members[g1]), Axes(self.members[g2])
                except NotOneSpace:
                    continue
                # reducing the same axes of one domain (two column sums): one launch and one
                # split for both, though they read nothing in common
                alike = bool(a.reduced) and a.reduced == b.reduced and \
                    len(a.domain) == len(b.domain) and \
                    all(map(a.same_size, a.domain, b.domain))
                shared = (self._reads(g1) & self._reads(g2)) or (
                    self._sources(g1) & self._sources(g2)) or alike
                if shared and (_same_space(a, b) or self._rides_split(g1, g2, a, b)) and \
                        self._lines_up(g1, g2, a, b):
                    self._try_merge(g1, g2, f"group of {_name(self.members[g1][-1])} and group "
                                            f"of {_name(self.members[g2][-1])}")

    def _rides_split(self, g1: int, g2: int, a: Axes, b: Axes) -> bool:
        """A full reduction (no axis left in parallel) beside a pass reducing some of its
        axes over the same tensor (`(idx > 0).all()` beside the row sums of idx): one
        launch when the tile pass splits them, the full reduction in chunk partials."""
        full, other = (a, b) if not a.parallel else (b, a)
        if full.parallel or not full.reduced or len(a.domain) != len(b.domain) or \
                not set(other.reduced) <= set(full.reduced):
            return False
        merged = sorted(self.members[g1] + self.members[g2], key=self.position.get)
        try:
            axes = Axes(merged)
        except NotOneSpace:
            return False
        return not axes.parallel and splits_with_small_partials(merged, axes, self.hints)

    def _lines_up(self, g1: int, g2: int, a: Axes, b: Axes) -> bool:
        """Joined, the groups' axes are those of one of them: what they share maps every
        axis (a row vector both read does not line up their columns; one launch over the
        product of both spaces is no horizontal fusion)."""
        try:
            joined = Axes(self.members[g1] + self.members[g2])
        except NotOneSpace:
            return False
        return len(joined.domain) <= max(len(a.domain), len(b.domain))

    def _sources(self, g: int) -> set:
        """The other groups whose values group g reads."""
        found = set()
        for op in self.members[g]:
            for v in op.operands:
                p = self.producer.get(v)
                if p is not None and p in self.group and self.group[p] != g:
                    found.add(self.group[p])
        return found

    def _reads(self, g: int) -> set:
        """What a group reads over its own iteration space (a view's operand is read at
        other indices: no common pass over it), the params its free ops read included."""
        found = set()
        for op in self.members[g]:
            if op.name in INDEXED_VIEWS:
                continue
            found |= reads(op)
            todo = [self.producer.get(v) for v in op.operands]
            while todo:
                p = todo.pop()
                if p in self.free:
                    found |= reads(p)
                    todo += [self.producer.get(v) for v in p.operands]
        return found

    # -- free ops ---------------------------------------------------------------------------
    def _place_free_ops(self, next_gid: int) -> None:
        """Each free op goes into the groups of its users, copied for every group but the
        first; last ops first, so that a free op's users (free ones too) are placed."""
        for op in reversed([op for op in self.body.ops if op in self.free]):
            users = [u for u in self.body.ops if op.result in u.operands]
            if not users:
                erase(op)                   # pure, and nothing reads it
                continue
            if any(u not in self.group for u in users):   # read from memory by a tile loop
                self.group[op] = next_gid
                self.members[next_gid] = [op]
                next_gid += 1
                continue
            gids = list(dict.fromkeys(self.group[u] for u in users))
            misfit = next(filter(None, (self._misfit(op, g) for g in gids)), None)
            if misfit is not None:          # its own launch, read from memory by its users
                self.notes.append(f"not fused: {_name(op)}: {misfit}")
                self.group[op] = next_gid
                self.members[next_gid] = [op]
                next_gid += 1
                continue
            self._join(op, gids[0])
            if len(gids) == 1:
                continue
            at = self.body.ops.index(op)
            for gid in gids[1:]:
                copy = Op(op.name, op.operands, [op.result.type], dict(op.attrs), loc=op.loc)
                copy.results[0].name = op.result.name
                self.body.insert(at + 1, copy)
                for u in users:
                    if self.group[u] == gid:
                        u.operands = [copy.result if v is op.result else v for v in u.operands]
                self._join(copy, gid)
            self.position = {o: i for i, o in enumerate(self.body.ops)}
        for gid, ops in self.members.items():
            ops.sort(key=self.position.get)

    def _misfit(self, op: Op, gid: int) -> str | None:
        """Why free op `op` cannot join group gid (a batched matmul's group takes values
        whose batch dims come first only), or None."""
        if not any(o.name == "dot" and o.results[0].type.rank > 2 for o in self.members[gid]):
            return None                 # any other group takes it (_free_ops)
        try:
            Axes(sorted(self.members[gid] + [op], key=self.position.get))
        except NotOneSpace as exc:
            return str(exc)
        return None

    def _join(self, op: Op, gid: int) -> None:
        self.group[op] = gid
        self.members[gid].append(op)

    def _number(self):
        """Groups numbered by where they run (their last op)."""
        order = sorted(self.members, key=lambda g: self.position[self.members[g][-1]])
        for k, g in enumerate(order):
            for op in self.members[g]:
                op.attrs["group"] = k
        if self.notes:
            self.kernel.attrs["fusion_notes"] = list(self.notes)


def _same_space(a: Axes, b: Axes) -> bool:
    """Same rank and reductions that agree (or none on one side: an elementwise pass rides
    along with a reduction's rows); _refusal checks the rest."""
    return len(a.domain) == len(b.domain) and (
        not a.reduced or not b.reduced or a.reduced == b.reduced)


FREE_OPS = ("cast", "broadcast", "expand_dims", "iota")


def _free_ops(ops: list[Op]) -> set:
    """Casts, broadcasts and expand_dims of params no op writes, of constants, and of each
    other, and index ranges (iota): what a group can recompute for the cost of a load."""
    written = {v for op in ops for v in writes(op)}
    free: set = set()
    for op in ops:
        if op.name in FREE_OPS and len(op.results) == 1 and all(
                (v.op is None and v not in written) if in_memory(v)
                else (v.op in free or not isinstance(v.type, TensorType))
                for v in op.operands):
            free.add(op)
    return free


def _runs_after_full_reduction(merged: list[Op], axes: Axes) -> bool:
    """An op of the group, after one of its reductions over every axis, that runs over some
    axis (x / x.sum()): only one program holds the reduction, so it would run in one program
    too. Chained reductions (sum over two axes as two reduce ops) and the keepdims reshapes
    of a reduction's result run over no axis."""
    after: set = set()
    for op in merged:
        if op.name == "reduce" or any(v in after for v in op.operands):
            after.update(op.results)
            if op.name != "reduce" and any(
                    a is not None for r in op.results for a in axes.of.get(r, ())):
                return True
    return False


def _cross_product(merged: list[Op], axes: Axes) -> str | None:
    """One launch runs every op over all of its parallel axes: some value of the group must
    vary along each of them, or an op would be recomputed (and its result stored again)
    once per element of axes it does not vary along -- a max pool's 112 x 112 windows
    beside the 224 x 224 relu mask it came from made one launch of 112 x 112 x 224 x 224."""
    wide = {k for k in axes.parallel if axes.extent(k) != 1}
    if any(wide <= set(axes.of[v]) for op in merged for v in (*op.operands, *op.results)
           if v in axes.of):
        return None
    return ("no value varies along every parallel axis of the two together: one launch "
            "would run each side once per element of the other's")


def _matmul_refusal(dots: list[Op], merged: list[Op]) -> str | None:
    """A matmul group walks K in chunks with the [BM, BN] accumulator in registers: it takes
    prologue element ops of its operands and epilogue element ops of its result, not a
    second matmul or a reduction."""
    if len(dots) > 1:
        return "two matmuls in one launch (each walks its own K); the second is not fused"
    reduces = [op for op in merged if op.name in ("reduce", "scan")]
    if not reduces:
        return None
    upstream = _ancestors(dots[0])
    if any(op in upstream for op in reduces):
        return ("a reduction feeding a matmul: the matmul walks K in chunks while the "
                "reduction needs all of its extent first")
    return "a reduction of a matmul's result is not fused into the matmul yet"


def _ancestors(op: Op) -> set:
    seen, todo = set(), [v.op for v in op.operands if v.op is not None]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += [v.op for v in p.operands if v.op is not None]
    return seen


def _name(op: Op) -> str:
    if op.results and op.results[0].name:
        return f"%{op.results[0].name} ({op.name} at line {op.loc.line})"
    return f"{op.name} at line {op.loc.line}"


__all__ = ["Fuse", "effects"]
