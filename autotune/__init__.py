"""The autotuner and the on-disk caches.

  config.py    Config: block sizes, warps, stages
  hardware.py  what the machine reports (CPU sysfs and LLVM, GPU through the driver)
  machine.py   the figures the model uses, with labelled fallbacks
  facts.py     what a kernel does per program as functions of its block sizes
  fitting.py   reading those functions from two traces of the kernel
  gpu_plan.py  the cuda backend's plan of a kernel's tile values (registers or buffers)
  space.py     candidate configs, pruned to the hardware and the grid
  cost.py      the analytic cost model (pure functions) and rank correlation
  calibration.py  the GPU model's fitted constants per device (gpu_calibration.json)
  calibrate.py the fit of those constants to a measured config sweep, and its judgement
  bench.py     measurement (CUDA events / wall clock), the progress bar
  tuner.py     the choice: model pick or measured best, cached in memory and on disk
  cache.py     the on-disk cache (compiled code, tuning results)
"""
