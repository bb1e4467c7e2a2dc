"""Fixed-point formats, rounding and overflow modes, explicit casts and exact products.

Values are raw two's-complement integers held in NumPy ``int64`` arrays; a
:class:`QFormat` says how to read them. Arithmetic on raw integers never loses
bits: a product of a ``Qa.b`` and a ``Qc.d`` value is an exact integer with
``b + d`` fraction bits. Rounding and overflow happen only in :func:`cast`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .rng import hash32

__all__ = [
    "QFormat",
    "Rounding",
    "Overflow",
    "CastEvents",
    "cast",
    "cast_spec",
    "cast_value",
    "quantize",
    "exact_matmul",
    "matmul_bound",
    "matmul_path",
    "FLOAT64_EXACT_LIMIT",
    "MAX_TOTAL_BITS",
]

#: Raw values are int64; formats are limited so that a left shift for
#: alignment and a sum of a few terms stay inside it.
MAX_TOTAL_BITS = 62

#: Every integer with magnitude below 2**53 is exact in float64.
FLOAT64_EXACT_LIMIT = 1 << 53

_FORMAT_RE = re.compile(r"^\s*(U?)Q(\d+)\.(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class QFormat:
    """A binary fixed-point format.

    Parameters
    ----------
    int_bits : int
        Integer bits. For a signed format the sign bit is counted here, so a
        signed format needs ``int_bits >= 1``.
    frac_bits : int
        Fraction bits (``>= 0``).
    signed : bool
        Two's complement if true, unsigned otherwise.

    A raw integer ``r`` stands for the real value ``r * 2**-frac_bits``.
    ``QFormat(4, 12)`` is ``Q4.12``: 16 bits, range ``[-8, 8 - 2**-12]``.
    """

    int_bits: int
    frac_bits: int
    signed: bool = True
    _lo: int = field(init=False, repr=False, compare=False, hash=False)
    _hi: int = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        for name in ("int_bits", "frac_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if not isinstance(self.signed, bool):
            raise TypeError(f"signed must be a bool, not {self.signed!r}")
        if self.frac_bits < 0:
            raise ValueError(f"frac_bits must be non-negative, not {self.frac_bits!r}")
        if self.int_bits < (1 if self.signed else 0):
            what = "at least 1 (the sign bit)" if self.signed else "non-negative"
            raise ValueError(f"int_bits of a {'signed' if self.signed else 'unsigned'} "
                             f"format must be {what}, not {self.int_bits!r}")
        if self.total_bits < 1 or self.total_bits > MAX_TOTAL_BITS:
            raise ValueError(f"a format must have 1 to {MAX_TOTAL_BITS} bits in all, "
                             f"not {self.total_bits!r}")
        n = self.total_bits
        object.__setattr__(self, "_lo", -(1 << (n - 1)) if self.signed else 0)
        object.__setattr__(self, "_hi", (1 << (n - 1)) - 1 if self.signed else (1 << n) - 1)

    @classmethod
    def parse(cls, text: str) -> QFormat:
        """Read ``Q4.12`` (signed) or ``UQ0.16`` (unsigned)."""
        if isinstance(text, QFormat):
            return text
        if not isinstance(text, str):
            raise TypeError(f"a format must be given as a string like 'Q4.12', not {text!r}")
        m = _FORMAT_RE.match(text)
        if not m:
            raise ValueError(f"invalid fixed-point format {text!r}: write Q<int>.<frac> "
                             f"(signed, sign bit counted in <int>) or UQ<int>.<frac>, e.g. 'Q4.12'")
        return cls(int(m.group(2)), int(m.group(3)), signed=not m.group(1))

    def __str__(self) -> str:
        return f"{'' if self.signed else 'U'}Q{self.int_bits}.{self.frac_bits}"

    def __repr__(self) -> str:
        if self.signed:
            return f"QFormat({self.int_bits}, {self.frac_bits})"
        return f"QFormat({self.int_bits}, {self.frac_bits}, signed=False)"

    @property
    def total_bits(self) -> int:
        return self.int_bits + self.frac_bits

    @property
    def min_raw(self) -> int:
        return self._lo

    @property
    def max_raw(self) -> int:
        return self._hi

    @property
    def resolution(self) -> float:
        """The real value of one LSB."""
        return 2.0 ** -self.frac_bits

    @property
    def min_real(self) -> float:
        return self.min_raw * self.resolution

    @property
    def max_real(self) -> float:
        return self.max_raw * self.resolution

    def to_real(self, raw) -> np.ndarray:
        """Real values (float64) of raw integers in this format."""
        return np.asarray(raw, dtype=np.int64).astype(np.float64) * self.resolution

    def describe(self) -> dict:
        """A JSON-friendly description of the format."""
        return {"format": str(self), "total_bits": self.total_bits, "min": self.min_real,
                "max": self.max_real, "resolution": self.resolution}


class Rounding(enum.Enum):
    """How a cast drops fraction bits."""

    TRUNCATE = "truncate"
    """Toward minus infinity (floor): drop the bits. Cheapest in hardware."""

    TOWARD_ZERO = "toward-zero"
    """Toward zero: floor for positive values, ceiling for negative ones."""

    HALF_UP = "half-up"
    """To nearest; ties toward plus infinity (add half an LSB, then floor)."""

    NEAREST_EVEN = "nearest-even"
    """To nearest; ties to the even neighbour (convergent rounding, unbiased)."""

    STOCHASTIC = "stochastic"
    """Add a uniform random integer in ``[0, 2**s)`` below the kept LSB, then
    floor: rounds up with probability equal to the dropped fraction. The random
    bits come from :mod:`fxbp.sw.rng`, reproducibly."""

    @classmethod
    def parse(cls, text) -> Rounding:
        """The mode named ``text`` (its value, e.g. ``"nearest-even"``)."""
        return _parse_mode(cls, text, "rounding")

    @property
    def deterministic(self) -> bool:
        return self is not Rounding.STOCHASTIC


class Overflow(enum.Enum):
    """What a cast does with a value outside the target range."""

    WRAP = "wrap"
    """Keep the low bits (two's-complement wrap-around), like a bare adder."""

    SATURATE = "saturate"
    """Clamp to the most negative or most positive representable value."""

    @classmethod
    def parse(cls, text) -> Overflow:
        """The mode named ``text`` (``"wrap"`` or ``"saturate"``)."""
        return _parse_mode(cls, text, "overflow")


def _parse_mode(cls, text, what: str):
    if isinstance(text, cls):
        return text
    for mode in cls:
        if text == mode.value:
            return mode
    names = ", ".join(m.value for m in cls)
    raise ValueError(f"unknown {what} mode {text!r}: choose one of {names}")


@dataclass
class CastEvents:
    """Counts of what casts did to values.

    ``overflow``: values outside the target range (saturated, or wrapped).
    ``underflow``: non-zero values that became zero (vanishing updates).
    ``total``: values cast.
    """

    overflow: int = 0
    underflow: int = 0
    total: int = 0

    def as_dict(self) -> dict:
        return {"overflow": self.overflow, "underflow": self.underflow, "total": self.total}


_ROUNDING_CODE = {Rounding.TRUNCATE: 0, Rounding.TOWARD_ZERO: 1, Rounding.HALF_UP: 2,
                  Rounding.NEAREST_EVEN: 3, Rounding.STOCHASTIC: 4}


def cast_spec(from_frac: int, fmt: QFormat, rounding: Rounding, overflow: Overflow) -> np.ndarray:
    """The integer parameters of one cast, as the compiled kernels take them: an
    int64 array ``[shift, mode, saturate, lo, hi, total_bits, signed]``."""
    mode = _ROUNDING_CODE.get(rounding)
    if mode is None:
        raise TypeError(f"rounding must be a Rounding, not {rounding!r}")
    if not isinstance(overflow, Overflow):
        raise TypeError(f"overflow must be an Overflow, not {overflow!r}")
    spec = np.array([from_frac - fmt.frac_bits, mode, int(overflow is Overflow.SATURATE),
                     fmt._lo, fmt._hi, fmt.total_bits, int(fmt.signed)], dtype=np.int64)
    spec.flags.writeable = False
    return spec


@njit(cache=True, nogil=True, inline="always")
def cast_value(v, i, spec, random_bits, key):
    """Cast one raw value ``v`` (element ``i`` of its tensor) per ``spec``.

    Returns ``(q, overflowed, underflowed)``. This is the reference for every
    cast in the datapath (docs/datapath.md, section 1); every kernel calls it.
    """
    shift, mode, saturate, lo, hi = spec[0], spec[1], spec[2], spec[3], spec[4]
    total_bits, signed = spec[5], spec[6]
    if shift > 0:
        if mode == 0:                                   # truncate (floor)
            q = v >> shift
        elif mode == 1:                                 # toward zero
            q = (v + ((v >> 63) & ((np.int64(1) << shift) - 1))) >> shift
        elif mode == 2:                                 # half-up
            q = (v + (np.int64(1) << (shift - 1))) >> shift
        elif mode == 3:                                 # nearest, ties to even
            q = (v + ((np.int64(1) << (shift - 1)) - 1) + ((v >> shift) & 1)) >> shift
        else:                                           # stochastic
            r = hash32(key ^ i) if key >= 0 else np.int64(random_bits[i])
            r = r >> (32 - shift) if shift <= 32 else r << (shift - 32)
            q = (v + r) >> shift
    elif shift < 0:
        q = v << (-shift)
    else:
        q = v
    over = 0
    if q < lo or q > hi:
        over = 1
        if saturate:
            q = lo if q < lo else hi
        else:
            mask = (np.int64(1) << total_bits) - 1
            q = q & mask
            if signed and (q >> (total_bits - 1)) & 1:
                q -= mask + 1
    under = 1 if (q == 0 and v != 0 and shift > 0) else 0
    return q, over, under


@njit(cache=True, nogil=True)
def _cast_kernel(x, out, spec, random_bits, key):
    overflow = 0
    underflow = 0
    for i in range(x.size):
        q, o, u = cast_value(x[i], i, spec, random_bits, key)
        out[i] = q
        overflow += o
        underflow += u
    return overflow, underflow


_NO_BITS = np.zeros(0, dtype=np.uint32)


def random_source(spec: np.ndarray, size: int, random_bits=None, random_key: int | None = None):
    """``(random_bits, key)`` for a kernel call, checked: a key, or one word per value."""
    if spec[1] != 4 or spec[0] <= 0:
        return _NO_BITS, -1
    if random_key is not None:
        return _NO_BITS, int(random_key) & 0xFFFFFFFF
    if random_bits is None:
        raise ValueError("stochastic rounding needs random bits (pass random_bits= or random_key=)")
    bits = np.ascontiguousarray(random_bits, dtype=np.uint32).reshape(-1)
    if bits.size != size:
        raise ValueError(f"stochastic rounding needs one random word per value: "
                         f"{bits.size} words for {size} values")
    return bits, -1


def cast(raw, from_frac: int, fmt: QFormat, rounding: Rounding = Rounding.NEAREST_EVEN,
         overflow: Overflow = Overflow.SATURATE, *, random_bits=None, random_key: int | None = None,
         events: CastEvents | None = None) -> np.ndarray:
    """Cast raw integers with ``from_frac`` fraction bits into ``fmt``.

    Parameters
    ----------
    raw : array_like of int
        Exact values (any width up to int64) with ``from_frac`` fraction bits.
    from_frac : int
        Fraction bits of ``raw``.
    fmt : QFormat
        Target format.
    rounding : Rounding
        Applied when ``from_frac > fmt.frac_bits``.
    overflow : Overflow
        Applied to rounded values outside ``fmt``'s range.
    random_bits : array_like of uint32, optional
        One 32-bit word per element (row-major order), for stochastic rounding.
    random_key : int, optional
        Instead of ``random_bits``: a cast-site key (:func:`fxbp.sw.rng.site_key`);
        element ``i`` then gets the word ``hash32(random_key ^ i)``, exactly what
        :func:`fxbp.sw.rng.random_words` returns.
    events : CastEvents, optional
        Incremented with this cast's overflow and underflow counts.

    Returns
    -------
    numpy.ndarray of int64, raw values in ``fmt``, shaped like ``raw``.
    """
    spec = cast_spec(from_frac, fmt, rounding, overflow)
    if type(raw) is np.ndarray and raw.dtype == np.int64 and raw.flags.c_contiguous:
        x = raw
    else:
        x = np.asarray(raw, dtype=np.int64, order="C")
    bits, key = random_source(spec, x.size, random_bits, random_key)
    out = np.empty_like(x)
    n_over, n_under = _cast_kernel(x.reshape(-1), out.reshape(-1), spec, bits, key)
    if events is not None:
        events.overflow += n_over
        events.underflow += n_under
        events.total += x.size
    return out


def quantize(values, fmt: QFormat, rounding: Rounding = Rounding.NEAREST_EVEN,
             overflow: Overflow = Overflow.SATURATE, events: CastEvents | None = None) -> np.ndarray:
    """Raw integers in ``fmt`` for real (float) values, with one exact rounding.

    A float64 value is an exact binary fraction, so ``v * 2**f`` is exact too; it is
    rounded once with ``rounding`` (deterministic modes only) and then saturated or
    wrapped (``docs/datapath.md`` section 2). Every format width up to
    :data:`MAX_TOTAL_BITS` is exact, and so is any float64 magnitude, however far
    outside the format (it overflows, and ``wrap`` keeps its exact low bits).
    Non-finite values are refused. Events: *overflow* for values outside ``fmt``,
    *underflow* for non-zero values whose result is 0.
    """
    if not isinstance(rounding, Rounding) or not rounding.deterministic:
        raise ValueError(f"quantize rounds deterministically, not with {rounding!r}")
    given = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(given)):
        raise ValueError("cannot quantize NaN or infinite values")
    v = np.atleast_1d(given)            # 0-d inputs come back 0-d, below
    limit = float(1 << (MAX_TOTAL_BITS))            # beyond every format's range
    with np.errstate(over="ignore"):
        x = np.ldexp(v, fmt.frac_bits)              # exact: a power-of-two scaling
    huge = ~(np.abs(x) < limit)                     # also catches ldexp overflowing to inf
    xs = np.where(huge, 0.0, x)
    floor = np.floor(xs)
    frac = xs - floor                               # exact: both lie in one binade
    q = floor.astype(np.int64)
    if rounding is Rounding.TOWARD_ZERO:
        q += (xs < 0) & (frac > 0)
    elif rounding is Rounding.HALF_UP:
        q += frac >= 0.5
    elif rounding is Rounding.NEAREST_EVEN:
        q += (frac > 0.5) | ((frac == 0.5) & ((q & 1) == 1))
    n_huge = int(np.count_nonzero(huge))
    if n_huge:                                      # outside every format: saturate, or wrap exactly
        q[huge] = np.where(v[huge] < 0, -(1 << MAX_TOTAL_BITS), 1 << MAX_TOTAL_BITS)
    ev = CastEvents()
    out = cast(q, fmt.frac_bits, fmt, rounding, overflow, events=ev)
    if n_huge and overflow is Overflow.WRAP:
        from fractions import Fraction
        bits, mask = fmt.total_bits, (1 << fmt.total_bits) - 1
        wrapped = []
        for value in v[huge].reshape(-1):
            w = int(Fraction(float(value)) * (1 << fmt.frac_bits)) & mask   # an integer: |v 2^f| >= 2^62
            wrapped.append(w - (1 << bits) if fmt.signed and w >> (bits - 1) else w)
        out[huge] = wrapped
    if events is not None:
        events.overflow += ev.overflow
        events.underflow += int(np.count_nonzero((out == 0) & (v != 0)))
        events.total += out.size
    return out.reshape(given.shape)


