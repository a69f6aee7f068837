"""How both tile lowerings (LLVM, CUDA C) walk a kernel's ops: a block's ops in order, each
op by its rule -- an op rule (ops that loop or write memory) or an element rule (the value
of one element: computed once for a scalar, by a loop into a buffer when the plan
materializes it, else left inline for its consumers) --, the prologue of pure top-level ops
every program recomputes, and one program of a launch with its grid coordinates as tile
indices.

A lowering that mixes in `OpWalker` provides `env`, `plan`, `kernel`, `materialize(v, fn)`,
the class attributes `BACKEND` (its name in errors), `op_rules` and `elem_rules` (op name
-> rule(lowering, op[, idx])), and two hooks: `scalar_value(v, op, value)` (how a rank-0
result is held) and `tile_begin(coord, block, handle)` (a tile loop's first index from a
program coordinate).
"""
from __future__ import annotations

from ..ir.core import Block, Op, Value
from .carried import INLINE, rank


class OpWalker:
    BACKEND = ""
    op_rules: dict = {}
    elem_rules: dict = {}

    def emit_block(self, block: Block) -> list[Value]:
        """Emit a block's ops; returns its terminator's operands."""
        for op in block.ops:
            if op.name in ("yield", "return"):
                return op.operands
            self.emit_op(op)
        return []

    def emit_op(self, op: Op) -> None:
        absorbed = getattr(self, "absorbed", None)
        if absorbed and op.results and op.results[0] in absorbed:
            self.env[op.results[0]] = absorbed.pop(op.results[0])   # computed by another
            return
        rule = self.op_rules.get(op.name)
        if rule is not None:
            rule(self, op)
            return
        elem_rule = self.elem_rules.get(op.name)
        if elem_rule is None:
            raise NotImplementedError(f"{self.BACKEND} backend: op {op.name!r} (at {op.loc}) "
                                      "is not supported")
        v = op.results[0]
        if rank(v) == 0:
            self.env[v] = self.scalar_value(v, op, elem_rule(self, op, ()))
        elif v in self.plan.materialized:
            self.env[v] = self.materialize(v, lambda idx: elem_rule(self, op, idx))
        else:
            self.env[v] = INLINE

    def emit_prologue(self, launch, skip: set[int]) -> None:
        """The kernel block's ops before `launch` that every program recomputes: pure values
        (and loops/ifs that write no memory; ops of serial launches, `skip`, ran in their
        own launch). They do not depend on the program id."""
        for op in self.kernel.regions[0].ops:
            if op is launch.first:
                return
            if op.name in ("alloc", "return") or id(op) in skip or (
                    op.name == "tile_for" and op.attrs.get("parallel")):
                continue
            self.emit_op(op)

    def emit_program(self, launch, coords: list) -> None:
        """One program of a launch: the bodies of its parallel loops with the grid
        coordinates `coords` (outermost first) as tile indices; or the ops of a serial
        launch."""
        if launch.serial:
            for op in launch.ops:
                self.emit_op(op)
            return
        loops = launch.loops

        def level(k: int):
            loop = loops[k]
            body = loop.regions[0]
            self.env[body.args[0]] = self.tile_begin(coords[k], loop.attrs["block"],
                                                     body.args[0])
            for op in body.ops:
                if op.name == "yield":
                    break
                if k + 1 < len(loops) and op is loops[k + 1]:
                    level(k + 1)
                    continue
                if k + 1 < len(loops) and any(o.name == "atomic_add" for o in op.walk()):
                    raise NotImplementedError(
                        f"{self.BACKEND} backend: atomic_add (at {op.loc}) between nested "
                        "parallel tile loops would run once per program")
                self.emit_op(op)
        level(0)
