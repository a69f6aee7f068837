"""RMSNorm: x / sqrt(mean(x^2) + eps) * weight."""
import time

import numpy as np

import fusec
import fusec.language as fl
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def rmsnorm(x, weight, eps: float = 1e-6):
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm in fusec.tile(M):
        row = x[tm, :].to(fl.float32)
        ms = fl.mean(row * row, axis=1, keepdims=True)
        out[tm, :] = row * fl.rsqrt(ms + eps) * weight[:].to(fl.float32)[None, :]
    return out


def reference(x, weight, eps=1e-6):
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * weight


def main(backend=None, m=129, n=777):
    backend = backend or best_backend()
    x, w = rand(m, n, seed=9), rand(n, seed=10)
    xd, wd = on_backend(backend, x, w)
    start = time.perf_counter()
    out = rmsnorm.compile(xd, wd, 1e-6, backend=backend)(xd, wd, 1e-6)
    return check("rmsnorm", out, reference(x, w), started=start)


if __name__ == "__main__":
    main()
