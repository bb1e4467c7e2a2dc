"""The host side of the board's UART link (``docs/host-link.md``).

Frames carry engine commands (``docs/engine.md``, host interface) to the bridge in
``boards/host_link.py`` and its answers back, each frame checked by a CRC-32. A request is
answered by exactly one frame: an ACK carrying the engine's response words, or a NAK with
a reason. :class:`HostLink` splits a :class:`~fxbp.sw.engine_host.Program` into frames,
retries what fails and returns exactly the words the engine sent, so
``Program.decode`` works unchanged. :class:`BridgeModel` is a byte-exact reference model
of the bridge, for tests.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..hw.engine.config import STATUS_MARK, Op
from .errors import FxbpError

__all__ = ["SYNC", "EXEC", "INFO", "ACK", "NAK", "VERSION", "NAK_CRC", "NAK_LENGTH", "NAK_TYPE",
           "NAK_REPLY", "NAK_NAMES", "FRAME_OVERHEAD", "INFO_WORDS", "crc32", "encode_frame",
           "LinkInfo", "HostLink", "BridgeModel", "open_port", "plan_frames", "line_bytes"]

#: The two bytes that start every frame, both directions.
SYNC = b"\xa5\x5a"
#: Frame types. Requests: EXEC (engine commands), INFO (the bridge's limits).
EXEC = 0x45
INFO = 0x49
#: Replies: ACK (the answer), NAK (the request was not executed; payload: the reason).
ACK = 0x06
NAK = 0x15
#: The protocol version the INFO answer carries.
VERSION = 1
#: NAK reasons (the NAK's one payload word).
NAK_CRC = 1        # the CRC does not match
NAK_LENGTH = 2     # length over max_words, an EXEC without its reply count, an INFO with payload
NAK_TYPE = 3       # unknown frame type
NAK_REPLY = 4      # an EXEC expects more reply words than max_words
NAK_NAMES = {NAK_CRC: "bad CRC", NAK_LENGTH: "wrong length", NAK_TYPE: "unknown frame type",
             NAK_REPLY: "reply larger than the bridge's buffer"}
#: Bytes of a frame besides its payload: sync (2), type, seq, length (2), CRC-32 (4).
FRAME_OVERHEAD = 10
#: Words of the INFO answer: VERSION, max_words, idle_timeout, divisor.
INFO_WORDS = 4

_OK = {op: (STATUS_MARK << 24) | op for op in range(256)}
_BITS_PER_BYTE = 10                   # 8N1


def crc32(data: bytes) -> int:
    """The frames' CRC: CRC-32 (IEEE 802.3, ``zlib.crc32``) over type to payload."""
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_frame(kind: int, seq: int, words=()) -> bytes:
    """One frame: sync, ``kind``, ``seq``, length (words, LE), payload words (LE), CRC-32 (LE)."""
    words = [int(w) & 0xFFFFFFFF for w in words]
    body = struct.pack(f"<BBH{len(words)}I", kind & 0xFF, seq & 0xFF, len(words), *words)
    return SYNC + body + struct.pack("<I", crc32(body))


@dataclass(frozen=True)
class LinkInfo:
    """What the bridge answered to INFO."""
    version: int
    max_words: int          # the largest request payload and the largest reply, in words
    idle_timeout: int       # cycles of silence after which a partial frame is dropped
    divisor: int            # clock cycles per bit

    @property
    def idle_bits(self) -> float:
        """The idle timeout in bit times of the line."""
        return self.idle_timeout / self.divisor


# --------------------------------------------------------------------------- planning
@dataclass
class _Piece:
    command: int            # index in the program
    words: np.ndarray       # the piece's command words
    answer: int             # data words before its status word


@dataclass
class _Frame:
    pieces: list = field(default_factory=list)
    words: int = 0
    expect: int = 0

    def payload(self) -> list[int]:
        return [self.expect] + [int(w) for p in self.pieces for w in p.words]


