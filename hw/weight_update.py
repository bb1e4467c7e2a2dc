"""The weight-update unit: w' = cast(w - eta g) (docs/datapath.md section 8)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.fixed import Overflow, Rounding
from .arith import cast_expr, check_format, check_overflow, check_rounding, fmt_shape, hash32
from .pipeline import PipelineControl

__all__ = ["WeightUpdate"]


class WeightUpdate(wiring.Component):
    """One SGD update per cycle: ``w - eta * g`` formed exactly, then one cast into ``w_fmt``.

    Parameters
    ----------
    w_fmt : QFormat
        Weight (or bias) format.
    g_fmt : QFormat
        Gradient format.
    lr_fmt : QFormat
        Unsigned learning-rate format (``multiply`` mode: ``eta`` is a raw value in it).
        For ``shift`` mode pass ``lr_fmt=QFormat(0, k, signed=False)`` and ``eta = 1``.
    rounding, overflow
        Of the update cast; ``stochastic`` uses ``hash32(key ^ index)``.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``w``, ``g`` and ``index`` (element index, stochastic only).
    o : Out(stream.Signature(...))
        Payload ``value`` (the new weight), ``overflow``, and ``stalled`` (a non-zero
        update that left the weight unchanged).
    eta : In(lr_fmt)
        The learning rate, raw.
    key : In(32)
        Random key of the site (stochastic only).

    Latency
    -------
    3 cycles: input register, product register (``eta * g``, a hard multiplier), cast
    register. Initiation interval 1; back-pressure stalls the pipeline.
    """

    LATENCY = 3

    def __init__(self, *, w_fmt, g_fmt, lr_fmt, rounding=Rounding.NEAREST_EVEN,
                 overflow=Overflow.SATURATE):
        self.w_fmt = check_format("WeightUpdate weight format", w_fmt)
        self.g_fmt = check_format("WeightUpdate gradient format", g_fmt)
        self.lr_fmt = check_format("WeightUpdate learning-rate format", lr_fmt)
        if self.lr_fmt.signed:
            raise ValueError(f"WeightUpdate learning-rate format must be unsigned, not {self.lr_fmt}")
        self.rounding = check_rounding(rounding)
        self.overflow = check_overflow(overflow)
        u_frac = self.lr_fmt.frac_bits + self.g_fmt.frac_bits
        self.frac = max(u_frac, self.w_fmt.frac_bits)
        self.w_shift = self.frac - self.w_fmt.frac_bits
        self.u_shift = self.frac - u_frac
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"w": fmt_shape(self.w_fmt),
                                                        "g": fmt_shape(self.g_fmt),
                                                        "index": unsigned(32)}))),
            "o": Out(stream.Signature(data.StructLayout({"value": fmt_shape(self.w_fmt),
                                                         "overflow": 1, "stalled": 1}))),
            "eta": In(fmt_shape(self.lr_fmt)),
            "key": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        ctl = PipelineControl(m, self.LATENCY, self.i.valid, self.o.ready)
        m.d.comb += [self.i.ready.eq(ctl.enable), self.o.valid.eq(ctl.valid[-1])]
        gb, lb = self.g_fmt.total_bits, self.lr_fmt.total_bits
        w = [Signal(fmt_shape(self.w_fmt), name=f"w{k}") for k in range(2)]
        g = Signal(fmt_shape(self.g_fmt))
        eta = Signal(signed(lb + 1))
        u = Signal(signed(gb + lb + 1))
        r = [Signal(32, name=f"r{k}") for k in range(2)]
        with m.If(ctl.enable):
            m.d.sync += [w[0].eq(self.i.payload.w), g.eq(self.i.payload.g), eta.eq(self.eta)]
            m.d.sync += [u.eq(g * eta), w[1].eq(w[0])]
            if self.rounding is Rounding.STOCHASTIC:
                m.d.sync += [r[0].eq(hash32(self.key ^ self.i.payload.index)), r[1].eq(r[0])]
        exact = (w[1] << self.w_shift) - (u << self.u_shift)
        q, over, _ = cast_expr(exact, self.frac, self.w_fmt, self.rounding, self.overflow, r[1])
        with m.If(ctl.enable):
            m.d.sync += [self.o.payload.value.eq(q), self.o.payload.overflow.eq(over),
                         self.o.payload.stalled.eq((u != 0) & (q == w[1]))]
        return m
