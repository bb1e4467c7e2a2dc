# amaranth: UnusedElaboratable=no
"""The board UART (boards/uart.py): loopback, timing, framing errors, glitches, baud error."""

from __future__ import annotations

import pytest

pytest.importorskip("amaranth")

from amaranth.hdl import Module  # noqa: E402
from amaranth.sim import Simulator  # noqa: E402

from fxbp.boards.uart import (MAX_BAUD_ERROR, UARTReceiver, UARTTransmitter,  # noqa: E402
                              uart_divisor)
from fxbp.sw.errors import FxbpError  # noqa: E402

from link_helpers import uart_levels  # noqa: E402

#: Bytes that exercise every bit position both ways and both line levels at the ends.
DESIGNED = bytes([0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0x7F, 0xFE, 0x0F, 0xF0]
                 + [1 << i for i in range(8)] + [0xFF ^ (1 << i) for i in range(8)])


def loopback(data: bytes, *, tx_divisor: int, rx_divisor: int, gap: int = 0):
    """Bytes sent by a transmitter into a receiver; returns (received, cycles of each
    accepted byte at the transmitter, cycles of each received byte, framing errors)."""
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor=tx_divisor)
    m.submodules.rx = rx = UARTReceiver(divisor=rx_divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    out = {"bytes": bytearray(), "sent": [], "got": [], "errors": 0}
    end = (len(data) + 2) * 10 * max(tx_divisor, rx_divisor) + len(data) * gap

    async def bench(ctx):
        todo = list(data)
        ctx.set(rx.data.ready, 1)
        wait = 0
        for t in range(end):
            offer = bool(todo) and wait == 0
            ctx.set(tx.data.valid, offer)
            if offer:
                ctx.set(tx.data.payload, todo[0])
            accepted = offer and ctx.get(tx.data.ready)
            if ctx.get(rx.data.valid):
                out["bytes"].append(ctx.get(rx.data.payload))
                out["got"].append(t)
            out["errors"] += ctx.get(rx.framing_error)
            await ctx.tick()
            if accepted:
                todo.pop(0)
                out["sent"].append(t)
                wait = gap
            elif wait:
                wait -= 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def drive(levels, *, divisor: int, settle: int = 0):
    """A receiver fed ``levels`` (one per cycle, then idle): (bytes, framing errors,
    cycles at which bytes appeared)."""
    dut = UARTReceiver(divisor=divisor)
    out = {"bytes": bytearray(), "errors": 0, "got": []}

    async def bench(ctx):
        ctx.set(dut.data.ready, 1)
        for t, level in enumerate(list(levels) + [1] * (settle or 12 * divisor)):
            ctx.set(dut.rx, level)
            if ctx.get(dut.data.valid):
                out["bytes"].append(ctx.get(dut.data.payload))
                out["got"].append(t)
            out["errors"] += ctx.get(dut.framing_error)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("divisor", [4, 5])
def test_loopback_every_byte_back_to_back(divisor):
    data = bytes(range(256))
    out = loopback(data, tx_divisor=divisor, rx_divisor=divisor)
    assert bytes(out["bytes"]) == data
    assert out["errors"] == 0
    # back to back: one byte every 10 bits exactly, on both sides
    assert {b - a for a, b in zip(out["sent"], out["sent"][1:])} == {10 * divisor}
    assert {b - a for a, b in zip(out["got"], out["got"][1:])} == {10 * divisor}


@pytest.mark.parametrize("divisor", [7, 16])
def test_loopback_designed_bytes(divisor):
    out = loopback(DESIGNED, tx_divisor=divisor, rx_divisor=divisor, gap=3)
    assert bytes(out["bytes"]) == DESIGNED
    assert out["errors"] == 0


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_receiver_latency(divisor):
    # the byte appears 3 + divisor // 2 + 9 * divisor cycles after the start edge: two
    # synchroniser flops and the edge, then the middle of the stop bit
    levels = [1] * 5 + uart_levels(b"\xa7", divisor)
    out = drive(levels, divisor=divisor)
    assert bytes(out["bytes"]) == b"\xa7"
    assert out["got"] == [5 + 3 + divisor // 2 + 9 * divisor]


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_framing_error_drops_the_byte_and_waits_for_idle(divisor):
    bad = uart_levels(b"\x3c", divisor)
    bad[-divisor:] = [0] * divisor                 # stop bit low
    levels = [1] * 3 + bad + [0] * (25 * divisor) + [1] * (2 * divisor) + \
        uart_levels(b"\xc3", divisor)
    out = drive(levels, divisor=divisor)
    assert out["errors"] == 1                     # the break after it is not a frame
    assert bytes(out["bytes"]) == b"\xc3"


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_glitch_shorter_than_half_a_bit_is_ignored(divisor):
    levels = [1] * 3
    for width in range(1, (divisor + 1) // 2):      # every width below divisor / 2
        levels += [0] * width + [1] * (12 * divisor)
    levels += uart_levels(b"\x5a", divisor)
    out = drive(levels, divisor=divisor)
    assert bytes(out["bytes"]) == b"\x5a"
    assert out["errors"] == 0
    # a low pulse of one bit is a start bit: the receiver reads 0xFF after it
    assert bytes(drive([1] * 3 + [0] * divisor, divisor=divisor)["bytes"]) == b"\xff"


@pytest.mark.parametrize("rx_divisor", [49, 51])
def test_two_percent_baud_error_between_the_ends(rx_divisor):
    data = bytes([0x00, 0x80, 0x01, 0xFF, 0x55, 0x7F])
    out = loopback(data, tx_divisor=50, rx_divisor=rx_divisor)
    assert bytes(out["bytes"]) == data
    assert out["errors"] == 0


def test_ten_percent_baud_error_is_detected_as_garbage():
    data = bytes([0x00, 0x80, 0x01, 0xFF, 0x55, 0x7F])
    out = loopback(data, tx_divisor=50, rx_divisor=55)
    assert bytes(out["bytes"]) != data


def test_uart_divisor_rule():
    assert uart_divisor(clock_hz=12e6, baud=3_000_000) == 4
    assert uart_divisor(clock_hz=12e6, baud=115_200) == 104         # 0.16 % off
    assert uart_divisor(clock_hz=48e6, baud=12_000_000) == 4
    # 1000 Hz: divisor 5 gives 200 baud; 197 and 204 are within 2 %, 196 and 205 not
    assert uart_divisor(clock_hz=1000, baud=197) == 5
    assert uart_divisor(clock_hz=1000, baud=204) == 5
    for baud in (196, 205):
        with pytest.raises(FxbpError, match=r"baud rate \d+ is 2\.\d% off") as exc:
            uart_divisor(clock_hz=1000, baud=baud)
        assert "\n" not in str(exc.value)
    assert MAX_BAUD_ERROR == 0.02
    with pytest.raises(FxbpError, match="too fast.*give at most 6250000"):
        uart_divisor(clock_hz=25e6, baud=12_000_000)
    with pytest.raises(FxbpError, match="positive integer"):
        uart_divisor(clock_hz=25e6, baud=0)
    with pytest.raises(FxbpError, match="positive"):
        uart_divisor(clock_hz=0, baud=9600)


@pytest.mark.parametrize("cls", [UARTTransmitter, UARTReceiver])
def test_bad_divisor_raises_with_its_repr(cls):
    with pytest.raises(ValueError, match=r"divisor must be at least 4, not 3$"):
        cls(divisor=3)
    for bad, text in [(4.0, "4.0"), ("8", "'8'"), (True, "True"), (None, "None")]:
        with pytest.raises(TypeError, match=f"divisor must be an integer, not {text}$"):
            cls(divisor=bad)
    with pytest.raises(TypeError):
        cls(8)                                     # keyword-only
