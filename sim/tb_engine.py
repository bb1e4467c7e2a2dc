"""cocotb testbench of the training engine (``hw/engine``), through its host interface only.

The runner (``fxbp.sim.engine_bench``) builds one engine per case and writes
``case.json`` (profile, rounding, generation maxima, configuration hash) into the build
directory. A :class:`Host` here sends command words on ``cmd`` and collects words from
``rsp`` under one of four traffic patterns (``engine_bench.PATTERNS``); the words are
built and decoded by the runtime's own host code (``fxbp.sw.engine_host``).

``host_protocol`` checks ID, the register reset values and WREG/RREG round trips, a
WMEM/RMEM round trip over every memory, every error code (each followed by a NOP that
must answer OK within a few cycles) and the payload timeout. ``train`` runs short
trainings (xor-like 2-4-1, iris-like 4-8-3) and compares, after every step, the weights,
biases, step register and cast-event counters with a :class:`GoldenMLP` stepped on the
same raw data, and EVAL outputs with golden's ``forward``. Each test writes
``result-<n>.json`` (cycles per TRAIN and EVAL) for the runner.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from ..hw.engine.config import (COUNTERS, ID_MAGIC, REG, STATUS_MARK, Err, Mem, Op,
                                status_word)
from ..sw.engine_host import ERROR_NAMES, Layout, Program
from ..sw.errors import FxbpError
from ..sw.fixed import quantize
from ..sw.golden import GoldenMLP, learning_rate_raw
from .engine_bench import (NETWORKS, PATTERNS, bench_config, compare_events, compare_outputs,
                           compare_parameters, event_delta, memory_depths, memory_widths)

#: A NOP after an error must answer within this many cycles of its header being offered
#: (the slowest pattern stalls a response for 3 cycles).
NOP_BOUND = 24
#: The TIMEOUT register value of the timeout checks.
SHORT_TIMEOUT = 1000
DEFAULT_TIMEOUT = 1 << 20
#: Data words before the status of an RREG refused with Err.REGISTER (RMEM, by contrast,
#: sends its ``count`` words whatever the error).
RREG_REFUSED_WORDS = 1


def _case():
    """(output directory, case.json, EngineConfig) of the engine under test."""
    case_dir = Path(os.environ["FXBP_TB_CASE_DIR"])
    spec = json.loads((case_dir / "case.json").read_text())
    out_dir = Path(os.environ.get("FXBP_TB_OUT_DIR", case_dir))
    return out_dir, spec, bench_config(spec)


def _save(out_dir: Path, name: str, **fields) -> None:
    slug = name.replace("/", "-").replace("=", "_")
    (out_dir / f"result-{slug}.json").write_text(json.dumps({"test": name, **fields}))


def _status(word: int) -> tuple[int, int, int]:
    """``(mark, err, op)`` of a status word."""
    return word >> 24, (word >> 16) & 0xFF, word & 0xFF


class Exchange:
    """The words one :meth:`Host.exchange` moved, with the cycle of each transfer."""

    def __init__(self):
        self.words: list[int] = []
        self.sent_at: list[int] = []
        self.got_at: list[int] = []
        self.cycles = 0


class Host:
    """Drives ``cmd`` and takes ``rsp`` under a traffic pattern.

    ``cmd.valid`` rises on the cycles the valid pattern offers a word and then holds
    the word until the engine takes it (a valid stream never withdraws a word);
    ``rsp.ready`` follows the ready pattern. Both patterns run on a cycle count kept
    across exchanges.
    """

    def __init__(self, dut, pattern: str):
        self.dut = dut
        self.pattern = pattern
        self.offer, self.accept = PATTERNS[pattern]
        self.cycle = 0
        self.edge = RisingEdge(dut.clk)
        self.settled = ReadOnly()

    async def start(self) -> None:
        dut = self.dut
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        dut.cmd__valid.value = 0
        dut.cmd__payload.value = 0
        dut.rsp__ready.value = 0
        for _ in range(3):
            await self.edge
        dut.rst.value = 0
        await self.edge
        self._valid = self._ready = 0

    async def exchange(self, words, n_rsp: int, *, limit: int, what: str = "") -> Exchange:
        """Send ``words`` and collect ``n_rsp`` response words; AssertionError (a hang)
        when that takes more than ``limit`` cycles."""
        dut = self.dut
        cmd_valid, cmd_payload, cmd_ready = dut.cmd__valid, dut.cmd__payload, dut.cmd__ready
        rsp_ready, rsp_valid, rsp_payload = dut.rsp__ready, dut.rsp__valid, dut.rsp__payload
        words = [int(w) & 0xFFFFFFFF for w in words]
        ex = Exchange()
        sent = 0
        holding = False
        n_off, n_acc = len(self.offer), len(self.accept)
        start = self.cycle
        while sent < len(words) or len(ex.words) < n_rsp:
            if self.cycle - start > limit:
                raise AssertionError(
                    f"[{self.pattern}] {what or 'exchange'}: the engine hung: {sent} of "
                    f"{len(words)} words taken, {len(ex.words)} of {n_rsp} answered in "
                    f"{limit} cycles")
            if not holding and sent < len(words) and self.offer[self.cycle % n_off]:
                holding = True
                cmd_payload.value = words[sent]
            if holding != self._valid:
                cmd_valid.value = int(holding)
                self._valid = holding
            ready = self.accept[self.cycle % n_acc]
            if ready != self._ready:
                rsp_ready.value = ready
                self._ready = ready
            await self.settled
            if holding and cmd_ready.value:
                ex.sent_at.append(self.cycle)
                sent += 1
                holding = False
            if ready and rsp_valid.value:
                ex.words.append(rsp_payload.value.to_unsigned())
                ex.got_at.append(self.cycle)
            await self.edge
            self.cycle += 1
        if self._valid:
            cmd_valid.value = 0
            self._valid = 0
        ex.cycles = self.cycle - start
        return ex

    async def quiet(self, cycles: int) -> None:
        """AssertionError when the engine offers a response word nobody asked for."""
        self.dut.rsp__ready.value = 1
        self._ready = 1
        for _ in range(cycles):
            await self.settled
            if self.dut.rsp__valid.value:
                raise AssertionError(f"[{self.pattern}] unexpected response word "
                                     f"0x{self.dut.rsp__payload.value.to_unsigned():08x}")
            await self.edge
            self.cycle += 1

    # ---------------------------------------------------------------- programs
    def budget(self, prog: Program, n_rsp: int, config) -> int:
        """A bound on the cycles of a program: a few per word, and per TRAIN/EVAL a
        generous multiple of its MAC work (as ``RtlRuntime`` allows)."""
        n = config.sizes
        macs = sum(n[l] * (n[l - 1] + config.lanes + 1) for l in range(1, len(n)))
        per = 4 * (macs + 200 * len(n)) * (config.groups + 1) + 10_000
        runs = sum(c.op in (Op.TRAIN, Op.EVAL) for c in prog.commands)
        return 16 * (len(prog.encode()) + n_rsp) + 200 + per * runs

    async def run(self, prog: Program, config, id_words: int = 0):
        """Send a program; its decoded answers (status words checked) and the exchange."""
        n_rsp = prog.responses(id_words)
        ex = await self.exchange(prog.encode(id_words), n_rsp,
                                 limit=self.budget(prog, n_rsp, config),
                                 what=", ".join(c.what for c in prog.commands[:3]))
        return prog.decode(ex.words, id_words), ex

    def spans(self, prog: Program, ex: Exchange, id_words: int = 0) -> list[int]:
        """Cycles from each command's header being taken to its status word."""
        out, w, r = [], 0, 0
        for c in prog.commands:
            r += (id_words if c.answer < 0 else c.answer) + 1
            out.append(ex.got_at[r - 1] - ex.sent_at[w])
            w += len(c.words)
        return out


