"""The simulated board's line (sim/board_sim.py): a pty served by a native model's UART,
opened with pyserial as a real port is, with faults injected on the line."""

from __future__ import annotations

import pytest

serial = pytest.importorskip("serial")

from fxbp.sim.board_sim import LineFaults, SimulatedBoard, parse_sim_url  # noqa: E402
from fxbp.sim.native import NativeLibrary  # noqa: E402
from fxbp.sw.errors import FxbpError  # noqa: E402

pytestmark = pytest.mark.sim

_LOOP = """module line_loop(input clk, input rst, input rx, output reg tx);
always @(posedge clk) tx <= rst ? 1'b1 : rx;
endmodule
"""


@pytest.fixture(scope="module")
def loop_lib(tmp_path_factory):
    return NativeLibrary.build(_LOOP, "line_loop", uart=("rx", "tx"),
                               cache_dir=tmp_path_factory.mktemp("native"), progress=False)


def _board(lib, **faults):
    m = lib.new()
    m.reset(2)
    return SimulatedBoard(m, clock_hz=48_000_000, baud=3_000_000, faults=LineFaults(**faults))


def test_a_pty_opened_with_pyserial_carries_every_byte(loop_lib):
    data = bytes(range(256)) * 8
    with _board(loop_lib) as board:
        port = serial.Serial(board.port, 3_000_000, timeout=5)
        port.write(data)
        got = port.read(len(data))
        port.close()
        board.check()
        assert got == data
        assert board.counts.to_board == board.counts.to_host == len(data)
        # 16 cycles a bit, 10 bits a byte, back to back
        assert board.counts.cycles >= 160 * len(data)


def test_faults_change_the_bytes_and_are_counted(loop_lib):
    data = bytes(range(256)) * 8
    with _board(loop_lib, flip=0.01, drop=0.01, seed=3) as board:
        port = serial.Serial(board.port, 3_000_000, timeout=1)
        port.write(data)
        got = port.read(len(data))
        port.close()
        c = board.counts
        assert c.flipped > 0 and c.dropped > 0
        assert len(got) == len(data) - c.dropped and got != data[:len(got)]


def test_a_duplicated_write_arrives_twice(loop_lib):
    with _board(loop_lib, dup=1.0) as board:
        port = serial.Serial(board.port, 3_000_000, timeout=1)
        port.write(b"frame")
        got = port.read(10)
        port.close()
        assert got == b"frameframe" and board.counts.duplicated == 1


def test_a_stall_holds_the_line_for_its_cycles(loop_lib):
    with _board(loop_lib, stall=1.0, stall_cycles=300_000) as board:
        port = serial.Serial(board.port, 3_000_000, timeout=5)
        port.write(b"late")
        got = port.read(4)
        port.close()
        assert got == b"late" and board.counts.stalled == 1
        assert board.counts.cycles >= 300_000


def test_sim_urls_and_fault_rates_are_checked():
    assert parse_sim_url("sim://ulx3s-25f?flip=0.1&seed=2") == ("ulx3s-25f", {"flip": "0.1", "seed": "2"})
    assert parse_sim_url("sim://icebreaker") == ("icebreaker", {})
    with pytest.raises(FxbpError, match="board name"):
        parse_sim_url("sim://")
    with pytest.raises(ValueError, match="flip=1.5"):
        LineFaults(flip=1.5)
