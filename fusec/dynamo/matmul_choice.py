"""matmul="auto": where each matmul of a graph runs, decided by measuring its sizes.

A matmul lowered to fusec is one kernel with its prologue and epilogue (bias, activation,
residual) in registers; left to the vendor library (cuBLAS, MKL) it is the library's product,
and the epilogue fuses into the region after it, which reads the product back: one more
pass over [M, N]. So fusec's kernel wins where

    fusec's product  <  the vendor's product + one pass reading and writing [M, N]

each measured here on random tensors of the node's sizes, strides, dtype and device when
the graph compiles (fusec's kernel tuned as the backend's mode says; the pass is torch's
`mul` by 1). Choices are kept per process by (op, sizes, strides, dtype, device, backend,
mode): a graph with the same matmul shapes measures nothing again. Symbolic sizes are
measured at their hints. Not measured: the prologue a fusec kernel would take along.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily

from .. import language as fl
from ..autotune import bench
from ..dsl import constexpr
from ..jit import kernel
from .rules import Unsupported, aten, matmul_accumulator, packet

# the operands of each matmul overload packet: (a, b) positions
OPERANDS = {aten.mm: (0, 1), aten.addmm: (1, 2), aten.bmm: (0, 1), aten.baddbmm: (1, 2)}


@dataclass(frozen=True)
class Choice:
    op: str
    a: tuple
    b: tuple
    dtype: str
    fusec_s: float                 # fusec's product (inf: it did not build or run)
    vendor_s: float                # the vendor library's product
    pass_s: float                  # one elementwise pass over the product
    note: str = ""

    @property
    def fusec(self) -> bool:
        return self.fusec_s < self.vendor_s + self.pass_s

    def text(self) -> str:
        us = lambda s: f"{s * 1e6:.1f} us" if math.isfinite(s) else "failed"  # noqa: E731
        where = "fusec" if self.fusec else "the vendor library"
        return (f"matmul='auto': {self.op} {list(self.a)} x {list(self.b)} {self.dtype} to "
                f"{where} (fusec {us(self.fusec_s)} vs vendor {us(self.vendor_s)} + epilogue "
                f"pass {us(self.pass_s)})" + (f"; {self.note}" if self.note else ""))


_CHOICES: dict = {}


def _product(a, b, acc: constexpr):
    return fl.dot(a, b, out_dtype=acc).to(a.dtype)


_KERNELS: dict = {}


def _fusec_kernel(backend, autotune):
    key = (backend, autotune)
    if key not in _KERNELS:
        _KERNELS[key] = kernel(_product, backend=backend, autotune=autotune)
    return _KERNELS[key]


def _size(s) -> int:
    if isinstance(s, torch.SymInt):
        hint = getattr(s.node, "hint", None)
        if hint is None:
            raise Unsupported("matmul='auto': a size without a hint to measure at: the vendor "
                              "library runs it")
        return int(hint)
    return int(s)


def _random(shape, dtype, device, strides=None) -> torch.Tensor:
    """Random values of `shape`, laid out with `strides` (the graph's operand layout: a
    linear layer's transposed weight) where they overlap no element."""
    if dtype.is_floating_point:
        values = torch.randn(shape, dtype=dtype, device=device)
    else:
        values = torch.randint(-8, 8, shape, dtype=dtype, device=device)
    if strides is None or 0 in strides or len(strides) != len(shape):
        return values
    return torch.empty_strided(shape, strides, dtype=dtype, device=device).copy_(values)


def _timer(device: torch.device):
    if device.type != "cuda":
        return bench.cpu_seconds
    props = torch.cuda.get_device_properties(device)
    flush = bench.l2_flush_buffer(props.L2_cache_size)
    return lambda launch: bench.gpu_seconds(launch, flush)


def choose(node, options) -> Choice:
    """Measure (or recall) where matmul `node` runs best."""
    # AOT autograd compiles graphs under its fake-tensor mode: real tensors are made and
    # timed outside it
    with unset_fake_temporarily(), torch.no_grad():
        return _choose(node, options)


def _choose(node, options) -> Choice:
    ia, ib = OPERANDS[packet(node.target)]
    va, vb = (node.args[i].meta["val"] for i in (ia, ib))
    a_shape, b_shape = tuple(map(_size, va.shape)), tuple(map(_size, vb.shape))
    layouts = (tuple(map(_size, va.stride())), tuple(map(_size, vb.stride())))
    key = (str(packet(node.target)), a_shape, b_shape, layouts, va.dtype, va.device.type,
           options.backend, options.mode)
    if key not in _CHOICES:
        _CHOICES[key] = Choice(str(packet(node.target)).split(".")[-1], a_shape, b_shape,
                               str(va.dtype).replace("torch.", ""),
                               *measure(a_shape, b_shape, va.dtype, va.device, options,
                                        layouts))
    return _CHOICES[key]


def measure(a_shape, b_shape, dtype, device, options, layouts=(None, None)
            ) -> tuple[float, float, float, str]:
    """(fusec's product, the vendor's, an elementwise pass over the product: seconds, and
    why fusec's is inf) on random tensors of these sizes (and strides)."""
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    a, b = (_random(shape, dtype, device, strides)
            for shape, strides in zip((a_shape, b_shape), layouts))
    time_it = _timer(device)
    try:
        product = torch.matmul(a, b)
        vendor_s = time_it(lambda: torch.matmul(a, b))
    except RuntimeError:               # no vendor kernel for it (int matmuls on CUDA)
        product, vendor_s = torch.empty(torch.broadcast_shapes(a_shape[:-2], b_shape[:-2])
                                        + (a_shape[-2], b_shape[-1]), dtype=dtype,
                                        device=device), math.inf
    pass_s = time_it(lambda: torch.mul(product, 1))
    acc = getattr(fl, matmul_accumulator(dtype))      # as the rule renders it
    try:
        k = _fusec_kernel(options.backend, options.autotune)
        return time_it(lambda: k(a, b, acc)), vendor_s, pass_s, ""
    except Exception as exc:           # a build or launch failure: the vendor's, and why
        return math.inf, vendor_s, pass_s, f"fusec's kernel failed: {type(exc).__name__}: {exc}"
