"""Structural and type checks of IR. Run after every pass in tests (PassManager(verify=True))."""
from __future__ import annotations

import sympy

from .core import Block, Module, Op, Value
from .dtypes import INDEX, bool_, int32, int64
from .symbolic import is_zero
from .ops import FLOAT_RESULT_BINARY, FLOAT_UNARY, OPS, REDUCE_KINDS, SCAN_KINDS, memory_operands
from .types import HANDLE, TensorType, TileType


class VerificationError(ValueError):
    def __init__(self, op: Op, msg: str):
        super().__init__(f"{op.name} at {op.loc}: {msg}")
        self.op = op


def _expect(cond: bool, op: Op, msg: str):
    if not cond:
        raise VerificationError(op, msg)


def _tile(op: Op, v: Value, what: str) -> TileType:
    _expect(isinstance(v.type, TileType), op, f"{what} must be a tile, got {v.type}")
    return v.type


def _shaped(op: Op, v: Value, what: str) -> TileType | TensorType:
    """A tile, or (whole-tensor ops in the kernel's own block) a tensor."""
    if isinstance(v.type, TensorType) and _at_kernel_level(op):
        return v.type
    return _tile(op, v, what)


def _at_kernel_level(op: Op) -> bool:
    return op.parent is not None and op.parent.parent is not None \
        and op.parent.parent.name == "kernel"


def _result(op: Op) -> TileType | TensorType:
    _expect(len(op.results) == 1, op, "expects one result")
    return _shaped(op, op.results[0], "result")


def _equal_sizes(op: Op) -> set:
    kernel = op.parent.parent if _at_kernel_level(op) else None
    pairs = kernel.attrs.get("equal_sizes", []) if kernel is not None else []
    return {frozenset(p) for p in pairs}


def _n_operands(op: Op, n: int):
    _expect(len(op.operands) == n, op, f"expects {n} operands, got {len(op.operands)}")


def _one_result(op: Op) -> TileType:
    _expect(len(op.results) == 1, op, "expects one result")
    return _tile(op, op.results[0], "result")


def _check_unary(op: Op):
    _n_operands(op, 1)
    t, r = _shaped(op, op.operands[0], "operand"), _result(op)
    _expect(t == r, op, f"result type {r} differs from operand type {t}")
    if op.name in FLOAT_UNARY:
        _expect(t.dtype.is_float, op, f"needs a float operand, got {t.dtype}")
    if op.name == "not":
        _expect(not t.dtype.is_float, op, "needs a bool or int operand")


def _check_binary(op: Op):
    _n_operands(op, 2)
    a, b = (_shaped(op, v, "operand") for v in op.operands)
    r = _result(op)
    _expect(a == b, op, f"operand types differ: {a} and {b}")
    if OPS[op.name].kind == "compare":
        _expect(r == a.with_dtype(bool_), op, f"result must be {a.with_dtype(bool_)}, got {r}")
    else:
        _expect(r == a, op, f"result type {r} differs from operand type {a}")
    if op.name in ("and", "or", "xor"):
        _expect(not a.dtype.is_float, op, "needs bool or int operands")
    if op.name in FLOAT_RESULT_BINARY:
        what = "true division" if op.name == "div" else op.name
        _expect(a.dtype.is_float, op, f"{what} needs float operands")


def _check_where(op: Op):
    _n_operands(op, 3)
    c, a, b = (_shaped(op, v, "operand") for v in op.operands)
    r = _result(op)
    _expect(c == a.with_dtype(bool_), op, f"condition must be {a.with_dtype(bool_)}, got {c}")
    _expect(a == b == r, op, f"value types differ: {a}, {b} -> {r}")


def _check_cast(op: Op):
    _n_operands(op, 1)
    a, r = _shaped(op, op.operands[0], "operand"), _result(op)
    _expect(type(a) is type(r) and a.shape == r.shape, op,
            f"cast changes shape {a.shape} -> {r.shape}")


