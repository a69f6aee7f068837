"""Device time of the GPU examples over grids of configs (blocks x warps): the data the GPU
default policy and the cost model are calibrated against (autotune/calibrate.py).

    python3 benchmarks/gpu_sweep.py [--json out.json] [--fast-math] [--cases anchors]
    python3 benchmarks/gpu_sweep.py --fit out.json [--write]      # no GPU needed

A sweep measures each case's grid, plus the configs the cost model ranks first over the
whole pruned space and the fixed policy's config (so the model's own picks get measured);
each row also records the registers and shared memory ptxas gives the config. Cases:
"anchors" are the shapes of benchmarks/gpu.py (bf16; the calibration's data), "extra" are
shapes where the fixed policy is weak (rows of 8192 spill out of registers at 4 warps,
short rows leave [8, 512] tiles mostly masked) and the GPU tests' shapes.

--fit reads a sweep (this format, or the first sweep's plain list of anchor rows), fits the
model's constants to it (registers from ptxas, compiled here), prints the judgement tables
(markdown, for RESULTS.md) and with --write stores them in autotune/gpu_calibration.json.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import torch

import fusec
import fusec.language as fl
from fusec.autotune import calibrate
from fusec.autotune.calibration import CALIBRATION_FILE, entry
from fusec.autotune.machine import calibrated_machine
from fusec.compiler import default_config
from fusec.tuning import facts_for, ranked

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from gpu import anchor_calls, graph_ms  # noqa: E402

ROW_BLOCKS = ([1], [2], [4])
TILE_BLOCKS = ([8, 512], [4, 1024], [16, 256], [2, 2048], [1, 4096], [8, 1024])
WARPS = (2, 4, 8, 16)
NARROW_TILES = ([128, 32], [256, 16], [64, 64], [32, 128])
ROWS = ("softmax", "layernorm", "rmsnorm")
# case -> (kernels, rows, columns, dtype, blocks, warps): x is [rows, columns], weights
# and bias [columns]
CASES = {
    "anchors": [(ROWS, 32768, 4096, "bfloat16", ROW_BLOCKS, WARPS),
                (("bias_gelu",), 16384, 8192, "bfloat16", TILE_BLOCKS, WARPS)],
    "extra": [(ROWS, 8192, 8192, "bfloat16", ([1], [2]), WARPS),
              (ROWS, 65536, 256, "bfloat16", ([4], [16], [64]), (1, 4, 16)),
              (ROWS, 16384, 128, "float32", ([8], [32], [64]), (1, 4, 8)),
              (("bias_gelu",), 16384, 8192, "bfloat16", NARROW_TILES, (1, 2, 4)),
              (("bias_gelu",), 65536, 256, "bfloat16",
               ([8, 512], [16, 256]) + NARROW_TILES, (1, 2, 4)),
              (("bias_gelu",), 1024, 1024, "float32",
               ([1, 512], [8, 512], [2, 512], [1, 1024]) + NARROW_TILES, (1, 2, 4))],
}
MODEL_TOP = 3                   # the model's first picks over the whole space, measured too
# the PTX backend runs a program per thread: tiles of a few elements, threads per block
PTX_ROW_BLOCKS = ([1],)
PTX_TILE_BLOCKS = ([1, 1], [1, 2], [1, 8], [1, 32], [1, 256], [2, 128])
PTX_WARPS = (1, 4, 8)


def case_label(kernel: str, rows: int, cols: int, dtype: str) -> str:
    return f"{kernel} {rows}x{cols} {dtype}"


def calls(rows: int, cols: int, dtype: str, device: str | None) -> dict:
    """kernel -> (example kernel, arguments): tensors on `device`, or TensorSpecs (None)."""
    if device is None:
        x = fusec.TensorSpec((rows, cols), getattr(fl, dtype))
        w = fusec.TensorSpec((cols,), getattr(fl, dtype))
        return anchor_calls(x, w, w, x, w)
    kind = getattr(torch, dtype)
    x = torch.randn(rows, cols, device=device, dtype=kind)
    w, b = (torch.randn(cols, device=device, dtype=kind) for _ in range(2))
    return anchor_calls(x, w, b, x, b)


def ptxas_resources(compiled) -> dict:
    """Registers per thread and static shared memory of a compiled CUDA kernel, as ptxas
    reports them (its source compiled again with -v)."""
    from fusec.backends.cuda.nvrtc import compile_source
    _, _, log = compile_source(compiled.asm["cuda"], compiled.target, want_ptx=False,
                               extra_options=("--ptxas-options=-v",))
    registers = [int(n) for n in re.findall(r"Used (\d+) registers", log)]
    shared = [int(n) for n in re.findall(r"(\d+) bytes smem", log)]
    return {"registers": max(registers, default=0), "shared_bytes": max(shared, default=0)}


def sweep_configs(kern, call_args, blocks, warps, backend: str, arch: str) -> list:
    """The grid, then the model's first picks and the fixed policy's config."""
    configs = [fusec.Config(blocks=b, warps=w) for b in blocks for w in warps]
    if backend == "cuda":
        facts = facts_for(kern, *call_args)
        extra = [c.config for c in ranked(facts, backend, arch)[:MODEL_TOP]]
        configs += [c for c in extra + [default_config(facts, backend)] if c not in configs]
    return configs


def run_sweep(args) -> dict:
    torch.manual_seed(0)
    arch = fusec.arrays.cuda_arch()
    ptx = args.backend == "ptx"
    out = {"device": torch.cuda.get_device_name(), "arch": arch, "backend": args.backend,
           "rows": []}
    for case_set in ["anchors"] if ptx else args.cases:     # ptx: its own tile grid
        for kernels, n_rows, n_cols, dtype, blocks, warps in CASES[case_set]:
            made = calls(n_rows, n_cols, dtype, "cuda")
            nbytes = 2 * n_rows * n_cols * torch.empty((), dtype=getattr(torch, dtype)) \
                .element_size()
            for name in kernels:
                kern, call_args = made[name]
                kern = fusec.kernel(kern.fn, fast_math=args.fast_math)
                grid_blocks = (PTX_TILE_BLOCKS if name == "bias_gelu" else PTX_ROW_BLOCKS) \
                    if ptx else blocks
                for config in sweep_configs(kern, call_args, grid_blocks,
                                            PTX_WARPS if ptx else warps, args.backend, arch):
                    row = measure(kern, call_args, config, args, nbytes)
                    if row is not None:
                        row.update(kernel=name, case=case_label(name, n_rows, n_cols, dtype),
                                   shape=[n_rows, n_cols], dtype=dtype, case_set=case_set)
                        out["rows"].append(row)
    return out


def measure(kern, call_args, config, args, nbytes) -> dict | None:
    label = f"{kern.fn.__name__:<10} {str(list(config.blocks)):<12} {config.warps:>2}"
    try:
        ck = kern.compile(*call_args, config=config, backend=args.backend)
        ms = graph_ms(lambda: ck(*call_args), args.repeat)
    except Exception as exc:         # a config that does not build or launch
        print(f"{label}  failed: {exc}"[:160])
        return None
    row = {"backend": args.backend, "blocks": list(config.blocks), "warps": config.warps,
           "ms": ms, "GBps": nbytes / ms / 1e6}
    if args.backend == "cuda":
        row.update(ptxas_resources(ck))
    print(f"{label} {ms:8.3f} ms {nbytes / ms / 1e6:7.0f} GB/s", flush=True)
    return row


# -- fitting ---------------------------------------------------------------------------------
def load_rows(path: str) -> tuple[dict, list]:
    """(header, rows) of a sweep file; the first sweep's plain list holds anchor rows only."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        anchors = {name: (rows, cols, dtype) for kernels, rows, cols, dtype, *_ in
                   CASES["anchors"] for name in kernels}
        rows = [dict(r, shape=list(anchors[r["kernel"]][:2]), dtype=anchors[r["kernel"]][2],
                     case=case_label(r["kernel"], *anchors[r["kernel"]]))
                for r in data]
        return {"device": "NVIDIA H200", "arch": "sm_90"}, rows
    return {k: v for k, v in data.items() if k != "rows"}, data["rows"]


