"""Structured loops in LLVM IR: a top-tested loop with carried values (phis), and loop
nests over static tile shapes.

Tile-element loops count with i32 induction variables and `nsw nuw` increments, the form
C compilers produce: scalar evolution then sees `sext(begin + i)` as an affine i64 address
and the loop vectorizer emits consecutive (SIMD) loads and stores.
"""
from __future__ import annotations

from typing import Callable, Sequence

import llvmlite.ir as ir

from .context import Ctx
from .types import I32


# the metadata kind marking a loop the loop vectorizer must leave alone: a placeholder the
# CPU backend rewrites into `llvm.loop` metadata (cpu.py; a loop ID must refer to itself,
# which llvmlite's metadata cannot)
NO_VECTORIZE = "fusec.no_vectorize"


def loop(ctx: Ctx, init, cond: Callable, step: Callable, carried: Sequence[ir.Value],
         body: Callable, name: str = "loop", vectorize: bool = True) -> list[ir.Value]:
    """while cond(iv): carried = body(iv, carried); iv = step(iv). Returns the final carried
    values (usable after the loop). vectorize=False: the loop vectorizer leaves it alone
    (NO_VECTORIZE)."""
    b = ctx.b
    fn = b.function
    pre = b.block
    header = fn.append_basic_block(f"{name}.head")
    body_bb = fn.append_basic_block(f"{name}.body")
    exit_bb = fn.append_basic_block(f"{name}.exit")
    b.branch(header)
    b.position_at_end(header)
    iv = b.phi(init.type, name=f"{name}.iv")
    phis = [b.phi(v.type) for v in carried]
    b.cbranch(cond(iv), body_bb, exit_bb)
    b.position_at_end(body_bb)
    ctx.scope += 1
    new = list(body(iv, phis))
    nxt = step(iv)
    ctx.scope -= 1
    latch = b.block
    back = b.branch(header)
    if not vectorize:
        back.set_metadata(NO_VECTORIZE, b.module.add_metadata([]))
    iv.add_incoming(init, pre)
    iv.add_incoming(nxt, latch)
    for phi, v0, v1 in zip(phis, carried, new):
        phi.add_incoming(v0, pre)
        phi.add_incoming(v1, latch)
    b.position_at_end(exit_bb)
    return phis


def branch(ctx: Ctx, cond: ir.Value | None, then: Callable[[], object],
           others: Sequence[ir.Value] = ()) -> list[ir.Value]:
    """then() where cond holds (None: always). With `others`, then() returns one value per
    entry and each result is merged with its entry, the value where cond is false."""
    if cond is None:
        got = then()
        return list(got) if others else []
    b = ctx.b
    fn = b.function
    pre = b.block
    on = fn.append_basic_block("lane.on")
    merge = fn.append_basic_block("lane.merge")
    b.cbranch(cond, on, merge)
    b.position_at_end(on)
    ctx.scope += 1
    got = then()
    ctx.scope -= 1
    on_end = b.block
    b.branch(merge)
    b.position_at_end(merge)
    out = []
    for v, other in zip(got if others else (), others):
        phi = b.phi(other.type)
        phi.add_incoming(v, on_end)
        phi.add_incoming(other, pre)
        out.append(phi)
    return out


def counted(ctx: Ctx, n: int, body: Callable[[ir.Value, list], list],
            carried: Sequence[ir.Value] = (), name: str = "i",
            vectorize: bool = True) -> list[ir.Value]:
    """for i in range(n) (static n >= 1), i32 induction variable."""
    b = ctx.b
    return loop(ctx, ir.Constant(I32, 0),
                lambda iv: b.icmp_signed("<", iv, ir.Constant(I32, n)),
                lambda iv: b.add(iv, ir.Constant(I32, 1), flags=("nuw", "nsw")),
                carried, body, name, vectorize)


def nest(ctx: Ctx, shape: Sequence[int], body: Callable[[tuple], None],
         name: str = "t") -> None:
    """Call body(idx) for every index of a static shape, last dim innermost. Dims of size 1
    get the constant index 0 and no loop; idx entries are i32 values or Python ints."""
    def level(d: int, idx: tuple):
        if d == len(shape):
            body(idx)
            return
        if shape[d] == 1:
            level(d + 1, idx + (0,))
            return

        def inner(iv, _):
            level(d + 1, idx + (iv,))
            return []
        counted(ctx, shape[d], inner, name=f"{name}{d}")
    level(0, ())
