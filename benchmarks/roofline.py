"""The GPU benchmark as a roofline: achieved GFLOP/s against arithmetic intensity (FLOPs
per byte moved) under the measured copy-bandwidth roof, one marker per kernel and
implementation. Reads benchmarks/gpu_results.json (benchmarks/gpu.py --json), writes a PNG.

    python3 benchmarks/roofline.py [results.json] [out.png]      (needs matplotlib)

FLOPs per element are counted by hand from each kernel's math (an exp, erf or rsqrt counts
as one op): the intensities place the kernels, the measured bandwidth is what matters.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# elements, bytes moved (read + write, bf16), FLOPs per element
WORK = {"softmax": (32768 * 4096, 2 * 2 * 32768 * 4096, 5),
        "layernorm": (32768 * 4096, 2 * 2 * 32768 * 4096, 8),
        "rmsnorm": (32768 * 4096, 2 * 2 * 32768 * 4096, 5),
        "bias_gelu": (16384 * 8192, 2 * 2 * 16384 * 8192, 6)}
MARKERS = {"fusec-cuda": "o", "fusec-cuda-fast": "P", "fusec-ptx": "v", "torch-eager": "s",
           "torch.compile": "^", "triton": "D"}


def main(src: Path = HERE / "gpu_results.json", out: Path = HERE / "roofline.png") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = json.loads(src.read_text())
    bw = data["copy_GBps"]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs = [0.5, 4.0]
    ax.plot(xs, [bw * x for x in xs], "k-", lw=1.2,
            label=f"copy bandwidth {bw:.0f} GB/s")
    colors = dict(zip(WORK, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for row in data["results"]:
        if row["kernel"] not in WORK:
            continue
        n, nbytes, flops = WORK[row["kernel"]]
        intensity = n * flops / nbytes
        gflops = n * flops / (row["ms"] * 1e-3) / 1e9
        ax.plot(intensity, gflops, MARKERS.get(row["impl"], "x"),
                color=colors[row["kernel"]], ms=8, alpha=0.85)
    for k, c in colors.items():
        ax.plot([], [], "o", color=c, label=k)
    for impl, m in MARKERS.items():
        ax.plot([], [], m, color="gray", label=impl)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(f"{data['device']}, bf16: fusec vs torch vs Triton (memory-bound rows)")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))
