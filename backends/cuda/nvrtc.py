"""CUDA C -> cubin with NVRTC (cuda.bindings.nvrtc) for one exact arch; needs no GPU.

Options: `--gpu-architecture=sm_XY` (real arch: a cubin, never PTX left to the driver's
JIT), `-default-device`, `--std=c++17`, and `--fmad=false`: every float op rounds once, as
the IR (and numpy) define it; the dot loops ask for fused multiply-adds explicitly.
"""
from __future__ import annotations

import re

from .errors import NVRTCError

OPTIONS = ("-default-device", "--std=c++17", "--fmad=false")
_ARCH = re.compile(r"^sm_\d{2,3}a?$")


def _nvrtc():
    from cuda.bindings import nvrtc
    return nvrtc


def _check(result, what: str, log: str = "", source: str = ""):
    nvrtc = _nvrtc()
    err, *rest = result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, msg = nvrtc.nvrtcGetErrorString(err)
        text = msg.decode() if isinstance(msg, bytes) else str(msg)
        raise NVRTCError(f"NVRTC {what} failed: {text}" + (f"\n{log}" if log else "")
                         + (_excerpt(source, log) if source else ""))
    return rest[0] if len(rest) == 1 else rest


def _excerpt(source: str, log: str) -> str:
    """The source lines the log points at (`name(LINE): error ...`), with context."""
    lines = source.splitlines()
    wanted = sorted({int(m) for m in re.findall(r"\((\d+)\): (?:error|catastrophe)", log)})
    out = []
    for n in wanted[:5]:
        for i in range(max(1, n - 2), min(len(lines), n + 2) + 1):
            out.append(f"{'>' if i == n else ' '} {i:5d} | {lines[i - 1]}")
        out.append("")
    return ("\noffending source lines:\n" + "\n".join(out)) if out else ""


def version() -> tuple[int, int]:
    major, minor = _check(_nvrtc().nvrtcVersion(), "nvrtcVersion")
    return major, minor


def check_arch(arch: str, backend: str = "cuda") -> str:
    if not isinstance(arch, str) or not _ARCH.match(arch):
        raise ValueError(f"{backend} backend: target {arch!r} is not a CUDA arch like "
                         "'sm_80' or 'sm_90'")
    return arch


def compile_source(source: str, arch: str, name: str = "kernel.cu", want_ptx: bool = True,
                   extra_options: tuple[str, ...] = ()) -> tuple[bytes, str | None, str]:
    """(cubin, PTX text or None, compile log) for `source` on `arch` (e.g. "sm_90");
    extra_options follow OPTIONS (`-rdc=true`: relocatable device code for a linker)."""
    nvrtc = _nvrtc()
    check_arch(arch)
    prog = _check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []),
                  "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode()] + [o.encode() for o in
                                                          OPTIONS + tuple(extra_options)]
        result = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        log = _log(prog)
        _check(result, f"compile of {name} for {arch}", log, source)
        size = _check(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = _buffer(size)
        _check(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        cubin = bytes(cubin)
        ptx = None
        if want_ptx:
            size = _check(nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
            buf = _buffer(size)
            _check(nvrtc.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
            ptx = bytes(buf).rstrip(b"\0").decode()
        return cubin, ptx, log
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _log(prog) -> str:
    nvrtc = _nvrtc()
    size = _check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
    buf = _buffer(size)
    _check(nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
    return bytes(buf).rstrip(b"\0").decode(errors="replace").strip()


def _buffer(size: int) -> bytearray:
    """A buffer NVRTC writes into: a bytearray of its own. (`b" " * size` is CPython's
    shared one-byte object when size is 1 -- an empty log -- and NVRTC's terminating NUL
    then turned every b" " of the process into b"\0". On the device (Python 3.12) code
    compiled after that had f-strings without their single spaces -- `const intpid0_0`,
    `float__fusec_cosf(` -- and NVRTC compiles failed in some test workers.)"""
    return bytearray(size)
