"""Running sums along rows: fl.cumsum of a whole row per tile, and the same as
whole-tensor code with its reversed scan (the gradient of a cumsum) in one launch."""
import time

import numpy as np

import fusec
import fusec.language as fl
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def row_cumsum(x):
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm in fusec.tile(M):
        out[tm, :] = fl.cumsum(x[tm, :].to(fl.float32), axis=1)
    return out


@fusec.kernel
def suffix_sums_scaled(x, w):
    return fl.flip(fl.flip(x * w, 1).cumsum(1), 1)       # folds into cumsum(reverse=True)


def main(backend=None, m=257, n=1000):
    backend = backend or best_backend()
    x, w = rand(m, n, seed=7), rand(n, seed=8)
    xd, wd = on_backend(backend, x, w)
    start = time.perf_counter()
    out = row_cumsum.compile(xd, backend=backend)(xd)
    err = check("cumsum", out, np.cumsum(x.astype(np.float64), axis=1), started=start)
    start = time.perf_counter()
    out = suffix_sums_scaled.compile(xd, wd, backend=backend)(xd, wd)
    want = np.flip(np.cumsum(np.flip(x.astype(np.float64) * w, 1), 1), 1)
    return max(err, check("reversed cumsum", out, want, started=start))


if __name__ == "__main__":
    main()
