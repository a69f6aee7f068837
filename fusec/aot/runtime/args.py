"""What a call's arguments are: tensors (numpy arrays, torch tensors) with dtype, shape,
element strides, data address and device; Python scalars by kind. Outputs are allocated
like fusec's JIT does: in the array kind and on the device of the first tensor argument.

torch is only looked at when the caller has imported it (a torch tensor cannot exist
otherwise), so numpy-only use never imports torch.
"""
from __future__ import annotations

import sys

import numpy as np

# numpy storage of each dtype: bfloat16 lives as its uint16 bits (numpy has none)
STORAGE = {"bool": np.bool_, "int8": np.int8, "int16": np.int16, "int32": np.int32,
           "int64": np.int64, "uint8": np.uint8, "float16": np.float16,
           "bfloat16": np.uint16, "float32": np.float32, "float64": np.float64}
_NUMPY_DTYPES = {np.dtype(v): k for k, v in STORAGE.items() if k != "bfloat16"}


class TensorArg:
    __slots__ = ("value", "is_torch", "dtype", "shape", "strides", "address", "device",
                 "writeable")

    def __init__(self, value, is_torch, dtype, shape, strides, address, device, writeable):
        self.value = value
        self.is_torch = is_torch
        self.dtype = dtype              # fusec dtype name
        self.shape = shape
        self.strides = strides          # in elements
        self.address = address
        self.device = device            # "cpu" or "cuda:<index>"
        self.writeable = writeable

    def describe(self) -> str:
        return (f"{self.dtype}[{', '.join(map(str, self.shape))}] strides "
                f"{list(self.strides)} on {self.device}")


class ScalarArg:
    __slots__ = ("value", "kind")

    def __init__(self, value, kind):
        self.value = value
        self.kind = kind                # "int", "float", "bool", or the Python type name

    def describe(self) -> str:
        return f"{self.kind} {self.value!r}"


def _torch():
    return sys.modules.get("torch")


def _torch_dtype_name(t) -> str | None:
    name = str(t.dtype).removeprefix("torch.")
    return name if name in STORAGE else None


def describe(name: str, value):
    """TensorArg or ScalarArg for one argument; TypeError naming it when unsupported."""
    if isinstance(value, np.ndarray):
        dtype = _NUMPY_DTYPES.get(value.dtype)
        if dtype is None:
            raise TypeError(f"argument {name!r}: numpy dtype {value.dtype} is not supported")
        item = value.itemsize
        return TensorArg(value, False, dtype, value.shape,
                         tuple(s // item for s in value.strides), value.ctypes.data, "cpu",
                         value.flags.writeable)
    torch = _torch()
    if torch is not None and isinstance(value, torch.Tensor):
        dtype = _torch_dtype_name(value)
        if dtype is None:
            raise TypeError(f"argument {name!r}: torch dtype {value.dtype} is not supported")
        dev = value.device
        device = "cpu" if dev.type == "cpu" else f"{dev.type}:{dev.index}"
        return TensorArg(value, True, dtype, tuple(value.shape), tuple(value.stride()),
                         value.data_ptr(), device, True)
    if isinstance(value, bool):
        return ScalarArg(value, "bool")
    if isinstance(value, int):
        return ScalarArg(value, "int")
    if isinstance(value, float):
        return ScalarArg(value, "float")
    if isinstance(value, np.generic):
        return describe(name, value.item())
    if value is None or isinstance(value, str):
        return ScalarArg(value, type(value).__name__)
    raise TypeError(f"argument {name!r}: expected a tensor (numpy array or torch tensor) "
                    f"or a Python int/float/bool, got {type(value).__name__}")


def allocate(like: TensorArg | None, shape: list[int], dtype: str, zero: bool):
    """A new C-contiguous output of the kind and device of `like` (numpy when None)."""
    if like is not None and like.is_torch:
        torch = _torch()
        make = torch.zeros if zero else torch.empty
        return make(tuple(shape), dtype=getattr(torch, dtype), device=like.value.device)
    if dtype == "bfloat16":
        raise TypeError("a bfloat16 output needs torch tensor arguments (numpy has no "
                        "bfloat16)")
    return (np.zeros if zero else np.empty)(tuple(shape), dtype=STORAGE[dtype])
