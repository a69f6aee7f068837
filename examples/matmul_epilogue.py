"""out = relu(a @ b + bias) * scale: a K loop accumulating fl.dot, the epilogue fused."""
import time

import numpy as np

import fusec
import fusec.language as fl
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def matmul_bias_relu(a, b, bias, scale: float):
    M, K = a.shape
    N = b.shape[1]
    out = fusec.empty([M, N], a.dtype)
    for tm, tn in fusec.tile([M, N]):
        acc = fl.zeros([tm, tn], fl.float32)
        for tk in fusec.tile(K):
            acc += fl.dot(a[tm, tk], b[tk, tn])
        acc = acc + bias[tn].to(fl.float32)[None, :]
        out[tm, tn] = fl.relu(acc) * scale
    return out


def reference(a, b, bias, scale):
    return np.maximum(a.astype(np.float64) @ b + bias, 0.0) * scale


def main(backend=None, m=100, k=70, n=130):
    backend = backend or best_backend()
    a, b, bias = rand(m, k, seed=11), rand(k, n, seed=12), rand(n, seed=13)
    ad, bd, biasd = on_backend(backend, a, b, bias)
    start = time.perf_counter()
    kernel = matmul_bias_relu.compile(ad, bd, biasd, 0.5, backend=backend)
    out = kernel(ad, bd, biasd, 0.5)
    return check("matmul_bias_relu", out, reference(a, b, bias, 0.5), started=start)


if __name__ == "__main__":
    main()
