"""`fusec build`: the command-line face of fusec.aot.build_package.

    fusec build kernels.py --kernel softmax --signature "float32[?,N<=4096]" \\
                           --kernel add --signature "float32[?], float32[?]" \\
                           --tune-size "x[0]=65536" \\
                           --target sm_80,sm_90,cpu --out dist/mykernels --wheel

--signature, --constexpr, --config and --tune-size belong to the --kernel before them;
--signature may be repeated (one variant family each), entries are comma-separated.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

from . import DEFAULT_VERSION, TUNE_MODES, KernelBuild, build_package, write_wheel


class _KernelOption(argparse.Action):
    """Attach the option's value to the last --kernel given."""

    def __call__(self, parser, namespace, value, option_string=None):
        kernels = getattr(namespace, "kernels", None) or []
        if self.dest == "kernel":
            kernels.append({"name": value, "signatures": [], "constexprs": {},
                            "config": None, "tune_sizes": {}})
            namespace.kernels = kernels
            return
        if not kernels:
            parser.error(f"{option_string} must follow the --kernel it belongs to")
        current = kernels[-1]
        if self.dest == "signature":
            current["signatures"].append(value)
        elif self.dest == "constexpr":
            name, sep, text = value.partition("=")
            if not sep or not name.isidentifier():
                parser.error(f"{option_string} {value!r}: expected NAME=VALUE")
            try:
                current["constexprs"][name] = json.loads(text)
            except ValueError:
                current["constexprs"][name] = text          # a bare string
        elif self.dest == "tune_size":
            name, sep, text = value.partition("=")
            if not sep or not text.strip().isdigit():
                parser.error(f"{option_string} {value!r}: expected NAME=SIZE, e.g. N=4096")
            current["tune_sizes"][name.strip()] = int(text)
        else:
            current["config"] = value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("module", help="a Python file (or an importable module name) defining "
                                  "the kernels")
    p.add_argument("--kernel", action=_KernelOption, required=True,
                   help="a @fusec.kernel of the module (repeat for several)")
    p.add_argument("--signature", action=_KernelOption,
                   help='entries for the runtime parameters, e.g. "float32[?,N<=4096], '
                        'int32" (repeat for several signatures)')
    p.add_argument("--constexpr", action=_KernelOption, metavar="NAME=VALUE",
                   help="a constexpr parameter's value (JSON, else a string)")
    p.add_argument("--config", action=_KernelOption, metavar="JSON",
                   help='the config of every variant, e.g. \'{"blocks": [64], "warps": 8}\' '
                        "(default: chosen by --tune)")
    p.add_argument("--tune", choices=TUNE_MODES, default="cache",
                   help="how each variant's config is chosen: cache (default: a tuning "
                        "result cached on disk, else what a JIT call would use), measure "
                        "(now, on this machine's GPU of the target's arch or this CPU), "
                        "model (the cost model's pick), none (the fixed default policy); "
                        "--config overrides")
    p.add_argument("--tune-size", action=_KernelOption, metavar="NAME=SIZE",
                   help="the size a dynamic dim (N, or x[1] for an unnamed one) or int "
                        "argument is tuned for (default: its bound, at most 4096)")
    p.add_argument("--target", required=True,
                   help="comma-separated targets: cpu, sm_80, sm_90, sm_90a, ...")
    p.add_argument("--out", required=True,
                   help="the package folder to write; its name is the import name")
    p.add_argument("--wheel", nargs="?", const=True, default=False, metavar="DIR",
                   help="also write the package as a wheel, into DIR (default: the folder "
                        "holding --out)")
    p.add_argument("--package-version", default=DEFAULT_VERSION, metavar="VERSION",
                   help=f"the package's version, in its manifest and wheel (default "
                        f"{DEFAULT_VERSION})")
    p.add_argument("--quiet", action="store_true", help="do not list the variants built")


def load_module(spec: str):
    """A module from a file path (its folder goes on sys.path, as when run as a script) or
    from an importable name."""
    path = Path(spec)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise ImportError(f"cannot read module file {spec}")
        path = path.resolve()
        sys.path.insert(0, str(path.parent))
        name = f"_fusec_build_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def _summary(out: Path) -> str:
    manifest = json.loads((out / "manifest.json").read_text())
    lines = [f"wrote package {manifest['name']!r} to {out}"]
    for name, spec in manifest["kernels"].items():
        counts: dict[str, int] = {}
        for v in spec["variants"]:
            counts[v["target"]] = counts.get(v["target"], 0) + 1
        sources: dict[str, int] = {}
        for v in spec["variants"]:
            sources[v["config"]["source"]] = sources.get(v["config"]["source"], 0) + 1
        total = sum(v["artifact"]["bytes"] for v in spec["variants"])
        lines.append(f"  {name}: " + ", ".join(f"{n} {t}" for t, n in counts.items())
                     + f" variant(s), {total / 1024:.0f} KiB; configs: "
                     + ", ".join(f"{n} {s}" for s, n in sources.items()))
    return "\n".join(lines)


def build_command(args: argparse.Namespace) -> str:
    module = load_module(args.module)
    from ..jit import Kernel
    builds = []
    for k in args.kernels:
        kernel = getattr(module, k["name"], None)
        if not isinstance(kernel, Kernel):
            raise ValueError(f"{args.module} has no @fusec.kernel named {k['name']!r}")
        if not k["signatures"]:
            raise ValueError(f"--kernel {k['name']}: give at least one --signature")
        builds.append(KernelBuild(kernel, k["signatures"], k["constexprs"], k["config"],
                                  tune_sizes=k["tune_sizes"]))
    out = build_package(builds, args.target, args.out, args.tune, False,
                        args.package_version,
                        log=None if args.quiet else lambda line: print(line, flush=True))
    summary = _summary(out)
    if args.wheel:
        wheel = write_wheel(out, out.parent if args.wheel is True else args.wheel,
                            args.package_version)
        summary += f"\nwrote wheel {wheel}"
    return summary
