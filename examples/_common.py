"""Shared by the example scripts: inputs, the check against a float64 reference, a report."""
from __future__ import annotations

import os
import time

import numpy as np

TOLERANCE = {"float16": 2e-2, "bfloat16": 3e-2, "float32": 2e-5, "float64": 1e-12}


GPU_BACKENDS = ("cuda", "ptx")


def best_backend() -> str:
    """The backend the examples run on: CUDA C when torch sees a GPU, else the compiled CPU
    backend. FUSEC_BACKEND overrides it."""
    chosen = os.environ.get("FUSEC_BACKEND")
    if chosen:
        return chosen
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def on_backend(backend: str, *arrays) -> tuple:
    """The inputs where the backend runs them: torch CUDA tensors for the GPU backends,
    the numpy arrays themselves otherwise."""
    if backend not in GPU_BACKENDS:
        return arrays
    import torch
    return tuple(torch.from_numpy(a).cuda() for a in arrays)


def rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def check(name: str, got, want, dtype="float32", started=None):
    if hasattr(got, "cpu"):                     # a torch tensor (on a GPU backend)
        got = got.detach().cpu().double().numpy()
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    tol = TOLERANCE[dtype]
    err = float(np.max(np.abs(got - want) / (1.0 + np.abs(want)))) if want.size else 0.0
    took = f" in {1e3 * (time.perf_counter() - started):.1f} ms" if started else ""
    status = "ok" if err <= tol else "MISMATCH"
    print(f"{name}: shape {list(want.shape)}, max rel error {err:.2e} (tol {tol:.0e}){took}: "
          f"{status}")
    if err > tol:
        raise SystemExit(f"{name}: result differs from the reference")
    return err
