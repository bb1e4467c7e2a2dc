"""The host side of the link (sw/host_link.py) against BridgeModel, with faults injected."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from fxbp.hw.engine.config import Err, Mem, Op, status_word
from fxbp.sw.engine_host import Program
from fxbp.sw.errors import FxbpError
from fxbp.sw.host_link import (ACK, EXEC, FRAME_OVERHEAD, INFO, NAK, NAK_CRC, VERSION,
                               BridgeModel, HostLink, LinkInfo, encode_frame, line_bytes,
                               open_port, plan_frames)

from link_helpers import ID_WORDS, MiniEngine

DOC = Path(__file__).resolve().parents[1] / "docs" / "host-link.md"


class FaultyPort:
    """A serial port wired to a BridgeModel; ``faults`` maps ("req"|"rep", n) to a function
    of the n-th request write / n-th reply frame that returns the bytes actually delivered
    (or a list of byte strings, delivered one after the other)."""

    baudrate = 115200

    def __init__(self, model, faults=None, *, every_request=None, every_reply=None):
        self.model, self.faults = model, dict(faults or {})
        self.every_request, self.every_reply = every_request, every_reply
        self.rx = bytearray()
        self.timeout = None
        self.n = {"req": 0, "rep": 0}

    def _fault(self, side, data):
        n = self.n[side]
        self.n[side] += 1
        every = self.every_request if side == "req" else self.every_reply
        f = self.faults.get((side, n), every)
        out = f(data) if f else data
        return out if isinstance(out, list) else [out]

    def write(self, data):
        for chunk in self._fault("req", bytes(data)):
            reply = self.model.feed(chunk)
            if reply:
                for r in self._fault("rep", reply):
                    self.rx += r

    def read(self, n):
        if len(self.rx) < n:
            self.model.idle()              # the host waits: the line stays quiet
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def reset_input_buffer(self):
        self.rx.clear()

    def flush(self):
        self.flushes = getattr(self, "flushes", 0) + 1


def flip_bit(k):
    def f(data):
        b = bytearray(data)
        b[(k // 8) % len(b)] ^= 1 << (k % 8)
        return bytes(b)
    return f


def drop_byte(k):
    return lambda data: data[:k] + data[k + 1:]


def stall_after(k):
    return lambda data: data[:k]


def twice(data):
    return [data, data]


def link_for(faults=None, *, max_words=256, retries=8, **kw):
    engine = MiniEngine()
    model = BridgeModel(engine, max_words=max_words, idle_timeout=1 << 20, divisor=868)
    port = FaultyPort(model, faults, **kw)
    return HostLink(port, retries=retries, slack_seconds=0.0), engine, model, port


def big_program():
    """A mix with a WMEM and an RMEM of 2,048 words each (split at 256-word frames)."""
    p = Program()
    p.ident()
    p.wreg(0, 8)
    p.wmem(Mem.W, 16, np.arange(-1024, 1024))
    p.train()
    p.rreg(3)
    p.rmem(Mem.W, 16, 2048)
    p.rmem(Mem.B, 0, 7)
    return p


def reference(prog):
    """What the engine answers to the program sent unsplit, in one stream."""
    return np.array(MiniEngine()(prog.encode()), dtype=np.uint64)


def test_frames_are_little_endian_with_crc32():
    frame = encode_frame(EXEC, 7, [1, 0x00000002, 2])
    assert frame[:2] == b"\xa5\x5a"
    assert frame[2:6] == bytes([EXEC, 7, 3, 0])
    assert frame[6:10] == b"\x01\x00\x00\x00"
    assert struct.unpack("<I", frame[-4:])[0] == zlib.crc32(frame[2:-4])
    assert len(frame) == FRAME_OVERHEAD + 12


def test_worked_frames_of_the_documentation():
    # docs/host-link.md: WREG batch 2 as EXEC seq 1, and its ACK
    req = encode_frame(EXEC, 1, [1, 0x00000002, 2])
    ack = encode_frame(ACK, 1, [status_word(Op.WREG, Err.OK)])
    text = DOC.read_text(encoding="utf-8")
    for frame in (req, ack):
        spaced = " ".join(f"{b:02x}" for b in frame)
        assert spaced in text
    model = BridgeModel(MiniEngine(), max_words=256)
    assert model.feed(req) == ack
    nak = encode_frame(NAK, 1, [NAK_CRC])
    assert model.feed(req[:-1] + bytes([req[-1] ^ 0x01])) == nak
    assert " ".join(f"{b:02x}" for b in nak) in text


def test_transact_equals_the_unsplit_stream():
    prog = big_program()
    link, engine, model, port = link_for()
    got = link.transact(prog, ID_WORDS)
    want = reference(prog)
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, want)
    answers = prog.decode(got, ID_WORDS)
    assert answers[5].tolist() == list(range(-1024, 1024))
    # split by address range: the WMEM into 9 commands, the RMEM into 9
    frames = plan_frames(prog, ID_WORDS, 256)
    assert sum(1 for f in frames for p in f.pieces if p.command == 2) == 9
    assert sum(1 for f in frames for p in f.pieces if p.command == 5) == 9
    assert all(1 + f.words <= 256 and f.expect <= 256 for f in frames)
    assert model.executed == len(frames)
    assert link.stats["retries"] == 0
    out, back = line_bytes(prog, ID_WORDS, 256)
    assert link.stats["bytes_out"] == out + FRAME_OVERHEAD            # + the INFO
    assert link.stats["bytes_in"] == back + FRAME_OVERHEAD + 16


def test_split_commands_merge_their_refusals():
    prog = Program()
    prog.rmem(Mem.W, (1 << 16) - 300, 600)      # the end lies outside the memory
    prog.wmem(Mem.B, (1 << 16) - 10, np.arange(600))
    link, *_ = link_for(max_words=64)
    got = link.transact(prog)
    assert got.size == prog.responses()
    assert int(got[600]) == status_word(Op.RMEM, Err.MEMORY)
    assert int(got[601]) == status_word(Op.WMEM, Err.MEMORY)
    with pytest.raises(FxbpError, match=r"refused RMEM 0 \[65236, \+600\): memory range"):
        prog.decode(got)
    with pytest.raises(FxbpError, match=r"refused RMEM 0 \[65236, \+600\): memory range"):
        prog.decode(reference(prog))


def test_small_buffer_splits_every_size_the_same():
    prog = Program()
    for n in (1, 2, 3, 4, 5, 6, 7, 60, 61, 62, 63, 64, 65, 200):
        prog.wmem(Mem.A, 1000 + n, np.arange(n) - 3)
        prog.rmem(Mem.A, 1000 + n, n)
    link, *_ = link_for(max_words=8)
    np.testing.assert_array_equal(link.transact(prog), reference(prog))


def test_a_command_that_cannot_be_split_is_refused_clearly():
    prog = Program()
    prog.ident()
    link, *_ = link_for(max_words=6)
    with pytest.raises(FxbpError, match=r"^ID needs 1 command words and 7 reply words, more "
                                        r"than the board's 6-word frames: rebuild"):
        link.transact(prog, ID_WORDS)


FAULTS = {
    "flipped request bit": {("req", 2): flip_bit(8 * 30 + 5)},
    "flipped header bit": {("req", 2): flip_bit(8 * 4 + 1)},      # the length: oversize
    "dropped request byte": {("req", 3): drop_byte(100)},
    "stalled request": {("req", 1): stall_after(20)},
    "duplicated request": {("req", 2): twice},
    "flipped reply bit": {("rep", 4): flip_bit(8 * 20 + 2)},
    "dropped reply byte": {("rep", 2): drop_byte(7)},
    "stalled reply": {("rep", 12): stall_after(300)},
    "lost reply": {("rep", 3): lambda d: b""},
    "duplicated reply": {("rep", 2): twice},
    "garbage before the reply": {("rep", 6): lambda d: b"\x00\xa5\xa5\x5a\x06\xff" + d},
    "wrong seq": {("rep", 7): lambda d: encode_frame(ACK, d[3] + 1,
                                                    struct.unpack(f"<{(len(d) - 10) // 4}I",
                                                                  d[6:-4]))},
    "everything once": {("req", 1): flip_bit(77), ("rep", 2): drop_byte(3),
                        ("req", 4): twice, ("rep", 5): twice, ("req", 7): stall_after(9),
                        ("rep", 8): flip_bit(9)},
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_faults_are_retried_and_change_nothing(name):
    prog = big_program()
    clean, clean_engine, clean_model, _ = link_for()
    want = clean.transact(prog, ID_WORDS)
    link, engine, model, port = link_for(FAULTS[name])
    got = link.transact(prog, ID_WORDS)
    np.testing.assert_array_equal(got, want)
    assert link.stats["retries"] >= 1
    assert port.flushes == link.stats["retries"]     # the request left before the wait
    # nothing ran twice: TRAIN once, and the same commands in the same order
    assert engine.commands == clean_engine.commands
    assert engine.regs[3] == 1
    assert engine.mems == clean_engine.mems


def test_a_persistent_request_fault_ends_in_one_clear_error():
    prog = big_program()
    link, engine, model, port = link_for(every_request=flip_bit(8 * 12 + 3), retries=3)
    link.limits = LinkInfo(VERSION, 256, 1 << 20, 868)      # INFO skipped: the EXEC fails
    with pytest.raises(FxbpError) as exc:
        link.transact(prog, ID_WORDS)
    msg = str(exc.value)
    assert "\n" not in msg
    assert re.match(r"host link: frame 0 \(EXEC ID, WREG 0x00\) "
                    r"failed 4 times, last: NAK \(bad CRC\): check the port, the baud rate "
                    r"\(115200\)", msg), msg
    assert engine.commands == []                     # a corrupted frame never ran
    assert port.n["req"] == 4


def test_a_persistent_reply_fault_never_runs_a_command_twice():
    prog = Program()
    prog.train()
    link, engine, model, port = link_for(every_reply=flip_bit(8 * 7), retries=5)
    link.limits = LinkInfo(VERSION, 256, 1 << 20, 868)
    with pytest.raises(FxbpError, match=r"failed 6 times, last: reply with a bad CRC"):
        link.transact(prog)
    assert engine.commands == [(Op.TRAIN, 0)]       # run once, its ACK re-sent five times
    assert port.n["rep"] == 6


def test_a_dead_line_times_out():
    link, engine, model, port = link_for(every_request=lambda d: b"", retries=2)
    with pytest.raises(FxbpError, match=r"frame 0 \(INFO\) failed 3 times, last: no complete "
                                        r"reply within"):
        link.info()


def test_info_reports_the_bridge_and_checks_the_version():
    link, *_ = link_for(max_words=64)
    info = link.info()
    assert info == LinkInfo(VERSION, 64, 1 << 20, 868)
    assert info.idle_bits == (1 << 20) / 868
    engine = MiniEngine()
    model = BridgeModel(engine)
    port = FaultyPort(model, every_reply=lambda d: encode_frame(ACK, d[3], [VERSION + 1, 256,
                                                                             1 << 20, 8]))
    with pytest.raises(FxbpError, match=rf"^the board speaks host-link version {VERSION + 1}, "
                                        rf"this fxbp speaks {VERSION}: build and flash"):
        HostLink(port).info()


def test_duplicates_are_answered_from_the_stored_reply():
    engine = MiniEngine()
    model = BridgeModel(engine, max_words=16)
    prog = Program()
    prog.train()
    req = encode_frame(EXEC, 9, [1, *prog.encode()])
    first = model.feed(req)
    assert model.feed(req) == first
    assert engine.regs[3] == 1 and model.executed == 1
    assert model.feed(encode_frame(INFO, 9))[2] == ACK     # INFO ends the window
    assert model.feed(req) == first and engine.regs[3] == 2


def test_bad_arguments_and_ports():
    model = BridgeModel(MiniEngine())
    port = FaultyPort(model)
    with pytest.raises(FxbpError, match=r"retries must be a whole number >= 0, not -1$"):
        HostLink(port, retries=-1)
    with pytest.raises(FxbpError, match=r"baud rate 'fast' must be a positive integer"):
        HostLink(port, baud="fast")
    with pytest.raises(FxbpError, match=r"^cannot open the serial port /nonexistent/ttyFXBP: "
                                        r".*: check the device name") as exc:
        open_port("/nonexistent/ttyFXBP", 115200)
    assert "\n" not in str(exc.value)
    loop = open_port("loop://", 9600)
    try:
        assert loop.baudrate == 9600
    finally:
        loop.close()
    # INFO is sent at once, then the EXEC frame; the answer of the engine is unchanged
    assert INFO != EXEC and ACK != NAK


def test_a_real_pyserial_port_through_a_pty():
    """HostLink on a pyserial Serial (real timeouts): the far end of a pty runs the model,
    and loses one reply; the retry after a real timeout gets the stored reply."""
    import os
    import select
    import threading

    serial = pytest.importorskip("serial")
    master, slave = os.openpty()
    engine = MiniEngine()
    model = BridgeModel(engine, max_words=64, idle_timeout=1 << 12, divisor=868)
    stop = threading.Event()
    replies = []

    def far_end():
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.005)
            if not ready:
                model.idle()
                continue
            reply = model.feed(os.read(master, 4096))
            if reply:
                replies.append(reply)
                if len(replies) != 3:                  # the third reply is lost
                    os.write(master, reply)

    thread = threading.Thread(target=far_end, daemon=True)
    thread.start()
    port = serial.Serial(os.ttyname(slave), 115200, timeout=1.0)
    try:
        prog = Program()
        prog.wmem(Mem.W, 0, np.arange(100) - 50)
        prog.train()
        prog.rmem(Mem.W, 0, 100)
        link = HostLink(port, retries=4, slack_seconds=0.3)
        got = link.transact(prog)
        np.testing.assert_array_equal(got, reference(prog))
        assert link.stats["retries"] >= 1
        assert engine.regs[3] == 1                      # TRAIN ran once
    finally:
        stop.set()
        thread.join(1.0)
        port.close()
        os.close(master)
        os.close(slave)
