"""Column sums: each program owns a strip of columns and walks down the rows with a
sequential tile loop, carrying its partial sums."""
import time

import numpy as np

import fusec
import fusec.language as fl
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def column_sum(x):
    M, N = x.shape
    out = fusec.empty([N], fl.float32)
    for tn in fusec.tile(N):
        acc = fl.zeros([tn], fl.float32)
        for tm in fusec.tile(M):
            acc += fl.sum(x[tm, tn].to(fl.float32), axis=0)
        out[tn] = acc
    return out


def reference(x):
    return x.astype(np.float64).sum(axis=0)


def main(backend=None, m=1000, n=77):
    backend = backend or best_backend()
    x = rand(m, n, seed=14)
    (xd,) = on_backend(backend, x)
    start = time.perf_counter()
    out = column_sum.compile(xd, backend=backend)(xd)
    return check("column_sum", out, reference(x), started=start)


if __name__ == "__main__":
    main()
