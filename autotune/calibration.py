"""The GPU cost model's fitted constants (block_cost.py), per device, read from
gpu_calibration.json next to this file (data, written by calibrate.py from a measured config
sweep: benchmarks/gpu_sweep.py).

A device found in the file by name uses its own constants and its measured copy bandwidth.
Any other GPU uses the first (reference) entry scaled to it: on-chip latencies and issue
costs counted in clock cycles carry over (SMs since Volta issue 4 warp-instructions a cycle
and take similar cycles per shuffle and barrier), so those times scale with the
reference's clock over the device's; the memory round trip stays as measured (HBM
latency is similar in nanoseconds across generations); the achievable bandwidth is the
device's peak (clock x bus, from the driver, or the arch family's labelled figure) times
the reference's copy/peak ratio. The SM count always comes from the device (or the family
figure): waves and per-SM shares follow it.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

CALIBRATION_FILE = Path(__file__).with_name("gpu_calibration.json")
FORMAT = 1
MARGIN_SIGMAS = 2.0


@dataclass(frozen=True)
class Calibration:
    """What cost.block_launch_seconds needs beyond the driver's limits. Times in seconds."""
    device: str                 # the entry these constants come from
    bandwidth: float            # bytes/s a streaming kernel reaches (measured copy)
    op_seconds: float           # per weighted element-operation, on one SM (issue cost)
    memory_latency: float       # a program's loads, issue to use (under load)
    sync_latency: float         # one __syncthreads() / shared-memory round trip
    shuffle_latency: float      # one warp-shuffle step of a reduction
    thread_op_seconds: float    # per weighted op in one thread's own dependent chain
    buffer_ops: float           # weighted ops per element a tile spends through a buffer
    thread_ops: float           # weighted ops each thread spends per program besides its
                                # elements' (tile coordinates, bounds, setup)
    shuffle_ops: float          # ... and per shuffle step of a reduction
    scratch_factor: float       # global-scratch bytes cost this many bytes of DRAM traffic
    l2_factor: float            # a byte other programs read too (L2 hit), in DRAM bytes
    overlap: float              # p of the soft maximum of memory, issue and latency times
    registers_base: float       # registers per thread besides register tiles ...
    registers_per_element: float    # ... and per element of them a thread holds (ptxas)
    launch_overhead: float      # device time of an empty launch
    # the fit's error where picks are made (calibrate.near_best_error): the log error of
    # one config's estimate relative to its kernel's other near-best configs
    near_best_error: float
    # whether the sweep held kernels with a dot: without, the model's picks for them are
    # extrapolation (tensor cores, operand staging) and the fixed policy stays
    fitted_with_dot: bool
    scaled_from: str = ""       # the reference entry when scaled to another GPU

    @property
    def model_margin(self) -> float:
        """A model pick replaces the fixed policy's config only when estimated faster by
        this factor: MARGIN_SIGMAS errors of one prediction, about 1.4 standard deviations
        of the error of the ratio of two (the default config's estimate errs too)."""
        return math.exp(-MARGIN_SIGMAS * self.near_best_error)

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("device", "scaled_from")}


FITTED = ("op_seconds", "memory_latency", "sync_latency", "shuffle_latency",
          "thread_op_seconds", "buffer_ops", "thread_ops", "shuffle_ops", "scratch_factor",
          "l2_factor", "overlap")


@functools.lru_cache(maxsize=1)
def _entries() -> tuple:
    """(device name, entry) pairs in file order: the first is the reference."""
    data = json.loads(CALIBRATION_FILE.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{CALIBRATION_FILE}: format {data.get('format')!r}, expected "
                         f"{FORMAT}")
    return tuple(data["devices"].items())


def entry(device: str) -> dict | None:
    """The file's entry for a device name (None when it has none)."""
    return dict(_entries()).get(device)


def from_entry(device: str, data: dict) -> Calibration:
    names = {f.name for f in fields(Calibration)} - {"device", "scaled_from"}
    missing = names - set(data["constants"])
    if missing:
        raise ValueError(f"{CALIBRATION_FILE}: entry {device!r} lacks {sorted(missing)}")
    return Calibration(device=device, **{k: data["constants"][k] for k in names})


_CYCLE_TIMES = ("op_seconds", "sync_latency", "shuffle_latency", "thread_op_seconds",
                "launch_overhead")


def for_device(name: str, peak_bandwidth: float, clock_hz: float) -> Calibration:
    """The constants for a GPU: its own entry, else the reference entry scaled to its peak
    bandwidth (bytes/s) and SM clock (Hz); 0 for an unknown figure keeps the reference's."""
    entries = _entries()
    own = dict(entries).get(name)
    if own is not None:
        return from_entry(name, own)
    ref_name, ref = entries[0]
    scaled = replace(from_entry(ref_name, ref), device=name, scaled_from=ref_name)
    if peak_bandwidth > 0:
        copy_ratio = scaled.bandwidth / ref["peak_bandwidth"]
        scaled = replace(scaled, bandwidth=peak_bandwidth * copy_ratio)
    if clock_hz > 0:
        slower = ref["clock_hz"] / clock_hz
        scaled = replace(scaled, **{k: getattr(scaled, k) * slower for k in _CYCLE_TIMES})
    return scaled
