"""LLVM backends (llvmlite): one target-neutral lowering of tile-level IR to LLVM IR, and
its targets.

  plan.py      fusion plan: which tile values get buffers, which are computed inline
  lower.py     the lowering driver: values, per-element rules, op rules (tables by op name)
  memory.py reduce.py dot.py control.py   rules of the ops that emit their own loops
  arith.py     per-element semantics of unary/binary/compare/cast ops, half rounding
  math.py      float math (vectorizable float32 implementations; float64 via libm)
  loops.py values.py types.py context.py launches.py   shared pieces
  entry.py     arguments and program ids around one program; buffers.py: tile buffers
  cpu.py       the CPU target: functions, buffers, libm; jit.py (MCJIT, O3, host CPU) and
               runtime.py (calling convention, argument packing, threads)
  nvptx.py     the NVPTX target: one kernel entry per launch, one program per GPU thread,
               PTX text (linked and launched by backends/ptx)

Both targets share everything above cpu.py; what differs is in their Target hooks
(context.Target) and function wrappers.
"""
from .cpu import CompiledCPUKernel, compile_cpu

__all__ = ["CompiledCPUKernel", "compile_cpu"]
