"""A register slice for a stream: data, valid and ready all leave a register."""

from __future__ import annotations

from amaranth.hdl import Shape
from amaranth.lib import data

from .pipeline import StreamUnit, UnitSignature

__all__ = ["StreamRegister"]


class StreamRegister(StreamUnit):
    """Breaks every combinational path through a stream between two components.

    The payload and ``o.valid`` come from registers (the pipeline register, or the skid
    buffer behind it) and ``i.ready`` from the skid buffer's register, so neither side's
    logic reaches the other's in one cycle. Full rate: one word a cycle while ``o.ready``
    is high; no word is lost or repeated under back-pressure.

    Parameters
    ----------
    shape : shape-like
        The payload (``stream.Signature(32)``'s is 32).

    Members
    -------
    i : In(stream.Signature(StructLayout({"data": shape})))
    o : Out(stream.Signature(StructLayout({"data": shape})))

    Latency
    -------
    1 cycle from ``i`` to ``o``.
    """

    LATENCY = 1

    def __init__(self, shape):
        try:
            Shape.cast(shape)
        except TypeError:
            raise TypeError(f"StreamRegister shape must be a shape, not {shape!r}") from None
        self.shape = shape
        layout = data.StructLayout({"data": shape})
        super().__init__(UnitSignature(inputs=dict(layout.members),
                                       outputs=dict(layout.members)), registered_ready=True)

    def datapath(self, m, ctl, out):
        with m.If(ctl.enable):
            m.d.sync += out.data.eq(self.i.payload.data)
