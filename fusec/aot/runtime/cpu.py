"""CPU variants: a shared library per variant, whose launch functions

    void fusec_<kernel>_<k>(int64_t *slots, int64_t pid_begin, int64_t pid_end, char *arena)

run the programs pid_begin <= pid < pid_end of launch k's grid. The library is loaded from
the bytes whose sha256 was checked (through a memory file on Linux, so what runs is what
was checked), after checking that this machine has the CPU features it was compiled for.
Big grids are split into one contiguous pid range per core on a thread pool (ctypes
releases the GIL); each thread gets its own scratch arena (64-byte aligned).
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import threading
from pathlib import Path

import numpy as np

from .errors import LaunchError
from .manifest import read_artifact

PROGRAM = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                           ctypes.c_void_p)
PARALLEL_WORK = 1 << 16        # element-ops below which a launch runs on the calling thread

# LLVM feature name -> its flag in /proc/cpuinfo: the instruction-set extensions generated
# code may use; a build records those its target CPU had, the loader checks them.
CPU_FLAGS = {"sse4.1": "sse4_1", "sse4.2": "sse4_2", "ssse3": "ssse3", "popcnt": "popcnt",
             "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi": "bmi1",
             "bmi2": "bmi2", "lzcnt": "abm", "movbe": "movbe", "avx512f": "avx512f",
             "avx512bw": "avx512bw", "avx512dq": "avx512dq", "avx512vl": "avx512vl",
             "avx512cd": "avx512cd", "avx512vnni": "avx512_vnni",
             "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
             "avx512vbmi": "avx512vbmi", "avx512ifma": "avx512ifma"}


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def unsupported(info: dict) -> str | None:
    """Why this machine cannot run a CPU variant built for `info`, or None."""
    if sys.platform != info["system"] or platform.machine() != info["machine"]:
        return (f"built for {info['system']}/{info['machine']}, this is "
                f"{sys.platform}/{platform.machine()}")
    unknown = [f for f in info["features"] if f not in CPU_FLAGS]
    if unknown:
        return f"needs CPU features this loader cannot check: {', '.join(unknown)}"
    flags = _cpu_flags()
    if flags is None:
        return None if not info["features"] else "cannot read /proc/cpuinfo to check the " \
            f"CPU features it needs ({', '.join(info['features'])})"
    missing = [f for f in info["features"] if CPU_FLAGS[f] not in flags]
    return f"needs CPU features this machine lacks: {', '.join(missing)}" if missing else None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_POOL = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist here (a job would hang)."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool():
    """The thread pool of big CPU launches (made, and its module imported, on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor
            _POOL = ThreadPoolExecutor(max_workers=max(1, _cpu_count() - 1),
                                       thread_name_prefix="fusec-aot-cpu")
        return _POOL


def _load_library(data: bytes, name: str) -> ctypes.CDLL:
    """dlopen the verified bytes themselves: a memory file where the OS has them, else a
    private temporary file. The memory file stays open for good: the loader knows a
    library by its path (/proc/self/fd/N), and a reused descriptor number would make it
    hand back an earlier variant's library."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name)
        os.write(fd, data)
        return ctypes.CDLL(f"/proc/self/fd/{fd}")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="fusec-aot-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return ctypes.CDLL(str(path))


class CpuVariant:
    def __init__(self, root: Path, variant: dict, kernel: str):
        self.root = root
        self.variant = variant
        self.kernel = kernel
        info = variant["cpu"]
        self.arena_bytes = info["arena_bytes"]
        self.launches = variant["layout"]["launches"]
        self._fns = None
        self._lib = None
        self._arenas: list[np.ndarray] = []
        self._lock = threading.Lock()

    def unsupported(self) -> str | None:
        return unsupported(self.variant["cpu"])

    def _load(self) -> list:
        with self._lock:
            if self._fns is None:
                reason = self.unsupported()
                if reason:
                    raise LaunchError(f"kernel {self.kernel!r}, variant "
                                      f"{self.variant['id']}: {reason}")
                data = read_artifact(self.root, self.variant["artifact"])
                self._lib = _load_library(data, f"{self.variant['id']}.so")
                self._fns = [PROGRAM((launch["function"], self._lib))
                             for launch in self.launches]
            return self._fns

    def _take_arena(self):
        if not self.arena_bytes:
            return None, None
        try:
            arena = self._arenas.pop()
        except IndexError:
            arena = np.empty(self.arena_bytes + 64, dtype=np.uint8)
        return arena, (arena.ctypes.data + 63) & ~63

    def _run_range(self, fn, slots_ptr, begin, end):
        arena, address = self._take_arena()
        try:
            fn(slots_ptr, begin, end, address)
        finally:
            if arena is not None:
                self._arenas.append(arena)

    def launch(self, vals: list[int], programs: list[int]) -> None:
        fns = self._fns or self._load()
        slots = (ctypes.c_int64 * len(vals))(*vals)
        ptr = ctypes.addressof(slots)
        for fn, total, launch in zip(fns, programs, self.launches):
            if total <= 0:
                continue
            n = min(_cpu_count(), total)
            if n <= 1 or total * launch.get("work", 1) < PARALLEL_WORK:
                self._run_range(fn, ptr, 0, total)
                continue
            bounds = [total * i // n for i in range(n + 1)]
            futures = [_pool().submit(self._run_range, fn, ptr, bounds[i], bounds[i + 1])
                       for i in range(1, n)]
            self._run_range(fn, ptr, bounds[0], bounds[1])
            for f in futures:
                f.result()
