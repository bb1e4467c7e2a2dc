"""Building blocks shared by the units: the cast (split into a round and a saturate stage)
and the random hash (split into pipeline stages).

Both are transcriptions of ``docs/datapath.md`` (sections 1 and 9) into Amaranth
expressions; the units register between them.
"""

from __future__ import annotations

from amaranth.hdl import Mux, Value, signed, unsigned

from ..sw.fixed import Overflow, QFormat, Rounding

__all__ = ["hash_rounds", "HASH_STAGES", "round_expr", "saturate_expr",
           "check_format", "check_rounding", "check_overflow", "fmt_shape"]


def _mask32(v: Value) -> Value:
    return v[:32].as_unsigned()


_ROUNDS = (
    lambda a: (a + 0x7ED55D16) + (a << 12),
    lambda a: (a ^ 0xC761C23C) ^ (a >> 19),
    lambda a: (a + 0x165667B1) + (a << 5),
    lambda a: (a + 0xD3A2646C) ^ (a << 9),
    lambda a: (a + 0xFD7046C5) + (a << 3),
    lambda a: (a ^ 0xB55A4F09) ^ (a >> 16),
)

#: How the six rounds of the hash are spread over pipeline stages: at most two 32-bit
#: carry chains per stage (rounds 1, 3 and 5 add twice, round 4 once, 2 and 6 only XOR).
HASH_STAGES = ((0, 1), (2,), (3,), (4, 5))


def hash_rounds(a: Value, rounds) -> Value:
    """Rounds ``rounds`` (0-based) of Jenkins' 32-bit hash applied to ``a``, modulo 2**32."""
    a = _mask32(a)
    for k in rounds:
        a = _mask32(_ROUNDS[k](a))
    return a


def round_expr(x: Value, from_frac: int, fmt: QFormat, rounding: Rounding,
               random: Value | None = None) -> Value:
    """``q``, the rounded value of ``cast(x, from_frac -> fmt)`` before overflow handling."""
    s = from_frac - fmt.frac_bits
    if s <= 0:
        return x << (-s)
    x = x.as_signed()
    if rounding is Rounding.TRUNCATE:
        return x >> s
    if rounding is Rounding.TOWARD_ZERO:
        return (x + Mux(x < 0, (1 << s) - 1, 0)) >> s
    if rounding is Rounding.HALF_UP:
        return (x + (1 << (s - 1))) >> s
    if rounding is Rounding.NEAREST_EVEN:
        # (x >> s) & 1: bit s, or the sign bit when the shift is at least as wide as x.
        return (x + ((1 << (s - 1)) - 1) + x[min(s, len(x) - 1)]) >> s
    if random is None:
        raise ValueError("stochastic rounding needs a random word")
    r = random.as_unsigned()
    r = (r >> (32 - s)) if s <= 32 else (r << (s - 32))
    return (x + r) >> s


def saturate_expr(q: Value, fmt: QFormat, overflow: Overflow, nonzero=None,
                  equal_to=None) -> tuple[Value, Value, Value, Value | None]:
    """``(value, overflowed, underflowed, equal)`` from a rounded ``q`` (section 1).

    ``nonzero`` is ``x != 0`` of the cast's input when the cast drops bits (``None``
    otherwise: no underflow). ``equal_to`` is an in-range raw value ``w``; ``equal`` then
    says whether the result equals it (the update's "stalled" test). Both flags are
    computed beside the saturating multiplexer, not after it.
    """
    lo, hi, n = fmt.min_raw, fmt.max_raw, fmt.total_bits
    below, above = q < lo, q > hi
    low_bits = q[:n]
    saturate = overflow is Overflow.SATURATE
    if saturate:
        value = Mux(below, lo, Mux(above, hi, q))[:n]
    else:
        value = low_bits
    value = value.as_signed() if fmt.signed else value.as_unsigned()
    over = below | above
    if nonzero is None:
        under = Value.cast(0)
    elif saturate:
        under = nonzero & Mux(below, int(lo == 0), Mux(above, int(hi == 0), low_bits == 0))
    else:
        under = nonzero & (low_bits == 0)
    equal = None
    if equal_to is not None:
        w = equal_to
        same = low_bits == w.as_unsigned()[:n]
        equal = Mux(below, w == lo, Mux(above, w == hi, same)) if saturate else same
    return value, over, under, equal


def _checked(value, cls, what: str):
    """``value`` as a ``cls`` (strings are parsed); TypeError otherwise."""
    if isinstance(value, str):
        value = cls.parse(value)
    if not isinstance(value, cls):
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise TypeError(f"{what} must be {article} {cls.__name__}, not {value!r}")
    return value


def check_format(what: str, fmt) -> QFormat:
    return _checked(fmt, QFormat, what)


def check_rounding(rounding) -> Rounding:
    return _checked(rounding, Rounding, "rounding")


def check_overflow(overflow) -> Overflow:
    return _checked(overflow, Overflow, "overflow")


def fmt_shape(fmt: QFormat):
    """The Amaranth shape of raw values in ``fmt``."""
    return signed(fmt.total_bits) if fmt.signed else unsigned(fmt.total_bits)
