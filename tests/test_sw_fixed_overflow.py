"""Overflow: wrap and saturate, and the counts of values that overflowed."""

import numpy as np
import pytest

from fxbp.sw.fixed import CastEvents, Overflow, QFormat, Rounding, cast


@pytest.mark.parametrize("fmt", [QFormat(4, 4), QFormat(1, 15), QFormat(3, 0, signed=False),
                                 QFormat(0, 8, signed=False)])
def test_saturate_clamps_and_counts(fmt, rng):
    raw = rng.integers(-(1 << 20), 1 << 20, size=5000)
    ev = CastEvents()
    out = cast(raw, fmt.frac_bits, fmt, overflow=Overflow.SATURATE, events=ev)
    np.testing.assert_array_equal(out, np.clip(raw, fmt.min_raw, fmt.max_raw))
    assert ev.overflow == np.count_nonzero((raw < fmt.min_raw) | (raw > fmt.max_raw))


@pytest.mark.parametrize("fmt", [QFormat(4, 4), QFormat(1, 15), QFormat(3, 0, signed=False)])
def test_wrap_keeps_low_bits(fmt, rng):
    raw = rng.integers(-(1 << 20), 1 << 20, size=5000)
    ev = CastEvents()
    out = cast(raw, fmt.frac_bits, fmt, overflow=Overflow.WRAP, events=ev)
    n = fmt.total_bits
    want = raw & ((1 << n) - 1)
    if fmt.signed:
        want = np.where(want >= (1 << (n - 1)), want - (1 << n), want)
    np.testing.assert_array_equal(out, want)
    assert ev.overflow == np.count_nonzero((raw < fmt.min_raw) | (raw > fmt.max_raw))


def test_edges():
    fmt = QFormat(1, 7)
    raw = np.array([-128, -127, -1, 0, 1, 127, 128, -129])
    assert cast(raw, 7, fmt).tolist() == [-128, -127, -1, 0, 1, 127, 127, -128]
    assert cast(raw, 7, fmt, overflow=Overflow.WRAP).tolist() == [-128, -127, -1, 0, 1, 127, -128, 127]


def test_rounding_then_overflow():
    # 127.75 rounds up to 128, which then saturates to 127 in Q8.0.
    assert cast([511], 2, QFormat(8, 0), Rounding.NEAREST_EVEN).tolist() == [127]
    assert cast([511], 2, QFormat(8, 0), Rounding.NEAREST_EVEN, Overflow.WRAP).tolist() == [-128]


def test_unsigned_saturates_negatives_to_zero():
    ev = CastEvents()
    assert cast([-5, 3], 0, QFormat(4, 0, signed=False), events=ev).tolist() == [0, 3]
    assert ev.overflow == 1