def _check_shape(op: Op):
    _n_operands(op, 1)
    a, r = _shaped(op, op.operands[0], "operand"), _result(op)
    _expect(a.dtype == r.dtype, op, "shape ops keep the dtype")
    _expect(isinstance(r, TensorType) or isinstance(a, TileType), op,
            "a tile cannot become a tensor")
    if op.name == "broadcast" and isinstance(r, TensorType) and isinstance(a, TileType):
        _expect(a.rank == 0, op, f"only a scalar tile broadcasts to a tensor, got {a}")
    elif op.name == "broadcast":
        equal = _equal_sizes(op) if isinstance(r, TensorType) else set()
        _expect(a.rank == r.rank and all(x == 1 or x == y or frozenset((x, y)) in equal
                                         for x, y in zip(a.shape, r.shape)), op,
                f"cannot broadcast {a.shape} to {r.shape}")
    elif op.name == "expand_dims":
        axis = op.attrs.get("axis")
        _expect(isinstance(axis, int) and 0 <= axis <= a.rank, op, f"bad axis {axis}")
        _expect(r.shape == a.shape[:axis] + (1,) + a.shape[axis:], op, "wrong result shape")
    else:
        perm = op.attrs.get("perm")
        _expect(sorted(perm or []) == list(range(a.rank)), op, f"bad perm {perm}")
        _expect(r.shape == tuple(a.shape[p] for p in perm), op, "wrong result shape")


def _check_concat(op: Op):
    _expect(len(op.operands) >= 1, op, "concat takes at least one tensor")
    _expect(_at_kernel_level(op), op, "concat is a whole-tensor op of the kernel's own block")
    r, axis = _result(op), op.attrs.get("axis")
    _expect(isinstance(r, TensorType) and isinstance(axis, int) and 0 <= axis < r.rank, op,
            f"concat needs an axis of its result, got {axis!r} for {r}")
    total = sympy.Integer(0)
    for k, v in enumerate(op.operands):
        a = v.type
        _expect(isinstance(a, TensorType) and a.dtype == r.dtype and a.rank == r.rank, op,
                f"concat operand {k} must be a tensor of the result's dtype and rank, got {a}")
        for d in range(r.rank):
            if d != axis:
                _expect(is_zero(a.shape[d] - r.shape[d])
                        or frozenset((a.shape[d], r.shape[d])) in _equal_sizes(op), op,
                        f"concat operand {k} has size {a.shape[d]} on dim {d}, the result "
                        f"{r.shape[d]}")
        total += a.shape[axis]
    _expect(is_zero(total - r.shape[axis]), op,
            f"concat's operands add up to {total} on dim {axis}, the result has {r.shape[axis]}")


def _check_take(op: Op):
    _n_operands(op, 2)
    _expect(_at_kernel_level(op), op, "take is a whole-tensor op of the kernel's own block")
    (x, index), r, axis = (v.type for v in op.operands), _result(op), op.attrs.get("axis")
    _expect(all(isinstance(t, TensorType) for t in (x, index, r)), op,
            "take reads a tensor at the positions in an index tensor")
    _expect(index.dtype.is_int, op, f"take's index must be an integer tensor, got {index}")
    _expect(isinstance(axis, int) and 0 <= axis < x.rank, op, f"bad axis {axis!r} for {x}")
    want = x.shape[:axis] + index.shape + x.shape[axis + 1:]
    _expect(r.dtype == x.dtype and len(r.shape) == len(want) and all(
        is_zero(a - b) for a, b in zip(r.shape, want)), op,
        f"take of {x} at {index} along {axis} gives {x.dtype}{list(want)}, not {r}")


def _check_take_along(op: Op):
    _n_operands(op, 2)
    _expect(_at_kernel_level(op), op,
            "take_along is a whole-tensor op of the kernel's own block")
    (x, index), r, axis = (v.type for v in op.operands), _result(op), op.attrs.get("axis")
    _expect(all(isinstance(t, TensorType) for t in (x, index, r)), op,
            "take_along reads a tensor at the positions in an index tensor")
    _expect(index.dtype.is_int and index.rank == x.rank, op,
            f"take_along's index must be an integer tensor of x's rank, got {index} for {x}")
    _expect(isinstance(axis, int) and 0 <= axis < x.rank, op, f"bad axis {axis!r} for {x}")
    _expect(r.dtype == x.dtype and r.rank == index.rank and all(
        is_zero(a - b) for a, b in zip(r.shape, index.shape)), op,
        f"take_along of {x} at {index} gives {x.dtype}{list(index.shape)}, not {r}")


