"""A packaged kernel: called like the JIT kernel it was built from (same parameters and
defaults, same results), it picks the variant for the device and the arguments, allocates
the outputs, packs the launch slots and launches.

Variant choice: numpy arrays and torch CPU tensors run the "cpu" variants, torch CUDA
tensors the cubins that run on their device's arch (the exact arch first; on a GPU no cubin
runs on, the PTX of the newest arch below it, cuda.py); among those,
the first (in build order: most specialized signature first) whose rules the call meets.
A call no variant fits raises NoMatchingVariantError listing every variant built, each
with the reason it does not fit.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from .args import TensorArg, allocate, describe
from .cpu import CpuVariant
from .cuda import CudaVariant, preference, ptx_runs_on, runs_on
from .errors import ManifestError, NoMatchingVariantError
from .manifest import artifact_path, check_variants
from .rules import Rules, bind_symbols
from .slots import SlotLayout


class Variant:
    def __init__(self, root: Path, v: dict, kernel: str, param_names: list[str], rank: int):
        where = f"kernel {kernel!r}, variant {v['id']}"
        self.id = v["id"]
        self.target = v["target"]
        self.signature = v["signature"]
        self.rank = rank                      # the build order of its signature
        self.rules = Rules(v, param_names, where)
        self.slots = SlotLayout(v, where)
        self.symbols = v["symbols"]
        self.returns = [tuple(r) for r in v["returns"]]
        self.returns_tuple = v["returns_tuple"]
        self.written = v["written"]
        artifact_path(root, v["artifact"]["path"])        # inside the package, or refused
        self.has_ptx = "ptx" in v
        if self.has_ptx:
            artifact_path(root, v["ptx"]["path"])
        if self.target == "cpu":
            if "cpu" not in v:
                raise ManifestError(f"{where}: a cpu variant needs a 'cpu' entry")
            self.runner = CpuVariant(root, v, kernel)
        elif self.target.startswith("sm_"):
            if "cuda" not in v:
                raise ManifestError(f"{where}: a GPU variant needs a 'cuda' entry")
            self.runner = CudaVariant(root, v, kernel)
        else:
            raise ManifestError(f"{where}: unknown target {self.target!r}")


_PARAMETER_KINDS = {"positional_only": inspect.Parameter.POSITIONAL_ONLY,
                    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    "keyword_only": inspect.Parameter.KEYWORD_ONLY}


def _device_of(name: str, runtime: list) -> str:
    devices = {a.device for a in runtime if isinstance(a, TensorArg)}
    if len(devices) > 1:
        raise ValueError(f"{name}(): tensor arguments are on different devices "
                         f"({', '.join(sorted(devices))})")
    device = devices.pop() if devices else "cpu"
    if device != "cpu" and not device.startswith("cuda:"):
        raise ValueError(f"{name}(): tensors on {device}: a package runs numpy arrays, torch "
                         "CPU tensors and torch CUDA tensors")
    return device


class PackagedKernel:
    def __init__(self, root: Path, package: str, name: str, spec: dict):
        self.__name__ = name
        self.package = package
        params = spec["params"]
        self.param_names = [p["name"] for p in params]
        self.__signature__ = inspect.Signature([
            inspect.Parameter(p["name"], _PARAMETER_KINDS[p["kind"]],
                              default=p.get("default", inspect.Parameter.empty))
            for p in params])
        self.runtime_positions = [i for i, p in enumerate(params) if not p["constexpr"]]
        self._root, self._spec, self._variants = root, spec, None
        self._by_device: dict[str, list[Variant]] = {}
        self._archs: dict[int, str] = {}

    @property
    def variants(self) -> list:
        """The kernel's variants, their manifest entries checked on first use."""
        if self._variants is None:
            name, params = self.__name__, self._spec["params"]
            check_variants(name, self._spec["variants"])
            ranks: dict[str, int] = {}
            variants = []
            for v in self._spec["variants"]:
                if len(v["rules"]["params"]) != len(params) or any(
                        (r["kind"] == "constexpr") != p["constexpr"]
                        for r, p in zip(v["rules"]["params"], params)):
                    raise ManifestError(f"kernel {name!r}, variant {v['id']}: its rules do "
                                        "not match the kernel's parameters")
                rank = ranks.setdefault(v["signature"], len(ranks))
                variants.append(Variant(self._root, v, name, self.param_names, rank))
            self._variants = variants
        return self._variants

    def __repr__(self):
        return f"<packaged kernel {self.package}.{self.__name__}: " \
               f"{len(self.variants)} variant(s)>"

    # -- variant choice ---------------------------------------------------------------------
    def _arch(self, index: int, torch) -> str:
        arch = self._archs.get(index)
        if arch is None:
            major, minor = torch.cuda.get_device_capability(index)
            arch = self._archs[index] = f"sm_{major}{minor}"
        return arch

    def _ptx_mode(self, arch: str) -> bool:
        """Whether a device of `arch` runs the PTX fallback: none of the cubins runs on it."""
        return not any(v.target != "cpu" and runs_on(v.target, arch) for v in self.variants)

    def _can_run(self, v: Variant, arch: str, ptx: bool) -> bool:
        if v.target == "cpu":
            return False
        return (v.has_ptx and ptx_runs_on(v.target, arch)) if ptx else runs_on(v.target, arch)

    def _candidates(self, device: str, arch: str | None) -> list[Variant]:
        key = arch or device
        found = self._by_device.get(key)
        if found is None:
            if arch is None:
                found = [v for v in self.variants if v.target == "cpu"]
            else:
                # a newer GPU than every cubin's: the PTX of the archs below it
                ptx = self._ptx_mode(arch)
                runnable = [v for v in self.variants if self._can_run(v, arch, ptx)]
                # per signature, the variants of the best arch that runs here, in build
                # order (most specialized signature first)
                best: dict[int, tuple] = {}
                for v in runnable:
                    p = preference(v.target, arch)
                    best[v.rank] = max(best.get(v.rank, p), p)
                found = [v for v in runnable if preference(v.target, arch) == best[v.rank]]
            self._by_device[key] = found
        return found

    def _no_match(self, args: list, runtime: list, device: str, arch: str | None,
                  candidates: list[Variant]) -> NoMatchingVariantError:
        lines = [f"{self.__name__}(): no variant of package {self.package!r} fits these "
                 "arguments:"]
        lines += [f"    {n} = {a.describe()}" for n, a in zip(self.param_names, args)]
        lines.append("  built variants (target: signature -- why it does not fit):")
        groups: dict[tuple, list] = {}
        ptx = arch is not None and self._ptx_mode(arch)
        for v in self.variants:
            if v in candidates:
                found = v.rules.mismatch(args, lambda v=v: bind_symbols(v.symbols, runtime))
                reason = found or ("fits, but a more specific one was tried first", False)
            elif v.target == "cpu":
                reason = (f"runs on the CPU, the arguments are on {device}", False)
            elif arch is None:
                reason = (f"runs on a GPU ({v.target}), the arguments are on {device}", False)
            elif self._can_run(v, arch, ptx):
                kind = "PTX" if ptx else "cubin"
                reason = (f"the {kind} of a closer arch is used on this {arch} device", False)
            else:
                reason = (f"does not run on this {arch} device", False)
            groups.setdefault((v.target, v.signature), []).append(reason)
        for (target, signature), reasons in groups.items():
            reason = next((r for r, guard in reasons if not guard), reasons[0][0])
            count = f" ({len(reasons)} buckets)" if len(reasons) > 1 else ""
            lines.append(f"    {target}: {signature}{count} -- {reason}")
        return NoMatchingVariantError("\n".join(lines))

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        try:
            bound = self.__signature__.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.__name__}(): {exc}") from None
        bound.apply_defaults()
        described = [describe(n, bound.arguments[n]) for n in self.param_names]
        runtime = [described[i] for i in self.runtime_positions]
        device = _device_of(self.__name__, runtime)
        torch = arch = None
        if device != "cpu":
            import torch
            arch = self._arch(int(device.split(":")[1]), torch)
        for v in self._candidates(device, arch):
            if v.rules.mismatch(described, lambda v=v: bind_symbols(v.symbols, runtime)) \
                    is None:
                return self._run(v, runtime, device, torch)
        raise self._no_match(described, runtime, device, arch, self._candidates(device, arch))

    def _run(self, v: Variant, runtime: list, device: str, torch):
        env = bind_symbols(v.symbols, runtime)
        like = next((a for a in runtime if isinstance(a, TensorArg)), None)
        outputs = [allocate(like, shape, dtype, zero) for shape, (dtype, _, zero)
                   in zip(v.slots.output_shapes(env), v.slots.allocs)]
        for i in v.written:
            if not runtime[i].writeable:
                raise ValueError(f"{self.__name__}(): argument "
                                 f"{self.param_names[self.runtime_positions[i]]!r} is "
                                 "read-only but the kernel writes into it")
        items = runtime + [describe(f"output {k}", o) for k, o in enumerate(outputs)]
        vals, programs = v.slots.pack(items, env)
        if torch is None:
            v.runner.launch(vals, programs)
        else:
            v.runner.launch(vals, programs, int(device.split(":")[1]), torch)
        results = [runtime[i].value if kind == "param" else outputs[i]
                   for kind, i in v.returns]
        if v.returns_tuple:
            return tuple(results)
        return results[0] if len(results) == 1 else (tuple(results) if results else None)
