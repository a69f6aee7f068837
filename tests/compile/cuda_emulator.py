"""Run the CUDA backend's generated source on the CPU: a test tool, not a backend.

The source is plain C++17 apart from a few CUDA spellings, which a small header maps onto
the host: `__shared__` becomes a function-static array (one block runs at a time), each CUDA
thread is a std::thread with its own threadIdx/blockIdx, `__syncthreads()` is a
std::barrier across them, atomicAdd is std::atomic_ref. Every thread runs every block of a
launch in order, with a barrier between blocks. So the emitted SIMT code -- strided loops,
barriers, buffers, per-thread reductions, guarded loads -- runs as written, with real
concurrency between the threads of a block (a missing barrier can show up as a wrong
result). Float math comes from the host's libm instead of CUDA's: results agree within the
tolerances the tests use, not bit for bit.

    emu = Emulated(compiled_interpret_kernel)     # a fusec CompiledKernel (any backend)
    out = emu(*args)                               # numpy arrays in, numpy arrays out
"""
from __future__ import annotations

import atexit
import copy
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

from fusec.backends.cuda import emit_source
from fusec.backends.numeric import STORAGE
from tensor_core_emulation import emulate_tensor_cores

# The host side of the emulation, built once per session: the CUDA thread built-ins (one
# std::thread per CUDA thread, TLS indices) and the barrier. Kernel libraries link to it.
RUNTIME = r"""
#include <barrier>
#include <thread>
#include <vector>
struct fc_dim3 { unsigned int x, y, z; };
extern "C" {
thread_local fc_dim3 threadIdx, blockIdx;
fc_dim3 blockDim, gridDim;
static std::barrier<>* fc_barrier;
void fc_sync() { fc_barrier->arrive_and_wait(); }
unsigned long long fc_lanes[1024];     // __shfl_xor_sync's exchange, one slot per thread
void fc_run(void (*fn)(const long long*), const long long* s, long long programs,
            int nthreads) {
  std::barrier<> bar(nthreads);
  fc_barrier = &bar;
  blockDim = {(unsigned)nthreads, 1u, 1u};
  gridDim = {(unsigned)programs, 1u, 1u};
  std::vector<std::thread> threads;
  for (int t = 0; t < nthreads; ++t)
    threads.emplace_back([=] {
      threadIdx = {(unsigned)t, 0u, 0u};
      for (long long b = 0; b < programs; ++b) {     // every thread runs every block
        blockIdx = {(unsigned)b, 0u, 0u};
        fn(s);
        fc_barrier->arrive_and_wait();               // the block's shared memory is reused
      }
    });
  for (auto& th : threads) th.join();
}
}
"""

# What a kernel library sees instead of the CUDA built-ins (small: it compiles fast).
HEADER = r"""
#include <math.h>
struct fc_dim3 { unsigned int x, y, z; };
extern "C" {
extern thread_local fc_dim3 threadIdx, blockIdx;
extern fc_dim3 blockDim, gridDim;
void fc_sync();
extern unsigned long long fc_lanes[1024];
}
static inline void __syncthreads() { fc_sync(); }
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned int x, y; };
// every thread of the block runs the emitted shuffles (they are never under a branch), so
// a block-wide exchange through memory between two barriers stands for the warp's
template <typename T> static T fc_exchange(T v, unsigned from) {
  unsigned long long bits = 0;
  __builtin_memcpy(&bits, &v, sizeof(T));
  fc_lanes[threadIdx.x] = bits;
  fc_sync();
  bits = fc_lanes[from];
  fc_sync();
  T r;
  __builtin_memcpy(&r, &bits, sizeof(T));
  return r;
}
template <typename T> static T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  return fc_exchange(v, threadIdx.x ^ lane_mask);
}
template <typename T> static T __shfl_up_sync(unsigned, T v, unsigned delta) {
  return fc_exchange(v, threadIdx.x % 32 >= delta ? threadIdx.x - delta : threadIdx.x);
}
template <typename T> static T __shfl_sync(unsigned, T v, int src_lane) {
  return fc_exchange(v, (threadIdx.x & ~31u) + src_lane);
}
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
template <typename T> static T fc_atomic(T* p, T v) {
  T old, next;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  do { next = old + v; } while (!__atomic_compare_exchange(p, &old, &next, false,
                                                           __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return old;
}
static float atomicAdd(float* p, float v) { return fc_atomic(p, v); }
static double atomicAdd(double* p, double v) { return fc_atomic(p, v); }
static int atomicAdd(int* p, int v) { return fc_atomic(p, v); }
static unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return fc_atomic(p, v);
}
// the fast-math intrinsics, as the accurate functions (the host has no SFU)
#define __expf expf
#define __logf logf
#define __log2f log2f
#define __sinf sinf
#define __cosf cosf
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fdividef(float x, float y) { return x / y; }
static double fc_d(long long b) { double d; __builtin_memcpy(&d, &b, 8); return d; }
"""

