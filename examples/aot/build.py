"""Build the AOT example package: the examples' softmax, layernorm, bias+gelu and vector
add compiled for sm_80, sm_90 and this CPU into an importable package (no GPU needed).

    python examples/aot/build.py [--targets sm_80,sm_90,cpu] [--max-row 4096] [--out DIR]
                                 [--tune cache|measure|model|none] [--wheel]

then run it without fusec: `python examples/aot/use.py` (Python) or use.c (C, GPU), or
`pip install` the wheel (--wheel: examples/aot/dist/aotkernels-0.1.0-py3-none-<platform>.whl).
Each variant's config comes from the tuning cache when a JIT run (or a build with
--tune measure, on this machine's GPU) measured it, else from the kernel's own policy.
One kernel with the command line instead:

    fusec build examples/softmax.py --kernel softmax --signature "float32[?,N<=4096]" \\
        --target sm_80,sm_90,cpu --out examples/aot/dist/softmaxpkg --wheel
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))           # the examples' kernels

import fusec.aot  # noqa: E402
from bias_gelu import bias_gelu  # noqa: E402
from layernorm import layernorm  # noqa: E402
from softmax import softmax  # noqa: E402
from vector_add import vector_add  # noqa: E402

DEFAULT_OUT = HERE / "dist" / "aotkernels"
DEFAULT_TARGETS = "sm_80,sm_90,cpu"


def kernels(max_row: int) -> list:
    """What the package holds. Rows are whole-extent `:` tiles in softmax and layernorm, so
    their length N gets a bound (a variant per power-of-two bucket up to it); naming it N
    in all three layernorm entries says they are one size (one set of buckets)."""
    row = f"N<={max_row}"
    return [
        fusec.aot.KernelBuild(softmax, [f"float32[?,{row}]"]),
        fusec.aot.KernelBuild(layernorm, [f"float32[?,{row}], float32[N], float32[N], float"]),
        fusec.aot.KernelBuild(bias_gelu, ["float32[?,N], float32[N]",
                                          "float16[?,N], float16[N]"]),
        # the divisible-by-16 signature first: it is the more specialized one
        fusec.aot.KernelBuild(vector_add, ["float32[?:16], float32[?:16]",
                                           "float32[?], float32[?]"]),
    ]


def build(out=DEFAULT_OUT, targets=DEFAULT_TARGETS, max_row: int = 4096, log=print,
          tune: str = "cache", wheel: bool = False) -> Path:
    start = time.perf_counter()
    path = fusec.aot.build_package(kernels(max_row), targets, out, tune=tune, wheel=wheel,
                                   log=log)
    if log:
        files = [p for p in path.rglob("*") if p.is_file()]
        log(f"built {path} in {time.perf_counter() - start:.1f} s: {len(files)} files, "
            f"{sum(p.stat().st_size for p in files) / 2**20:.1f} MiB")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=DEFAULT_TARGETS)
    parser.add_argument("--max-row", type=int, default=4096)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--tune", choices=fusec.aot.TUNE_MODES, default="cache")
    parser.add_argument("--wheel", action="store_true", help="also write a wheel")
    args = parser.parse_args(argv)
    build(args.out, args.targets, args.max_row, tune=args.tune, wheel=args.wheel)


if __name__ == "__main__":
    main()
