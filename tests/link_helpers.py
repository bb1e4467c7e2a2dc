"""Test helpers of the host link: a small engine stand-in and a bit-level bridge bench.

``MiniEngine`` answers commands as ``docs/engine.md`` (host interface) specifies: data
words, then one status word per command; RMEM sends ``count`` words; refused commands
still keep the stream in step. It is no training engine: TRAIN only counts.
"""

from __future__ import annotations

from collections import deque

from fxbp.hw.engine.config import ID_MAGIC, Err, Op, status_word

#: Words of the stand-in's ID answer.
ID_WORDS = 6
#: Memories it has, and their size.
MEMORIES = 6
MEM_SIZE = 1 << 16


class MiniEngine:
    """Consumes command words one at a time; :meth:`push` returns the words it answers."""

    def __init__(self):
        self.regs = {r: 0 for r in range(8)}
        self.mems = [dict() for _ in range(MEMORIES)]
        self.commands = []             # (op, arg) of every command run
        self._cmd = None

    def __call__(self, words) -> list[int]:
        out = []
        for w in words:
            out += self.push(int(w))
        return out

    def push(self, word: int) -> list[int]:
        if self._cmd is None:
            self._cmd = [word]
        else:
            self._cmd.append(word)
        c = self._cmd
        op, arg = c[0] & 0xFF, (c[0] >> 8) & 0xFF
        need = {Op.WREG: 2, Op.RREG: 1, Op.RMEM: 3}.get(op, 1)
        if op == Op.WMEM:
            need = 3 + c[2] if len(c) >= 3 else 3
        if len(c) < need:
            return []
        self._cmd = None
        self.commands.append((op, arg))
        return self._run(op, arg, c[1:])

    def _run(self, op, arg, p) -> list[int]:
        if op == Op.NOP or op in (Op.TRAIN, Op.EVAL, Op.CLEAR, Op.RUN):
            if op == Op.TRAIN:
                self.regs[3] += 1
            return [status_word(op, Err.OK)]
        if op == Op.ID:
            words = [ID_MAGIC, 0x12345678, 0x0102, 32, 64, 10]
            return words[:ID_WORDS] + [status_word(op, Err.OK)]
        if op == Op.WREG:
            if arg not in self.regs:
                return [status_word(op, Err.REGISTER)]
            self.regs[arg] = p[0]
            return [status_word(op, Err.OK)]
        if op == Op.RREG:
            if arg not in self.regs:
                return [0, status_word(op, Err.REGISTER)]
            return [self.regs[arg], status_word(op, Err.OK)]
        addr, count = p[0], p[1]
        bad = arg >= MEMORIES or addr + count > MEM_SIZE
        if op == Op.WMEM:
            if not bad:
                for i, v in enumerate(p[2:]):
                    self.mems[arg][addr + i] = v
            return [status_word(op, Err.MEMORY if bad else Err.OK)]
        if op == Op.RMEM:
            if bad:
                return [0] * count + [status_word(op, Err.MEMORY)]
            return [self.mems[arg].get(addr + i, (addr + i) * 0x01010101 & 0xFFFFFFFF)
                    for i in range(count)] + [status_word(op, Err.OK)]
        return [status_word(op, Err.OPCODE)]


def uart_levels(data: bytes, divisor: int) -> list[int]:
    """The line levels, one per cycle, of ``data`` as back-to-back 8N1 frames."""
    out = []
    for b in data:
        for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
            out += [bit] * divisor
    return out


class UartDecoder:
    """Decodes a line sampled once a cycle (mid-bit sampling, independent of the RTL)."""

    def __init__(self, divisor: int):
        self.d = divisor
        self.bytes = bytearray()
        self.errors = 0
        self._t = None                 # cycles since the start edge, or None when idle
        self._bits = []

    def sample(self, level: int) -> None:
        d = self.d
        if self._t is None:
            if level == 0:
                self._t, self._bits = 0, []
            return
        self._t += 1
        if self._t % d == d // 2:
            k = self._t // d             # 1..8 data bits, 9 the stop bit
            if 1 <= k <= 8:
                self._bits.append(level)
            elif k == 9:
                if level:
                    self.bytes.append(sum(b << i for i, b in enumerate(self._bits)))
                else:
                    self.errors += 1
                self._t = None


def run_bridge(vectors, *, divisor=4, max_words=16, idle_timeout=100, engine=None,
               cmd_ready=None, rsp_gap=None, quiet=None, glitches=(), pauses=None,
               max_cycles=200_000):
    """Send each vector (bytes) to a ``HostLinkBridge`` at the bit level, wait until its
    line has been quiet for ``quiet`` cycles, and return the bytes it sent per vector.

    ``cmd_ready(cycle)`` and ``rsp_gap(cycle)`` shape the engine side: ``cmd`` is ready
    when the first is true, a response word is offered unless the second is true.
    ``glitches``: (vector index, cycle offset, length) low pulses on an idle line.
    ``pauses``: {(vector index, byte index): cycles} of idle line after that byte.
    Returns ``(replies, engine, cycles)``.
    """
    from amaranth.sim import Simulator

    from fxbp.boards.host_link import HostLinkBridge

    engine = engine if engine is not None else MiniEngine()
    cmd_ready = cmd_ready or (lambda t: True)
    rsp_gap = rsp_gap or (lambda t: False)
    # quiet: longer than the idle timeout, and than forwarding a full buffer (3 cycles a word)
    quiet = quiet if quiet is not None else (max(64 * divisor, idle_timeout + 8 * divisor)
                                             + 4 * max_words)
    dut = HostLinkBridge(divisor=divisor, max_words=max_words, idle_timeout=idle_timeout)
    replies = []
    state = {"cycles": 0}

    async def bench(ctx):
        pending = deque()
        dec = UartDecoder(divisor)
        t = 0
        for i, vec in enumerate(vectors):
            levels = deque()
            for j in range(len(vec)):
                levels.extend(uart_levels(vec[j:j + 1], divisor))
                levels.extend([1] * (pauses or {}).get((i, j), 0))
            glitch = {off: n for j, off, n in glitches if j == i}
            start = len(dec.bytes)
            calm = 0
            forced = 0
            while levels or calm < quiet or forced:
                if levels:
                    level = levels.popleft()
                elif forced:
                    level, forced = 0, forced - 1
                else:
                    level = 1
                    if calm in glitch:
                        forced = glitch.pop(calm)
                ctx.set(dut.rx, level)
                ready = cmd_ready(t)
                ctx.set(dut.cmd.ready, ready)
                offer = bool(pending) and not rsp_gap(t)
                ctx.set(dut.rsp.valid, offer)
                if offer:
                    ctx.set(dut.rsp.payload, pending[0])
                took_cmd = ready and ctx.get(dut.cmd.valid)
                word = ctx.get(dut.cmd.payload)
                took_rsp = offer and ctx.get(dut.rsp.ready)
                tx = ctx.get(dut.tx)
                await ctx.tick()
                t += 1
                assert t < max_cycles, f"the bench ran past {max_cycles} cycles at vector {i}"
                if took_cmd:
                    pending.extend(engine.push(word))
                if took_rsp:
                    pending.popleft()
                dec.sample(tx)
                busy = tx == 0 or dec._t is not None
                calm = 0 if (busy or levels or forced) else calm + 1
            replies.append(bytes(dec.bytes[start:]))
        state["cycles"] = t
        state["errors"] = dec.errors

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert state["errors"] == 0, "the bridge sent a frame with a low stop bit"
    return replies, engine, state["cycles"]
