"""Choosing one config for a kernel and call: the model's pick, or the fastest of the best
few measured; measured choices are kept in memory and in the on-disk cache (JSON), so
another process with the same kernel, call bucket and hardware reuses them without
measuring.

Modes (the caller's policy decides which one applies; see fusec/tuning.py):
  "model"    the cost model's first candidate; it must beat the default policy's config by
             a margin in the model's own estimate to replace it (the default is a measured
             policy; a close call in the model is within its error): MODEL_MARGIN, or on a
             calibrated GPU the margin its fit's measured error gives (calibration.py), and
             none for kernels of a kind the calibration never measured (dots)
  "measure"  the model's best MEASURED_TOP, MEASURED_SPREAD more spread over the rest of
             the pruned space and the default (or every user-given config), timed
             (bench.py); the fastest wins, ties going to the model's order
Deterministic for a given cache state: a cached choice is always reused, the candidates and
their order are a function of the facts and the machine.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..ir.symbolic import next_pow2
from . import bench, space
from .cache import default_cache
from .config import Config
from .cost import spearman
from .facts import KernelFacts
from .machine import Machine
from .space import Candidate

MEASURED_TOP = 6                 # the model's best, measured
MEASURED_SPREAD = 4              # and this many more spread evenly over the rest of the
                                 # space: the model is a prior, uncalibrated on a new GPU
MODEL_MARGIN = 0.9               # a model pick must be estimated this much faster than default
FORMAT = 1                       # of the JSON entries, part of their key


@dataclass
class Row:
    config: Config
    estimate: float              # model seconds (nan without a model)
    measured: float | None = None   # seconds; inf: failed or skipped; None: not measured
    note: str = ""


@dataclass
class Tuning:
    config: Config
    method: str                  # model | measured | cached | only (one candidate)
    rows: list = field(default_factory=list)
    seconds: float = 0.0         # time spent choosing

    @property
    def rank_correlation(self) -> float | None:
        """Spearman's rho between the model's estimates and the measured times."""
        pairs = [(r.estimate, r.measured) for r in self.rows
                 if r.measured is not None and math.isfinite(r.measured)
                 and math.isfinite(r.estimate)]
        return spearman([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None


_MEMORY: dict = {}               # tuning key -> Config measured in this process


def tuning_key(facts: KernelFacts, machine: Machine, parts: tuple, configs: list) -> str | None:
    """The on-disk key: the kernel's IR, the caller's specialization parts (backend, target,
    argument facts), tile extents bucketed to powers of two, the hardware, the restriction
    to user configs. None when caching is disabled."""
    cache = default_cache()
    if cache is None:
        return None
    buckets = [next_pow2(d.extent) for d in facts.tunable]
    return cache.key("autotune", FORMAT, facts.digest, list(parts), buckets, machine.name,
                     [c.to_json() for c in configs])


def _cached(key: str | None) -> Config | None:
    if key is None:
        return None
    if key in _MEMORY:
        return _MEMORY[key]
    cache = default_cache()
    files = cache.get(key) if cache is not None else None
    if not files or "tuning.json" not in files:
        return None
    try:
        config = Config.from_json(json.loads(files["tuning.json"])["config"])
    except (ValueError, KeyError, TypeError):
        return None                     # unreadable: tune again (and overwrite nothing)
    _MEMORY[key] = config
    return config


def _store(key: str | None, tuning: Tuning, label: str) -> None:
    if key is None:
        return
    _MEMORY[key] = tuning.config
    cache = default_cache()
    if cache is None:
        return
    entry = {"kernel": label, "config": tuning.config.to_json(), "method": tuning.method,
             "seconds_tuning": tuning.seconds, "rank_correlation": tuning.rank_correlation,
             "table": [{"config": r.config.to_json(), "model_s": _finite(r.estimate),
                        "measured_s": _finite(r.measured), "note": r.note}
                       for r in tuning.rows]}
    cache.put(key, {"tuning.json": json.dumps(entry, sort_keys=True).encode()},
              info={"kind": "autotune", "kernel": label})


def _finite(x):
    return x if x is not None and math.isfinite(x) else None


def ranked(facts: KernelFacts, machine: Machine, cap: int, default: Config,
           configs: list) -> list[Candidate]:
    """The candidates in model order: the user's configs, else the pruned space with the
    default policy's config among them."""
    if configs:
        for i, c in enumerate(configs):
            try:
                facts.full_blocks(c.blocks)
            except ValueError as exc:
                raise ValueError(f"configs[{i}] ({c}): {exc}") from None
        return space.rank(facts, machine, configs)
    found = space.candidates(facts, machine, cap, base=default)
    if default not in [c.config for c in found]:
        found = sorted(found + space.rank(facts, machine, [default]),
                       key=lambda c: (c.estimate if not math.isnan(c.estimate) else math.inf))
    return found


