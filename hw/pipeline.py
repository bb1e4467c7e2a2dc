"""Stall-all pipeline control for units with a fixed latency and valid/ready streams."""

from __future__ import annotations

from amaranth.hdl import Module, Signal

__all__ = ["PipelineControl"]


class PipelineControl:
    """Valid bits of an ``n``-stage pipeline that advances only when its output can move.

    ``enable`` is high when the last stage is empty or its value is being taken; every
    pipeline register updates only under ``enable``, so back-pressure freezes the whole
    pipeline and no value is lost. Initiation interval 1 while the consumer is ready.
    """

    def __init__(self, m: Module, stages: int, i_valid, o_ready, *, out_valid=None):
        self.enable = Signal(name="enable")
        self.valid = [Signal(name=f"valid{k}") for k in range(stages)]
        last = self.valid[-1] if out_valid is None else out_valid
        m.d.comb += self.enable.eq(~last | o_ready)
        with m.If(self.enable):
            m.d.sync += self.valid[0].eq(i_valid)
            for k in range(1, stages):
                m.d.sync += self.valid[k].eq(self.valid[k - 1])
