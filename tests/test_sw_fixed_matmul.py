"""Exact matrix products: the float64 BLAS path, the int64 path, and the switch."""

import numpy as np
import pytest

from fxbp.sw.fixed import FLOAT64_EXACT_LIMIT, exact_matmul, matmul_bound, matmul_path


def exact_reference(a, b):
    return (a.astype(object) @ b.astype(object))


@pytest.mark.parametrize("bits, path", [(16, "float64"), (28, "int64")])
def test_paths_are_exact(bits, path, rng):
    a = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(17, 33))
    b = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(33, 9))
    assert matmul_path(a, b) == path
    got = exact_matmul(a, b)
    assert got.dtype == np.int64
    assert (got.astype(object) == exact_reference(a, b)).all()


def test_switch_at_two_to_the_53():
    k = 4
    m = 1 << 25
    a = np.full((2, k), m, dtype=np.int64)
    b_below = np.full((k, 2), (FLOAT64_EXACT_LIMIT - 1) // (m * k), dtype=np.int64)
    assert matmul_bound(a, b_below) < FLOAT64_EXACT_LIMIT
    assert matmul_path(a, b_below) == "float64"
    b_above = b_below + 1
    assert matmul_bound(a, b_above) >= FLOAT64_EXACT_LIMIT
    assert matmul_path(a, b_above) == "int64"
    # Just above the limit a float64 product would already be inexact: odd sums prove it.
    a_odd = a + 1
    b_odd = b_above + 1
    assert (exact_matmul(a_odd, b_odd).astype(object) == exact_reference(a_odd, b_odd)).all()


def test_static_bounds_choose_the_path():
    a = np.ones((2, 3), dtype=np.int64)
    assert matmul_path(a, a.T, a_max=1 << 30, b_max=1 << 30) == "int64"
    assert matmul_path(a, a.T) == "float64"


def test_refuses_int64_overflow():
    a = np.full((1, 4), 1 << 31, dtype=np.int64)
    with pytest.raises(OverflowError, match="exceeds int64"):
        exact_matmul(a, a.T)
