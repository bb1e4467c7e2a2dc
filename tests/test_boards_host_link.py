# amaranth: UnusedElaboratable=no
"""The host-link bridge (boards/host_link.py) in amaranth.sim at the bit level.

Its ``cmd``/``rsp`` are served by ``MiniEngine`` (docs/engine.md answers); the same designed
frame vectors go through ``BridgeModel`` and the bytes must be equal.
"""

from __future__ import annotations

import struct
import zlib

import pytest

pytest.importorskip("amaranth")

from amaranth.hdl import Module, Signal  # noqa: E402
from amaranth.sim import Simulator  # noqa: E402

from fxbp.boards.host_link import CRC32_RESIDUE, HostLinkBridge, crc32_byte  # noqa: E402
from fxbp.hw.engine.config import Op  # noqa: E402
from fxbp.sw.engine_host import Program  # noqa: E402
from fxbp.sw.host_link import (ACK, EXEC, INFO, NAK, NAK_CRC, NAK_LENGTH, NAK_REPLY,  # noqa: E402
                               NAK_TYPE, SYNC, VERSION, BridgeModel, HostLink, encode_frame)

from link_helpers import ID_WORDS, MiniEngine, run_bridge  # noqa: E402

MAX_WORDS = 16
IDLE = 100


def parse(frame: bytes):
    """(type, seq, words) of one reply frame, after checking its sync, length and CRC."""
    assert frame[:2] == SYNC
    kind, seq, length = struct.unpack("<BBH", frame[2:6])
    assert len(frame) == 10 + 4 * length
    assert zlib.crc32(frame[2:-4]) == struct.unpack("<I", frame[-4:])[0]
    return kind, seq, list(struct.unpack(f"<{length}I", frame[6:-4]))


def program_a():
    p = Program()
    p.wreg(0, 2)
    p.rreg(0)
    p.rmem(1, 5, 3)
    p.ident()
    return p


def exec_frame(seq, prog, *, id_words=ID_WORDS):
    return encode_frame(EXEC, seq, [prog.responses(id_words), *prog.encode()])


def flip(frame: bytes, bit: int) -> bytes:
    b = bytearray(frame)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def designed_vectors():
    """(name, request bytes, expected reply type, NAK reason or None, commands it runs)."""
    a = exec_frame(1, program_a())
    small = Program()
    small.wreg(1, 7)
    small.rreg(1)
    other = Program()
    other.wreg(1, 9)
    other.rreg(1)
    big = Program()                               # 15 command words, a 16-word reply
    big.wmem(2, 100, list(range(-4, 5)))
    big.rmem(2, 100, 14)
    assert big.encode().size == MAX_WORDS - 1 and big.responses() == MAX_WORDS
    return [
        ("info", encode_frame(INFO, 0), ACK, None, 0),
        ("exec", a, ACK, None, 4),
        ("duplicate", a, ACK, None, 0),
        ("flipped bit", flip(exec_frame(2, small), 8 * 9 + 3), NAK, NAK_CRC, 0),
        ("flipped crc", flip(exec_frame(2, small), 8 * 21), NAK, NAK_CRC, 0),
        ("oversize", encode_frame(EXEC, 2, [1] * (MAX_WORDS + 1))[:14], NAK, NAK_LENGTH, 0),
        ("unknown type", encode_frame(0x33, 2, [1, 2]), NAK, NAK_TYPE, 0),
        ("exec without count", encode_frame(EXEC, 2), NAK, NAK_LENGTH, 0),
        ("info with payload", encode_frame(INFO, 2, [0]), NAK, NAK_LENGTH, 0),
        ("reply too large", encode_frame(EXEC, 2, [MAX_WORDS + 1, 0]), NAK, NAK_REPLY, 0),
        ("stalled", exec_frame(3, small)[:9], None, None, 0),
        ("after the stall", exec_frame(3, small), ACK, None, 2),
        ("garbage first", b"\x00\xa5\x13\xa5" + exec_frame(4, small), ACK, None, 2),
        ("same seq, other payload", exec_frame(4, other), ACK, None, 2),
        ("same again", exec_frame(4, other), ACK, None, 0),
        ("info ends the duplicate window", encode_frame(INFO, 5), ACK, None, 0),
        ("same seq after info", exec_frame(4, other), ACK, None, 2),
        ("full frame", exec_frame(6, big), ACK, None, 2),
    ]


