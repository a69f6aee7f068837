"""The autotuner on a GPU: on softmax, layernorm and bias+gelu (the examples' kernels) the
config a call tunes to runs within 10% of the best config of the whole unpruned space, every
config of which is measured here the same way; the tuned call's output is right; a second
call reuses the choice.

Slow by nature: the unpruned spaces hold about 60, 60 and 480 configs, each compiled with
NVRTC and timed (a few minutes on an H200). Rows of 128 keep the per-backend tile cap
(4096 elements) from ruling out tall tiles the unpruned space has."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import fusec
from fusec.autotune import bench, space
from fusec.compiler import autotune_facts
from fusec.specialize import describe
from fusec.tuning import launcher, machine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
from bias_gelu import bias_gelu  # noqa: E402
from layernorm import layernorm  # noqa: E402
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


# measured on H200 (2026-11-21): the uncalibrated GPU model ranks bias+gelu's candidates
# against measurement (rank correlation -0.19), so the measured few miss the best [1, 512]
_MISSES = {"bias_gelu": "GPU cost model not calibrated yet (issue 4): tuned 9.0 us vs best "
                        "7.0 us on H200"}


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

    params = [describe(p.name, a, p.name in kernel.constexprs, False)[1]
              for p, a in zip(kernel.params, args)]
    facts = autotune_facts(example.fn, params)
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
