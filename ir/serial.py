"""A JSON form of a module for the disk cache of compiled kernels: `load(dump(m))` prints
as m does (printer.py), keeps tuples apart from lists, and takes a fraction of a
millisecond where parsing the text form takes milliseconds (lark) and sympy's parser
hundreds of microseconds per size expression.

    {"types": [type, ...], "exprs": [expr, ...], "locs": [[file, line, col], ...],
     "ops": [op, ...]}
    op:     [name, [operand value ids], [result type ids], {attr: value}, [region, ...],
             loc id, [result names]]
    region: [[arg type ids], [arg names], [op, ...]]

Values are numbered in definition order: an op's regions define theirs before the op's own
results (as in the text form, where results bind after the op's body). Size expressions are
trees of sympy node names over ints and size symbols. An attribute or node this form does
not know raises SerialError: the caller then keeps no entry rather than a wrong one.
"""
from __future__ import annotations

import sympy

from .core import Block, Loc, Module, Op
from .dtypes import dtype_from_name
from .symbolic import size_symbol
from .types import HANDLE, HandleType, TensorType, TileType

FORMAT = 1

# the sympy nodes size expressions are built from (symbolic.py, passes), by name
_NODES = {cls.__name__: cls for cls in (sympy.Add, sympy.Mul, sympy.Pow, sympy.floor,
                                        sympy.ceiling, sympy.Mod, sympy.Min, sympy.Max)}


# rebuilt as stored: their args are those of an expression sympy already reduced, and
# reducing them again compares every pair (a process's first Min took ~50 ms, most of it
# importing sympy's relational machinery)
_UNEVALUATED = frozenset({"Min", "Max"})


class SerialError(ValueError):
    pass


def expr_tree(e) -> object:
    """A size expression as JSON-able data: ints, {"s": size symbol}, {"q": [p, q]} and
    [node name, operand, ...]."""
    if e.is_Integer:
        return int(e)
    if e.is_Symbol:
        if e != size_symbol(e.name):
            raise SerialError(f"symbol {e} is not a size symbol")
        return {"s": e.name}
    if e.is_Rational:
        return {"q": [int(e.p), int(e.q)]}
    name = type(e).__name__
    if name not in _NODES:
        raise SerialError(f"size expression node {name} ({e})")
    return [name, *(expr_tree(a) for a in e.args)]


def expr_from_tree(tree) -> sympy.Expr:
    """The size expression expr_tree gave `tree` for."""
    if isinstance(tree, int) and not isinstance(tree, bool):
        return sympy.Integer(tree)
    if isinstance(tree, dict):
        if "s" in tree:
            return size_symbol(tree["s"])
        p, q = tree["q"]
        return sympy.Rational(p, q)
    if isinstance(tree, list) and tree and tree[0] in _NODES:
        args = [expr_from_tree(a) for a in tree[1:]]
        if tree[0] in _UNEVALUATED:
            return _NODES[tree[0]](*args, evaluate=False)
        return _NODES[tree[0]](*args)
    raise SerialError(f"not a size expression tree: {tree!r}")


class _Table:
    """Distinct items in first-use order."""

    def __init__(self):
        self.index: dict = {}
        self.items: list = []

    def add(self, key, make) -> int:
        at = self.index.get(key)
        if at is None:
            at = self.index[key] = len(self.items)
            self.items.append(make())
        return at


class _Writer:
    def __init__(self):
        self.ids: dict = {}
        self.types, self.exprs, self.locs = _Table(), _Table(), _Table()

    def expr(self, e) -> int:
        return self.exprs.add(e, lambda: expr_tree(e))

    def type(self, t) -> int:
        return self.types.add(t, lambda: self.type_form(t))

    def type_form(self, t):
        if isinstance(t, TileType):
            return ["tile", t.dtype.short, list(t.shape)]
        if isinstance(t, TensorType):
            return ["tensor", t.dtype.short,
                    [int(d) if d.is_Integer else {"x": self.expr(d)} for d in t.shape]]
        if isinstance(t, HandleType):
            return ["handle"]
        raise SerialError(f"type {t!r}")

    def attr(self, v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.attr(x) for x in v]
        if isinstance(v, tuple):
            return {"t": [self.attr(x) for x in v]}
        if isinstance(v, sympy.Basic):
            return {"x": self.expr(v)}
        raise SerialError(f"attribute value {v!r} ({type(v).__name__})")

    def define(self, v) -> None:
        self.ids[v] = len(self.ids)

    def op(self, op: Op) -> list:
        try:
            operands = [self.ids[v] for v in op.operands]
        except KeyError:
            raise SerialError(f"{op.name} uses a value defined nowhere before it") from None
        attrs = {k: self.attr(v) for k, v in op.attrs.items()}
        regions = [self.region(r) for r in op.regions]
        for r in op.results:
            self.define(r)
        loc = self.locs.add(op.loc, lambda: [op.loc.file, op.loc.line, op.loc.col])
        return [op.name, operands, [self.type(r.type) for r in op.results], attrs, regions,
                loc, [r.name for r in op.results]]

    def region(self, block: Block) -> list:
        for a in block.args:
            self.define(a)
        return [[self.type(a.type) for a in block.args], [a.name for a in block.args],
                [self.op(o) for o in block.ops]]


def dump(module: Module) -> dict:
    """The module as JSON-able data; SerialError for what the form does not hold."""
    w = _Writer()
    ops = [w.op(op) for op in module.ops]
    return {"format": FORMAT, "types": w.types.items, "exprs": w.exprs.items,
            "locs": w.locs.items, "ops": ops}


class _Reader:
    def __init__(self, data: dict):
        if data.get("format") != FORMAT:
            raise SerialError(f"format {data.get('format')!r}, expected {FORMAT}")
        self.values: list = []
        self.exprs = [expr_from_tree(tree) for tree in data["exprs"]]
        self.types = [self.type_form(t) for t in data["types"]]
        self.locs = [Loc(f, line, col) for f, line, col in data["locs"]]

    def type_form(self, form):
        kind = form[0]
        if kind == "tile":
            return TileType(dtype_from_name(form[1]), tuple(form[2]))
        if kind == "tensor":
            return TensorType(dtype_from_name(form[1]), tuple(
                d if isinstance(d, int) else self.exprs[d["x"]] for d in form[2]))
        if kind == "handle":
            return HANDLE
        raise SerialError(f"type form {form!r}")

    def attr(self, v):
        if isinstance(v, list):
            return [self.attr(x) for x in v]
        if isinstance(v, dict):
            if "t" in v:
                return tuple(self.attr(x) for x in v["t"])
            return self.exprs[v["x"]]
        return v

    def op(self, form) -> Op:
        name, operands, result_types, attrs, regions, loc, names = form
        operand_values = [self.values[i] for i in operands]
        blocks = [self.region(r) for r in regions]
        op = Op(name, operand_values, [self.types[t] for t in result_types],
                {k: self.attr(v) for k, v in attrs.items()}, blocks, self.locs[loc])
        for r, n in zip(op.results, names):
            r.name = n
            self.values.append(r)
        return op

    def region(self, form) -> Block:
        arg_types, arg_names, ops = form
        block = Block([self.types[t] for t in arg_types], arg_names)
        self.values.extend(block.args)
        for o in ops:
            block.append(self.op(o))
        return block


def load(data: dict) -> Module:
    """The module `dump` gave `data` for; SerialError if data is not of this form."""
    try:
        reader = _Reader(data)
        return Module([reader.op(o) for o in data["ops"]])
    except SerialError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SerialError(f"not a serialized module: {type(exc).__name__}: {exc}") from None
