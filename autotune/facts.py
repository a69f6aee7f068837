"""What the autotuner knows about a kernel (fitting.py reads it from the traced IR): the
tile dims (parallel or sequential, their extents in this call, the block the default policy
gave them, fixed by `block=` or tunable) and, per launch, what one program costs as a function
of the block sizes: memory accesses (bytes and contiguous runs), element-operations (over how
many independent outputs they spread, along how long a vectorizable last axis), tile
buffers, the tile values a GPU program keeps whole (registers or shared memory) and its
reductions (how many outputs, over how long an axis). Each such quantity is coef *
prod(block_d ** p_d) (a Monomial); `KernelFacts.work` evaluates them for one config or for
a whole array of them at once (numpy), which is what keeps ranking a search space of
hundreds of configs within a millisecond or two.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from ..backends.common import size_function
from ..ir.symbolic import next_pow2

# resource -> the names of the details its terms carry (properties of one op, not sums:
# like terms add their amounts only)
DETAILS = {"work": ("outputs", "vector"),    # independent outputs; last-axis length
           # bytes moved; bytes of one contiguous run; bytes of the whole tensor
           "access": ("run_bytes", "tensor_bytes"),
           "buffer": (), "tile": (),         # bytes of tile buffers; elements of a tile
           "dot_m": (), "dot_n": (), "dot_k": (), "reduce_len": (),    # lengths
           # bytes of materialized tile values (the GPU plan's: computed once, read by
           # several consumers); elements and bytes of one such value (how many there
           # are); 1 when its readers let it be a register tile (cuda residency.py); the
           # elements of the broadcast whose expansion alone materializes it, or 0
           "materialized": ("elements", "itemsize", "register_eligible", "expanded"),
           # reduce outputs (all like reductions); outputs of one reduce, its reduced
           # length, 1 when it reduces the last axis (lanes cooperate along a row)
           "reduction": ("outputs", "length", "last_axis")}
FACTS_ONLY = ("tile", "dot_m", "dot_n", "dot_k", "reduce_len")   # not summed: maxima, facts


@dataclass(frozen=True)
class TileDim:
    dim: int            # position in Config.blocks
    parallel: bool      # a grid dim (else a sequential loop inside a program)
    extent: int         # its size in the call being specialized
    block: int          # the block of the base trace (the fixed one when `fixed`)
    fixed: bool         # set with fusec.tile(..., block=): not tuned
    launch: int         # which launch (top-level parallel loop nest) it belongs to
    extent_expr: object = field(default=None, compare=False)   # its symbolic size


@dataclass(frozen=True)
class Monomial:
    coef: float
    powers: tuple       # (dim, power) pairs with power > 0

    def __call__(self, blocks):
        """The value for blocks indexed by dim: one config (a sequence) or many (an array
        of shape (configs, dims), giving an array)."""
        blocks = np.asarray(blocks, dtype=np.float64)
        value = np.full(blocks.shape[:-1], self.coef)
        for dim, power in self.powers:
            value = value * blocks[..., dim] ** power
        return value


@dataclass(frozen=True)
class Term:
    """Like quantities of a launch's ops added up: `amount` per execution, executed once
    per program times the trip counts of the sequential tile loops `loops`."""
    launch: int
    loops: tuple        # dims of the enclosing sequential tile loops
    resource: str       # a key of DETAILS
    amount: Monomial
    details: tuple = ()  # Monomials named by DETAILS[resource]


@dataclass(frozen=True)
class LaunchWork:
    """One launch for one choice of blocks (or an array of choices: then every number is an
    array over them): what the cost model prices. Per program unless said otherwise."""
    programs: object
    work: object                # weighted element-operations
    bytes: object               # global memory
    buffer_bytes: object        # tile buffers held (shared memory / cache footprint)
    tile_elements: object       # the largest tile
    iterations: object          # sequential tile-loop iterations
    loop_bytes: object          # bytes one iteration of those loops loads (pipelining)
    work_parts: tuple = ()      # (work, independent outputs, last-axis length) per term
    accesses: tuple = ()        # (bytes, bytes of one contiguous run) per term
    tensor_bytes: tuple = ()    # bytes of the whole tensor of each access (as `accesses`)
    # (tiles held at once, elements of one, bytes of an element, executions per program,
    # 1 when they may be register tiles) per like group of materialized tile values (none
    # held of a group materialized only to expand a broadcast the blocks leave a view)
    materialized: tuple = ()
    # (reduce ops, executions per program, outputs of one, reduced length, last axis 0/1)
    # per like group of reductions
    reductions: tuple = ()


@dataclass
class KernelFacts:
    dims: tuple                       # TileDim, by dim
    terms: tuple                      # Term
    fitted: bool                      # the block-size functions describe every trace
    full_extents: tuple = ()          # lengths of whole-extent `:` slices (powers of two)
    guards: tuple = field(default=(), repr=False)   # their size expressions
    dtypes: tuple = ()                # element dtypes of the tensors accessed
    # (dim of a permuted result's last axis, dim of its load's last axis) per transposed
    # load (transposes.py): the GPU model does not price them
    transposed: tuple = ()
    base_ir: str = field(default="", repr=False)
    _digest: str = field(default="", repr=False)

    # -- summaries the search space uses -----------------------------------------------------
    @property
    def launches(self) -> int:
        return 1 + max((d.launch for d in self.dims), default=-1)

    @property
    def tunable(self) -> tuple:
        return tuple(d for d in self.dims if not d.fixed)

    @property
    def has_dot(self) -> bool:
        return any(t.resource == "dot_k" for t in self.terms)

    @property
    def dot_dims(self) -> frozenset:
        """Dims whose block is a dot's M, N or K (tensor-core multiples on GPUs)."""
        return frozenset(dim for t in self.terms if t.resource.startswith("dot_")
                         for dim, _ in t.amount.powers)

    @property
    def reduction_lengths(self) -> tuple:
        """Reduced-axis lengths of the reductions at the base blocks."""
        blocks = self.full_blocks([d.block for d in self.dims])
        return tuple(sorted({int(t.amount(blocks)) for t in self.terms
                             if t.resource == "reduce_len"}))

    @property
    def digest(self) -> str:
        """sha256 of the base trace's IR text (tuning-cache keys)."""
        if not self._digest:
            self._digest = hashlib.sha256(self.base_ir.encode()).hexdigest()
        return self._digest

    def extent(self, dim: int) -> int:
        return next(d.extent for d in self.dims if d.dim == dim)

    def at(self, hints: dict) -> "KernelFacts":
        """These facts for another call whose whole-extent slices have the same lengths
        (the traces and their block-size functions hold for it): only extents change."""
        dims = tuple(replace(d, extent=size_function(d.extent_expr)(hints)) for d in self.dims)
        return replace(self, dims=dims,
                       full_extents=tuple(next_pow2(size_function(g)(hints))
                                          for g in self.guards))

    def full_blocks(self, blocks) -> tuple:
        """`blocks` (a Config's, by dim) with fixed dims' blocks filled in."""
        out = [1] * (1 + max((d.dim for d in self.dims), default=-1))
        for d in self.dims:
            if d.fixed:
                out[d.dim] = d.block
            elif d.dim < len(blocks):
                out[d.dim] = blocks[d.dim]
            else:
                raise ValueError(f"the config lists {len(blocks)} block sizes but the "
                                 f"kernel's tile dim {d.dim} needs one (dims are numbered in "
                                 "source order)")
        return tuple(out)

    # -- evaluation (blocks: one config's by dim, or an array of shape (configs, dims)) -----
    def tile_elements(self, blocks):
        """The largest tile."""
        sizes = [t.amount(blocks) for t in self.terms if t.resource == "tile"]
        return np.maximum.reduce(sizes) if sizes else np.ones(np.shape(blocks)[:-1])

    def trips(self, blocks, dims):
        """Product of the tile counts ceil(extent / block) of `dims`."""
        blocks = np.asarray(blocks, dtype=np.float64)
        n = np.ones(blocks.shape[:-1])
        for dim in dims:
            n = n * np.ceil(self.extent(dim) / blocks[..., dim])
        return n

    def programs(self, blocks, launch: int):
        return self.trips(blocks, [d.dim for d in self.dims
                                   if d.parallel and d.launch == launch])

    def work(self, blocks) -> list[LaunchWork]:
        """Per launch, what one program does for these blocks."""
        if not self.fitted:
            raise ValueError("this kernel's structure depends on its block sizes: no model")
        blocks = np.asarray(blocks, dtype=np.float64)
        zero = np.zeros(blocks.shape[:-1])
        out = []
        for launch in range(self.launches):
            work = bytes_ = buffer = loop_bytes = zero
            parts, accesses, whole, nests = [], [], [], set()
            materialized, reductions = [], []
            for t in self.terms:
                if t.launch != launch or t.resource in FACTS_ONLY:
                    continue
                value = t.amount(blocks)
                detail = {name: m(blocks) for name, m in zip(DETAILS[t.resource], t.details)}
                if t.resource == "materialized":     # held at once, per loop iteration
                    one = detail["elements"] * detail["itemsize"]
                    expanded = detail["expanded"]
                    kept = (expanded == 0) | (expanded > detail["elements"])
                    materialized.append((np.where(kept, value / np.maximum(one, 1.0), 0.0),
                                         detail["elements"],
                                         detail["itemsize"], self.trips(blocks, t.loops),
                                         detail["register_eligible"]))
                    continue
                if t.resource == "reduction":
                    reductions.append((value / np.maximum(detail["outputs"], 1.0),
                                       self.trips(blocks, t.loops), detail["outputs"],
                                       detail["length"], detail["last_axis"]))
                    continue
                if t.resource == "buffer":       # reused across loop iterations
                    buffer = buffer + value
                    if t.loops:                  # what more pipeline stages would hold
                        loop_bytes = loop_bytes + value
                    continue
                if t.loops:
                    nests.add(t.loops)
                value = value * self.trips(blocks, t.loops)
                if t.resource == "work":
                    work = work + value
                    parts.append((value, detail["outputs"], detail["vector"]))
                else:
                    bytes_ = bytes_ + value
                    accesses.append((value, detail["run_bytes"]))
                    whole.append(detail["tensor_bytes"])
            out.append(LaunchWork(
                self.programs(blocks, launch), work, bytes_, buffer, self.tile_elements(blocks),
                sum((self.trips(blocks, nest) for nest in nests), zero), loop_bytes,
                tuple(parts), tuple(accesses), tuple(whole), tuple(materialized),
                tuple(reductions)))
        return out
