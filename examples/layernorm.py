"""LayerNorm over the last dim with weight and bias; mean counts only the real lanes."""
import time

import numpy as np

import fusec
import fusec.language as fl
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def layernorm(x, weight, bias, eps: float = 1e-5):
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm in fusec.tile(M):
        row = x[tm, :].to(fl.float32)
        mean = fl.mean(row, axis=1, keepdims=True)
        centered = row - mean
        var = fl.mean(centered * centered, axis=1, keepdims=True)
        y = centered * fl.rsqrt(var + eps)
        out[tm, :] = y * weight[:].to(fl.float32)[None, :] + bias[:].to(fl.float32)[None, :]
    return out


def reference(x, weight, bias, eps=1e-5):
    x = x.astype(np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def main(backend=None, m=130, n=1000):
    backend = backend or best_backend()
    x, w, b = rand(m, n, seed=6), rand(n, seed=7), rand(n, seed=8)
    xd, wd, bd = on_backend(backend, x, w, b)
    start = time.perf_counter()
    out = layernorm.compile(xd, wd, bd, 1e-5, backend=backend)(xd, wd, bd, 1e-5)
    return check("layernorm", out, reference(x, w, b), started=start)


if __name__ == "__main__":
    main()
