"""A bank of same-shaped units behind one stream, so one Verilator build checks many
configurations (rounding x overflow) on the same vectors."""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UnitBank"]


class UnitBank(wiring.Component):
    """Broadcasts one input stream to ``units`` and concatenates their outputs.

    Parameters
    ----------
    units : list of wiring.Component
        Units with equal input payload shapes, equal output payload shapes and equal
        latency (configurations of one unit kind). Their pipelines then move in lockstep.
    statics : tuple of str
        Names of constant input ports (``key``, ``eta``) broadcast to every unit.

    Members
    -------
    i : In(stream.Signature(unit input payload))
    o : Out(stream.Signature(ArrayLayout(unit output payload, len(units))))
    monitor : Out(2 + payload width)
        ``{o.payload, o.valid, i.ready}`` in one vector (bit 0 ``i.ready``, bit 1
        ``o.valid``), so a testbench reads the cycle's handshake and data at once: each
        signal read from cocotb costs microseconds, whatever its width.
    """

    def __init__(self, units, statics=()):
        if not units:
            raise ValueError("UnitBank needs at least one unit")
        self.units = list(units)
        first = self.units[0]
        in_shape = first.i.payload.shape()
        out_shape = first.o.payload.shape()
        for u in self.units[1:]:
            if u.i.payload.shape() != in_shape or u.o.payload.shape() != out_shape:
                raise ValueError("UnitBank units must have equal payload shapes")
        out_layout = data.ArrayLayout(out_shape, len(self.units))
        members = {"i": In(stream.Signature(in_shape)),
                   "o": Out(stream.Signature(out_layout)),
                   "monitor": Out(2 + out_layout.size)}
        for name in statics:
            members[name] = In(getattr(first, name).shape())
        self.statics = tuple(statics)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for k, u in enumerate(self.units):
            m.submodules[f"unit{k}"] = u
            m.d.comb += [u.i.valid.eq(self.i.valid), u.i.payload.eq(self.i.payload),
                         u.o.ready.eq(self.o.ready), self.o.payload[k].eq(u.o.payload)]
            for name in self.statics:
                m.d.comb += getattr(u, name).eq(getattr(self, name))
        m.d.comb += [self.i.ready.eq(self.units[0].i.ready), self.o.valid.eq(self.units[0].o.valid),
                     self.monitor.eq(Cat(self.i.ready, self.o.valid, self.o.payload))]
        return m
