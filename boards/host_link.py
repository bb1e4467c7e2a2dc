"""The board's host link: a UART bridge from CRC-checked frames to the engine's host interface.

The protocol is in ``docs/host-link.md``; its constants and a byte-exact reference model
(``BridgeModel``) are in ``sw/host_link.py``. The bridge receives a whole request into a
buffer and checks it (CRC-32, length, type) before a single word reaches the engine. A
good EXEC is forwarded to ``cmd`` while exactly the expected number of words is collected
from ``rsp`` into a reply buffer; then one ACK frame carries them back. Anything else is
answered by one NAK frame, and nothing is forwarded.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..hw.pipeline import check_int
from ..sw.host_link import (ACK, EXEC, INFO, NAK, NAK_CRC, NAK_LENGTH, NAK_REPLY, NAK_TYPE, SYNC,
                            VERSION)
from .uart import UARTReceiver, UARTTransmitter, _check_divisor

__all__ = ["HostLinkBridge", "crc32_byte", "CRC32_POLY", "CRC32_RESIDUE"]

#: CRC-32 (IEEE 802.3, reflected): the polynomial, and the register after a message and
#: its own CRC (little-endian) have gone through it, before the final inversion.
CRC32_POLY = 0xEDB88320
CRC32_RESIDUE = 0xDEBB20E3


def _crc32_byte_matrix() -> list[tuple[frozenset, frozenset]]:
    """For each bit of the next register: the register bits and byte bits it XORs."""
    bits = [(frozenset([i]), frozenset([i]) if i < 8 else frozenset()) for i in range(32)]
    bits = [(r, b) for r, b in bits]
    for _ in range(8):
        low = bits[0]
        shifted = bits[1:] + [(frozenset(), frozenset())]
        bits = [(r ^ low[0], b ^ low[1]) if (CRC32_POLY >> i) & 1 else (r, b)
                for i, (r, b) in enumerate(shifted)]
    return bits


_CRC32_MATRIX = _crc32_byte_matrix()


def crc32_byte(crc, byte):
    """The CRC-32 register (initial value ``0xFFFFFFFF``, not inverted) after ``byte``,
    as one XOR per register bit (eight reflected LFSR steps, solved at elaboration).
    ``~register`` is ``zlib.crc32``."""
    out = []
    for regs, ins in _CRC32_MATRIX:
        terms = [crc[i] for i in sorted(regs)] + [byte[i] for i in sorted(ins)]
        value = Const(0, 1)
        for term in terms:
            value = value ^ term
        out.append(value)
    return Cat(*out)


class HostLinkBridge(wiring.Component):
    """The UART bridge between the host and the engine's ``cmd``/``rsp`` streams.

    Parameters
    ----------
    divisor : int
        Clock cycles per UART bit (``boards.uart.uart_divisor``), at least 4.
    max_words : int
        The largest request payload and the largest reply, in 32-bit words (4 to 65535).
        Both buffers are ``max_words`` words of block RAM (non-transparent read ports).
    idle_timeout : int
        Cycles of silence after which a partially received frame is dropped (at least
        two bytes' time, ``20 * divisor``).

    Members
    -------
    rx : In(1)
        UART line from the host; idle high.
    tx : Out(1)
        UART line to the host; idle high.
    cmd : Out(stream.Signature(32))
        Command words to the engine's ``cmd``.
    rsp : In(stream.Signature(32))
        Response words from the engine's ``rsp``.

    Latency
    -------
    A request is answered after its last CRC byte (a length over ``max_words``: right
    after the header): at once for a NAK and INFO; an EXEC after the engine has sent the
    expected words. ``cmd`` is driven from registers and
    carries one word every three cycles at most (far faster than the UART brings them);
    ``rsp`` is taken as it comes, a word a cycle. Bytes that arrive while the bridge
    executes or answers are dropped. Both block RAMs' outputs go straight into registers.
    """

    def __init__(self, *, divisor: int, max_words: int = 256, idle_timeout: int = 1 << 20):
        self.divisor = _check_divisor("HostLinkBridge", divisor)
        self.max_words = check_int("HostLinkBridge max_words", max_words, low=4, high=0xFFFF)
        self.idle_timeout = check_int("HostLinkBridge idle_timeout", idle_timeout,
                                      low=20 * divisor, high=0xFFFFFFFF)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          "cmd": Out(stream.Signature(32)), "rsp": In(stream.Signature(32))})

    def elaborate(self, platform):
        m = Module()
        n = self.max_words
        m.submodules.uart_rx = urx = UARTReceiver(divisor=self.divisor)
        m.submodules.uart_tx = utx = UARTTransmitter(divisor=self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), urx.data.ready.eq(1)]
        m.submodules.request = request = memory.Memory(shape=32, depth=n, init=[])
        m.submodules.reply = reply = memory.Memory(shape=32, depth=n, init=[])
        req_w, req_r = request.write_port(), request.read_port(transparent_for=())
        rep_w, rep_r = reply.write_port(), reply.read_port(transparent_for=())
        # A read port's enable is 1 unless driven: read only when asked, so that the
        # word stays on the port's data while it waits (cmd back-pressure, UART bytes).
        m.d.comb += [req_r.en.eq(0), rep_r.en.eq(0)]

        got, byte = urx.data.valid, urx.data.payload

        # ---- the received frame
        kind = Signal(8)
        seq = Signal(8)
        length = Signal(16)
        expect = Signal(range(n + 1))
        expect_big = Signal()                    # the reply count is over max_words
        k = Signal(2)                            # byte of a header/word/CRC
        index = Signal(range(n + 1))             # word of the payload
        last = Signal(16)                        # its last index (length - 1), registered
        low = Signal(24)                         # the first three bytes of a word
        crc = Signal(32, init=0xFFFFFFFF)
        crc_in = Signal(8)
        crc_en = Signal()
        # Start a frame (wins over crc_en): in the states before a request's header and
        # before a reply's bytes, a decode of the state alone. (It used to follow the
        # request checks that chose a reply, the duplicate test's 32-bit compare among
        # them: that path into the CRC register's reset was the critical path of four
        # board builds, 9.1-10.4 ns.)
        crc_init = Signal()
        crc_seen = Signal(32)                    # the request's CRC register, for duplicates
        with m.If(crc_init):
            m.d.sync += crc.eq(0xFFFFFFFF)
        with m.Elif(crc_en):
            m.d.sync += crc.eq(crc32_byte(crc, crc_in))

        idle = Signal(range(self.idle_timeout))
        idle_over = Signal()
        in_frame = Signal()
        m.d.comb += idle_over.eq(idle == self.idle_timeout - 1)
        with m.If(got | ~in_frame):
            m.d.sync += idle.eq(0)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)

        # ---- the last executed EXEC (duplicates get its reply again)
        last_seq = Signal(8)
        last_crc = Signal(32)
        have_last = Signal()
        reply_len = Signal(range(n + 1))

        # ---- forwarding and collecting
        fwd = Signal(range(n + 1))
        loading = Signal()                       # a word is being read for cmd
        cmd_valid = Signal()
        cmd_data = Signal(32)                    # registered: cmd comes from flops only
        collected = Signal(range(n + 1))
        m.d.comb += [self.cmd.valid.eq(cmd_valid), self.cmd.payload.eq(cmd_data),
                     req_r.addr.eq(fwd), rep_w.addr.eq(collected),
                     rep_w.data.eq(self.rsp.payload)]

        # ---- the answer
        tx_kind = Signal(8)
        tx_len = Signal(16)
        tx_src = Signal(2)                       # 0 reply buffer, 1 INFO words, 2 NAK reason
        reason = Signal(8)
        info = Array([Const(VERSION, 32), Const(n, 32), Const(self.idle_timeout, 32),
                      Const(self.divisor, 32)])
        rep_q = Signal(32)                       # the reply buffer's word, registered
        m.d.sync += rep_q.eq(rep_r.data)
        word = Signal(32)
        m.d.comb += word.eq(Array([rep_q, info[index[:2]], reason])[tx_src])
        # the answer goes out of a shift register, so that the block RAM's output, the
        # byte multiplexers and the CRC are not one path
        txw = Signal(32)
        phase = Signal(2)                        # of txw: 0 header, 1 payload word, 2 CRC
        # The reply buffer is read a word ahead, from a register, in states that a decode
        # of the state alone enables (TX_SYNC: word 0; TX_WORD: the next word): the UART's
        # ready never reaches the block RAM's address or enable (ulx3s-85f: the
        # transmitter's bit count -> ready -> the next address -> the reply buffer's
        # address pins, 8 levels, 10.43 ns).
        rep_next = Signal(range(n + 1))
        m.d.comb += rep_r.addr.eq(rep_next)

        def answer(kind_, length_, src, why=0):
            m.d.sync += [tx_kind.eq(kind_), tx_len.eq(length_), tx_src.eq(src), reason.eq(why),
                         k.eq(0), rep_next.eq(0)]
            m.next = "TX_SYNC"

        def nak(why):
            answer(NAK, 1, 2, why)

        with m.FSM(name="bridge") as fsm:
            with m.State("HUNT"):
                with m.If(got & (byte == SYNC[0])):
                    m.next = "SYNC1"

            with m.State("SYNC1"):
                with m.If(got):
                    with m.If(byte == SYNC[1]):
                        m.d.sync += k.eq(0)
                        m.next = "HDR"
                    with m.Elif(byte != SYNC[0]):
                        m.next = "HUNT"
                with m.Elif(idle_over):
                    m.next = "HUNT"

            with m.State("HDR"):
                with m.If(got):
                    m.d.comb += [crc_en.eq(1), crc_in.eq(byte)]
                    m.d.sync += k.eq(k + 1)
                    with m.Switch(k):
                        with m.Case(0):
                            m.d.sync += kind.eq(byte)
                        with m.Case(1):
                            m.d.sync += seq.eq(byte)
                        with m.Case(2):
                            m.d.sync += length[:8].eq(byte)
                        with m.Case(3):
                            m.d.sync += length[8:].eq(byte)
                            m.next = "LENGTH"
                with m.Elif(idle_over):
                    m.next = "HUNT"

            with m.State("LENGTH"):
                m.d.sync += [k.eq(0), index.eq(0), last.eq(length - 1)]
                with m.If(length > n):
                    nak(NAK_LENGTH)
                with m.Elif(length == 0):
                    m.next = "CRC"
                with m.Else():
                    m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.comb += [crc_en.eq(1), crc_in.eq(byte)]
                    m.d.sync += [k.eq(k + 1), low.eq(Cat(low[8:], byte))]
                    with m.If(k == 3):
                        full = Cat(low, byte)
                        m.d.comb += [req_w.en.eq(1), req_w.addr.eq(index), req_w.data.eq(full)]
                        m.d.sync += index.eq(index + 1)
                        with m.If(index == 0):
                            m.d.sync += [expect.eq(full), expect_big.eq(full > n)]
                        with m.If(index == last):
                            m.next = "CRC"
                with m.Elif(idle_over):
                    m.next = "HUNT"

            with m.State("CRC"):
                with m.If(got):
                    m.d.comb += [crc_en.eq(1), crc_in.eq(byte)]
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == 0):
                        m.d.sync += crc_seen.eq(crc)
                    with m.If(k == 3):
                        m.next = "CHECK"
                with m.Elif(idle_over):
                    m.next = "HUNT"

            with m.State("CHECK"):
                with m.If(crc != CRC32_RESIDUE):
                    nak(NAK_CRC)
                with m.Elif(kind == EXEC):
                    with m.If(length == 0):
                        nak(NAK_LENGTH)
                    with m.Elif(expect_big):
                        nak(NAK_REPLY)
                    with m.Elif(have_last & (seq == last_seq) & (crc_seen == last_crc)):
                        answer(ACK, reply_len, 0)
                    with m.Else():
                        m.d.sync += [fwd.eq(1), cmd_valid.eq(0), loading.eq(0), collected.eq(0)]
                        m.next = "EXEC"
                with m.Elif(kind == INFO):
                    with m.If(length != 0):
                        nak(NAK_LENGTH)
                    with m.Else():
                        m.d.sync += have_last.eq(0)
                        answer(ACK, len(info), 1)
                with m.Else():
                    nak(NAK_TYPE)

            with m.State("EXEC"):
                more = fwd != length
                with m.If(loading):
                    m.d.sync += [cmd_data.eq(req_r.data), cmd_valid.eq(1), loading.eq(0),
                                 fwd.eq(fwd + 1)]
                with m.Elif(cmd_valid):
                    with m.If(self.cmd.ready):
                        m.d.sync += cmd_valid.eq(0)
                with m.Elif(more):
                    m.d.comb += req_r.en.eq(1)
                    m.d.sync += loading.eq(1)
                m.d.comb += self.rsp.ready.eq(collected != expect)
                with m.If(self.rsp.valid & self.rsp.ready):
                    m.d.comb += rep_w.en.eq(1)
                    m.d.sync += collected.eq(collected + 1)
                with m.If(~more & ~loading & ~cmd_valid & (collected == expect)):
                    m.d.sync += [last_seq.eq(seq), last_crc.eq(crc_seen), have_last.eq(1),
                                 reply_len.eq(expect)]
                    answer(ACK, expect, 0)

            with m.State("TX_SYNC"):
                m.d.comb += [utx.data.valid.eq(1),
                             utx.data.payload.eq(Mux(k[0], SYNC[1], SYNC[0]))]
                m.d.sync += last.eq(tx_len - 1)
                with m.If(utx.data.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k[0]):
                        m.d.sync += [txw.eq(Cat(tx_kind, seq, tx_len)), phase.eq(0), k.eq(0)]
                        m.next = "TX_BYTES"

            with m.State("TX_BYTES"):
                m.d.comb += [utx.data.valid.eq(1), utx.data.payload.eq(txw[:8])]
                with m.If(utx.data.ready):
                    m.d.comb += [crc_en.eq(phase != 2), crc_in.eq(txw[:8])]
                    m.d.sync += [k.eq(k + 1), txw.eq(txw >> 8)]
                    with m.If(k == 3):
                        m.next = "TX_LOAD"
                        with m.If(phase == 0):
                            m.d.sync += index.eq(0)
                            with m.If(tx_len == 0):
                                m.d.sync += phase.eq(2)
                            with m.Else():
                                m.d.sync += phase.eq(1)
                        with m.Elif(phase == 1):
                            m.d.sync += index.eq(index + 1)
                            with m.If(index == last):
                                m.d.sync += phase.eq(2)
                        with m.Else():
                            m.next = "HUNT"

            with m.State("TX_LOAD"):               # rep_r.data -> rep_q
                with m.If(phase == 1):
                    m.d.sync += rep_next.eq(rep_next + 1)   # TX_WORD reads the next word
                m.next = "TX_WORD"

            with m.State("TX_WORD"):
                m.d.sync += [txw.eq(Mux(phase == 2, ~crc, word)), k.eq(0)]
                m.next = "TX_BYTES"

        m.d.comb += crc_init.eq(fsm.ongoing("HUNT") | fsm.ongoing("SYNC1")
                                | fsm.ongoing("TX_SYNC"))
        m.d.comb += rep_r.en.eq(fsm.ongoing("TX_SYNC") | fsm.ongoing("TX_WORD"))
        m.d.comb += in_frame.eq(fsm.ongoing("SYNC1") | fsm.ongoing("HDR")
                                | fsm.ongoing("PAYLOAD") | fsm.ongoing("CRC"))
        return m
