"""float32 erf by polynomials, shared by the LLVM math (llvm/math.py) and the CUDA C
prelude (cuda/prelude.py), so that both GPU backends compute erf and torch's gelu alike.

Below |x| = 1, erf(x) = x P(x^2). On 1 <= |x| <= 4 (clamped there: erfc(4) is under half an
ulp of 1), erf(x) = +-(1 - 2**Q(u)), u = (|x| - 1) / 3 in [0, 1], where Q fits log2 erfc:
one hardware 2**q (ex2.approx) and no range reduction. Coefficients: numpy least squares on
Chebyshev nodes (weighted by erfc for Q), rounded to float32; erf within 0.72 ulp with an
exact 2**Q (tests/unit/test_llvm_math.py), within the GPU tests' bounds with ex2.approx.
"""
from __future__ import annotations

# erf(x) = x P(x^2) for |x| < 1
ERF_SMALL = [1.1283791065216064, -0.3761262595653534, 0.1128358244895935,
             -0.026853691786527634, 0.005188099108636379, -0.0008008189033716917,
             7.847259257687256e-05]
# log2 erfc(1 + 3u) = Q(u) for u in [0, 1]
LOG2_ERFC = [-2.668416738510132, -11.421672821044922, -10.947257041931152,
             -1.6166586875915527, 1.1563423871994019, -0.6414243578910828,
             0.19620104134082794]
# u = |x| * U_SCALE + U_OFFSET
U_SCALE, U_OFFSET = 1.0 / 3.0, -1.0 / 3.0
