"""Loading and launching a compiled CUDA kernel with the driver API (cuda.bindings.driver),
on the stream torch is using.

- Loading (once per device): the cubin goes into the device's *primary* context -- the one
  the CUDA runtime, hence torch, uses -- with cuModuleLoadData; cuModuleGetFunction per
  launch. A cubin runs on devices of its arch's major with a minor >= its own (sm_90a only
  on sm_90); others are refused with a clear error rather than a driver error.
- Calling (`launch(args)`): args follow backends.interpret.run (params, then one output per
  alloc) with torch CUDA tensors for every tensor. The 8-byte parameter values of the call
  (layout.py) are worked out once per call geometry (a LaunchPlan) into one int64 array
  whose kernelParams pointers never change: a cached call writes the data pointers and
  launches. Each launch goes to `torch.cuda.current_stream(device)` with grid
  (programs, 1, 1) and warps*32 threads (both GPU backends run a program per block). Global
  scratch (tile buffers over the shared-memory budget) is
  a torch.empty of programs * bytes per program on the device per call (torch's caching
  allocator: stream-ordered, cheap).
- Every driver call is checked; failures raise CUDAError naming the kernel and the call.
  Errors in the kernel itself (an illegal address) surface at the next synchronization, as
  with any CUDA launch.

Nothing here touches torch or the driver at import time: compiling needs no GPU.
"""
from __future__ import annotations

import threading

import numpy as np

from .errors import CUDAError, NoGPUError
from .layout import Layout

MAX_GRID_X = (1 << 31) - 1


def _driver():
    from cuda.bindings import driver
    return driver


def _torch():
    import torch
    if not torch.cuda.is_available():
        raise NoGPUError("this kernel was compiled for a CUDA GPU, but torch sees none "
                         "(torch.cuda.is_available() is False): call it on a machine with "
                         "a GPU, or compile for the CPU (backend='cpu')")
    return torch