# ---------------------------------------------------------------------- protocol checks

async def _refused(host: Host, prog: Program, err: int, *, data: int = 0,
                   limit: int = 400, decode: bool = True) -> Exchange:
    """Send a one-command program that the engine must refuse with ``err``: ``data``
    words (zeros) then the status word; the host's decode must name the error; then a
    NOP must answer OK within :data:`NOP_BOUND` cycles."""
    (cmd,) = prog.commands
    ex = await host.exchange(prog.encode(), data + 1, limit=limit, what=cmd.what)
    mark, got_err, op = _status(ex.words[-1])
    want = f"{cmd.what}: status 0x{ex.words[-1]:08x}, expected 0x{status_word(cmd.op, err):08x}"
    assert (mark, got_err, op) == (STATUS_MARK, err, cmd.op), f"[{host.pattern}] {want}"
    assert ex.words[:-1] == [0] * data, f"[{host.pattern}] {cmd.what}: data {ex.words[:-1]}"
    if decode:
        try:
            prog.decode(ex.words)
        except FxbpError as exc:
            assert ERROR_NAMES[err] in str(exc), f"host decode of {cmd.what}: {exc}"
        else:
            raise AssertionError(f"host decode of {cmd.what} accepted error {err}")
    nop = Program()
    nop.nop()
    after = await host.exchange(nop.encode(), 1, limit=NOP_BOUND, what=f"NOP after {cmd.what}")
    assert after.words == [status_word(Op.NOP, Err.OK)], \
        f"[{host.pattern}] NOP after {cmd.what} answered {[hex(w) for w in after.words]}"
    return ex


