"""torch.compile(backend="fusec") vs eager vs Inductor on the test models at real sizes and on
the anchor workloads written as torch code (CUDA, bf16): time per iteration (CUDA events
around 10 iterations back to back, median of 15 after warm-up; host overhead counts where
the device waits for it), device kernels launched per iteration (torch.profiler), and the
compile time (first call minus a steady one). Every mode of a row is compiled first (each
on its own copy of the module) and the modes are then timed in turns, one run of 10
iterations each per round, the order rotated: these steps are host-bound, and timed one
mode after another the same code measured up to 35% apart within one run (the mode timed
right after Inductor's compile was the slow one; the cause was not isolated), which the
turns share out evenly between the modes.

    python3 benchmarks/torch_models.py [--json out.json] [--only NAME,...] [--modes eager,fusec]
                                       [--profile] [--device cpu]

--device cpu: CPU-sized rows in float32, wall clock (no launch counts).

Modes: eager, inductor (torch.compile's default), inductor-max (mode=
"max-autotune-no-cudagraphs": Triton templates tuned against cuBLAS, several minutes of
compiling), fusec, fusec-max (`fusec.torch_backend(mode="max-autotune")`: kernels tuned by
measurement, each matmul measured against cuBLAS + an epilogue pass, matmul="auto"); all
five by default.

--profile prints, per row, torch.profiler's table of one steady iteration (device kernels
and the host ops around them), to see where a mode's time goes.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_models as tm  # noqa: E402

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402

# mode -> (torch.compile backend, torch.compile mode); eager runs the module itself
MODES = {"eager": None, "inductor": ("inductor", None),
         "inductor-max": ("inductor", "max-autotune-no-cudagraphs"), "fusec": ("fusec", None),
         "fusec-max": (fusec.torch_backend(mode="max-autotune"), None),
         # the hardware's approximate exp/log/division, as Triton's tl.exp and `/` give
         # Inductor's kernels (fusec's default is the accurate forms)
         "fusec-fast": (fusec.torch_backend(fast_math=True), None)}


def workloads(device):
    if device == "cpu":
        return cpu_workloads()
    bf = torch.bfloat16

    def rand(*shape, grad=False):
        return torch.randn(*shape, device=device, dtype=bf).requires_grad_(grad)
    rms = tm.RMSNorm(4096).to(device, bf)
    return {
        # name: (module or function, inputs, trains)
        "softmax 32768x4096": (lambda x: torch.softmax(x, dim=-1), (rand(32768, 4096),), False),
        "layernorm 32768x4096": (torch.nn.LayerNorm(4096).to(device, bf),
                                 (rand(32768, 4096),), False),
        "rmsnorm 32768x4096": (rms, (rand(32768, 4096),), False),
        "bias+gelu 16384x8192": (lambda x, b: F.gelu(x + b),
                                 (rand(16384, 8192), rand(8192)), False),
        "mlp 8192x1024 (h 4096) fwd": (tm.MLP(1024, 4096).to(device, bf), (rand(8192, 1024),),
                                       False),
        "mlp 8192x1024 (h 4096) train": (tm.MLP(1024, 4096).to(device, bf),
                                         (rand(8192, 1024, grad=True),), True),
        "block 8x512x1024 fwd": (tm.Block(1024, 16).to(device, bf), (rand(8, 512, 1024),),
                                 False),
        "block 8x512x1024 train": (tm.Block(1024, 16).to(device, bf),
                                   (rand(8, 512, 1024, grad=True),), True),
        # the backward's index_put (a fusec kernel of atomic adds, fusec/dynamo/library.py)
        "embedding 32000x1024 + layernorm, 8x2048 tokens train": (
            torch.nn.Sequential(torch.nn.Embedding(32000, 1024),
                                torch.nn.LayerNorm(1024)).to(device, bf),
            (torch.randint(0, 32000, (8, 2048), device=device),), True),
        **test_model_rows(device, bf, scale=1),
    }


def test_model_rows(device, dtype, scale: int) -> dict:
    """The test suite's other models (tests/torch_models.py) at sizes of tens of MB (scale
    1) or a CPU's (scale 8: an eighth of the batch): cuDNN's convolution with fusec's tail,
    BatchNorm's training statistics, GroupNorm, int/bool ops, in-place updates of a buffer,
    an op fusec leaves to aten (sort) with fused regions around it, cumsum in them."""
    def rand(*shape):
        return torch.randn(*shape, device=device, dtype=dtype)
    b = 64 // scale
    idx = torch.arange(8192 // scale * 1024, device=device).view(-1, 1024) - 9
    return {
        f"conv 3->8 + bias + relu + pool, {b}x3x224x224 train": (
            tm.ConvTail().to(device, dtype), (rand(b, 3, 224, 224),), True),
        f"batchnorm(16) train, {4096 * b} rows": (tm.BN().to(device, dtype),
                                                 (rand(4096 * b, 16),), True),
        f"groupnorm + silu, {b}x16x128x128 train": (tm.GroupNormSiLU().to(device, dtype),
                                                    (rand(b, 16, 128, 128),), True),
        f"int/bool ops {idx.shape[0]}x1024": (tm.IntBool(), (rand(*idx.shape), idx), False),
        f"in-place ops {4096 * b}x16": (tm.InPlace().to(device, dtype), (rand(4096 * b, 16),),
                                        False),
        f"cumsum (fusec), sort (aten) {idx.shape[0]}x1024 train": (
            tm.Unsupported(), (rand(*idx.shape).requires_grad_(),), True),
    }


def cpu_workloads():
    """The same kinds of rows at sizes a CPU runs in milliseconds, float32."""
    def rand(*shape, grad=False):
        return torch.randn(*shape).requires_grad_(grad)
    return {
        "softmax 4096x1024": (lambda x: torch.softmax(x, dim=-1), (rand(4096, 1024),), False),
        "layernorm 4096x1024": (torch.nn.LayerNorm(1024), (rand(4096, 1024),), False),
        "rmsnorm 4096x1024": (tm.RMSNorm(1024), (rand(4096, 1024),), False),
        "bias+gelu 2048x2048": (lambda x, b: F.gelu(x + b), (rand(2048, 2048), rand(2048)),
                                False),
        "mlp 1024x256 (h 1024) fwd": (tm.MLP(256, 1024), (rand(1024, 256),), False),
        "mlp 1024x256 (h 1024) train": (tm.MLP(256, 1024), (rand(1024, 256, grad=True),),
                                        True),
        "block 4x128x256 fwd": (tm.Block(256, 4), (rand(4, 128, 256),), False),
        "block 4x128x256 train": (tm.Block(256, 4), (rand(4, 128, 256, grad=True),), True),
        **test_model_rows("cpu", torch.float32, scale=8),
    }


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def step(fn, args, trains):
    if trains:
        out = fn(*args)
        out.float().sum().backward()
    else:
        with torch.no_grad():
            fn(*args)


def timed_run_ms(fn, args, trains, back_to_back=10, device="cuda") -> float:
    """One run: `back_to_back` iterations between two events (the host's work overlaps the
    device's where it can), per iteration; on the CPU, wall clock."""
    if device == "cpu":
        start = time.perf_counter()
        for _ in range(back_to_back):
            step(fn, args, trains)
        return (time.perf_counter() - start) * 1e3 / back_to_back
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    a.record()
    for _ in range(back_to_back):
        step(fn, args, trains)
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / back_to_back


def medians_in_turns(fns: dict, args, trains, reps=15, device="cuda") -> dict:
    """{mode: median ms per iteration}: `reps` rounds, each timing one run of every mode,
    the order rotated each round."""
    for fn in fns.values():
        for _ in range(3):
            step(fn, args, trains)
    times = {mode: [] for mode in fns}
    order = list(fns)
    for r in range(reps):
        for mode in order[r % len(order):] + order[:r % len(order)]:
            times[mode].append(timed_run_ms(fns[mode], args, trains, device=device))
    return {mode: statistics.median(t) for mode, t in times.items()}


def launches(fn, args, trains) -> int:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step(fn, args, trains)
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type.name == "CUDA")


