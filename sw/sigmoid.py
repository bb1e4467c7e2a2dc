"""Fixed-point sigmoid (lookup table and PLAN) and its derivative ``a * (1 - a)``.

Both follow ``docs/datapath.md`` section "Sigmoid" to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .fixed import CastEvents, Overflow, QFormat, Rounding, cast, quantize

__all__ = ["SigmoidSpec", "sigmoid_lut_table", "sigmoid_lut", "sigmoid_plan", "plan_exact_values",
           "sigmoid", "sigmoid_derivative"]


def _is_power_of_two(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and n & (n - 1) == 0


#: The largest LUT (a ROM of 2**20 words is beyond the FPGAs fxbp targets).
MAX_LUT_ENTRIES = 1 << 20
#: The LUT input range is ``2**k`` with ``k`` in this interval (raw ranges stay within int64).
RANGE_EXPONENTS = (-62, 62)


def _power_of_two_exponent(x) -> int | None:
    """``k`` when ``x`` is exactly ``2**k`` (an int or a float, ``k`` may be negative), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    if isinstance(x, int):
        return x.bit_length() - 1 if _is_power_of_two(x) else None
    if not math.isfinite(x) or x <= 0:
        return None
    mantissa, exponent = math.frexp(x)
    return exponent - 1 if mantissa == 0.5 else None


@dataclass(frozen=True)
class SigmoidSpec:
    """Which sigmoid approximation the datapath uses.

    Parameters
    ----------
    kind : str
        ``"lut"`` (table over a clamped range) or ``"plan"`` (Amin et al., 1997).
    entries : int
        LUT entries, a power of two from 2 to 2**20.
    input_range : int or float
        LUT input range ``R``: inputs are clamped to ``[-R, R)``; a power of two
        ``2**k`` for an integer ``k`` from -62 to 62 (``0.5`` and ``0.25`` included).
        Integral values are stored as ``int``.
    """

    kind: str = "lut"
    entries: int = 256
    input_range: int | float = 8

    def __post_init__(self):
        if self.kind not in ("lut", "plan"):
            raise ValueError(f"sigmoid kind must be 'lut' or 'plan', not {self.kind!r}")
        if not _is_power_of_two(self.entries) or not 2 <= self.entries <= MAX_LUT_ENTRIES:
            raise ValueError(f"sigmoid LUT entries must be a power of two from 2 to 2**20, not "
                             f"{self.entries!r}")
        k = _power_of_two_exponent(self.input_range)
        lo, hi = RANGE_EXPONENTS
        if k is None or not lo <= k <= hi:
            raise ValueError(f"sigmoid LUT input range must be a power of two 2**k with k from "
                             f"{lo} to {hi} (e.g. 8, 1, 0.5), not {self.input_range!r}")
        object.__setattr__(self, "input_range", 1 << k if k >= 0 else 2.0 ** k)

    @property
    def range_exponent(self) -> int:
        """``k`` with ``input_range == 2**k``."""
        return _power_of_two_exponent(self.input_range)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "entries": self.entries, "input_range": self.input_range}


def sigmoid_lut_table(spec: SigmoidSpec, act: QFormat) -> np.ndarray:
    """The LUT contents: entry ``k`` is sigma at the centre of bin ``k``.

    Bin ``k`` covers ``[-R + k*w, -R + (k+1)*w)`` with ``w = 2R/N``; the entry is
    ``sigma(-R + (k + 1/2) * w)`` rounded to nearest-even into ``act``, saturated.
    """
    n, r = spec.entries, spec.input_range
    centres = -r + (np.arange(n, dtype=np.float64) + 0.5) * (2.0 * r / n)
    return quantize(1.0 / (1.0 + np.exp(-centres)), act, Rounding.NEAREST_EVEN, Overflow.SATURATE)


def lut_params(z_fmt: QFormat, spec: SigmoidSpec) -> tuple[int, int]:
    """``(r_raw, addr_shift)``: the LUT clamps to ``[-r_raw, r_raw)`` and the
    address is ``(z + r_raw) >> addr_shift`` (section 3.1)."""
    n, r = spec.entries, spec.input_range
    raw_exponent = spec.range_exponent + z_fmt.frac_bits   # r_raw = R * 2**f = 2**raw_exponent
    if raw_exponent < 0:
        raise ValueError(f"sigmoid LUT input range {r} is below the LSB of the pre-activation "
                         f"format {z_fmt} ({z_fmt.resolution:g}): use a wider range or more "
                         f"fraction bits")
    if raw_exponent > 62:
        raise ValueError(f"sigmoid LUT input range {r} is 2**{raw_exponent} LSBs of the "
                         f"pre-activation format {z_fmt}, beyond 64-bit raw values: use a "
                         f"smaller range")
    r_raw = 1 << raw_exponent
    span_bits = raw_exponent + 1                      # log2(2R * 2**f)
    index_bits = n.bit_length() - 1                   # log2(N)
    if span_bits < index_bits:
        raise ValueError(f"sigmoid LUT of {n} entries over [-{r}, {r}) is finer than the "
                         f"pre-activation format {z_fmt}: use fewer entries or more fraction bits")
    return r_raw, span_bits - index_bits


@njit(cache=True, nogil=True, inline="always")
def lut_index(z, r_raw, addr_shift):
    """LUT address of one raw pre-activation: clamp, offset by R, keep the top bits."""
    if z < -r_raw:
        z = -r_raw
    elif z > r_raw - 1:
        z = r_raw - 1
    return (z + r_raw) >> addr_shift