def _one(build) -> Program:
    prog = Program()
    build(prog)
    return prog


async def _check_registers(host: Host, config) -> None:
    """Reset values, then a WREG/RREG round trip of every writable register."""
    c = config
    writable = {"batch": (c.batch, 32), "eta": (0, c.profile.learning_rate.total_bits),
                "seed": (0, 32), "step": (0, 32), "timeout": (DEFAULT_TIMEOUT, 32)}
    regs = {REG[k]: v for k, v in writable.items()}
    for l, n in enumerate(c.sizes):
        regs[REG["width0"] + l] = (n, 32)
    prog = Program()
    handles = {r: prog.rreg(r) for r in regs}
    answers, _ = await host.run(prog, c)
    for r, (reset, _) in regs.items():
        got = int(answers[handles[r]][0]) & 0xFFFFFFFF
        assert got == reset, f"register 0x{r:02x} resets to {got}, expected {reset}"
    rng = np.random.default_rng(7)
    values = {r: int(rng.integers(0, 1 << 32)) for r in regs}
    values[REG["timeout"]] |= 1 << 31             # never a timeout the patterns could hit
    prog = Program()
    for r, v in values.items():
        prog.wreg(r, v)
    handles = {r: prog.rreg(r) for r in regs}
    for r, (reset, _) in regs.items():
        prog.wreg(r, reset)
    answers, _ = await host.run(prog, c)
    sat = c.saturating_registers
    for r, (_, bits) in regs.items():
        got = int(answers[handles[r]][0]) & 0xFFFFFFFF
        want = values[r] & ((1 << bits) - 1)
        if r in sat:        # narrower than a word: a value that does not fit reads all ones
            want = values[r] if values[r] < 1 << sat[r] else (1 << sat[r]) - 1
        assert got == want, f"register 0x{r:02x}: wrote 0x{values[r]:08x}, read 0x{got:08x}"
    # CLEAR zeroes the counters; the cycle counter runs again at once.
    prog = Program()
    prog.clear()
    cyc, steps = prog.rreg(REG["counters"] + COUNTERS.index("cycles")), \
        prog.rreg(REG["counters"] + COUNTERS.index("steps"))
    answers, _ = await host.run(prog, c)
    assert int(answers[steps][0]) == 0, "CLEAR left the steps counter"
    assert 0 < int(answers[cyc][0]) < 200, f"cycles after CLEAR: {int(answers[cyc][0])}"


async def _check_memories(host: Host, config) -> None:
    """WMEM then RMEM of every memory over its whole depth, values of its full width."""
    rng = np.random.default_rng(5)
    depths, widths = memory_depths(config), memory_widths(config)
    prog = Program()
    data, handles = {}, {}
    for mem, depth in depths.items():
        bits = widths[mem]
        data[mem] = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), depth)
        data[mem][:2] = [-(1 << (bits - 1)), (1 << (bits - 1)) - 1]
        prog.wmem(mem, 0, data[mem])
    for mem, depth in depths.items():
        handles[mem] = prog.rmem(mem, 0, depth)
    empty = prog.rmem(Mem.W, 0, 0)
    answers, _ = await host.run(prog, config)
    for mem in depths:
        msg = compare_outputs(f"memory {mem} round trip", answers[handles[mem]], data[mem])
        assert not msg, msg[0]
    assert answers[empty].size == 0