def _pieces(index: int, c, id_words: int, max_words: int) -> list[_Piece]:
    """One command, split by address range when it does not fit a frame."""
    answer = id_words if c.answer < 0 else c.answer
    words = np.asarray(c.words, dtype=np.uint64)
    cap = max_words - 1                          # command words of a frame after the count
    if words.size <= cap and answer + 1 <= max_words:
        return [_Piece(index, words, answer)]
    head, addr = int(words[0]), int(words[1]) if words.size > 1 else 0
    if c.op == Op.WMEM and words.size > 3 and cap > 3:
        values, step = words[3:], cap - 3
        return [_Piece(index, np.concatenate([np.array([head, (addr + at) & 0xFFFFFFFF,
                                                        min(step, values.size - at)],
                                                       dtype=np.uint64), values[at:at + step]]),
                       0) for at in range(0, values.size, step)]
    if c.op == Op.RMEM and words.size == 3:
        step = max_words - 1
        return [_Piece(index, np.array([head, (addr + at) & 0xFFFFFFFF, min(step, answer - at)],
                                       dtype=np.uint64), min(step, answer - at))
                for at in range(0, answer, step)]
    raise FxbpError(f"{c.what} needs {words.size} command words and {answer + 1} reply words, "
                    f"more than the board's {max_words}-word frames: rebuild the board with a "
                    f"larger host-link buffer")


def plan_frames(program, id_words: int, max_words: int) -> list[_Frame]:
    """The frames of ``program``: whole commands in order, each frame at most ``max_words``
    payload words (the reply count first) and ``max_words`` reply words; a WMEM or RMEM
    larger than a frame is split by address range into several commands."""
    frames, frame = [], _Frame()
    for index, c in enumerate(program.commands):
        for p in _pieces(index, c, id_words, max_words):
            if frame.pieces and (1 + frame.words + p.words.size > max_words
                                 or frame.expect + p.answer + 1 > max_words):
                frames.append(frame)
                frame = _Frame()
            frame.pieces.append(p)
            frame.words += p.words.size
            frame.expect += p.answer + 1
    if frame.pieces:
        frames.append(frame)
    return frames


def line_bytes(program, id_words: int, max_words: int) -> tuple[int, int]:
    """Bytes on the line for ``program`` without faults: (host to board, board to host)."""
    frames = plan_frames(program, id_words, max_words)
    out = sum(FRAME_OVERHEAD + 4 * (1 + f.words) for f in frames)
    back = sum(FRAME_OVERHEAD + 4 * f.expect for f in frames)
    return out, back


def _merge(program, frames, replies) -> np.ndarray:
    """The engine's answers to ``program`` from the answers to its pieces: a split command's
    data words in order, then the first status word that is not OK (or the first one)."""
    data = [[] for _ in program.commands]
    status = [None] * len(program.commands)
    for frame, reply in zip(frames, replies):
        at = 0
        for p in frame.pieces:
            data[p.command].extend(reply[at:at + p.answer])
            word = reply[at + p.answer]
            at += p.answer + 1
            op = program.commands[p.command].op
            if status[p.command] is None or (status[p.command] == _OK[op] and word != _OK[op]):
                status[p.command] = word
    out = []
    for d, s in zip(data, status):
        out.extend(d)
        out.append(s)
    return np.array(out, dtype=np.uint64)


# --------------------------------------------------------------------------- host
class _Fault(Exception):
    """One try failed; the message is the reason."""


