"""Looped (multi-pass) reductions for the tile pass: a group whose reduced axis k is too long
for one tile walks k in chunks with sequential `tile_for` loops.

Values that vary along k are computed inside a loop, chunk by chunk, from loads; values that
do not (the reductions' results and what is computed from them) are computed between the
loops. A reduction over k accumulates its chunks in a loop-carried tile; a value that needs
a reduction's result can only be computed in a later loop, so softmax walks its row three
times (max, sum of exp, the stores), recomputing exp(x - max) from x rather than keeping a
row that does not fit. Each loop computes what it needs on demand (the emitter's `get`).

A scan along k is computed in every loop that needs it: each chunk is scanned and the carry
(the reduction of the chunks before it, loop-carried; float64 for float sums and products)
combined in. Reversed scans walk k from its end: the loop's indices along k count down
(lanes past the start masked), so the chunk's scan runs forward over its lanes; a loop
cannot hold scans of both directions.
"""
from __future__ import annotations

from ..ir import HANDLE, Block, Op, TileType
from ..ir import dtypes as D
from .tensor_graph import mapped_operands

_COMBINE = {"sum": "add", "prod": "mul", "max": "maximum", "min": "minimum"}


def reorder_reductions(ops: list[Op], axes, k: int) -> bool:
    """Make each chain of reductions of one kind (sum over W, then over H) that covers
    axis k reduce k first: the looped reduction over k needs that, and sum, prod, max and
    min do not depend on the order (in exact arithmetic). `axes`: the group's Axes, stale
    afterwards. Returns whether anything changed."""
    users: dict = {}
    for op in ops:
        for v in op.operands:
            users.setdefault(v, []).append(op)

    def next_in_chain(op):
        after = users.get(op.results[0], [])
        if len(after) == 1 and after[0].name == "reduce" and \
                after[0].attrs["kind"] == op.attrs["kind"]:
            return after[0]
        return None

    continued = {next_in_chain(op) for op in ops if op.name == "reduce"} - {None}
    changed = False
    for op in ops:
        if op.name != "reduce" or op.attrs["kind"] not in _COMBINE or op in continued:
            continue
        chain = [op]
        while (after := next_in_chain(chain[-1])) is not None:
            chain.append(after)
        reduced = [axes.axes(c.operands[0])[c.attrs["axis"]] for c in chain]
        if k not in reduced or reduced[0] == k:
            continue
        dims = list(axes.axes(op.operands[0]))
        shape = list(op.operands[0].type.shape)
        for c, axis in zip(chain, [k] + [a for a in reduced if a != k]):
            i = dims.index(axis)
            del dims[i], shape[i]
            c.attrs["axis"] = i
            c.results[0].type = c.results[0].type.with_shape(shape)
        changed = True
    return changed


def _phases(emitter, k: int):
    """(loop of each reduce over k, loop of each write of a k-varying value, when each
    value (and write) not varying along k can be computed: 0 before the first loop, i after
    loop i-1)."""
    along = lambda v: emitter.axes.varies_along(v, k)  # noqa: E731
    ready, needs, reduce_loop, write_loop = {}, {}, {}, {}

    def needs_of(v):
        return needs.get(v, 0) if along(v) else ready.get(v, 0)

    for op in emitter.ops:
        if op.name == "write":
            v = op.operands[1]
            if along(v):
                write_loop[op] = needs_of(v)
            else:
                ready[op] = ready.get(v, 0)
            continue
        r = op.results[0]
        if r in emitter.axes.viewed_only:
            continue                     # read through by the view of it
        ins = mapped_operands(op)
        if op.name == "dot":             # a sum over k of products: accumulated like one
            reduce_loop[op] = max(needs_of(u) for u in op.operands)
            ready[r] = reduce_loop[op] + 1
        elif op.name == "reduce" and along(op.operands[0]):
            if op.attrs["kind"] not in _COMBINE:
                raise ValueError(f"{op.attrs['kind']} at {op.loc} over a dim longer than one "
                                 "tile is not supported yet (looped reductions combine sum, "
                                 "prod, max and min)")
            reduce_loop[op] = needs_of(op.operands[0])
            ready[r] = reduce_loop[op] + 1
        elif along(r):
            needs[r] = max((needs_of(u) for u in ins), default=0)
        else:
            ready[r] = max((ready.get(u, 0) for u in ins), default=0)
    return reduce_loop, write_loop, ready


