"""Python AST -> IR. One visitor method per supported node; anything else is rejected by name.

The tracer evaluates Python-level values (constexprs, sizes, tuples) while it walks the
function, and emits IR for tile values. Loop-carried variables become SSA values carried by
the loop op; constexpr `if`s are decided at trace time.
"""
from __future__ import annotations

import ast
import builtins as py_builtins
import inspect
import os
import textwrap
from dataclasses import dataclass, field

import sympy

from . import language as fl_module
from .builtins import TENSOR_METHODS, TILE_METHODS, call_builtin, call_host_builtin
from .dsl import Func, constexpr
from .errors import CompilationError
from .ir import HANDLE, Block, Builder, Loc, Op, TensorType, TileType, Value, scalar
from .ir import dtypes as D
from .ir.symbolic import hinted_value, next_pow2
from .semantic import Semantic, SemanticError, broadcast_shapes, size_value
from .tensors import TensorVal
from .values import SymSize, TensorArg, TileHandle, TileVal

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div",
           ast.FloorDiv: "floordiv", ast.Mod: "mod", ast.Pow: "pow", ast.BitAnd: "and",
           ast.BitOr: "or", ast.BitXor: "xor"}
_PY_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
              ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
              ast.Pow: lambda a, b: a ** b, ast.BitAnd: lambda a, b: a & b,
              ast.BitOr: lambda a, b: a | b, ast.BitXor: lambda a, b: a ^ b,
              ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b}
_CMPOPS = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt",
           ast.GtE: "ge"}
_PY_CMPOPS = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
              ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
              ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
              ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
              ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
# Python builtins a kernel may call on trace-time values.
_PY_FUNCTIONS = {py_builtins.min, py_builtins.max, py_builtins.len, py_builtins.int,
                 py_builtins.float, py_builtins.bool, py_builtins.abs, py_builtins.isinstance,
                 py_builtins.tuple, py_builtins.list, py_builtins.print, py_builtins.enumerate,
                 py_builtins.zip, py_builtins.range}
_PY_VALUES = (int, float, bool, str, type(None), tuple, list, D.DType)


# values that become IR ops when computed with (tiles, and whole tensors outside tile loops)
_TRACED = (TileVal, TensorArg)


def _is_python(value) -> bool:
    return isinstance(value, _PY_VALUES) and not isinstance(value, (TileVal,))


@dataclass
class TraceOptions:
    """What the tracer needs to know beyond the arguments' types."""
    blocks: list | None = None            # Config.blocks, in source order of tile dims
    default_block: object = None   # (dim index, parallel, n dims, position) -> int
    size_hints: dict = field(default_factory=dict)   # symbol name -> concrete size
    wide_symbols: set = field(default_factory=set)   # int params needing int64


class _Return(Exception):
    def __init__(self, value):
        self.value = value


@dataclass
class _Source:
    fn: object
    file: str
    line0: int
    col0: int
    tree: ast.FunctionDef

    @classmethod
    def of(cls, fn) -> "_Source":
        try:
            lines, line0 = inspect.getsourcelines(fn)
        except (OSError, TypeError) as exc:
            raise CompilationError(f"cannot read the source of {fn.__name__}: {exc}") from None
        text = "".join(lines)
        dedented = textwrap.dedent(text)
        col0 = len(lines[0]) - len(lines[0].lstrip()) if dedented != text else 0
        tree = ast.parse(dedented).body[0]
        if not isinstance(tree, ast.FunctionDef):
            raise CompilationError(f"{fn.__name__} is not a plain function")
        return cls(fn, inspect.getsourcefile(fn) or "<unknown>", line0, col0, tree)


def _assigned_names(stmts) -> list[str]:
    names = []
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                if node.id not in names:
                    names.append(node.id)
    return names


