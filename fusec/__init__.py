"""fusec: a JIT kernel fusion compiler embedded in Python.

    import fusec
    import fusec.language as fl

    @fusec.kernel
    def add(x, y):
        out = fusec.empty_like(x)
        for t in fusec.tile(x.shape[0]):
            out[t] = x[t] + y[t]
        return out
"""
from . import ir
from . import language
from .compiler import CompiledKernel, Config
from .dsl import constexpr, empty, empty_like, func, tile, zeros, zeros_like
from .errors import CompilationError, LaunchError
from .jit import Kernel, explain, kernel
from .specialize import TensorSpec

__version__ = "0.1.0"

__all__ = ["ir", "language", "CompiledKernel", "Config", "constexpr", "empty", "empty_like",
           "func", "tile", "zeros", "zeros_like", "CompilationError", "LaunchError", "Kernel",
           "explain", "kernel", "TensorSpec", "__version__"]
