"""Device helper functions every generated source starts with.

No #include at all: NVRTC compiles the source with no include path (math functions,
atomics and the thread built-ins are NVRTC built-ins). Half floats are converted by the
sm_80+ cvt instructions (round to nearest even, like numpy; a NaN becomes the canonical
NaN, not numpy's quiet NaN bits) and by portable bit manipulation elsewhere (the host
build);
never with the cuda_fp16.h intrinsics;
integer division never divides by zero or INT_MIN by -1; float // and % follow Python.
Everything here is plain C++17, so the same source also builds with a host C++ compiler
(tests/compile emulates CUDA on the CPU with it).
"""

from .. import erf_polys

PRELUDE = r"""
// ---- fusec prelude: bit casts --------------------------------------------------------
__device__ __forceinline__ unsigned int fc_f32_bits(float f) {
  union { float f; unsigned int u; } c; c.f = f; return c.u;
}
__device__ __forceinline__ float fc_f32_from_bits(unsigned int u) {
  union { float f; unsigned int u; } c; c.u = u; return c.f;
}
__device__ __forceinline__ double fc_f64_from_bits(unsigned long long u) {
  union { double d; unsigned long long u; } c; c.u = u; return c.d;
}

// ---- float16 <-> float32 (nearest even; NaN stays a quiet NaN) --------------------------
__device__ __forceinline__ float fc_h2f(unsigned short h) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if ((h & 0x7C00u) != 0x7C00u) {         // finite: the hardware conversion (exact)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
  }
#endif
  unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
  unsigned int exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  if (exp == 0x1Fu) return fc_f32_from_bits(sign | 0x7F800000u | (man << 13));
  if (exp != 0u) return fc_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
  float f = (float)man * 5.9604644775390625e-08f;          // subnormal: man * 2^-24, exact
  return sign ? -f : f;
}
__device__ __forceinline__ unsigned short fc_f2h(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned short h;                      // nearest even; a NaN stays a NaN (0x7FFF)
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
#else
  unsigned int x = fc_f32_bits(f);
  unsigned int sign = (x >> 16) & 0x8000u, ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return (unsigned short)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
  if (ax >= 0x477FF000u) return (unsigned short)(sign | 0x7C00u);   // >= 65520: inf
  if (ax >= 0x38800000u) {                                      // normal: rebias, round
    unsigned int r = ax - 0x38000000u;
    r += 0xFFFu + ((r >> 13) & 1u);
    return (unsigned short)(sign | (r >> 13));
  }
  // subnormal or zero: |f| * 2^24 is exact; rintf rounds it to nearest even
  unsigned int m = (unsigned int)rintf(fc_f32_from_bits(ax) * 16777216.0f);
  return (unsigned short)(sign | m);
#endif
}
__device__ __forceinline__ float fc_round_f16(float x) { return fc_h2f(fc_f2h(x)); }
// double -> float16 rounded once: round to float with round-to-odd first (truncate, set
// the last bit when inexact); float has enough extra bits for the second rounding to be
// exact.
__device__ __forceinline__ float fc_f64_to_f16(double d) {
  float f = (float)d;
  double back = (double)f;
  if (back != d && d == d) {
    unsigned int bits = fc_f32_bits(f);
    if ((back < 0 ? -back : back) > (d < 0 ? -d : d)) bits -= 1u;
    f = fc_f32_from_bits(bits | 1u);
  }
  return fc_round_f16(f);
}

// ---- bfloat16 <-> float32 ---------------------------------------------------------------
__device__ __forceinline__ float fc_bf2f(unsigned short b) {
  return fc_f32_from_bits((unsigned int)b << 16);
}
__device__ __forceinline__ unsigned short fc_f2bf(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned short b;                      // nearest even; a NaN stays a NaN (0x7FFF)
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b) : "f"(f));
  return b;
#else
  unsigned int x = fc_f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (unsigned short)0x7FC0u;
  return (unsigned short)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
#endif
}
__device__ __forceinline__ float fc_round_bf16(float x) { return fc_bf2f(fc_f2bf(x)); }

// ---- integers: wrapping, no division traps, Python floor semantics ----------------------
template <typename T> __device__ __forceinline__ T fc_sfloordiv(T a, T b) {
  if (b == 0) return (T)0;
  if (b == -1) return (T)(0ULL - (unsigned long long)(long long)a);   // wraps at INT_MIN
  T q = (T)(a / b), r = (T)(a % b);
  if (r != 0 && ((r < 0) != (b < 0))) q = (T)(q - 1);
  return q;
}
// C's remainder (the dividend's sign); 0 for a zero divisor and for -1 (no INT_MIN trap)
template <typename T> __device__ __forceinline__ T fc_sfmod(T a, T b) {
  return (b == 0 || b == -1) ? (T)0 : (T)(a % b);
}
template <typename T> __device__ __forceinline__ T fc_smod(T a, T b) {
  if (b == 0 || b == -1) return (T)0;
  T r = (T)(a % b);
  if (r != 0 && ((r < 0) != (b < 0))) r = (T)(r + b);
  return r;
}
template <typename T> __device__ __forceinline__ T fc_ufloordiv(T a, T b) {
  return b == 0 ? (T)0 : (T)(a / b);
}
template <typename T> __device__ __forceinline__ T fc_umod(T a, T b) {
  return b == 0 ? (T)0 : (T)(a % b);
}
// x ** max(y, 0), wrapping (np.power on ints); U: the unsigned type the products wrap in
template <typename T, typename U> __device__ __forceinline__ T fc_ipow(T x, T y) {
  U acc = 1u, base = (U)x;
  unsigned long long e = (long long)y < 0 ? 0ULL : (unsigned long long)y;
  while (e) {
    if (e & 1ULL) acc = (U)(acc * base);
    base = (U)(base * base);
    e >>= 1;
  }
  return (T)acc;
}
// float -> int: truncate toward zero, saturate, NaN -> 0 (compared in double, as numpy)
template <typename T> __device__ __forceinline__ T fc_f2i(double x, double lo, double hi,
                                                          T tlo, T thi) {
  if (x != x) return (T)0;
  double t = trunc(x);
  if (t >= hi) return thi;
  if (t <= lo) return tlo;
  return (T)t;
}

// ---- floats: overloads so that the templates below serve float and double ----------------
__device__ __forceinline__ float fc_fmod(float x, float y) { return fmodf(x, y); }
__device__ __forceinline__ double fc_fmod(double x, double y) { return fmod(x, y); }
__device__ __forceinline__ float fc_floor(float x) { return floorf(x); }
__device__ __forceinline__ double fc_floor(double x) { return floor(x); }
__device__ __forceinline__ float fc_copysign(float x, float y) { return copysignf(x, y); }
__device__ __forceinline__ double fc_copysign(double x, double y) { return copysign(x, y); }
// np.mod: the result takes the divisor's sign; x % 0 is NaN
template <typename F> __device__ __forceinline__ F fc_pymod(F x, F y) {
  F r = fc_fmod(x, y);
  if ((r < 0 || r > 0) && ((y < 0) != (r < 0))) r = r + y;
  if (r == 0) r = fc_copysign((F)0, y);
  return r;
}
// np.floor_divide: from the remainder, so that (x // y) * y + x % y == x
template <typename F> __device__ __forceinline__ F fc_pyfloordiv(F x, F y) {
  if (y == 0) return x / y;
  F r = fc_fmod(x, y);
  F q = (x - r) / y;
  if ((r < 0 || r > 0) && ((y < 0) != (r < 0))) q = q - (F)1;
  F f = fc_floor(q);
  if (q - f > (F)0.5) f = f + (F)1;
  if (q == 0) f = fc_copysign((F)0, x / y);
  return f;
}
// np.maximum / np.minimum: NaN in either operand gives NaN
template <typename F> __device__ __forceinline__ F fc_fmax(F x, F y) {
  return (x != x || x > y) ? x : y;
}
template <typename F> __device__ __forceinline__ F fc_fmin(F x, F y) {
  return (x != x || x < y) ? x : y;
}
"""


