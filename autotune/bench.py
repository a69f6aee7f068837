"""Measurement: how long one launch of a candidate takes, on the machine it runs on.

The caller hands `measure` a `prepare(config)` that builds the candidate and returns a
zero-argument launch working on copies of the call's written arguments (so tuning never
touches the user's outputs or in-place arguments). A candidate whose build or launch raises
(a compile failure, too many resources) scores inf; so do the candidates left when the time
budget of the kernel runs out (they are listed after the ones the model ranks higher).

GPU: CUDA events on torch's current stream around each launch, the L2 flushed before each
(a buffer twice its size zeroed) and the stream held busy while the host enqueues it, after
a warm-up launch; the median of the repeats.
CPU: wall-clock medians after a warm-up launch.
"""
from __future__ import annotations

import math
import os
import statistics
import sys
import time
from dataclasses import dataclass

BUDGET_SECONDS = 5.0            # per kernel and shape: builds and launches together
TARGET_SECONDS = 0.05           # of repeats per candidate, once it is built
MIN_REPEATS, MAX_REPEATS = 5, 100
HOLD_CYCLES = 200_000           # ~0.1 ms of GPU clock: longer than a host-side launch


@dataclass
class Measurement:
    seconds: float               # median of one launch; inf when it failed or was skipped
    note: str = ""               # why it is inf


def _repeats(one_launch: float) -> int:
    if one_launch <= 0:
        return MAX_REPEATS
    return int(min(MAX_REPEATS, max(MIN_REPEATS, TARGET_SECONDS / one_launch)))


def cpu_seconds(launch) -> float:
    launch()                                     # warm-up: first-touch, thread pool start
    start = time.perf_counter()
    launch()
    times = [time.perf_counter() - start]
    for _ in range(_repeats(times[0]) - 1):
        start = time.perf_counter()
        launch()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def l2_flush_buffer(l2_bytes: int):
    """A buffer twice the L2's size (at least 64 MiB): zeroing it evicts the L2."""
    import torch
    return torch.empty(max(2 * l2_bytes, 64 << 20) // 4, dtype=torch.int32, device="cuda")


def gpu_seconds(launch, flush) -> float:
    import torch
    stream = torch.cuda.current_stream()
    launch()                                     # warm-up: module load, first launch
    probe = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    probe[0].record(stream)
    launch()
    probe[1].record(stream)
    probe[1].synchronize()
    repeats = _repeats(probe[0].elapsed_time(probe[1]) / 1e3)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(repeats)]
    hold = getattr(torch.cuda, "_sleep", None)
    for start, end in events:
        flush.zero_()
        if hold is not None:      # keep the GPU busy while the host enqueues the launch:
            hold(HOLD_CYCLES)     # the events then time the kernel, not the host's launch
        start.record(stream)
        launch()
        end.record(stream)
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events) / 1e3


class Progress:
    """A progress bar on stderr: tqdm when it is installed, else one rewritten line on a
    terminal (nothing when stderr is not one)."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done = total, label, 0
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
            self.live = sys.stderr.isatty()
        else:
            self.bar = tqdm(total=total, desc=label, leave=False, file=sys.stderr)
            self.live = False

    def step(self, note: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(1)
        elif self.live:
            sys.stderr.write(f"\r{self.label} [{self.done}/{self.total}] {note}\033[K")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.live:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def measure(configs: list, prepare, device: str, label: str, l2_bytes: int = 0,
            budget: float = BUDGET_SECONDS) -> list[Measurement]:
    """Time each config in order (the best-ranked first) within `budget` seconds."""
    timer = cpu_seconds
    if device == "gpu":
        flush = l2_flush_buffer(l2_bytes)      # freed when tuning ends
        timer = lambda launch: gpu_seconds(launch, flush)  # noqa: E731
    deadline = time.perf_counter() + budget
    progress = Progress(len(configs), f"fusec: tuning {label}")
    out = []
    try:
        for config in configs:
            if out and time.perf_counter() > deadline:
                out.append(Measurement(math.inf, "skipped: tuning budget spent"))
            else:
                out.append(_one(config, prepare, timer))
            progress.step(f"{config}: {_show(out[-1])}")
    finally:
        progress.close()
    return out


def _one(config, prepare, timer) -> Measurement:
    try:
        launch = prepare(config)
        return Measurement(timer(launch))
    except Exception as exc:          # any failure of a candidate only disqualifies it
        if os.environ.get("FUSEC_FRONTEND_DEBUG") == "1":
            raise
        text = str(exc).strip().splitlines()
        return Measurement(math.inf, f"{type(exc).__name__}: {text[0] if text else ''}"[:120])


def _show(m: Measurement) -> str:
    return f"{m.seconds * 1e6:.1f} us" if math.isfinite(m.seconds) else "failed"
