"""The weight-update unit: w' = cast(w - eta g) (docs/datapath.md section 8)."""

from __future__ import annotations

from amaranth.hdl import Mux

from ..sw.fixed import Overflow, Rounding
from .arith import (check_format, check_overflow, check_rounding, fmt_shape,
                    round_expr, saturate_expr)
from .pipeline import StreamUnit, UnitSignature, check_int, check_shallow

__all__ = ["WeightUpdate"]


class WeightUpdate(StreamUnit):
    """One SGD update per cycle: ``w - eta * g`` formed exactly, then one cast into ``w_fmt``.

    Serves weights and biases alike (the bias update is this unit with the bias format and
    the bias stage's rounding and overflow).

    Parameters
    ----------
    w_fmt : QFormat
        Weight (or bias) format.
    g_fmt : QFormat
        Gradient format.
    lr_fmt : QFormat, optional
        ``multiply`` mode: the unsigned learning-rate format; ``eta`` is a raw value in it,
        on the ``eta`` port. The product is ``|g| x eta``, unsigned (16 x 16 for fx16: one
        SB_MAC16 or MULT18X18D), and its sign is applied in the subtraction.
    lr_shift : int, optional
        ``shift`` mode instead: ``eta = 2**-lr_shift`` (``eta_raw = 1``, ``fl = lr_shift``).
        No multiplier and no ``eta`` port. Give exactly one of ``lr_fmt`` and ``lr_shift``.
    rounding, overflow
        Of the update cast; ``stochastic`` uses ``hash32(key ^ index)``.
    tag_width : int
        Width of the sideband ``tag`` (0: none).
    registered_ready : bool
        Put a skid buffer on ``o`` so that ``i.ready`` comes from registers only.
    shallow : bool
        ``SHALLOW_LATENCY``: no register between the product and the subtraction, and the
        rounding and saturation in one cycle, for a slow clock (an iCE40 at 30 MHz). Not
        when the cast draws random words.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``w``, ``g``; ``index`` (element index, stochastic only); ``tag``.
    o : Out(stream.Signature(...))
        Payload ``value`` (the new weight), ``overflow``, and ``stalled`` (a non-zero update
        that left the weight unchanged: the update site's underflow); ``tag``.
    eta : In(lr_fmt)
        The learning rate, raw (multiply mode only).
    key : In(32)
        Random key of the site (stochastic only).

    Latency
    -------
    ``RANDOM_LATENCY`` (7) cycles when the cast draws random words: operand registers and
    product register (inside the hard multiplier on iCE40; delay registers in shift
    mode), the product registered again (beside an ECP5 multiplier, which runs without
    its registers), the exact subtraction, the rounding add after the hash's last stages,
    saturation with the flags. ``PLAIN_LATENCY`` (6) otherwise: the rounding add follows
    the subtraction at once. ``SHALLOW_LATENCY`` (4) with ``shallow``: operands, product,
    the exact subtraction, then the rounding add, saturation and flags.
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
        """Ports of a :class:`WeightUpdate` (see its Members), without building one."""

        def __init__(self, *, w_fmt, g_fmt, lr_fmt=None, stochastic=False, tag_width=0):
            super().__init__(inputs={"w": fmt_shape(w_fmt), "g": fmt_shape(g_fmt)},
                             outputs={"value": fmt_shape(w_fmt), "overflow": 1, "stalled": 1},
                             stochastic=stochastic, tag_width=tag_width,
                             statics={} if lr_fmt is None else {"eta": fmt_shape(lr_fmt)})

    def __init__(self, *, w_fmt, g_fmt, lr_fmt=None, lr_shift=None, rounding=Rounding.NEAREST_EVEN,
                 overflow=Overflow.SATURATE, tag_width=0, registered_ready=False,
                 shallow=False):
        self.w_fmt = check_format("WeightUpdate weight format", w_fmt)
        self.g_fmt = check_format("WeightUpdate gradient format", g_fmt)
        if (lr_fmt is None) == (lr_shift is None):
            raise TypeError(f"WeightUpdate needs exactly one of lr_fmt (multiply mode) and "
                            f"lr_shift (shift mode), not lr_fmt={lr_fmt!r}, lr_shift={lr_shift!r}")
        if lr_fmt is not None:
            self.lr_fmt = check_format("WeightUpdate learning-rate format", lr_fmt)
            if self.lr_fmt.signed:
                raise ValueError(f"WeightUpdate learning-rate format must be unsigned, not "
                                 f"{self.lr_fmt!r}")
            lr_frac = self.lr_fmt.frac_bits
        else:
            self.lr_fmt = None
            lr_frac = check_int("WeightUpdate learning-rate shift", lr_shift, high=62)
        self.lr_shift = lr_shift
        self.rounding = check_rounding(rounding)
        self.overflow = check_overflow(overflow)
        u_frac = lr_frac + self.g_fmt.frac_bits
        self.frac = max(u_frac, self.w_fmt.frac_bits)
        self.w_shift = self.frac - self.w_fmt.frac_bits
        self.u_shift = self.frac - u_frac
        self.shift = self.frac - self.w_fmt.frac_bits
        self.stochastic = self.rounding is Rounding.STOCHASTIC and self.shift > 0
        self.shallow = check_shallow("WeightUpdate", shallow, self.stochastic)
        self.LATENCY = (self.RANDOM_LATENCY if self.stochastic else
                        self.SHALLOW_LATENCY if shallow else self.PLAIN_LATENCY)
        super().__init__(self.Signature(w_fmt=self.w_fmt, g_fmt=self.g_fmt, lr_fmt=self.lr_fmt,
                                        stochastic=self.stochastic, tag_width=tag_width),
                         registered_ready=registered_ready)

    def datapath(self, m, ctl, out):
        i = self.i.payload
        w = ctl.reg(i.w, "w")                                           # stage 1
        gb = self.g_fmt.total_bits
        extra = 1 if self.shallow else 2        # registers from stage 1 to the subtraction
        if self.lr_fmt is not None:
            g = i.g.as_signed() if self.g_fmt.signed else i.g
            g_neg = ctl.reg(g < 0, "g_neg")
            eta = ctl.reg(self.eta, "eta")
            u_nonzero = ctl.delay(ctl.reg((i.g != 0), "g_nonzero") & (eta != 0), 1, "u_nonzero")
            # |g| and eta registered (stage 1), their product registered (stage 2): on
            # ECP5 all three are the MULT18X18D's own registers.
            u_mag = ctl.product(Mux(g < 0, -g, g)[:gb].as_unsigned(), self.eta, "u_mag")
            if not self.shallow:
                # One more register, fed by the product only: the route from the DSP block
                # to the adder gets a cycle of its own.
                u_mag = ctl.reg(u_mag, "u_mag_q")                          # stage 3
                g_neg = ctl.delay(g_neg, 2, "g_neg1")
                u_nonzero = ctl.reg(u_nonzero, "u_nonzero_q")
            else:
                g_neg = ctl.delay(g_neg, 1, "g_neg1")
        else:
            g = ctl.reg(i.g, "g")
            u_nonzero = ctl.delay(g != 0, extra, "u_nonzero")
            u_mag = ctl.delay(g, extra, "u")
            g_neg = None
        w = ctl.delay(w, extra, "w1")                                   # stage 3 (shallow 2)
        w_wide = w.as_signed() << self.w_shift if self.w_fmt.signed else w << self.w_shift
        u_wide = u_mag << self.u_shift
        if g_neg is None:
            exact = w_wide - u_wide
        else:
            exact = Mux(g_neg, w_wide + u_wide, w_wide - u_wide)
        exact = ctl.reg(exact, "exact")                                 # stage 4 (shallow 3)
        w = ctl.reg(w, "w2")
        u_nonzero = ctl.reg(u_nonzero, "u_nonzero2")
        if self.shallow:
            q = round_expr(exact, self.frac, self.w_fmt, self.rounding)  # stage 4, saturated
        elif self.stochastic:
            word = ctl.delay(ctl.hashed(self.key ^ i.index), 1,
                             "word")                                    # ready in stage 5
            q = ctl.reg(round_expr(ctl.reg(exact, "exact1"), self.frac, self.w_fmt,
                                   self.rounding, word), "q")           # stage 6
        else:
            q = ctl.reg(round_expr(exact, self.frac, self.w_fmt, self.rounding), "q")  # stage 5
        if not self.shallow:
            w = ctl.delay(w, self.LATENCY - 5, "w3")
            u_nonzero = ctl.delay(u_nonzero, self.LATENCY - 5, "u_nonzero3")
        value, over, _, equal = saturate_expr(q, self.w_fmt, self.overflow, equal_to=w)
        with m.If(ctl.enable):                                          # the last stage
            m.d.sync += [out.value.eq(value), out.overflow.eq(over),
                         out.stalled.eq(u_nonzero & equal)]