def profile_table(fn, args, trains) -> str:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step(fn, args, trains)
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25,
                                     max_name_column_width=60)


def compiled(name, module, args, trains, mode, profiled=False, device="cuda"):
    """(the callable of `mode`, its row without the time): compiled on a copy of the module
    (the modes of a row live side by side), the first call's time, launches, fusec's
    region counts."""
    if mode == "eager":
        fn = module
    else:
        backend, compile_mode = MODES[mode]
        own = copy.deepcopy(module) if isinstance(module, torch.nn.Module) else module
        fn = torch.compile(own, backend=backend, mode=compile_mode)
    before = fusec.stats()
    _sync(device)
    start = time.perf_counter()
    step(fn, args, trains)
    _sync(device)
    first = time.perf_counter() - start
    steady = timed_run_ms(fn, args, trains, device=device)
    row = {"workload": name, "mode": mode, "compile_s": max(0.0, first - steady / 1e3),
           "launches": launches(fn, args, trains) if device == "cuda" else "-"}
    if profiled:
        print(f"# profile: {name}, {mode}\n{profile_table(fn, args, trains)}", flush=True)
    if mode.startswith("fusec"):
        after = fusec.stats()
        for key in ("fallback_regions", "fused_regions"):
            row[key] = after[key] - before[key]
    return fn, row