def _check_view(op: Op):
    if op.name == "concat":
        return _check_concat(op)
    if op.name == "take":
        return _check_take(op)
    if op.name == "take_along":
        return _check_take_along(op)
    _n_operands(op, 1)
    _expect(_at_kernel_level(op), op, f"{op.name} is a whole-tensor op of the kernel's own block")
    a, r = op.operands[0].type, _result(op)
    _expect(isinstance(a, TensorType) and isinstance(r, TensorType) and a.dtype == r.dtype, op,
            f"{op.name} takes a tensor to a tensor of its dtype, got {a} -> {r}")
    if op.name == "reshape":
        counts = (sympy.Mul(*a.shape), sympy.Mul(*r.shape))
        _expect(is_zero(counts[0] - counts[1])
                or frozenset(counts) in _equal_sizes(op), op,
                f"reshape changes the number of elements: {a.shape} -> {r.shape}")
        return
    starts, steps = op.attrs.get("starts"), op.attrs.get("steps")
    _expect(isinstance(starts, list) and isinstance(steps, list)
            and len(starts) == len(steps) == a.rank == r.rank, op,
            "slice needs starts and steps, one per dim of its operand and result")
    for d, step in enumerate(steps):
        _expect(isinstance(step, int) and not isinstance(step, bool) and step != 0, op,
                f"bad step {step!r} on dim {d}")


def _along_axis(op: Op, kinds, what: str):
    """(operand type, result type, kind, axis) of a reduce or scan, its kind and axis
    checked."""
    _n_operands(op, 1)
    a, r = _shaped(op, op.operands[0], "operand"), _result(op)
    kind, axis = op.attrs.get("kind"), op.attrs.get("axis")
    _expect(kind in kinds, op, f"unknown {what} {kind!r}")
    _expect(isinstance(axis, int) and 0 <= axis < a.rank, op, f"bad axis {axis} for {a}")
    return a, r, kind, axis


def _check_reduce(op: Op):
    a, r, kind, axis = _along_axis(op, REDUCE_KINDS, "reduction")
    _expect(r.shape == a.shape[:axis] + a.shape[axis + 1:], op, "wrong result shape")
    if kind in ("argmax", "argmin"):
        _expect(r.dtype == INDEX, op, "arg reductions give int32")
    elif kind in ("sum", "prod") and not a.dtype.is_float:
        _expect(r.dtype == int64, op, f"{kind} of ints gives int64")
    else:
        _expect(r.dtype == a.dtype, op, "reduction changes dtype")


def _check_scan(op: Op):
    a, r, kind, axis = _along_axis(op, SCAN_KINDS, "scan")
    _expect(isinstance(op.attrs.get("reverse"), bool), op, "scan needs a bool `reverse`")
    _expect(r.shape == a.shape, op, "a scan keeps its operand's shape")
    _expect(type(r) is type(a), op, "a scan of a tile is a tile, of a tensor a tensor")
    if kind in ("sum", "prod") and not a.dtype.is_float:
        _expect(r.dtype == int64, op, f"{kind} scan of ints gives int64")
    else:
        _expect(r.dtype == a.dtype, op, "scan changes dtype")