def margin(machine: Machine, facts: KernelFacts | None = None) -> float:
    """How much faster than the default config the model must estimate its pick (0: it
    keeps the default: a kernel with a dot on a GPU whose calibration saw none)."""
    c = machine.calibration
    if c is None:
        return MODEL_MARGIN
    return 0.0 if facts is not None and facts.has_dot and not c.fitted_with_dot else \
        c.model_margin


# Estimates this close are one to the model (its near-best error is ~17%, calibration.py)
NEAR_TIE = 0.03


def model_pick(candidates: list[Candidate], default: Config | None,
               margin: float = MODEL_MARGIN, run_bytes=None) -> Candidate:
    """The model's first candidate, unless the default is within the margin of it. Among
    candidates the model estimates within NEAR_TIE of its first, `run_bytes(config)` (the
    shortest contiguous run a program moves) breaks the tie towards longer runs: the model
    prices 32-byte sectors, the memory also rewards long runs (H100, bias+gelu over 256
    columns: [1024, 16] tiles 74 us, [8, 512] 56 us, estimated alike)."""
    first = candidates[0]
    if default is None or first.config == default:
        return first
    base = next((c for c in candidates if c.config == default), None)
    if base is not None and not first.estimate < margin * base.estimate:
        return base
    if run_bytes is not None and math.isfinite(first.estimate):
        near = [c for c in candidates if c.estimate <= first.estimate * (1 + NEAR_TIE) and
                (base is None or c.estimate < margin * base.estimate)]
        first = max(near, key=lambda c: run_bytes(c.config))      # ties: the model's order
    return first


def shortest_run(facts: KernelFacts, config: Config) -> float:
    """Bytes of the shortest contiguous run among a program's memory accesses."""
    work = facts.work([facts.full_blocks(config.blocks)])
    runs = [float(np.ravel(run)[0]) for launch in work for moved, run in launch.accesses
            if float(np.ravel(moved)[0]) > 0]
    return min(runs, default=0.0)