def _horner(coefs: list[float], var: str) -> str:
    """sum(coefs[i] * var**i) as nested fmaf calls (float32 literals: each coefficient is a
    float32 value, which its shortest decimal spells exactly)."""
    expr = f"{coefs[-1]!r}f"
    for c in reversed(coefs[:-1]):
        expr = f"fmaf({expr}, {var}, {c!r}f)"
    return expr


# erf and torch's gelu as the PTX backend computes them (backends/erf_polys.py): a hardware
# 2**q (ex2.approx) and a saturated fma on the GPU, their libm spellings on the host
PRELUDE += r"""
// ---- erf: x P(x^2) below 1, +-(1 - 2**Q((|x| - 1) / 3)) up to 4 (backends/erf_polys.py) --
__device__ __forceinline__ float fc_ex2(float q) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(q));
  return r;
#else
  return exp2f(q);
#endif
}
__device__ __forceinline__ float fc_fma_sat(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("fma.rn.sat.f32 %0, %1, %2, %3;" : "=f"(r) : "f"(a), "f"(b), "f"(c));
  return r;
#else
  return fminf(fmaxf(fmaf(a, b, c), 0.0f), 1.0f);   // NaN -> 0
#endif
}
__device__ __forceinline__ float fc_erff(float x) {
  float a = fabsf(x);
  float u = fc_fma_sat(a, U_SCALEf, U_OFFSETf);
  float large = copysignf(1.0f - fc_ex2(LOG2_ERFC), x);
  float s = x * x;
  float small = x * (ERF_SMALL);
  return a >= 1.0f ? large : small;                  // a NaN keeps to the polynomial
}
// 0.5 x (1 + erf(x / sqrt 2)), as torch computes it, with x/2 (1 + erf) in one rounding
__device__ __forceinline__ float fc_gelu(float x) {
  float h = 0.5f * x;
  return fmaf(h, fc_erff(x * 0.70710678118654752f), h);
}
// ---- end of prelude ----------------------------------------------------------------------
""".replace("LOG2_ERFC", _horner(erf_polys.LOG2_ERFC, "u")) \
    .replace("ERF_SMALL", _horner(erf_polys.ERF_SMALL, "s")) \
    .replace("U_SCALEf", f"{erf_polys.U_SCALE!r}f").replace("U_OFFSETf", f"{erf_polys.U_OFFSET!r}f")

