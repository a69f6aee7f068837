"""out = x + y, one tile of 1-D indices per program."""
import time

import numpy as np

import fusec
from _common import best_backend, check, rand


@fusec.kernel
def vector_add(x, y):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] + y[t]
    return out


def reference(x, y):
    return x.astype(np.float64) + y


def main(backend=None, n=100_003):
    x, y = rand(n, seed=1), rand(n, seed=2)
    start = time.perf_counter()
    out = vector_add.compile(x, y, backend=backend or best_backend())(x, y)
    return check("vector_add", out, reference(x, y), started=start)


if __name__ == "__main__":
    main()
