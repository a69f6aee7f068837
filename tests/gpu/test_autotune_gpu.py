"""The autotuner on a GPU: on softmax, layernorm and bias+gelu (the examples' kernels) the
config a call tunes to runs within 10% of the best config of the whole unpruned space, every
config of which is measured here the same way; the tuned call's output is right; a second
call reuses the choice. Where the default policy (the calibrated cost model's pick) moves off
the fixed policy's config, its pick is not slower.

Slow by nature: the unpruned spaces hold 72, 72 and 475 configs, each compiled with NVRTC
and timed (a few minutes on an H200). Rows of 128 keep the search space's tile cap (16384
elements with the cuda backend) from ruling out tall tiles the unpruned space has."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import fusec
from fusec.autotune import bench, space
from fusec.compiler import default_config
from fusec.tuning import facts_for, launcher, machine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
from bias_gelu import bias_gelu  # noqa: E402
from layernorm import layernorm  # noqa: E402
from rmsnorm import rmsnorm  # noqa: E402
from softmax import softmax  # noqa: E402

pytestmark = pytest.mark.gpu


def torch_softmax(x):
    return torch.softmax(x.double(), dim=1)


def torch_layernorm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x.double(), (x.shape[1],), w.double(), b.double(),
                                          eps)


def torch_bias_gelu(x, b):
    return torch.nn.functional.gelu(x.double() + b.double())


def inputs(name):
    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g, device="cuda")  # noqa: E731
    if name == "softmax":
        return [rand(16384, 128)]
    if name == "layernorm":
        return [rand(16384, 128), rand(128), rand(128), 1e-5]
    return [rand(1024, 1024), rand(1024)]


CASES = {"softmax": (softmax, torch_softmax), "layernorm": (layernorm, torch_layernorm),
         "bias_gelu": (bias_gelu, torch_bias_gelu)}


def timed(kernel, args, configs):
    """Seconds per launch of each config, measured as the tuner measures."""
    runtime = [a for p, a in zip(kernel.params, args) if p.name not in kernel.constexprs]
    return [m.seconds for m in bench.measure(
        configs, lambda c: launcher(kernel.compile(*args, config=c), runtime), "gpu",
        "reference", l2_bytes=torch.cuda.get_device_properties(0).L2_cache_size,
        budget=math.inf)]


# measured on H200 (2026-11-21, uncalibrated model): tuned 9.0 us vs best [1, 512] 7.0 us.
# The calibrated model (fitted where every measured bias+gelu tile is >= 256 wide) ranks
# narrow tall tiles ([256, 16], [128, 32]) first at this size and [1, 512] near last: not
# measured yet (benchmarks/gpu_sweep.py's extra case bias_gelu 1024x1024 float32 does)
_MISSES = {"bias_gelu": "GPU cost model calibrated on 16384x8192 only (issue 4): 1024x1024 "
                        "tiles unmeasured; tuned 9.0 us vs best 7.0 us on H200 before"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=_MISSES[n]))
                                  if n in _MISSES else n for n in sorted(CASES)])
def test_tuned_config_is_within_10_percent_of_the_whole_space(name):
    example, reference = CASES[name]
    kernel = fusec.kernel(example.fn, backend="cuda", autotune="measure")
    args = inputs(name)
    out = kernel(*args)
    tuning = kernel.last_tuning
    assert tuning.method == "measured", tuning.method
    torch.testing.assert_close(out.double(), reference(*args), rtol=1e-4, atol=1e-5)

    facts = facts_for(kernel, *args)
    arch = fusec.arrays.cuda_arch(args[0])
    configs = space.enumerate_space(facts, machine("cuda", arch))      # no pruning at all
    assert tuning.config in configs
    times = timed(kernel, args, configs)
    finite = [t for t in times if math.isfinite(t)]
    assert finite, "no config of the space ran"
    best = configs[times.index(min(finite))]
    # measure the two again side by side: the space's minimum is biased low by noise
    tuned_s, best_s = timed(kernel, args, [tuning.config, best])
    assert tuned_s <= 1.10 * best_s, (
        f"{name}: tuned {tuning.config} {tuned_s * 1e6:.1f} us vs best {best} "
        f"{best_s * 1e6:.1f} us; rank correlation {tuning.rank_correlation}")

    again = kernel(*args)                                    # the choice is reused
    assert kernel.last_tuning is tuning
    torch.testing.assert_close(again.double(), reference(*args), rtol=1e-4, atol=1e-5)


def test_tuning_does_not_touch_in_place_arguments():
    @fusec.kernel(backend="cuda", autotune="measure")
    def axpy_in_place(y, x, alpha: float):
        for t in fusec.tile(y.shape[0]):
            y[t] = y[t] + alpha * x[t]
        return y

    y, x = torch.randn(1 << 20, device="cuda"), torch.randn(1 << 20, device="cuda")
    want = y + 0.5 * x
    out = axpy_in_place(y, x, 0.5)
    assert axpy_in_place.last_tuning.method == "measured"
    assert out is y
    torch.testing.assert_close(y, want)


def torch_rmsnorm(x, w, eps):
    x = x.double()
    return x * torch.rsqrt((x * x).mean(dim=1, keepdim=True) + eps) * w.double()


# where the calibrated model leaves the fixed policy's config (on the H200's figures): rows of
# 8192 floats spill out of registers at the fixed 4 warps; over 256 columns the fixed
# [8, 512] tiles are half masked lanes
MOVES = {"softmax 8192x8192": (softmax, torch_softmax, [(8192, 8192)]),
         "rmsnorm 65536x256": (rmsnorm, torch_rmsnorm, [(65536, 256), (256,), 1e-6]),
         "bias_gelu 65536x256": (bias_gelu, torch_bias_gelu, [(65536, 256), (256,)])}


@pytest.mark.parametrize("name", sorted(MOVES))
def test_the_model_policy_is_not_slower_than_the_fixed_policy(name):
    example, reference, shapes = MOVES[name]
    g = torch.Generator(device="cuda").manual_seed(0)
    args = [torch.randn(*s, generator=g, device="cuda") if isinstance(s, tuple) else s
            for s in shapes]
    kernel = fusec.kernel(example.fn, backend="cuda")           # autotune=True
    out = kernel(*args)
    torch.testing.assert_close(out.double(), reference(*args), rtol=1e-4, atol=1e-5)
    assert kernel.last_tuning.method == "model"
    picked = kernel.last_tuning.config
    fixed = default_config(facts_for(kernel, *args), "cuda")
    picked_s, fixed_s = timed(kernel, args, [picked, fixed])
    assert picked_s <= 1.03 * fixed_s, (
        f"{name}: model pick {picked} {picked_s * 1e6:.1f} us vs fixed {fixed} "
        f"{fixed_s * 1e6:.1f} us")
