"""Which config (blocks, warps, stages) a package variant is built with.

In order: the config given to the build (`config=` / `--config`); else what a tuner says
(the hook for fusec's autotuner: any callable `tuner(kernel, params, backend, target)`
returning a fusec.Config, or None to pass -- it may benchmark on a GPU that is present or
read tuning results from its cache); else the kernel's own first `configs=` entry; else
None, which makes the compiler apply its default block policy for the backend. The tuner is
asked once per variant, with that variant's params (their size hints lie inside the
variant's power-of-two buckets).
"""
from __future__ import annotations

import json
from typing import Callable

from ..compiler import Config

Tuner = Callable[..., "Config | None"]


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


def choose_config(kernel, params: list, backend: str, target: str, given: Config | None,
                  tuner: Tuner | None) -> Config | None:
    if given is not None:
        return given
    if tuner is not None:
        tuned = tuner(kernel, params, backend, target)
        if tuned is not None:
            return as_config(tuned, "tuner result")
    return kernel.configs[0] if kernel.configs else None


def config_entry(config: Config) -> dict:
    return {"blocks": [int(b) for b in config.blocks], "warps": int(config.warps),
            "stages": int(config.stages)}
