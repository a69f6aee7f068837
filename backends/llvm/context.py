"""What every lowering helper needs: the IR builder, the module, declared intrinsics and
library functions, and the target's hooks.

Helpers in arith.py / math.py take a Ctx and emit scalar LLVM IR at the builder's position;
the loop vectorizer later turns the loops around them into SIMD code.
"""
from __future__ import annotations

import llvmlite.ir as ir


def _mangle(ty: ir.Type) -> str:
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    return {"half": "f16", "float": "f32", "double": "f64"}[str(ty)]


class Target:
    """Target hooks used by the target-neutral lowering (cpu.py / a future nvptx.py)."""

    name = "generic"

    def libm(self, name: str, ty: ir.Type) -> str:
        """The symbol of a scalar math library function (`exp` for double, ...)."""
        raise NotImplementedError(f"no math library for {name} on {self.name}")

    def sum_accumulator(self, dtype) -> ir.Type:
        """The float type a `reduce sum` of float `dtype` accumulates in."""
        raise NotImplementedError

    def alloc_buffer(self, ctx: "Ctx", elem: ir.Type, count: int) -> ir.Value:
        """A pointer to `count` elements of scratch memory private to one program."""
        raise NotImplementedError


class Ctx:
    def __init__(self, module: ir.Module, target: Target):
        self.module = module
        self.target = target
        self.b: ir.IRBuilder | None = None
        self._fns: dict[str, ir.Function] = {}

    # -- function declarations --------------------------------------------------------------
    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self._fns.get(name)
        if fn is None:
            fn = self.module.globals.get(name)
            if fn is None:
                fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
            self._fns[name] = fn
        return fn

    def intrinsic(self, name: str, args: list[ir.Value], ret: ir.Type | None = None,
                  overload: list[ir.Type] | None = None) -> ir.Value:
        """Call `llvm.<name>.<types>`: overloaded on the result type (or `overload`)."""
        ret = ret or args[0].type
        types = overload if overload is not None else [ret]
        full = "llvm." + name + "".join("." + _mangle(t) for t in types)
        fn = self.declare(full, ret, [a.type for a in args])
        return self.b.call(fn, args)

    def call_libm(self, name: str, args: list[ir.Value]) -> ir.Value:
        ty = args[0].type
        fn = self.declare(self.target.libm(name, ty), ty, [a.type for a in args])
        return self.b.call(fn, args)
