"""Kernels the backend tests share (the CUDA emulation, the compile tests and the GPU
tests run the same ones): casts, in-place and scatter writes, atomics, loops with carried
values, two launches."""
import fusec
import fusec.language as fl


@fusec.kernel
def cast(x, OUT: fusec.constexpr):
    out = fusec.empty(x.shape, OUT)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t].to(OUT)
    return out


@fusec.kernel
def shift_in_place(x):
    for t in fusec.tile(x.shape[0] - 1, block=64):
        x[t] = x[t.index + 1]                 # the whole tile is loaded before the store
    return x


@fusec.kernel
def scatter_add(x, idx, out_size: int):
    out = fusec.zeros([out_size], x.dtype)
    for t in fusec.tile(x.shape[0]):
        j = idx[t]          # (fl.atomic_add(out[idx[t]], ...) trips the frontend)
        fl.atomic_add(out[j], x[t])
    return out


@fusec.kernel
def total(x):
    out = fusec.zeros([1], fl.float32)
    for t in fusec.tile(x.shape[0], block=256):
        fl.atomic_add(out[0], fl.sum(x[t]))
    return out


@fusec.kernel
def loops_and_ifs(x, steps: int):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        v = x[t]
        s = 0.0
        for i in range(steps):
            s = s + fl.sum(v) * 0.5
            if i % 2 == 0:
                v = v * 0.5
            else:
                v = v + 1.0
        out[t] = v + s
    return out


@fusec.kernel
def two_passes(x):
    """The second loop reads what other programs of the first wrote (reversed): two
    launches, in order (loop-fuse must not merge them)."""
    tmp = fusec.empty_like(x)
    out = fusec.empty_like(x)
    n = x.shape[0]
    for t in fusec.tile(n):
        tmp[t] = x[t] * 2.0
    for t in fusec.tile(n):
        out[t] = tmp[n - 1 - t.index] + 1.0
    return out


@fusec.kernel
def two_fusable_passes(x):
    """The second loop reads only what the same program of the first wrote: loop-fuse
    makes it one launch and keeps `tmp` in registers (never allocated)."""
    tmp = fusec.empty_like(x)
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        tmp[t] = x[t] * 2.0
    for t in fusec.tile(x.shape[0]):
        out[t] = tmp[t] + 1.0
    return out


@fusec.kernel
def upper_triangle(x):
    """np.triu(x): a mask comparing the column with the row, which differs between the
    lanes of a vector group (unlike a bound check against a size)."""
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm, tn in fusec.tile([M, N]):
        keep = tn.index[None, :] >= tm.index[:, None]
        out[tm, tn] = fl.where(keep, x[tm, tn], 0.0)
    return out
