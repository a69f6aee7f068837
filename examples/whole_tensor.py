"""Whole-tensor kernels: no tile loops written. fusec fuses the statements into as few
launches as their dependences allow (each of these is one) and tiles them: rows in
parallel, each row whole in one program. Compare with softmax.py / layernorm.py, the same
kernels written with tile loops."""
import time

import numpy as np

import fusec
import fusec.language as fl
from _common import best_backend, check, on_backend, rand


@fusec.kernel
def softmax(x):
    x32 = x.to(fl.float32)
    e = fl.exp(x32 - x32.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).to(x.dtype)


@fusec.kernel
def layernorm(x, w, b, eps: float):
    x32 = x.to(fl.float32)
    centered = x32 - x32.mean(axis=1, keepdims=True)
    var = (centered * centered).mean(axis=1, keepdims=True)
    return (centered * fl.rsqrt(var + eps) * w + b).to(x.dtype)


@fusec.kernel
def rmsnorm(x, w, eps: float):
    x32 = x.to(fl.float32)
    return (x32 * fl.rsqrt((x32 * x32).mean(axis=1, keepdims=True) + eps) * w).to(x.dtype)


@fusec.kernel
def bias_gelu(x, b):
    return fl.gelu(x.to(fl.float32) + b).to(x.dtype)


@fusec.kernel
def bias_gelu_rowsum(x, b):
    y = fl.gelu(x.to(fl.float32) + b)
    return y.to(x.dtype), y.sum(axis=1)      # the activation and its row sums, one pass


@fusec.kernel
def matmul_bias_relu(a, b, bias, scale: float):
    """One launch: the matmul walks K with the accumulator in registers (tensor cores for
    bf16/fp16 on the GPU), the bias, relu and scaling run on it before the store."""
    return (fl.relu(a @ b + bias) * scale).to(a.dtype)


def main(backend=None, m=257, n=1000):
    backend = backend or best_backend()
    x, w, b = rand(m, n, seed=5), rand(n, seed=6), rand(n, seed=7)
    xd, wd, bd = on_backend(backend, x, w, b)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    start = time.perf_counter()
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    check("whole-tensor softmax", softmax.compile(xd, backend=backend)(xd),
          e / e.sum(axis=1, keepdims=True), started=start)
    c = x64 - x64.mean(axis=1, keepdims=True)
    want = c / np.sqrt((c * c).mean(axis=1, keepdims=True) + 1e-5) * w64 + b64
    check("whole-tensor layernorm", layernorm(xd, wd, bd, 1e-5), want)
    want = x64 / np.sqrt((x64 * x64).mean(axis=1, keepdims=True) + 1e-6) * w64
    check("whole-tensor rmsnorm", rmsnorm(xd, wd, 1e-6), want)
    from math import erf, sqrt
    z = x64 + b64
    gelu = 0.5 * z * (1 + np.vectorize(erf)(z / sqrt(2)))
    y, s = bias_gelu_rowsum(xd, bd)
    check("whole-tensor bias+gelu", y, gelu)
    err = check("whole-tensor row sums", s, gelu.sum(axis=1))
    k = 70
    a, bm, bias = rand(m, k, seed=8), rand(k, 130, seed=9), rand(130, seed=10)
    ad, bmd, biasd = on_backend(backend, a, bm, bias)
    want = np.maximum(a.astype(np.float64) @ bm + bias, 0.0) * 0.5
    check("whole-tensor matmul+bias+relu", matmul_bias_relu(ad, bmd, biasd, 0.5), want)
    calls = {"softmax": (softmax, (xd,)), "layernorm": (layernorm, (xd, wd, bd, 1e-5)),
             "rmsnorm": (rmsnorm, (xd, wd, 1e-6)), "bias+gelu": (bias_gelu, (xd, bd)),
             "bias+gelu+rowsum": (bias_gelu_rowsum, (xd, bd)),
             "matmul+bias+relu": (matmul_bias_relu, (ad, bmd, biasd, 0.5))}
    print("launches per call: " + ", ".join(
        f"{name} {kernel.compile(*args, backend=backend).num_launches}"
        for name, (kernel, args) in calls.items()))
    return err


if __name__ == "__main__":
    main()
