"""loop-fuse: two adjacent parallel tile-loop nests over the same iteration space (same
extents and blocks, level by level) become one launch when the second reads what the first
wrote only where the same program wrote it: a load of a tensor the first nest stores, at the
same index tiles, takes the stored value (it stays in registers), and a kernel-local tensor
(an alloc the kernel does not return) that nothing reads any more is not written at all.

Refused (the nests stay two launches) when the second nest reads a tensor the first writes
anywhere else (another program's elements: a global barrier between them), writes what the
first reads or writes, or either uses atomics or stores inside nested control flow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import sympy

from ..ir import Module, Op, erase, replace_all_uses
from ..ir.ops import PURE
from ..ir.symbolic import is_zero
from .cse import CommonSubexpressionElimination


@dataclass
class LoopFusion:
    name: ClassVar[str] = "loop-fuse"

    def run(self, module: Module) -> None:
        for kernel in module.ops:
            while _fuse_first_pair(kernel, module):
                pass


def _nest(op: Op) -> list[Op] | None:
    """The parallel tile_for ops of a nest, outermost first (each body holding pure ops,
    one inner parallel loop and its yield), or None when op does not start one."""
    if op.name != "tile_for" or not op.attrs.get("parallel"):
        return None
    loops = [op]
    while True:
        inner = [o for o in loops[-1].regions[0].ops
                 if o.name == "tile_for" and o.attrs.get("parallel")]
        if not inner:
            return loops
        others = [o for o in loops[-1].regions[0].ops
                  if o is not inner[0] and o.name not in PURE and o.name != "yield"]
        if len(inner) > 1 or others:
            return None
        loops.append(inner[0])


def _same_space(a: list[Op], b: list[Op]) -> bool:
    return len(a) == len(b) and all(
        x.attrs["block"] == y.attrs["block"]
        and is_zero(sympy.sympify(x.attrs["extent"]) - sympy.sympify(y.attrs["extent"]))
        for x, y in zip(a, b))


def _memory(loops: list[Op]):
    """(stores at the top of the innermost body, loads anywhere, whether it is simple:
    no atomics and no stores in nested control flow)."""
    body = loops[-1].regions[0]
    top_stores = [op for op in body.ops if op.name == "store"]
    stores, loads, simple = [], [], True
    for op in loops[0].walk():
        if op.name == "store":
            stores.append(op)
        elif op.name == "load":
            loads.append(op)
        elif op.name == "atomic_add":
            simple = False
    return top_stores, loads, simple and len(stores) == len(top_stores)


def _fuse_first_pair(kernel: Op, module: Module) -> bool:
    ops = kernel.regions[0].ops
    for i, first in enumerate(ops):
        a = _nest(first)
        if a is None:
            continue
        j = i + 1
        while j < len(ops) and ops[j].name in PURE and not ops[j].regions:
            j += 1                         # scalar ops between the nests
        b = _nest(ops[j]) if j < len(ops) else None
        if b is None or not _same_space(a, b) or not _legal(a, b):
            continue
        for op in ops[i + 1:j]:            # they may be used by the second nest
            kernel.regions[0].ops.remove(op)
            kernel.regions[0].insert(kernel.regions[0].ops.index(first), op)
        _merge(a, b)
        CommonSubexpressionElimination().run(module)   # equal index tiles become one value
        _forward(kernel, a)
        return True
    return False


def _legal(a: list[Op], b: list[Op]) -> bool:
    stores_a, loads_a, simple_a = _memory(a)
    stores_b, loads_b, simple_b = _memory(b)
    if not (simple_a and simple_b):
        return False
    written_a = {s.operands[0] for s in stores_a}
    if {s.operands[0] for s in stores_b} & (written_a | {ld.operands[0] for ld in loads_a}):
        return False
    if any(len([s for s in stores_a if s.operands[0] is t]) != 1 for t in written_a):
        return False
    # every read of what the first nest writes must be of the same program's elements
    handles = {lb.regions[0].args[0]: la.regions[0].args[0] for la, lb in zip(a, b)}
    store_of = {s.operands[0]: s for s in stores_a}
    for ld in loads_b:
        st = store_of.get(ld.operands[0])
        if st is None:
            continue
        rank = ld.operands[0].type.rank
        if ld.attrs.get("mask") or ld.attrs.get("other") or ld.parent is not b[-1].regions[0] \
                or not all(_same_tree(u, v, handles) for u, v in
                           zip(ld.operands[1:1 + rank], st.operands[1:1 + rank])):
            return False
    return True


def _same_tree(u, v, handles: dict) -> bool:
    """Whether index value u (of the second nest) computes what v (of the first) does."""
    if u is v or handles.get(u) is v:
        return True
    pu, pv = u.op, v.op
    if pu is None or pv is None or pu.name != pv.name or pu.regions or pv.regions \
            or pu.attrs != pv.attrs or u.type != v.type or u.index != v.index \
            or len(pu.operands) != len(pv.operands):
        return False
    return all(_same_tree(x, y, handles) for x, y in zip(pu.operands, pv.operands))


def _merge(a: list[Op], b: list[Op]) -> None:
    """b's ops go into a's innermost body (before its yield), b's handles become a's."""
    target = a[-1].regions[0]
    for la, lb in zip(a, b):
        replace_all_uses(lb, lb.regions[0].args[0], la.regions[0].args[0])
    moved = []
    for lb in b:
        for op in list(lb.regions[0].ops):
            if op.name == "yield" or (op.name == "tile_for" and op in b):
                continue
            moved.append(op)
    for op in moved:
        op.parent.ops.remove(op)
        target.insert(len(target.ops) - 1, op)
    erase(b[0])


def _forward(kernel: Op, a: list[Op]) -> None:
    body = a[-1].regions[0]
    stores = {op.operands[0]: op for op in body.ops if op.name == "store"}
    for op in list(body.ops):
        st = stores.get(op.operands[0]) if op.name == "load" else None
        if st is None or body.ops.index(st) > body.ops.index(op):
            continue
        rank = op.operands[0].type.rank
        if op.operands[1:1 + rank] != st.operands[1:1 + rank]:
            continue                       # CSE left them apart: read back from memory
        value = st.operands[1 + rank]
        if value.type == op.results[0].type:
            replace_all_uses(kernel, op.results[0], value)
            erase(op)
    returned = set(kernel.regions[0].terminator.operands)
    users = {v for o in kernel.walk() for v in o.operands if o.name != "store"}
    for tensor, st in stores.items():
        local = tensor.op is not None and tensor.op.name == "alloc" and tensor not in returned
        if local and tensor not in users and not any(
                o.operands[0] is tensor for o in kernel.walk()
                if o.name == "store" and o is not st):
            erase(st)
            erase(tensor.op)