def _check_dot(op: Op):
    _n_operands(op, 2)
    a, b = (_shaped(op, v, "operand") for v in op.operands)
    r = _result(op)
    if isinstance(r, TensorType):     # whole tensors: batch dims before the last two
        _expect(a.rank >= 2 and b.rank >= 2 and a.shape[-1] == b.shape[-2], op,
                f"dot needs [..., M, K] x [..., K, N], got {a.shape} x {b.shape}")
        batch = tuple(r.shape[:-2])
        for v in (a, b):
            lead = batch[len(batch) - (v.rank - 2):] if v.rank > 2 else ()
            _expect(v.rank - 2 <= len(batch) and all(
                d == 1 or d == w for d, w in zip(v.shape[:-2], lead)), op,
                f"dot: operand batch dims {v.shape[:-2]} do not broadcast to {batch}")
        _expect(tuple(r.shape[-2:]) == (a.shape[-2], b.shape[-1]), op, "wrong result shape")
        return
    _expect(a.rank == 2 and b.rank == 2 and a.shape[1] == b.shape[0], op,
            f"dot needs [M, K] x [K, N], got {a.shape} x {b.shape}")
    _expect(r.shape == (a.shape[0], b.shape[1]), op, "wrong result shape")


def _check_index(op: Op):
    _n_operands(op, 1)
    _expect(op.operands[0].type == HANDLE, op, "operand must be a tile loop handle")
    r = _one_result(op)
    if op.name == "tile_begin":
        _expect(r == TileType(INDEX), op, "tile_begin gives i32")
    else:
        _expect(r.dtype == INDEX and r.rank == 1, op, "tile_index gives a 1-D int32 tile")
        loop = op.operands[0].owner.parent
        _expect(loop is None or r.shape[0] == loop.attrs.get("block"), op,
                "tile_index length differs from the loop's block")


def _check_const(op: Op):
    _n_operands(op, 0)
    r = _result(op) if op.name == "iota" else _one_result(op)   # iota: a whole tensor
    if op.name == "const":
        v = op.attrs.get("value")
        _expect(isinstance(v, (bool, int, float)), op, f"bad constant {v!r}")
    elif op.name == "arange":
        s, e = op.attrs.get("start"), op.attrs.get("end")
        _expect(r == TileType(INDEX, (e - s,)), op, f"arange({s}, {e}) must give i32[{e - s}]")
    elif op.name == "iota":
        _expect(isinstance(r, TensorType) and r.rank == 1 and r.dtype == int64, op,
                "iota gives a 1-D int64 tensor")
        _expect(all(isinstance(op.attrs.get(a), int) for a in ("start", "step")), op,
                "iota needs int start and step")
    else:
        _expect(r.rank == 0 and r.dtype in (int32, int64), op, "symval gives an int scalar")
        _expect("expr" in op.attrs, op, "symval needs expr")


def _check_memory(op: Op):
    t = op.operands[0].type if op.operands else None
    _expect(isinstance(t, TensorType), op, "first operand must be a tensor")
    tensor, idx, value, mask, other = memory_operands(op)
    n_expected = 1 + t.rank + (op.name != "load") + bool(op.attrs.get("mask")) \
        + bool(op.attrs.get("other"))
    _n_operands(op, n_expected)
    shape = (_one_result(op).shape if op.name == "load" else _tile(op, value, "value").shape)
    for i in idx:
        it = _tile(op, i, "index")
        _expect(it.dtype.is_int and it.shape == shape, op,
                f"index {it} must be an int tile of shape {list(shape)}")
    if mask is not None:
        _expect(mask.type == TileType(bool_, shape), op, f"mask must be bool of {list(shape)}")
    if other is not None:
        _expect(other.type == TileType(t.dtype, shape), op, "other must match the result")
    if value is not None:
        _expect(value.type == TileType(t.dtype, shape), op,
                f"value {value.type} must have the tensor's dtype {t.dtype}")
    checked = op.attrs.get("checked")
    _expect(isinstance(checked, list) and len(checked) == t.rank, op, "checked: one bool per dim")
    if op.name == "atomic_add":
        _expect(_one_result(op).shape == shape, op, "atomic_add returns the old values")


def _check_host(op: Op):
    _n_operands(op, 0)
    _expect(len(op.results) == 1 and isinstance(op.results[0].type, TensorType), op,
            "alloc gives a tensor")


def _check_write(op: Op):
    _n_operands(op, 2)
    dst, value = (v.type for v in op.operands)
    _expect(_at_kernel_level(op), op, "write is a whole-tensor op of the kernel's own block")
    _expect(isinstance(dst, TensorType) and isinstance(value, TensorType), op,
            "write takes a tensor and a tensor value")
    _expect(dst == value, op, f"value {value} differs from the destination {dst}")


