"""The pipelined multiply-accumulate unit (docs/datapath.md section 4)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import PipelineControl

__all__ = ["MAC", "max_exact_fan_in"]


def max_exact_fan_in(a_width: int, b_width: int, acc_width: int) -> int:
    """Largest number of signed ``a x b`` products whose every partial sum fits ``acc_width``."""
    biggest = 1 << (a_width + b_width - 2)            # (-2**(a-1)) * (-2**(b-1))
    return ((1 << (acc_width - 1)) - 1) // biggest


class MAC(wiring.Component):
    """Sums exact products of signed operands, one product per cycle.

    Parameters
    ----------
    a_width, b_width : int
        Signed operand widths (16 x 16 maps onto one iCE40 SB_MAC16 / ECP5 MULT18X18D).
    acc_width : int
        Accumulator width. The sum is exact (never wraps) up to ``max_fan_in`` products.
    max_fan_in : int
        The longest sum the unit is built for; checked against ``acc_width``.

    Members
    -------
    i : In(stream.Signature(...))
        Payload ``a``, ``b`` and the flags ``first`` (start a new sum with this product)
        and ``last`` (emit the sum after this product).
    o : Out(stream.Signature(...))
        One result per ``last``: payload ``sum`` (signed ``acc_width``) and
        ``fan_in_exceeded``, set when the sum had more than ``max_fan_in`` products (its
        exactness is then no longer guaranteed).

    Latency
    -------
    3 cycles from accepting the ``last`` product to the sum on ``o``: operand
    registers, product register (both absorbed by the hard multiplier), accumulator.
    Initiation interval 1; back-pressure on ``o`` stalls the pipeline.
    """

    LATENCY = 3

    def __init__(self, *, a_width=16, b_width=16, acc_width=40, max_fan_in=256):
        for name, v in (("operand width", a_width), ("operand width", b_width),
                        ("accumulator width", acc_width), ("maximum fan-in", max_fan_in)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"MAC {name} must be an integer, not {v!r}")
            if v < 1:
                raise ValueError(f"MAC {name} must be a positive integer, not {v!r}")
        if acc_width > 64:
            raise ValueError(f"MAC accumulator width must be at most 64 bits, not {acc_width!r}")
        exact = max_exact_fan_in(a_width, b_width, acc_width)
        if max_fan_in > exact:
            raise ValueError(f"MAC accumulator of {acc_width} bits is exact for at most {exact} "
                             f"products of {a_width}x{b_width} bits, not {max_fan_in!r}")
        self.a_width, self.b_width, self.acc_width = a_width, b_width, acc_width
        self.max_fan_in = max_fan_in
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"a": signed(a_width), "b": signed(b_width),
                                                        "first": 1, "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"sum": signed(acc_width),
                                                         "fan_in_exceeded": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        out_valid = Signal()
        ctl = PipelineControl(m, self.LATENCY, self.i.valid, self.o.ready, out_valid=out_valid)
        a = Signal(signed(self.a_width))
        b = Signal(signed(self.b_width))
        p = Signal(signed(self.a_width + self.b_width))
        acc = Signal(signed(self.acc_width))
        # Products in the current sum, saturating one above the limit.
        count = Signal(range(self.max_fan_in + 2))
        first = [Signal(name=f"first{k}") for k in range(2)]
        last = [Signal(name=f"last{k}") for k in range(3)]
        with m.If(ctl.enable):
            m.d.sync += [a.eq(self.i.payload.a), b.eq(self.i.payload.b),
                         first[0].eq(self.i.payload.first), last[0].eq(self.i.payload.last)]
            m.d.sync += [p.eq(a * b), first[1].eq(first[0]), last[1].eq(last[0])]
            with m.If(ctl.valid[1]):
                m.d.sync += acc.eq(Mux(first[1], p, acc + p))
                with m.If(first[1]):
                    m.d.sync += count.eq(1)
                with m.Elif(count <= self.max_fan_in):
                    m.d.sync += count.eq(count + 1)
            m.d.sync += last[2].eq(last[1] & ctl.valid[1])
        m.d.comb += [out_valid.eq(ctl.valid[2] & last[2]), self.o.valid.eq(out_valid),
                     self.o.payload.sum.eq(acc),
                     self.o.payload.fan_in_exceeded.eq(count > self.max_fan_in),
                     self.i.ready.eq(ctl.enable)]
        return m