@njit(cache=True, nogil=True, inline="always")
def plan_exact(z, f):
    """PLAN sigmoid of one raw value with ``f`` fraction bits, exact, ``f + 5`` fraction bits."""
    t = -z if z < 0 else z
    if t >= (np.int64(5) << f):
        y = np.int64(32) << f
    elif (t << 3) >= (np.int64(19) << f):                 # t >= 2.375 = 19/8
        y = t + (np.int64(27) << f)
    elif t >= (np.int64(1) << f):
        y = (t << 2) + (np.int64(20) << f)
    else:
        y = (t << 3) + (np.int64(16) << f)
    return (np.int64(32) << f) - y if z < 0 else y


@njit(cache=True, nogil=True)
def _lut_kernel(z, table, r_raw, addr_shift, out):
    for i in range(z.size):
        out[i] = table[lut_index(z[i], r_raw, addr_shift)]


@njit(cache=True, nogil=True)
def _plan_exact_kernel(z, f, out):
    for i in range(z.size):
        out[i] = plan_exact(z[i], f)


def lut_address(z, z_fmt: QFormat, spec: SigmoidSpec) -> np.ndarray:
    """Table index for raw pre-activations."""
    r_raw, shift = lut_params(z_fmt, spec)
    zc = np.clip(np.asarray(z, dtype=np.int64), -r_raw, r_raw - 1)
    return (zc + r_raw) >> shift


def sigmoid_lut(z, z_fmt: QFormat, act: QFormat, spec: SigmoidSpec, table=None) -> np.ndarray:
    """LUT sigmoid of raw pre-activations (section 3.1)."""
    if table is None:
        table = sigmoid_lut_table(spec, act)
    r_raw, shift = lut_params(z_fmt, spec)
    z = np.asarray(z, dtype=np.int64, order="C")
    out = np.empty_like(z)
    _lut_kernel(z.reshape(-1), np.asarray(table, dtype=np.int64), r_raw, shift, out.reshape(-1))
    return out


# PLAN segments (Amin, Curtis, Hayes-Gill 1997), for x >= 0:
#   x >= 5          -> 1
#   2.375 <= x < 5  -> x/32 + 0.84375
#   1 <= x < 2.375  -> x/8  + 0.625
#   0 <= x < 1      -> x/4  + 0.5
# and sigma(-x) = 1 - sigma(x).


def plan_exact_values(z, f: int) -> np.ndarray:
    """PLAN's exact segment values of raw pre-activations with ``f`` fraction bits, with
    ``f + 5`` fraction bits, before the one cast (section 3.2)."""
    z = np.asarray(z, dtype=np.int64, order="C")
    y = np.empty_like(z)
    _plan_exact_kernel(z.reshape(-1), f, y.reshape(-1))
    return y


def sigmoid_plan(z, z_fmt: QFormat, act: QFormat, rounding: Rounding = Rounding.NEAREST_EVEN,
                 events: CastEvents | None = None,
                 overflow: Overflow = Overflow.SATURATE) -> np.ndarray:
    """PLAN sigmoid, exact until one final cast into ``act`` (section 3.2).

    With ``f = z_fmt.frac_bits`` and ``t = |z|`` (raw), the segment value is formed
    exactly with ``F = f + 5`` fraction bits using shifts and adds only:
    ``t + 27 << f`` (slope 1/32), ``(t << 2) + 20 << f`` (1/8), ``(t << 3) + 16 << f``
    (1/4), ``32 << f`` (1); negative inputs give ``(32 << f) - y``. That value is
    cast into ``act`` with the activation stage's ``rounding`` and ``overflow`` (PLAN
    reaches exactly 1.0, which a ``Q1.x`` activation cannot hold: saturate or wrap).
    """
    y = plan_exact_values(z, z_fmt.frac_bits)
    return cast(y, z_fmt.frac_bits + 5, act, rounding, overflow, events=events)


def sigmoid(z, z_fmt: QFormat, act: QFormat, spec: SigmoidSpec,
            rounding: Rounding = Rounding.NEAREST_EVEN, events: CastEvents | None = None,
            table=None, overflow: Overflow = Overflow.SATURATE) -> np.ndarray:
    """The datapath sigmoid selected by ``spec``; ``rounding`` and ``overflow`` are the
    activation stage's (PLAN's one cast; the LUT has none)."""
    if spec.kind == "lut":
        out = sigmoid_lut(z, z_fmt, act, spec, table)
        if events is not None:
            events.total += out.size
        return out
    return sigmoid_plan(z, z_fmt, act, rounding, events, overflow)


def sigmoid_derivative_exact(a, act: QFormat) -> tuple[np.ndarray, int]:
    """``a * ((1 << fa) - a)``: exact, with ``2 * fa`` fraction bits."""
    a = np.asarray(a, dtype=np.int64)
    return a * ((1 << act.frac_bits) - a), 2 * act.frac_bits


def sigmoid_derivative(a, act: QFormat, out: QFormat, rounding: Rounding = Rounding.NEAREST_EVEN,
                       overflow: Overflow = Overflow.SATURATE, *, random_bits=None,
                       events: CastEvents | None = None) -> np.ndarray:
    """``sigma'(z) = a (1 - a)`` from the stored activation, cast into ``out``."""
    d, frac = sigmoid_derivative_exact(a, act)
    return cast(d, frac, out, rounding, overflow, random_bits=random_bits, events=events)
