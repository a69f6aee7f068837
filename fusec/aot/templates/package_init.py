"""Kernels compiled ahead of time by `fusec build`; they run without fusec.

Each kernel is called like the `@fusec.kernel` it was built from: numpy arrays and torch
CPU tensors run the CPU variant, torch CUDA tensors the cubin for their GPU. The variants,
their signatures and checksums are in manifest.json; the loader is `_fusec_runtime`.
`verify()` checks every artifact's checksum now (they are also checked at first use).
"""
from pathlib import Path as _Path

from ._fusec_runtime import load_package as _load_package
from ._fusec_runtime import verify_package as _verify_package
from ._fusec_runtime.errors import (ChecksumError, LaunchError, ManifestError,  # noqa: F401
                                    NoMatchingVariantError, PackageError)

_HERE = _Path(__file__).resolve().parent
_KERNELS = _load_package(_HERE)
globals().update(_KERNELS)
__all__ = sorted(_KERNELS)


def verify() -> int:
    return _verify_package(_HERE)
