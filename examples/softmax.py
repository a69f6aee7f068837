"""Row softmax: a whole row per tile, max and sum reductions ignore the padded lanes."""
import time

import numpy as np

import fusec
import fusec.language as fl
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def softmax(x):
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm in fusec.tile(M):
        row = x[tm, :].to(fl.float32)
        e = fl.exp(row - fl.max(row, axis=1, keepdims=True))
        out[tm, :] = e / fl.sum(e, axis=1, keepdims=True)
    return out


def reference(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(backend=None, m=257, n=1000):
    backend = backend or best_backend()
    x = rand(m, n, seed=5)
    (xd,) = on_backend(backend, x)
    start = time.perf_counter()
    out = softmax.compile(xd, backend=backend)(xd)
    return check("softmax", out, reference(x), started=start)


if __name__ == "__main__":
    main()
