#!/usr/bin/env bash
# One command for the GPU machine: install fusec there, run the GPU tests and the compile
# tests and the GPU benchmarks; logs under $OUT (env.log, install.log, gpu.log, bench.log,
# bench.json, compile_time.log/json, launch/region_overhead/torch_host/step_host logs,
# torch_models.log/json,
# compile.log; memcheck(-mma).log and racecheck(-mma).log with SANITIZE=1, ncu.txt with PROFILE=1); all
# but gpu.log, bench.log/json, compile_time.log and ncu.txt end up in logs.tar.gz (at most
# 8 files come back from a device call).
# Switches: GPU_TESTS="paths", SKIP_TIMED_TESTS=1 (not the autotuner's timing tests),
# SKIP_COMPILE_TESTS=1, SKIP_ANCHOR_BENCH=1 (not benchmarks/gpu.py), SKIP_ND_BENCH=1 (not
# benchmarks/nd_elementwise.py), SKIP_MATMUL_BENCH=1
# (not benchmarks/matmul_configs.py), SKIP_TORCH_BENCH=1,
# SKIP_HOST_BENCH=1, HOST_BENCHES="compile_time,launch" (which host benchmarks),
# COMPILE_PROFILE=1 (cProfile of compile_time.py's warm builds),
# TRANSPOSE_SWEEP=1 (benchmarks/transpose_sweep.py), REGION_KERNELS=1 and REGION_ARGS
# (benchmarks/region_kernels.py), SKIP_MAX_AUTOTUNE=1 (no Inductor
# max-autotune run), TORCH_ONLY="mlp,block" (the
# torch_models.py rows whose names contain one of these), TORCH_MODES, SANITIZE=1,
# PROFILE=1, MATMUL_CONFIGS="128x128x64/4w/3s,..." and MATMUL_SCHEDULES="within,spread"
# (the matmul sweep's configs and K-loop schedules),
# BENCH_TIMEOUT / MATMUL_TIMEOUT / TORCH_BENCH_TIMEOUT / TORCH_MAX_TIMEOUT (seconds).
#
#   device run: command="bash scripts/device.sh", carry=[".whl"]
#
# .whl/ holds the wheels the machine's image lacks (pure Python: lark, platformdirs,
# filecheck); everything else fusec needs (torch, numpy, sympy, llvmlite, cuda-bindings,
# nvidia-cuda-nvrtc, filelock, pytest, pytest-xdist) is in the image. Nothing is fetched.
set -uo pipefail
OUT=${OUT:-/tmp/fusec-device-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

{
  python3 --version
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"
  python3 -c "from cuda.bindings import nvrtc; import cuda.bindings as b;
print('cuda-bindings', b.__version__, 'nvrtc', nvrtc.nvrtcVersion()[1:])"
  python3 -c "from cuda.bindings import nvjitlink; print('nvjitlink', nvjitlink.version())" \
    || echo "no nvJitLink: carry the nvidia-nvjitlink wheel in .whl/ for the ptx backend"
  which g++ || echo "no g++: the CPU-emulation tests of tests/compile will skip"
} 2>&1 | tee "$OUT/env.log"

{
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
  else
    echo "no .whl/*.whl carried: lark and platformdirs must already be installed"
  fi
} 2>&1 | tee "$OUT/install.log"
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tee -a "$OUT/install.log"
python3 -c "import fusec.backends.cuda" 2>&1 | tee -a "$OUT/install.log" || exit 1

# several workers when pytest-xdist is there (each one its own CUDA context)
PAR=()
python3 -c "import xdist" 2>/dev/null && PAR=(-n 8)

status=0
# GPU_TESTS: the test paths (default: all GPU tests)
read -r -a GPU_PATHS <<< "${GPU_TESTS:-tests/gpu tests/unit/test_hardware.py}"
# the tests that time kernels (the autotuner's picks against the whole space) run alone
# afterwards: eight workers sharing the GPU skew their timings several-fold
TIMED=tests/gpu/test_autotune_gpu.py
python3 -m pytest -q -m gpu "${GPU_PATHS[@]}" --ignore="$TIMED" "${PAR[@]}" 2>&1 \
  | tee "$OUT/gpu.log"
status=$((status | PIPESTATUS[0]))
if [ "${SKIP_TIMED_TESTS:-0}" != 1 ] && \
   [[ " ${GPU_PATHS[*]} " == *" tests/gpu "* || " ${GPU_PATHS[*]} " == *" $TIMED "* ]]; then
  python3 -m pytest -q -m gpu "$TIMED" 2>&1 | tee -a "$OUT/gpu.log"
  status=$((status | PIPESTATUS[0]))
fi
# the main job of `make run`: every example on the best backend here (CUDA C)
python3 examples/run_all.py 2>&1 | tee "$OUT/run_all.log"
status=$((status | PIPESTATUS[0]))
# benchmarks: fusec vs torch eager / torch.compile / Triton / copy (bf16, see benchmarks/)
if [ "${SKIP_ANCHOR_BENCH:-0}" != 1 ]; then
  timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/gpu.py --json "$OUT/bench.json" 2>&1 \
    | tee "$OUT/bench.log"
fi
# elementwise kernels over 3-D / 4-D tensors: the default policy's tiles vs fixed ones
if [ "${SKIP_ND_BENCH:-0}" != 1 ]; then
  timeout 200 python3 benchmarks/nd_elementwise.py 2>&1 | tee -a "$OUT/bench.log"
fi
# transposed copies: the tuner's space and square tiles, staging off and on, model vs measured
if [ "${TRANSPOSE_SWEEP:-0}" = 1 ]; then
  timeout 200 python3 benchmarks/transpose_sweep.py --json "$OUT/transpose_sweep.json" 2>&1 \
    | tee -a "$OUT/bench.log"
fi
# the fused regions of torch.compile steps, each kernel alone (REGION_ARGS: e.g. "--measure
# --fast-math --configs '1,2,512/4;1,1,1024/4'")
if [ "${REGION_KERNELS:-0}" = 1 ]; then
  eval "timeout 240 python3 benchmarks/region_kernels.py ${REGION_ARGS:-}" 2>&1 \
    | tee -a "$OUT/bench.log"
fi
# tensor-core matmul configs, each under the K-loop schedules (mma.py's switches), into
# bench.log (few files come back from $OUT)
if [ "${SKIP_MATMUL_BENCH:-0}" != 1 ]; then
timeout "${MATMUL_TIMEOUT:-200}" python3 benchmarks/matmul_configs.py \
  --schedules "${MATMUL_SCHEDULES:-within,spread}" \
  --configs "${MATMUL_CONFIGS:-128x128x64/4w/3s,256x128x64/8w/3s,128x256x64/8w/4s}" 2>&1 \
  | tee -a "$OUT/bench.log"
fi
# host time: the pieces of a cached call, a fused region's call, tiny models per step
# HOST_BENCHES: which of them (default all: compile_time,launch,region,torch_host,step_host)
HOST_BENCHES=",${HOST_BENCHES:-compile_time,launch,region,torch_host,step_host},"
if [ "${SKIP_HOST_BENCH:-0}" != 1 ]; then
[[ $HOST_BENCHES == *,compile_time,* ]] && timeout 240 python3 benchmarks/compile_time.py \
  ${COMPILE_PROFILE:+--profile} --json "$OUT/compile_time.json" 2>&1 \
  | tee "$OUT/compile_time.log"
[[ $HOST_BENCHES == *,launch,* ]] && timeout 60 python3 benchmarks/launch_breakdown.py \
  --json "$OUT/launch.json" 2>&1 | tee "$OUT/launch.log"
[[ $HOST_BENCHES == *,region,* ]] && timeout 60 python3 benchmarks/region_overhead.py 2>&1 \
  | tee "$OUT/region_overhead.log"
[[ $HOST_BENCHES == *,torch_host,* ]] && timeout 120 python3 \
  benchmarks/torch_host_overhead.py --json "$OUT/torch_host.json" 2>&1 \
  | tee "$OUT/torch_host.log"
[[ $HOST_BENCHES == *,step_host,* ]] && timeout 150 python3 benchmarks/step_host_breakdown.py --backends fusec,inductor \
  2>&1 | tee "$OUT/step_host.log"
fi
# torch.compile(backend="fusec") vs eager vs Inductor on models and the anchors as torch code
if [ "${SKIP_TORCH_BENCH:-0}" != 1 ]; then
  timeout "${TORCH_BENCH_TIMEOUT:-300}" python3 benchmarks/torch_models.py \
    --modes "${TORCH_MODES:-eager,inductor,fusec,fusec-fast}" --only "${TORCH_ONLY:-}" \
    --json "$OUT/torch_models.json" 2>&1 \
    | tee "$OUT/torch_models.log"
  # Inductor's max-autotune-no-cudagraphs compiles for minutes: a run of its own
  if [ "${SKIP_MAX_AUTOTUNE:-0}" != 1 ]; then
    timeout "${TORCH_MAX_TIMEOUT:-540}" python3 benchmarks/torch_models.py \
      --modes inductor-max,fusec-max --json "$OUT/torch_models_max.json" 2>&1 \
      | tee "$OUT/torch_models_max.log"
  fi
fi
if [ "${SKIP_COMPILE_TESTS:-0}" != 1 ]; then
  python3 -m pytest -q tests/compile "${PAR[@]}" 2>&1 | tee "$OUT/compile.log"
  status=$((status | PIPESTATUS[0]))
fi
if [ "${PROFILE:-0}" = 1 ]; then       # ncu: each anchor kernel once per GPU backend
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  timeout 200 "$NCU" --clock-control none -k regex:fusec_ --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats \
    --section InstructionStats --section ComputeWorkloadAnalysis --section SchedulerStats \
    python3 benchmarks/profile_anchors.py ptx cuda > "$OUT/ncu.txt" 2>&1
fi
if [ "${SANITIZE:-0}" = 1 ]; then      # the examples on both GPU backends, once each tool
  SAN=/usr/local/cuda/bin/compute-sanitizer
  for tool in memcheck racecheck; do
    "$SAN" --tool "$tool" --report-api-errors no --error-exitcode 9 \
      python3 -m pytest -q -m gpu tests/gpu/test_cuda_gpu.py -k "test_examples" \
      > "$OUT/$tool.log" 2>&1
    echo "$tool exit: $?" | tee -a "$OUT/$tool.log"
    tail -5 "$OUT/$tool.log"
    # the tensor-core dots of both backends (shared-memory staging, mma fragments)
    "$SAN" --tool "$tool" --report-api-errors no --error-exitcode 9 \
      python3 -m pytest -q -m gpu tests/gpu/test_dot_mma_gpu.py \
      -k "(ptx_dots and bfloat16-mkn0-bias_relu) or (test_matmul_bias_relu and bfloat16-mkn0-blocks1)" \
      > "$OUT/$tool-mma.log" 2>&1
    echo "$tool (mma) exit: $?" | tee -a "$OUT/$tool-mma.log"
    tail -5 "$OUT/$tool-mma.log"
  done
fi
echo "exit status: $status" | tee -a "$OUT/gpu.log"
# at most 8 files come back from $OUT: the main ones stay, the rest go into one archive
(
  cd "$OUT" || exit
  ls | grep -v -x -e gpu.log -e bench.log -e bench.json -e ncu.txt -e compile_time.log \
    -e logs.tar.gz > /tmp/fusec-device-pack.lst
  if [ -s /tmp/fusec-device-pack.lst ]; then
    tar czf logs.tar.gz -T /tmp/fusec-device-pack.lst --remove-files
  fi
)
exit $status
