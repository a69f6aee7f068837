"""The GPU cost model's calibration judged on the checked-in H200 sweep
(benchmarks/gpu_sweep_results.json, CUDA backend: 211 configs of 15 cases -- softmax,
layernorm, rmsnorm 32768x4096 and bias+gelu 16384x8192 bf16 (the anchors), the row kernels
at 8192x8192 and 65536x256 bf16 and 16384x128 f32, bias+gelu 65536x256 bf16 and 1024x1024
f32), as the autotuner uses it: fitted on all cases, and with each case left out of the fit
(what a kernel the sweep never saw gets).

The bounds, and where they come from:
NOISE = 1.02   one config's run-to-run spread: the 60 anchor configs measured in two
               sessions (the first sweep and this one) differ by at most 1.5% (RMS 0.7%),
               the four measured twice within this sweep by at most 0.4%.
m              the model's margin (Calibration.model_margin = exp(-2 sigma), sigma the
               held-out log error of one estimate among each case's near-best configs; 0.72
               on this sweep). The "model" policy takes the model's first pick only when it
               is estimated faster than the fixed config by this factor.
1/m            the raw first pick p against the fastest measured b: est(p) <= est(b), so
               time(p)/time(b) <= e(b)/e(p) (e = estimate/time): within 1/m wherever the
               two estimates' relative error stays within the margin's 2 sigma. In-sample
               that holds on every case (worst 1.28x: bias+gelu 16384x8192, where a dozen
               tiles lie within 10% and the model's order among them is weak). Held out it
               does not (layernorm 32768x4096 1.83x, rmsnorm 8192x8192 1.70x): there only
               on the whole -- the geometric mean over cases no worse than the fixed
               config's (a pick made blind, like the fixed policy's).
1/m^2          the policy against the fastest: it takes p only when est(p) < m est(f), so
               time(p)/time(b) <= 1/m as above; it keeps the fixed config f only when
               est(f) <= est(p)/m <= est(b)/m, so time(f)/time(b) <= e(b)/(m e(f)) <= 1/m^2.
               Whatever the fixed config's distance to the best, the policy is within 1/m^2
               of it: a fixed config that far off must be left (softmax and layernorm rows of
               8192: fixed 3.9x and 5.2x the best, the policy picks the best).
"""
from __future__ import annotations

import math
import random
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import fusec
from fusec.autotune import block_cost, calibrate, space, tuner
from fusec.autotune.calibration import FITTED, entry, for_device
from fusec.autotune.machine import calibrated_machine
from fusec.compiler import default_config
from fusec.tuning import facts_for, space_cap

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_sweep  # noqa: E402

SWEEP = ROOT / "benchmarks" / "gpu_sweep_results.json"
DEVICE = "NVIDIA H200"
NOISE = 1.02
# a refit on another platform may stop elsewhere in the loss's flat valley: a third restart
# of the search from the checked-in constants moves them by at most 0.15%; a fit to other
# data moves them by factors
REFIT_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def sweep():
    _, rows = gpu_sweep.load_rows(str(SWEEP))
    samples, defaults = gpu_sweep.samples_of(rows)
    return samples, defaults, calibrated_machine(DEVICE)


def start(machine):
    """The fit's start: the physical estimates, with the entry's register model (fitted to
    ptxas's counts when the entry was written)."""
    c = machine.calibration
    return calibrate.prior(DEVICE, entry(DEVICE)["clock_hz"], c.bandwidth,
                           (c.registers_base, c.registers_per_element))


@pytest.fixture(scope="module")
def held_out(sweep):
    samples, _, machine = sweep
    return calibrate.leave_one_kernel_out(samples, machine, start(machine))


@pytest.fixture(scope="module", params=["fitted on all cases", "each case left out"])
def judgements(request, sweep):
    samples, defaults, machine = sweep
    predicted = request.getfixturevalue("held_out") if "left out" in request.param else None
    out = calibrate.judge(samples, machine, defaults, predicted)
    assert len(out) == len(defaults) == 15 and all(j.default is not None for j in out)
    return out


def margin(machine) -> float:
    return machine.calibration.model_margin


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values))


def summary(judgements, ratio: str) -> str:
    return ", ".join(f"{j.kernel}: {getattr(j, ratio):.3f}" for j in judgements)


def test_the_model_policy_is_never_slower_than_the_fixed_config(judgements):
    slower = [j for j in judgements if j.policy_seconds > NOISE * j.default_seconds]
    assert not slower, summary(judgements, "policy_vs_default")


def test_the_model_policy_is_within_its_margin_squared_of_the_fastest(judgements, sweep):
    bound = 1 / margin(sweep[2]) ** 2
    assert all(j.policy_vs_best <= bound for j in judgements), \
        f"bound {bound:.3f}: " + summary(judgements, "policy_vs_best")


def test_in_sample_the_models_first_pick_is_within_its_margin_of_the_fastest(sweep):
    samples, defaults, machine = sweep
    judgements = calibrate.judge(samples, machine, defaults)
    bound = 1 / margin(machine)
    assert all(j.pick_vs_best <= bound for j in judgements), \
        f"bound {bound:.3f}: " + summary(judgements, "pick_vs_best")


def test_held_out_first_picks_are_on_the_whole_no_worse_than_the_fixed_config(
        sweep, held_out):
    samples, defaults, machine = sweep
    judgements = calibrate.judge(samples, machine, defaults, held_out)
    picks = geometric_mean(j.pick_vs_best for j in judgements)
    fixed = geometric_mean(j.default_vs_best for j in judgements)
    assert picks <= fixed, (picks, fixed, summary(judgements, "pick_vs_best"))


def test_the_checked_in_constants_are_the_fit_of_the_sweep(sweep, held_out):
    samples, _, machine = sweep
    checked_in = machine.calibration
    refit = calibrate.fit(samples, machine, start(machine))
    for name in FITTED:
        assert getattr(refit, name) == pytest.approx(getattr(checked_in, name),
                                                     rel=REFIT_TOLERANCE), name
    # the margin is what the held-out errors give, as calibrate() measures it
    assert calibrate.near_best_error(samples, held_out) == pytest.approx(
        checked_in.near_best_error, rel=REFIT_TOLERANCE)
    # deterministic: the same data in another order fits the very same constants
    shuffled = list(samples)
    random.Random(0).shuffle(shuffled)
    assert calibrate.fit(shuffled, machine, start(machine)) == refit
    # the constants carry information: the fit's RMS log error is under half the
    # physical estimates' (0.39 against 0.99; most of what remains is a per-case bias,
    # e.g. 10-us launches estimated ~2x too fast, which does not move a pick)
    assert calibrate.loss(samples, machine) < calibrate.loss(
        samples, calibrate.with_calibration(machine, start(machine))) / 4


def test_on_the_whole_space_the_policy_keeps_the_fixed_config_or_a_pick_estimated_faster(
        sweep):
    """What a call does (the pruned space, not the sweep's grid): the fixed config, or a
    pick whose estimate (priced again here, apart from the search space's ranking) beats
    the fixed config's by the margin. The pick may be a config the sweep never measured;
    where it measured it, it is not slower than the fixed config. Where the sweep shows
    the fixed config more than 1/m^2 slower than its best, the policy leaves it."""
    samples, defaults, machine = sweep
    for kernel, default in defaults.items():
        measured = {s.config: s.seconds for s in samples if s.kernel == kernel}
        facts = next(s.facts for s in samples if s.kernel == kernel)
        pick = tuner.choose(facts, machine, space_cap("cuda"), "model", default, []).config
        if pick == default:
            assert measured[default] <= min(measured.values()) / margin(machine) ** 2, kernel
            continue
        estimate_pick, estimate_default = calibrate.predict(
            [calibrate.Sample(kernel, facts, c, math.nan) for c in (pick, default)], machine)
        assert estimate_pick < margin(machine) * estimate_default, (kernel, pick)
        if pick in measured:
            assert measured[pick] <= NOISE * measured[default], (kernel, pick)


def test_a_kernel_with_a_dot_keeps_the_fixed_policy():
    """The sweep held no dot: the model's picks for one are not trusted over the fixed
    policy (autotune=False still takes the model's first candidate)."""
    sys.path.insert(0, str(ROOT / "examples"))
    from matmul_epilogue import matmul_bias_relu
    a, bias = fusec.TensorSpec((4096, 4096)), fusec.TensorSpec((4096,))
    facts = facts_for(matmul_bias_relu, a, a, bias, 0.5)
    machine = calibrated_machine(DEVICE)
    default = default_config(facts, "cuda")
    tuning = tuner.choose(facts, machine, space_cap("cuda"), "model", default, [])
    assert tuning.config == default and tuning.rows[0].config != default
    assert tuner.margin(machine, facts) == 0.0 < tuner.margin(machine)


def test_where_the_model_puts_tiles_is_where_ptxas_puts_them(sweep):
    """Register tiles, shared-memory buffers or global scratch, against the real compiler
    (NVRTC with ptxas -v, sm_90): a row of 4096 at 4 warps in registers, at 2 warps in
    shared memory (two float rows, 32 KB), two rows at 4 warps beyond 48 KB: scratch."""
    samples, _, machine = sweep
    for blocks, warps in (([1], 4), ([1], 2), ([2], 4)):
        kern, args = gpu_sweep.calls(32768, 4096, "bfloat16", None)["softmax"]
        compiled = kern.compile(*args, config=fusec.Config(blocks, warps), backend="cuda",
                                target="sm_90")
        ptxas = gpu_sweep.ptxas_resources(compiled)
        s = next(s for s in samples if s.kernel.startswith("softmax 32768")
                 and s.config == fusec.Config(blocks, warps))
        (work,) = s.facts.work(s.facts.full_blocks(blocks))
        tiles = block_cost.block_resources(work, machine, warps).tiles
        assert abs(float(tiles.shared) - ptxas["shared_bytes"]) < 1024, (blocks, warps)
        assert (float(tiles.scratch_traffic) > 0) == (ptxas["shared_bytes"] == 0)


def test_the_fit_prices_like_the_cost_model(sweep):
    """The fit's once-priced terms (block_cost.LaunchTerms) give the times the autotuner's
    model gives each config."""
    samples, _, machine = sweep
    picked = samples[::20]
    for s, fitted in zip(picked, calibrate.predict(picked, machine)):
        direct = space.rank(s.facts, machine, [s.config])[0].estimate
        assert fitted == pytest.approx(direct, rel=1e-12), s


def test_calibration_rejects_a_machine_that_is_not_a_gpu(sweep):
    samples, _, machine = sweep
    with pytest.raises(ValueError, match="not a GPU"):
        calibrate.predict(samples[:2], replace(machine, kind="cpu"))


def test_other_gpus_scale_from_the_reference():
    h200 = for_device(DEVICE, 0, 0)
    assert h200.scaled_from == "" and h200.device == DEVICE
    a100 = for_device("NVIDIA A100-SXM4-80GB", 2.04e12, 1.41e9)
    assert a100.scaled_from == DEVICE
    assert a100.bandwidth == pytest.approx(2.04e12 * h200.bandwidth / 4.8e12)
    assert a100.sync_latency == pytest.approx(h200.sync_latency * 1.98 / 1.41)
    assert a100.memory_latency == h200.memory_latency         # nanoseconds, not cycles
    assert a100.buffer_ops == h200.buffer_ops                 # counts, not times
    unknown = for_device("some GPU", 0, 0)                     # nothing known: as measured
    assert unknown.bandwidth == h200.bandwidth
    assert h200.model_margin == pytest.approx(math.exp(-2 * h200.near_best_error))
    assert 0.5 < h200.model_margin < 1
