"""Which config (blocks, warps, stages) a package variant is built with, and where it came
from (the manifest records it per variant as the config's "source").

`config=` / `--config` wins ("given"). Else the build's tuning mode (`tune=` / `--tune`)
asks fusec's autotuner (fusec/tuning.py, autotune/tuner.py) as a JIT call would:

  cache    (the default) the result the on-disk tuning cache holds for this kernel,
           specialization, tuning sizes and target -- stored by a JIT call that measured
           (autotune="measure", or configs= offering a choice) or by a build with
           tune="measure" on the same hardware ("cached"); else what a JIT call of the
           kernel uses when it does not measure (its autotune policy: the fixed
           default-block policy on GPUs, the cost model's pick on the CPU, ...), so the
           package runs what the JIT runs. A kernel that never tunes (autotune="default",
           or one configs= entry) reads no cache.
  measure  measured now on this machine ("measured", or "cached" when the tuning cache
           already holds the result, as for a JIT call): the GPU of the target's arch, or
           this CPU for the 'cpu' target
  model    the cost model's pick, no device needed ("model")
  none     the fixed default policy: the kernel's first configs= entry
           ("kernel_configs"), else the compiler's default blocks ("default_policy")
  a callable `tuner(kernel, params, backend, target)` returning a fusec.Config, a dict or
           JSON text ("tuner"), or None for what "none" gives

A variant is tuned once, for its tuning sizes (witness.py): each dynamic size at the
build's `tune_sizes` entry for its name, else witness.DEFAULT_TUNING_SIZE; the manifest
records them as the config's "tuned_for".
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .. import arrays, tuning
from ..autotune import tuner as autotuner
from ..compiler import CompiledKernel, Config, autotune_facts, build as compile_spec
from . import witness
from .runtime.manifest import CONFIG_SOURCES

MODES = ("cache", "measure", "model", "none")
_SOURCE_OF_METHOD = {"cached": "cached", "measured": "measured", "model": "model",
                     "only": "model"}       # autotune.tuner.Tuning.method -> source


class TuningError(ValueError):
    """A tuning mode this build cannot apply here (no device to measure on, ...)."""


def as_config(value, where: str = "config") -> Config | None:
    """A Config from a Config, a dict, or JSON text ('{"blocks": [64], "warps": 8}')."""
    if value is None or isinstance(value, Config):
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"{where}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise TypeError(f"{where}: expected a fusec.Config, a dict or JSON text, got "
                        f"{type(value).__name__}")
    unknown = set(value) - {"blocks", "warps", "stages"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a config "
                         "has blocks, warps and stages")
    return Config(**value)


def check_tune(tune):
    if callable(tune) or (isinstance(tune, str) and tune in MODES):
        return tune
    raise ValueError(f"tune: expected one of {', '.join(map(repr, MODES))} or a callable "
                     f"tuner, got {tune!r}")


@dataclass
class Choice:
    config: Config | None          # None: the compiler's default-block policy
    source: str                    # one of CONFIG_SOURCES
    tuned_for: dict | None = None  # size symbol -> the size the choice was made for
    compiled: CompiledKernel | None = None   # the variant, when measuring compiled it

    def __post_init__(self):
        if self.source not in CONFIG_SOURCES:       # the manifest schema lists them
            raise ValueError(f"config source {self.source!r} is not one of "
                             f"{', '.join(CONFIG_SOURCES)}")


class _Variant:
    """One variant to choose a config for: the kernel, its Spec, backend and target."""

    def __init__(self, kernel, spec, backend: str, target: str, tune_sizes: dict):
        self.kernel, self.spec, self.backend, self.target = kernel, spec, backend, target
        self.sizes = witness.tuning_sizes(spec, tune_sizes)
        self._facts = None

    def compile(self, config: Config | None) -> CompiledKernel:
        return compile_spec(self.kernel.fn, self.spec.params, self.backend, self.target,
                            config, fast_math=self.kernel.fast_math,
                            fit_extents=False)

    def fixed(self) -> Choice:
        """The JIT's autotune="default": the one (or first) configs= entry, else the
        compiler's default blocks."""
        if self.kernel.configs:
            return Choice(self.kernel.configs[0], "kernel_configs")
        return Choice(None, "default_policy")

    def facts(self):
        """The autotuner's facts at the tuning sizes, or None where the JIT would not tune
        (one configs= entry; no model of the kernel and no configs to choose among)."""
        configs = self.kernel.configs
        if len(configs) == 1:
            return None
        if self._facts is None:
            self._facts = autotune_facts(self.kernel.fn,
                                         witness.tuning_params(self.spec.params, self.sizes))
        return self._facts if self._facts.fitted or configs else None

    def key_parts(self) -> tuple:
        """The JIT's (backend, target, argument key) for a call like this variant's."""
        return self.backend, self.target, witness.jit_key(self.kernel, self.spec.params)

    def tuned(self, how: str, runtime_args=None) -> Choice:
        facts = self.facts()
        if facts is None:
            return self.fixed()
        memo: dict = {}

        def build_for(config):
            if config not in memo:
                memo[config] = self.compile(config)
            return memo[config]

        choice = tuning.choose(self.kernel.__name__, facts, self.backend, self.target, how,
                               self.kernel.configs, self.key_parts(), build_for,
                               runtime_args)
        source = _SOURCE_OF_METHOD.get(choice.method)
        if source is None:
            raise TuningError(f"the autotuner chose by method {choice.method!r}, which "
                              "fusec/aot/configs.py does not map to a manifest source")
        return Choice(choice.config, source, self.tuned_for(), memo.get(choice.config))

    def tuned_for(self) -> dict:
        return {s: int(v) for s, v in self.sizes.items()}

    def cached(self) -> Config | None:
        facts = self.facts()
        if facts is None:
            return None
        key = autotuner.tuning_key(facts, tuning.machine(self.backend, self.target),
                                   self.key_parts(), self.kernel.configs)
        # autotune/tuner.py has no public read of one cached choice yet: its _cached is
        # the lookup a JIT call makes (memory, then disk; an unreadable entry is a miss)
        return autotuner._cached(key) if key is not None else None

    def device(self) -> str:
        """Where a measurement of this variant runs, or TuningError saying why not here."""
        if self.backend == "cpu":
            return "cpu"
        try:
            import torch
        except ImportError:
            raise TuningError(f"tune='measure' for {self.target} launches on a GPU through "
                              "torch, which is not installed here") from None
        here = arrays.cuda_arch() if torch.cuda.is_available() else None
        if here is None:
            raise TuningError(f"tune='measure' for {self.target} needs a GPU of that arch "
                              "here and none is visible: use tune='cache', 'model' or "
                              "'none', or build on a machine with one")
        if self.target.removesuffix("a") != here:
            raise TuningError(f"tune='measure' for {self.target}: the GPU here is {here}; "
                              "measure each arch on a GPU of it, or use tune='cache', "
                              "'model' or 'none' for this target")
        return "cuda"


