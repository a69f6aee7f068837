"""Parser for the canonical text form (grammar.lark), resolving SSA names to values."""
from __future__ import annotations

import importlib
import json
from functools import lru_cache
from pathlib import Path

from .core import UNKNOWN_LOC, Block, Loc, Module, Op, Value
from .dtypes import dtype_from_name
from .ops import OPS
from .symbolic import expr_from_text, size_symbol
from .types import HANDLE, TensorType, TileType


class IRParseError(ValueError):
    pass


def _lark():
    """The lark module, imported on the first parse: it takes ~0.2 s, most of what
    `import fusec` would otherwise spend beyond sympy, and only IR text needs it."""
    return importlib.import_module("lark")


@lru_cache(maxsize=1)
def _parser():
    grammar = (Path(__file__).with_name("grammar.lark")).read_text()
    return _lark().Lark(grammar, parser="lalr", propagate_positions=True,
                        maybe_placeholders=True)


def _unquote(token) -> str:
    return json.loads(str(token))


class _Builder:
    """Walks the parse tree, creating ops and binding value names within each kernel."""

    def __init__(self):
        self.scopes: list[dict[str, Value]] = []

    def fail(self, node, msg: str):
        line = getattr(getattr(node, "meta", None), "line", None) or getattr(node, "line", "?")
        raise IRParseError(f"line {line}: {msg}")

    def attr(self, node):
        kind = node.data
        if kind == "int":
            return int(node.children[0])
        if kind == "float":
            return float(node.children[0])
        if kind == "true":
            return True
        if kind == "false":
            return False
        if kind == "string":
            return _unquote(node.children[0])
        if kind == "expr":
            return expr_from_text(_unquote(str(node.children[0])[1:]))
        if kind == "list":
            return [self.attr(c) for c in node.children if c is not None]
        self.fail(node, f"bad attribute {node}")

    def type(self, node):
        try:
            if node.data == "scalar_type":
                name = str(node.children[0])
                if name == "tileidx":
                    return HANDLE
                return TileType(dtype_from_name(name), ())
            kind, dtype = str(node.children[0]), dtype_from_name(str(node.children[1]))
            dims = [c for c in node.children[2:] if c is not None]
            if kind == "tile":
                return TileType(dtype, tuple(int(d.children[0]) for d in dims))
            if kind == "tensor":
                return TensorType(dtype, tuple(self.dim(d) for d in dims))
        except ValueError as exc:
            self.fail(node, str(exc))
        self.fail(node, f"unknown type {kind!r}")

    def dim(self, node):
        tok = node.children[0]
        if node.data == "int_dim":
            return int(tok)
        if node.data == "sym_dim":
            return size_symbol(str(tok))
        return expr_from_text(_unquote(str(tok)[1:]))

    def lookup(self, token) -> Value:
        name = str(token)[1:]
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        self.fail(token, f"use of undefined value %{name}")

    def define(self, token, value: Value):
        name = str(token)[1:]
        scope = self.scopes[-1]
        if any(name in s for s in self.scopes):
            self.fail(token, f"value %{name} defined twice")
        scope[name] = value
        if not name[0].isdigit():
            value.name = name

    def op(self, node) -> Op:
        results_node, name_tok, *rest = node.children
        name = str(name_tok)
        if name not in OPS:
            self.fail(name_tok, f"unknown op {name!r}")
        operands, attrs, types, loc, regions = [], {}, [], UNKNOWN_LOC, []
        tree = _lark().Tree
        for child in rest:
            if child is None:
                continue
            if isinstance(child, tree):
                if child.data == "operand":
                    operands.append(self.lookup(child.children[0]))
                elif child.data == "attr":
                    attrs[str(child.children[0])] = self.attr(child.children[1])
                elif child.data in ("scalar_type", "shaped_type"):
                    types.append(self.type(child))
                elif child.data == "loc":
                    f, line, col = child.children
                    loc = Loc(_unquote(f), int(line), int(col))
                elif child.data == "region":
                    regions.append(child)
        result_names = list(results_node.children) if results_node is not None else []
        if len(result_names) != len(types):
            self.fail(name_tok, f"{name}: {len(result_names)} results but {len(types)} types")
        blocks = [self.region(r) for r in regions]
        op = Op(name, operands, types, attrs, blocks, loc)
        for tok, value in zip(result_names, op.results):
            self.define(tok, value)
        return op

    def region(self, node) -> Block:
        args_node, *ops = node.children
        block = Block()
        self.scopes.append({})
        try:
            if args_node is not None:
                for arg in args_node.children:
                    if arg is None:
                        continue
                    self.define(arg.children[0], block.add_arg(self.type(arg.children[1])))
            for op_node in ops:
                if op_node is not None:
                    block.append(self.op(op_node))
        finally:
            self.scopes.pop()
        return block


def parse(text: str) -> Module:
    try:
        tree = _parser().parse(text)
    except _lark().exceptions.UnexpectedInput as exc:
        raise IRParseError(f"line {exc.line}, column {exc.column}: unexpected input\n"
                           f"{exc.get_context(text)}") from None
    module = Module()
    for op_node in tree.children:
        builder = _Builder()
        builder.scopes.append({})
        module.body.append(builder.op(op_node))
    return module
