"""How a kernel call gets its config when none is given: the autotuning policy per backend
and the plumbing between a call and the autotuner (autotune/tuner.py).

The default policy (`@fusec.kernel(autotune=True)`): a first call should not wait for a
dozen compiles (a measured GPU tuning costs seconds per kernel and shape bucket; the peers
measure only when asked too: @triton.autotune, Inductor's max-autotune), so nothing is
measured unless asked:
  cpu         the model's pick: on the CPU the model mostly has to avoid the bad corners
              (short rows, too many rows, idle cores), and does
  cuda        the model's pick, calibrated on a measured config sweep (autotune/
              gpu_calibration.json; benchmarks/RESULTS.md "GPU cost model calibration"):
              it keeps the fixed policy's config unless it estimates its own pick faster by
              more than its measured error (on the H200 sweep's four anchors it keeps it:
              the fixed config is the fastest or within 2.4% of it); it moves off it where
              the fixed blocks spill rows out of registers or leave lanes masked. Kernels
              with a dot keep the fixed config: the sweep held none
  ptx         the fixed default-block policy: the model is calibrated on the cuda backend's
              code (register tiles, vector access), which the ptx backend does not emit
Measured when `configs=` lists more than one config (the user asked for a choice among
them) or with autotune="measure": the model's best few and the default policy's config are
compiled and timed on the call's arguments (copies of those it writes), the result cached on
disk so a later process skips it.
  interpret   the default policy's blocks, whatever `autotune` says (the reference
              interpreter is not for speed)
autotune=False: the model's pick (no measuring); autotune="measure": measured wherever the
call can run here; autotune="default": the fixed default-block policy. One config in
`configs=` is used as given.
Measuring needs real arguments on a device of this machine; `compile()` with TensorSpecs (or
for a GPU arch without one) falls back to the model's pick.
"""
from __future__ import annotations

import functools

import numpy as np

from . import arrays
from .autotune import tuner
from .autotune.hardware import gpu_info
from .autotune.machine import Machine, machine_for
from .compiler import TILE_ELEMENTS_CAP, autotune_facts, default_config
from .specialize import TensorSpec, describe

GPU_BACKENDS = ("cuda", "ptx")
# The search space's tile cap where it differs from the fixed policy's (compiler.py
# TILE_ELEMENTS_CAP): the cuda model prices where a tile lives (registers up to
# TILE_REGISTERS elements a thread, else shared memory or global scratch), so tiles up to
# what the largest block holds in registers (16 warps x 32 threads x 32) are candidates,
# and rows of 8192 or 16384 elements can take the warps that keep them in registers.
SPACE_CAP = {"cuda": 16384}
POLICY = {"cuda": "model", "ptx": "default", "cpu": "model", "interpret": "default"}
AUTOTUNE_VALUES = (True, False, "measure", "default")


def check_autotune(value):
    if not any(value is v or (isinstance(v, str) and value == v) for v in AUTOTUNE_VALUES):
        raise ValueError(f"fusec.kernel: autotune must be True, False, 'measure' or 'default', "
                         f"got {value!r}")
    return value


def mode(autotune, backend: str, n_configs: int, can_measure) -> str:
    """"default" (the fixed policy, or the one config given), "model" or "measure".
    `can_measure()`: whether this call could be launched here (asked only when it matters:
    this runs on every call)."""
    if backend == "interpret" or autotune == "default" or n_configs == 1:
        return "default"
    if autotune is False:
        return "model"
    wanted = "measure" if autotune == "measure" or n_configs > 1 else POLICY.get(backend,
                                                                                  "model")
    if wanted == "measure":
        return "measure" if can_measure() else "model"
    return wanted


def runnable(values: list, backend: str) -> bool:
    """Whether a call with these values can be launched here (to be measured)."""
    if any(isinstance(v, TensorSpec) for v in values):
        return False                              # nothing to run
    tensors = [v for v in values if arrays.is_array(v)]
    if backend in GPU_BACKENDS:
        return bool(tensors) and all(arrays.device_of(t) == "cuda" for t in tensors)
    return all(arrays.device_of(t) == "cpu" for t in tensors)


@functools.lru_cache(maxsize=None)
def machine(backend: str, target: str) -> Machine:
    if backend in GPU_BACKENDS:
        return machine_for("gpu", target if target.startswith("sm_") else None)
    from .backends.llvm.runtime import PARALLEL_WORK
    return machine_for("cpu", serial_work=PARALLEL_WORK)


def same_layout_copy(a):
    """A copy of array `a` with its strides and its data address modulo 64 (what the
    specialization assumed of it), in its own memory."""
    if arrays.is_torch_tensor(a):
        import torch
        copy = torch.empty_strided(a.size(), a.stride(), dtype=a.dtype, device=a.device)
        return copy.copy_(a)
    low = sum(s * (n - 1) for s, n in zip(a.strides, a.shape) if s < 0 and n)
    high = sum(s * (n - 1) for s, n in zip(a.strides, a.shape) if s > 0 and n) + a.itemsize
    raw = np.empty(high - low + 64, np.uint8)
    start = (a.ctypes.data - raw.ctypes.data + low) % 64 - low     # element 0 of the copy
    usable = (raw.size - start) // a.itemsize * a.itemsize
    copy = np.lib.stride_tricks.as_strided(raw[start:start + usable].view(a.dtype), a.shape,
                                           a.strides)
    np.copyto(copy, a)
    return copy


def launcher(compiled, runtime_args: list):
    """A launch of `compiled` on the call's arguments, those it writes replaced by copies."""
    args = list(runtime_args)
    for index, _ in compiled._written:
        args[index] = same_layout_copy(args[index])
    return lambda: compiled.run(args)


def space_cap(backend: str) -> int:
    return SPACE_CAP.get(backend) or TILE_ELEMENTS_CAP.get(backend, 16384)


def facts_for(kernel, *args):
    """The autotuner's facts for a call of `kernel` (a fusec.kernel) with these arguments
    (tensors, arrays, TensorSpecs, scalars): for tools that rank configs without calling."""
    params = [describe(p.name, a, p.name in kernel.constexprs, False)[1]
              for p, a in zip(kernel.params, args)]
    return autotune_facts(kernel.fn, params)


def ranked(facts, backend: str, target: str) -> list:
    """The pruned space in the model's order (tuner.Candidate), the default policy's config
    among them: what the "model" policy picks from (with tuner.margin)."""
    return tuner.ranked(facts, machine(backend, target), space_cap(backend),
                        default_config(facts, backend, target), [])


def choose(kernel_name: str, facts, backend: str, target: str, how: str, configs: list,
           key_parts: tuple, build_for, runtime_args: list | None) -> "tuner.Tuning":
    """Run the autotuner for one call. `build_for(config)` compiles (and caches) the kernel
    for a config; `runtime_args` are the call's (None when it cannot run here)."""
    m = machine(backend, target)
    cap = space_cap(backend)

    def prepare(config):
        return launcher(build_for(config), runtime_args)

    info = gpu_info() if backend in GPU_BACKENDS else None
    return tuner.choose(facts, m, cap, how, default_config(facts, backend, target), configs,
                        prepare if runtime_args is not None else None, key_parts,
                        kernel_name, info.l2_bytes if info else 0)


def restored(config) -> "tuner.Tuning":
    """The record of a choice an earlier process made, for a kernel restored whole from
    the disk cache (kernel_store.py)."""
    return tuner.Tuning(config, "cached")
