"""The array kinds kernels accept (numpy arrays, torch tensors) and their views for backends.

torch is imported only when a torch tensor is seen, so numpy-only use stays light.
"""
from __future__ import annotations

import sys

import numpy as np

from .backends.numeric import STORAGE
from .ir import dtypes as D

_NUMPY_DTYPES = {np.dtype(v): k for k, v in STORAGE.items() if k != D.bfloat16}


def _torch():
    return sys.modules.get("torch")


def _torch_dtypes():
    torch = _torch()
    return {torch.bool: D.bool_, torch.int8: D.int8, torch.int16: D.int16,
            torch.int32: D.int32, torch.int64: D.int64, torch.uint8: D.uint8,
            torch.float16: D.float16, torch.bfloat16: D.bfloat16, torch.float32: D.float32,
            torch.float64: D.float64}


def is_torch_tensor(value) -> bool:
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


def is_array(value) -> bool:
    return isinstance(value, np.ndarray) or is_torch_tensor(value)


def dtype_of(value) -> D.DType:
    if isinstance(value, np.ndarray):
        try:
            return _NUMPY_DTYPES[value.dtype]
        except KeyError:
            raise TypeError(f"numpy dtype {value.dtype} is not supported") from None
    try:
        return _torch_dtypes()[value.dtype]
    except KeyError:
        raise TypeError(f"torch dtype {value.dtype} is not supported") from None


def torch_dtype(dtype: D.DType):
    return {v: k for k, v in _torch_dtypes().items()}[dtype]


def contiguous_strides(shape) -> tuple[int, ...]:
    """Row-major strides (in elements) of a tensor of `shape`."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(int(n), 1)
    return tuple(reversed(strides))


def element_strides(value) -> tuple[int, ...]:
    if isinstance(value, np.ndarray):
        return tuple(s // value.itemsize for s in value.strides)
    return tuple(value.stride())


def data_address(value) -> int:
    """The address of the first element (what a kernel's data pointer holds)."""
    if isinstance(value, np.ndarray):
        return value.ctypes.data
    return value.data_ptr()


def device_of(value) -> str:
    if isinstance(value, np.ndarray):
        return "cpu"
    return value.device.type


def numpy_view(value) -> np.ndarray:
    """A numpy array sharing the memory, in the storage type (bfloat16 as uint16 bits)."""
    if isinstance(value, np.ndarray):
        return value
    torch = _torch()
    t = value.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def allocate(like, shape, dtype: D.DType, zero: bool):
    """A new array of the same kind (and device) as `like`."""
    if like is not None and is_torch_tensor(like):
        torch = _torch()
        fn = torch.zeros if zero else torch.empty
        return fn(tuple(shape), dtype=torch_dtype(dtype), device=like.device)
    if dtype == D.bfloat16:
        raise TypeError("a bfloat16 output needs torch tensor arguments (numpy has no "
                        "bfloat16); pass torch tensors or allocate another dtype")
    fn = np.zeros if zero else np.empty
    return fn(tuple(shape), dtype=STORAGE[dtype])


_ARCHS: dict[int, str] = {}


def cuda_arch(value=None) -> str | None:
    """"sm_XY" of the CUDA device holding torch tensor `value` (else of the current
    device); None where torch sees no GPU. Memoized per device (read on every GPU call)."""
    index = value.device.index if value is not None else None
    arch = _ARCHS.get(index) if index is not None else None
    if arch is None:
        torch = _torch()
        if torch is None or not torch.cuda.is_available():
            return None
        if index is None:
            index = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        arch = _ARCHS[index] = f"sm_{major}{minor}"
    return arch
