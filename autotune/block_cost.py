"""The cost model of a launch of thread-block programs (the cuda backend: a program is one
block of `warps` x 32 threads, backends/cuda/), in seconds, with constants fitted to a
measured config sweep (calibration.py, calibrate.py). Pure functions over LaunchWork
(facts.py), numbers or arrays over candidates.

    tiles       each materialized tile value (computed once, read by several consumers)
                lives in registers when a thread's share of it is at most TILE_REGISTERS
                elements and all of them TOTAL_REGISTERS (residency.py), else in a buffer:
                shared memory up to 48 KB a block, else global scratch
    occupancy   resident = blocks one SM holds at once: threads, registers (the base plus
                the register tiles), shared memory
    per program memory = bytes in whole 32-byte sectors: its share of each tensor from DRAM,
                         what other programs read too from the L2 (at a fitted fraction
                         of a DRAM byte's cost), scratch bytes written and read
                issue  = weighted element-operations, those of buffer round trips, each
                         thread's setup and shuffle steps, at the SM's issue rate
                latency = its loads' round trips (one per UNROLL_MAX Lane groups a thread,
                           again per sequential loop iteration)
                         + barriers (after each buffered tile and each reduction, two more
                           for a reduction over more than a warp) + shuffle steps and serial
                           shared-memory partials of the reductions
                         + the longest thread's own chain of operations
    one wave    = soft maximum of (resident x memory at the SM's bandwidth share,
                                   resident x issue, latency)
    launch      = launch overhead + waves x one wave,  waves = ceil(blocks / (SMs x resident))
    Threads beyond the block limit: infeasible (registers beyond a block's share are capped
    by the kernel's __launch_bounds__, as ptxas does).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .calibration import Calibration
from .facts import LaunchWork
from .machine import Machine

INFEASIBLE = math.inf
LANE_GROUP = 8                  # elements a thread takes together along a row (emit.lane_width)
RESERVED_SHARED = 1 << 10       # shared memory the driver reserves per resident block
REGISTER_GRANULE = 8            # registers are allocated per thread in multiples of this


def _residency():
    """The CUDA backend's register-tile and shared-memory limits (imported when first priced:
    a CPU-only process never loads the CUDA backend)."""
    from ..backends.cuda.emit import SHARED_BYTES
    from ..backends.residency import TILE_REGISTERS, TOTAL_REGISTERS, UNROLL_MAX
    return TILE_REGISTERS, TOTAL_REGISTERS, UNROLL_MAX, SHARED_BYTES


@dataclass
class _Tiles:
    """Where a program's materialized tiles live, per candidate."""
    register_elements: object   # per thread: its register tiles' elements, and those of the
                                # largest buffered tile its unrolled loops hold in flight
    shared: object              # bytes of shared memory of one block
    scratch_traffic: object     # bytes written and read back through global scratch
    buffered: object            # elements passed through a buffer (each execution)
    barriers: object            # strided loops filling a buffer (each ends in a barrier)


def _tiles(work: LaunchWork, threads, pipelined: bool, stages: int) -> _Tiles:
    tile_registers, total_registers, unroll, shared_limit = _residency()
    registers = in_flight = arena = buffered = buffered_bytes = barriers = 0.0
    for count, elements, itemsize, executions, eligible in work.materialized:
        share = np.ceil(elements / threads)
        room = np.floor((total_registers - registers) / np.maximum(share, 1.0))
        in_registers = np.where((share <= tile_registers) & (eligible > 0),
                                np.clip(room, 0.0, count), 0.0)
        registers = registers + in_registers * share
        spilled = count - in_registers
        unrolled = (spilled > 0) & (share <= unroll * LANE_GROUP)
        in_flight = np.maximum(in_flight, np.where(unrolled, share, 0.0))
        arena = arena + spilled * elements * itemsize
        buffered = buffered + spilled * elements * executions
        buffered_bytes = buffered_bytes + spilled * elements * itemsize * executions
        barriers = barriers + spilled * executions
    for count, _, outputs, _, _ in work.reductions:    # results, partials of wide ones
        arena = arena + count * (outputs * 4 + threads / 32 * 8)
    if pipelined:                   # more stages of a loop's loads in flight
        arena = arena + (stages - 1) * work.loop_bytes
    in_shared = arena <= shared_limit
    return _Tiles(registers + in_flight, np.where(in_shared, arena, 0.0),
                  np.where(in_shared, 0.0, 2.0 * buffered_bytes), buffered, barriers)


def _prev_pow2(x):
    return 2.0 ** np.floor(np.log2(np.maximum(x, 1.0)))


def _next_pow2(x):
    return 2.0 ** np.ceil(np.log2(np.maximum(x, 1.0)))


def dram_and_l2_bytes(work: LaunchWork, line: int):
    """A program's bytes in whole sectors, split into its share of each tensor (from DRAM)
    and the rest: data other programs read too (a row of weights every program loads),
    served by the L2 after the first program."""
    dram = l2 = 0.0
    wholes = work.tensor_bytes or (math.inf,) * len(work.accesses)    # unknown: all DRAM
    for (b, run), whole in zip(work.accesses, wholes):
        lines = b / np.maximum(run, 1.0) * np.ceil(run / line) * line
        share = np.minimum(lines, whole / np.maximum(work.programs, 1.0))
        dram, l2 = dram + share, l2 + lines - share
    return dram, l2


