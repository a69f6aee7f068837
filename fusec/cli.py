"""The `fusec` command line. Subcommands: `opt` (run passes on textual IR); others (cache,
build) plug in through `_SUBCOMMANDS`."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from fusec.ir import IRParseError, VerificationError, parse, print_module
from fusec.passes import PassManager, UnknownPassError, parse_pipeline


class CommandError(Exception):
    """A user-facing failure: printed as `fusec <command>: error: <message>`, exit 1."""


def _read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


def _write_output(path: str | None, text: str) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None


def run_opt(args: argparse.Namespace) -> None:
    try:
        pipeline = parse_pipeline(args.passes)
    except UnknownPassError as exc:
        raise CommandError(str(exc)) from None
    source = "<stdin>" if args.input == "-" else args.input
    try:
        module = parse(_read_input(args.input))
    except IRParseError as exc:
        raise CommandError(f"{source}: {exc}") from None

    with_locs = not args.no_locs

    def print_stage(stage: str, m) -> None:
        sys.stderr.write(f"// ----- IR after {stage} -----\n{print_module(m, with_locs)}")

    manager = PassManager(pipeline, verify=True,
                          on_stage=print_stage if args.print_after_all else None)
    try:
        manager.run(module)
    except VerificationError as exc:
        raise CommandError(f"{source}: {exc}") from None
    _write_output(args.output, print_module(module, with_locs))


def _add_opt(subparsers) -> None:
    p = subparsers.add_parser("opt", help="run passes on textual IR and print the result",
                              description="Parse textual IR, run passes (verifying the IR "
                                          "after each), print the IR.")
    p.add_argument("input", help="IR file, or - for stdin")
    p.add_argument("-p", "--passes", default="",
                   help="comma-separated pass names, e.g. canonicalize,cse "
                        "('default' is the default pipeline)")
    p.add_argument("-o", "--output", help="write the IR here instead of stdout")
    p.add_argument("--no-locs", action="store_true", help="print without loc(...)")
    p.add_argument("--print-after-all", action="store_true",
                   help="print the IR to stderr after every pass")
    p.set_defaults(handler=run_opt)


def run_cache(args: argparse.Namespace) -> None:
    from .autotune.cache import DiskCache
    cache = DiskCache(args.dir) if args.dir else DiskCache()
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.root}")
        return
    info = cache.info()
    print(f"cache folder: {info['root']}\nentries: {info['entries']}\n"
          f"size: {info['bytes'] / 2**20:.2f} MiB (cap {info['max_bytes'] / 2**30:.1f} GiB)")
    for kind, part in info["kinds"].items():
        print(f"  {kind:<16} {part['entries']:>6} entries {part['bytes'] / 2**20:>9.2f} MiB")


def _add_cache(subparsers) -> None:
    p = subparsers.add_parser("cache", help="show or clear the on-disk kernel cache",
                              description="The cache folder is FUSEC_CACHE_DIR, else the "
                                          "user cache folder.")
    p.add_argument("action", choices=["info", "clear"])
    p.add_argument("--dir", help="a cache folder other than the default")
    p.set_defaults(handler=run_cache)


def run_build(args: argparse.Namespace) -> None:
    from .aot.cli import build_command
    from .errors import CompilationError
    try:
        print(build_command(args))
    except (CompilationError, ValueError, TypeError, OSError, ImportError,
            RuntimeError) as exc:
        raise CommandError(str(exc)) from None


def _add_build(subparsers) -> None:
    from .aot.cli import add_arguments
    p = subparsers.add_parser(
        "build", help="compile kernels ahead of time into an importable package",
        description="Compile kernels of a Python module for several targets into a folder "
                    "that is an importable Python package (and a C header + source for the "
                    "GPU variants) running them without fusec.")
    add_arguments(p)
    p.set_defaults(handler=run_build)


# Each entry adds one subcommand (a parser with `handler` set) to the `fusec` parser.
_SUBCOMMANDS: list[Callable] = [_add_opt, _add_cache, _add_build]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusec", description="fusec kernel compiler tools")
    subparsers = parser.add_subparsers(dest="command", metavar="command", required=True)
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except CommandError as exc:
        print(f"fusec {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (`| head`, a failed filecheck) went away: not worth a traceback.
        sys.stdout = open(os.devnull, "w")
        return 1
    return 0
