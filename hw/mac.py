"""The pipelined multiply-accumulate unit (docs/datapath.md sections 4 and 5)."""

from __future__ import annotations

from amaranth.hdl import Mux, Signal, signed

from .pipeline import StreamUnit, UnitSignature, check_int

__all__ = ["MAC", "max_exact_fan_in"]


def max_exact_fan_in(a_width: int, b_width: int, acc_width: int, bias_bound: int = 0) -> int:
    """Largest number of signed ``a x b`` products whose every partial sum fits ``acc_width``
    (after a bias term of magnitude at most ``bias_bound``)."""
    biggest = 1 << (a_width + b_width - 2)            # (-2**(a-1)) * (-2**(b-1))
    return max(0, ((1 << (acc_width - 1)) - 1 - bias_bound)) // biggest


class MAC(StreamUnit):
    """Sums exact products of signed operands, one product per cycle, plus an optional bias.

    Parameters
    ----------
    a_width, b_width : int
        Signed operand widths (16 x 16 maps onto one iCE40 SB_MAC16 / ECP5 MULT18X18D).
    acc_width : int
        Accumulator width. The sum is exact (never wraps) up to ``max_fan_in`` products.
    max_fan_in : int
        The longest sum the unit is built for; checked against ``acc_width`` (and the bias).
    bias_width : int
        Width of the signed ``bias`` input field (0: no bias). The sum of a frame starts at
        ``bias << bias_shift`` (section 5: ``B << (fw + f_in - fb)``). The shift is wiring,
        so a bias of any preset fits whatever the operand widths (fx8: Q3.5 shifted by 7).
    bias_shift : int
        Left shift of the bias into the products' fraction bits.
    tag_width : int
        Width of the sideband ``tag``; the tag of a frame's ``last`` product comes out with
        its sum.
    registered_ready : bool
        Put a skid buffer on ``o`` so that ``i.ready`` comes from registers only.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``a``, ``b``, ``bias`` (when ``bias_width > 0``; read with the ``first``
        product) and the flags ``first`` (start a new sum with this product) and ``last``
        (emit the sum after this product); ``tag``.
    o : Out(stream.Signature(...))
        One result per ``last``: payload ``sum`` (signed ``acc_width``) and
        ``fan_in_exceeded``, set when the sum had more than ``max_fan_in`` products (its
        exactness is then no longer guaranteed); ``tag``.

    Latency
    -------
    3 cycles from accepting the ``last`` product to the sum on ``o``: operand registers
    and product register (reset-less, so yosys places them inside an iCE40 SB_MAC16; on
    ECP5 they stay in the fabric around the MULT18X18D), accumulator. Initiation interval 1;
    back-pressure on ``o`` stalls the pipeline.
    """

    LATENCY = 3

    class Signature(UnitSignature):
        """Ports of a :class:`MAC` (see its Members), without building one."""

        def __init__(self, *, a_width, b_width, acc_width, bias_width=0, tag_width=0):
            inputs = {"a": signed(a_width), "b": signed(b_width)}
            if bias_width:
                inputs["bias"] = signed(bias_width)
            inputs.update(first=1, last=1)
            super().__init__(inputs=inputs,
                             outputs={"sum": signed(acc_width), "fan_in_exceeded": 1},
                             tag_width=tag_width)

    def __init__(self, *, a_width=16, b_width=16, acc_width=40, max_fan_in=256, bias_width=0,
                 bias_shift=0, tag_width=0, registered_ready=False):
        check_int("MAC operand width", a_width, low=1)
        check_int("MAC operand width", b_width, low=1)
        check_int("MAC accumulator width", acc_width, low=1, high=64)
        check_int("MAC maximum fan-in", max_fan_in, low=1)
        check_int("MAC bias width", bias_width, high=64)
        check_int("MAC bias shift", bias_shift, high=64)
        bias_bound = (1 << (bias_width - 1) << bias_shift) if bias_width else 0
        if bias_bound > (1 << (acc_width - 1)) - 1:
            raise ValueError(f"MAC bias of {bias_width} bits shifted by {bias_shift} does not fit "
                             f"the {acc_width}-bit accumulator")
        exact = max_exact_fan_in(a_width, b_width, acc_width, bias_bound)
        if max_fan_in > exact:
            raise ValueError(f"MAC accumulator of {acc_width} bits is exact for at most {exact} "
                             f"products of {a_width}x{b_width} bits, not {max_fan_in!r}")
        self.a_width, self.b_width, self.acc_width = a_width, b_width, acc_width
        self.max_fan_in, self.bias_width, self.bias_shift = max_fan_in, bias_width, bias_shift
        super().__init__(self.Signature(a_width=a_width, b_width=b_width, acc_width=acc_width,
                                        bias_width=bias_width, tag_width=tag_width),
                         registered_ready=registered_ready)

    def output_valid(self, m, ctl):
        self._last = Signal(name="last2")
        return ctl.valid[2] & self._last

    def datapath(self, m, ctl, out):
        i = self.i.payload
        first = ctl.delay(i.first, 2, "first")
        last1 = ctl.delay(i.last, 2, "last")
        # a and b registered, then their product (on ECP5 all three inside a MULT18X18D).
        p = ctl.product(i.a, i.b, "p")
        start = 0
        if self.bias_width:
            start = ctl.delay(i.bias, 2, "bias").as_signed() << self.bias_shift
        # Products in the current sum, saturating one above the limit.
        count = Signal(range(self.max_fan_in + 2), name="count", reset_less=True)
        count_next = Mux(first, 1, Mux(count <= self.max_fan_in, count + 1, count))
        with m.If(ctl.enable):
            with m.If(ctl.valid[1]):
                # The accumulator is the output register itself.
                m.d.sync += [out.sum.eq(Mux(first, start, out.sum) + p), count.eq(count_next),
                             out.fan_in_exceeded.eq(count_next > self.max_fan_in)]
            m.d.sync += self._last.eq(last1 & ctl.valid[1])
