"""Use the AOT example package without fusec: numpy arrays (and torch CPU tensors) run the
CPU variants, torch CUDA tensors the cubins for their GPU. Checks every kernel against a
float64 numpy reference and reports the first call's time.

    python examples/aot/build.py && python examples/aot/use.py [PACKAGE_FOLDER [ROW]]

(PACKAGE_FOLDER may be where pip installed the wheel: `pip install --target site
examples/aot/dist/aotkernels-*.whl && python examples/aot/use.py site/aotkernels`.)

Nothing here imports fusec (the test suite runs this file with fusec, lark, sympy and
llvmlite made unimportable).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOLERANCE = {"float32": 2e-5, "float16": 2e-2}


def reference(name: str, *args):
    x = [np.asarray(a, dtype=np.float64) for a in args[:3]]
    if name == "softmax":
        e = np.exp(x[0] - x[0].max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "layernorm":
        mean = x[0].mean(axis=1, keepdims=True)
        var = ((x[0] - mean) ** 2).mean(axis=1, keepdims=True)
        return (x[0] - mean) / np.sqrt(var + args[3]) * x[1] + x[2]
    if name == "bias_gelu":
        v = x[0] + x[1][None, :]
        return 0.5 * v * (1.0 + np.vectorize(math.erf)(v / math.sqrt(2.0)))
    return x[0] + x[1]


def check(name: str, got, want, dtype: str) -> float:
    got = np.asarray(got, dtype=np.float64)
    err = float(np.max(np.abs(got - want) / (1.0 + np.abs(want)))) if want.size else 0.0
    status = "ok" if err <= TOLERANCE[dtype] else "MISMATCH"
    print(f"  {name}: {list(want.shape)} {dtype}, max rel error {err:.1e}: {status}")
    if status != "ok":
        raise SystemExit(f"{name}: the packaged kernel differs from the reference")
    return err


def calls(rng, row: int = 13, dtype=np.float32):
    """(kernel name, arguments) with sizes that are not multiples of 16; `row`: the length
    of softmax's and layernorm's rows (within the bound the package was built with)."""
    def r(*shape, t=dtype):
        return rng.standard_normal(shape).astype(t)
    return [("softmax", (r(257, row),)),
            ("layernorm", (r(130, row), r(row), r(row), 1e-5)),
            ("bias_gelu", (r(300, 517), r(517))),
            ("bias_gelu", (r(33, 70, t=np.float16), r(70, t=np.float16))),
            ("vector_add", (r(100_003), r(100_003))),
            ("vector_add", (r(4096), r(4096)))]


def main(folder=HERE / "dist" / "aotkernels", row: int = 13):
    folder = Path(folder).resolve()
    sys.path.insert(0, str(folder.parent))
    start = time.perf_counter()
    package = __import__(folder.name)
    print(f"imported {folder.name} in {1e3 * (time.perf_counter() - start):.1f} ms "
          f"(kernels: {', '.join(package.__all__)})")
    rng = np.random.default_rng(0)
    for name, args in calls(rng, int(row)):
        kernel = getattr(package, name)
        start = time.perf_counter()
        out = kernel(*args)
        took = 1e3 * (time.perf_counter() - start)
        check(f"{name} (cpu, {took:.1f} ms)", out, reference(name, *args),
              str(args[0].dtype))
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        return
    for name, args in calls(rng, int(row)):
        dev = [torch.from_numpy(a).cuda() if isinstance(a, np.ndarray) else a for a in args]
        kernel = getattr(package, name)
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = kernel(*dev)
        torch.cuda.synchronize()
        took = 1e3 * (time.perf_counter() - start)
        check(f"{name} (cuda, {took:.1f} ms)", out.cpu().numpy(), reference(name, *args),
              str(args[0].dtype))


if __name__ == "__main__":
    main(*sys.argv[1:])