def _cache(v: _Variant) -> Choice:
    if v.kernel.autotune != "default":
        config = v.cached()
        if config is not None:
            return Choice(config, "cached", v.tuned_for())
    how = tuning.mode(v.kernel.autotune, v.backend, len(v.kernel.configs), lambda: False)
    return MODE_CHOICE["model" if how == "model" else "none"](v)


def _measure(v: _Variant) -> Choice:
    if v.facts() is None:                  # nothing to choose among: nothing to measure
        return v.fixed()
    args = witness.arguments(witness.tuning_params(v.spec.params, v.sizes), v.device())
    return v.tuned("measure", args)


MODE_CHOICE = {"cache": _cache, "measure": _measure, "model": lambda v: v.tuned("model"),
               "none": _Variant.fixed}


def choose_config(kernel, spec, backend: str, target: str, given: Config | None,
                  tune="cache", tune_sizes: dict | None = None) -> Choice:
    if given is not None:
        return Choice(given, "given")
    if callable(tune):
        tuned = tune(kernel, spec.params, backend, target)
        if tuned is not None:
            return Choice(as_config(tuned, "tuner result"), "tuner")
        tune = "none"
    return MODE_CHOICE[tune](_Variant(kernel, spec, backend, target, tune_sizes or {}))


def config_entry(config: Config, choice: Choice) -> dict:
    entry = {"blocks": [int(b) for b in config.blocks], "warps": int(config.warps),
             "stages": int(config.stages), "source": choice.source}
    if choice.tuned_for:
        entry["tuned_for"] = choice.tuned_for
    return entry
