"""The sigmoid unit: lookup table or PLAN (docs/datapath.md section 3)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.fixed import Overflow, Rounding
from ..sw.sigmoid import SigmoidSpec, lut_params, sigmoid_lut_table
from .arith import cast_expr, check_format, check_rounding, fmt_shape
from .pipeline import PipelineControl

__all__ = ["Sigmoid"]


class Sigmoid(wiring.Component):
    """sigma(z) from a pre-activation in ``z_fmt`` to an activation in ``a_fmt``.

    Parameters
    ----------
    z_fmt, a_fmt : QFormat
        Pre-activation and activation formats.
    spec : SigmoidSpec
        ``kind="lut"`` (a ROM of ``entries`` words over ``[-input_range, input_range)``)
        or ``kind="plan"`` (shifts and adds, then one cast).
    rounding : Rounding
        Rounding of PLAN's final cast (deterministic modes only).

    Members
    -------
    i : In(stream.Signature(z_fmt))
    o : Out(stream.Signature(a_fmt))

    Latency
    -------
    LUT: 1 cycle (the ROM's registered read). PLAN: 2 cycles. Initiation interval 1;
    back-pressure stalls the pipeline.
    """

    def __init__(self, *, z_fmt, a_fmt, spec=SigmoidSpec(), rounding=Rounding.NEAREST_EVEN):
        self.z_fmt = check_format("Sigmoid input format", z_fmt)
        self.a_fmt = check_format("Sigmoid output format", a_fmt)
        if not isinstance(spec, SigmoidSpec):
            raise TypeError(f"Sigmoid spec must be a SigmoidSpec, not {spec!r}")
        self.spec = spec
        self.rounding = check_rounding(rounding)
        if not self.rounding.deterministic:
            raise ValueError(f"Sigmoid rounding must be deterministic, not {self.rounding.value!r}")
        if spec.kind == "lut":
            self.r_raw, self.addr_shift = lut_params(self.z_fmt, spec)
            self.table = [int(v) for v in sigmoid_lut_table(spec, self.a_fmt)]
        self.latency = 1 if spec.kind == "lut" else 2
        super().__init__({"i": In(stream.Signature(fmt_shape(self.z_fmt))),
                          "o": Out(stream.Signature(fmt_shape(self.a_fmt)))})

    def elaborate(self, platform):
        m = Module()
        ctl = PipelineControl(m, self.latency, self.i.valid, self.o.ready)
        m.d.comb += [self.i.ready.eq(ctl.enable), self.o.valid.eq(ctl.valid[-1])]
        z = self.i.payload
        if self.spec.kind == "lut":
            m.submodules.rom = rom = memory.Memory(shape=fmt_shape(self.a_fmt),
                                                   depth=self.spec.entries, init=self.table)
            rd = rom.read_port()
            r = self.r_raw
            zc = Mux(z < -r, -r, Mux(z > r - 1, r - 1, z))
            m.d.comb += [rd.addr.eq((zc + r) >> self.addr_shift), rd.en.eq(ctl.enable),
                         self.o.payload.eq(rd.data)]
            return m
        f = self.z_fmt.frac_bits
        zr = Signal(fmt_shape(self.z_fmt))
        with m.If(ctl.enable):
            m.d.sync += zr.eq(z)
        t = Mux(zr < 0, -zr, zr)
        y = Mux(t >= (5 << f), 32 << f,
            Mux((t << 3) >= (19 << f), t + (27 << f),
            Mux(t >= (1 << f), (t << 2) + (20 << f), (t << 3) + (16 << f))))
        y = Mux(zr < 0, (32 << f) - y, y)
        q, _, _ = cast_expr(y, f + 5, self.a_fmt, self.rounding, Overflow.SATURATE)
        with m.If(ctl.enable):
            m.d.sync += self.o.payload.eq(q)
        return m
