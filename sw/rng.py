"""The hardware-reproducible random generator behind stochastic rounding.

NumPy's generators cannot be rebuilt bit for bit in RTL or OpenCL, so every
random bit in the datapath comes from a counter-based hash made only of 32-bit
additions, XORs and shifts (Bob Jenkins' 32-bit integer hash). A random word is
a pure function of ``(seed, step, site, index)``; nothing is sequential, so a
pipelined unit, a GPU work-item and this NumPy model all get the same word for
the same element. ``docs/datapath.md`` ("Random bits") is the specification.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["hash32", "site_key", "step_keys", "random_words", "site_id"]

_M32 = 0xFFFFFFFF


@njit(cache=True, nogil=True)
def hash32(x):
    """Jenkins' 32-bit integer hash of one word (the low 32 bits of ``x``).

    ``a = (a + 0x7ed55d16) + (a << 12)``; ``a = (a ^ 0xc761c23c) ^ (a >> 19)``;
    ``a = (a + 0x165667b1) + (a << 5)``; ``a = (a + 0xd3a2646c) ^ (a << 9)``;
    ``a = (a + 0xfd7046c5) + (a << 3)``; ``a = (a ^ 0xb55a4f09) ^ (a >> 16)``;
    every step modulo ``2**32`` (shifts are logical). A bijection on 32-bit words.
    """
    m = np.int64(0xFFFFFFFF)
    a = np.int64(x) & m
    a = ((a + 0x7ED55D16) + (a << 12)) & m
    a = ((a ^ 0xC761C23C) ^ (a >> 19)) & m
    a = ((a + 0x165667B1) + (a << 5)) & m
    a = ((a + 0xD3A2646C) ^ (a << 9)) & m
    a = ((a + 0xFD7046C5) + (a << 3)) & m
    a = ((a ^ 0xB55A4F09) ^ (a >> 16)) & m
    return a


#: Codes of the cast sites that can round stochastically (docs/datapath.md).
SITE_CODES = {
    "preactivation": 1,
    "activation": 2,
    "derivative": 3,
    "error": 4,
    "delta": 5,
    "gradient": 6,
    "bias_gradient": 7,
    "weight_update": 8,
    "bias_update": 9,
}


def site_id(layer: int, stage: str) -> int:
    """``(layer << 8) | code``: the 32-bit identity of one cast site."""
    return ((layer & 0xFFFFFF) << 8) | SITE_CODES[stage]


@njit(cache=True, nogil=True)
def site_key(seed, step, site):
    """``H(H(H(seed) ^ step) ^ site)``: one key per cast site and training step
    (each argument taken modulo ``2**32``)."""
    m = np.int64(0xFFFFFFFF)
    return hash32(hash32(hash32(seed & m) ^ (step & m)) ^ (site & m))


@njit(cache=True, nogil=True)
def step_keys(seed, step, sites):
    """:func:`site_key` for every site in ``sites`` (int64 array) at one step, in one call."""
    m = np.int64(0xFFFFFFFF)
    base = hash32(hash32(seed & m) ^ (step & m))
    out = np.empty(sites.size, dtype=np.int64)
    for j in range(sites.size):
        out[j] = hash32(base ^ (sites[j] & m))
    return out


@njit(cache=True, nogil=True)
def _words(key, count):
    out = np.empty(count, dtype=np.uint32)
    for i in range(count):
        out[i] = hash32(key ^ i)
    return out


def random_words(seed: int, step: int, site: int, count: int) -> np.ndarray:
    """The ``count`` random words of one cast: ``H(key ^ i)`` for ``i = 0 .. count-1``.

    ``i`` is the element's row-major index in the tensor being cast.
    """
    if count > (1 << 32):
        raise ValueError(f"a cast site can draw at most 2**32 words, not {count!r}")
    return _words(site_key(seed, step, site), count)
