"""Stores of one shape emitted in one loop (every backend's plan), so a value that only
they read needs no register array or buffer.

A value read by two stores (SiLU's backward writes d_gate and d_up, both from sigmoid(gate))
is materialized by the plan: each store has its own loop, so without a copy the value would
be computed twice. Materialized whole tiles are register arrays of up to 32 elements a
thread on GPUs (three of them took the SiLU backward to 137 registers, 12 warps an SM) and
buffers on the CPU (a pass of their own over the tile). Emitting the
stores of a block that share such values as one loop, each element's work for all of them
in one iteration, computes a shared value once per element as a local: nothing is held
across the tile.

The group is emitted where its last store stands, so the earlier stores move later. That
is safe when nothing else in the kernel touches the stored tensors (fusec's own outputs:
every torch region) -- except loads that run before the first store of the group (a load
a store of the group reads is then materialized: loaded whole before any store, as tile
semantics has it). Loads evaluated in the loop are checked by the plan's store hazard
against every store up to the group's last (plan.py's _load_hazard).
"""
from __future__ import annotations

from ..ir.core import Block, Op, Value
from ..ir.ops import memory_operands
from .carried import VIEW_OPS, rank

_MEMORY = ("load", "store", "atomic_add")


def joint_groups(plan) -> dict[Op, tuple[Op, ...]]:
    """{store: its group (stores of one block and value shape, in program order)} for the
    groups with values only they read (one store reading a value twice, x * sigmoid(x),
    is a group of one); un-materializes those values (and materializes the loads that must
    run before the group's stores) in `plan`."""
    joint: dict[Op, tuple[Op, ...]] = {}
    for block in _blocks(plan.kernel):
        by_shape: dict[tuple, list[Op]] = {}
        for op in block.ops:
            if op.name == "store" and rank(memory_operands(op)[2]):
                by_shape.setdefault(tuple(memory_operands(op)[2].type.shape), []).append(op)
        # a dot's epilogue stores walk its accumulator's fragment layout (CUDA C) and the
        # others the strided mapping: not one loop, so a shared value would be computed
        # once per store; beside a dot only single stores are grouped (a value read twice
        # in one store's expression)
        with_dot = any(o.name == "dot" for op in block.ops for o in op.walk())
        for shape, stores in by_shape.items():
            group = _distinct_tensors(plan, stores)
            if with_dot and len(group) > 1:
                continue
            if group and _join(plan, block, shape, group):
                for s in group:
                    joint[s] = group
    return joint


def stores_at(plan, op: Op) -> tuple[Op, ...]:
    """The stores a backend emits where store `op` stands: its whole joint group at the
    group's last store, none at the group's other stores, `op` alone outside any group."""
    group = plan.joint.get(op, (op,))
    return group if op is group[-1] else ()


def group_body(plan, op: Op, body_of):
    """What a backend's loop runs per index where store `op` stands: the bodies
    `body_of(s)` of every store stores_at gives, one after the other; None where there is
    none (the store is emitted with its group's last)."""
    bodies = [body_of(s) for s in stores_at(plan, op)]
    if not bodies:
        return None

    def body(index):
        for one in bodies:
            one(index)
    return body


def ancestor_in(op: Op, block: Block) -> Op:
    """The op of `block` that is `op` or holds it in a nested region."""
    while op.parent is not block:
        op = op.parent.parent
    return op


def _blocks(kernel: Op):
    for op in kernel.walk():
        yield from op.regions


def _distinct_tensors(plan, stores: list[Op]) -> tuple[Op, ...]:
    """The stores whose tensor may alias no other's (two parts of one concat stay apart:
    the order of their elements' writes would change)."""
    tensors = [memory_operands(s)[0] for s in stores]
    return tuple(s for s, t in zip(stores, tensors)
                 if sum(plan.may_alias(t, u) for u in tensors) == 1)


def _join(plan, block: Block, shape: tuple, group: tuple[Op, ...]) -> bool:
    shared = {v for v in plan.materialized
              if v.op is not None and v.op.parent is block and v.op.name not in VIEW_OPS
              and tuple(v.type.shape) == shape}
    plan.materialized -= shared
    changed = True
    while changed:                  # a value kept materialized ends its producers' paths
        changed = False
        for v in list(shared):
            if not _only_read_by(plan, v, group):
                shared.discard(v)
                plan.materialized.add(v)
                changed = True
    forced = _loads_first(plan, block, group) if shared else None
    if forced is None:
        plan.materialized |= shared
        return False
    plan.materialized |= forced
    return True


def _only_read_by(plan, v: Value, group: tuple[Op, ...]) -> bool:
    """Whether every element of v is computed, at its own index, in the stores of group."""
    for c in plan.uses.get(v, []):
        if c.name in VIEW_OPS:
            return False
        if c.results and plan.is_inline(c.results[0]):
            if not _only_read_by(plan, c.results[0], group):
                return False
        elif c not in group:
            return False
    return True


def _loads_first(plan, block: Block, group: tuple[Op, ...]) -> set[Value] | None:
    """The loads to materialize so that every read of a stored tensor runs before the
    group's first store; None when some access cannot (the group is not joined)."""
    tensors = [memory_operands(s)[0] for s in group]
    first = block.ops.index(group[0])
    forced: set[Value] = set()
    for op in plan.kernel.walk():
        if op.name not in _MEMORY or op in group or not any(
                plan.may_alias(memory_operands(op)[0], t) for t in tensors):
            continue
        if op.name != "load" or op.parent is not block or block.ops.index(op) > first:
            return None
        v = op.results[0]
        if v in plan.materialized or not rank(v):
            continue
        sites: list[Op] = []
        plan._eval_sites(v, sites)
        if any(s in group for s in sites):
            forced.add(v)               # loaded whole before the stores
        elif any(block.ops.index(ancestor_in(s, block)) > first for s in sites):
            return None
    return forced