_CACHE = tempfile.mkdtemp(prefix="fusec-cuda-emu-")
atexit.register(shutil.rmtree, _CACHE, True)
_RUNTIME = []


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _compile(text: str, extra=()) -> str:
    key = hashlib.sha256(text.encode()).hexdigest()[:20]
    lib_path = os.path.join(_CACHE, f"k{key}.so")
    if not os.path.exists(lib_path):
        src_path = os.path.join(_CACHE, f"k{key}.cpp")
        with open(src_path, "w") as f:
            f.write(text)
        result = subprocess.run([compiler(), "-std=c++20", "-O1", "-shared", "-fPIC",
                                 "-pthread", "-w", *extra, "-o", lib_path, src_path],
                                capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"host compile failed:\n{result.stderr[:20000]}\n{text}")
    return lib_path


def _runtime():
    if not _RUNTIME:
        lib = ctypes.CDLL(_compile(RUNTIME), mode=ctypes.RTLD_GLOBAL)
        lib.fc_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
        _RUNTIME.append(lib)
    return _RUNTIME[0]


def _param(ctype: str, i: int) -> str:
    if ctype == "double":
        return f"fc_d(s[{i}])"
    if ctype.endswith("*"):
        return f"({ctype})(__INTPTR_TYPE__)s[{i}]"
    return f"s[{i}]"


def _trampolines(layout, names: list[str]) -> str:
    args = ", ".join(_param(ty, i) for i, (ty, _) in enumerate(layout.params))
    return "\n".join(f'extern "C" void call_{k}(const long long* s) {{ {name}({args}); }}'
                     for k, name in enumerate(names))


def build(kernel_op, warps: int = 4, arch: str = "", stages: int = 2):
    """(kernel library, entry points, layout, scratch bytes, threads, source) for a kernel
    op (after passes); `arch` "sm_80"+ emits the tensor-core paths (emulated), their K
    loops staged in up to `stages` buffers."""
    runtime = _runtime()
    source, layout, names, scratch, _ = emit_source(kernel_op, warps, arch, stages)
    # dynamic shared memory: a function-static array of the size the launch would ask for
    source = re.sub(r"extern __shared__ (.*?) fc_shared\[\];  // dynamic: (\d+) bytes",
                    r"__shared__ \1 fc_shared[\2];", source)
    source = emulate_tensor_cores(source)
    lib = ctypes.CDLL(_compile(HEADER + source + "\n" + _trampolines(layout, names)))
    entries = [ctypes.cast(getattr(lib, f"call_{k}"), ctypes.c_void_p).value
               for k in range(len(names))]
    return runtime, lib, entries, layout, scratch, warps * 32, source


def _describe_for(layout):
    """The emulation's counterpart of runtime.Runtime._describe, for numpy arrays."""
    def describe(a, pos, v, unit):
        if not isinstance(a, np.ndarray) or a.dtype != np.dtype(STORAGE[v.type.dtype]):
            raise TypeError(f"argument {pos}: expected a numpy array of {v.type}")
        if a.ndim != v.type.rank:
            raise ValueError(f"argument {pos}: expected rank {v.type.rank}, got {a.ndim}")
        if pos >= layout.n_params and not a.flags.c_contiguous:
            raise ValueError(f"argument {pos}: outputs (alloc) must be contiguous")
        strides = [s // a.itemsize for s in a.strides]
        for d in unit:
            if strides[d] != 1 and a.shape[d] > 1 and a.size:
                raise ValueError(f"argument {pos}: dim {d} was specialized for unit stride, "
                                 f"got stride {strides[d]}")
        return a.ctypes.data, list(a.shape), strides
    return describe


class EmulatedKernel:
    """A kernel op (after passes) compiled by the CUDA backend's emitter and run in the
    emulation. `run(args)` follows backends.interpret.run (numpy arrays)."""

    def __init__(self, kernel_op, warps: int = 4, arch: str = "", stages: int = 2):
        (self.runtime, self.lib, self.entries, self.layout, self.scratch, self.nthreads,
         self.source) = build(kernel_op, warps, arch, stages)
        self.num_launches = len(self.entries)

    def run(self, args: list) -> None:
        vals, programs = self.layout.pack(list(args), _describe_for(self.layout))
        keep = []
        for k, entry in enumerate(self.entries):
            if programs[k] <= 0:
                continue
            if self.scratch[k]:
                buf = np.empty(programs[k] * self.scratch[k] + 16, np.uint8)
                keep.append(buf)
                vals[self.layout.scratch_slots[k]] = (buf.ctypes.data + 15) & ~15
            packed = np.array(vals, dtype=np.int64)
            self.runtime.fc_run(entry, packed.ctypes.data, programs[k], self.nthreads)


class Emulated:
    """A fusec CompiledKernel (any backend) whose device code runs in the emulation."""

    def __init__(self, compiled, warps: int = 4, arch: str = "", stages: int = 2):
        self.kernel = EmulatedKernel(compiled.module.kernel(), warps, arch, stages)
        self.source = self.kernel.source
        self.num_launches = self.kernel.num_launches
        self.compiled = copy.copy(compiled)
        self.compiled._run = self.kernel.run

    def __call__(self, *args):
        return self.compiled(*args)
