"""Sigmoid (LUT, PLAN) and its derivative, against real arithmetic and the spec."""

from fractions import Fraction

import numpy as np
import pytest

from fxbp.sw.fixed import QFormat, Rounding
from fxbp.sw.sigmoid import (SigmoidSpec, lut_address, sigmoid, sigmoid_derivative,
                             sigmoid_lut, sigmoid_lut_table, sigmoid_plan)

Z = QFormat(6, 10)
A = QFormat(2, 14)


def real_sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("entries, rng_", [(256, 8), (64, 8), (1024, 4)])
def test_lut_error_bound(entries, rng_):
    spec = SigmoidSpec("lut", entries, rng_)
    z = np.arange(Z.min_raw, Z.max_raw + 1)
    y = A.to_real(sigmoid_lut(z, Z, A, spec))
    x = Z.to_real(z)
    # Bound (docs/datapath.md 3.1): half a bin times the largest slope (1/4), plus half an
    # LSB for the entry's rounding; outside [-R, R) the clamp adds sigma(-R).
    bin_width = 2 * rng_ / entries
    bound = 0.25 * bin_width / 2 + A.resolution / 2 + real_sigmoid(-rng_)
    assert np.max(np.abs(y - real_sigmoid(x))) <= bound


def test_lut_addressing():
    spec = SigmoidSpec("lut", 256, 8)
    # bins are 1/16 wide: raw step 2**10 / 16 = 64
    z = np.array([-8 << 10, (-8 << 10) + 63, (-8 << 10) + 64, -1, 0, (8 << 10) - 1, 31 << 10,
                  -32 << 10])
    assert lut_address(z, Z, spec).tolist() == [0, 0, 1, 127, 128, 255, 255, 0]
    table = sigmoid_lut_table(spec, A)
    assert np.array_equal(sigmoid_lut(z, Z, A, spec), table[lut_address(z, Z, spec)])


def plan_fraction(x: Fraction) -> Fraction:
    t = abs(x)
    if t >= 5:
        y = Fraction(1)
    elif t >= Fraction(19, 8):
        y = t / 32 + Fraction(27, 32)
    elif t >= 1:
        y = t / 8 + Fraction(5, 8)
    else:
        y = t / 4 + Fraction(1, 2)
    return 1 - y if x < 0 else y


@pytest.mark.parametrize("zf", [QFormat(6, 10), QFormat(4, 4), QFormat(3, 1)])
def test_plan_is_exact_before_its_one_cast(zf):
    z = np.arange(zf.min_raw, zf.max_raw + 1)
    out = sigmoid_plan(z, zf, QFormat(2, 20), Rounding.NEAREST_EVEN)
    # With f + 5 <= 20 fraction bits the exact value fits, so no rounding happens at all.
    want = [plan_fraction(Fraction(int(v), 1 << zf.frac_bits)) * (1 << 20) for v in z]
    assert all(w.denominator == 1 for w in want)
    assert out.tolist() == [int(w) for w in want]


def test_plan_error_bound():
    z = np.arange(Z.min_raw, Z.max_raw + 1)
    y = A.to_real(sigmoid_plan(z, Z, A))
    # PLAN's own maximum error is 0.0189414 (at |x| = 1: 0.75 against sigma(1) = 0.7310586;
    # Amin et al. report 0.0189), plus half an LSB for the one cast.
    assert np.max(np.abs(y - real_sigmoid(Z.to_real(z)))) <= 0.018942 + A.resolution / 2


def test_dispatch():
    z = np.arange(-3000, 3000, 7)
    assert np.array_equal(sigmoid(z, Z, A, SigmoidSpec("plan")), sigmoid_plan(z, Z, A))
    assert np.array_equal(sigmoid(z, Z, A, SigmoidSpec("lut")), sigmoid_lut(z, Z, A, SigmoidSpec("lut")))


def test_derivative_is_a_times_one_minus_a():
    a = np.arange(0, (1 << 14) + 1)                     # every activation in [0, 1]
    d = sigmoid_derivative(a, A, QFormat(1, 15), Rounding.TRUNCATE)
    exact = a * ((1 << 14) - a)                         # 28 fraction bits
    assert np.array_equal(d, exact >> 13)
    assert d.max() == 1 << 13                           # 0.25 at a = 0.5


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "tanh"}, "sigmoid kind"),
    ({"entries": 100}, "power of two"),
    ({"input_range": 3}, "power of two"),
])
def test_spec_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SigmoidSpec(**kwargs)


def test_lut_finer_than_format_is_refused():
    with pytest.raises(ValueError, match="finer than"):
        sigmoid_lut(np.zeros(1, dtype=np.int64), QFormat(8, 0), A, SigmoidSpec("lut", 256, 8))


def test_plan_honours_the_activation_overflow():
    """PLAN reaches exactly 1.0, which Q1.7 cannot hold: saturate gives 127, wrap -128,
    and both count the overflow (the golden model casts with the activation stage's mode)."""
    from fxbp.sw.fixed import CastEvents, Overflow, QFormat
    from fxbp.sw.sigmoid import sigmoid_plan
    z = np.array([5 << 4, -(5 << 4), 0])
    for overflow, top in ((Overflow.SATURATE, 127), (Overflow.WRAP, -128)):
        ev = CastEvents()
        out = sigmoid_plan(z, QFormat(4, 4), QFormat(1, 7), events=ev, overflow=overflow)
        assert out.tolist() == [top, 0, 64] and ev.overflow == 1