def run_row(name, module, args, trains, modes, profiled=False, device="cuda") -> list:
    """The rows of every mode of one workload, timed in turns (medians_in_turns)."""
    torch._dynamo.reset()
    fusec.dynamo.reset()
    fns, rows = {}, []
    for mode in modes:
        try:
            fns[mode], row = compiled(name, module, args, trains, mode, profiled, device)
        except Exception as exc:          # a mode that fails is reported, not fatal
            row = {"workload": name, "mode": mode,
                   "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        rows.append(row)
    try:
        ms = medians_in_turns(fns, args, trains, device=device)
    except Exception as exc:
        ms = {}
        for row in rows:
            row.setdefault("error", f"timing: {type(exc).__name__}: {str(exc)[:300]}")
    for row in rows:
        if row["mode"] in ms:
            row["ms"] = ms[row["mode"]]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--only", default="")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    opts = ap.parse_args()
    rows = []
    for name, (module, args, trains) in workloads(opts.device).items():
        if opts.only and not any(part in name for part in opts.only.split(",")):
            continue
        for row in run_row(name, module, args, trains, opts.modes.split(","), opts.profile,
                           opts.device):
            rows.append(row)
            print(json.dumps(row), flush=True)
    where = torch.cuda.get_device_name(0) if opts.device == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{where}, torch {torch.__version__}")
    print("| workload | eager | inductor | inductor max-autotune | fusec | fusec max-autotune | "
          "fusec fast_math | fusec launches (eager, inductor) | compile s (inductor, "
          "max-autotune, fusec, fusec max-autotune) |")
    print("|---|---|---|---|---|---|---|---|---|")
    by = {(r["workload"], r["mode"]): r for r in rows}
    for name in dict.fromkeys(r["workload"] for r in rows):
        cell = {m: by.get((name, m), {}) for m in MODES}
        def t(m):
            return f"{cell[m]['ms']:.3f} ms" if "ms" in cell[m] else cell[m].get("error", "-")[:40]
        def n(m):
            return cell[m].get("launches", "-")
        def c(m):
            return f"{cell[m]['compile_s']:.1f}" if "compile_s" in cell[m] else "-"
        print(f"| {name} | {t('eager')} | {t('inductor')} | {t('inductor-max')} | "
              f"{t('fusec')} | {t('fusec-max')} | {t('fusec-fast')} | {n('fusec')} ({n('eager')}, "
              f"{n('inductor')}) | {c('inductor')}, {c('inductor-max')}, {c('fusec')}, "
              f"{c('fusec-max')} |")
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
