"""Errors of the CUDA backend. The layers above map them onto the user-facing ones
(fusec.errors): backends never import upward."""
from __future__ import annotations


class NVRTCError(RuntimeError):
    """NVRTC rejected a generated source (an internal compiler error: the message holds the
    NVRTC log and the offending source lines)."""


class CUDAError(RuntimeError):
    """A CUDA driver call failed while loading or launching a kernel."""


class NoGPUError(CUDAError):
    """A compiled CUDA kernel was called where no CUDA GPU is usable."""
