"""A UART (8N1) for the board's host link: one transmitter, one receiver, byte streams.

``divisor`` is the number of clock cycles per bit. :func:`uart_divisor` picks it from the
clock and the baud rate and refuses a rate the divisor cannot give within 2 %
(``docs/host-link.md``, baud rates).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..hw.pipeline import check_int
from ..sw.errors import FxbpError

__all__ = ["UARTTransmitter", "UARTReceiver", "uart_divisor", "MIN_DIVISOR", "MAX_BAUD_ERROR"]

#: The fewest clock cycles per bit: the receiver needs a mid-bit sample after the
#: two-flop synchroniser and the start-bit check.
MIN_DIVISOR = 4
#: The largest relative difference between the baud rate asked for and the one the
#: divisor gives. Sampling mid-bit tolerates about 5 % between the two ends over the ten
#: bits of a frame; 2 % at each end leaves room for the host's own clock error.
MAX_BAUD_ERROR = 0.02


def uart_divisor(*, clock_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clock_hz``: ``round(clock_hz / baud)``.

    Raises ``FxbpError`` (one line, with the fix) when the divisor is below
    :data:`MIN_DIVISOR` or the rate it gives, ``clock_hz / divisor``, is more than
    :data:`MAX_BAUD_ERROR` away from ``baud``.
    """
    if not isinstance(baud, int) or isinstance(baud, bool) or baud < 1:
        raise FxbpError(f"baud rate {baud!r} must be a positive integer: give e.g. 115200")
    if not clock_hz > 0:
        raise FxbpError(f"clock {clock_hz!r} Hz must be positive: give the engine's clock")
    divisor = max(1, round(clock_hz / baud))
    if divisor < MIN_DIVISOR:
        raise FxbpError(f"baud rate {baud} is too fast for a {clock_hz / 1e6:g} MHz clock "
                        f"({MIN_DIVISOR} cycles per bit at least): give at most "
                        f"{int(clock_hz // MIN_DIVISOR)}")
    actual = clock_hz / divisor
    error = abs(actual - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise FxbpError(f"baud rate {baud} is {error:.1%} off at a {clock_hz / 1e6:g} MHz clock "
                        f"(divisor {divisor} gives {actual:.0f}): choose a rate within "
                        f"{MAX_BAUD_ERROR:.0%} of {clock_hz / 1e6:g} MHz / n")
    return divisor


def _check_divisor(what: str, divisor) -> int:
    return check_int(f"{what} divisor", divisor, low=MIN_DIVISOR)


class UARTTransmitter(wiring.Component):
    """Sends bytes as 8N1 frames: a start bit (0), eight data bits LSB first, a stop bit (1).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    data : In(stream.Signature(8))
        The bytes to send; ``ready`` while the line is free (also during the last cycle of
        a stop bit, so bytes sent back to back take exactly ``10 * divisor`` cycles each).
    tx : Out(1)
        The serial line, registered, idle high.

    Latency
    -------
    The start bit begins on ``tx`` one cycle after a byte is accepted; each bit lasts
    ``divisor`` cycles.
    """

    def __init__(self, *, divisor: int):
        self.divisor = _check_divisor("UART transmitter", divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        shift = Signal(9)                     # data bits then the stop bit, LSB next out
        bits = Signal(range(11))              # bits still to finish, the current one included
        timer = Signal(range(d))
        m.d.comb += self.data.ready.eq((bits == 0) | ((bits == 1) & (timer == 0)))
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq(Cat(self.data.payload, Const(1, 1))), bits.eq(10),
                         timer.eq(d - 1), self.tx.eq(0)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [timer.eq(d - 1), bits.eq(bits - 1), shift.eq(shift >> 1)]
                with m.If(bits == 1):
                    m.d.sync += self.tx.eq(1)
                with m.Else():
                    m.d.sync += self.tx.eq(shift[0])
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTReceiver(wiring.Component):
    """Receives 8N1 frames into bytes.

    The line goes through a two-flop synchroniser. A falling edge starts a frame; the
    start bit is sampled again half a bit later and the frame is abandoned when the line
    is high by then (a glitch shorter than half a bit is ignored). Data bits are sampled
    in the middle of each bit. A low stop bit is a framing error: the byte is dropped,
    ``framing_error`` pulses, and the receiver waits for the line to go high before it
    looks for the next start bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : In(1)
        The serial line, idle high (asynchronous to the clock).
    data : Out(stream.Signature(8))
        Received bytes; ``valid`` is held until ``ready``. A byte that completes while
        the previous one still waits replaces it and pulses ``overrun``.
    framing_error : Out(1)
        One-cycle pulse: a frame's stop bit was low, its byte was dropped.
    overrun : Out(1)
        One-cycle pulse: a byte replaced one that was not taken.

    Latency
    -------
    A byte is ``valid`` ``3 + divisor // 2 + 9 * divisor`` cycles after the first low
    cycle of its start bit on ``rx``: two synchroniser flops and the edge, then the
    middle of the stop bit.
    """

    def __init__(self, *, divisor: int):
        self.divisor = _check_divisor("UART receiver", divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8)),
                          "framing_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1, stages=2)
        timer = Signal(range(d))
        shift = Signal(8)
        bit = Signal(range(8))
        done = Signal()                       # a good byte this cycle
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.If(done):
            m.d.sync += [self.data.valid.eq(1), self.data.payload.eq(shift)]
            m.d.comb += self.overrun.eq(self.data.valid & ~self.data.ready)
        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"               # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(d - 1), shift.eq(Cat(shift[1:], line)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.d.comb += done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m
