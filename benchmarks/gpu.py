"""fusec on the GPU vs torch eager vs torch.compile vs hand-written Triton vs the copy
ceiling, bf16, side by side in one run. CUDA events, median of many runs after warm-up,
data larger than L2. Prints a table; writes JSON with --json.

Two times per implementation: `call ms` times one call from Python (host dispatch included:
what a user sees calling it once), `gpu ms` replays the call captured in a CUDA graph (the
device's time alone, as the roofline counts it). The launch-overhead rows give the host
time per call on a tiny input (mean over many calls, the GPU idle), per implementation.

    python3 benchmarks/gpu.py [--json out.json] [--repeat 50]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import fusec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from bias_gelu import bias_gelu  # noqa: E402
from layernorm import layernorm  # noqa: E402
from rmsnorm import rmsnorm  # noqa: E402
from softmax import softmax  # noqa: E402
import whole_tensor as whole  # noqa: E402
from host_timing import host_us  # noqa: E402

try:
    import triton
    import triton.language as tl
except ImportError:                         # the table says "-" for Triton then
    triton = None

if triton is not None:
    @triton.jit
    def _tr_softmax(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=-float("inf")).to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * n_cols + cols, (e / tl.sum(e, axis=0)).to(tl.bfloat16), mask=mask)

    @triton.jit
    def _tr_norm(x_ptr, w_ptr, b_ptr, out_ptr, n_cols, eps, RMS: tl.constexpr,
                 BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        if RMS:
            y = x * tl.rsqrt(tl.sum(x * x, axis=0) / n_cols + eps) * w
        else:
            mean = tl.sum(x, axis=0) / n_cols
            c = tl.where(mask, x - mean, 0.0)
            b = tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
            y = c * tl.rsqrt(tl.sum(c * c, axis=0) / n_cols + eps) * w + b
        tl.store(out_ptr + row * n_cols + cols, y.to(tl.bfloat16), mask=mask)

    @triton.jit
    def _tr_add(a_ptr, b_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(a_ptr + offs, mask=mask) + tl.load(b_ptr + offs,
                                                                            mask=mask),
                 mask=mask)

    @triton.jit
    def _tr_bias_gelu(x_ptr, b_ptr, out_ptr, n_cols, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        v = tl.load(x_ptr + offs, mask=mask).to(tl.float32) + \
            tl.load(b_ptr + offs % n_cols, mask=mask).to(tl.float32)
        y = 0.5 * v * (1.0 + tl.math.erf(v * 0.7071067811865476))
        tl.store(out_ptr + offs, y.to(tl.bfloat16), mask=mask)


def _triton_cases(x, w, b, xg, bg):
    if triton is None:
        return {}
    m, n = x.shape
    block = triton.next_power_of_2(n)

    def softmax_tr():
        out = torch.empty_like(x)
        _tr_softmax[(m,)](x, out, n, BLOCK=block, num_warps=8)
        return out

    def norm_tr(rms):
        def run():
            out = torch.empty_like(x)
            _tr_norm[(m,)](x, w, b, out, n, 1e-5, RMS=rms, BLOCK=block, num_warps=8)
            return out
        return run

    def bias_gelu_tr():
        out = torch.empty_like(xg)
        total = xg.numel()
        _tr_bias_gelu[(triton.cdiv(total, 1024),)](xg, bg, out, xg.shape[1], total,
                                                     BLOCK=1024, num_warps=4)
        return out
    return {"softmax": softmax_tr, "layernorm": norm_tr(False), "rmsnorm": norm_tr(True),
            "bias_gelu": bias_gelu_tr}


def time_ms(fn, repeat: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def graph_ms(fn, repeat: int) -> float:
    """The device time of fn: one call captured in a CUDA graph, replays timed."""
    fn()
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):           # warm-up on a side stream, as capture wants
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay, repeat)


# tensor-core configs of the matmul rows (blocks M, N, K; warps; pipeline stages, cut to
# what shared memory holds); benchmarks/matmul_configs.py sweeps more of them
MMA_CONFIGS = (([128, 128, 32], 8, 4), ([128, 128, 32], 4, 4), ([128, 256, 32], 8, 3))
# ... and of the PTX backend's (backends/llvm/mma.py: operands staged per K step, no
# pipelining; stages unused)
PTX_MMA_CONFIGS = (([128, 128, 32], 4, 1), ([64, 64, 32], 4, 1))
# where each backend's source shows the tensor-core path was taken
_MMA_MARK = {"cuda": ("cuda", "fc_mma_bf16("),
             "ptx": ("ptx", "mma.sync.aligned.m16n8k16.row.col.f32.bf16")}


def _mma_impls(matmul_bias_relu, a, b, bias, backend="cuda", configs=MMA_CONFIGS) -> dict:
    """fusec-mma rows: each config compiled once, its result checked against torch."""
    want = torch.relu(a.float() @ b.float() + bias.float()) * 0.5
    impls = {}
    prefix = "fusec-mma" if backend == "cuda" else f"fusec-{backend}-mma"
    asm, mark = _MMA_MARK[backend]
    from fusec.backends.llvm import mma
    for blocks, warps, stages in configs:
        name = f"{prefix} {'x'.join(map(str, blocks))} w{warps} s{stages}"
        saved, mma.ENABLED = mma.ENABLED, True        # whatever the default
        try:
            ck = fusec.kernel(matmul_bias_relu.fn).compile(   # (a cache keying no switch)
                a, b, bias, 0.5, backend=backend,
                config=fusec.Config(blocks=blocks, warps=warps, stages=stages))
            if mark not in ck.asm[asm]:
                raise RuntimeError("the tensor-core path was not taken")
            err = ((ck(a, b, bias, 0.5).float() - want).abs().max() /
                   want.abs().max()).item()
            print(f"matmul {a.shape[0]:<5} {name:<20} max |err| / max |want| = {err:.2e}")
            impls[name] = (lambda _ck=ck: _ck(a, b, bias, 0.5))
        except Exception as exc:                 # reported in the table
            impls[name] = exc
        finally:
            mma.ENABLED = saved
    return impls


def matmul_rows(rows: list, repeat: int = 5) -> None:
    """relu(a @ b + bias) * scale, bf16 in, fp32 accumulation: TFLOP/s against cuBLAS."""
    from matmul_epilogue import matmul_bias_relu
    print("# matmul + bias + relu * scale, bf16 (TFLOP/s counts 2*M*N*K)")
    slow = set()                # implementations too slow to run at the next size
    for n in (4096, 8192):
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        eager = lambda: torch.relu(a @ b + bias) * 0.5                    # noqa: E731
        impls = {"cuBLAS matmul alone": lambda: a @ b, "torch-eager": eager,
                 "torch.compile": torch.compile(eager),
                 "fusec-cuda": lambda: matmul_bias_relu(a, b, bias, 0.5),
                 "fusec-whole": lambda: whole.matmul_bias_relu(a, b, bias, 0.5),
                 **_mma_impls(matmul_bias_relu, a, b, bias),
                 **_mma_impls(matmul_bias_relu, a, b, bias, "ptx", PTX_MMA_CONFIGS)}
        for impl, fn in impls.items():
            if impl in slow:
                print(f"matmul {n:<5} {impl:<20} skipped (over 50 ms at the smaller size)")
                continue
            try:
                if isinstance(fn, Exception):
                    raise fn
                ms = graph_ms(fn, repeat)
                if ms > 50:
                    slow.add(impl)
            except Exception as exc:
                print(f"matmul {n:<5} {impl:<20} failed: {type(exc).__name__}: {exc}"[:200])
                continue
            tflops = 2 * n ** 3 / ms / 1e9
            rows.append({"kernel": f"matmul{n}", "impl": impl, "ms": ms, "TFLOPs": tflops})
            print(f"matmul {n:<5} {impl:<20} {ms:>9.3f} ms {tflops:>7.1f} TFLOP/s", flush=True)


def launch_overhead(rows: list) -> None:
    """Host microseconds per call for a cached kernel on a tiny input."""
    from vector_add import vector_add as fusec_add
    a = torch.randn(1024, device="cuda")
    bb = torch.randn(1024, device="cuda")
    out = torch.empty_like(a)
    cases = {"fusec-cuda add": lambda: fusec_add(a, bb),
             "torch add": lambda: torch.add(a, bb),
             "torch add_ (in place)": lambda: a.add_(bb)}
    if triton is not None:
        cases["triton add"] = lambda: _tr_add[(1,)](a, bb, out, 1024, BLOCK=1024)
    print("# host launch overhead (us per call, tiny input)")
    for impl, fn in cases.items():
        us = host_us(fn)
        rows.append({"kernel": "launch", "impl": impl, "host_us": us})
        print(f"launch     {impl:<24} {us:>7.1f} us")


def anchor_calls(x, w, b, xg, bg) -> dict:
    """The anchor workloads as fusec calls: name -> (example kernel, its arguments)."""
    return {"softmax": (softmax, (x,)), "layernorm": (layernorm, (x, w, b, 1e-5)),
            "rmsnorm": (rmsnorm, (x, w, 1e-6)), "bias_gelu": (bias_gelu, (xg, bg))}


def whole_tensor_calls(x, w, b, xg, bg) -> dict:
    """The anchor workloads as whole-tensor kernels (no tile loops written)."""
    return {"softmax": (whole.softmax, (x,)), "layernorm": (whole.layernorm, (x, w, b, 1e-5)),
            "rmsnorm": (whole.rmsnorm, (x, w, 1e-6)), "bias_gelu": (whole.bias_gelu, (xg, bg))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    x = torch.randn(32768, 4096, device=dev, dtype=torch.bfloat16)
    w = torch.randn(4096, device=dev, dtype=torch.bfloat16)
    b = torch.randn(4096, device=dev, dtype=torch.bfloat16)
    xg = torch.randn(16384, 8192, device=dev, dtype=torch.bfloat16)
    bg = torch.randn(8192, device=dev, dtype=torch.bfloat16)
    eager = {
        "softmax": lambda: torch.softmax(x.float(), dim=1).to(torch.bfloat16),
        "layernorm": lambda: torch.nn.functional.layer_norm(x, (4096,), w, b, 1e-5),
        "rmsnorm": lambda: (x.float() * torch.rsqrt(x.float().pow(2).mean(1, keepdim=True)
                                                    + 1e-6) * w.float()).to(torch.bfloat16),
        "bias_gelu": lambda: torch.nn.functional.gelu(xg + bg),
    }
    fusec_calls = anchor_calls(x, w, b, xg, bg)
    fusec_cases = {k: (lambda _k=kern, _a=a: _k(*_a)) for k, (kern, a) in fusec_calls.items()}
    fast_cases = {k: (lambda _k=fusec.kernel(kern.fn, fast_math=True), _a=a: _k(*_a))
                  for k, (kern, a) in fusec_calls.items()}
    # the same workloads written as whole-tensor statements (examples/whole_tensor.py):
    # fused and tiled by the compiler
    whole_cases = {k: (lambda _k=kern, _a=a: _k(*_a))
                   for k, (kern, a) in whole_tensor_calls(x, w, b, xg, bg).items()}
    # the PTX backend (one GPU thread per program for now): compiled kernels called directly
    ptx_cases = {}
    for k, (kern, a) in fusec_calls.items():
        try:
            ck = kern.compile(*a, backend="ptx")
            ptx_cases[k] = (lambda _ck=ck, _a=a: _ck(*_a))
        except Exception as exc:                    # reported in the table
            ptx_cases[k] = exc
    compiled = {k: torch.compile(v) for k, v in eager.items()}
    triton_cases = _triton_cases(x, w, b, xg, bg)
    copy_src = torch.empty(x.numel() * 2, dtype=torch.uint8, device=dev)
    copy_dst = torch.empty_like(copy_src)
    copy_ms = graph_ms(lambda: copy_dst.copy_(copy_src), args.repeat)
    copy_gbps = 2 * copy_src.numel() / copy_ms / 1e6
    name = torch.cuda.get_device_name()
    print(f"# {name}; device-to-device copy {copy_gbps:.0f} GB/s")
    print(f"{'kernel':<10} {'impl':<15} {'gpu ms':>8} {'GB/s':>7} {'% copy':>7} "
          f"{'call ms':>8}")
    rows = []
    for kernel in eager:
        nbytes = 2 * (xg if kernel == "bias_gelu" else x).numel() * 2
        impls = {"fusec-cuda": fusec_cases[kernel], "fusec-whole": whole_cases[kernel],
                 "fusec-cuda-fast": fast_cases[kernel],
                 "fusec-ptx": ptx_cases[kernel],
                 "torch-eager": eager[kernel], "torch.compile": compiled[kernel]}
        if kernel in triton_cases:
            impls["triton"] = triton_cases[kernel]
        for impl, fn in impls.items():
            try:
                if isinstance(fn, Exception):
                    raise fn
                call = time_ms(fn, args.repeat)
                ms = graph_ms(fn, args.repeat)
            except Exception as exc:                 # report and go on with the others
                print(f"{kernel:<10} {impl:<14} failed: {type(exc).__name__}: {exc}")
                continue
            gbps = nbytes / ms / 1e6
            rows.append({"kernel": kernel, "impl": impl, "ms": ms, "call_ms": call,
                         "GBps": gbps})
            print(f"{kernel:<10} {impl:<15} {ms:>8.3f} {gbps:>7.0f} "
                  f"{100 * gbps / copy_gbps:>6.0f}% {call:>8.3f}")
    matmul_rows(rows)
    launch_overhead(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "copy_GBps": copy_gbps,
                                               "results": rows}, indent=1))


if __name__ == "__main__":
    main()
