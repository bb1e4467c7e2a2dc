"""The sigmoid-derivative unit: d = cast(a (1 - a)) (docs/datapath.md section 3.3)."""

from __future__ import annotations

from ..sw.fixed import Overflow, Rounding
from .arith import (check_format, check_overflow, check_rounding, fmt_shape,
                    round_expr, saturate_expr)
from .pipeline import StreamUnit, UnitSignature, check_shallow

__all__ = ["SigmoidDerivative"]


class SigmoidDerivative(StreamUnit):
    """``a * ((1 << fa) - a)`` from a stored activation, cast into ``d_fmt``.

    The product is formed as ``(a << fa) - a * a``: the square is one ``wa x wa`` signed
    multiply (16 x 16 for fx16, one SB_MAC16), where ``a * (1 - a)`` would need a
    ``wa x (wa + 1)`` one.

    Parameters
    ----------
    a_fmt : QFormat
        Activation format (``fa`` fraction bits; 1.0 need not be representable).
    d_fmt : QFormat
        Derivative format.
    rounding, overflow
        Of the cast from ``2 fa`` fraction bits; ``stochastic`` uses ``hash32(key ^ index)``.
    tag_width : int
        Width of the sideband ``tag`` (0: none).
    registered_ready : bool
        Put a skid buffer on ``o`` so that ``i.ready`` comes from registers only.
    shallow : bool
        ``SHALLOW_LATENCY``: no register between the square and the subtraction, and the
        rounding and saturation in one cycle, for a slow clock (an iCE40 at 30 MHz). Not
        when the cast draws random words.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``value`` (the activation); ``index`` (element index, stochastic only);
        ``tag``.
    o : Out(stream.Signature(...))
        Payload ``value`` (``d_fmt``), ``overflow``, ``underflow``; ``tag``.
    key : In(32)
        Random key of the site (stochastic only).

    Latency
    -------
    ``RANDOM_LATENCY`` (7) cycles when the cast draws random words: operand register and
    square register (both inside the hard multiplier on iCE40), the square registered
    again (a register beside the multiplier on ECP5, whose hard multiplier runs without
    its registers), the subtraction, the rounding add after the hash's last stages, then
    saturation and flags. ``PLAIN_LATENCY`` (6) otherwise: the rounding add follows the
    subtraction at once. ``SHALLOW_LATENCY`` (4) with ``shallow``: operands, square (both
    in the hard multiplier), the subtraction, then the rounding add and the saturation.
    ``LATENCY`` is the instance's. Initiation interval 1;
    back-pressure stalls the pipeline.
    """

    #: Cycles when the cast draws random words (the hash word is ready in stage 5).
    RANDOM_LATENCY = 7
    #: Cycles otherwise: no register holds the value (or its tag) waiting for a hash.
    PLAIN_LATENCY = 6
    #: Cycles of a ``shallow`` unit.
    SHALLOW_LATENCY = 4

    class Signature(UnitSignature):
        """Ports of a :class:`SigmoidDerivative` (see its Members), without building one."""

        def __init__(self, *, a_fmt, d_fmt, stochastic=False, tag_width=0):
            super().__init__(inputs={"value": fmt_shape(a_fmt)},
                             outputs={"value": fmt_shape(d_fmt), "overflow": 1, "underflow": 1},
                             stochastic=stochastic, tag_width=tag_width)

    def __init__(self, *, a_fmt, d_fmt, rounding=Rounding.NEAREST_EVEN, overflow=Overflow.SATURATE,
                 tag_width=0, registered_ready=False, shallow=False):
        self.a_fmt = check_format("SigmoidDerivative activation format", a_fmt)
        self.d_fmt = check_format("SigmoidDerivative output format", d_fmt)
        self.rounding = check_rounding(rounding)
        self.overflow = check_overflow(overflow)
        self.shift = 2 * self.a_fmt.frac_bits - self.d_fmt.frac_bits
        self.stochastic = self.rounding is Rounding.STOCHASTIC and self.shift > 0
        self.shallow = check_shallow("SigmoidDerivative", shallow, self.stochastic)
        self.LATENCY = (self.RANDOM_LATENCY if self.stochastic else
                        self.SHALLOW_LATENCY if shallow else self.PLAIN_LATENCY)
        super().__init__(self.Signature(a_fmt=self.a_fmt, d_fmt=self.d_fmt,
                                        stochastic=self.stochastic, tag_width=tag_width),
                         registered_ready=registered_ready)

    def datapath(self, m, ctl, out):
        fa = self.a_fmt.frac_bits
        a = ctl.reg(self.i.payload.value, "a")                        # stage 1
        a2 = ctl.delay(a, 1 if self.shallow else 2, "a")
        # The operands registered (stage 1) and the square registered (stage 2): on ECP5
        # these are the MULT18X18D's own registers.
        square = ctl.product(self.i.payload.value, self.i.payload.value, "square")
        if self.shallow:
            p = ctl.reg((a2 << fa) - square, "p")                     # stage 3
            q = round_expr(p, 2 * fa, self.d_fmt, self.rounding)     # stage 4, saturated
            nonzero = p != 0
        else:
            # One more register, fed by the product only: the route from the DSP block to
            # the subtractor gets a cycle of its own.
            square_q = ctl.reg(square, "square_q")                    # stage 3
            p = ctl.reg((a2 << fa) - square_q, "p")                   # stage 4
            if self.stochastic:
                word = ctl.delay(ctl.hashed(self.key ^ self.i.payload.index), 1,
                                 "word")                              # ready in stage 5
                q = ctl.reg(round_expr(ctl.reg(p, "p1"), 2 * fa, self.d_fmt, self.rounding,
                                       word), "q")                    # stage 6
                nonzero = ctl.delay(p != 0, 2, "nonzero")
            else:
                q = ctl.reg(round_expr(p, 2 * fa, self.d_fmt, self.rounding), "q")  # stage 5
                nonzero = ctl.reg(p != 0, "nonzero")
        value, over, under, _ = saturate_expr(q, self.d_fmt, self.overflow,
                                              nonzero if self.shift > 0 else None)
        with m.If(ctl.enable):                                        # the last stage
            m.d.sync += [out.value.eq(value), out.overflow.eq(over), out.underflow.eq(under)]
