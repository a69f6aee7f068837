"""backends/vector_facts.py's divisors of size expressions: what a vector access may rely
on (a size a multiple of the width), never more than holds for every value."""
from __future__ import annotations

import sympy

from fusec.backends.vector_facts import VectorFacts
a, b, c = sympy.symbols("a b c")


def _made() -> VectorFacts:
    """Only the div16 facts (sizes a and b) are needed by expr_divisor."""
    f = object.__new__(VectorFacts)
    f.div16 = {"a", "b"}
    return f


def test_sums_and_integer_multiples_of_div16_sizes():
    f = _made()
    assert f.expr_divisor(a + b) == 16
    assert f.expr_divisor(-2 * a) == 32
    assert f.expr_divisor(a * b) == 256
    assert f.expr_divisor(sympy.Integer(48)) == 48
    assert f.expr_divisor(a + 3) == 1
    assert f.expr_divisor(a + c) == 1


def test_fractions_and_unknown_factors_give_nothing():
    f = _made()
    for expr in (a / 2, 3 * a / 2, a / b, sympy.Float(0.5) * a, sympy.floor(a / 2)):
        assert f.expr_divisor(expr) == 1, expr


def test_a_product_with_a_fractional_sum_gives_nothing():
    f = _made()
    assert f.expr_divisor(b * (a / 2 + sympy.Rational(1, 2))) == 1
    assert f.expr_divisor(a ** 2) == 256
