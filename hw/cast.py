"""The cast unit: round, then saturate/wrap, one value per cycle (docs/datapath.md section 1)."""

from __future__ import annotations

from amaranth.hdl import signed

from ..sw.fixed import Overflow, Rounding
from .arith import (HASH_STAGES, check_format, check_overflow, check_rounding, fmt_shape,
                    round_expr, saturate_expr)
from .pipeline import StreamUnit, UnitSignature, check_int, check_shallow

__all__ = ["Cast"]


class Cast(StreamUnit):
    """Casts a ``in_width``-bit signed value with ``from_frac`` fraction bits into ``fmt``.

    Parameters
    ----------
    in_width : int
        Width of the signed input value (1 to 64).
    from_frac : int
        Fraction bits of the input.
    fmt : QFormat
        Target format.
    rounding : Rounding
        Any mode of the contract; ``stochastic`` draws the word ``hash32(key ^ index)``.
    overflow : Overflow
        ``saturate`` or ``wrap``.
    tag_width : int
        Width of the sideband ``tag`` carried with each value (0: none).
    registered_ready : bool
        Put a skid buffer on ``o`` so that ``i.ready`` comes from registers only.
    shallow : bool
        Round and saturate in one cycle (``SHALLOW_LATENCY``), for a slow clock (an iCE40
        at 30 MHz). Not for a cast that draws random words.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``value`` (signed ``in_width``); ``index`` (unsigned 32, the element's index)
        when the cast draws random words; ``tag`` when ``tag_width > 0``.
    o : Out(stream.Signature(...))
        Payload ``value`` (``fmt``), the ``overflow`` and ``underflow`` event flags that the
        golden model counts for the site, and ``tag``.
    key : In(32)
        The cast site's random key for this step (section 9); only when the cast draws
        random words (``stochastic`` and ``from_frac > fmt.frac_bits``).

    Latency
    -------
    ``RANDOM_LATENCY`` (6) cycles from an accepted input to its output when the cast draws
    random words: four stages of the hash, the rounding add, then saturation and the
    flags. ``PLAIN_LATENCY`` (2) for every other cast: the rounding add, then saturation.
    ``SHALLOW_LATENCY`` (1) with ``shallow``: both in the output register's cycle.
    ``LATENCY`` is the instance's. Initiation interval 1. Back-pressure on ``o`` stalls the
    whole pipeline.
    """

    #: Cycles of a cast that draws random words (the hash's four stages first).
    RANDOM_LATENCY = 6
    #: Cycles of any other cast: no register carries a value (or its tag) waiting.
    PLAIN_LATENCY = 2
    #: Cycles of a ``shallow`` cast: the rounding add and the saturation in one.
    SHALLOW_LATENCY = 1

    class Signature(UnitSignature):
        """Ports of a :class:`Cast` (see its Members), without building one."""

        def __init__(self, *, in_width, fmt, stochastic=False, tag_width=0):
            super().__init__(inputs={"value": signed(in_width)},
                             outputs={"value": fmt_shape(fmt), "overflow": 1, "underflow": 1},
                             stochastic=stochastic, tag_width=tag_width)

    def __init__(self, *, in_width, from_frac, fmt, rounding=Rounding.NEAREST_EVEN,
                 overflow=Overflow.SATURATE, tag_width=0, registered_ready=False, shallow=False):
        check_int("Cast input width", in_width, low=1, high=64)
        check_int("Cast input fraction bits", from_frac)
        self.fmt = check_format("Cast format", fmt)
        self.rounding = check_rounding(rounding)
        self.overflow = check_overflow(overflow)
        self.in_width, self.from_frac = in_width, from_frac
        self.shift = from_frac - self.fmt.frac_bits
        self.stochastic = self.rounding is Rounding.STOCHASTIC and self.shift > 0
        self.shallow = check_shallow("Cast", shallow, self.stochastic)
        self.LATENCY = (self.RANDOM_LATENCY if self.stochastic else
                        self.SHALLOW_LATENCY if shallow else self.PLAIN_LATENCY)
        super().__init__(self.Signature(in_width=in_width, fmt=self.fmt, stochastic=self.stochastic,
                                        tag_width=tag_width), registered_ready=registered_ready)

    def datapath(self, m, ctl, out):
        x = self.i.payload.value
        h = len(HASH_STAGES)
        assert self.RANDOM_LATENCY == h + 2
        if self.stochastic:
            word = ctl.hashed(self.key ^ self.i.payload.index)
            x = ctl.delay(x, h, "x")
            q = ctl.reg(round_expr(x, self.from_frac, self.fmt, self.rounding, word), "q")
            nonzero = ctl.reg(x != 0, "nonzero")
        elif self.shallow:
            q = round_expr(x, self.from_frac, self.fmt, self.rounding)
            nonzero = x != 0
        else:
            q = ctl.reg(round_expr(x, self.from_frac, self.fmt, self.rounding), "q")
            nonzero = ctl.reg(x != 0, "nonzero")
        value, over, under, _ = saturate_expr(q, self.fmt, self.overflow,
                                              nonzero if self.shift > 0 else None)
        with m.If(ctl.enable):
            m.d.sync += [out.value.eq(value), out.overflow.eq(over), out.underflow.eq(under)]
