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
    """Target hooks used by the target-neutral lowering (cpu.py, nvptx.py)."""

    name = "generic"
    # LLVM intrinsics / instructions the target cannot lower exactly, each replaced by a
    # call to a math library function (llvm name -> libm name; `frem` is the instruction)
    library_fallbacks: dict[str, str] = {}
    # GPU targets: the SIMT mapping's per-function state (simt.SimtState); None: programs
    # run serially, one per function call
    simt = None
    # 2**q for any float32 q as one instruction, (ctx, q) -> value: within 2 ulp where the
    # result is normal (subnormal results may flush to 0). math.py's exp family takes 2**f
    # from it with only the integer part of the exponent split off (2**n, a normal power
    # of two), erf its erfc; None: range reduction and polynomials
    exp2_hardware = None
    # fma(a, b, c) clamped to [0, 1], NaN to 0, as one instruction, (ctx, a, b, c) -> value:
    # clamps on the FMA pipe instead of two selects; None: selects
    fma_saturate = None
    # gelu as 0.5 x (1 + erf(x / sqrt 2)) as written (math.gelu_f32): cheaper, with the
    # negative tail's error relative to |x| rather than to the result
    gelu_tail_absolute = False
    # float32 -> bfloat16 bits (round to nearest even) in the low half of an i32 as one
    # instruction, (ctx, x) -> value; None: integer arithmetic (NaN -> 0x7FC0)
    bf16_bits = None

    def libm(self, name: str, ty: ir.Type) -> str:
        """The symbol of a scalar math library function (`exp` for double, ...)."""
        raise NotImplementedError(f"no math library for {name} on {self.name}")

    def sum_accumulator(self, dtype) -> ir.Type:
        """The float type a `reduce sum` of float `dtype` accumulates in."""
        raise NotImplementedError

    def alloc_buffer(self, ctx: "Ctx", elem: ir.Type, count: int) -> ir.Value:
        """A pointer to `count` elements of scratch memory private to one program."""
        raise NotImplementedError

    def tensor_pointer(self, ctx: "Ctx", address: ir.Value, elem: ir.Type) -> ir.Value:
        """A pointer to `elem` from a tensor's data address (i64) passed in an argument."""
        return ctx.b.inttoptr(address, elem.as_pointer())


class Ctx:
    def __init__(self, module: ir.Module, target: Target):
        self.module = module
        self.target = target
        self.b: ir.IRBuilder | None = None
        # nesting of the code being emitted: loops.py adds one inside a loop body or a
        # branch; code at one level dominates what follows it at that level and deeper
        self.scope = 0
        # float32 values that arith.round_half made from bfloat16 bits -> those bits
        self.bf16_bits_of: dict = {}
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
        library = self.target.library_fallbacks.get(name)
        if library is not None:
            return self.call_libm(library, args)
        ret = ret or args[0].type
        types = overload if overload is not None else [ret]
        full = "llvm." + name + "".join("." + _mangle(t) for t in types)
        fn = self.declare(full, ret, [a.type for a in args])
        return self.b.call(fn, args)

    def frem(self, x: ir.Value, y: ir.Value) -> ir.Value:
        """The exact float remainder with the dividend's sign (C's fmod)."""
        library = self.target.library_fallbacks.get("frem")
        if library is not None:
            return self.call_libm(library, [x, y])
        return self.b.frem(x, y)

    def call_libm(self, name: str, args: list[ir.Value]) -> ir.Value:
        ty = args[0].type
        fn = self.declare(self.target.libm(name, ty), ty, [a.type for a in args])
        return self.b.call(fn, args)