def check(result, what: str, kernel: str):
    """The values of a driver call's result tuple; CUDAError unless it succeeded."""
    drv = _driver()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != drv.CUresult.CUDA_SUCCESS:
        _, name = drv.cuGetErrorName(err)
        _, text = drv.cuGetErrorString(err)
        decode = lambda s: s.decode() if isinstance(s, bytes) else str(s)   # noqa: E731
        raise CUDAError(f"kernel {kernel!r}: {what} failed: {decode(name)}: {decode(text)}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def runs_on(cubin_arch: str, device_arch: str) -> bool:
    """Whether SASS for cubin_arch (sm_XY[a]) runs on a device of device_arch (sm_XY)."""
    want = cubin_arch.removeprefix("sm_")
    have = device_arch.removeprefix("sm_")
    if want.endswith("a"):
        return want[:-1] == have
    return want[:-1] == have[:-1] and int(want[-1]) <= int(have[-1])


class _Loaded:
    __slots__ = ("ctx", "ctx_id", "module", "functions")

    def __init__(self, ctx, module, functions):
        self.ctx, self.ctx_id, self.module, self.functions = ctx, int(ctx), module, functions


class Runtime:
    def __init__(self, name: str, cubin: bytes, arch: str, functions: list[str],
                 layout: Layout, nthreads: int, scratch_bytes: list[int],
                 shared_bytes: list[int] | None = None):
        self.name = name
        self.cubin = cubin
        self.arch = arch
        self.function_names = functions
        self.layout = layout
        self.nthreads = nthreads
        self.scratch_bytes = scratch_bytes
        self.shared_bytes = shared_bytes or [0] * len(functions)    # dynamic, per launch
        self._loaded: dict[int, _Loaded] = {}
        self._lock = threading.Lock()        # plan() records the device of a call's tensors
        self._torch = None
        self._dtypes = None
        self._device = None

    # -- loading -----------------------------------------------------------------------------
    def _load(self, device: int) -> _Loaded:
        torch = _torch()
        major, minor = torch.cuda.get_device_capability(device)
        have = f"sm_{major}{minor}"
        if not runs_on(self.arch, have):
            raise CUDAError(f"kernel {self.name!r} was compiled for {self.arch} but device "
                            f"{device} is {have}: compile it for target={have!r}")
        drv = _driver()
        check(drv.cuInit(0), "cuInit", self.name)
        dev = check(drv.cuDeviceGet(device), "cuDeviceGet", self.name)
        ctx = check(drv.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain", self.name)
        check(drv.cuCtxPushCurrent(ctx), "cuCtxPushCurrent", self.name)
        try:
            module = check(drv.cuModuleLoadData(self.cubin), "cuModuleLoadData", self.name)
            fns = [check(drv.cuModuleGetFunction(module, f.encode()),
                         f"cuModuleGetFunction({f})", self.name) for f in self.function_names]
            for f, fn, nbytes in zip(self.function_names, fns, self.shared_bytes):
                if nbytes:          # past the 48 KB default: opted in per function
                    check(drv.cuFuncSetAttribute(
                        fn, drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        nbytes), f"cuFuncSetAttribute({f}, max dynamic shared = {nbytes})",
                        self.name)
        finally:
            check(drv.cuCtxPopCurrent(), "cuCtxPopCurrent", self.name)
        loaded = _Loaded(ctx, module, fns)
        self._loaded[device] = loaded
        return loaded

    # -- arguments ---------------------------------------------------------------------------
    def _describe(self, a, pos: int, v, unit):
        """(pointer, shape, strides) of a torch CUDA tensor argument, checked."""
        torch = self._torch
        if not isinstance(a, torch.Tensor) or a.device.type != "cuda":
            raise TypeError(f"kernel {self.name!r}, argument {pos}: expected a torch CUDA "
                            f"tensor for {v.type}, got {_kind(a)}")
        want = self._dtypes[v.type.dtype]
        if a.dtype != want:
            raise TypeError(f"kernel {self.name!r}, argument {pos}: expected dtype {want} "
                            f"for {v.type}, got {a.dtype}")
        if a.dim() != v.type.rank:
            raise ValueError(f"kernel {self.name!r}, argument {pos}: expected rank "
                             f"{v.type.rank}, got {a.dim()}")
        if self._device is None:
            self._device = a.device.index
        elif a.device.index != self._device:
            raise ValueError(f"kernel {self.name!r}, argument {pos}: on cuda:{a.device.index}"
                             f" but other tensors are on cuda:{self._device}")
        shape, strides = a.shape, a.stride()
        if pos >= self.layout.n_params and not a.is_contiguous():
            raise ValueError(f"kernel {self.name!r}, argument {pos}: outputs (alloc) must be "
                             "contiguous")
        for d in unit:
            if strides[d] != 1 and shape[d] > 1 and a.numel():
                raise ValueError(f"kernel {self.name!r}, argument {pos}: dim {d} was "
                                 f"specialized for unit stride, got stride {strides[d]}")
        return a.data_ptr(), list(shape), list(strides)

    # -- calling -----------------------------------------------------------------------------
    def launch(self, args: list) -> None:
        self.plan(args).launch(args)

    def plan(self, args: list) -> "LaunchPlan":
        """Check args (params, then outputs) and work out the launch parameters of calls
        shaped like them."""
        if self._torch is None:             # first call: torch, a GPU, the dtype table
            self._torch = _torch()
            from ...ir.dtypes import ALL_DTYPES
            self._dtypes = {d: getattr(self._torch, d.name) for d in ALL_DTYPES}
        with self._lock:
            self._device = None
            vals, programs = self.layout.pack(args, self._describe)
            device = self._device if self._device is not None else \
                self._torch.cuda.current_device()
            loaded = self._loaded.get(device) or self._load(device)
        return LaunchPlan(self, vals, programs, device, loaded)


def _raw_stream(torch):
    """device -> the handle of torch's current stream on it (torch's internal accessor, as
    Triton and Inductor use it, when there: a tenth of torch.cuda.current_stream's cost)."""
    fast = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if fast is not None:
        return fast
    return lambda device: torch.cuda.current_stream(device).cuda_stream


class LaunchPlan:
    """The parameter values of one call with everything but the data pointers worked out:
    `launch(args)` for any args of the same shapes, strides and scalar values (the Kernel's
    call cache guarantees it) writes the new pointers and launches, nothing else. A plan
    owns its parameter array (only the pointer slots change between its calls); the lock
    keeps two threads launching one plan from mixing their pointers."""

    def __init__(self, rt: Runtime, vals: list, programs: list, device: int, loaded):
        self.rt = rt
        self.vals = np.array(vals if vals else [0], dtype=np.int64)
        base = self.vals.ctypes.data
        self._ptrs = np.array([base + 8 * i for i in range(len(self.vals))], dtype=np.uint64)
        self.params = self._ptrs.ctypes.data
        self.pointer_slots = [(slot, pos) for pos, slot, *_ in rt.layout.tensors]
        self.device = device
        self.device_name = f"cuda:{device}"
        self.loaded = loaded
        self.stream_of = _raw_stream(rt._torch)
        self._lock = threading.Lock()
        self.launches = []         # (launch index, function, blocks, scratch bytes, shared)
        for k, fn in enumerate(loaded.functions):
            n = programs[k]
            if n <= 0:
                continue
            if n > MAX_GRID_X:
                raise CUDAError(f"kernel {rt.name!r}: launch {k} has {n} programs, more "
                                f"than the grid allows ({MAX_GRID_X})")
            self.launches.append((k, fn, n, n * rt.scratch_bytes[k], rt.shared_bytes[k]))

    def launch(self, args: list) -> None:
        rt, drv = self.rt, _driver()
        ok = drv.CUresult.CUDA_SUCCESS
        with self._lock:
            slots = self.vals
            for slot, pos in self.pointer_slots:
                slots[slot] = args[pos].data_ptr()
            stream = drv.CUstream(self.stream_of(self.device))
            err, current = drv.cuCtxGetCurrent()
            if err != ok:
                check((err,), "cuCtxGetCurrent", rt.name)
            pushed = int(current) != self.loaded.ctx_id
            if pushed:
                check(drv.cuCtxPushCurrent(self.loaded.ctx), "cuCtxPushCurrent", rt.name)
            scratch = []                  # alive until every launch is enqueued
            try:
                for k, fn, blocks, nbytes, shared in self.launches:
                    if nbytes:
                        buf = rt._torch.empty(nbytes, dtype=rt._torch.uint8,
                                              device=self.device_name)
                        scratch.append(buf)
                        slots[rt.layout.scratch_slots[k]] = buf.data_ptr()
                    err, = drv.cuLaunchKernel(fn, blocks, 1, 1, rt.nthreads, 1, 1, shared,
                                              stream, self.params, 0)
                    if err != ok:        # the message is built only when it is needed
                        check((err,), f"cuLaunchKernel({rt.function_names[k]}, grid={blocks},"
                                      f" block={rt.nthreads})", rt.name)
            finally:
                if pushed:
                    check(drv.cuCtxPopCurrent(), "cuCtxPopCurrent", rt.name)


def _kind(a) -> str:
    device = getattr(a, "device", None)
    where = f" on {device}" if device is not None else ""
    return f"{type(a).__module__}.{type(a).__name__}{where}"