async def _check_errors(host: Host, config) -> None:
    """Every error code, each followed by a NOP that answers OK."""
    c = config
    depths = memory_depths(c)
    nregs = REG["counters"] + len(COUNTERS)
    # OPCODE: unknown opcodes (the header's other bits do not matter).
    for word in (0x09, 0xAB09, 0x7F, 0xFF, 0xFFFFFFFF):
        prog = Program()
        prog._add(word & 0xFF, word >> 8, what=f"header 0x{word:08x}")
        await _refused(host, prog, Err.OPCODE)
    # REGISTER: a refused RREG still answers one word (0) before its status, so the
    # stream stays in step and the host's decode names the error.
    for r in (0x05, 0x0F, REG["width0"] + len(c.sizes), 0x3F, nregs, 0xFF):
        await _refused(host, _one(lambda p: p.rreg(r)), Err.REGISTER,
                       data=RREG_REFUSED_WORDS)
    for r in (0x05, REG["width0"] + len(c.sizes), REG["counters"],
              REG["counters"] + COUNTERS.index("steps"), 0xFF):
        await _refused(host, _one(lambda p: p.wreg(r, 0x1234)), Err.REGISTER)
    # MEMORY: ranges past the end (the payload is consumed and nothing is written),
    # unknown memories, an address that would wrap 32 bits.
    w_depth = depths[Mem.W]
    keep = np.array([111, -222], dtype=np.int64)
    prog = Program()
    prog.wmem(Mem.W, w_depth - 2, keep)
    await host.run(prog, c)
    await _refused(host, _one(lambda p: p.wmem(Mem.W, w_depth - 2, [1, 2, 3, 4])), Err.MEMORY)
    await _refused(host, _one(lambda p: p.wmem(6, 0, [5, 6, 7])), Err.MEMORY)
    await _refused(host, _one(lambda p: p.wmem(0xFF, 0, [5])), Err.MEMORY)
    await _refused(host, _one(lambda p: p.wmem(Mem.W, 0xFFFFFFFF, [8])), Err.MEMORY)
    await _refused(host, _one(lambda p: p.wmem(Mem.B, depths[Mem.B] + 1, [])), Err.MEMORY)
    prog = Program()
    h = prog.rmem(Mem.W, w_depth - 2, 2)
    answers, _ = await host.run(prog, c)
    assert list(answers[h]) == list(keep), f"a refused WMEM wrote: {list(answers[h])}"
    for mem, addr, count in ((Mem.T, depths[Mem.T] - 1, 3), (Mem.A, depths[Mem.A], 1),
                             (7, 0, 2), (Mem.D, 0xFFFFFFFF, 2)):
        await _refused(host, _one(lambda p: p.rmem(mem, addr, count)), Err.MEMORY,
                       data=count)
    # CONFIG: TRAIN/EVAL with a batch or a width outside the build; registers restored.
    for reg, value in ((REG["batch"], 0), (REG["batch"], c.batch + 1),
                       (REG["width0"], 0), (REG["width0"] + 1, c.sizes[1] + 1),
                       (REG["width0"] + c.depth, 0x10000 + c.sizes[-1])):
        for run in (Program.train, Program.evaluate):
            prog = Program()
            prog.wreg(reg, value)
            await host.run(prog, c)
            await _refused(host, _one(run), Err.CONFIG)
        prog = Program()
        prog.wreg(REG["batch"], c.batch)
        for l, n in enumerate(c.sizes):
            prog.wreg(REG["width0"] + l, n)
        await host.run(prog, c)


async def _check_timeouts(host: Host, config) -> list[int]:
    """A payload that stops: TIMEOUT after TIMEOUT cycles, then the next command works.
    Returns the cycles from the last word taken to the status word, per case."""
    c = config
    prog = Program()
    prog.wreg(REG["timeout"], SHORT_TIMEOUT)
    await host.run(prog, c)
    waits = []
    cases = [(_one(lambda p: p.wmem(Mem.W, 0, [1, 2, 3, 4])), 2 + 2 + 1),   # data, 2 of 4
             (_one(lambda p: p.wmem(Mem.B, 0, [1])), 1),                    # header only
             (_one(lambda p: p.rmem(Mem.B, 0, 1)), 2),                      # no count word
             (_one(lambda p: p.wreg(REG["seed"], 9)), 1)]                   # no value
    for prog, keep in cases:
        (cmd,) = prog.commands
        words = prog.encode()[:keep]
        ex = await host.exchange(words, 1, limit=SHORT_TIMEOUT + 100, what=f"truncated {cmd.what}")
        assert ex.words == [status_word(cmd.op, Err.TIMEOUT)], \
            f"truncated {cmd.what} answered {[hex(w) for w in ex.words]}"
        wait = ex.got_at[0] - ex.sent_at[-1]
        assert SHORT_TIMEOUT <= wait <= SHORT_TIMEOUT + 8, \
            f"truncated {cmd.what}: TIMEOUT after {wait} cycles, register {SHORT_TIMEOUT}"
        waits.append(wait)
        if cmd.answer == 0:
            try:
                prog.decode(ex.words)
            except FxbpError as exc:
                assert ERROR_NAMES[Err.TIMEOUT] in str(exc), f"host decode: {exc}"
            else:
                raise AssertionError(f"host decode of a truncated {cmd.what} accepted it")
        nop = Program()
        nop.nop()
        after = await host.exchange(nop.encode(), 1, limit=NOP_BOUND, what="NOP after timeout")
        assert after.words == [status_word(Op.NOP, Err.OK)], \
            f"NOP after a truncated {cmd.what} answered {[hex(w) for w in after.words]}"
    prog = Program()
    prog.wreg(REG["timeout"], DEFAULT_TIMEOUT)
    h = prog.rreg(REG["timeout"])
    answers, _ = await host.run(prog, c)
    assert int(answers[h][0]) == DEFAULT_TIMEOUT
    return waits


