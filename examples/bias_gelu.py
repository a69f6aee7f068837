"""out = gelu(x + bias): a bias broadcast over rows, fused with the activation."""
import math
import time

import numpy as np

import fusec
import fusec.language as fl
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def bias_gelu(x, bias):
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm, tn in fusec.tile([M, N]):
        v = x[tm, tn].to(fl.float32) + bias[tn].to(fl.float32)[None, :]
        out[tm, tn] = fl.gelu(v)
    return out


def reference(x, bias):
    v = x.astype(np.float64) + bias.astype(np.float64)[None, :]
    erf = np.vectorize(math.erf)
    return 0.5 * v * (1.0 + erf(v / math.sqrt(2.0)))


def main(backend=None, m=300, n=517):
    backend = backend or best_backend()
    x, bias = rand(m, n, seed=3), rand(n, seed=4)
    xd, bd = on_backend(backend, x, bias)
    start = time.perf_counter()
    out = bias_gelu.compile(xd, bd, backend=backend)(xd, bd)
    return check("bias_gelu", out, reference(x, bias), started=start)


if __name__ == "__main__":
    main()
