"""Host time of a call as the benchmarks measure it: the mean over many back-to-back calls
after a warm-up, the GPU synchronized before and after (on tiny inputs launches queue up and
the device is not what limits the loop)."""
from __future__ import annotations

import time

import torch


def host_us(fn, calls: int = 2000, warmup: int = 20) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    sync()
    return elapsed / calls * 1e6