class HostLink:
    """Talks to the board's bridge over a serial port.

    Parameters
    ----------
    port
        A pyserial ``Serial``-like object: ``write(bytes)``, ``read(n)`` honouring
        ``port.timeout``, ``reset_input_buffer()`` (and ``baudrate``, unless ``baud`` is
        given).
    retries : int
        Times a frame is sent again after a NAK, a CRC error, a timeout, a wrong sequence
        number or garbage, before :class:`FxbpError`.
    baud : int, optional
        The line's rate for the reply timeouts; ``port.baudrate`` by default. Give the
        effective rate when the far end is slower than real time (a simulation).
    slack_seconds : float
        Added to every reply timeout (USB latency, scheduling).
    """

    def __init__(self, port, *, retries: int = 8, baud: int | None = None,
                 slack_seconds: float = 0.25):
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise FxbpError(f"host-link retries must be a whole number >= 0, not {retries!r}")
        baud = baud if baud is not None else getattr(port, "baudrate", None)
        if not isinstance(baud, int) or isinstance(baud, bool) or baud < 1:
            raise FxbpError(f"host-link baud rate {baud!r} must be a positive integer: give "
                            f"baud= or a port with a baudrate")
        self.port, self.retries, self.baud = port, retries, baud
        self.slack_seconds = float(slack_seconds)
        self.seq = 0
        self.limits: LinkInfo | None = None
        #: Frames sent (first tries and retries), retries, bytes written and read.
        self.stats = {"frames": 0, "retries": 0, "bytes_out": 0, "bytes_in": 0}

    # ------------------------------------------------------------ public
    def info(self) -> LinkInfo:
        """INFO: the bridge's protocol version and buffer size. It also ends the bridge's
        duplicate window, so a new session's first EXEC always runs."""
        words = self._exchange(INFO, [], INFO_WORDS, "INFO", 0.0)
        info = LinkInfo(*words)
        if info.version != VERSION:
            raise FxbpError(f"the board speaks host-link version {info.version}, this fxbp "
                            f"speaks {VERSION}: build and flash the board with this fxbp")
        if info.max_words < 4 or info.divisor < 1:
            raise FxbpError(f"the board's INFO answer {words} is not valid: check that the "
                            f"port is the fxbp board's")
        self.limits = info
        self.seq = (self.seq + 1) & 0xFF
        return info

    def transact(self, program, id_words: int = 0, *, reply_seconds: float | None = None
                 ) -> np.ndarray:
        """Run ``program`` on the engine; the response words it sent (uint64), exactly
        ``program.responses(id_words)`` of them, for ``program.decode``.

        ``reply_seconds``: extra time allowed per frame for long engine commands (TRAIN,
        RUN)."""
        if self.limits is None:
            self.info()
        frames = plan_frames(program, id_words, self.limits.max_words)
        replies = []
        for frame in frames:
            what = ", ".join(program.commands[i].what
                             for i in dict.fromkeys(p.command for p in frame.pieces))
            if len(what) > 60:
                what = what[:57] + "..."
            replies.append(self._exchange(EXEC, frame.payload(), frame.expect, f"EXEC {what}",
                                          float(reply_seconds or 0.0)))
            self.seq = (self.seq + 1) & 0xFF
        return _merge(program, frames, replies)

    # ------------------------------------------------------------ frames
    def _byte_seconds(self, n: int) -> float:
        return n * _BITS_PER_BYTE / self.baud

    def _exchange(self, kind: int, payload, expect: int, what: str, extra: float) -> list:
        frame = encode_frame(kind, self.seq, payload)
        timeout = (1.5 * self._byte_seconds(len(frame) + FRAME_OVERHEAD + 4 * expect)
                   + self.slack_seconds + extra)
        tries = self.retries + 1
        reason = "no try"
        for attempt in range(tries):
            if attempt:
                self.stats["retries"] += 1
                self._recover()
            self.port.write(frame)
            self.stats["frames"] += 1
            self.stats["bytes_out"] += len(frame)
            try:
                return self._reply(time.monotonic() + timeout, timeout, expect)
            except _Fault as fault:
                reason = str(fault)
        raise FxbpError(f"host link: frame {self.seq} ({what}) failed {tries} times, last: "
                        f"{reason}: check the port, the baud rate ({self.baud}), the cable and "
                        f"that the board runs an fxbp bitstream")

    def _recover(self) -> None:
        """Before a retry: let the last request leave, wait until the line is quiet for
        longer than the bridge's idle timeout (so it has dropped a partial frame), then drop
        what came in."""
        flush = getattr(self.port, "flush", None)
        if flush is not None:
            flush()
        quiet = self._byte_seconds(3)
        if self.limits is not None:
            quiet += self.limits.idle_bits / self.baud
        else:
            quiet = max(quiet, 0.05)
        self.port.timeout = quiet
        for _ in range(1024):
            got = self.port.read(4096)
            self.stats["bytes_in"] += len(got)
            if not got:
                break
        self.port.reset_input_buffer()

    def _read(self, n: int, deadline: float, timeout: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Fault(f"no complete reply within {timeout:.3g} s")
        self.port.timeout = left
        data = self.port.read(n)
        self.stats["bytes_in"] += len(data)
        if len(data) < n:
            raise _Fault(f"no complete reply within {timeout:.3g} s"
                         + (" (the line stopped mid-frame)" if data else ""))
        return bytes(data)

    def _reply(self, deadline: float, timeout: float, expect: int) -> list:
        prev = b""
        while True:                                   # hunt for the sync, skipping garbage
            b = self._read(1, deadline, timeout)
            if prev == SYNC[:1] and b == SYNC[1:]:
                break
            prev = b
        head = self._read(4, deadline, timeout)
        kind, seq, length = struct.unpack("<BBH", head)
        if kind not in (ACK, NAK) or length > max(expect, 1):
            raise _Fault(f"garbage (type 0x{kind:02x}, length {length})")
        rest = self._read(4 * length + 4, deadline, timeout)
        if crc32(head + rest[:-4]) != struct.unpack("<I", rest[-4:])[0]:
            raise _Fault("reply with a bad CRC")
        if seq != self.seq:
            raise _Fault(f"reply for frame {seq}, not {self.seq}")
        words = list(struct.unpack(f"<{length}I", rest[:-4]))
        if kind == NAK:
            code = words[0] if words else 0
            raise _Fault(f"NAK ({NAK_NAMES.get(code, f'reason {code}')})")
        if length != expect:
            raise _Fault(f"reply of {length} words, expected {expect}")
        return words


def open_port(url: str, baud: int, *, timeout: float = 1.0):
    """A pyserial port for ``url`` (a device such as ``/dev/ttyUSB0``, or any URL
    ``serial.serial_for_url`` takes, e.g. ``socket://host:port``)."""
    try:
        import serial
    except ImportError:
        raise FxbpError("pyserial is not installed: pip install 'fxbp[board]'") from None
    try:
        return serial.serial_for_url(url, baudrate=baud, timeout=timeout)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise FxbpError(f"cannot open the serial port {url}: {exc}: check the device name, "
                        f"that the board is attached and that no other program uses it") from None


# --------------------------------------------------------------------------- reference model
class BridgeModel:
    """A byte-level reference model of ``boards/host_link.py:HostLinkBridge``.

    ``engine(words) -> response words`` stands for the engine: it gets the command words of
    each executed EXEC and returns what the engine answers; answers it returns beyond what
    the EXEC expected stay pending for the next one, like words left in the ``rsp`` stream.
    When it returns fewer than expected the bridge waits forever (as the RTL does):
    :attr:`hung` is set and nothing is answered any more.

    :meth:`feed` takes the bytes that reach the bridge before it answers: bytes after the
    frame that it answers in the same call are dropped, as the bridge ignores the line
    while it executes and sends. :meth:`idle` is a silence of ``idle_timeout`` cycles.
    """

    def __init__(self, engine, *, max_words: int = 256, idle_timeout: int = 1 << 20,
                 divisor: int = 8):
        self.engine = engine
        self.max_words, self.idle_timeout, self.divisor = max_words, idle_timeout, divisor
        self.pending = deque()
        self.executed = 0          # EXEC frames run on the engine
        self.hung = False
        self.last = None           # (seq, crc, reply words) of the last executed EXEC
        self._hunt()

    def _hunt(self):
        self.state, self.buf = "HUNT", bytearray()

    def idle(self) -> None:
        if self.state != "HUNT":
            self._hunt()

    def feed(self, data: bytes) -> bytes:
        for b in bytes(data):
            if self.hung:
                return b""
            reply = self._byte(b)
            if reply is not None:
                return reply
        return b""

    def _byte(self, b: int):
        if self.state == "HUNT":
            if b == SYNC[0]:
                self.state = "SYNC1"
            return None
        if self.state == "SYNC1":
            self.state = "HDR" if b == SYNC[1] else "SYNC1" if b == SYNC[0] else "HUNT"
            return None
        self.buf.append(b)
        if len(self.buf) == 4:
            kind, seq, length = struct.unpack("<BBH", self.buf)
            if length > self.max_words:
                self._hunt()
                return encode_frame(NAK, seq, [NAK_LENGTH])
        if len(self.buf) < 4 or len(self.buf) < 4 + 4 * self.buf[2] + 256 * 4 * self.buf[3] + 4:
            return None
        frame, self.buf = bytes(self.buf), bytearray()
        self._hunt()
        return self._check(frame)

    def _check(self, frame: bytes) -> bytes | None:
        kind, seq, length = struct.unpack("<BBH", frame[:4])
        body, crc = frame[:-4], struct.unpack("<I", frame[-4:])[0]
        if crc32(body) != crc:
            return encode_frame(NAK, seq, [NAK_CRC])
        words = list(struct.unpack(f"<{length}I", body[4:]))
        if kind == INFO:
            if length != 0:
                return encode_frame(NAK, seq, [NAK_LENGTH])
            self.last = None
            return encode_frame(ACK, seq, [VERSION, self.max_words, self.idle_timeout,
                                           self.divisor])
        if kind != EXEC:
            return encode_frame(NAK, seq, [NAK_TYPE])
        if length == 0:
            return encode_frame(NAK, seq, [NAK_LENGTH])
        expect = words[0]
        if expect > self.max_words:
            return encode_frame(NAK, seq, [NAK_REPLY])
        if self.last is not None and self.last[:2] == (seq, crc):
            return encode_frame(ACK, seq, self.last[2])
        self.executed += 1
        self.pending.extend(int(w) & 0xFFFFFFFF for w in self.engine(words[1:]))
        if len(self.pending) < expect:
            self.hung = True
            return None
        reply = [self.pending.popleft() for _ in range(expect)]
        self.last = (seq, crc, reply)
        return encode_frame(ACK, seq, reply)
