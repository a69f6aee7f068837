"""PTX and relocatable device code -> one cubin for an exact arch, with nvJitLink
(cuda.bindings.nvjitlink); needs no GPU.

Options: `-arch=sm_XY` (SASS for that arch, never PTX left to the driver's JIT) and
`-Xptxas=--fmad=false`: ptxas may otherwise contract a PTX mul and add into an fma; the
NVPTX code already asks for every fma it wants (backends/llvm/nvptx.py), so this only
guards the IR's rule that float ops round once.
"""
from __future__ import annotations

from dataclasses import dataclass

OPTIONS = ("-Xptxas=--fmad=false",)


class NVJitLinkError(RuntimeError):
    """nvJitLink rejected the inputs of a link (the message holds its log), or cannot be
    loaded."""


@dataclass(frozen=True)
class LinkInput:
    kind: str                  # "ptx" or "cubin" (relocatable device code)
    data: bytes
    name: str                  # for the linker's messages


def _nvjitlink():
    try:
        from cuda.bindings import nvjitlink
        nvjitlink.version()
    except Exception as exc:     # the module, or the libnvJitLink it loads, is missing
        raise NVJitLinkError(f"nvJitLink is not usable here ({type(exc).__name__}: {exc}); "
                             "the ptx backend needs the nvidia-nvjitlink package") from exc
    return nvjitlink


def version() -> tuple[int, int]:
    return tuple(_nvjitlink().version())


def _log(nvjitlink, handle, kind: str) -> str:
    size_of, get = {"error": (nvjitlink.get_error_log_size, nvjitlink.get_error_log),
                    "info": (nvjitlink.get_info_log_size, nvjitlink.get_info_log)}[kind]
    try:
        size = size_of(handle)
        buf = bytearray(size)
        if size:
            get(handle, buf)
    except Exception:                # a log is a courtesy: never hide the real error
        return ""
    return buf.rstrip(b"\0").decode(errors="replace").strip()


def link(inputs: list[LinkInput], arch: str) -> bytes:
    """The cubin linking `inputs` for `arch` ("sm_90"). NVJitLinkError (with the linker's
    log) when an input is rejected."""
    nvjitlink = _nvjitlink()
    kinds = {"ptx": nvjitlink.InputType.PTX, "cubin": nvjitlink.InputType.CUBIN}
    options = [f"-arch={arch}", *OPTIONS]
    try:
        handle = nvjitlink.create(len(options), options)
    except nvjitlink.nvJitLinkError as exc:
        raise NVJitLinkError(f"nvJitLink: create with options {options} failed: {exc}") \
            from None
    step = "create"
    try:
        for item in inputs:
            if item.kind not in kinds:
                raise ValueError(f"link input {item.name!r}: kind {item.kind!r} is not one of "
                                 f"{sorted(kinds)}")
            step = f"add {item.kind} {item.name!r}"
            nvjitlink.add_data(handle, kinds[item.kind], item.data, len(item.data), item.name)
        step = "complete"
        nvjitlink.complete(handle)
        step = "get cubin"
        cubin = bytearray(nvjitlink.get_linked_cubin_size(handle))
        nvjitlink.get_linked_cubin(handle, cubin)
        return bytes(cubin)
    except nvjitlink.nvJitLinkError as exc:
        log = _log(nvjitlink, handle, "error") or _log(nvjitlink, handle, "info")
        raise NVJitLinkError(f"nvJitLink: {step} for {arch} failed: {exc}"
                             + (f"\n{log}" if log else "")) from None
    finally:
        nvjitlink.destroy(handle)
