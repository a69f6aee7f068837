"""What the machine can do, read from the machine: CPU cores, vector width and caches (Linux
sysfs and LLVM's host features), GPU limits through the CUDA driver. The autotuner's search
space and cost model are built on these facts.

Nothing here is a hard-coded device table, except the labelled fallbacks used when a fact
cannot be read (they say so in `source`).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class CPUInfo:
    name: str
    cores: int
    vector_bits: int                 # widest SIMD register the code generator may use
    l1d_bytes: int
    l2_bytes: int
    l3_bytes: int
    source: dict = field(default_factory=dict, compare=False)   # fact -> where it came from


@dataclass(frozen=True)
class GPUInfo:
    name: str
    arch: str                        # "sm_90"
    sm_count: int
    max_threads_per_block: int
    max_threads_per_sm: int
    regs_per_sm: int
    regs_per_block: int
    smem_per_block: int              # without opting in
    smem_per_block_optin: int        # after cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)
    smem_per_sm: int
    l2_bytes: int
    memory_clock_khz: int
    bus_width_bits: int
    clock_khz: int                   # SM clock (the peak the driver reports; 0: not told)
    source: dict = field(default_factory=dict, compare=False)

    @property
    def peak_bandwidth(self) -> float:
        """Bytes/s from the memory clock and bus width (double data rate)."""
        return 2.0 * self.memory_clock_khz * 1e3 * self.bus_width_bits / 8


def _sysfs_cache_bytes(level: int, kind: str) -> int | None:
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((index / "level").read_text()) != level:
                continue
            if (index / "type").read_text().strip() not in (kind, "Unified"):
                continue
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        units = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    return None


# Labelled fallbacks, used only where the machine does not say.
_CPU_FALLBACK = {"l1d_bytes": 32 * 1024, "l2_bytes": 1024 * 1024, "l3_bytes": 8 * 1024 ** 2}


@functools.lru_cache(maxsize=1)
def cpu_info() -> CPUInfo:
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    features = {k for k, v in llvm.get_host_cpu_features().items() if v}
    source = {"name": "llvm", "vector_bits": "llvm host features"}
    vector_bits = 512 if "avx512f" in features else 256 if "avx2" in features or "avx" in \
        features else 128
    try:
        cores = len(os.sched_getaffinity(0))
        source["cores"] = "sched_getaffinity"
    except AttributeError:
        cores = os.cpu_count() or 1
        source["cores"] = "os.cpu_count"
    caches = {}
    for name, (level, kind) in {"l1d_bytes": (1, "Data"), "l2_bytes": (2, "Unified"),
                                "l3_bytes": (3, "Unified")}.items():
        value = _sysfs_cache_bytes(level, kind)
        source[name] = "sysfs" if value else "fallback"
        caches[name] = value or _CPU_FALLBACK[name]
    return CPUInfo(llvm.get_host_cpu_name(), cores, vector_bits, source=source, **caches)


def _driver_attribute(driver, device, name: str) -> int:
    attr = getattr(driver.CUdevice_attribute, name)
    err, value = driver.cuDeviceGetAttribute(attr, device)
    if err != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuDeviceGetAttribute({name}) failed: {err}")
    return int(value)


_GPU_ATTRIBUTES = {
    "sm_count": "CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT",
    "max_threads_per_block": "CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK",
    "max_threads_per_sm": "CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR",
    "regs_per_sm": "CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR",
    "regs_per_block": "CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK",
    "smem_per_block": "CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK",
    "smem_per_block_optin": "CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN",
    "smem_per_sm": "CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR",
    "l2_bytes": "CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE",
    "memory_clock_khz": "CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE",
    "bus_width_bits": "CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH",
}
# read where the driver still reports them (CUDA 13 deprecates the clock queries): 0 else
_OPTIONAL_GPU_ATTRIBUTES = {"clock_khz": "CU_DEVICE_ATTRIBUTE_CLOCK_RATE"}


@functools.lru_cache(maxsize=None)
def gpu_info(ordinal: int = 0) -> GPUInfo | None:
    """Limits of CUDA device `ordinal` through the driver API, or None without a GPU."""
    try:
        from cuda.bindings import driver
    except ImportError:
        return None
    try:
        (err,) = driver.cuInit(0)
    except Exception:               # no driver library on this machine (cuda-python raises)
        return None
    if err != driver.CUresult.CUDA_SUCCESS:
        return None
    err, device = driver.cuDeviceGet(ordinal)
    if err != driver.CUresult.CUDA_SUCCESS:
        return None
    err, raw_name = driver.cuDeviceGetName(256, device)
    name = raw_name.split(b"\0", 1)[0].decode() if err == driver.CUresult.CUDA_SUCCESS else "?"
    major = _driver_attribute(driver, device, "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR")
    minor = _driver_attribute(driver, device, "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR")
    facts = {k: _driver_attribute(driver, device, v) for k, v in _GPU_ATTRIBUTES.items()}
    source = {k: "driver" for k in facts}
    for k, v in _OPTIONAL_GPU_ATTRIBUTES.items():
        try:
            facts[k], source[k] = _driver_attribute(driver, device, v), "driver"
        except (RuntimeError, AttributeError):
            facts[k], source[k] = 0, "unavailable"
    return GPUInfo(name, f"sm_{major}{minor}", source=source, **facts)