class Tracer(ast.NodeVisitor):
    """Traces one function (a kernel, or a helper being inlined into one)."""

    def __init__(self, source: _Source, builder: Builder, options: TraceOptions, state):
        self.src = source
        self.b = builder
        self.sem = Semantic(builder)
        self.sem.wide_symbols = options.wide_symbols
        self.sem.tensors.hints = options.size_hints
        self.sem.tensors.equal_sizes = state.equal_sizes
        self.options = options
        self.state = state              # shared with inlined helpers: tile counter, guards
        self.vars: dict[str, object] = {}
        self.current_target: str | None = None   # name being assigned (names allocs)
        self.in_runtime_flow = 0                  # depth of runtime loops/ifs (no return)
        self.in_address = False     # tracing fl.load/store's first argument: x[...] is an address

    # -- locations and errors --------------------------------------------------------------
    def loc_of(self, node) -> Loc:
        return Loc(self.src.file, self.src.line0 + node.lineno - 1,
                   self.src.col0 + node.col_offset + 1)

    def error(self, node, message: str) -> CompilationError:
        loc = self.loc_of(node)
        return CompilationError(message, loc.file, loc.line, loc.col,
                                self.state.kernel_name)

    def visit(self, node):
        if not hasattr(node, "lineno"):
            return super().visit(node)
        saved = self.b.loc
        self.b.loc = self.loc_of(node)
        try:
            return super().visit(node)
        except (CompilationError, _Return):
            raise
        except Exception as exc:                      # wrapped exactly once, here
            if os.environ.get("FUSEC_FRONTEND_DEBUG") == "1":
                raise
            if isinstance(exc, SemanticError):
                message = str(exc)
            else:
                message = f"{type(exc).__name__}: {exc}"
            raise self.error(node, message) from None
        finally:
            self.b.loc = saved

    def generic_visit(self, node):
        raise self.error(node, f"unsupported syntax: {type(node).__name__}")

    # -- where code may appear -------------------------------------------------------------
    def check_host(self, what: str):
        if self.state.tile_depth:
            raise SemanticError(f"{what} allocates an output and must be called before the "
                                "tile loops (in the kernel's host part)")

    def check_device(self, what: str):
        if not self.state.tile_depth:
            raise SemanticError(f"{what} must be inside a tile loop (`for t in fusec.tile(...)`); "
                                "outside them, operations take whole tensors")

    def full_block(self, size) -> int:
        """The tile length for a whole-extent slice `:` of a dim of `size`: the next power of
        two of its size in this specialization (recorded as a guard of the compiled kernel)."""
        expr = size_value(size) if not isinstance(size, sympy.Basic) else size
        value = hinted_value(expr, self.options.size_hints)
        if value is None:
            raise SemanticError(f"':' over a size of unknown value ({expr})")
        if not expr.is_Integer and expr not in self.state.guards:
            self.state.guards.append(expr)
        return next_pow2(value)

    # -- names -----------------------------------------------------------------------------
    def lookup(self, name: str, node):
        if name in self.vars:
            return self.vars[name]
        fn = self.src.fn
        closure = inspect.getclosurevars(fn) if fn.__closure__ else None
        if closure and name in closure.nonlocals:
            return closure.nonlocals[name]
        if name in fn.__globals__:
            return fn.__globals__[name]
        if hasattr(py_builtins, name):
            return getattr(py_builtins, name)
        raise self.error(node, f"name {name!r} is not defined")

    def assign(self, target, value, node):
        if isinstance(target, ast.Name):
            if isinstance(value, _TRACED) and value.value.name is None and value.value.op \
                    is not None:
                value.value.name = target.id
            self.vars[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, TileVal) or not hasattr(value, "__len__"):
                raise self.error(node, "can only unpack tuples (e.g. `M, N = x.shape`)")
            if len(value) != len(target.elts):
                raise self.error(node, f"cannot unpack {len(value)} values into "
                                       f"{len(target.elts)} names")
            for t, v in zip(target.elts, value):
                self.assign(t, v, node)
        elif isinstance(target, ast.Subscript):
            obj = self.visit(target.value)
            index = self.visit(target.slice)
            if not isinstance(obj, TensorArg):
                raise self.error(target, "only tensors can be stored into (x[tm, :] = value)")
            items = _as_index_tuple(index)
            if not self.state.tile_depth and all(i == slice(None) for i in items):
                self.sem.tensors.write(obj, value)      # out[:] = whole-tensor value
                return
            if isinstance(obj, TensorVal):
                raise self.error(target, f"{obj.name!r} is a computed whole-tensor value; write "
                                         "it into a tensor (out[:] = ...) to store into it")
            self.check_device("storing into a tensor")
            self.sem.store(obj, _as_index_tuple(index), value, self.full_block)
        else:
            raise self.error(target, f"unsupported assignment target {type(target).__name__}")

    # -- statements ------------------------------------------------------------------------
    def visit_body(self, stmts):
        for stmt in stmts:
            self.visit(stmt)

    def visit_Assign(self, node):
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        self.current_target = names[0] if names else None
        value = self.visit(node.value)
        self.current_target = None
        for target in node.targets:
            self.assign(target, value, node)

    def visit_AnnAssign(self, node):
        if node.value is None:
            return
        self.assign(node.target, self.visit(node.value), node)

    def visit_AugAssign(self, node):
        target = node.target
        if isinstance(target, ast.Name):
            current = self.lookup(target.id, node)
        elif isinstance(target, ast.Subscript):
            current = self.visit(ast.Subscript(target.value, target.slice, ast.Load(),
                                               lineno=target.lineno, col_offset=target.col_offset))
        else:
            raise self.error(target, f"unsupported assignment target {type(target).__name__}")
        self.assign(target, self.binop(type(node.op), current, self.visit(node.value), node), node)

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return                                          # docstring
        self.visit(node.value)

    def visit_Pass(self, node):
        pass

    def visit_Return(self, node):
        value = self.visit(node.value) if node.value is not None else None
        if self.in_runtime_flow:
            raise self.error(node, "return inside a runtime loop or if is not supported")
        raise _Return(value)

    def visit_If(self, node):
        cond = self.visit(node.test)
        if not isinstance(cond, TileVal):
            self.visit_body(node.body if cond else node.orelse)
            return
        self.runtime_if(node, cond)

    def visit_For(self, node):
        if node.orelse:
            raise self.error(node, "for ... else is not supported")
        it = node.iter
        if isinstance(it, ast.Call):
            fn = self.visit(it.func)
            if getattr(fn, "_fusec_tile", False):
                return self.tile_loop(node, it)
            if fn is py_builtins.range:
                if it.keywords:
                    raise self.error(it, "range() takes no keyword arguments")
                return self.range_loop(node, [self.visit(a) for a in it.args])
        seq = self.visit(it)
        if isinstance(seq, (tuple, list)):
            for item in seq:                                # unrolled at trace time
                self.assign(node.target, item, node)
                self.visit_body(node.body)
            return
        raise self.error(it, "for loops iterate over fusec.tile(...), range(...) or a "
                             "constant tuple")

    def _unsupported_stmt(self, node):
        raise self.error(node, f"unsupported statement: {type(node).__name__}")

    visit_While = visit_With = visit_Try = visit_Raise = visit_Delete = visit_Global = \
        visit_Nonlocal = visit_FunctionDef = visit_ClassDef = visit_Import = \
        visit_ImportFrom = visit_AsyncFor = visit_AsyncWith = visit_Break = \
        visit_Continue = visit_Match = _unsupported_stmt

    def visit_Assert(self, node):
        cond = self.visit(node.test)
        if isinstance(cond, TileVal):
            raise self.error(node, "assert on a runtime value is not supported")
        if not cond:
            msg = self.visit(node.msg) if node.msg is not None else "assertion failed"
            raise self.error(node, f"static assert failed: {msg}")

    # -- loops -----------------------------------------------------------------------------
    def tile_loop(self, node, call):
        if len(call.args) != 1 or isinstance(call.args[0], ast.Starred) or \
                {k.arg for k in call.keywords} - {"block"}:
            raise self.error(call, "fusec.tile takes (sizes, block=None): one size, or the "
                                   "sizes as one tuple (fusec.tile(x.shape), "
                                   "fusec.tile((M, N)))")
        args = [self.visit(a) for a in call.args]
        kwargs = {k.arg: self.visit(k.value) for k in call.keywords}
        sizes = args[0]
        multi = isinstance(sizes, (tuple, list))
        sizes = list(sizes) if multi else [sizes]
        block = kwargs.get("block")
        blocks = list(block) if isinstance(block, (tuple, list)) else [block] * len(sizes)
        if len(blocks) != len(sizes):
            raise self.error(call, f"fusec.tile got {len(sizes)} sizes but {len(blocks)} blocks")
        parallel = self.state.tile_depth == 0
        dims = []
        for position, (size, fixed) in enumerate(zip(sizes, blocks)):
            dim = self.state.next_dim()
            extent = size_value(size)
            block = self.choose_block(dim, fixed, parallel, len(sizes), position)
            dims.append((extent, block, dim))
        targets = node.target.elts if isinstance(node.target, ast.Tuple) else [node.target]
        if len(targets) != len(dims):
            raise self.error(node.target, f"fusec.tile yields {len(dims)} tile(s); unpack "
                                          f"them into {len(dims)} name(s)")
        if parallel:
            self.parallel_loops(node, dims, targets)
            return
        if len(dims) != 1:
            raise self.error(call, "nested (sequential) fusec.tile loops take one size")
        self.state.tile_depth += 1
        try:
            self._carried(node, "tile", (dims[0], targets[0]))
        finally:
            self.state.tile_depth -= 1

    def choose_block(self, dim: int, fixed, parallel: bool, ndims: int,
                     position: int) -> int:
        if fixed is not None:
            block = fixed
        elif self.options.blocks is not None:
            if dim >= len(self.options.blocks):
                raise SemanticError(f"the config lists {len(self.options.blocks)} block sizes "
                                    f"but the kernel has more tile dims (dim {dim})")
            block = self.options.blocks[dim]
        else:
            block = self.options.default_block(dim, parallel, ndims, position)
        if not isinstance(block, int) or isinstance(block, bool) or block < 1:
            raise SemanticError(f"block sizes must be positive ints, got {block!r}")
        return block

    def _handle(self, arg: Value, extent, block, dim) -> TileHandle:
        h = TileHandle(arg, block, extent, dim)
        self.sem.handle_index(h)        # created at the top of the loop body so that every
        self.sem.handle_begin(h)        # nested region can use them
        self.sem.handle_mask(h)
        return h

    def parallel_loops(self, node, dims, targets):
        outer_block = self.b.block
        self.state.tile_depth += 1
        try:
            with self.b.at_end(outer_block):
                blocks, handles = [], []
                for extent, block, dim in dims:
                    body = Block([HANDLE])
                    self.b.create("tile_for", [], [], {"extent": extent, "block": block,
                                                       "parallel": True, "dim": dim}, [body])
                    self.b.block = body
                    blocks.append(body)
                    handles.append(self._handle(body.args[0], extent, block, dim))
                saved = dict(self.vars)
                for target, h in zip(targets, handles):
                    self.assign(target, h, node)
                with self.b.at_end(blocks[-1]):
                    self.visit_body(node.body)
                for body in blocks:
                    with self.b.at_end(body):
                        self.b.create("yield")
                self.vars = saved
        finally:
            self.state.tile_depth -= 1

    def range_loop(self, node, args):
        if not 1 <= len(args) <= 3:
            raise self.error(node.iter, "range() takes 1 to 3 arguments")
        lo, hi, step = (0, args[0], 1) if len(args) == 1 else \
            (args[0], args[1], 1) if len(args) == 2 else args
        if isinstance(step, int) and step == 0:
            raise self.error(node.iter, "range() step must not be zero")
        self._carried(node, "range", (lo, hi, step))

    def _carried(self, node, kind, spec):
        """A sequential loop whose body may reassign outer variables (carried as SSA)."""
        carried = [n for n in _assigned_names(node.body)
                   if n in self.vars and _carriable(self.vars[n])]
        inits = [self.sem.to_tile(self.vars[n]) for n in carried]
        for _ in range(3):
            ok, result = self._try_carried(node, kind, spec, carried, inits)
            if ok:
                break
            if isinstance(result, str):
                raise self.error(node, result)
            inits = result
        else:
            raise self.error(node, "the types of loop-carried variables did not settle")
        op, weak = result
        for name, value, init, out_weak in zip(carried, op.results, inits, weak):
            self.vars[name] = TileVal(value, init.masks, init.weak and out_weak)

    def _try_carried(self, node, kind, spec, carried, inits):
        """Trace the loop once. Returns (True, loop op), or (False, widened inits) when a
        carried variable initialized from a Python number needs another type, or
        (False, message) when a carried variable changes type."""
        saved_vars = dict(self.vars)
        saved_state = self.state.snapshot()
        types = [v.type for v in inits]
        if kind == "tile":
            (extent, block, dim), target = spec
            body = Block([HANDLE] + types)
            with self.b.at_end(body):
                self.assign(target, self._handle(body.args[0], extent, block, dim), node)
            op_name, operands = "tile_for", [v.value for v in inits]
            attrs = {"extent": extent, "block": block, "parallel": False, "dim": dim}
        else:
            tiles = [self.sem.to_tile(v) for v in spec]
            if any(not (t.dtype.is_int or t.dtype.is_bool) or t.rank for t in tiles):
                raise self.error(node.iter, "range() takes int scalars")
            bound_type = D.int64 if any(t.dtype == D.int64 for t in tiles) else D.int32
            bounds = [self.sem.cast(t, bound_type).value for t in tiles]
            body = Block([scalar(bound_type)] + types)
            self.assign(node.target, TileVal(body.args[0]), node)
            op_name, operands, attrs = "for", bounds + [v.value for v in inits], {}
        for name, arg, init in zip(carried, body.args[1:], inits):
            self.vars[name] = TileVal(arg, init.masks, init.weak)
        self.in_runtime_flow += 1
        try:
            with self.b.at_end(body):
                self.visit_body(node.body)
                self._check_rebinding(node, saved_vars, "loop")
                outs = [self.sem.to_tile(self.vars[n]) for n in carried]
                if all(o.type == i.type for o, i in zip(outs, inits)):
                    self.b.create("yield", [o.value for o in outs])
        finally:
            self.in_runtime_flow -= 1
            self.vars = saved_vars
        if all(o.type == i.type for o, i in zip(outs, inits)):
            op = self.b.create(op_name, operands, types, attrs, [body])
            return True, (op, [o.weak for o in outs])
        self.state.restore(saved_state)
        widened = []
        for name, out, init in zip(carried, outs, inits):
            if out.type == init.type:
                widened.append(init)
                continue
            try:
                shape = broadcast_shapes(init.shape, out.shape)
            except SemanticError:
                shape = None
            dtype = self.sem.result_dtype([init, out]) if init.weak else init.dtype
            if shape != out.shape or dtype != out.dtype:
                return False, (f"loop-carried variable {name!r} changes type inside the loop "
                               f"from {init.type} to {out.type}; initialize it with that "
                               "shape and dtype before the loop")
            widened.append(self.sem.broadcast_to(self.sem.cast(init, dtype), shape))
        return False, widened

    def runtime_if(self, node, cond: TileVal):
        if cond.rank != 0:
            raise self.error(node.test, f"an if condition must be a scalar, got a tile of shape "
                                        f"{list(cond.shape)}; use fl.where for lane-wise choice")
        if not cond.dtype.is_bool:
            cond = self.sem.compare("ne", cond, 0)
        before = dict(self.vars)
        names = _assigned_names(node.body + node.orelse)
        branches = []
        self.in_runtime_flow += 1
        try:
            for stmts in (node.body, node.orelse):
                block = Block()
                self.vars = dict(before)
                with self.b.at_end(block):
                    self.visit_body(stmts)
                    self._check_rebinding(node, before, "if")
                branches.append((block, dict(self.vars)))
        finally:
            self.in_runtime_flow -= 1
        (then_block, then_vars), (else_block, else_vars) = branches
        results = [n for n in names if n in then_vars and n in else_vars
                   and _carriable(then_vars[n]) and _carriable(else_vars[n])
                   and (then_vars[n] is not before.get(n) or else_vars[n] is not before.get(n))]
        outs = []
        for n in results:
            a, b = then_vars[n], else_vars[n]
            dtype = self.sem.result_dtype([a, b])
            with self.b.at_end(then_block):
                ta = self.sem.to_tile(a, dtype)
            with self.b.at_end(else_block):
                tb = self.sem.to_tile(b, dtype)
            shape = broadcast_shapes(ta.shape, tb.shape)
            with self.b.at_end(then_block):
                ta = self.sem.broadcast_to(ta, shape)
            with self.b.at_end(else_block):
                tb = self.sem.broadcast_to(tb, shape)
            outs.append((n, ta, tb))
        # lane masks that differ between the branches leave the `if` as extra results
        mask_slots = [(i, d) for i, (_, ta, tb) in enumerate(outs)
                      for d, (m1, m2) in enumerate(zip(ta.masks, tb.masks)) if m1 is not m2]
        yields = []
        for block, pick in ((then_block, 1), (else_block, 2)):
            with self.b.at_end(block):
                masks = []
                for i, d in mask_slots:
                    tile = outs[i][pick]
                    m = tile.masks[d]
                    masks.append(m if m is not None else
                                 self.sem.const(True, D.bool_, (tile.shape[d],)).value)
                values = [o[pick].value for o in outs] + masks
                self.b.create("yield", values)
                yields.append(values)
        op = self.b.create("if", [cond.value], [v.type for v in yields[0]], {},
                           [then_block, else_block])
        self.vars = before
        extra = dict(zip(mask_slots, op.results[len(outs):]))
        for i, ((n, ta, tb), r) in enumerate(zip(outs, op.results)):
            masks = tuple(m1 if m1 is m2 else extra[(i, d)]
                          for d, (m1, m2) in enumerate(zip(ta.masks, tb.masks)))
            self.vars[n] = TileVal(r, masks, ta.weak and tb.weak)
        for n in names:                     # defined in one branch only: not visible after
            if n not in results and (n in then_vars or n in else_vars) and n not in before:
                self.vars.pop(n, None)

    def _check_rebinding(self, node, before: dict, what: str):
        """Only tile values may change inside runtime control flow (they become SSA values
        carried by the loop or `if`); a tensor, size or tile rebound there cannot."""
        for name, old in before.items():
            new = self.vars.get(name, old)
            if new is not old and not (_carriable(old) and _carriable(new)):
                raise self.error(node, f"{name!r} ({_describe_value(old)}) is rebound inside a "
                                       f"runtime {what}; only tile values can change there")

    # -- expressions -----------------------------------------------------------------------
    def visit_Constant(self, node):
        return node.value

    def visit_Name(self, node):
        return self.lookup(node.id, node)

    def visit_Tuple(self, node):
        return tuple(self.visit(e) for e in node.elts)

    visit_List = visit_Tuple

    def visit_Slice(self, node):
        parts = [self.visit(p) if p is not None else None
                 for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def visit_Attribute(self, node):
        obj = self.visit(node.value)
        name = node.attr
        if isinstance(obj, TileVal):
            if name == "T":
                return self.sem.permute(obj, [1, 0]) if obj.rank == 2 else _raise(
                    f".T needs a 2-D tile, got shape {list(obj.shape)}")
            if name == "shape":
                return obj.shape
            if name == "dtype":
                return obj.dtype
            if name in TILE_METHODS:
                return _BoundMethod(name, obj)
            raise self.error(node, f"tiles have no attribute {name!r}")
        if isinstance(obj, TileHandle):
            table = {"index": lambda: self.sem.handle_index(obj),
                     "begin": lambda: self.sem.handle_begin(obj), "block": lambda: obj.block}
            if name not in table:
                raise self.error(node, f"a tile has .index, .begin and .block, not .{name}")
            return table[name]()
        if isinstance(obj, TensorArg):
            if name in ("shape", "dtype", "ndim"):
                return getattr(obj, name)
            if not self.state.tile_depth and name == "T":
                return self.sem.permute(obj, list(reversed(range(obj.ndim))))
            if not self.state.tile_depth and name in TILE_METHODS:
                return _BoundMethod(name, obj)        # whole-tensor x.sum(axis=1) & co
            if not self.state.tile_depth and name in TENSOR_METHODS:
                return _BoundMethod(name, obj, TENSOR_METHODS)    # x.reshape(...) & co
            raise self.error(node, f"tensors in kernels have .shape, .dtype and .ndim, not "
                                   f".{name}")
        if obj is fl_module and not hasattr(obj, name):
            raise SemanticError(f"unknown function fl.{name}")
        try:
            return getattr(obj, name)
        except AttributeError:
            raise SemanticError(f"{_describe(obj)} has no attribute {name!r}") from None

    def visit_BinOp(self, node):
        return self.binop(type(node.op), self.visit(node.left), self.visit(node.right), node)

    def binop(self, op, a, b, node):
        if op is ast.MatMult:
            return self.sem.dot(a, b)
        if not isinstance(a, _TRACED) and not isinstance(b, _TRACED):
            if op not in _PY_BINOPS:
                raise self.error(node, f"unsupported operator {op.__name__}")
            try:
                return _PY_BINOPS[op](a, b)
            except TypeError:
                if not isinstance(a, (SymSize, int, float)) or not isinstance(b, (SymSize, int,
                                                                                   float)):
                    raise
        if op not in _BINOPS:
            raise self.error(node, f"unsupported operator on tiles: {op.__name__}")
        return self.sem.binary(_BINOPS[op], (a), (b))

    def visit_UnaryOp(self, node):
        v = self.visit(node.operand)
        if not isinstance(v, _TRACED):
            ops = {ast.USub: lambda x: -x, ast.UAdd: lambda x: x, ast.Not: lambda x: not x,
                   ast.Invert: lambda x: ~x}
            return ops[type(node.op)](v)
        if isinstance(node.op, ast.UAdd):
            return v
        if isinstance(node.op, ast.Not):
            raise self.error(node, "`not` on a tile is ambiguous; use ~ (bitwise not) or "
                                   "`== 0`")
        return self.sem.unary("neg" if isinstance(node.op, ast.USub) else "not", v)

    def visit_Compare(self, node):
        left = self.visit(node.left)
        if len(node.ops) != 1:
            values = [left] + [self.visit(c) for c in node.comparators]
            if any(isinstance(v, TileVal) for v in values):
                raise self.error(node, "chained comparisons of tiles are not supported; "
                                       "combine them with &")
            return all(_PY_CMPOPS[type(op)](a, b)
                       for op, a, b in zip(node.ops, values, values[1:]))
        right = self.visit(node.comparators[0])
        op = type(node.ops[0])
        if not isinstance(left, _TRACED) and not isinstance(right, _TRACED):
            if isinstance(left, SymSize) or isinstance(right, SymSize):
                return self.sem.compare(_CMPOPS[op], (left), (right))
            return _PY_CMPOPS[op](left, right)
        if op not in _CMPOPS:
            raise self.error(node, f"unsupported comparison on tiles: {op.__name__}")
        return self.sem.compare(_CMPOPS[op], (left), (right))

    def visit_BoolOp(self, node):
        is_and = isinstance(node.op, ast.And)
        value = None
        for operand in node.values:
            value = self.visit(operand)
            if isinstance(value, TileVal):
                raise self.error(node, "`and`/`or` on tiles are not supported; use & and |")
            if bool(value) != is_and:
                return value
        return value

    def visit_IfExp(self, node):
        cond = self.visit(node.test)
        if isinstance(cond, TileVal):
            return self.sem.where(cond, self.visit(node.body), self.visit(node.orelse))
        return self.visit(node.body if cond else node.orelse)

    def visit_Subscript(self, node):
        address, self.in_address = self.in_address, False    # only the outermost x[...]
        try:
            obj = self.visit(node.value)
            index = self.visit(node.slice)
        finally:
            self.in_address = address
        if isinstance(obj, TensorArg):
            if address:
                return (obj, _as_index_tuple(index))
            if not self.state.tile_depth:
                return self.sem.tensors.index(obj, _as_index_tuple(index))
            if isinstance(obj, TensorVal):
                raise self.error(node, f"{obj.name!r} is a whole-tensor value computed outside "
                                       "the tile loops; write it into a tensor (out = "
                                       "fusec.empty_like(x); out[:] = ...) to index it in one")
            self.check_device(f"loading from {obj.name!r}")
            return self.sem.load(obj, _as_index_tuple(index), self.full_block)
        if isinstance(obj, TileVal):
            return self.reshape_subscript(obj, _as_index_tuple(index), node)
        try:
            return obj[index]
        except Exception as exc:
            raise self.error(node, f"cannot index {_describe(obj)}: {exc}") from None

    def reshape_subscript(self, x: TileVal, items, node):
        """t[:, None] / t[None, :]: insert size-1 dims; `:` keeps a dim."""
        out, dim = x, 0
        for item in items:
            if item is None:
                out = self.sem.expand_dims(out, dim)
                dim += 1
            elif isinstance(item, slice) and item == slice(None):
                dim += 1
            else:
                raise self.error(node, "tiles can only be indexed with ':' and None "
                                       "(to add dims); index tensors to load elements")
        if dim - sum(i is None for i in items) > x.rank:
            raise self.error(node, f"too many indices for a tile of rank {x.rank}")
        return out

    def visit_Call(self, node):
        fn = self.visit(node.func)
        if getattr(fn, "_fusec_builtin", None) in ("load", "store", "atomic_add") and node.args:
            self.in_address = True
            try:
                first = self.visit(node.args[0])
            finally:
                self.in_address = False
            args = [first] + [self.visit(a) for a in node.args[1:]]
        else:
            args = [self.visit(a) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.error(node, "**kwargs in calls are not supported")
            kwargs[kw.arg] = self.visit(kw.value)
        return self.call(fn, args, kwargs, node)

    def call(self, fn, args, kwargs, node):
        builtin = getattr(fn, "_fusec_builtin", None)
        if builtin is not None:
            whole = any(isinstance(a, TensorArg) for a in (*args, *kwargs.values())) or any(
                isinstance(a, (list, tuple)) and any(isinstance(x, TensorArg) for x in a)
                for a in args)                       # fl.cat((a, b)): tensors in a tuple
            host_level = builtin in ("full", "zeros", "arange") and not self.state.tile_depth
            if builtin not in ("cdiv",) and not whole and not host_level:
                self.check_device(f"fl.{builtin}")
            return call_builtin(self, builtin, args, kwargs)
        host = getattr(fn, "_fusec_host", None)
        if host is not None:
            return call_host_builtin(self, host, args, kwargs)
        if isinstance(fn, _BoundMethod):
            return fn.call(self, args, kwargs)
        if isinstance(fn, Func):
            return self.inline(fn, args, kwargs, node)
        if getattr(fn, "_fusec_tile", False):
            raise self.error(node, "fusec.tile is only used as `for t in fusec.tile(...)`")
        if fn in _PY_FUNCTIONS or isinstance(fn, type) and issubclass(fn, D.DType):
            if any(isinstance(a, TileVal) for a in args) and fn in (py_builtins.min,
                                                                    py_builtins.max):
                name = "minimum" if fn is py_builtins.min else "maximum"
                out = args[0]
                for a in args[1:]:
                    out = self.sem.binary(name, out, a)
                return out
            if fn in (py_builtins.min, py_builtins.max) and any(isinstance(a, SymSize)
                                                                for a in args):
                exprs = [size_value(a) for a in args]
                expr = (sympy.Min if fn is py_builtins.min else sympy.Max)(*exprs)
                return int(expr) if expr.is_Integer else SymSize(expr)
            return fn(*args, **kwargs)
        if fn is constexpr:
            return args[0] if args else None
        raise self.error(node, f"cannot call {_describe(fn)} inside a kernel; use fl.* "
                               "functions or @fusec.func helpers")

    def inline(self, func: Func, args, kwargs, node):
        source = _Source.of(func.fn)
        sub = Tracer(source, self.b, self.options, self.state)
        sub.in_runtime_flow = 0
        sig = inspect.signature(func.fn)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise self.error(node, f"{func.fn.__name__}: {exc}") from None
        bound.apply_defaults()
        sub.vars = dict(bound.arguments)
        try:
            sub.visit_body(source.tree.body)
        except _Return as r:
            return r.value
        return None


class _BoundMethod:
    def __init__(self, name: str, obj: TileVal, table: dict = TILE_METHODS):
        self.name, self.obj, self.table = name, obj, table

    def call(self, tracer, args, kwargs):
        fn = self.table[self.name]
        try:
            inspect.signature(fn).bind(tracer, self.obj, *args, **kwargs)
        except TypeError as exc:
            raise SemanticError(f".{self.name}(): {exc}") from None
        return fn(tracer, self.obj, *args, **kwargs)


def _raise(message):
    raise SemanticError(message)


def _carriable(value) -> bool:
    return isinstance(value, (TileVal, int, float, bool)) and not isinstance(value, SymSize)


def _as_index_tuple(index):
    return index if isinstance(index, tuple) else (index,)


def _describe_value(value) -> str:
    kinds = {TensorArg: "a tensor", SymSize: "a size", TileHandle: "a tile"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _describe(obj) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


@dataclass
class TraceState:
    kernel_name: str
    tile_depth: int = 0
    dims: int = 0
    guards: list = field(default_factory=list)
    equal_sizes: list = field(default_factory=list)   # [size, size] assumed equal

    def next_dim(self) -> int:
        self.dims += 1
        return self.dims - 1

    def snapshot(self):
        return (self.dims, list(self.guards))

    def restore(self, snap):
        self.dims, self.guards = snap[0], list(snap[1])


__all__ = ["Tracer", "TraceOptions", "TraceState", "_Source", "_Return"]
