"""Building the variants of a kernel: for each signature and target, trace and compile the
specialization it describes, once per power-of-two bucket of the sizes the kernel uses as
whole-extent `:` tiles, with the config configs.py chooses (given, or by the tuning mode),
and describe each result for the manifest (rules, layout, formulas, config and its source)
with its artifact (a cubin and its PTX, or a CPU shared library).

Variants come out ordered by how specialized they are (more facts assumed first), which is
the order the loader tries them in.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from ..compiler import CompiledKernel, Config, build as compile_spec, trace
from ..jit import Kernel
from .configs import Choice, as_config, check_tune, choose_config, config_entry
from .exprs import postfix
from .introspect import cpu_parts, cuda_parts, host_facts
from .layout import check_symbols, launch_layout, outputs, symbols
from .native import host_info, shared_library
from .signature import SignatureError, parse_signature
from .specs import Spec, bucket_range, buckets_of, make_spec
from .witness import size_name

MAX_BUCKET_VARIANTS = 256       # per signature and target: a guard on many sizes explodes


class BuildError(ValueError):
    """A kernel, signature, target or config an AOT build cannot use."""


@dataclass
class KernelBuild:
    """One kernel of a package: its signatures (each a list of entries, one per runtime
    parameter, or one comma-separated string), constexpr values by name, an optional
    config (fusec.Config, dict or JSON text) used for every variant, and the sizes its
    variants are tuned for by name (configs.py: "N" a named dim, "n" an int argument,
    "x[1]" an anonymous dim)."""
    kernel: Kernel
    signatures: list          # of signatures: each a list of entries or one string
    constexprs: dict = field(default_factory=dict)
    config: object = None
    name: str | None = None
    tune_sizes: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.kernel, Kernel):
            raise BuildError(f"expected a @fusec.kernel, got {type(self.kernel).__name__}")
        self.name = self.name or self.kernel.__name__
        if isinstance(self.signatures, str) or not isinstance(self.signatures, (list, tuple)):
            raise BuildError(f"kernel {self.name!r}: signatures is a list of signatures "
                             f"(each a list of entries or one string), got "
                             f"{self.signatures!r}")
        self.constexprs = dict(self.constexprs or {})
        self.config = as_config(self.config, f"kernel {self.name!r}: config")
        self.tune_sizes = dict(self.tune_sizes or {})
        for name, value in self.tune_sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BuildError(f"kernel {self.name!r}: tune_sizes[{name!r}] must be a "
                                 f"positive int, got {value!r}")


@dataclass
class BuiltVariant:
    entry: dict               # the manifest entry (its "artifact" filled by the writer)
    artifact: bytes
    specificity: int
    ptx: bytes | None = None  # a GPU variant's PTX (the fallback for newer GPUs)


def parse_targets(targets) -> list[str]:
    from ..backends.cuda.nvrtc import check_arch    # the CUDA backend loads on first use
    if isinstance(targets, str):
        targets = [t for t in re.split(r"[,\s]+", targets) if t]
    targets = list(dict.fromkeys(targets))
    if not targets:
        raise BuildError("targets: give at least one of 'cpu', 'sm_80', 'sm_90', ...")
    for t in targets:
        if t != "cpu":
            try:
                check_arch(t)
            except ValueError:
                raise BuildError(f"targets: {t!r} is neither 'cpu' nor a CUDA arch like "
                                 "'sm_80' or 'sm_90a'") from None
    return targets


def _guard_variables(kernel_name: str, guards: list, spec: Spec) -> list:
    found = []
    for guard in guards:
        var = spec.symbol_vars.get(str(guard)) if guard.is_Symbol else None
        if var is None:
            raise BuildError(f"kernel {kernel_name!r}: a whole-extent ':' tile spans "
                             f"{guard}, whose power-of-two bucket would be compiled in; an "
                             "AOT build buckets only sizes that are one dynamic dim or int "
                             "argument: make the sizes in it static in the signature")
        found.append((guard, var))
    return found


def _specs(kb: KernelBuild, sigs: list) -> tuple[list[str], list[tuple[Spec, list]]]:
    """(the guards as text, [(spec, guard rules)] per power-of-two bucket combination of
    the sizes the kernel uses as whole-extent ':' tiles; one spec without rules when it
    uses none). The guards come from a trace: they do not depend on the blocks."""
    first = make_spec(kb.kernel, sigs, kb.constexprs)
    traced = trace(kb.kernel.fn, first.params)[1]
    guards = _guard_variables(kb.name, traced, first)
    texts = list(map(str, traced))
    if not guards:
        return texts, [(first, [])]
    keys = list(dict.fromkeys(var.key for _, var in guards))
    by_key = {var.key: var for _, var in guards}
    combos = list(itertools.product(*(buckets_of(by_key[k]) for k in keys)))
    if len(combos) > MAX_BUCKET_VARIANTS:
        raise BuildError(f"kernel {kb.name!r}: {len(combos)} bucket combinations of "
                         f"{', '.join(by_key[k].shown for k in keys)} (more than "
                         f"{MAX_BUCKET_VARIANTS}): lower the bounds or name equal dims alike")
    result = []
    for combo in combos:
        buckets = dict(zip(keys, combo))
        rules = []
        for guard, var in guards:
            low, high = bucket_range(var, buckets[var.key])
            rules.append({"expr": postfix(guard), "text": var.shown, "min": low,
                          "max": high})
        result.append((make_spec(kb.kernel, sigs, kb.constexprs, buckets), rules))
    return texts, result


def _compile(kb: KernelBuild, spec: Spec, guards: list[str], target: str,
             tune) -> tuple[CompiledKernel, Choice]:
    backend = "cpu" if target == "cpu" else "cuda"
    choice = choose_config(kb.kernel, spec, backend, target, kb.config, tune, kb.tune_sizes)
    compiled = choice.compiled or compile_spec(kb.kernel.fn, spec.params, backend, target,
                                               choice.config, fast_math=kb.kernel.fast_math,
                                               fit_extents=False)
    if list(map(str, compiled.guards)) != guards:
        raise BuildError(f"kernel {kb.name!r}: its whole-extent ':' tiles change with the "
                         f"sizes ({compiled.guards} in the {spec.text} variant)")
    return compiled, choice


def _entry(kernel_name: str, target: str, spec: Spec, compiled: CompiledKernel,
           guards: list, choice: Choice) -> BuiltVariant:
    ptx = None
    if target == "cpu":
        parts = cpu_parts(compiled)
        artifact = shared_library(parts["optimized_ir"], kernel_name)
        layout = launch_layout(parts["layout"], parts["functions"])
        for launch, work in zip(layout["launches"], parts["works"]):
            launch["work"] = int(work)
        extra = {"cpu": host_info() | {"arena_bytes": int(parts["arena_bytes"])}}
    else:
        parts = cuda_parts(compiled)
        artifact = parts["cubin"]
        ptx = compiled.asm["ptx"].encode() if compiled.asm.get("ptx") else None
        layout = launch_layout(parts["layout"], parts["functions"])
        for launch, slot, scratch, shared in zip(layout["launches"],
                                                 parts["layout"].scratch_slots,
                                                 parts["scratch_bytes"], parts["shared_bytes"]):
            launch["scratch_slot"] = slot
            launch["scratch_bytes"] = int(scratch)
            # past 48 KB the loaders opt the function in at load and ask for it at launch
            launch["shared_bytes"] = int(shared)
        extra = {"cuda": {"threads": parts["threads"]}}
    entry = {"id": "", "target": target, "signature": spec.text,
             "rules": {"params": spec.rules, "equal_dims": spec.equal_dims,
                       "guards": guards},
             "symbols": symbols(compiled.module.kernel()),
             "config": config_entry(compiled.config or Config(), choice),
             "layout": layout, "allocs": outputs(parts["layout"]),
             **host_facts(compiled), **extra}
    return BuiltVariant(entry, artifact, spec.specificity, ptx)


def _check_tune_sizes(kb: KernelBuild, specs: list) -> None:
    known = {size_name(var.key) for spec in specs for var in spec.symbol_vars.values()}
    unknown = sorted(set(kb.tune_sizes) - known)
    if unknown:
        raise BuildError(f"kernel {kb.name!r}: tune_sizes names {', '.join(unknown)}, not a "
                         f"dynamic size of its signatures (those are: "
                         f"{', '.join(sorted(known)) or 'none'})")


def build_variants(kb: KernelBuild, targets: list[str], tune="cache",
                   log=None) -> list[BuiltVariant]:
    check_tune(tune)
    runtime = [p.name for p in kb.kernel.params if p.name not in kb.kernel.constexprs]
    unknown = set(kb.constexprs) - kb.kernel.constexprs
    if unknown:
        raise BuildError(f"kernel {kb.name!r}: constexprs names {', '.join(sorted(unknown))}"
                         f", which are not constexpr parameters (those are: "
                         f"{', '.join(sorted(kb.kernel.constexprs)) or 'none'})")
    if not kb.signatures:
        raise BuildError(f"kernel {kb.name!r}: give at least one signature")
    families = []
    for signature in kb.signatures:
        try:
            sigs = parse_signature(signature, runtime)
        except SignatureError as exc:
            raise SignatureError(f"kernel {kb.name!r}: {exc}") from None
        families.append(_specs(kb, sigs))
    _check_tune_sizes(kb, [spec for _, specs in families for spec, _ in specs])
    built = []
    for guard_texts, specs in families:
        for target in targets:
            for spec, rules in specs:
                compiled, choice = _compile(kb, spec, guard_texts, target, tune)
                built.append(_entry(kb.name, target, spec, compiled, rules, choice))
                if log:
                    log(_describe(kb.name, target, spec, rules, compiled, choice))
    built.sort(key=lambda b: -b.specificity)
    for k, b in enumerate(built):
        b.entry["id"] = f"{kb.name}.v{k}.{b.entry['target']}"
        check_symbols(b.entry)
    return built


def _describe(name: str, target: str, spec: Spec, guards: list, compiled: CompiledKernel,
              choice: Choice) -> str:
    buckets = ", ".join(dict.fromkeys(f"{g['text']} in [{g['min']}, {g['max']}]"
                                      for g in guards))
    config = compiled.config or Config()
    return (f"  {name} {target}: {spec.text}" + (f" ({buckets})" if buckets else "")
            + f": blocks={list(config.blocks)} warps={config.warps} ({choice.source})")