def emit_looped(emitter, k: int) -> None:
    reduce_loop, write_loop, ready = _phases(emitter, k)
    n_loops = 1 + max([*reduce_loop.values(), *write_loop.values()], default=0)
    for i in range(n_loops + 1):
        for op in emitter.ops:                  # what is known once loop i-1 is done
            key = op if op.name == "write" else op.results[0]
            if op not in reduce_loop and key in ready and ready[key] == i:
                with emitter.b.at_loc(op.loc):
                    emitter.get_or_lower(op)
        if i < n_loops:
            _loop(emitter, k, [op for op, n in reduce_loop.items() if n == i],
                  [op for op, n in write_loop.items() if n == i])


def _kind(op: Op) -> str:
    return "sum" if op.name == "dot" else op.attrs["kind"]


def _dot_chunk(emitter, op: Op, k: int, t: TileType):
    """dot of this K chunk of the operands, lanes past K zero in both (computed operands
    need not be zero there: exp(0) is not)."""
    b = emitter.b
    tiles = []
    for v, dim in zip(op.operands, (1, 0)):
        x = emitter.get(v)
        mask = emitter._placed(emitter.mask[k], dim, x.type.shape)
        zero = b.value("const", [], x.type, value=0.0 if x.type.dtype.is_float else 0)
        tiles.append(b.value("where", [mask, x, zero], x.type))
    return b.value("dot", tiles, t)


def _accumulator_type(t: TileType) -> TileType:
    """Half floats accumulate in float32 across chunks."""
    return t.with_dtype(D.float32) if t.dtype.is_float and t.dtype.bits == 16 else t


def _scans_needed(emitter, k: int, reduces: list[Op], writes: list[Op]) -> list[Op]:
    """The scans along k whose values the loop's reductions and writes use (through the
    group's ops that vary along k), in program order."""
    along = lambda v: emitter.axes.varies_along(v, k)  # noqa: E731
    found, seen = set(), set()
    todo = [v for op in reduces for v in op.operands] + [op.operands[1] for op in writes]
    while todo:
        v = todo.pop()
        op = v.op
        if v in seen or op is None or op not in emitter.members or not along(v):
            continue
        seen.add(v)
        if op.name == "scan":
            found.add(op)
        todo += op.operands
    return [op for op in emitter.ops if op in found]


def _scan_direction(scans: list[Op]) -> bool:
    """Whether the loop walks k backwards (its scans are reversed)."""
    directions = {op.attrs["reverse"] for op in scans}
    if len(directions) > 1:
        raise ValueError(f"the scans at {scans[0].loc} run both ways along a dim longer than "
                         "one tile; one loop walks it in one direction (not supported yet)")
    return directions == {True}


