"""The sigmoid-derivative unit: d = cast(a (1 - a)) (docs/datapath.md section 3.3)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.fixed import Overflow, Rounding
from .arith import cast_expr, check_format, check_overflow, check_rounding, fmt_shape, hash32
from .pipeline import PipelineControl

__all__ = ["SigmoidDerivative"]


class SigmoidDerivative(wiring.Component):
    """``a * ((1 << fa) - a)`` from a stored activation, cast into ``d_fmt``.

    Parameters
    ----------
    a_fmt : QFormat
        Activation format (``fa`` fraction bits; 1.0 need not be representable).
    d_fmt : QFormat
        Derivative format.
    rounding, overflow
        Of the cast from ``2 fa`` fraction bits; ``stochastic`` uses ``hash32(key ^ index)``.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``value`` (the activation) and ``index`` (element index, stochastic only).
    o : Out(stream.Signature(...))
        Payload ``value`` (``d_fmt``), ``overflow``, ``underflow``.
    key : In(32)
        Random key of the site (stochastic only).

    Latency
    -------
    3 cycles: input register, product register (a hard multiplier), cast register.
    Initiation interval 1; back-pressure stalls the pipeline.
    """

    LATENCY = 3

    def __init__(self, *, a_fmt, d_fmt, rounding=Rounding.NEAREST_EVEN, overflow=Overflow.SATURATE):
        self.a_fmt = check_format("SigmoidDerivative activation format", a_fmt)
        self.d_fmt = check_format("SigmoidDerivative output format", d_fmt)
        self.rounding = check_rounding(rounding)
        self.overflow = check_overflow(overflow)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"value": fmt_shape(self.a_fmt),
                                                        "index": unsigned(32)}))),
            "o": Out(stream.Signature(data.StructLayout({"value": fmt_shape(self.d_fmt),
                                                         "overflow": 1, "underflow": 1}))),
            "key": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        ctl = PipelineControl(m, self.LATENCY, self.i.valid, self.o.ready)
        m.d.comb += [self.i.ready.eq(ctl.enable), self.o.valid.eq(ctl.valid[-1])]
        fa = self.a_fmt.frac_bits
        wa = self.a_fmt.total_bits
        a = Signal(signed(wa + 1))
        one_minus = Signal(signed(wa + 2))
        p = Signal(signed(2 * wa + 3))
        r = [Signal(32, name=f"r{k}") for k in range(2)]
        with m.If(ctl.enable):
            m.d.sync += [a.eq(self.i.payload.value), one_minus.eq((1 << fa) - self.i.payload.value)]
            m.d.sync += p.eq(a * one_minus)
            if self.rounding is Rounding.STOCHASTIC:
                m.d.sync += [r[0].eq(hash32(self.key ^ self.i.payload.index)), r[1].eq(r[0])]
        q, over, under = cast_expr(p, 2 * fa, self.d_fmt, self.rounding, self.overflow, r[1])
        with m.If(ctl.enable):
            m.d.sync += [self.o.payload.value.eq(q), self.o.payload.overflow.eq(over),
                         self.o.payload.underflow.eq(under)]
        return m
