"""The native call path of compiled kernels (fastcall.c): a repeated call with the same
argument geometry is one C call that checks the arguments (what Kernel._call_key keys:
tensors' type, dtype, shape, strides, device, 16-byte alignment; scalars' exact values; the
FUSEC_BACKEND/FUSEC_INTERPRET variables), allocates the outputs with torch.empty_strided,
writes the data pointers into the launch plan's parameters and launches: on a GPU on
torch's current stream (`make`), on the CPU with the GIL released, the programs spread over
native worker threads (`make_cpu`, native_pool.c). It returns NotImplemented when the
arguments do not match: the Python dispatch then runs as before.

The extension is compiled once per machine and Python version with the host C compiler
(`$CC`, else `cc`) and the Python headers, as Triton builds its launchers, into the fusec
cache folder. Where that is impossible (no compiler, no headers) or FUSEC_NATIVE_CALLS=0,
calls take the Python path (CompiledKernel.fast_path), and `status()` says why.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

import numpy as np

from . import arrays
from .errors import LaunchError

SOURCE = Path(__file__).with_name("fastcall.c")
INCLUDED = [Path(__file__).with_name("native_pool.c")]      # #include'd by SOURCE
MODULE_NAME = "fusec_fastcall"
ARG_TENSOR, ARG_INT, ARG_FLOAT, ARG_OTHER, ARG_NDARRAY, ARG_KNOWN_TENSOR = 0, 1, 2, 3, 5, 6

_lock = threading.Lock()
_state: dict = {}              # "module" or "reason"


def status() -> str:
    """'native' when calls take the C path, else why they do not."""
    _module()
    return "native" if _state.get("module") is not None else _state["reason"]


def _module():
    if "module" in _state:
        return _state["module"]
    with _lock:
        if "module" not in _state:
            module, reason = None, None
            if os.environ.get("FUSEC_NATIVE_CALLS") == "0":
                reason = "FUSEC_NATIVE_CALLS=0"
            else:
                try:
                    module = _load(_build())
                except (OSError, RuntimeError, ImportError, subprocess.SubprocessError) as exc:
                    reason = f"the native call path could not be built: {exc}"
            _state["module"], _state["reason"] = module, reason
    return _state["module"]


def _build() -> Path:
    """The compiled extension in the cache folder (built there once, atomically)."""
    from .autotune.cache import cache_root
    source = b"".join(path.read_bytes() for path in [SOURCE] + INCLUDED)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    tag = hashlib.sha256(source + sys.version.encode()).hexdigest()[:16]
    folder = cache_root() / "native"
    target = folder / f"{MODULE_NAME}-{tag}{suffix}"
    if target.exists():
        return target
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise RuntimeError(f"no C compiler ({os.environ.get('CC', 'cc')!r} is not on PATH)")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise RuntimeError(f"no Python headers ({include}/Python.h is missing)")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=folder)
    os.close(fd)
    try:
        done = subprocess.run([cc, "-O2", "-shared", "-fPIC", f"-I{include}", str(SOURCE),
                               "-o", tmp, "-ldl", "-lpthread"], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load(path: Path):
    loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(path))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _guard(a, runtime_slot, tensor_types, written: bool = False, arrays_too: bool = False,
           known: bool = False):
    """The guard tuple of one argument, or None when the C path cannot check it; numpy
    arrays only with arrays_too (CPU kernels; `written`: the kernel writes into it);
    `known`: a tensor whose dtype, shape, strides and device the caller guarantees (only
    its type and alignment are checked)."""
    t = type(a)
    if t in tensor_types:
        return (ARG_KNOWN_TENSOR if known else ARG_TENSOR, a.dtype, None, 0.0,
                tuple(a.shape), tuple(a.stride()), a.get_device(), a.data_ptr() & 15,
                runtime_slot)
    if t is np.ndarray:
        if not arrays_too:
            return None
        try:
            fmt = memoryview(a).format
        except (TypeError, ValueError):     # a dtype the buffer protocol cannot export
            return None
        return (ARG_NDARRAY, fmt, np.ndarray, 0.0, a.shape, a.strides, int(written),
                a.ctypes.data & 15, runtime_slot)
    if t is float:
        return (ARG_FLOAT, None, None, a, (), (), 0, 0, -1)
    if t is int or t is bool:
        return (ARG_INT, a, t, 0.0, (), (), 0, 0, -1)
    try:
        hash(a)
    except TypeError:
        return None
    return (ARG_OTHER, a, t, 0.0, (), (), 0, 0, -1)


def _guards(args, positions, slot_of: dict, tensor_types, written=frozenset(),
            arrays_too: bool = False, known=frozenset()) -> list | None:
    """The guard tuples of a call's whole argument tuple (positions: the runtime params'
    places in it; slot_of: runtime position -> pointer slot), or None when the C path
    cannot check one of them (_guard's `written` / `arrays_too` / `known` by place)."""
    runtime_of = {full: k for k, full in enumerate(positions)}
    guards = []
    for i, a in enumerate(args):
        k = runtime_of.get(i)
        guard = _guard(a, slot_of.get(k, -1) if k is not None else -1, tensor_types,
                       i in written, arrays_too, i in known)
        if guard is None:
            return None
        guards.append(guard)
    return guards


def _torch_outputs(outputs, slot_of: dict, n_params: int, device) -> list:
    """FastCall's outputs made by torch.empty_strided on `device` (or by _fast_empty's
    allocator with the same sizes, strides and dtype)."""
    return [((tuple(shape), tuple(strides)), {"dtype": dtype, "device": device}, int(zero),
             slot_of[n_params + j], None, (tuple(shape), tuple(strides), dtype))
            for j, (shape, strides, dtype, zero) in enumerate(outputs)]


def _fast_empty(torch, device_type: str):
    """torch's allocator for Inductor's generated code on `device_type` (positional sizes,
    strides, dtype; CUDA tensors on the current device): half torch.empty_strided's cost,
    which parses keywords. None where this torch lacks it."""
    guards = getattr(getattr(torch._C, "_dynamo", None), "guards", None)
    if device_type == "cuda" and not hasattr(torch._C, "_cuda_getDevice"):
        return None              # no way to tell that the current device is the kernel's
    return getattr(guards, f"_empty_strided_{device_type}", None)


def _results(compiled, positions) -> tuple[list, int]:
    """(what a call returns: argument places >= 0, outputs -1 - i; FastCall's result kind:
    0 a tuple, 1 the one result, 2 None)."""
    results = [positions[i] if kind == "param" else -1 - i for kind, i in compiled._returns]
    return results, 0 if compiled._returns_tuple or len(results) > 1 else (1 if results else 2)


def make(compiled, plan, args, positions, outputs, made, known=frozenset()) -> object | None:
    """A FastCall for later calls shaped like `args` (the kernel's whole argument tuple)
    through `plan` (its LaunchPlan); outputs: (shape, strides, torch dtype, zero) per
    alloc, `made` the tensors of this call's outputs; `known`: places of tensors whose
    layout the caller guarantees (ARG_KNOWN_TENSOR). None where the C path is unavailable
    or an argument is of a kind it does not check."""
    module = _module()
    if module is None:
        return None
    torch = arrays._torch()
    tensor_types = (torch.Tensor, torch.nn.Parameter)
    rt = plan.rt
    slot_of = {pos: slot for slot, pos in plan.pointer_slots}    # runtime position -> slot
    guards = _guards(args, positions, slot_of, tensor_types, known=known)
    if guards is None:
        return None
    device = made[0].device if made else next(
        a.device for a in args if type(a) in tensor_types)
    outs = _torch_outputs(outputs, slot_of, len(positions), device)
    launches = [(int(fn), blocks, rt.nthreads, shared, ((nbytes,), (1,)) if nbytes else None,
                 rt.layout.scratch_slots[k], rt.function_names[k])
                for k, fn, blocks, nbytes, shared in plan.launches]
    results, kind = _results(compiled, positions)
    return module.FastCall(
        guards, outs, launches, results, kind, plan.vals.ctypes.data, plan.vals.size, plan.params,
        plan.loaded.ctx_id, plan, plan.stream_of, plan.device, torch.empty_strided,
        {"dtype": torch.uint8, "device": device}, tensor_types, LaunchError, compiled.name,
        os.environ.get("FUSEC_BACKEND"), os.environ.get("FUSEC_INTERPRET"), False,
        _fast_empty(torch, device.type), getattr(torch._C, "_cuda_getDevice", None))


# the OpenMP runtime libraries torch may have loaded (GNU's, LLVM's, Intel's)
_OPENMP_LIBRARY = re.compile(r"/lib(g|i|)omp[-.\w]*\.so[.\d]*$")


def loaded_openmp() -> str | None:
    """The path of an OpenMP runtime this process has loaded (Linux), else None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(None, 5)[-1].strip()
                if _OPENMP_LIBRARY.search(path):
                    return path
    except OSError:
        pass
    return None


def cpu_threads() -> str:
    """Whose threads run the CPU backend's parallel launches (the native path's, and the
    Python path's through backends/llvm/runtime.py): 'openmp <path>' (the process's OpenMP
    runtime, torch's), 'fusec' (native_pool.c's own) or, without the native module, why
    not (Python's thread pool runs them)."""
    module = _module()
    if module is None:
        return _state["reason"]
    if "openmp" not in _state:
        with _lock:
            if "openmp" not in _state:
                from .backends.llvm import runtime
                path = loaded_openmp()
                _state["openmp"] = path if path and module.use_openmp(path) else None
                runtime.use_native_runner(module.run_programs)
    return f"openmp {_state['openmp']}" if _state["openmp"] else "fusec"


def make_cpu(compiled, args, positions, outputs, arrays_now, native_plan,
             numpy_outputs: bool = False, known=frozenset()) -> object | None:
    """make() for a kernel compiled for the CPU (torch CPU tensors or numpy arrays):
    outputs as in make() (with numpy_outputs, numpy dtypes: made by numpy.empty/zeros);
    arrays_now: this call's runtime arrays and outputs, in the functions' argument order,
    from which native_plan (CompiledCPUKernel.native_plan) packs the argument array."""
    module = _module()
    if module is None:
        return None
    from .backends.llvm.runtime import NATIVE_PARALLEL_WORK
    torch = arrays._torch()
    tensor_types = (torch.Tensor, torch.nn.Parameter) if torch is not None else ()
    packed, slot_of, launches = native_plan(arrays_now, NATIVE_PARALLEL_WORK)
    written = {positions[i] for i, _ in compiled._written}
    guards = _guards(args, positions, slot_of, tensor_types, written, arrays_too=True,
                     known=known)
    if guards is None:
        return None
    n_params = len(positions)
    if numpy_outputs:
        outs = [((tuple(shape),), {"dtype": dtype}, int(zero), slot_of[n_params + j],
                 np.zeros if zero else np.empty)
                for j, (shape, _, dtype, zero) in enumerate(outputs)]
    else:
        outs = _torch_outputs(outputs, slot_of, n_params, torch.device("cpu"))
    results, kind = _results(compiled, positions)
    address = ctypes.addressof(packed)
    return module.FastCall(
        guards, outs, launches, results, kind, address, len(packed), 0, 0, (packed, native_plan),
        None, None, torch.empty_strided if torch is not None else None, {}, tensor_types,
        LaunchError, compiled.name, os.environ.get("FUSEC_BACKEND"),
        os.environ.get("FUSEC_INTERPRET"), True,
        _fast_empty(torch, "cpu") if torch is not None and not numpy_outputs else None)