# Appended to PRELUDE when a kernel uses tensor cores (mma.py), sm_80+. The helpers take
# shared-memory tiles as generic pointers and convert them for the instructions.
TENSOR_CORE_PRELUDE = r"""
// ---- fusec tensor-core helpers (sm_80+): cp.async, ldmatrix, mma.sync --------------------
__device__ __forceinline__ unsigned fc_shared_address(const void* p) {
  return (unsigned)__cvta_generic_to_shared(p);
}
// 16 bytes global -> shared without a register round trip; zero-filled when !valid
__device__ __forceinline__ void fc_cp_async_16(unsigned short* dst, const unsigned short* src,
                                               bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
               :: "r"(fc_shared_address(dst)), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void fc_cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// wait until at most N of this thread's committed groups are still in flight
template <int N> __device__ __forceinline__ void fc_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}
// 8x8 16-bit matrices from shared memory: lanes 8i..8i+7 give the row addresses of matrix
// i; lane l receives row l/4, columns 2(l%4) and 2(l%4)+1 of each (.trans: of its transpose)
__device__ __forceinline__ void fc_ldmatrix_x4(unsigned* r, const unsigned short* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(fc_shared_address(p)) : "memory");
}
__device__ __forceinline__ void fc_ldmatrix_x4_trans(unsigned* r, const unsigned short* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(fc_shared_address(p)) : "memory");
}
__device__ __forceinline__ void fc_ldmatrix_x2_trans(unsigned* r, const unsigned short* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1]) : "r"(fc_shared_address(p)) : "memory");
}
// c[0..3] += a (16x16, row-major fragment) . b (16x8, column-major fragment), float32 sums
__device__ __forceinline__ void fc_mma_bf16(float* c, const unsigned* a, const unsigned* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void fc_mma_f16(float* c, const unsigned* a, const unsigned* b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// ---- end of tensor-core helpers -----------------------------------------------------------
"""
