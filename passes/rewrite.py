"""The pattern driver: a table of (op names, rewrite function) applied to a fixed point.

A rewrite function gets the op and a `Rewriter` (which creates ops right before it, at its
source location) and answers one of:
  - None: the pattern does not apply;
  - a Value: it replaces the op's single result; the (pure) op is erased;
  - CHANGED: the op was updated in place.
"""
from __future__ import annotations

from typing import Any, Callable

from ..ir import Builder, Module, Op, Value, erase
from ..ir.ops import PURE
from ..ir.types import Type

CHANGED = object()
Rewrite = Callable[[Op, "Rewriter"], Any]
PatternTable = list[tuple[str | tuple[str, ...], Rewrite]]


class Rewriter:
    def __init__(self, op: Op):
        self.op = op

    def value(self, name: str, operands: list[Value], type: Type, **attrs) -> Value:
        builder = Builder(loc=self.op.loc)
        with builder.before(self.op):
            return builder.value(name, operands, type, **attrs)

    def const(self, type: Type, value) -> Value:
        return self.value("const", [], type, value=value)


def _by_op_name(patterns: PatternTable) -> dict[str, list[Rewrite]]:
    table: dict[str, list[Rewrite]] = {}
    for names, fn in patterns:
        for name in (names,) if isinstance(names, str) else names:
            table.setdefault(name, []).append(fn)
    return table


def _resolve(replaced: dict[Value, Value], v: Value) -> Value:
    while v in replaced:
        v = replaced[v]
    return v


def _sweep(root: Op | Module, table: dict[str, list[Rewrite]]) -> bool:
    """One pass over root in program order. Uses of a replaced value are redirected when
    their op is reached: SSA dominance puts every use after its definition in this order."""
    replaced: dict[Value, Value] = {}
    changed = False
    for op in root.walk():
        if replaced:
            op.operands = [_resolve(replaced, v) for v in op.operands]
        for fn in table.get(op.name, ()):
            answer = fn(op, Rewriter(op))
            if answer is None:
                continue
            changed = True
            if answer is not CHANGED:
                assert op.name in PURE and isinstance(answer, Value), (op, answer)
                if answer.name is None:
                    answer.name = op.result.name    # keep the printed name readable
                replaced[op.result] = answer
                erase(op)
            break
    return changed


def apply_to_fixed_point(root: Op | Module, patterns: PatternTable,
                         max_sweeps: int = 100) -> None:
    table = _by_op_name(patterns)
    for _ in range(max_sweeps):
        if not _sweep(root, table):
            return
    raise RuntimeError(f"rewrite patterns did not reach a fixed point in {max_sweeps} sweeps")
