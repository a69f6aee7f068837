"""The analytic cost model: seconds for one call of a kernel under one config, from what its
programs do (facts.LaunchWork) and what the machine can do (machine.Machine). Pure
functions; it orders candidates, it does not predict times to the microsecond.

CPU (the LLVM backend splits a launch's programs into one contiguous range per core, or runs
them all on the calling thread when the total work is small):
    per program = overhead * (1 + loop iterations) + runs touched * cost per run
                  + max(bytes in whole cache lines / bandwidth per core,
                        work / vector rate, lanes past a short last axis counted idle)
                  + (bytes re-fetched when an access walks more rows than the L1 has ways
                     + tile buffers beyond the core's L2, out and back) / bandwidth
    launch      = ceil(programs / cores used) * per program        (the slowest core)

GPU, a program = one thread block of `warps` warps (both GPU backends): block_cost.py, the
calibrated model (fitted on the cuda backend's code).
"""
from __future__ import annotations

import math

import numpy as np

from .block_cost import block_launch_seconds
from .facts import LaunchWork
from .machine import Machine


def runs(work: LaunchWork):
    """Contiguous runs of memory one program touches."""
    return sum((b / np.maximum(run, 1.0) for b, run in work.accesses), 0.0)


def line_bytes(work: LaunchWork, line: int):
    """Bytes one program moves in whole cache lines (GPU: sectors): a short or strided run
    still moves its lines whole."""
    return sum((b / np.maximum(run, 1.0) * np.ceil(run / line) * line
                for b, run in work.accesses), 0.0)


def vector_seconds(work: LaunchWork, m: Machine):
    """Element-operations at the vector rate: a last axis shorter than a vector (or not a
    multiple of it) leaves lanes idle."""
    lanes = m.vector_lanes
    ops = sum((w * np.ceil(v / lanes) * lanes / np.maximum(v, 1.0)
               for w, _, v in work.work_parts), 0.0)
    return ops / m.rate


def conflict_bytes(work: LaunchWork, ways: int):
    """Bytes fetched again because one access walks more rows than the L1 has ways: rows of
    a power-of-two stride map to the same sets and evict each other before reuse."""
    total = 0.0
    for b, run in work.accesses:
        rows = b / np.maximum(run, 1.0)
        total = total + b * np.maximum(0.0, 1.0 - ways / np.maximum(rows, 1.0))
    return total


def cpu_launch_seconds(work: LaunchWork, m: Machine):
    total = work.programs * work.work
    workers = np.where(total < m.serial_work, 1.0,
                       np.maximum(1.0, np.minimum(m.units, work.programs)))
    core_bandwidth = m.bandwidth / m.units
    spill = np.maximum(0.0, work.buffer_bytes - m.cache_bytes) * 2
    per_program = (m.program_overhead * (1 + work.iterations)     # a loop iteration: a
                   + runs(work) * m.segment_cost                     # program's bookkeeping
                   + np.maximum(line_bytes(work, m.line_bytes) / core_bandwidth,
                                vector_seconds(work, m))
                   + (spill + conflict_bytes(work, m.l1_ways)) / core_bandwidth)
    overhead = np.where(workers > 1, m.launch_overhead, 0.0)
    return overhead + np.ceil(work.programs / workers) * per_program


def estimate(launches: list[LaunchWork], m: Machine, warps=4, stages: int = 3,
             pipelined: bool = False):
    """Seconds for one call (the launches run one after another): a float, or an array when
    the LaunchWork fields (and `warps`, for thread blocks) are arrays over candidates."""
    if m.kind == "cpu":
        return sum(cpu_launch_seconds(w, m) for w in launches)
    return sum(block_launch_seconds(w, m, warps, stages, pipelined) for w in launches)


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation of two lists (ties share their mean rank); None under 3 points or
    when one list is constant."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / math.sqrt(vx * vy)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks
