"""Fitting the thread-block cost model's free constants (calibration.py, cost.py) to measured
configs, and judging the fit the way the autotuner uses it: by the measured time of the
config the model ranks first.

The data is a sweep (benchmarks/gpu_sweep.py): for a few anchor kernels, many configs, each
with its measured device time. The fit minimizes the squared log error of the predicted
times, each kernel weighted alike (a kernel with more configs does not dominate), plus a
weak pull of each constant towards its physical estimate (PRIOR_CYCLES: a constant the data
hardly constrains stays near it instead of drifting to 0 or infinity), by a Nelder-Mead
search over the constants' logarithms (all positive; the soft maximum's power above 1).
Deterministic: fixed start (the estimates), fixed simplex, no randomness, and the samples
summed in a canonical order (the same sweep in another order fits the same constants). The
terms of each sample that the fitted constants do not change are priced once
(block_cost.LaunchTerms): a trial of the constants is a few array operations over all
samples, a fit of the 211-config sweep ~0.1 s (judging each case left out takes 15 fits).

The registers a thread uses are fitted apart, by least squares against ptxas's counts for
the same configs (compile-time facts: no GPU needed).

Judging: per kernel, the model's first pick among the measured configs against the fastest
measured one and against the fixed policy's config; leave-one-kernel-out refits on the other
kernels and judges the one left out (what a kernel the sweep never saw gets). Its errors
among each kernel's near-best configs give the margin by which a model pick must beat the
fixed policy (Calibration.model_margin).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace

import numpy as np

from . import block_cost, cost, tuner
from .calibration import CALIBRATION_FILE, FITTED, FORMAT, Calibration
from .config import Config
from .facts import KernelFacts
from .machine import Machine
from .space import Candidate

PRIOR_WEIGHT = 2e-3              # per squared log-ratio to the estimate (the loss: ~0.03)
NEAR_BEST = 1.3                  # configs within this factor of the fastest: the contenders
MAX_EVALUATIONS = 3000
_STOP = 1e-7                     # relative spread of the simplex's losses

# Physical estimates of the fitted constants, in SM clock cycles (Hopper-class SMs; the
# fit moves them where the data says). Weighted element-operations are cost.py's units.
PRIOR_CYCLES = {
    "op_seconds": 1 / 128,       # 4 schedulers x 32 lanes issue 128 lane-ops a cycle
    "memory_latency": 1600,      # HBM round trip under load (~600 ns idle)
    "sync_latency": 60,          # __syncthreads with several warps arriving
    "shuffle_latency": 30,       # shfl.sync and the dependent combine
    "thread_op_seconds": 4,      # a dependent FP32 op in one thread's chain
}
PRIOR_VALUES = {                 # unitless
    "buffer_ops": 4.0,           # per element through a buffer: address, store, load
    "thread_ops": 40.0,          # per thread and program: tile coordinates, bounds, pointers
    "shuffle_ops": 4.0,          # per shuffle step: shuffle, combine, conversions
    "scratch_factor": 1.0,       # a scratch byte is written once and read once
    "l2_factor": 0.3,            # the L2 serves ~3x the DRAM bandwidth
    "overlap": 4.0,              # memory, issue and latency overlap mostly, not fully
}
LAUNCH_OVERHEAD_CYCLES = 4000    # an empty launch's device time (~2 us; not fitted: the
                                 # sweep's kernels run 100+ us)


@dataclass(frozen=True)
class Sample:
    kernel: str                  # the anchor's name
    facts: KernelFacts           # of the call the sweep measured
    config: Config
    seconds: float               # measured device time


@dataclass(frozen=True)
class Judgement:
    """One kernel: the model's first pick among the measured configs (raw, and as the
    "model" policy takes it: the fixed policy's config unless the pick is estimated faster
    by the margin), against the fastest and the fixed policy's config."""
    kernel: str
    pick: Config
    pick_seconds: float
    policy_pick: Config
    policy_seconds: float
    best: Config
    best_seconds: float
    default: Config | None
    default_seconds: float | None
    rank_correlation: float | None

    @property
    def pick_vs_best(self) -> float:
        return self.pick_seconds / self.best_seconds

    @property
    def policy_vs_best(self) -> float:
        return self.policy_seconds / self.best_seconds

    @property
    def default_vs_best(self) -> float | None:
        return None if self.default_seconds is None else \
            self.default_seconds / self.best_seconds

    @property
    def policy_vs_default(self) -> float | None:
        return None if self.default_seconds is None else \
            self.policy_seconds / self.default_seconds


def prior(device: str, clock_hz: float, bandwidth: float, registers: tuple) -> Calibration:
    """The physical estimates for a GPU of this clock and copy bandwidth; `registers`:
    (base, per element) from fit_registers."""
    cycle = 1.0 / clock_hz
    return Calibration(
        device=device, bandwidth=bandwidth,
        **{k: v * cycle for k, v in PRIOR_CYCLES.items()}, **PRIOR_VALUES,
        registers_base=registers[0], registers_per_element=registers[1],
        launch_overhead=LAUNCH_OVERHEAD_CYCLES * cycle, near_best_error=0.0,
        fitted_with_dot=False)


# -- pricing samples -------------------------------------------------------------------------
class _Priced:
    """Samples' launch terms (block_cost.LaunchTerms), priced once under a machine (its
    limits and register model: the constants a fit varies do not change them), flattened
    over all launches of all samples so that pricing the lot under another calibration is
    one pass of array arithmetic. The samples are taken in a canonical order (kernel,
    config): sums over them, and so a fit, do not depend on the order they came in."""

    def __init__(self, samples: list[Sample], machine: Machine):
        if machine.kind != "gpu":
            raise ValueError(f"calibrate: machine {machine.name!r} is not a GPU: only the "
                             "GPU model is calibrated")
        self.units = machine.units
        order = sorted(range(len(samples)), key=lambda i: (
            samples[i].kernel, samples[i].config.blocks, samples[i].config.warps,
            samples[i].config.stages))
        self.position = np.empty(len(samples), np.int64)      # sample -> its row here
        self.position[order] = np.arange(len(samples))
        ordered = [samples[i] for i in order]
        index = {k: n for n, k in enumerate(_kernels(ordered))}
        self.kernel_of = np.array([index[s.kernel] for s in ordered], np.int64)
        self.seconds = np.array([s.seconds for s in ordered], np.float64)
        parts, owners = [], []
        for rows in _groups(ordered):
            group = [ordered[r] for r in rows]
            facts = group[0].facts
            blocks = np.array([facts.full_blocks(s.config.blocks) for s in group], np.float64)
            warps = np.array([s.config.warps for s in group], np.float64)
            for work in facts.work(blocks):
                parts.append(block_cost.launch_terms(work, machine, warps,
                                                     group[0].config.stages, facts.has_dot))
                owners.append(np.array(rows, np.int64))
        self.owner = np.concatenate(owners)
        self.terms = block_cost.LaunchTerms(**{
            f.name: np.concatenate([np.broadcast_to(np.asarray(getattr(t, f.name), np.float64),
                                                    (len(o),)) for t, o in zip(parts, owners)])
            for f in fields(block_cost.LaunchTerms)})

    def predict(self, calibration: Calibration) -> np.ndarray:
        """Seconds of each sample, in this object's (canonical) order."""
        seconds = block_cost.launch_seconds(self.terms, calibration, self.units)
        return np.bincount(self.owner, weights=seconds, minlength=len(self.seconds))

    def loss(self, calibration: Calibration) -> float:
        """Mean over kernels of the mean squared log error of their predicted times."""
        errors = np.log(self.predict(calibration) / self.seconds) ** 2
        counts = np.bincount(self.kernel_of)
        return float(np.mean(np.bincount(self.kernel_of, weights=errors) / counts))


def _groups(samples: list[Sample]) -> list[list[int]]:
    """Indices of the samples of one kernel call and stage count (priced together: arrays
    over their configs), in first-seen order."""
    keyed: dict = {}
    for i, s in enumerate(samples):
        keyed.setdefault((s.kernel, id(s.facts), s.config.stages), []).append(i)
    return list(keyed.values())


def with_calibration(machine: Machine, calibration: Calibration) -> Machine:
    return replace(machine, calibration=calibration, bandwidth=calibration.bandwidth)


def predict(samples: list[Sample], machine: Machine) -> list[float]:
    """Model seconds of each sample (under machine's calibration), in their order."""
    priced = _Priced(samples, machine)
    return priced.predict(machine.calibration)[priced.position].tolist()


def _kernels(samples: list[Sample]) -> list[str]:
    return list(dict.fromkeys(s.kernel for s in samples))


# -- the fits --------------------------------------------------------------------------------
def fit_registers(pairs: list[tuple[float, int]]) -> tuple[float, float]:
    """(base, per element) of registers = base + per element x register-tile elements, by
    least squares over (the model's register elements, ptxas's registers) pairs."""
    if len(pairs) < 2:
        raise ValueError(f"fit_registers: needs at least 2 (elements, registers) pairs, got "
                         f"{len(pairs)}")
    x = np.array([p[0] for p in pairs], np.float64)
    y = np.array([p[1] for p in pairs], np.float64)
    base, slope = np.linalg.lstsq(np.vstack([np.ones_like(x), x]).T, y, rcond=None)[0]
    return float(base), float(slope)


def register_elements(sample: Sample, machine: Machine) -> float:
    """The register elements the model gives a sample's config (fit_registers' x)."""
    (work, *_) = sample.facts.work(sample.facts.full_blocks(sample.config.blocks))
    return float(block_cost.block_resources(work, machine, sample.config.warps).tiles
                 .register_elements)


def _to_vector(c: Calibration) -> np.ndarray:
    return np.array([math.log(c.overlap - 1.0) if name == "overlap" else
                     math.log(getattr(c, name)) for name in FITTED])


def _from_vector(c: Calibration, x: np.ndarray) -> Calibration:
    return replace(c, **{name: (1.0 + math.exp(v) if name == "overlap" else math.exp(v))
                         for name, v in zip(FITTED, x)})


def loss(samples: list[Sample], machine: Machine) -> float:
    """Mean over kernels of the mean squared log error of their predicted times (under
    machine's calibration)."""
    return _Priced(samples, machine).loss(machine.calibration)


def fit(samples: list[Sample], machine: Machine, start: Calibration,
        prior_weight: float = PRIOR_WEIGHT) -> Calibration:
    """The constants FITTED that best predict the samples' times on `machine` (its limits;
    its calibration is replaced), starting from and pulled towards `start`'s."""
    priced = _Priced(samples, with_calibration(machine, start))
    center = _to_vector(start)

    def objective(x):
        value = priced.loss(_from_vector(start, x))
        value += prior_weight * float(np.sum((x - center) ** 2))
        return value if math.isfinite(value) else math.inf

    return _from_vector(start, nelder_mead(objective, center))


