"""The figures the search space and the cost model use, from the hardware facts
(hardware.py) where the machine reports them and from labelled fallbacks where it does not:
`Machine.source` names where each figure came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .calibration import CALIBRATION_FILE, Calibration, entry, for_device, from_entry
from .hardware import CPUInfo, GPUInfo, cpu_info, gpu_info


@dataclass(frozen=True)
class Machine:
    kind: str                   # "cpu" | "gpu"
    name: str
    units: int                  # cores | SMs: programs run on this many at once (or more)
    bandwidth: float            # bytes/s of main memory, the whole machine
    rate: float                 # weighted element-operations/s of one unit
    program_overhead: float     # s per program: tile setup, masks, loop bookkeeping
    segment_cost: float         # s per contiguous run of memory a program touches
    launch_overhead: float      # s per launch
    cache_bytes: int            # tile buffers of one program that stay in fast memory
    serial_work: int = 0        # CPU: total element-operations below which one core runs all
    vector_lanes: int = 1       # CPU: 32-bit lanes of one vector register
    line_bytes: int = 64        # memory moves in lines (CPU cache lines, GPU sectors)
    l1_ways: int = 8            # CPU: L1 associativity (rows of one access that stay)
    warp_size: int = 32         # GPU limits from here on
    max_threads_per_block: int = 1024
    max_threads_per_unit: int = 2048
    max_programs_per_unit: int = 32
    regs_per_unit: int = 65536
    regs_per_block: int = 65536
    smem_per_block: int = 48 << 10          # the opt-in maximum of one program
    smem_per_unit: int = 228 << 10
    lanes_per_unit: int = 128               # FP32 lanes of one SM
    calibration: Calibration | None = None  # GPU thread blocks: the model's fitted constants
    source: dict = field(default_factory=dict, compare=False)


# Labelled fallbacks: figures no interface reports (clock, issue rate, per-run costs); the
# per-program and per-run CPU costs were measured on the dev machine's Xeon (see cost.py).
CPU_CLOCK_HZ = 2.5e9
CPU_BANDWIDTH_PER_CORE = 12e9
CPU_PROGRAM_OVERHEAD = 5e-9
CPU_SEGMENT_COST = 5e-9
CPU_L1_WAYS = 8
GPU_CLOCK_HZ = 1.5e9
GPU_LANES_PER_SM = 128
GPU_PROGRAM_OVERHEAD = 1e-6
GPU_SEGMENT_COST = 0.0          # coalescing is priced by whole sectors moved, not per run
GPU_SECTOR_BYTES = 32
GPU_LAUNCH_OVERHEAD = 4e-6
_FALLBACK = "fallback"

# GPUs by arch family when no device can be asked (compiling for sm_XY on a machine without
# one): figures of the family's data-centre part.
_GPU_FALLBACK = {
    "sm_80": dict(name="A100-class (fallback)", sm_count=108, smem_per_block_optin=163 << 10,
                  smem_per_sm=164 << 10, l2_bytes=40 << 20, bandwidth=2.04e12,
                  clock_hz=1.41e9),
    "sm_90": dict(name="H100-class (fallback)", sm_count=132, smem_per_block_optin=227 << 10,
                  smem_per_sm=228 << 10, l2_bytes=50 << 20, bandwidth=3.35e12,
                  clock_hz=1.98e9),
}


def cpu_machine(info: CPUInfo | None = None, serial_work: int = 0) -> Machine:
    info = info or cpu_info()
    lanes = info.vector_bits // 32
    return Machine(
        kind="cpu", name=f"{info.name} x{info.cores}", units=info.cores,
        bandwidth=CPU_BANDWIDTH_PER_CORE * info.cores, rate=lanes * CPU_CLOCK_HZ,
        program_overhead=CPU_PROGRAM_OVERHEAD, segment_cost=CPU_SEGMENT_COST,
        launch_overhead=2e-6 if info.cores > 1 else 0.0, cache_bytes=info.l2_bytes,
        serial_work=serial_work, vector_lanes=lanes, l1_ways=CPU_L1_WAYS,
        source={"units": info.source.get("cores", "?"), "cache_bytes": info.source.get(
            "l2_bytes", "?"), "vector_lanes": info.source.get("vector_bits", "?"),
            "bandwidth": _FALLBACK, "rate": f"{_FALLBACK} clock x vector lanes",
            "program_overhead": _FALLBACK, "segment_cost": _FALLBACK, "l1_ways": _FALLBACK})


def gpu_machine(info: GPUInfo | None, arch: str | None = None) -> Machine:
    """From the driver's facts; without a device, the labelled figures of `arch`'s family."""
    if info is None:
        family = _GPU_FALLBACK["sm_80" if _arch_number(arch) < 90 else "sm_90"]
        calibration = for_device(family["name"], family["bandwidth"], family["clock_hz"])
        return Machine(
            kind="gpu", name=family["name"], units=family["sm_count"],
            bandwidth=calibration.bandwidth, rate=GPU_LANES_PER_SM * GPU_CLOCK_HZ,
            program_overhead=GPU_PROGRAM_OVERHEAD, segment_cost=GPU_SEGMENT_COST,
            launch_overhead=GPU_LAUNCH_OVERHEAD, cache_bytes=family["smem_per_block_optin"],
            line_bytes=GPU_SECTOR_BYTES, smem_per_block=family["smem_per_block_optin"],
            smem_per_unit=family["smem_per_sm"], calibration=calibration,
            source={"*": f"{_FALLBACK}: no GPU visible, {arch or 'sm_90'} family figures",
                    "calibration": f"{calibration.scaled_from} scaled"})
    calibration = for_device(info.name, info.peak_bandwidth, info.clock_khz * 1e3)
    return Machine(
        kind="gpu", name=f"{info.name} ({info.arch})", units=info.sm_count,
        bandwidth=calibration.bandwidth, rate=GPU_LANES_PER_SM * GPU_CLOCK_HZ,
        program_overhead=GPU_PROGRAM_OVERHEAD, segment_cost=GPU_SEGMENT_COST,
        launch_overhead=GPU_LAUNCH_OVERHEAD, cache_bytes=info.smem_per_block_optin,
        line_bytes=GPU_SECTOR_BYTES, max_threads_per_block=info.max_threads_per_block,
        max_threads_per_unit=info.max_threads_per_sm, regs_per_unit=info.regs_per_sm,
        regs_per_block=info.regs_per_block, smem_per_block=info.smem_per_block_optin,
        smem_per_unit=info.smem_per_sm, calibration=calibration,
        source={"units": "driver", "limits": "driver",
                "bandwidth": f"driver (clock x bus) x {calibration.scaled_from}'s copy/peak"
                if calibration.scaled_from else "measured copy",
                "calibration": f"{calibration.scaled_from} scaled"
                if calibration.scaled_from else "own entry",
                "rate": f"{_FALLBACK}: {GPU_LANES_PER_SM} lanes x {GPU_CLOCK_HZ / 1e9} GHz",
                "overheads": _FALLBACK})


def calibrated_machine(device: str) -> Machine:
    """The GPU an entry of gpu_calibration.json was measured on, from the entry's figures
    and its arch family's limits: the cost model as it ran there, without that GPU."""
    data = entry(device)
    if data is None:
        raise ValueError(f"calibrated_machine: no entry for device {device!r} in "
                         f"{CALIBRATION_FILE.name}")
    family = _GPU_FALLBACK["sm_80" if _arch_number(data["arch"]) < 90 else "sm_90"]
    return replace(gpu_machine(None, data["arch"]), name=f"{device} ({data['arch']})",
                   units=data["sm_count"], calibration=from_entry(device, data),
                   bandwidth=data["constants"]["bandwidth"],
                   source={"*": f"{CALIBRATION_FILE.name} entry, {family['name']} limits"})


def _arch_number(arch: str | None) -> int:
    digits = "".join(c for c in (arch or "sm_90")[3:] if c.isdigit())
    return int(digits or 90)


def machine_for(kind: str, arch: str | None = None, serial_work: int = 0) -> Machine:
    """The machine a backend's code runs on: "cpu", or "gpu" (the current device, else the
    labelled figures of `arch`'s family)."""
    if kind == "cpu":
        return cpu_machine(serial_work=serial_work)
    if kind == "gpu":
        info = gpu_info()
        if info is not None and arch is not None and info.arch != arch:
            info = None                  # compiling for another arch than the one here
        return gpu_machine(info, arch)
    raise ValueError(f"machine kind must be 'cpu' or 'gpu', got {kind!r}")
