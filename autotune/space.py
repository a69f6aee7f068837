"""The search space: candidate configs for one kernel and call, from its IR facts (facts.py)
and the machine (machine.py).

Block sizes are powers of two, not beyond the next power of two of the dim's extent (larger
blocks only add masked lanes); dims feeding a dot start at the tensor-core multiple on GPUs.
On GPUs, warps come with every block choice, and pipeline stages with kernels that have a
dot. Candidates are dropped when a tile exceeds the backend's cap, when one program exceeds
the GPU's shared memory, registers or threads, or when the grid leaves units of the machine
idle (SMs; CPU cores once the work is large enough to be split) while other candidates fill
it. The model (cost.py) orders the rest; the best MAX_CANDIDATES survive.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..ir.symbolic import next_pow2
from . import cost
from .config import Config
from .facts import KernelFacts
from .machine import Machine

MAX_CANDIDATES = 32
MAX_COMBINATIONS = 1 << 14     # block rows scored at once before launches vary apart
GPU_WARPS = (1, 2, 4, 8, 16)
DOT_STAGES = (2, 3, 4)
TENSOR_CORE_MULTIPLE = 16


@dataclass(frozen=True)
class Candidate:
    config: Config
    estimate: float          # model seconds (inf: does not fit the machine)


def fit_to_extents(blocks: dict, parallel: list) -> dict:
    """The default policy's blocks moved to where they hold elements: a parallel dim's
    block beyond the next power of two of its extent only adds masked lanes, so it is cut
    there and the factor goes to the dim outside it in the same launch (a [8, 512] policy
    over rows of 64 becomes [64, 64]). `parallel`: (dim, extent, launch) of the parallel
    dims; dims not in `blocks` (fixed by the source) are passed over."""
    blocks = dict(blocks)
    launches: dict = {}
    for dim, extent, launch in parallel:
        launches.setdefault(launch, []).append((dim, extent))
    for dims in launches.values():
        carry = 1
        for dim, extent in sorted(dims, reverse=True):       # innermost first
            if dim not in blocks:
                continue
            block, room = blocks[dim] * carry, next_pow2(max(1, extent))
            carry = max(1, block // room) if block > room else 1
            blocks[dim] = min(block, room)
    return blocks


def shrink_to_cap(blocks: dict, tile_elements, cap: int) -> dict:
    """The default policy's last step: halve the largest block until every tile holds at
    most `cap` elements. `tile_elements(blocks)` gives the largest tile."""
    blocks = dict(blocks)
    for _ in range(64):
        n = tile_elements(blocks)
        if n <= cap or not blocks or all(b == 1 for b in blocks.values()):
            break
        dim = max(blocks, key=lambda d: blocks[d])
        factor = 1
        while n // factor > cap and blocks[dim] // factor > 1:
            factor *= 2
        blocks[dim] = max(1, blocks[dim] // factor)
    return blocks


# A thread's share of the register tiles the default policy's blocks may give it (float
# elements, each a register): past it, fewer rows a program. H100, bf16 rows of the
# transformer block's step (benchmarks/region_kernels.py, device us): RMSNorm backward,
# three register tiles, [4 rows] x 4 warps (96 a thread, 154 registers) 30.9, 2 rows 26.6,
# 1 row 25.4; softmax over rows of 512, two tiles, 8 rows (64) 61.3 / 70.9 (forward /
# backward), 4 rows 60.2 / 68.2; RMSNorm forward, one tile, 4 rows (32) 6.3, 2 rows 6.9
REGISTER_TILE_BUDGET = 32


def register_tile_elements(facts: KernelFacts, config: Config) -> float:
    """The most register-tile elements a thread of `config` holds in any launch (the GPU
    plan's materialized values its readers let be register tiles)."""
    threads = config.warps * 32
    most = 0.0
    for launch in facts.work([facts.full_blocks(config.blocks)]):
        held = sum(float(np.ravel(count)[0]) * math.ceil(float(np.ravel(elements)[0]) / threads)
                   for count, elements, _, _, eligible in launch.materialized
                   if float(np.ravel(eligible)[0]) > 0)
        most = max(most, held)
    return most


def fit_register_tiles(facts: KernelFacts, config: Config,
                       budget: int = REGISTER_TILE_BUDGET) -> Config:
    """`config` with its parallel blocks halved (the largest first) until a thread's
    register tiles hold at most `budget` elements, or every parallel block is 1: more
    programs of fewer rows instead of fewer programs that cost occupancy."""
    parallel = {d.dim for d in facts.tunable if d.parallel}
    blocks = list(config.blocks)
    for _ in range(64):
        current = Config(facts.full_blocks(blocks), config.warps, config.stages)
        shrinkable = [d for d in parallel if blocks[d] > 1]
        if not shrinkable or register_tile_elements(facts, current) <= budget:
            return current
        dim = max(shrinkable, key=lambda d: blocks[d])
        blocks[dim] //= 2
    return Config(facts.full_blocks(blocks), config.warps, config.stages)


def block_choices(facts: KernelFacts, machine: Machine, cap: int) -> dict:
    """dim -> the block sizes tried for it."""
    dots = facts.dot_dims if machine.kind == "gpu" else frozenset()
    choices = {}
    for d in facts.tunable:
        low = TENSOR_CORE_MULTIPLE if d.dim in dots else 1
        high = min(max(low, next_pow2(d.extent)), max(low, next_pow2(cap)))
        choices[d.dim] = [1 << p for p in range(low.bit_length() - 1, high.bit_length())]
    return choices


def _warps(machine: Machine, tiles: np.ndarray) -> dict:
    """warps -> which rows (block choices, by their largest tile) take them."""
    if machine.kind != "gpu":
        return {Config().warps: np.ones(len(tiles), bool)}
    out = {}
    for w in GPU_WARPS:
        threads = w * machine.warp_size
        if threads > machine.max_threads_per_block:
            continue
        # no warp without a tile element to work on
        out[w] = threads <= np.maximum(machine.warp_size, tiles)
    return out


def _stages(facts: KernelFacts, machine: Machine) -> tuple:
    return DOT_STAGES if machine.kind == "gpu" and facts.has_dot else (Config().stages,)


@dataclass
class _Group:
    """Configs sharing warps and stages: their blocks as a (configs, dims) array."""
    warps: int
    stages: int
    blocks: np.ndarray


def _base_row(facts: KernelFacts, cap: int | None, base: Config | None) -> np.ndarray:
    """The blocks the other launches keep while one launch's vary: the default policy's
    config when given, else the traced blocks shrunk to the tile cap."""
    if base is not None:
        return np.array(facts.full_blocks(base.blocks), dtype=np.float64)
    traced = {d.dim: d.block for d in facts.dims}
    if cap is not None:
        def largest(blocks):
            row = np.array([facts.full_blocks([blocks[d.dim] for d in facts.dims])], float)
            return int(facts.tile_elements(row)[0])
        traced = shrink_to_cap(traced, largest, cap)
    return np.array(facts.full_blocks([traced[d.dim] for d in facts.dims]), dtype=np.float64)


def _per_launch(facts: KernelFacts, choices: dict) -> bool:
    return math.prod(len(choices[d]) for d in choices) > MAX_COMBINATIONS


def _block_rows(facts: KernelFacts, choices: dict, base: np.ndarray) -> np.ndarray:
    """The block rows of the space: every combination of the choices, unless that is more
    than MAX_COMBINATIONS (a kernel of several launches, each with its own tile dims: the
    product grows with every launch, 13^7 rows for two matmuls and a layernorm); then each
    launch's dims vary on their own, the other launches' at `base` (the launches run one
    after the other, each one's blocks change only its own time; candidates() then joins
    each launch's best)."""
    dims = sorted(choices)
    if not _per_launch(facts, choices):
        together = [dims]
    else:
        launch = {d.dim: d.launch for d in facts.dims}
        together = [[d for d in dims if launch[d] == k] for k in range(facts.launches)]
    parts = []
    for part in together:
        combos = list(itertools.product(*(choices[d] for d in part)))
        matrix = np.tile(base, (len(combos), 1))
        if part:
            matrix[:, part] = np.array(combos, dtype=np.float64)
        parts.append(matrix)
    return np.unique(np.concatenate(parts), axis=0) if len(parts) > 1 else parts[0]


def _groups(facts: KernelFacts, machine: Machine, cap: int | None,
            base: Config | None = None) -> list[_Group]:
    choices = block_choices(facts, machine, cap or 1 << 30)
    matrix = _block_rows(facts, choices, _base_row(facts, cap, base))
    tiles = facts.tile_elements(matrix)
    if cap is not None:
        matrix, tiles = matrix[tiles <= cap], tiles[tiles <= cap]
    return [_Group(warps, stages, matrix[rows])
            for warps, rows in _warps(machine, tiles).items()
            for stages in _stages(facts, machine) if rows.any()]


def _configs(group: _Group, rows=None) -> list:
    picked = group.blocks if rows is None else group.blocks[rows]
    return [Config(tuple(int(b) for b in row), group.warps, group.stages) for row in picked]


def enumerate_space(facts: KernelFacts, machine: Machine, cap: int | None = None) -> list:
    """Every config of the space before any pruning (cap=None) or within the tile cap."""
    return [c for g in _groups(facts, machine, cap) for c in _configs(g)]


def _score(facts: KernelFacts, machine: Machine, group: _Group) -> tuple:
    """(model seconds, fill) per config of a group: fill is how much of the machine the
    smallest launch's grid occupies (1.0: every unit; CPU work too small to split needs one
    core)."""
    launches = facts.work(group.blocks)
    seconds = cost.estimate(launches, machine, group.warps, group.stages, facts.has_dot)
    fill = np.ones(len(group.blocks))
    for w in launches:
        units = machine.units
        if machine.kind == "cpu":              # the runtime keeps small work on one core
            units = np.where(w.programs * w.work < machine.serial_work, 1, units)
        fill = np.minimum(fill, np.minimum(1.0, w.programs / units))
    return np.broadcast_to(seconds, fill.shape), fill


def rank(facts: KernelFacts, machine: Machine, configs: list) -> list[Candidate]:
    """Candidates in model order (fastest first; ties in the given order). Without a model
    (facts not fitted) the given order stays, every estimate nan."""
    if not facts.fitted or not configs:
        return [Candidate(c, math.nan) for c in configs]
    seconds = [float(_score(facts, machine, _Group(c.warps, c.stages, np.array(
        [facts.full_blocks(c.blocks)], np.float64)))[0][0]) for c in configs]
    order = sorted(range(len(configs)), key=lambda i: (seconds[i], i))
    return [Candidate(configs[i], seconds[i]) for i in order]


def _joined(facts: KernelFacts, machine: Machine, group: _Group, base: np.ndarray,
            seconds: np.ndarray) -> _Group:
    """The group with one more row: each launch at the blocks of its best row among those
    varying it alone (the launches' times add up: the best of each, joined)."""
    launch = np.array([d.launch for d in sorted(facts.dims, key=lambda d: d.dim)])
    row = base.copy()
    for k in range(facts.launches):
        own = launch == k
        alone = np.all(group.blocks[:, ~own] == base[~own], axis=1) & np.isfinite(seconds)
        if alone.any():
            best = np.nonzero(alone)[0][np.argmin(seconds[alone])]
            row[own] = group.blocks[best, own]
    if (group.blocks == row).all(axis=1).any():
        return group
    return _Group(group.warps, group.stages, np.vstack([group.blocks, row]))


def candidates(facts: KernelFacts, machine: Machine, cap: int,
               limit: int = MAX_CANDIDATES, base: Config | None = None) -> list[Candidate]:
    """The pruned space in model order, at most `limit` of them (none without a model).
    `base`: the default policy's config (the other launches' blocks while one launch's
    vary, in a kernel of several launches)."""
    if not facts.fitted:
        return []
    groups = _groups(facts, machine, cap, base)
    if _per_launch(facts, block_choices(facts, machine, cap)):
        row = _base_row(facts, cap, base)
        groups = [_joined(facts, machine, g, row, _score(facts, machine, g)[0])
                  for g in groups]
    scored = [(g, *_score(facts, machine, g)) for g in groups]
    feasible = [np.isfinite(seconds) for _, seconds, _ in scored]   # inf: beyond the GPU
    fills = [fill[ok] for (_, _, fill), ok in zip(scored, feasible) if ok.any()]
    if not fills:
        return []
    best_fill = max(f.max() for f in fills)
    kept = []                   # (seconds, position in the space, group, row)
    position = 0
    for (g, seconds, fill), ok in zip(scored, feasible):
        for row in np.nonzero(ok & (fill >= best_fill))[0]:
            kept.append((float(seconds[row]), position + int(row), g, int(row)))
        position += len(g.blocks)
    kept.sort(key=lambda k: k[:2])
    return [Candidate(_configs(g, [row])[0], seconds) for seconds, _, g, row in kept[:limit]]
