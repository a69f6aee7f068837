"""Building the variants of a kernel: for each signature and target, trace and compile the
specialization it describes, once per power-of-two bucket of the sizes the kernel uses as
whole-extent `:` tiles, and describe each result for the manifest (rules, layout, formulas,
config) with its artifact (a cubin, or a CPU shared library).

Variants come out ordered by how specialized they are (more facts assumed first), which is
the order the loader tries them in.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from ..compiler import CompiledKernel, Config, build as compile_spec
from ..jit import Kernel
from .configs import Tuner, as_config, choose_config, config_entry
from .exprs import postfix
from .introspect import cpu_parts, cuda_parts, host_facts
from .layout import check_symbols, launch_layout, outputs, symbols
from .native import host_info, shared_library
from .signature import SignatureError, parse_signature
from .specs import Spec, bucket_range, buckets_of, make_spec

MAX_BUCKET_VARIANTS = 256       # per signature and target: a guard on many sizes explodes


class BuildError(ValueError):
    """A kernel, signature, target or config an AOT build cannot use."""


@dataclass
class KernelBuild:
    """One kernel of a package: its signatures (each a list of entries, one per runtime
    parameter, or one comma-separated string), constexpr values by name, and an optional
    config (fusec.Config, dict or JSON text) used for every variant."""
    kernel: Kernel
    signatures: list          # of signatures: each a list of entries or one string
    constexprs: dict = field(default_factory=dict)
    config: object = None
    name: str | None = None

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


def _guard_variables(kernel_name: str, compiled: CompiledKernel, spec: Spec) -> list:
    found = []
    for guard in compiled.guards:
        var = spec.symbol_vars.get(str(guard)) if guard.is_Symbol else None
        if var is None:
            raise BuildError(f"kernel {kernel_name!r}: a whole-extent ':' tile spans "
                             f"{guard}, whose power-of-two bucket would be compiled in; an "
                             "AOT build buckets only sizes that are one dynamic dim or int "
                             "argument: make the sizes in it static in the signature")
        found.append((guard, var))
    return found


def _variants_for_target(kb: KernelBuild, sigs: list, target: str, tuner: Tuner | None):
    """(spec, compiled kernel, guard rules) per bucket combination."""
    backend = "cpu" if target == "cpu" else "cuda"

    def compile_for(spec: Spec) -> CompiledKernel:
        config = choose_config(kb.kernel, spec.params, backend, target, kb.config, tuner)
        return compile_spec(kb.kernel.fn, spec.params, backend, target, config)

    first_spec = make_spec(kb.kernel, sigs, kb.constexprs)
    first = compile_for(first_spec)
    guards = _guard_variables(kb.name, first, first_spec)
    if not guards:
        return [(first_spec, first, [])]
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
        spec = make_spec(kb.kernel, sigs, kb.constexprs, buckets)
        compiled = first if spec.params == first_spec.params else compile_for(spec)
        if list(map(str, compiled.guards)) != list(map(str, first.guards)):
            raise BuildError(f"kernel {kb.name!r}: its whole-extent ':' tiles change with "
                             f"the sizes ({first.guards} vs {compiled.guards})")
        rules = []
        for guard, var in guards:
            low, high = bucket_range(var, buckets[var.key])
            rules.append({"expr": postfix(guard), "text": var.shown, "min": low,
                          "max": high})
        result.append((spec, compiled, rules))
    return result


def _entry(kernel_name: str, target: str, spec: Spec, compiled: CompiledKernel,
           guards: list) -> BuiltVariant:
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
        for launch, slot, nbytes in zip(layout["launches"], parts["layout"].scratch_slots,
                                        parts["scratch_bytes"]):
            launch["scratch_slot"] = slot
            launch["scratch_bytes"] = int(nbytes)
        extra = {"cuda": {"threads": parts["threads"]}}
    entry = {"id": "", "target": target, "signature": spec.text,
             "rules": {"params": spec.rules, "equal_dims": spec.equal_dims,
                       "guards": guards},
             "symbols": symbols(compiled.module.kernel()),
             "config": config_entry(compiled.config or Config()),
             "layout": layout, "allocs": outputs(parts["layout"]),
             **host_facts(compiled), **extra}
    return BuiltVariant(entry, artifact, spec.specificity, ptx)


def build_variants(kb: KernelBuild, targets: list[str], tuner: Tuner | None = None,
                   log=None) -> list[BuiltVariant]:
    runtime = [p.name for p in kb.kernel.params if p.name not in kb.kernel.constexprs]
    unknown = set(kb.constexprs) - kb.kernel.constexprs
    if unknown:
        raise BuildError(f"kernel {kb.name!r}: constexprs names {', '.join(sorted(unknown))}"
                         f", which are not constexpr parameters (those are: "
                         f"{', '.join(sorted(kb.kernel.constexprs)) or 'none'})")
    if not kb.signatures:
        raise BuildError(f"kernel {kb.name!r}: give at least one signature")
    built = []
    for signature in kb.signatures:
        try:
            sigs = parse_signature(signature, runtime)
        except SignatureError as exc:
            raise SignatureError(f"kernel {kb.name!r}: {exc}") from None
        for target in targets:
            for spec, compiled, guards in _variants_for_target(kb, sigs, target, tuner):
                built.append(_entry(kb.name, target, spec, compiled, guards))
                if log:
                    buckets = ", ".join(dict.fromkeys(f"{g['text']} in [{g['min']}, "
                                                      f"{g['max']}]" for g in guards))
                    log(f"  {kb.name} {target}: {spec.text}"
                        + (f" ({buckets})" if buckets else ""))
    built.sort(key=lambda b: -b.specificity)
    for k, b in enumerate(built):
        b.entry["id"] = f"{kb.name}.v{k}.{b.entry['target']}"
        check_symbols(b.entry)
    return built
