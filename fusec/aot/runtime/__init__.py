"""The loader of fusec AOT kernel packages. `fusec build` copies this folder into every
package it writes (as `_fusec_runtime`), so it must stand alone: it imports only the
standard library, numpy, torch (when called with torch tensors) and cuda-python's driver
API (when launching on a GPU) -- never fusec, lark, sympy or llvmlite.

    manifest.py  reading manifest.json: the schema check, artifact checksums
    exprs.py     size formulas (a small postfix form) evaluated with integer arithmetic
    args.py      what a call's arguments are (dtype, shape, strides, address, device)
    rules.py     whether a call fits a variant, and the reason when it does not
    slots.py     the 8-byte launch slots of a call (the backends' argument layout)
    cpu.py       the CPU variants: a shared library called with ctypes over the pid range
    cuda.py      the GPU variants: cubins loaded and launched with the CUDA driver API
    kernel.py    a packaged kernel: binding, variant choice, outputs, launch, results
    package.py   load_package(folder): every kernel of a package by name
"""
from .errors import (ChecksumError, LaunchError, ManifestError, NoMatchingVariantError,
                     PackageError)
from .package import load_package, verify_package

__all__ = ["ChecksumError", "LaunchError", "ManifestError", "NoMatchingVariantError",
           "PackageError", "load_package", "verify_package"]
