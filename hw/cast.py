"""The cast unit: round and saturate/wrap one value per cycle (docs/datapath.md section 1)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.fixed import Overflow, Rounding
from .arith import cast_expr, check_format, check_overflow, check_rounding, fmt_shape, hash32
from .pipeline import PipelineControl

__all__ = ["Cast"]


class Cast(wiring.Component):
    """Casts a ``in_width``-bit signed value with ``from_frac`` fraction bits into ``fmt``.

    Parameters
    ----------
    in_width : int
        Width of the signed input value.
    from_frac : int
        Fraction bits of the input.
    fmt : QFormat
        Target format.
    rounding : Rounding
        Any mode of the contract; ``stochastic`` draws the word ``hash32(key ^ index)``.
    overflow : Overflow
        ``saturate`` or ``wrap``.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``value`` (signed ``in_width``) and ``index`` (unsigned 32, the element's
        index for stochastic rounding; ignored otherwise).
    o : Out(stream.Signature(...))
        Payload ``value`` (``fmt``), ``overflow`` and ``underflow`` event flags.
    key : In(32)
        The cast site's random key for this step (section 9); stochastic only.

    Latency
    -------
    2 cycles from an accepted input to its output; initiation interval 1. Back-pressure
    on ``o`` stalls the whole pipeline.
    """

    LATENCY = 2

    def __init__(self, *, in_width, from_frac, fmt, rounding=Rounding.NEAREST_EVEN,
                 overflow=Overflow.SATURATE):
        if not isinstance(in_width, int) or isinstance(in_width, bool):
            raise TypeError(f"Cast input width must be an integer, not {in_width!r}")
        if not 1 <= in_width <= 64:
            raise ValueError(f"Cast input width must be 1 to 64 bits, not {in_width!r}")
        if not isinstance(from_frac, int) or from_frac < 0:
            raise ValueError(f"Cast input fraction bits must be a non-negative integer, not {from_frac!r}")
        self.fmt = check_format("Cast format", fmt)
        self.rounding = check_rounding(rounding)
        self.overflow = check_overflow(overflow)
        self.in_width, self.from_frac = in_width, from_frac
        out_shape = fmt_shape(self.fmt)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"value": signed(in_width),
                                                        "index": unsigned(32)}))),
            "o": Out(stream.Signature(data.StructLayout({"value": out_shape, "overflow": 1,
                                                         "underflow": 1}))),
            "key": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        ctl = PipelineControl(m, self.LATENCY, self.i.valid, self.o.ready)
        m.d.comb += [self.i.ready.eq(ctl.enable), self.o.valid.eq(ctl.valid[-1])]
        x = Signal(signed(self.in_width))
        r = Signal(32)
        with m.If(ctl.enable):
            m.d.sync += x.eq(self.i.payload.value)
            if self.rounding is Rounding.STOCHASTIC:
                m.d.sync += r.eq(hash32(self.key ^ self.i.payload.index))
        q, over, under = cast_expr(x, self.from_frac, self.fmt, self.rounding, self.overflow, r)
        with m.If(ctl.enable):
            m.d.sync += [self.o.payload.value.eq(q), self.o.payload.overflow.eq(over),
                         self.o.payload.underflow.eq(under)]
        return m
