"""The tensor-core helpers of generated CUDA C (backends/cuda/prelude.py's
TENSOR_CORE_PRELUDE: cp.async, ldmatrix, mma.sync) emulated on the host, for
cuda_emulator.py: each warp's 32 threads exchange their operands through memory between two
barriers of that warp -- the data movement the instructions define, element by element --,
so the fragment layouts, the staging and the epilogue of the tensor-core lowering run on
the CPU. cp.async lands at the wait_group that retires it (NaN until then), so the
pipeline's group accounting is checked too. Products are summed in float in k order (the
hardware's order and rounding of the sums differ; tests compare with tolerances)."""
from __future__ import annotations

BEGIN = "// ---- fusec tensor-core helpers"
END = "// ---- end of tensor-core helpers"

HOST_HELPERS = r"""
// ---- tensor-core helpers, emulated: a warp's lanes exchange operands through memory ----
#include <barrier>
#include <deque>
#include <stdint.h>
#include <string.h>
#include <vector>
static void fc_warp_sync() {        // a barrier of the 32 threads of this thread's warp
  static std::deque<std::barrier<>> bars = [] {
    std::deque<std::barrier<>> d;
    for (int w = 0; w < 32; ++w) d.emplace_back(32);
    return d;
  }();
  bars[threadIdx.x / 32].arrive_and_wait();
}
static unsigned long long fc_tc_slots[1024][6];      // what each thread publishes
// cp.async as the hardware may run it: the destination holds NaN (bf16 and f16) from the
// issue until the wait_group that retires the copy's group, when the 16 bytes land; a
// pipeline reading a stage before its wait, or waiting for too few groups, reads NaN
struct fc_copy { unsigned short* dst; const unsigned short* src; bool valid; };
static thread_local std::vector<std::vector<fc_copy>> fc_groups;    // committed, in order
static thread_local std::vector<fc_copy> fc_open;                   // not yet committed
static void fc_cp_async_16(unsigned short* dst, const unsigned short* src, bool valid) {
  for (int i = 0; i < 8; ++i) dst[i] = 0x7FC0u | 0x7E00u;
  fc_open.push_back({dst, src, valid});
}
static void fc_cp_async_commit() { fc_groups.push_back(fc_open); fc_open.clear(); }
template <int N> static void fc_cp_async_wait() {
  while (fc_groups.size() > (size_t)N) {
    for (const fc_copy& c : fc_groups.front()) {
      if (c.valid) memcpy(c.dst, c.src, 16); else memset(c.dst, 0, 16);
    }
    fc_groups.erase(fc_groups.begin());
  }
}
static void fc_ldmatrix(unsigned* r, const unsigned short* p, int count, bool trans) {
  fc_tc_slots[threadIdx.x][0] = (unsigned long long)(uintptr_t)p;
  fc_warp_sync();
  const int l = threadIdx.x % 32, base = threadIdx.x - l;
  for (int i = 0; i < count; ++i) {
    unsigned halves[2];
    for (int c = 0; c < 2; ++c) {      // row l/4, column 2(l%4)+c (of the transpose)
      int row = l / 4, col = 2 * (l % 4) + c;
      if (trans) { int t = row; row = col; col = t; }
      halves[c] = ((const unsigned short*)(uintptr_t)fc_tc_slots[base + 8 * i + row][0])[col];
    }
    r[i] = halves[0] | halves[1] << 16;
  }
  fc_warp_sync();
}
static void fc_ldmatrix_x4(unsigned* r, const unsigned short* p) { fc_ldmatrix(r, p, 4, false); }
static void fc_ldmatrix_x4_trans(unsigned* r, const unsigned short* p) {
  fc_ldmatrix(r, p, 4, true);
}
static void fc_ldmatrix_x2_trans(unsigned* r, const unsigned short* p) {
  fc_ldmatrix(r, p, 2, true);
}
static float fc_tc_half(unsigned long long reg, int k, bool bf16) {
  unsigned short h = (unsigned short)(reg >> (16 * (k % 2)));
  return bf16 ? fc_bf2f(h) : fc_h2f(h);
}
static void fc_mma(float* c, const unsigned* a, const unsigned* b, bool bf16) {
  unsigned long long* mine = fc_tc_slots[threadIdx.x];
  for (int i = 0; i < 4; ++i) mine[i] = a[i];
  mine[4] = b[0];
  mine[5] = b[1];
  fc_warp_sync();
  const int l = threadIdx.x % 32, base = threadIdx.x - l;
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int row = l / 4 + (i >= 2 ? 8 : 0), col = 2 * (l % 4) + i % 2;
    float sum = c[i];
    for (int k = 0; k < 16; ++k) {
      // a[row][k]: lane (row % 8) * 4 + (k % 8) / 2, register (row >= 8) + 2 (k >= 8)
      const unsigned long long* ah = fc_tc_slots[base + (row % 8) * 4 + (k % 8) / 2];
      // b[k][col]: lane col * 4 + (k % 8) / 2, register (k >= 8)
      const unsigned long long* bh = fc_tc_slots[base + col * 4 + (k % 8) / 2];
      sum += fc_tc_half(ah[(row >= 8) + 2 * (k >= 8)], k, bf16) *
             fc_tc_half(bh[4 + (k >= 8)], k, bf16);
    }
    out[i] = sum;
  }
  fc_warp_sync();
  for (int i = 0; i < 4; ++i) c[i] = out[i];
}
static void fc_mma_bf16(float* c, const unsigned* a, const unsigned* b) { fc_mma(c, a, b, true); }
static void fc_mma_f16(float* c, const unsigned* a, const unsigned* b) { fc_mma(c, a, b, false); }
"""


def emulate_tensor_cores(source: str) -> str:
    """source with its tensor-core helpers (if any) replaced by the host emulation."""
    start = source.find(BEGIN)
    if start < 0:
        return source
    stop = source.index("\n", source.index(END)) + 1
    return source[:start] + HOST_HELPERS + source[stop:]
