"""GPU variants: a cubin per variant and arch, loaded with the CUDA driver API
(cuda.bindings.driver) into the device's primary context -- the one torch uses -- and
launched with cuLaunchKernel on torch's current stream.

A cubin for sm_XY runs on devices of the same major and a minor >= Y; one for sm_XYa only
on sm_XY. Among the variants that run on a device the exact arch is preferred. On a device
no cubin runs on (a newer GPU), a variant's PTX for sm_XY (not sm_XYa) is compiled by the
driver when the device's compute capability is >= XY: the next-arch fallback. The
artifact's sha256 is checked before the driver sees it. Every parameter is an 8-byte slot (slots.py),
written into one int64 array whose kernelParams pointers never change; each launch has
grid (programs, 1, 1) and the variant's threads per program. Global scratch (tile buffers
over the shared-memory budget) is a torch allocation on the device per call. A launch whose
staged operands exceed the 48 KB a block gets by default asks for dynamic shared memory
(its "shared_bytes"; absent in older manifests: none): its function is opted in to that
much once at load (cuFuncSetAttribute) and every launch of it passes it to cuLaunchKernel.
Nothing touches the driver before the first GPU call.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .errors import LaunchError
from .manifest import read_artifact

MAX_GRID_X = (1 << 31) - 1


def _driver():
    from cuda.bindings import driver
    return driver


def runs_on(cubin_arch: str, device_arch: str) -> bool:
    want = cubin_arch.removeprefix("sm_")
    have = device_arch.removeprefix("sm_")
    if want.endswith("a"):
        return want[:-1] == have
    return want[:-1] == have[:-1] and int(want[-1]) <= int(have[-1])


def ptx_runs_on(arch: str, device_arch: str) -> bool:
    """Whether PTX written for arch (sm_XY) can be compiled for a device of device_arch."""
    if arch.endswith("a"):
        return False
    return int(arch.removeprefix("sm_")) <= int(device_arch.removeprefix("sm_"))


def preference(cubin_arch: str, device_arch: str) -> tuple:
    """Larger is better among archs that run on the device: sm_90a, then sm_90, then
    sm_89, ... on an sm_90."""
    number = cubin_arch.removeprefix("sm_").rstrip("a")
    return (cubin_arch.rstrip("a") == device_arch, cubin_arch.endswith("a"), int(number))


def check(result, what: str, kernel: str):
    """The values of a driver call's result tuple; LaunchError unless it succeeded."""
    drv = _driver()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != drv.CUresult.CUDA_SUCCESS:
        _, name = drv.cuGetErrorName(err)
        _, text = drv.cuGetErrorString(err)
        decode = lambda s: s.decode() if isinstance(s, bytes) else str(s)   # noqa: E731
        raise LaunchError(f"kernel {kernel!r}: {what} failed: {decode(name)}: {decode(text)}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


class CudaVariant:
    def __init__(self, root: Path, variant: dict, kernel: str):
        self.root = root
        self.variant = variant
        self.kernel = kernel
        self.arch = variant["target"]
        self.threads = variant["cuda"]["threads"]
        self.launches = variant["layout"]["launches"]
        self.shared = [launch.get("shared_bytes", 0) for launch in self.launches]
        n = max(1, variant["layout"]["slots"])
        self._vals = np.zeros(n, dtype=np.int64)
        self._ptrs = np.array([self._vals.ctypes.data + 8 * i for i in range(n)],
                              dtype=np.uint64)
        self._loaded: dict[int, tuple] = {}      # device -> (context, module, functions)
        self._lock = threading.Lock()

    def _load(self, device: int) -> tuple:
        drv = _driver()
        name = self.kernel
        check(drv.cuInit(0), "cuInit", name)
        dev = check(drv.cuDeviceGet(device), "cuDeviceGet", name)
        attr = drv.CUdevice_attribute
        major, minor = (check(drv.cuDeviceGetAttribute(a, dev), "cuDeviceGetAttribute", name)
                        for a in (attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                  attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
        if runs_on(self.arch, f"sm_{major}{minor}") or "ptx" not in self.variant:
            data = read_artifact(self.root, self.variant["artifact"])
        else:                       # the driver compiles the PTX (a NUL-terminated image)
            data = read_artifact(self.root, self.variant["ptx"]) + b"\0"
        ctx = check(drv.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain", name)
        check(drv.cuCtxPushCurrent(ctx), "cuCtxPushCurrent", name)
        try:
            module = check(drv.cuModuleLoadData(data), "cuModuleLoadData", name)
            fns = [check(drv.cuModuleGetFunction(module, launch["function"].encode()),
                         f"cuModuleGetFunction({launch['function']})", name)
                   for launch in self.launches]
            dynamic = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            for fn, nbytes, launch in zip(fns, self.shared, self.launches):
                if nbytes > 0:      # past the 48 KB default: opted in per function
                    check(drv.cuFuncSetAttribute(fn, dynamic, nbytes),
                          f"cuFuncSetAttribute({launch['function']}, max dynamic shared = "
                          f"{nbytes})", name)
        finally:
            check(drv.cuCtxPopCurrent(), "cuCtxPopCurrent", name)
        loaded = self._loaded[device] = (ctx, int(ctx), fns)
        return loaded

    def launch(self, vals: list[int], programs: list[int], device: int, torch) -> None:
        drv = _driver()
        name = self.kernel
        with self._lock:
            ctx, ctx_id, fns = self._loaded.get(device) or self._load(device)
            stream = drv.CUstream(torch.cuda.current_stream(device).cuda_stream)
            pushed = int(check(drv.cuCtxGetCurrent(), "cuCtxGetCurrent", name)) != ctx_id
            if pushed:
                check(drv.cuCtxPushCurrent(ctx), "cuCtxPushCurrent", name)
            scratch = []                      # alive until every launch is enqueued
            try:
                for fn, n, launch, shared in zip(fns, programs, self.launches, self.shared):
                    if n <= 0:
                        continue
                    if n > MAX_GRID_X:
                        raise LaunchError(f"kernel {name!r}: {launch['function']} has {n} "
                                          f"programs, more than a grid allows ({MAX_GRID_X})")
                    if launch.get("scratch_bytes"):
                        buf = torch.empty(n * launch["scratch_bytes"], dtype=torch.uint8,
                                          device=f"cuda:{device}")
                        scratch.append(buf)
                        vals[launch["scratch_slot"]] = buf.data_ptr()
                    self._vals[:len(vals)] = vals
                    check(drv.cuLaunchKernel(fn, n, 1, 1, self.threads, 1, 1, shared, stream,
                                             self._ptrs.ctypes.data, 0),
                          f"cuLaunchKernel({launch['function']}, grid={n}, "
                          f"block={self.threads}, shared={shared})", name)
            finally:
                if pushed:
                    check(drv.cuCtxPopCurrent(), "cuCtxPopCurrent", name)
