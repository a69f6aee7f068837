"""From traced IR to KernelFacts (facts.py).

Every length of a tile is a block size, a whole-extent (`:`) length or a constant, so each
quantity q of an op (its elements, bytes, the length of its last axis, ...) is coef *
prod(b_d ** p_d). The kernel is traced once with the default blocks and once more with each
tunable dim's block multiplied by its own small prime f_d (3, 5, 7, ...): q grows by
prod(f_d ** p_d), and factoring that ratio gives every p_d from one extra trace. A kernel
whose traced structure changes with its blocks (an `if` on `t.block`) does not have this
form: its facts say `fitted=False` and the autotuner does not model it (it keeps the default
blocks or the user's configs).

The traces are the frontend's raw output (no passes): masks and index arithmetic the passes
would fold are counted too, which shifts every candidate alike.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..backends.common import size_function
from ..ir import ops as O
from ..ir.core import Block, Module, Op, Value
from ..ir.symbolic import next_pow2
from ..ir.types import TileType
from .facts import DETAILS, FACTS_ONLY, KernelFacts, Monomial, Term, TileDim
from .gpu_plan import GPUPlan
from .transposes import transposed_dims

# Relative cost of one element of an op (an add = 1), for ranking, not for cycle counts:
# transcendental functions are polynomial evaluations of a dozen or more operations.
_CHEAP = O.NUMERIC_UNARY + O.BITWISE_UNARY + O.BINARY + O.COMPARE + ("where", "cast")
WORK_PER_ELEMENT = {**{name: 1 for name in _CHEAP},
                    "div": 4, "floordiv": 6, "mod": 6, "fmod": 6, "pow": 20, "atan2": 24,
                    "hypot": 16, "copysign": 2, "floor": 1, "ceil": 1,
                    "sqrt": 4, "rsqrt": 4, "exp": 8, "exp2": 6, "log": 8, "log2": 8,
                    "sin": 12, "cos": 12, "tan": 20, "atan": 16, "tanh": 12, "sigmoid": 10, "silu": 10, "erf": 14,
                    "gelu": 16, "gelu_tanh": 14, **{name: 20 for name in O.LIBM_UNARY}}


# -- reading one trace ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Record:
    launch: int
    loops: tuple
    resource: str
    amount: int
    details: tuple = ()


def _numel(v: Value) -> int:
    return v.type.numel if isinstance(v.type, TileType) else 1


def _last(v: Value) -> int:
    return v.type.shape[-1] if isinstance(v.type, TileType) and v.type.rank else 1


class _Reader:
    """Walks one traced kernel and lists its ops' quantities in program order."""

    def __init__(self, kernel: Op, hints: dict):
        self.kernel = kernel
        self.hints = hints
        self.records: list[_Record] = []
        self.dims: list[tuple] = []      # (dim, parallel, extent, block, launch, expr)
        self.launch_count = 0
        params = kernel.regions[0].args
        unit = {(i, d) for i, d in kernel.attrs.get("unit_strides", [])}
        self.contiguous_last = {v for i, v in enumerate(params)
                                if v.type.rank and (i, v.type.rank - 1) in unit}
        self.dtypes: set = set()
        self._varies: dict = {}
        self._reads: dict = {}
        self.plan = GPUPlan(kernel)

    def read(self) -> "_Reader":
        self.visit(self.kernel.regions[0], None, ())
        return self

    def visit(self, block: Block, launch, loops):
        for op in block.ops:
            if op.name == "tile_for":
                parallel = bool(op.attrs.get("parallel"))
                inner_launch = launch
                if parallel and launch is None:
                    inner_launch = self.launch_count
                    self.launch_count += 1
                extent = size_function(op.attrs["extent"])(self.hints)
                self.dims.append((op.attrs["dim"], parallel, extent, op.attrs["block"],
                                  inner_launch, op.attrs["extent"]))
                inner_loops = loops if parallel else loops + (op.attrs["dim"],)
                self.visit(op.regions[0], inner_launch, inner_loops)
                if inner_launch is not None:
                    for r in op.results:          # loop-carried tiles live in buffers
                        self.add(inner_launch, loops, "buffer",
                                 _numel(r) * r.type.dtype.itemsize)
            elif op.regions:
                for region in op.regions:
                    self.visit(region, launch, loops)
            elif launch is not None:
                self.op(op, launch, loops)

    def add(self, launch, loops, resource, amount, *details):
        assert len(details) == len(DETAILS[resource]), resource
        self.records.append(_Record(launch, loops, resource, int(amount),
                                    tuple(int(d) for d in details)))

    def op(self, op: Op, launch, loops):
        for r in op.results:
            if isinstance(r.type, TileType) and r.type.rank:
                self.add(launch, loops, "tile", r.type.numel)
                if r in self.plan.materialized:
                    size = r.type.dtype.itemsize
                    self.add(launch, loops, "materialized", r.type.numel * size,
                             r.type.numel, size, int(self.plan.register_eligible(r)),
                             self.plan.expanded_elements(r))
        name = op.name
        if name in ("load", "store", "atomic_add"):
            tensor, idx, value, _, _ = O.memory_operands(op)
            data = op.results[0] if name == "load" else value
            n, size = _numel(data), data.type.dtype.itemsize
            run = self.run_length(tensor, idx, data)
            self.dtypes.add(tensor.type.dtype.name)
            self.add(launch, loops, "access", n * size, run * size,
                     self.tensor_bytes(tensor))
            self.add(launch, loops, "work", n, n, run)     # address arithmetic
            if name == "load":
                self.add(launch, loops, "buffer", n * size)
        elif name == "reduce":
            source, result = op.operands[0], op.results[0]
            n_in, n_out = _numel(source), max(1, _numel(result))
            self.add(launch, loops, "work", n_in, n_out, _last(source))
            self.add(launch, loops, "reduce_len", n_in // n_out)
            if self.reads_memory(source):   # not a count of mask lanes (folded by the
                last = int(op.attrs["axis"] == source.type.rank - 1)     # passes)
                self.add(launch, loops, "reduction", n_out, n_out, n_in // n_out, last)
            self.add(launch, loops, "buffer", n_out * result.type.dtype.itemsize)
        elif name == "dot":
            a, b = op.operands
            (m, k), n = a.type.shape, b.type.shape[1]
            self.add(launch, loops, "work", 2 * m * n * k, m * n, n)
            self.add(launch, loops, "buffer", m * n * op.results[0].type.dtype.itemsize)
            for resource, length in (("dot_m", m), ("dot_n", n), ("dot_k", k)):
                self.add(launch, loops, resource, length)
        elif name in WORK_PER_ELEMENT:
            result = op.results[0]
            n = _numel(result)
            self.add(launch, loops, "work", n * WORK_PER_ELEMENT[name], n, _last(result))

    def run_length(self, tensor: Value, idx, data: Value) -> int:
        """Elements of a contiguous run in this access: the tile's last axis when it walks
        the tensor's unit-stride last dim (outputs are row-major), else 1."""
        if not idx or not isinstance(data.type, TileType) or not data.type.rank:
            return 1
        unit_last = tensor in self.contiguous_last or (tensor.op is not None
                                                       and tensor.op.name == "alloc")
        return data.type.shape[-1] if unit_last and self.varies(idx[-1]) else 1

    def tensor_bytes(self, tensor: Value) -> int:
        """The whole tensor's size in this call."""
        n = tensor.type.dtype.itemsize
        for dim in tensor.type.shape:
            n *= size_function(dim)(self.hints)
        return n

    def reads_memory(self, v: Value) -> bool:
        """Whether a value depends on a load (else it is index arithmetic and constants, such
        as the count of a mean's unmasked lanes, which the passes fold when the
        specialization proves the bounds)."""
        if v not in self._reads:
            op = v.op
            self._reads[v] = op is not None and (
                op.name == "load" or any(self.reads_memory(o) for o in op.operands))
        return self._reads[v]

    def varies(self, v: Value) -> bool:
        """Whether an index tile changes across lanes (depends on a tile index or arange)."""
        if v not in self._varies:
            op = v.op
            self._varies[v] = op is not None and (
                op.name in ("tile_index", "arange") or any(self.varies(o) for o in op.operands))
        return self._varies[v]


# -- fitting the block-size functions -------------------------------------------------------
def probe_factors(dims) -> dict:
    """dim -> the prime its block is multiplied by in the probe trace."""
    primes, n = [], 3
    while len(primes) < len(dims):
        if all(n % p for p in primes):
            primes.append(n)
        n += 2
    return dict(zip(dims, primes))


def _fit(base: int, probed: int, factors: dict, blocks: dict) -> Monomial | None:
    if base == 0 or probed % base:
        return None if base or probed else Monomial(0.0, ())
    ratio = probed // base
    powers, coef = [], float(base)
    for dim, f in factors.items():
        p = 0
        while ratio % f == 0:
            ratio //= f
            p += 1
        if p:
            powers.append((dim, p))
            coef /= blocks[dim] ** p
    return Monomial(coef, tuple(powers)) if ratio == 1 else None


def kernel_facts(base: Module, probe: Module | None, factors: dict, hints: dict,
                 fixed: set, guards=()) -> KernelFacts:
    """Facts from the base trace and the probe trace (each tunable dim's block times its
    `factors` prime; None when it could not be traced). `hints`: size symbol -> value in
    this call; `fixed`: dims whose block the source fixes; `guards`: the sizes of the
    whole-extent slices."""
    reader = _Reader(base.kernel(), hints).read()
    base_blocks = {d[0]: d[3] for d in reader.dims}
    dims = tuple(TileDim(dim, parallel, extent, block, dim in fixed, launch, expr)
                 for dim, parallel, extent, block, launch, expr in
                 sorted(reader.dims, key=lambda d: d[0]))
    terms = None
    if probe is not None:
        terms = _fit_terms(reader, _Reader(probe.kernel(), hints).read(), factors,
                           base_blocks)
    full_extents = tuple(next_pow2(size_function(g)(hints)) for g in guards)
    return KernelFacts(dims, tuple(terms or ()), terms is not None, full_extents,
                       tuple(guards), tuple(sorted(reader.dtypes)),
                       transposed_dims(base.kernel()), str(base))



def _structure(reader: _Reader) -> tuple:
    return ([(r.launch, r.loops, r.resource, len(r.details)) for r in reader.records],
            [(d[0], d[1], d[2], d[4]) for d in reader.dims])


def _fit_terms(reader: _Reader, probe: _Reader, factors: dict,
               base_blocks: dict) -> list[Term] | None:
    """Like terms added up, or None when the probe's structure differs from the base's or
    a quantity is not a monomial of the blocks."""
    if _structure(probe) != _structure(reader):
        return None
    totals: dict = {}
    for r, p in zip(reader.records, probe.records):
        amount = _fit(r.amount, p.amount, factors, base_blocks)
        details = tuple(_fit(a, b, factors, base_blocks) for a, b in zip(r.details, p.details))
        if amount is None or None in details:
            return None
        if r.resource in FACTS_ONLY:
            totals.setdefault((r.launch, r.loops, r.resource, amount),
                              Term(r.launch, r.loops, r.resource, amount))
            continue
        key = (r.launch, r.loops, r.resource, amount.powers, details)
        previous = totals.get(key)
        if previous is not None:
            amount = Monomial(previous.amount.coef + amount.coef, amount.powers)
        totals[key] = Term(r.launch, r.loops, r.resource, amount, details)
    return list(totals.values())
