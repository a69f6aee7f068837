"""What every backend needs to run a kernel op: size symbols bound from the arguments, sizes
evaluated without sympy on the launch path, the launch nests and their grids."""
from __future__ import annotations

import re

import sympy

from ..ir.core import Op


def _py(expr: sympy.Expr) -> str:
    """Python source for an integer size expression (exact integer arithmetic)."""
    if isinstance(expr, sympy.Integer):
        return str(int(expr))
    if isinstance(expr, sympy.Symbol):
        return f"s[{expr.name!r}]"
    if isinstance(expr, sympy.Add):
        return "(" + " + ".join(_py(a) for a in expr.args) + ")"
    if isinstance(expr, sympy.Mul):
        num, den = sympy.fraction(expr)
        if den != 1:
            raise ValueError(f"size expression {expr} is not an integer")
        return "(" + " * ".join(_py(a) for a in expr.args) + ")"
    if isinstance(expr, sympy.Pow) and isinstance(expr.exp, sympy.Integer) and expr.exp >= 0:
        return f"({_py(expr.base)} ** {int(expr.exp)})"
    if isinstance(expr, (sympy.floor, sympy.ceiling)):
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        if isinstance(expr, sympy.floor):
            return f"(({_py(num)}) // ({_py(den)}))"
        return f"(-((-({_py(num)})) // ({_py(den)})))"
    if isinstance(expr, sympy.Mod):
        return f"(({_py(expr.args[0])}) % ({_py(expr.args[1])}))"
    if isinstance(expr, (sympy.Max, sympy.Min)):
        fn = "max" if isinstance(expr, sympy.Max) else "min"
        return f"{fn}({', '.join(_py(a) for a in expr.args)})"
    raise ValueError(f"unsupported size expression {expr}")


_COMPILED: dict[sympy.Expr, object] = {}


def size_function(expr):
    """A plain Python function symbols-dict -> int for a size expression (memoized)."""
    expr = sympy.sympify(expr)
    fn = _COMPILED.get(expr)
    if fn is None:
        fn = eval(f"lambda s: {_py(expr)}")       # source built from sympy nodes above only
        _COMPILED[expr] = fn
    return fn


def eval_size(expr, symbols: dict[str, int]) -> int:
    return size_function(expr)(symbols)


def bind_symbols(kernel: Op, params: list) -> dict[str, int]:
    """Values of the kernel's size symbols from its arguments (arrays expose .shape)."""
    symbols = {}
    for name, index, dim in kernel.attrs.get("sizes", []):
        value = params[index]
        symbols[name] = int(value) if dim < 0 else int(value.shape[dim])
    return symbols


def launch_nests(kernel: Op) -> list[Op]:
    """The top-level parallel tile loops: each is one device launch."""
    return [op for op in kernel.regions[0].ops
            if op.name == "tile_for" and op.attrs.get("parallel")]


def grid_dims(nest: Op) -> list[Op]:
    """The parallel loops of a launch nest, outermost first."""
    loops = [nest]
    while True:
        body = loops[-1].regions[0].ops
        inner = [op for op in body if op.name == "tile_for" and op.attrs.get("parallel")]
        if not inner:
            return loops
        loops.append(inner[0])


def grid_of(nest: Op, symbols: dict[str, int]) -> list[int]:
    return [-(-eval_size(loop.attrs["extent"], symbols) // loop.attrs["block"])
            for loop in grid_dims(nest)]


def size_expressions(kernel: Op) -> list:
    """Every distinct size expression a kernel evaluates at run time (tile loop extents and
    symvals), in program order: the backends pass their values as launch arguments."""
    exprs = []
    for op in kernel.walk():
        e = op.attrs.get("extent") if op.name == "tile_for" else \
            op.attrs.get("expr") if op.name == "symval" else None
        if e is not None and e not in exprs:
            exprs.append(e)
    return exprs


def arch_number(arch: str | None) -> int:
    """80 of "sm_80", 90 of "sm_90a"; 0 for anything else."""
    m = re.match(r"sm_(\d+)", arch or "")
    return int(m.group(1)) if m else 0


# resident threads and thread blocks an SM holds (CUDA C programming guide, technical
# specifications per compute capability); an arch not listed takes its family's or the
# smallest
SM_RESIDENCY = {70: (2048, 32), 75: (1024, 16), 80: (2048, 32), 86: (1536, 16),
                87: (2048, 16), 89: (1536, 24), 90: (2048, 32), 100: (2048, 32),
                120: (1536, 24)}


def per_arch(table: dict, arch: str | None, default):
    """table's entry for `arch` (keys: arch numbers): the newest listed arch of its family
    at or below it (sm_87 -> 86 where 87 is not listed), else `default`."""
    n = arch_number(arch)
    known = [a for a in table if a <= n and a // 10 == n // 10]
    return table[max(known)] if known else default


def resident_blocks(arch: str, nthreads: int, threads_wanted: int) -> int:
    """Blocks of `nthreads` threads an SM of `arch` should hold for `threads_wanted` threads,
    within what the arch allows (ptxas ignores a `.minnctapersm` beyond it), at least 1."""
    threads, blocks = per_arch(SM_RESIDENCY, arch, (1024, 16))
    return max(1, min(min(threads_wanted, threads) // nthreads, blocks))