def nelder_mead(f, x0: np.ndarray, step: float = 0.7,
                max_evaluations: int = MAX_EVALUATIONS) -> np.ndarray:
    """Minimize f from x0 (the standard reflection, expansion, contraction and shrink),
    restarted once from its result: a collapsed simplex can stall short of a minimum."""
    for _ in range(2):
        x0 = _nelder_mead_once(f, np.asarray(x0, np.float64), step, max_evaluations // 2)
    return x0


def _nelder_mead_once(f, x0, step, max_evaluations):
    n = len(x0)
    simplex = [x0] + [x0 + step * np.eye(n)[i] for i in range(n)]
    values = [f(x) for x in simplex]
    evaluations = n + 1
    while evaluations < max_evaluations:
        order = np.argsort(values, kind="stable")
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if abs(values[-1] - values[0]) <= _STOP * max(abs(values[0]), 1e-12):
            break
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        fr = f(reflected)
        evaluations += 1
        if fr < values[0]:
            expanded = centroid + 2.0 * (centroid - simplex[-1])
            fe = f(expanded)
            evaluations += 1
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:            # contract: towards the reflection if it beat the worst, else inside
            target, bar = (reflected, fr) if fr < values[-1] else (simplex[-1], values[-1])
            contracted = centroid + 0.5 * (target - centroid)
            fc = f(contracted)
            evaluations += 1
            if fc < bar:
                simplex[-1], values[-1] = contracted, fc
            else:                                   # shrink towards the best
                simplex = [simplex[0]] + [simplex[0] + 0.5 * (x - simplex[0])
                                          for x in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
                evaluations += n
    return simplex[int(np.argmin(values))]


# -- judging ---------------------------------------------------------------------------------
def judge(samples: list[Sample], machine: Machine, defaults: dict,
          predicted: list[float] | None = None) -> list[Judgement]:
    """Per kernel of the samples (in first-seen order): its judgement under machine's
    calibration (or the given predictions). `defaults`: kernel -> the fixed policy's
    Config (a kernel may lack one)."""
    predicted = predict(samples, machine) if predicted is None else predicted
    out = []
    for kernel in _kernels(samples):
        rows = [(p, s) for p, s in zip(predicted, samples) if s.kernel == kernel]
        pick = min(rows, key=lambda r: r[0])[1]
        best = min(rows, key=lambda r: r[1].seconds)[1]
        default = next((r for r in rows if r[1].config == defaults.get(kernel)), None)
        # the policy as tuner.choose takes it, near ties included
        ranked = sorted(rows, key=lambda r: r[0])
        chosen = tuner.model_pick([Candidate(r[1].config, r[0]) for r in ranked],
                                  default[1].config if default else None,
                                  tuner.margin(machine, pick.facts),
                                  lambda config: tuner.shortest_run(pick.facts, config))
        policy = default[1] if default and chosen.config == default[1].config else \
            next(r[1] for r in ranked if r[1].config == chosen.config)
        out.append(Judgement(
            kernel, pick.config, pick.seconds, policy.config, policy.seconds, best.config,
            best.seconds, default[1].config if default else None,
            default[1].seconds if default else None,
            cost.spearman([r[0] for r in rows], [r[1].seconds for r in rows])))
    return out


def leave_one_kernel_out(samples: list[Sample], machine: Machine,
                         start: Calibration) -> list[float]:
    """Each sample's estimate under constants fitted to the other kernels' samples only."""
    out = {}
    for kernel in _kernels(samples):
        fitted = fit([s for s in samples if s.kernel != kernel], machine, start)
        mine = [s for s in samples if s.kernel == kernel]
        out.update(zip(map(id, mine), predict(mine, with_calibration(machine, fitted))))
    return [out[id(s)] for s in samples]


def near_best_error(samples: list[Sample], predicted: list[float]) -> float:
    """RMS over kernels' configs within NEAR_BEST of their fastest of the log error of the
    estimate, less the kernel's mean log error over those configs: how far off the model
    is about one contender relative to the others (what a pick between them rests on)."""
    errors = []
    for kernel in _kernels(samples):
        rows = [(p, s.seconds) for p, s in zip(predicted, samples) if s.kernel == kernel]
        fastest = min(t for _, t in rows)
        logs = np.array([math.log(p / t) for p, t in rows if t <= NEAR_BEST * fastest])
        errors.extend((logs - logs.mean()).tolist())
    return float(math.sqrt(np.mean(np.square(errors))))


def calibrate(samples: list[Sample], machine: Machine,
              start: Calibration) -> tuple[Calibration, list[float]]:
    """(the fitted constants with their near-best error measured leaving each kernel out,
    those held-out estimates of the samples)."""
    fitted = fit(samples, machine, start)
    held_out = leave_one_kernel_out(samples, machine, start)
    return replace(fitted, near_best_error=near_best_error(samples, held_out),
                   fitted_with_dot=any(s.facts.has_dot for s in samples)), held_out


# -- the data file ---------------------------------------------------------------------------
def write_entry(device: str, figures: dict, calibration: Calibration, notes: dict) -> None:
    """Store (replace) a device's entry in gpu_calibration.json, keeping the others and
    their order (the first entry is the reference other GPUs are scaled from).
    `figures`: arch, sm_count, clock_hz, peak_bandwidth."""
    data = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {
        "format": FORMAT, "devices": {}}
    data["devices"][device] = {**figures, "constants": calibration.to_json(), **notes}
    tmp = CALIBRATION_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(CALIBRATION_FILE)
