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


def torch_backend(**options):
    """A torch.compile backend with options (fusec.dynamo.Options): `torch.compile(model,
    backend=fusec.torch_backend(mode="max-autotune"))`. `backend="fusec"` is the default."""
    from .dynamo import torch_backend as make
    return make(**options)


def stats() -> dict:
    """Counters of the torch.compile backend: graphs compiled (Dynamo recompiles show here),
    fused regions, kernel specializations, fallbacks, launches per graph call."""
    from .dynamo import stats as read
    return read()

__all__ = ["ir", "language", "CompiledKernel", "Config", "constexpr", "empty", "empty_like",
           "func", "tile", "zeros", "zeros_like", "CompilationError", "LaunchError", "Kernel",
           "explain", "kernel", "TensorSpec", "torch_backend", "stats", "__version__"]
