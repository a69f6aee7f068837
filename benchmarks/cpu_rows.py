"""Row reductions on the CPU with a dynamic row length (masked lanes in the row's tile):
row max and the softmax, layernorm and rmsnorm examples, fusec against torch, float32,
wall-clock median of 15 calls after 3 warm-ups.

    python3 benchmarks/cpu_rows.py [--threads 2] [--shapes 4096x1000,4096x1024]
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import fusec  # noqa: E402
import fusec.language as fl  # noqa: E402


@fusec.kernel
def row_max(x):
    out = fusec.empty((x.shape[0],), x.dtype)
    M, N = x.shape
    for tm in fusec.tile(M):
        out[tm] = fl.max(x[tm, :], axis=1)
    return out


def median_ms(fn, *args) -> float:
    for _ in range(3):
        fn(*args)
    times = []
    for _ in range(15):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="4096x1000,4096x1024,512x8192,2048x4000")
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    softmax = importlib.import_module("softmax").softmax
    layernorm = importlib.import_module("layernorm").layernorm
    rmsnorm = importlib.import_module("rmsnorm").rmsnorm
    print("| shape | row max fusec / torch | softmax | layernorm | rmsnorm |")
    print("|---|---|---|---|---|")
    for text in opts.shapes.split(","):
        m, n = (int(v) for v in text.split("x"))
        x, w, b = torch.randn(m, n), torch.randn(n), torch.randn(n)
        pairs = [
            (median_ms(row_max, x), median_ms(lambda t: t.amax(-1), x)),
            (median_ms(softmax, x), median_ms(lambda t: torch.softmax(t, -1), x)),
            (median_ms(layernorm, x, w, b, 1e-5),
             median_ms(lambda t: torch.nn.functional.layer_norm(t, (n,), w, b, 1e-5), x)),
            (median_ms(rmsnorm, x, w, 1e-6),
             median_ms(lambda t: t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
                       x)),
        ]
        print(f"| {m} x {n} | " + " | ".join(f"{f:.3f} / {t:.3f}" for f, t in pairs) + " |")


if __name__ == "__main__":
    main()
