"""Combinational building blocks shared by the units: the cast and the random hash.

Both are transcriptions of ``docs/datapath.md`` (sections 1 and 9) into Amaranth
expressions; the units register around them.
"""

from __future__ import annotations

from amaranth.hdl import Mux, Value, signed, unsigned

from ..sw.fixed import Overflow, QFormat, Rounding

__all__ = ["hash32", "cast_expr", "check_format", "check_rounding", "check_overflow", "fmt_shape"]


def _mask32(v: Value) -> Value:
    return v[:32].as_unsigned()


def hash32(a: Value) -> Value:
    """Jenkins' 32-bit integer hash (section 9): adds, XORs and shifts, modulo 2**32."""
    a = _mask32(a)
    a = _mask32((a + 0x7ED55D16) + (a << 12))
    a = _mask32((a ^ 0xC761C23C) ^ (a >> 19))
    a = _mask32((a + 0x165667B1) + (a << 5))
    a = _mask32((a + 0xD3A2646C) ^ (a << 9))
    a = _mask32((a + 0xFD7046C5) + (a << 3))
    a = _mask32((a ^ 0xB55A4F09) ^ (a >> 16))
    return a


def cast_expr(x: Value, from_frac: int, fmt: QFormat, rounding: Rounding, overflow: Overflow,
              random: Value | None = None) -> tuple[Value, Value, Value]:
    """``(q, overflowed, underflowed)`` of ``cast(x, from_frac -> fmt)`` (section 1).

    ``q`` is wider than ``fmt``; assigning it to a ``fmt``-wide signal keeps the low bits,
    which after saturation is the value and without it is the wrap-around.
    """
    s = from_frac - fmt.frac_bits
    if s > 0:
        if rounding is Rounding.TRUNCATE:
            q = x >> s
        elif rounding is Rounding.TOWARD_ZERO:
            q = (x + Mux(x < 0, (1 << s) - 1, 0)) >> s
        elif rounding is Rounding.HALF_UP:
            q = (x + (1 << (s - 1))) >> s
        elif rounding is Rounding.NEAREST_EVEN:
            q = (x + ((1 << (s - 1)) - 1) + x.as_signed()[s]) >> s
        else:
            if random is None:
                raise ValueError("stochastic rounding needs a random word")
            r = random.as_unsigned()
            r = (r >> (32 - s)) if s <= 32 else (r << (s - 32))
            q = (x + r) >> s
    elif s < 0:
        q = x << (-s)
    else:
        q = x
    lo, hi = fmt.min_raw, fmt.max_raw
    over = (q < lo) | (q > hi)
    if overflow is Overflow.SATURATE:
        q = Mux(q < lo, lo, Mux(q > hi, hi, q))
    value = q[:fmt.total_bits]
    value = value.as_signed() if fmt.signed else value.as_unsigned()
    under = (value == 0) & (x != 0) if s > 0 else Value.cast(0)
    return value, over, under


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