def reduction_steps(work: LaunchWork, threads):
    """(barriers, shuffle steps, serial shared-memory steps) of one program's reductions:
    reduce.py's cooperative groups of g lanes per output (along a row: up to the block; else
    the threads spread over the outputs), in passes over the outputs."""
    barriers = shuffles = serial = 0.0
    for count, executions, outputs, length, last_axis in work.reductions:
        along_row = np.minimum(threads, _prev_pow2(length / LANE_GROUP))
        across = np.minimum(np.maximum(1.0, threads / _next_pow2(outputs)), _next_pow2(length))
        lanes = np.where(last_axis > 0, along_row, across)
        passes = count * executions * np.ceil(outputs / (threads / lanes))
        wide = lanes > 32                       # partials of each warp through shared memory
        barriers = barriers + passes * (1 + 2 * wide)
        shuffles = shuffles + passes * np.log2(np.minimum(lanes, 32.0))
        serial = serial + passes * np.where(wide, lanes / 32 - 1, 0.0)
    return barriers, shuffles, serial


def round_trips(work: LaunchWork, threads):
    """Memory round trips of a program's strided loops: the loads of up to UNROLL_MAX
    Lane groups a thread are issued together (unrolled), a loop over more waits again
    every UNROLL_MAX groups."""
    unroll = _residency()[2]
    groups = np.ceil(work.tile_elements / (threads * LANE_GROUP))
    return np.maximum(1.0, np.ceil(groups / unroll))


def soft_max(values: list, p):
    """(sum v^p)^(1/p): the largest of the values, the others partly overlapping it."""
    return sum(v ** p for v in values) ** (1.0 / p)


@dataclass
class BlockResources:
    """What one thread-block program holds, per candidate."""
    threads: object
    registers: object           # per thread
    tiles: _Tiles
    resident: object            # blocks one SM runs at once
    fits: object                # the block can launch at all


def block_resources(work: LaunchWork, m: Machine, warps, stages: int = 3,
                    pipelined: bool = False) -> BlockResources:
    threads = np.asarray(warps, dtype=np.float64) * m.warp_size
    tiles = _tiles(work, threads, pipelined, stages)
    cal = m.calibration
    registers = np.maximum(REGISTER_GRANULE, np.ceil(
        (cal.registers_base + cal.registers_per_element * tiles.register_elements)
        / REGISTER_GRANULE) * REGISTER_GRANULE)
    registers = np.minimum(registers, m.regs_per_block // threads)    # __launch_bounds__
    resident = np.minimum(np.minimum(m.max_programs_per_unit, m.max_threads_per_unit // threads),
                          m.regs_per_unit // (registers * threads))
    resident = np.where(tiles.shared > 0, np.minimum(
        resident, m.smem_per_unit // (tiles.shared + RESERVED_SHARED)), resident)
    return BlockResources(threads, registers, tiles, np.maximum(resident, 1.0),
                          threads <= m.max_threads_per_block)


@dataclass
class LaunchTerms:
    """A launch's quantities before the fitted constants weigh them: they depend on the
    work, the config and the machine's limits (and the register model, not fitted), so a
    fit prices them once and only launch_seconds per trial of its constants."""
    dram: object                # bytes per program from DRAM ...
    l2: object                  # ... read by other programs too (L2 hits)
    scratch: object             # ... through global scratch
    work: object                # weighted element-operations per program
    buffered: object            # elements passed through a buffer
    threads: object
    shuffles: object            # shuffle steps of the reductions (each thread issues them)
    round_trips: object         # memory round trips in a program's critical path ...
    barriers: object            # ... barriers ...
    shuffle_steps: object       # ... shuffle steps and serial shared-memory partials ...
    chain: object               # ... and the longest thread's own operations
    per_sm: object              # programs an SM runs at once in a wave
    waves: object
    fits: object                # the block can launch at all


def launch_terms(work: LaunchWork, m: Machine, warps, stages: int,
                 pipelined: bool) -> LaunchTerms:
    r = block_resources(work, m, warps, stages, pipelined)
    dram, l2 = dram_and_l2_bytes(work, m.line_bytes)
    barriers, shuffles, serial = reduction_steps(work, r.threads)
    chain = sum((w / np.minimum(r.threads, np.maximum(1.0, outputs))
                 for w, outputs, _ in work.work_parts), 0.0)
    return LaunchTerms(
        dram=dram, l2=l2, scratch=r.tiles.scratch_traffic, work=work.work,
        buffered=r.tiles.buffered, threads=r.threads, shuffles=shuffles,
        round_trips=round_trips(work, r.threads)
        + work.iterations / (stages if pipelined else 1),
        barriers=barriers + r.tiles.barriers, shuffle_steps=shuffles + serial, chain=chain,
        per_sm=np.minimum(r.resident, np.ceil(work.programs / m.units)),
        waves=np.ceil(work.programs / (m.units * r.resident)), fits=r.fits)


def launch_seconds(t: LaunchTerms, cal: Calibration, units: int):
    """Seconds of a launch with these terms under calibration `cal` on `units` SMs."""
    memory = t.dram + cal.l2_factor * t.l2 + cal.scratch_factor * t.scratch
    issue = (t.work + cal.buffer_ops * t.buffered
             + t.threads * (cal.thread_ops + cal.shuffle_ops * t.shuffles)) * cal.op_seconds
    latency = (cal.memory_latency * t.round_trips + t.barriers * cal.sync_latency
               + t.shuffle_steps * cal.shuffle_latency + t.chain * cal.thread_op_seconds)
    wave = soft_max([t.per_sm * memory / (cal.bandwidth / units), t.per_sm * issue, latency],
                    cal.overlap)
    return np.where(t.fits, cal.launch_overhead + t.waves * wave, INFEASIBLE)


def block_launch_seconds(work: LaunchWork, m: Machine, warps, stages: int, pipelined: bool):
    """A launch of thread-block programs under m.calibration (`warps` may be an array over
    the candidates, like the LaunchWork fields)."""
    return launch_seconds(launch_terms(work, m, warps, stages, pipelined), m.calibration,
                          m.units)
