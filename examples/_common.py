"""Shared by the example scripts: inputs, the check against a float64 reference, a report."""
from __future__ import annotations

import os
import time

import numpy as np

TOLERANCE = {"float16": 2e-2, "bfloat16": 3e-2, "float32": 2e-5, "float64": 1e-12}


def best_backend() -> str:
    """The backend the examples run on: CUDA when a GPU is there (and fusec has one), else
    the compiled CPU backend. FUSEC_BACKEND overrides it."""
    return os.environ.get("FUSEC_BACKEND", "cpu")


def rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def check(name: str, got, want, dtype="float32", started=None):
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
