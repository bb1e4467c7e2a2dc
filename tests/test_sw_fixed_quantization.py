"""Rounding: every deterministic mode against apytypes; stochastic rounding's contract."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fxbp.sw.fixed import CastEvents, Overflow, QFormat, Rounding, cast, quantize
from fxbp.sw.rng import random_words, site_key

apy = pytest.importorskip("apytypes")

APY_ROUNDING = {
    Rounding.TRUNCATE: apy.QuantizationMode.TRN,
    Rounding.TOWARD_ZERO: apy.QuantizationMode.TRN_ZERO,
    Rounding.HALF_UP: apy.QuantizationMode.RND,
    Rounding.NEAREST_EVEN: apy.QuantizationMode.RND_CONV,
}
APY_OVERFLOW = {Overflow.WRAP: apy.OverflowMode.WRAP, Overflow.SATURATE: apy.OverflowMode.SAT}
SRC_BITS = 60


def apy_cast(raw, from_frac, fmt, rounding, overflow):
    """Reference cast: apytypes, from a 60-bit source format."""
    x = apy.APyFixedArray(np.asarray(raw, dtype=np.int64), int_bits=SRC_BITS - from_frac,
                          frac_bits=from_frac)
    y = x.cast(int_bits=fmt.int_bits, frac_bits=fmt.frac_bits,
               quantization=APY_ROUNDING[rounding], overflow=APY_OVERFLOW[overflow])
    u = np.asarray(y.to_bits(numpy=True)).astype(np.int64)
    n = fmt.total_bits
    return np.where(u >= (1 << (n - 1)), u - (1 << n), u)


formats = st.builds(QFormat, st.integers(1, 24), st.integers(0, 24))
sources = st.integers(0, 40)
values = st.lists(st.integers(-(1 << (SRC_BITS - 2)), (1 << (SRC_BITS - 2)) - 1), min_size=1,
                  max_size=64)


@pytest.mark.parametrize("rounding", list(APY_ROUNDING))
@pytest.mark.parametrize("overflow", list(Overflow))
@settings(max_examples=300, deadline=None)
@given(fmt=formats, from_frac=sources, raw=values)
def test_matches_apytypes(rounding, overflow, fmt, from_frac, raw):
    got = cast(raw, from_frac, fmt, rounding, overflow)
    want = apy_cast(raw, from_frac, fmt, rounding, overflow)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rounding", list(APY_ROUNDING))
def test_ties_and_neighbours(rounding):
    # Values around every half-LSB tie, from 3 fraction bits to 1.
    raw = np.arange(-24, 25)
    got = cast(raw, 3, QFormat(8, 1), rounding, Overflow.SATURATE)
    want = apy_cast(raw, 3, QFormat(8, 1), rounding, Overflow.SATURATE)
    np.testing.assert_array_equal(got, want)


def test_exhaustive_8_bit_against_apytypes():
    raw = np.arange(-(1 << 11), 1 << 11)       # every 12-bit value, 6 fraction bits
    for rounding in APY_ROUNDING:
        for overflow in Overflow:
            for fmt in (QFormat(1, 7), QFormat(4, 4), QFormat(3, 2), QFormat(8, 0)):
                np.testing.assert_array_equal(cast(raw, 6, fmt, rounding, overflow),
                                              apy_cast(raw, 6, fmt, rounding, overflow))


def test_toward_zero_and_truncate_differ_only_on_negative_inexact():
    raw = np.array([-5, -4, -3, 3, 4, 5])
    assert cast(raw, 2, QFormat(8, 0), Rounding.TRUNCATE).tolist() == [-2, -1, -1, 0, 1, 1]
    assert cast(raw, 2, QFormat(8, 0), Rounding.TOWARD_ZERO).tolist() == [-1, -1, 0, 0, 1, 1]


def test_left_shift_is_exact():
    raw = np.array([-3, 0, 7])
    assert cast(raw, 2, QFormat(8, 6)).tolist() == [-48, 0, 112]


# -- stochastic rounding ---------------------------------------------------------------------

def test_stochastic_uses_the_given_bits():
    raw = np.array([5, 6, 7, -5])                     # 3 fraction bits -> 0
    zeros = np.zeros(4, dtype=np.uint32)
    ones = np.full(4, 0xFFFFFFFF, dtype=np.uint32)
    fmt = QFormat(8, 0)
    assert cast(raw, 3, fmt, Rounding.STOCHASTIC, random_bits=zeros).tolist() == [0, 0, 0, -1]
    assert cast(raw, 3, fmt, Rounding.STOCHASTIC, random_bits=ones).tolist() == [1, 1, 1, 0]
    # The top s bits of the word are used: 0x60000000 >> 29 = 3; 5 + 3 = 8 rounds up.
    half = np.full(4, 0x60000000, dtype=np.uint32)
    assert cast(raw, 3, fmt, Rounding.STOCHASTIC, random_bits=half).tolist() == [1, 1, 1, -1]


def test_stochastic_wide_shift_aligns_word_to_top():
    # s = 40 > 32: the word fills the top 32 of the 40 dropped bits.
    raw = np.array([(1 << 39) - 1])                    # just under half of 2**40
    r = np.array([0x80000000], dtype=np.uint32)        # exactly half
    assert cast(raw, 40, QFormat(8, 0), Rounding.STOCHASTIC, random_bits=r).tolist() == [0]
    assert cast(raw + 256, 40, QFormat(8, 0), Rounding.STOCHASTIC, random_bits=r).tolist() == [1]


def test_stochastic_key_equals_words():
    raw = np.arange(-500, 500) * 37
    key = site_key(7, 3, 0x105)
    a = cast(raw, 9, QFormat(8, 2), Rounding.STOCHASTIC, random_key=key)
    b = cast(raw, 9, QFormat(8, 2), Rounding.STOCHASTIC, random_bits=random_words(7, 3, 0x105, raw.size))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("frac", [0.125, 0.3, 0.5, 0.9])
def test_stochastic_is_unbiased(frac):
    n = 200_000
    s = 12
    raw = np.full(n, int(round(frac * (1 << s))) + (5 << s))
    out = cast(raw, s, QFormat(8, 0), Rounding.STOCHASTIC, random_bits=random_words(1, 0, 1, n))
    assert set(np.unique(out)) <= {5, 6}
    p = (raw[0] / (1 << s)) - 5
    # Binomial standard error; 6 sigma cannot be reached by chance (p < 1e-8).
    assert abs(np.mean(out - 5) - p) < 6 * np.sqrt(p * (1 - p) / n)


def test_stochastic_needs_bits():
    with pytest.raises(ValueError, match="random bits"):
        cast([5], 3, QFormat(8, 0), Rounding.STOCHASTIC)
    with pytest.raises(ValueError, match="one random word per value"):
        cast([5, 6], 3, QFormat(8, 0), Rounding.STOCHASTIC, random_bits=[1])


# -- events ----------------------------------------------------------------------------------

def test_underflow_counts_nonzero_values_rounded_to_zero():
    ev = CastEvents()
    raw = np.array([0, 1, 2, 3, 4, -1, -2, 100])
    out = cast(raw, 3, QFormat(8, 0), Rounding.NEAREST_EVEN, events=ev)
    assert out.tolist() == [0, 0, 0, 0, 0, 0, 0, 12]
    assert (ev.underflow, ev.overflow, ev.total) == (6, 0, 8)


def test_quantize_rounds_reals(fx16):
    assert quantize([0.1, -0.1, 1e-9], QFormat(4, 12)).tolist() == [410, -410, 0]
    with pytest.raises(ValueError, match="NaN"):
        quantize([np.nan], QFormat(4, 12))


# -- quantize: one exact rounding from float64, every width --------------------------------------

def exact_quantize(value: float, fmt: QFormat, rounding: Rounding, overflow: Overflow) -> int:
    """Reference: exact rational arithmetic (fractions), independent of fixed.py."""
    from fractions import Fraction
    import math
    x = Fraction(value) * (1 << fmt.frac_bits)
    fl = math.floor(x)
    rem = x - fl
    up = {Rounding.TRUNCATE: False,
          Rounding.TOWARD_ZERO: x < 0 and rem > 0,
          Rounding.HALF_UP: rem >= Fraction(1, 2),
          Rounding.NEAREST_EVEN: rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1),
          }[rounding]
    q = fl + int(up)
    if overflow is None:
        return q
    if fmt.min_raw <= q <= fmt.max_raw:
        return q
    if overflow is Overflow.SATURATE:
        return fmt.min_raw if q < fmt.min_raw else fmt.max_raw
    q &= (1 << fmt.total_bits) - 1
    return q - (1 << fmt.total_bits) if fmt.signed and q >> (fmt.total_bits - 1) else q


wide_formats = st.one_of(
    st.builds(QFormat, st.integers(1, 31), st.integers(0, 31)),
    st.builds(QFormat, st.integers(1, 8), st.integers(24, 54)),
    st.builds(lambda i, f, s: QFormat(i, f, signed=s), st.integers(1, 4), st.integers(50, 58),
              st.booleans()),
)
reals = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.floats(allow_nan=False, allow_infinity=False),
                  st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1.5e308, -1.5e308, 0.5, -0.5]))


@pytest.mark.parametrize("rounding", list(APY_ROUNDING))
@pytest.mark.parametrize("overflow", list(Overflow))
@settings(max_examples=150, deadline=None)
@given(fmt=wide_formats, vals=st.lists(reals, min_size=1, max_size=20))
def test_quantize_is_one_exact_rounding(rounding, overflow, fmt, vals):
    ev = CastEvents()
    got = quantize(vals, fmt, rounding, overflow, events=ev).tolist()
    want = [exact_quantize(v, fmt, rounding, overflow) for v in vals]
    assert got == want
    rounded = [exact_quantize(v, fmt, rounding, None) for v in vals]
    assert ev.total == len(vals)
    assert ev.overflow == sum(1 for q in rounded if not fmt.min_raw <= q <= fmt.max_raw)
    assert ev.underflow == sum(1 for v, q in zip(vals, want) if v != 0 and q == 0)


def test_quantize_ties_and_near_ties_round_once():
    lsb = 2.0 ** -12
    fmt = QFormat(4, 12)
    # exact ties go to even; a value 2^-40 LSB above a tie rounds up (no double rounding
    # through guard bits), one 2^-40 LSB below rounds down
    assert quantize([0.5 * lsb, 1.5 * lsb, 2.5 * lsb, -2.5 * lsb], fmt).tolist() == [0, 2, 2, -2]
    above, below = (2.5 + 2.0 ** -40) * lsb, (1.5 - 2.0 ** -40) * lsb
    assert quantize([above, below], fmt).tolist() == [3, 1]


def test_quantize_wide_formats_are_exact():
    """Formats of 32 bits and more: Q4.58 weights and a Q2.32 sigmoid table are exact."""
    from fxbp.sw.sigmoid import SigmoidSpec, sigmoid_lut_table
    w = [0.5, -1.3, 7.99, 1e-9, -7.45e-9]
    f = QFormat(4, 58)
    raw = quantize(w, f)
    assert raw.tolist() == [exact_quantize(v, f, Rounding.NEAREST_EVEN, Overflow.SATURATE) for v in w]
    assert np.abs(f.to_real(raw) - w).max() <= 2.0 ** -59
    table = QFormat(2, 32).to_real(sigmoid_lut_table(SigmoidSpec(), QFormat(2, 32)))
    assert table.max() > 0.9996 and table.min() < 0.0004


def test_quantize_beyond_int64_overflows_exactly():
    ev = CastEvents()
    fmt = QFormat(2, 6)
    assert quantize([1e300, -1e300, 3.0], fmt, events=ev).tolist() == [127, -128, 127]
    assert (ev.overflow, ev.underflow) == (3, 0)
    ev = CastEvents()
    assert quantize([1e300, 3.0, 2.0 ** 70 + 2.0 ** 20], fmt, overflow=Overflow.WRAP,
                    events=ev).tolist() == [0, -64, 0]
    assert ev.overflow == 3
    with pytest.raises(ValueError, match="deterministic"):
        quantize([0.5], fmt, Rounding.STOCHASTIC)
