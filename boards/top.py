"""The board's top level without its clock and pins: the training engine and the UART
bridge that drives its host interface (``docs/host-link.md``).

The same component is what ``fxbp build`` places on a board (behind the PLL and the
platform's UART pins, ``boards/build.py``) and what ``--port sim://BOARD`` simulates
(``sim/board_sim.py``), so the simulated board is the board's own logic.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..hw.engine import Engine, EngineConfig
from ..hw.stream_register import StreamRegister
from .host_link import HostLinkBridge
from .uart import uart_divisor

__all__ = ["BoardTop"]


class BoardTop(wiring.Component):
    """The engine behind a CRC-checked UART link.

    Parameters
    ----------
    engine : EngineConfig
        The engine to build.
    clock_hz : int
        The engine clock (the ``sync`` domain).
    baud : int
        The line's baud rate; the bridge's divisor is ``round(clock_hz / baud)``
        (:func:`~fxbp.boards.uart.uart_divisor`: within 2 %, at least 4).
    max_words : int
        The bridge's largest request and reply, in 32-bit words.

    Members
    -------
    rx : In(1)
        The line from the host (idle high).
    tx : Out(1)
        The line to the host (idle high).
    """

    def __init__(self, engine: EngineConfig, *, clock_hz: int, baud: int, max_words: int = 256):
        if not isinstance(engine, EngineConfig):
            raise TypeError(f"engine must be an EngineConfig, not {engine!r}")
        self.divisor = uart_divisor(clock_hz=clock_hz, baud=baud)
        self.clock_hz, self.baud, self.max_words = clock_hz, baud, max_words
        self.engine = Engine(engine)
        # A partial frame is dropped after 2^20 cycles of silence (10 ms at 100 MHz), or
        # three bytes' time at slow baud rates.
        self.bridge = HostLinkBridge(divisor=self.divisor, max_words=max_words,
                                     idle_timeout=max(1 << 20, 30 * self.divisor))
        super().__init__({"rx": In(1), "tx": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = self.engine
        m.submodules.bridge = self.bridge
        if self.engine.config.shallow:
            # A slow clock (shallow units): the streams connect directly.
            wiring.connect(m, self.bridge.cmd, self.engine.cmd)
            wiring.connect(m, self.engine.rsp, self.bridge.rsp)
            m.d.comb += [self.bridge.rx.eq(self.rx), self.tx.eq(self.bridge.tx)]
            return m
        # Register slices both ways: the bridge's frame logic and the engine's host state
        # machine would otherwise form one combinational path (valid -> the engine's
        # command decode -> ready -> the bridge), the critical path of the ECP5 builds.
        m.submodules.cmd_register = cmd = StreamRegister(32)
        m.submodules.rsp_register = rsp = StreamRegister(32)
        for src, reg, dst in ((self.bridge.cmd, cmd, self.engine.cmd),
                              (self.engine.rsp, rsp, self.bridge.rsp)):
            m.d.comb += [reg.i.valid.eq(src.valid), reg.i.payload.data.eq(src.payload),
                         src.ready.eq(reg.i.ready),
                         dst.valid.eq(reg.o.valid), dst.payload.eq(reg.o.payload.data),
                         reg.o.ready.eq(dst.ready)]
        m.d.comb += [self.bridge.rx.eq(self.rx), self.tx.eq(self.bridge.tx)]
        return m