def matmul_bound(a, b, a_max: int | None = None, b_max: int | None = None) -> int:
    """An upper bound on every partial sum of ``a @ b``: ``max|a| * max|b| * K``.

    ``a_max``/``b_max`` give static bounds (for example the largest magnitude a
    format holds) and save a pass over the data.
    """
    a_max = int(np.abs(a).max(initial=0)) if a_max is None else a_max
    b_max = int(np.abs(b).max(initial=0)) if b_max is None else b_max
    return a_max * b_max * np.shape(a)[-1]


def matmul_path(a, b, a_max: int | None = None, b_max: int | None = None) -> str:
    """Which path :func:`exact_matmul` takes: ``'float64'`` (BLAS) or ``'int64'``."""
    return "float64" if matmul_bound(a, b, a_max, b_max) < FLOAT64_EXACT_LIMIT else "int64"


def exact_matmul(a, b, a_max: int | None = None, b_max: int | None = None) -> np.ndarray:
    """Exact integer matrix product ``a @ b`` of int64 arrays.

    When ``max|a| * max|b| * K < 2**53`` every partial sum is an integer that
    float64 represents exactly, so the product runs on float64 BLAS and is
    converted back without error. Otherwise it runs on NumPy's int64 matmul,
    which is exact while the bound stays below ``2**63`` (checked).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    bound = matmul_bound(a, b, a_max, b_max)
    if bound < FLOAT64_EXACT_LIMIT:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    if bound >= (1 << 63):
        raise OverflowError(f"matrix product bound {bound} exceeds int64; narrow the formats")
    return a @ b
