"""out = x + y, one tile of 1-D indices per program."""
import time

import numpy as np

import fusec
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def vector_add(x, y):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] + y[t]
    return out


def reference(x, y):
    return x.astype(np.float64) + y


def main(backend=None, n=100_003):
    backend = backend or best_backend()
    x, y = rand(n, seed=1), rand(n, seed=2)
    xd, yd = on_backend(backend, x, y)
    start = time.perf_counter()
    out = vector_add.compile(xd, yd, backend=backend)(xd, yd)
    return check("vector_add", out, reference(x, y), started=start)


if __name__ == "__main__":
    main()