def samples_of(rows: list) -> tuple[list, dict]:
    """(calibrate.Samples of the cuda rows, case -> the fixed policy's config)."""
    facts, defaults, samples = {}, {}, []
    for r in rows:
        if r.get("backend", "cuda") != "cuda":
            continue
        if r["case"] not in facts:
            kern, call_args = calls(*r["shape"], r["dtype"], None)[r["kernel"]]
            facts[r["case"]] = facts_for(kern, *call_args)
            # the fixed policy the sweep measured (before the register-tile step)
            defaults[r["case"]] = default_config(facts[r["case"]], "cuda", fit_registers=False)
        samples.append(calibrate.Sample(r["case"], facts[r["case"]],
                                        fusec.Config(r["blocks"], r["warps"]), r["ms"] * 1e-3))
    return samples, defaults


def registers_of(rows: list, samples: list, arch: str) -> list:
    """ptxas's registers for each sample: recorded by the sweep, else compiled here."""
    out = []
    for r, s in zip([r for r in rows if r.get("backend", "cuda") == "cuda"], samples):
        if "registers" not in r:
            kern, call_args = calls(*r["shape"], r["dtype"], None)[r["kernel"]]
            compiled = kern.compile(*call_args, config=s.config, backend="cuda", target=arch)
            r.update(ptxas_resources(compiled))
        out.append(r["registers"])
    return out