@pytest.fixture(scope="module")
def bench_run():
    vectors = designed_vectors()
    replies, engine, cycles = run_bridge([v[1] for v in vectors], max_words=MAX_WORDS,
                                         idle_timeout=IDLE)
    return vectors, replies, engine


def model_replies(vectors, max_words=MAX_WORDS):
    engine = MiniEngine()
    model = BridgeModel(engine, max_words=max_words, idle_timeout=IDLE, divisor=4)
    out = []
    for v in vectors:
        out.append(model.feed(v[1]))
        model.idle()                  # the bench waits longer than the idle timeout
    return out, engine


def test_crc32_byte_matches_zlib():
    crc = Signal(32, init=0xFFFFFFFF)
    byte = Signal(8)
    en = Signal()
    m = Module()
    with m.If(en):
        m.d.sync += crc.eq(crc32_byte(crc, byte))
    inputs = [b"123456789", bytes(range(256)), b"\x00" * 8, b"\xff" * 8, b"\x80\x01"]
    seen = []

    async def bench(ctx):
        for data in inputs:
            ctx.set(en, 0)
            await ctx.tick()
            ctx.set(crc, 0xFFFFFFFF)
            ctx.set(en, 1)
            for b in data + struct.pack("<I", zlib.crc32(data)):
                ctx.set(byte, b)
                await ctx.tick()
                seen.append(ctx.get(crc))
    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    at = 0
    for data in inputs:
        for n in range(1, len(data) + 1):
            assert seen[at] ^ 0xFFFFFFFF == zlib.crc32(data[:n])
            at += 1
        assert seen[at + 3] == CRC32_RESIDUE       # the message with its own CRC
        at += 4
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_bridge_bytes_equal_the_model(bench_run):
    vectors, replies, engine = bench_run
    expected, model_engine = model_replies(vectors)
    for (name, *_), got, want in zip(vectors, replies, expected):
        assert got == want, name
    assert engine.commands == model_engine.commands


def test_bridge_answers_each_designed_frame(bench_run):
    vectors, replies, engine = bench_run
    ran = 0
    for (name, request, kind, reason, commands), reply in zip(vectors, replies):
        if kind is None:
            assert reply == b"", name
            continue
        got_kind, seq, words = parse(reply)
        assert got_kind == kind, name
        assert seq == request[request.index(SYNC) + 3], name   # the request's, NAKs too
        if kind == NAK:
            assert words == [reason], name
        ran += commands
    assert len(engine.commands) == ran                   # NAKs and duplicates ran nothing
    info = parse(replies[0])[2]
    assert info == [VERSION, MAX_WORDS, IDLE, 4]
    # the EXEC's answer is exactly what the engine sent, and decodes
    prog = program_a()
    words = parse(replies[1])[2]
    assert replies[2] == replies[1]                      # the duplicate: the stored reply
    answers = prog.decode(words, ID_WORDS)
    assert answers[1].tolist() == [2]
    assert answers[2].tolist() == [0x05050505, 0x06060606, 0x07070707]
    # the largest frame and reply fill the buffers: 9 written values read back
    full = parse(replies[-1])[2]
    assert len(full) == MAX_WORDS
    assert [w - (1 << 32) if w >> 31 else w for w in full[1:10]] == list(range(-4, 5))
    # the oversize frame is refused after its header, before its payload arrived
    assert engine.commands[:4] == [(Op.WREG, 0), (Op.RREG, 0), (Op.RMEM, 1), (Op.ID, 0)]


def test_back_pressure_on_cmd_and_gaps_on_rsp_change_nothing(bench_run):
    vectors, replies, _ = bench_run
    pick = [1, 11, 12, 17]
    slow, engine, _ = run_bridge([vectors[i][1] for i in pick], max_words=MAX_WORDS,
                                 idle_timeout=IDLE, cmd_ready=lambda t: t % 3 == 0 and t % 7 > 2,
                                 rsp_gap=lambda t: t % 5 < 3 or 40 <= t % 97 < 70)
    for i, got in zip(pick, slow):
        # seq 4's frame runs once here (no stall before), the others as above
        assert got == replies[i], vectors[i][0]
    assert len(engine.commands) == 4 + 2 + 2 + 2


