"""The IR's data structures: SSA values, ops with nested single-block regions, modules.

One compact node type (`Op`) for every operation; what an op means is given by its name and
the table in `ops.py`. Every op carries the source location it came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from .types import Type


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_LOC = Loc("<unknown>", 0, 0)


class Value:
    """An SSA value: the result of an op or an argument of a block."""
    __slots__ = ("type", "owner", "index", "name")

    def __init__(self, type: Type, owner: "Op | Block", index: int, name: str | None = None):
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name

    @property
    def op(self) -> "Op | None":
        """The op that defines this value (None for block arguments)."""
        return self.owner if isinstance(self.owner, Op) else None

    def __repr__(self) -> str:
        return f"<Value {self.name or '?'}: {self.type}>"


class Block:
    """The single block of a region: arguments and a list of ops, the last one a terminator."""

    def __init__(self, arg_types: list[Type] = (), arg_names: list[str | None] | None = None):
        names = list(arg_names) if arg_names is not None else [None] * len(arg_types)
        self.args = [Value(t, self, i, n) for i, (t, n) in enumerate(zip(arg_types, names))]
        self.ops: list[Op] = []
        self.parent: Op | None = None

    def add_arg(self, type: Type, name: str | None = None) -> Value:
        v = Value(type, self, len(self.args), name)
        self.args.append(v)
        return v

    def append(self, op: "Op") -> "Op":
        op.parent = self
        self.ops.append(op)
        return op

    def insert(self, index: int, op: "Op") -> "Op":
        op.parent = self
        self.ops.insert(index, op)
        return op

    @property
    def terminator(self) -> "Op | None":
        return self.ops[-1] if self.ops else None


class Op:
    __slots__ = ("name", "operands", "results", "attrs", "regions", "loc", "parent")

    def __init__(self, name: str, operands: list[Value] = (), result_types: list[Type] = (),
                 attrs: dict[str, Any] | None = None, regions: list[Block] = (),
                 loc: Loc = UNKNOWN_LOC):
        self.name = name
        self.operands = list(operands)
        self.results = [Value(t, self, i) for i, t in enumerate(result_types)]
        self.attrs = dict(attrs or {})
        self.regions = list(regions)
        for r in self.regions:
            r.parent = self
        self.loc = loc
        self.parent: Block | None = None

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"{self.name} has {len(self.results)} results, not one")
        return self.results[0]

    def walk(self) -> Iterator["Op"]:
        """This op and every op nested in its regions, in program order (pre-order)."""
        yield self
        for region in self.regions:
            for op in list(region.ops):
                yield from op.walk()

    def __repr__(self) -> str:
        return f"<Op {self.name} at {self.loc}>"


class Module:
    """A list of top-level ops (kernels)."""

    def __init__(self, ops: list[Op] | None = None):
        self.body = Block()
        for op in ops or []:
            self.body.append(op)

    @property
    def ops(self) -> list[Op]:
        return self.body.ops

    def walk(self) -> Iterator[Op]:
        for op in list(self.body.ops):
            yield from op.walk()

    def kernel(self, name: str | None = None) -> Op:
        for op in self.ops:
            if op.name == "kernel" and (name is None or op.attrs.get("name") == name):
                return op
        raise KeyError(f"no kernel {name!r} in module")

    def __str__(self) -> str:
        from .printer import print_module
        return print_module(self)


def uses(root: Op | Module) -> dict[Value, list[Op]]:
    """Map each value to the ops (anywhere under root) that use it as an operand."""
    table: dict[Value, list[Op]] = {}
    for op in root.walk():
        for v in op.operands:
            table.setdefault(v, []).append(op)
    return table


def replace_all_uses(root: Op | Module, old: Value, new: Value) -> None:
    for op in root.walk():
        op.operands = [new if v is old else v for v in op.operands]


def erase(op: Op) -> None:
    op.parent.ops.remove(op)
    op.parent = None