def _yield_types(op: Op, region: Block, expected: list):
    term = region.terminator
    _expect(term is not None and term.name == "yield", op, "region must end in yield")
    got = [v.type for v in term.operands]
    _expect(got == expected, op, f"yield types {list(map(str, got))} differ from "
                                 f"{list(map(str, expected))}")


def _check_structure(op: Op):
    result_types = [r.type for r in op.results]
    if op.name == "kernel":
        _expect(isinstance(op.attrs.get("name"), str), op, "kernel needs a name")
        term = op.regions[0].terminator
        _expect(term is not None and term.name == "return", op, "kernel must end in return")
    elif op.name == "tile_for":
        body = op.regions[0]
        _expect(body.args and body.args[0].type == HANDLE, op, "first block arg is the handle")
        _expect(isinstance(op.attrs.get("block"), int) and op.attrs["block"] >= 1, op,
                "block must be a positive int")
        _expect("extent" in op.attrs, op, "tile_for needs an extent")
        inits = [v.type for v in op.operands]
        _expect(inits == result_types == [a.type for a in body.args[1:]], op,
                "carried value types differ between inits, block args and results")
        _yield_types(op, body, result_types)
        if op.attrs.get("parallel"):
            _expect(not op.results, op, "parallel loops carry no values")
    elif op.name == "for":
        lo, hi, step = (_tile(op, v, "bound") for v in op.operands[:3])
        _expect(lo == hi == step and lo.rank == 0 and lo.dtype.is_int, op,
                "for bounds must be int scalars of one type")
        body = op.regions[0]
        inits = [v.type for v in op.operands[3:]]
        _expect([a.type for a in body.args] == [lo] + inits and inits == result_types, op,
                "carried value types differ")
        _yield_types(op, body, result_types)
    elif op.name == "if":
        c = _tile(op, op.operands[0], "condition")
        _expect(c == TileType(bool_), op, "condition must be a bool scalar")
        for region in op.regions:
            _yield_types(op, region, result_types)


_CHECKS = {"unary": _check_unary, "binary": _check_binary, "compare": _check_binary,
           "where": _check_where, "cast": _check_cast, "shape": _check_shape,
           "reduce": _check_reduce, "scan": _check_scan, "dot": _check_dot,
           "view": _check_view, "index": _check_index,
           "const": _check_const, "memory": _check_memory, "host": _check_host, "write": _check_write,
           "structure": _check_structure}


def _verify_block(block: Block, visible: set[Value], expected_terminator: str | None):
    visible = set(visible) | set(block.args)
    for i, op in enumerate(block.ops):
        info = OPS.get(op.name)
        if info is None:
            raise VerificationError(op, "unknown op")
        for v in op.operands:
            _expect(v in visible, op, f"operand {v!r} is not defined before its use")
        _expect(len(op.regions) == info.n_regions, op,
                f"expects {info.n_regions} regions, got {len(op.regions)}")
        if info.terminator:
            _expect(i == len(block.ops) - 1, op, "terminator must be the last op")
            _expect(op.name == expected_terminator, op,
                    f"{op.name} cannot end this region (expected {expected_terminator})")
        _CHECKS.get(info.kind, lambda _: None)(op)
        for region in op.regions:
            _verify_block(region, visible, "return" if op.name == "kernel" else "yield")
        visible.update(op.results)
    if expected_terminator is not None:
        term = block.terminator
        if term is None or term.name != expected_terminator:
            raise VerificationError(block.parent, f"region must end in {expected_terminator}")


def verify(module_or_op: Module | Op) -> None:
    ops = module_or_op.ops if isinstance(module_or_op, Module) else [module_or_op]
    for op in ops:
        _expect(op.name == "kernel", op, "only kernels may appear at the top level")
        _verify_block_top(op)


def _verify_block_top(kernel: Op):
    tmp = Block()
    tmp.ops = [kernel]
    _verify_block(tmp, set(), None)
