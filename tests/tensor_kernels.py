"""Kernels written with whole-tensor statements (no tile loops): fused and tiled by the
compiler. Shared by the CPU tests (tests/unit/test_tensor_level.py) and the GPU tests."""
import fusec
import fusec.language as fl


@fusec.kernel
def softmax(x):
    x32 = x.to(fl.float32)
    e = fl.exp(x32 - x32.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).to(x.dtype)


@fusec.kernel
def log_softmax(x):
    x32 = x.to(fl.float32)
    shifted = x32 - x32.max(axis=1, keepdims=True)
    return (shifted - fl.log(fl.exp(shifted).sum(axis=1, keepdims=True))).to(x.dtype)


@fusec.kernel
def layernorm(x, w, b, eps: float):
    x32 = x.to(fl.float32)
    centered = x32 - x32.mean(axis=1, keepdims=True)
    var = (centered * centered).mean(axis=1, keepdims=True)
    return (centered * fl.rsqrt(var + eps) * w + b).to(x.dtype)


@fusec.kernel
def rmsnorm(x, w, eps: float):
    x32 = x.to(fl.float32)
    ms = (x32 * x32).mean(axis=1, keepdims=True)
    return (x32 * fl.rsqrt(ms + eps) * w).to(x.dtype)


@fusec.kernel
def bias_gelu_rowsum(x, b):
    y = fl.gelu(x.to(fl.float32) + b)
    return y.to(x.dtype), y.sum(axis=1)


@fusec.kernel
def bias_gelu(x, b):
    return fl.gelu(x.to(fl.float32) + b).to(x.dtype)


@fusec.kernel
def column_softmax(x):
    e = fl.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


@fusec.kernel
def into_output(x, out):
    out[:, :] = fl.where(x > 0, x, 0.5 * x)
    return out


@fusec.kernel
def scale_by_total(x):
    return x / x.sum()          # a full reduction, then its broadcast: two launches


@fusec.kernel
def row_and_column_means(x):
    return x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True)
