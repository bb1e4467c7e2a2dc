"""The sigmoid unit: lookup table or PLAN (docs/datapath.md section 3)."""

from __future__ import annotations

from amaranth.hdl import Mux
from amaranth.lib import memory

from ..sw.fixed import Overflow, Rounding
from ..sw.sigmoid import SigmoidSpec, lut_params, sigmoid_lut_table
from .arith import check_format, check_overflow, check_rounding, fmt_shape, round_expr, saturate_expr
from .pipeline import StreamUnit, UnitSignature, check_bool

__all__ = ["Sigmoid"]


class Sigmoid(StreamUnit):
    """sigma(z) from a pre-activation in ``z_fmt`` to an activation in ``a_fmt``.

    Parameters
    ----------
    z_fmt, a_fmt : QFormat
        Pre-activation and activation formats.
    spec : SigmoidSpec
        ``kind="lut"`` (a ROM of ``entries`` words over ``[-input_range, input_range)``)
        or ``kind="plan"`` (shifts and adds, then one cast).
    rounding : Rounding
        Rounding of PLAN's final cast: the activation stage's (deterministic modes only).
    overflow : Overflow
        Overflow mode of PLAN's final cast: the activation stage's. PLAN's value reaches
        1.0, which saturates (or wraps) in a format without it.
    tag_width : int
        Width of the sideband ``tag`` (0: none).
    registered_ready : bool
        Put a skid buffer on ``o`` so that ``i.ready`` comes from registers only.
    shallow : bool
        ``SHALLOW_LATENCY``, for a slow clock (an iCE40 at 30 MHz): fewer registers, the
        same values.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``value`` (``z_fmt``); ``tag``.
    o : Out(stream.Signature(...))
        Payload ``value`` (``a_fmt``), ``overflow`` and ``underflow`` of PLAN's cast (the
        activation site's events; always 0 for the LUT, which the golden model counts as
        none); ``tag``.

    Latency
    -------
    ``DEEP_LATENCY`` (5) cycles for both kinds. PLAN: ``|z|``, the segment, the reflection
    for ``z < 0``, the rounding add, saturation and flags. LUT: the clamped address, the
    ROM's registered read (block RAM), its output register, two delay registers.
    ``SHALLOW_LATENCY`` (3) with ``shallow``. PLAN: ``|z|``, the segment and the
    reflection, then the rounding add and saturation. LUT: the address, the ROM's read,
    the output register. ``LATENCY`` is the instance's. Initiation interval 1;
    back-pressure stalls the pipeline.
    """

    #: Cycles of either kind.
    DEEP_LATENCY = 5
    #: Cycles of either kind, ``shallow``.
    SHALLOW_LATENCY = 3

    class Signature(UnitSignature):
        """Ports of a :class:`Sigmoid` (see its Members), without building one."""

        def __init__(self, *, z_fmt, a_fmt, tag_width=0):
            super().__init__(inputs={"value": fmt_shape(z_fmt)},
                             outputs={"value": fmt_shape(a_fmt), "overflow": 1, "underflow": 1},
                             tag_width=tag_width)

    def __init__(self, *, z_fmt, a_fmt, spec=SigmoidSpec(), rounding=Rounding.NEAREST_EVEN,
                 overflow=Overflow.SATURATE, tag_width=0, registered_ready=False, shallow=False):
        self.z_fmt = check_format("Sigmoid input format", z_fmt)
        self.a_fmt = check_format("Sigmoid output format", a_fmt)
        if not isinstance(spec, SigmoidSpec):
            raise TypeError(f"Sigmoid spec must be a SigmoidSpec, not {spec!r}")
        self.spec = spec
        self.rounding = check_rounding(rounding)
        if not self.rounding.deterministic:
            raise ValueError(f"Sigmoid rounding must be deterministic, not {self.rounding.value!r}")
        self.overflow = check_overflow(overflow)
        if spec.kind == "lut":
            self.r_raw, self.addr_shift = lut_params(self.z_fmt, spec)
            self.table = [int(v) for v in sigmoid_lut_table(spec, self.a_fmt)]
        self.shallow = check_bool("Sigmoid shallow", shallow)
        self.LATENCY = self.SHALLOW_LATENCY if shallow else self.DEEP_LATENCY
        super().__init__(self.Signature(z_fmt=self.z_fmt, a_fmt=self.a_fmt, tag_width=tag_width),
                         registered_ready=registered_ready)

    def datapath(self, m, ctl, out):
        z = self.i.payload.value
        if self.spec.kind == "lut":
            m.submodules.rom = rom = memory.Memory(shape=fmt_shape(self.a_fmt),
                                                   depth=self.spec.entries, init=self.table)
            rd = rom.read_port(transparent_for=())
            r = self.r_raw
            zc = Mux(z < -r, -r, Mux(z > r - 1, r - 1, z))
            addr = ctl.reg(((zc + r) >> self.addr_shift)[:len(rd.addr)], "addr")     # stage 1
            m.d.comb += [rd.addr.eq(addr), rd.en.eq(ctl.enable)]                     # stage 2
            value = rd.data
            if not self.shallow:
                value = ctl.delay(ctl.reg(value, "rom_out"), 1, "a")                 # 3, 4
            with m.If(ctl.enable):                                                   # the last
                m.d.sync += [out.value.eq(value), out.overflow.eq(0), out.underflow.eq(0)]
            return
        f = self.z_fmt.frac_bits
        zs = z.as_signed() if self.z_fmt.signed else z       # an unsigned z is never negative
        neg = ctl.reg(zs < 0, "neg")                                                 # stage 1
        t = ctl.reg(Mux(zs < 0, -zs, zs), "t")
        y = Mux(t >= (5 << f), 32 << f,
            Mux((t << 3) >= (19 << f), t + (27 << f),
            Mux(t >= (1 << f), (t << 2) + (20 << f), (t << 3) + (16 << f))))
        if self.shallow:
            y = ctl.reg(Mux(neg, (32 << f) - y, y), "y_signed")                      # stage 2
            q = round_expr(y, f + 5, self.a_fmt, self.rounding)                      # 3, saturated
            nonzero = y != 0
        else:
            y = ctl.reg(y, "y")                                                      # stage 2
            neg = ctl.reg(neg, "neg1")
            y = ctl.reg(Mux(neg, (32 << f) - y, y), "y_signed")                      # stage 3
            q = ctl.reg(round_expr(y, f + 5, self.a_fmt, self.rounding), "q")        # stage 4
            nonzero = ctl.reg(y != 0, "nonzero")
        value, over, under, _ = saturate_expr(q, self.a_fmt, self.overflow,
                                              nonzero if f + 5 > self.a_fmt.frac_bits else None)
        with m.If(ctl.enable):                                                       # the last
            m.d.sync += [out.value.eq(value), out.overflow.eq(over), out.underflow.eq(under)]
