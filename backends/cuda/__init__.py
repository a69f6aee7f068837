"""The CUDA C backend: tile-level IR -> readable CUDA C -> cubin (NVRTC) -> launched with the
driver API on torch's current stream.

  plan.py      fusion plan (the CPU backend's): materialized vs inline tile values
  emit.py      one __global__ function per launch: SIMT mapping, buffers, barriers;
               elements.py: per-element rules of inline values; memory.py reduce.py
               dot.py control.py: ops that emit statements
  tensor_cores.py  which K loops `acc += dot(a, b)` run on tensor cores (sm_80+, 16-bit
               floats; switch: tensor_cores.ENABLED); mma.py lowers them (cp.async /
               register staging, ldmatrix, mma.sync), fragments.py: the accumulator's
               register layout and the epilogue loops over it
  arith.py     per-element C expressions of unary/binary/compare/cast ops (dtype tables)
  prelude.py   device helpers: half floats by bit manipulation, wrapping/safe int ops
  types.py values.py layout.py   C types and literals, value representations, the
               parameter layout and per-call packing
  nvrtc.py     CUDA C -> cubin for an exact sm_XY (no GPU needed)
  runtime.py   cuModuleLoadData / cuLaunchKernel on torch's stream
  kernel.py    compile_cuda() and CompiledCUDAKernel
"""
from .errors import CUDAError, NoGPUError, NVRTCError
from .kernel import CompiledCUDAKernel, compile_cuda, emit_source

__all__ = ["CUDAError", "CompiledCUDAKernel", "NVRTCError", "NoGPUError", "compile_cuda",
           "emit_source"]
