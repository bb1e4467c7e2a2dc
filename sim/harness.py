"""A bank of same-kind units behind one stream, so one Verilator build checks many
configurations (rounding x overflow) on the same vectors."""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UnitBank"]


def _union(layouts):
    fields = {}
    for layout in layouts:
        for name, f in layout:
            fields.setdefault(name, f.shape)
    return data.StructLayout(fields)


class UnitBank(wiring.Component):
    """Broadcasts one input stream to ``units`` and concatenates their outputs.

    Parameters
    ----------
    units : list of wiring.Component
        Units with equal output payload shapes and equal ``LATENCY`` (configurations of one
        unit kind); their pipelines then move in lockstep. Input payloads may differ in
        optional fields (a deterministic unit has no ``index``): the bank's input payload is
        the union, and each unit takes the fields it has.
    statics : tuple of str
        Names of constant input ports (``key``, ``eta``), broadcast to every unit that has
        the port.

    Members
    -------
    i : In(stream.Signature(union of the units' input payloads))
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
        out_shape = first.o.payload.shape()
        for u in self.units[1:]:
            if u.o.payload.shape() != out_shape or u.LATENCY != first.LATENCY:
                raise ValueError("UnitBank units must have equal output payloads and latency")
        self.in_layout = _union(u.i.payload.shape() for u in self.units)
        out_layout = data.ArrayLayout(out_shape, len(self.units))
        members = {"i": In(stream.Signature(self.in_layout)),
                   "o": Out(stream.Signature(out_layout)),
                   "monitor": Out(2 + out_layout.size)}
        self.statics = tuple(s for s in statics if any(hasattr(u, s) for u in self.units))
        for name in self.statics:
            members[name] = In(next(getattr(u, name) for u in self.units if hasattr(u, name)).shape())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for k, u in enumerate(self.units):
            m.submodules[f"unit{k}"] = u
            m.d.comb += [u.i.valid.eq(self.i.valid), u.o.ready.eq(self.o.ready),
                         self.o.payload[k].eq(u.o.payload)]
            for name, _ in u.i.payload.shape():
                m.d.comb += getattr(u.i.payload, name).eq(getattr(self.i.payload, name))
            for name in self.statics:
                if hasattr(u, name):
                    m.d.comb += getattr(u, name).eq(getattr(self, name))
        m.d.comb += [self.i.ready.eq(self.units[0].i.ready), self.o.valid.eq(self.units[0].o.valid),
                     self.monitor.eq(Cat(self.i.ready, self.o.valid, self.o.payload))]
        return m