@cocotb.test()
@cocotb.parametrize(pattern=list(PATTERNS))
async def host_protocol(dut, pattern):
    """ID, registers, memories, every error code and the payload timeout."""
    out_dir, spec, config = _case()
    host = Host(dut, pattern)
    await host.start()
    t0 = time.perf_counter()
    layout = Layout(config, config.sizes)
    prog = Program()
    ident = prog.ident()
    answers, _ = await host.run(prog, config, layout.id_words)
    words = [int(w) & 0xFFFFFFFF for w in answers[ident]]
    assert words[0] == ID_MAGIC, f"ID magic 0x{words[0]:08x}"
    assert words[1] == config.gen_hash == spec["gen_hash"], \
        f"ID hash 0x{words[1]:08x}, EngineConfig.gen_hash 0x{config.gen_hash:08x}"
    layout.check_id(answers[ident])
    info = (config.lanes | config.depth << 8 | config.counter_bits << 16
            | int(config.stochastic) << 24 | int(config.loss == "xent") << 25)
    assert words[2:] == [info, config.batch, *config.sizes], f"ID words {words[2:]}"
    assert config.stochastic == (spec["rounding"] == "stochastic")
    await _check_registers(host, config)
    await _check_memories(host, config)
    await _check_errors(host, config)
    waits = await _check_timeouts(host, config)
    await host.quiet(16)
    _save(out_dir, f"host_protocol/pattern={pattern}", timeout_waits=waits,
          wall_seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------- training runs

def _data(net: str, rng, n: int, sizes):
    """Real inputs and targets of an xor-like or iris-like problem."""
    if net == "xor":
        corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        idx = rng.permutation(np.resize(np.arange(4), n))
        x = corners[idx] * 1.8 - 0.9
        t = np.logical_xor(corners[idx, 0], corners[idx, 1]).astype(np.float64)[:, None]
        return x, 0.1 + 0.8 * t
    centres = np.random.default_rng(1).normal(0, 1.2, (sizes[-1], sizes[0]))   # the classes
    label = rng.integers(0, sizes[-1], n)
    x = centres[label] + rng.normal(0, 0.5, (n, sizes[0]))
    return x, np.eye(sizes[-1])[label]


def _check(pattern: str, problems: list[str]) -> None:
    if problems:
        raise AssertionError(f"[{pattern}] " + "; ".join(problems[:4])
                             + (f"; and {len(problems) - 4} more" if len(problems) > 4 else ""))


def _counters(answers, handles) -> dict:
    return {name: int(answers[h][0]) & 0xFFFFFFFF for name, h in zip(COUNTERS, handles)}


@cocotb.test()
@cocotb.parametrize(net=list(NETWORKS), pattern=list(PATTERNS))
async def train(dut, net, pattern):
    """Short training runs and EVALs, each compared with the golden model."""
    out_dir, spec, config = _case()
    name = f"train/net={net}/pattern={pattern}"
    spec_net = NETWORKS[net]
    sizes, steps = spec_net["sizes"], spec_net["steps"]
    profile = config.profile
    rng = np.random.default_rng(spec_net["seed"])
    seed = int(rng.integers(1, 1 << 32))
    scale = spec_net["weight_scale"]
    w0 = [quantize(rng.uniform(-scale, scale, (sizes[l + 1], sizes[l])), profile.weight.fmt)
          for l in range(len(sizes) - 1)]
    if spec_net["saturate"]:
        for w in w0:
            w[0, :] = quantize(7.75, profile.weight.fmt)
    b0 = [quantize(rng.uniform(-0.5, 0.5, sizes[l + 1]), profile.bias.fmt)
          for l in range(len(sizes) - 1)]
    golden = GoldenMLP(sizes, profile, w0, b0, loss=config.loss, seed=seed)
    eta = learning_rate_raw(spec_net["lr"], max(steps), profile)
    layout = Layout(config, sizes)
    L = len(sizes) - 1

    host = Host(dut, pattern)
    await host.start()
    t0 = time.perf_counter()
    prog = Program()
    ident = prog.ident()
    layout.configure(prog, max(steps))
    prog.wreg(REG["eta"], eta[0])
    prog.wreg(REG["seed"], seed & 0xFFFFFFFF)
    prog.wreg(REG["step"], 0)
    layout.write_parameters(prog, golden.weights, golden.biases)
    prog.clear()
    answers, _ = await host.run(prog, config, layout.id_words)
    layout.check_id(answers[ident])
    if os.environ.get("FXBP_TB_ENGINE_FAULT") == "weight":
        # The bench's own fault: golden starts 1/16 off in the output layer's last weight
        # (a 1-LSB change can be absorbed by a step that rounds the other way), so the
        # comparison after the first step must report a difference.
        w = [x.copy() for x in golden.weights]
        w[-1][-1, -1] += 1 << (profile.weight.fmt.frac_bits - 4)
        golden.set_parameters(w, golden.biases)

    async def evaluate(n: int, where: str) -> int:
        x_raw = golden.quantize_input(_data(net, rng, n, sizes)[0])
        before = golden.event_counts()
        expected = golden.forward(x_raw)[-1]
        prog = Program()
        layout.write_batch(prog, x_raw)
        run = prog.evaluate()
        out = layout.read_activations(prog, L, n)
        handles = prog.counters()
        prog.clear()
        answers, ex = await host.run(prog, config)
        problems = compare_outputs(where, layout.activations(answers[out], L, n), expected)
        ctr = _counters(answers, handles)
        problems += compare_events(where, ctr, event_delta(golden.event_counts(), before))
        if (ctr["samples_evaluated"], ctr["steps"]) != (n, 0):
            problems.append(f"{where}: samples_evaluated {ctr['samples_evaluated']}, "
                            f"steps {ctr['steps']}")
        _check(pattern, problems)
        return host.spans(prog, ex)[run]

    eval_cycles = [await evaluate(spec_net["eval"][0], "EVAL before training")]
    train_cycles, phase_cycles = [], []
    for k, n in enumerate(steps):
        x, t = _data(net, rng, n, sizes)
        if spec_net["saturate"]:
            x[0, :] = 2.0                       # saturates to the input maximum
        x_raw, t_raw = golden.quantize_input(x), golden.quantize_target(t)
        prog = Program()
        layout.write_batch(prog, x_raw, t_raw)
        run = prog.train()
        params = layout.read_parameters(prog)
        step_h = prog.rreg(REG["step"])
        handles = prog.counters()
        prog.clear()
        answers, ex = await host.run(prog, config)
        before = golden.event_counts()
        golden.train_step(x_raw, t_raw, eta)
        where = f"step {k + 1} (batch {n})"
        ws, bs = layout.parameters(answers, params)
        problems = compare_parameters(where, ws, bs, golden)
        ctr = _counters(answers, handles)
        problems += compare_events(where, ctr, event_delta(golden.event_counts(), before))
        step = int(answers[step_h][0]) & 0xFFFFFFFF
        if step != golden.step:
            problems.append(f"{where}: step register {step}, golden {golden.step}")
        if (ctr["steps"], ctr["samples_trained"]) != (1, n):
            problems.append(f"{where}: counters steps {ctr['steps']}, samples_trained "
                            f"{ctr['samples_trained']}")
        _check(pattern, problems)
        train_cycles.append(host.spans(prog, ex)[run])
        phase_cycles.append({k2: ctr[f"cycles_{k2}"] for k2 in
                             ("forward", "backward", "gradient", "control")})
    eval_cycles.append(await evaluate(spec_net["eval"][1], "EVAL after training"))
    await host.quiet(16)
    events = {site: [c["overflow"], c["underflow"], c["total"]]
              for site, c in golden.event_counts().items() if site != "input"}
    _save(out_dir, name, train_cycles=train_cycles, eval_cycles=eval_cycles,
          phase_cycles=phase_cycles, host_cycles=host.cycle, events_compared=events,
          wall_seconds=time.perf_counter() - t0)