def table(judgements: list, title: str) -> str:
    def cfg(c):
        return "-" if c is None else f"{list(c.blocks)}/{c.warps}w"
    lines = [f"**{title}**", "",
             "| case | model pick | its time | best measured | fixed policy | model policy "
             "| pick/best | policy/fixed | Spearman |", "|" + "---|" * 9]
    for j in judgements:
        rho = "-" if j.rank_correlation is None else f"{j.rank_correlation:+.2f}"
        fixed = "-" if j.default is None else f"{cfg(j.default)} {j.default_seconds * 1e3:.3f}"
        ratio = "-" if j.policy_vs_default is None else f"{j.policy_vs_default:.3f}"
        lines.append(f"| {j.kernel} | {cfg(j.pick)} | {j.pick_seconds * 1e3:.3f} ms | "
                     f"{cfg(j.best)} {j.best_seconds * 1e3:.3f} | {fixed} | "
                     f"{cfg(j.policy_pick)} {j.policy_seconds * 1e3:.3f} | "
                     f"{j.pick_vs_best:.3f} | {ratio} | {rho} |")
    return "\n".join(lines)


def fit(args) -> None:
    header, rows = load_rows(args.fit)
    device, arch = args.device or header["device"], header.get("arch", "sm_90")
    reference = entry(device)
    if reference is None:
        raise SystemExit(f"--fit: no entry for {device!r} in {CALIBRATION_FILE.name} to take "
                         "the SM count and limits from: add one by hand (arch, sm_count, "
                         "clock_hz, peak_bandwidth, constants) and run again")
    figures = {"arch": arch, "sm_count": args.sm_count or reference["sm_count"],
               "clock_hz": args.clock_hz or reference["clock_hz"],
               "peak_bandwidth": args.peak_bandwidth or reference["peak_bandwidth"]}
    copy = args.copy_gbps * 1e9 if args.copy_gbps else reference["constants"]["bandwidth"]
    samples, defaults = samples_of(rows)
    # where tiles live does not depend on the constants: any calibration places them
    machine = replace(calibrated_machine(device), units=figures["sm_count"])
    pairs = list(zip((calibrate.register_elements(s, machine) for s in samples),
                     registers_of(rows, samples, arch)))
    start = calibrate.prior(device, figures["clock_hz"], copy, calibrate.fit_registers(pairs))
    fitted, held_out = calibrate.calibrate(samples, machine, start)
    fitted_machine = calibrate.with_calibration(machine, fitted)
    print(table(calibrate.judge(samples, fitted_machine, defaults),
                f"fitted on all {len(samples)} configs"))
    print()
    print(table(calibrate.judge(samples, fitted_machine, defaults, held_out),
                "each case left out of the fit"))
    print(f"\nconstants: {json.dumps(fitted.to_json())}\nmargin: {fitted.model_margin:.3f}")
    if args.write:
        calibrate.write_entry(device, figures, fitted, {
            "data": f"{Path(args.fit).name}: {len(samples)} configs of "
                    f"{len({s.kernel for s in samples})} cases",
            "loss": calibrate.loss(samples, fitted_machine)})
        print(f"written to {CALIBRATION_FILE}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--fast-math", action="store_true")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--backend", default="cuda", choices=("cuda", "ptx"))
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--fit", metavar="SWEEP_JSON")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--device", help="--fit: the entry's name (default: the sweep's device)")
    ap.add_argument("--copy-gbps", type=float, help="--fit: measured copy bandwidth")
    ap.add_argument("--sm-count", type=int)
    ap.add_argument("--clock-hz", type=float)
    ap.add_argument("--peak-bandwidth", type=float)
    args = ap.parse_args()
    if args.fit:
        fit(args)
        return
    result = run_sweep(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