def choose(facts: KernelFacts, machine: Machine, cap: int, mode: str, default: Config,
           configs: list, prepare=None, key_parts: tuple = (), label: str = "kernel",
           l2_bytes: int = 0) -> Tuning:
    """Pick a config. `configs`: the user's restriction (may be empty); `prepare(config)`:
    builds a candidate and returns a launch on copies of the call's arguments (needed for
    mode "measure")."""
    started = time.perf_counter()
    candidates = ranked(facts, machine, cap, default, configs)
    if not candidates:                  # no model of this kernel: nothing to rank
        candidates = [Candidate(c, math.nan) for c in (configs or [default])]
    user = bool(configs)
    if len(candidates) == 1:
        tuning = Tuning(candidates[0].config, "only", [Row(candidates[0].config,
                                                           candidates[0].estimate)])
    elif mode == "model" and facts.transposed and machine.kind != "cpu" and not user:
        # the GPU model does not price transposed loads (transposes.py): the policy's tiles
        tuning = Tuning(default, "model", [Row(c.config, c.estimate) for c in candidates])
    elif mode == "model":
        pick = model_pick(candidates, None if user else default, margin(machine, facts),
                          None if user or not facts.fitted else
                          (lambda config: shortest_run(facts, config)))
        tuning = Tuning(pick.config, "model", [Row(c.config, c.estimate) for c in candidates])
    elif mode == "measure":
        key = tuning_key(facts, machine, key_parts, configs)
        cached = _cached(key)
        if cached is not None:
            tuning = Tuning(cached, "cached", [])
        else:
            tuning = _measure(candidates, default, user, prepare, machine, label, l2_bytes)
            tuning.seconds = time.perf_counter() - started
            _store(key, tuning, label)
    else:
        raise ValueError(f"autotune mode must be 'model' or 'measure', got {mode!r}")
    if tuning.method != "measured":
        tuning.seconds = time.perf_counter() - started
    if os.environ.get("FUSEC_PRINT_AUTOTUNING") == "1":
        report(tuning, label, machine)
    return tuning


def measured_set(candidates: list[Candidate], default: Config | None) -> list[Candidate]:
    """Which candidates to time, in the order the time budget serves them: the model's best
    few, the default policy's config, a spread of the rest (the model can be wrong in ways
    a spread catches). Every candidate when `default` is None (the user's configs)."""
    if default is None:
        return list(candidates)
    rest = candidates[MEASURED_TOP:]
    step = len(rest) / MEASURED_SPREAD
    order = candidates[:MEASURED_TOP] + [c for c in candidates if c.config == default]
    order += [rest[int(i * step)] for i in range(min(MEASURED_SPREAD, len(rest)))]
    unique = []
    for c in order:
        if all(c is not u for u in unique):
            unique.append(c)
    return unique


def _measure(candidates, default, user, prepare, machine, label, l2_bytes) -> Tuning:
    chosen = measured_set(candidates, None if user else default)
    results = bench.measure([c.config for c in chosen], prepare, machine.kind, label,
                            l2_bytes)
    rows = [Row(c.config, c.estimate, m.seconds, m.note) for c, m in zip(chosen, results)]
    rows += [Row(c.config, c.estimate) for c in candidates if c not in chosen]
    return Tuning(pick_fastest(rows, default if not user else chosen[0].config), "measured",
                  rows)


def pick_fastest(rows: list[Row], fallback: Config) -> Config:
    """The measured row with the least time (the first of equals: the model's order);
    `fallback` when every measurement failed."""
    best = None
    for r in rows:
        if r.measured is not None and math.isfinite(r.measured) and \
                (best is None or r.measured < best.measured):
            best = r
    return best.config if best is not None else fallback


def report(tuning: Tuning, label: str, machine: Machine, file=None) -> None:
    """The table FUSEC_PRINT_AUTOTUNING=1 prints."""
    file = file or sys.stderr
    print(f"fusec autotune: {label} on {machine.name}: {tuning.method} -> {tuning.config} "
          f"({tuning.seconds * 1e3:.1f} ms)", file=file)
    if not tuning.rows:
        return
    print(f"  {'config':44s} {'model us':>10s} {'measured us':>12s}", file=file)
    for r in tuning.rows:
        model = f"{r.estimate * 1e6:10.1f}" if math.isfinite(r.estimate) else f"{'n/a':>10s}"
        measured = "" if r.measured is None else (
            f"{r.measured * 1e6:12.1f}" if math.isfinite(r.measured) else f"{'inf':>12s}")
        mark = " <-" if r.config == tuning.config else ""
        note = f"  ({r.note})" if r.note else ""
        print(f"  {str(r.config):44s} {model} {measured:>12s}{mark}{note}", file=file)
    rho = tuning.rank_correlation
    if rho is not None:
        print(f"  model order vs measured: Spearman rho = {rho:+.2f}", file=file)
