"""Pure-Python reference models of the RTL units, built on the golden model's functions.

The Amaranth-simulator tests and the cocotb testbenches both score against these.
Each takes NumPy arrays of input fields and returns a dict of expected output fields.
"""

from __future__ import annotations

import numpy as np

from ..sw.fixed import Overflow, QFormat, Rounding, cast
from ..sw.rng import hash32
from ..sw.sigmoid import sigmoid as sw_sigmoid


def random_words(key: int, index) -> np.ndarray:
    """``hash32(key ^ index)`` per element (section 9)."""
    idx = np.asarray(index, dtype=np.int64)
    return np.array([int(hash32((key ^ int(i)) & 0xFFFFFFFF)) for i in idx.ravel()],
                    dtype=np.uint32).reshape(idx.shape)


def cast_with_flags(values, from_frac: int, fmt: QFormat, rounding: Rounding, overflow: Overflow,
                    key: int = 0, index=None) -> dict:
    """The cast and its per-element ``overflow``/``underflow`` flags (section 1)."""
    v = np.asarray(values, dtype=np.int64)
    bits = None
    if rounding is Rounding.STOCHASTIC:
        bits = random_words(key, np.arange(v.size) if index is None else index)
    wide = QFormat(61 - fmt.frac_bits, fmt.frac_bits) if fmt.frac_bits < 61 else fmt
    rounded = cast(v, from_frac, wide, rounding, Overflow.WRAP, random_bits=bits)
    out = cast(v, from_frac, fmt, rounding, overflow, random_bits=bits)
    over = ((rounded < fmt.min_raw) | (rounded > fmt.max_raw)).astype(np.int64)
    under = ((out == 0) & (v != 0) & (from_frac > fmt.frac_bits)).astype(np.int64)
    return {"value": out, "overflow": over, "underflow": under}


def mac_sums(a, b, lengths) -> list[int]:
    """Exact sums of consecutive runs of products (``lengths`` products each)."""
    a = [int(x) for x in a]
    b = [int(x) for x in b]
    out, k = [], 0
    for n in lengths:
        out.append(sum(x * y for x, y in zip(a[k:k + n], b[k:k + n])))
        k += n
    return out


def sigmoid_model(z, z_fmt, a_fmt, spec, rounding=Rounding.NEAREST_EVEN) -> np.ndarray:
    return sw_sigmoid(np.asarray(z, dtype=np.int64), z_fmt, a_fmt, spec, rounding)


def derivative_model(a, a_fmt: QFormat, d_fmt: QFormat, rounding, overflow, key=0, index=None):
    a = np.asarray(a, dtype=np.int64)
    exact = a * ((1 << a_fmt.frac_bits) - a)
    return cast_with_flags(exact, 2 * a_fmt.frac_bits, d_fmt, rounding, overflow, key, index)


def weight_update_model(w, g, eta: int, w_fmt, g_fmt, lr_fmt, rounding, overflow, key=0,
                        index=None) -> dict:
    w = np.asarray(w, dtype=np.int64)
    g = np.asarray(g, dtype=np.int64)
    u_frac = lr_fmt.frac_bits + g_fmt.frac_bits
    frac = max(u_frac, w_fmt.frac_bits)
    u = (g * eta) << (frac - u_frac)
    res = cast_with_flags((w << (frac - w_fmt.frac_bits)) - u, frac, w_fmt, rounding, overflow,
                          key, index)
    res["stalled"] = ((u != 0) & (res["value"] == w)).astype(np.int64)
    del res["underflow"]
    return res
