"""fusec on the CPU (compiled LLVM backend) vs numpy vs torch eager, on arrays larger than
the caches. Prints a table and writes JSON (--json). Wall-clock medians after warm-up.

    python benchmarks/cpu.py [--rows 16384 --cols 8192 --repeat 5 --json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from bias_gelu import bias_gelu  # noqa: E402
from layernorm import layernorm  # noqa: E402
from softmax import softmax  # noqa: E402

try:
    from scipy.special import erf as np_erf
except ImportError:                       # numpy has no erf of its own
    np_erf = None


def np_bias_gelu(x, b):
    v = x + b
    return 0.5 * v * (1.0 + np_erf(v * np.float32(1 / math.sqrt(2))))


def np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_layernorm(x, w, b, eps=1e-5):
    mean = x.mean(axis=1, keepdims=True)
    c = x - mean
    var = (c * c).mean(axis=1, keepdims=True)
    return c / np.sqrt(var + eps) * w + b


def median_seconds(fn, repeat):
    fn()                                  # warm-up (and compile)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--cols", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    m, n = args.rows, args.cols
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, n), dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    w = rng.standard_normal(n, dtype=np.float32)
    tx, tb, tw = (torch.from_numpy(a) for a in (x, b, w))
    nbytes = x.nbytes * 2                 # read x once, write out once
    cases = {
        "bias_gelu": {"fusec-cpu": lambda: bias_gelu(x, b),
                      "numpy": (lambda: np_bias_gelu(x, b)) if np_erf else None,
                      "torch-eager": lambda: torch.nn.functional.gelu(tx + tb)},
        "softmax": {"fusec-cpu": lambda: softmax(x), "numpy": lambda: np_softmax(x),
                    "torch-eager": lambda: torch.softmax(tx, dim=1)},
        "layernorm": {"fusec-cpu": lambda: layernorm(x, w, b, 1e-5),
                      "numpy": lambda: np_layernorm(x, w, b),
                      "torch-eager": lambda: torch.nn.functional.layer_norm(tx, (n,), tw, tb)},
    }
    os.environ.setdefault("FUSEC_BACKEND", "cpu")
    results = []
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}, f32 [{m}, {n}] "
          f"({x.nbytes / 2**20:.0f} MiB per array)")
    print(f"{'kernel':<10} {'impl':<12} {'ms':>9} {'GB/s':>7} {'vs numpy':>9}")
    for name, impls in cases.items():
        base = None
        for impl, fn in impls.items():
            if fn is None:
                continue
            t = median_seconds(fn, args.repeat)
            if impl == "numpy":
                base = t
            results.append({"kernel": name, "impl": impl, "ms": t * 1e3,
                            "GBps": nbytes / t / 1e9})
        for r in results:
            if r["kernel"] == name:
                speed = f"{base / (r['ms'] / 1e3):.2f}x" if base else "-"
                print(f"{name:<10} {r['impl']:<12} {r['ms']:>9.1f} {r['GBps']:>7.2f} {speed:>9}")
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": [m, n], "results": results}, indent=1))


if __name__ == "__main__":
    main()