def _loop(emitter, k: int, reduces: list[Op], writes: list[Op]) -> None:
    b = emitter.b
    scans = _scans_needed(emitter, k, reduces, writes)
    backwards = _scan_direction(scans)
    rtypes = [TileType(op.results[0].type.dtype, emitter.shape(op.results[0]))
              for op in reduces]
    acc_types = [_accumulator_type(t) for t in rtypes]
    carry_types = [_carry_type(op, TileType(op.results[0].type.dtype, _without(
        emitter.shape(op.results[0]), op.attrs["axis"]))) for op in scans]
    inits = [emitter.identity(_kind(op), t) for op, t in zip(reduces + scans,
                                                              acc_types + carry_types)]
    body = Block([HANDLE] + acc_types + carry_types)
    dim, emitter.loop_dim = emitter.loop_dim, None     # a matmul's K dim, chosen earlier
    if dim is None:
        dim = emitter.tiler.new_dim()
    loop = b.create("tile_for", inits, acc_types + carry_types,
                    {"extent": emitter.axes.extent(k), "block": emitter.block[k],
                     "parallel": False, "dim": dim}, [body])
    saved_env, saved_loaded = dict(emitter.env), dict(emitter.loaded)
    with b.at_end(body):
        index = b.value("tile_index", [body.args[0]], TileType(D.INDEX, (emitter.block[k],)))
        emitter.set_index(k, index)
        if backwards:
            _count_down(emitter, k, index)
        carries = body.args[1 + len(reduces):]
        emitter.scan_carry = dict(zip(scans, carries))
        emitter.scan_next = {}
        outs = []
        for op, acc, t, at in zip(reduces, body.args[1:], rtypes, acc_types):
            with b.at_loc(op.loc):
                if op.name == "dot":
                    part = _dot_chunk(emitter, op, k, t)
                else:
                    part = emitter._reduce(op, emitter.get(op.operands[0]), t)
                if at != t:
                    part = b.value("cast", [part], at)
                outs.append(b.value(_COMBINE[_kind(op)], [acc, part], at))
        for op in writes:
            with b.at_loc(op.loc):
                emitter._lower(op)
        b.create("yield", outs + [emitter.scan_next[op] for op in scans])
    emitter.scan_carry = emitter.scan_next = None
    emitter.env, emitter.loaded = saved_env, saved_loaded    # chunk values stay in the loop
    for op, result, t in zip(reduces, loop.results, rtypes):
        emitter.env[op.results[0]] = result if result.type == t else b.value("cast", [result], t)
        if op.results[0].name:
            emitter.env[op.results[0]].name = op.results[0].name


def _carry_type(op: Op, t: TileType) -> TileType:
    """A scan's carry: float sums and products in float64, as a scan accumulates (each
    element rounded once from it)."""
    return t.with_dtype(D.float64) if t.dtype.is_float and op.attrs["kind"] in (
        "sum", "prod") else t


def _without(shape: tuple, axis: int) -> tuple:
    return tuple(shape[:axis]) + tuple(shape[axis + 1:])


def _count_down(emitter, k: int, index) -> None:
    """Indices along k from its end: extent - 1 - i for the chunk's i (masked past 0)."""
    b = emitter.b
    t = index.type
    last = b.value("symval", [], TileType(D.INDEX), expr=emitter.axes.extent(k) - 1)
    last = b.value("broadcast", [b.value("expand_dims", [last], TileType(D.INDEX, (1,)),
                                         axis=0)], t)
    # the mask set_index made (i < extent) keeps the same lanes: those at index >= 0
    emitter.index[k] = b.value("sub", [last, index], t)


def looped_scan(emitter, op: Op, x, rtype: TileType):
    """A scan along the looped axis, in a loop's body: this chunk's scan (forward over the
    lanes, which count down for a reversed scan) with the carry of the chunks before it
    combined in; the carry for the next chunk is recorded for the loop's yield."""
    b = emitter.b
    carry = emitter.scan_carry[op]
    axis, kind = op.attrs["axis"], op.attrs["kind"]
    wide = x.type.with_dtype(carry.type.dtype)
    if x.type != wide:
        x = b.value("cast", [x], wide)
    part = b.value("scan", [x], wide, kind=kind, axis=axis, reverse=False)
    spread = b.value("broadcast", [b.value("expand_dims", [carry], carry.type.with_shape(
        _with_one(carry.type.shape, axis)), axis=axis)], wide)
    value = b.value(_COMBINE[kind], [spread, part], wide)
    total = b.value("reduce", [x], carry.type, kind=kind, axis=axis)
    emitter.scan_next[op] = b.value(_COMBINE[kind], [carry, total], carry.type)
    return value if wide == rtype else b.value("cast", [value], rtype)


def _with_one(shape: tuple, axis: int) -> tuple:
    return tuple(shape[:axis]) + (1,) + tuple(shape[axis:])


__all__ = ["emit_looped", "looped_scan"]