def test_glitches_between_frames_are_ignored():
    small = Program()
    small.wreg(1, 7)
    small.rreg(1)
    frames = [exec_frame(1, small), exec_frame(2, small)]
    got, engine, _ = run_bridge(frames, max_words=MAX_WORDS, idle_timeout=IDLE,
                                glitches=[(0, 150, 1), (0, 160, 1)])
    want, _ = model_replies([(None, f) for f in frames])
    assert got == want
    assert len(engine.commands) == 4


def test_every_flipped_bit_of_a_reply_is_refused_by_the_host(bench_run):
    _, replies, _ = bench_run
    reply = replies[1]                     # the ACK of seq 1

    class Port:
        baudrate = 115200
        timeout = 0

        def __init__(self, data):
            self.data = bytearray(data)

        def read(self, n):
            out, self.data[:n] = bytes(self.data[:n]), b""
            return out

    link = HostLink(Port(b""), retries=0)
    link.seq = 1
    expect = len(parse(reply)[2])
    link.port = Port(reply)
    assert link._reply(1e18, 1.0, expect) == parse(reply)[2]
    for bit in range(16, 8 * len(reply)):      # every bit after the sync
        link.port = Port(flip(reply, bit))
        with pytest.raises(Exception) as exc:
            link._reply(1e18, 1.0, expect)
        assert type(exc.value).__name__ == "_Fault"


def test_bridge_parameters_are_checked_with_their_repr():
    with pytest.raises(ValueError, match="divisor must be at least 4, not 2$"):
        HostLinkBridge(divisor=2)
    with pytest.raises(TypeError, match="max_words must be an integer, not 256.0$"):
        HostLinkBridge(divisor=8, max_words=256.0)
    with pytest.raises(ValueError, match="max_words must be 4 to 65535, not 65536$"):
        HostLinkBridge(divisor=8, max_words=65536)
    with pytest.raises(ValueError, match="idle_timeout must be 160 to 4294967295, not 159$"):
        HostLinkBridge(divisor=8, idle_timeout=159)
    with pytest.raises(TypeError):
        HostLinkBridge(8)
    bridge = HostLinkBridge(divisor=8)
    assert bridge.max_words == 256 and bridge.idle_timeout == 1 << 20


def test_idle_timeout_boundary():
    # bytes valid 40 cycles apart (divisor 4) plus the pause: up to IDLE = 100 cycles of
    # silence inside a frame is allowed, one more drops the frame
    small = Program()
    small.wreg(1, 7)
    frame = exec_frame(1, small)
    limit = IDLE - 10 * 4
    got, engine, _ = run_bridge([frame, frame, exec_frame(2, small)], max_words=MAX_WORDS,
                                idle_timeout=IDLE,
                                pauses={(0, 11): limit + 1, (1, 11): limit})
    assert got[0] == b""                              # dropped, nothing ran
    assert parse(got[1])[0] == ACK                    # the same frame with a pause 1 shorter
    assert parse(got[2])[0] == ACK
    assert len(engine.commands) == 2


def test_full_buffers_at_the_default_size():
    # max_words = 256: a 256-word request (WMEM of 252 values) and a 256-word reply
    written = [(-1) ** i * (i * 0x01020305) for i in range(252)]
    write = Program()
    write.wmem(2, 3000, written)
    read = Program()
    read.rmem(2, 3000, 255)
    assert write.encode().size == 255 and read.responses() == 256
    frames = [exec_frame(1, write), exec_frame(2, read)]
    got, engine, _ = run_bridge(frames, max_words=256, idle_timeout=IDLE)
    want, _ = model_replies([(None, f) for f in frames], max_words=256)
    assert got == want
    values = read.decode(parse(got[1])[2])[0]
    assert values[:252].tolist() == [((v & 0xFFFFFFFF) ^ 1 << 31) - (1 << 31) for v in written]
    assert len(engine.commands) == 2
