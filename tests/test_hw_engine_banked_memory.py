# amaranth: UnusedElaboratable=no
"""BankedMemory: every word back at its address, exactly ``latency`` cycles after it."""

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.sim import Simulator

from fxbp.hw.engine.banked_memory import BankedMemory


async def _write_all(ctx, dut, words):
    """Write ``words`` to addresses 0, 1, ... one a cycle, then drop the write enable."""
    for a, v in enumerate(words):
        ctx.set(dut.write_addr, a)
        ctx.set(dut.write_data, v)
        ctx.set(dut.write_en, 1)
        await ctx.tick()
    ctx.set(dut.write_en, 0)


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("depth, bank_depth, mux_ways, bank_registers, latency, natural", [
    (5, 8, 2, 1, None, 2),         # one bank: the read, then the register
    (5, 8, 2, 2, None, 3),         # one bank, two registers
    (37, 4, 2, 1, None, 6),        # 10 banks, 4 levels of 2-way multiplexers
    (37, 4, 2, 2, None, 7),        # the same behind two registers a bank
    (100, 8, 4, 1, 7, 4),          # 13 banks, 2 levels, padded from 4 to 7
    (100, 8, 4, 3, 7, 6),          # three registers a bank, padded from 6 to 7
])
@pytest.mark.parametrize("read_registers", [0, 1])
def test_reads_return_each_word_after_the_latency(depth, bank_depth, mux_ways, bank_registers,
                                                  latency, natural, read_registers):
    """The registered read address adds one cycle to the natural latency."""
    dut = BankedMemory(shape=signed(16), depth=depth, bank_depth=bank_depth,
                       mux_ways=mux_ways, bank_registers=bank_registers, latency=latency,
                       read_registers=read_registers)
    want = dut.latency
    natural += read_registers
    assert dut.natural_latency == natural == BankedMemory.latency_of(
        depth, bank_depth=bank_depth, mux_ways=mux_ways, bank_registers=bank_registers,
        read_registers=read_registers)
    assert want == (latency or natural)
    rng = np.random.default_rng(depth)
    words = [int(v) for v in rng.integers(-(1 << 15), 1 << 15, depth)]
    # every address, then a random order with repeats, one read a cycle
    order = list(range(depth)) + [int(a) for a in rng.integers(0, depth, 3 * depth)]
    seen = []

    async def bench(ctx):
        await _write_all(ctx, dut, words)
        for a in order + [0] * want:
            ctx.set(dut.read_addr, a)
            await ctx.tick()
            seen.append(ctx.get(dut.read_data))

    _simulate(dut, bench)
    # the word read at cycle k is on read_data after `latency` clock edges
    assert seen[want - 1:want - 1 + len(order)] == [words[a] for a in order]


@pytest.mark.parametrize("write_registers", [0, 1])
@pytest.mark.parametrize("depth, bank_depth", [(5, 8), (37, 4)])
def test_a_write_lands_write_registers_cycles_after_its_request(write_registers, depth,
                                                                bank_depth):
    """Each address written, then read in the cycle the write lands and in the next: the
    word is the old one on the first read (Amaranth's old word) and the new one after."""
    dut = BankedMemory(shape=signed(16), depth=depth, bank_depth=bank_depth, mux_ways=2,
                       write_registers=write_registers)
    seen = []

    async def bench(ctx):
        await _write_all(ctx, dut, range(depth))
        for _ in range(2):
            await ctx.tick()
        for a in range(depth):
            # request a write of -1 - a; read `a` in the cycle the write lands (the old
            # word), then again (the new one)
            ctx.set(dut.write_addr, a)
            ctx.set(dut.write_data, -1 - a)
            ctx.set(dut.write_en, 1)
            for _ in range(write_registers):
                await ctx.tick()
                ctx.set(dut.write_en, 0)
            ctx.set(dut.read_addr, a)
            for _ in range(dut.latency):
                await ctx.tick()
                ctx.set(dut.write_en, 0)
            seen.append(ctx.get(dut.read_data))
            for _ in range(dut.latency):
                await ctx.tick()
            seen.append(ctx.get(dut.read_data))

    _simulate(dut, bench)
    assert seen == [v for a in range(depth) for v in (a, -1 - a)]


@pytest.mark.parametrize("kw, exc, message", [
    ({"shape": "wide"}, TypeError, "BankedMemory shape must be a shape, not 'wide'"),
    ({"depth": 0}, ValueError, "BankedMemory depth must be at least 1, not 0"),
    ({"bank_depth": 12}, ValueError, "bank depth must be a power of two, not 12"),
    ({"mux_ways": 3}, ValueError, "mux ways must be a power of two, not 3"),
    ({"latency": 1}, ValueError, "BankedMemory latency must be at least 2, not 1"),
    ({"bank_registers": 0}, ValueError, "BankedMemory bank registers must be 1 to 4, not 0"),
    ({"read_registers": 2}, ValueError, "BankedMemory read registers must be 0 to 1, not 2"),
    ({"read_registers": 1.0}, TypeError, "read registers must be an integer, not 1.0"),
    ({"write_registers": 2}, ValueError, "BankedMemory write registers must be 0 to 1, not 2"),
    ({"write_registers": True}, TypeError, "write registers must be an integer, not True"),
])
def test_parameters_are_checked(kw, exc, message):
    args = {"shape": 16, "depth": 10, **kw}
    with pytest.raises(exc, match=message):
        BankedMemory(**args)


@pytest.mark.parametrize("poison", [False, True])
@pytest.mark.parametrize("depth, bank_depth", [(5, 8), (37, 4)])
def test_a_read_that_meets_a_write_is_poisoned_in_simulation(poison, depth, bank_depth):
    """Reading the address written in the same cycle: Amaranth's old word without the
    poison; with it, the old word inverted (the engine's simulations run so, and stay
    bit-exact). A read of another address in that cycle is never poisoned."""
    dut = BankedMemory(shape=signed(16), depth=depth, bank_depth=bank_depth, mux_ways=2,
                       poison_collisions=poison)
    seen = {}

    async def bench(ctx):
        for a in range(depth):
            ctx.set(dut.write_addr, a)
            ctx.set(dut.write_data, 100 + a)
            ctx.set(dut.write_en, 1)
            await ctx.tick()
        # cycle t: read 3 while writing 3 (collision); t + 1: read 4 while writing 2
        for key, (r, w) in {"same": (3, 3), "other": (4, 2)}.items():
            ctx.set(dut.read_addr, r)
            ctx.set(dut.write_addr, w)
            ctx.set(dut.write_data, -7)
            ctx.set(dut.write_en, 1)
            await ctx.tick()
            ctx.set(dut.write_en, 0)
            for _ in range(dut.latency - 1):
                await ctx.tick()
            seen[key] = ctx.get(dut.read_data)
            await ctx.tick()

    _simulate(dut, bench)
    assert seen["same"] == (~103 if poison else 103)
    assert seen["other"] == 104


def test_poison_flag_is_checked():
    with pytest.raises(TypeError, match="poison_collisions must be a bool, not 1"):
        BankedMemory(shape=signed(16), depth=4, poison_collisions=1)


# --------------------------------------------------------------- RegisteredReadPort
def _read_ports(*kinds, width=8, depth=16, enable=True):
    """A memory per kind, each written from the same inputs and read at the same address:
    ``"amaranth"`` through Amaranth's synchronous port, ``"registered"`` through a
    RegisteredReadPort; output ``q_<kind>``. ``enable``: the read enable is the ``ren``
    input (else always on)."""
    from amaranth.hdl import Module
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import In, Out

    from fxbp.hw.registered_block_ram import NO_RW_CHECK, RegisteredReadPort

    class Ports(wiring.Component):
        def __init__(self):
            ab = (depth - 1).bit_length()
            super().__init__({"raddr": In(ab), "ren": In(1), "waddr": In(ab),
                              "wdata": In(width), "wen": In(1),
                              **{f"q_{k}": Out(width) for k in kinds}})

        def elaborate(self, platform):
            m = Module()
            for kind in kinds:
                mem = memory.Memory(shape=width, depth=depth, init=[], attrs=NO_RW_CHECK)
                m.submodules[kind] = mem
                rd = (mem.read_port(transparent_for=()) if kind == "amaranth"
                      else RegisteredReadPort(m, mem, kind))
                wr = mem.write_port()
                if enable:
                    m.d.comb += rd.en.eq(self.ren)
                m.d.comb += [rd.addr.eq(self.raddr), wr.addr.eq(self.waddr),
                             wr.data.eq(self.wdata), wr.en.eq(self.wen),
                             getattr(self, f"q_{kind}").eq(rd.data)]
            return m

    return Ports()


def test_registered_read_port_reads_as_amaranths_synchronous_port():
    """Old data on a read of the address written in the same cycle, the word held while
    the enable is low: every cycle of a random run with collisions on purpose."""
    dut = _read_ports("amaranth", "registered")
    rng = np.random.default_rng(7)
    compared = collisions = 0

    async def bench(ctx):
        nonlocal compared, collisions
        for _ in range(600):
            raddr = int(rng.integers(0, 16))
            clash = rng.random() < 0.3
            wen = int(rng.random() < 0.6)
            collisions += bool(clash and wen)
            ctx.set(dut.raddr, raddr)
            ctx.set(dut.ren, int(rng.random() < 0.8))
            ctx.set(dut.waddr, raddr if clash else int(rng.integers(0, 16)))
            ctx.set(dut.wdata, int(rng.integers(0, 256)))
            ctx.set(dut.wen, wen)
            await ctx.tick()
            assert ctx.get(dut.q_registered) == ctx.get(dut.q_amaranth)
            compared += 1

    _simulate(dut, bench)
    assert compared == 600 and collisions >= 80


@pytest.mark.synth
@pytest.mark.parametrize("family, depth, enable", [("ecp5", 1024, True), ("ecp5", 1024, False),
                                                   ("ice40", 256, True), ("ice40", 256, False)])
def test_registered_read_port_maps_onto_the_block_ram_alone(family, depth, enable, tmp_path):
    """Through RTLIL (how ``fxbp build`` hands Amaranth designs to yosys), a
    RegisteredReadPort under NO_RW_CHECK is the block RAM without collision logic;
    Amaranth's own synchronous port under the same attribute gets yosys's collision logic
    (the write's address and data registered, a compare and a multiplexer)."""
    import json
    import subprocess

    from amaranth.back import rtlil

    from fxbp.hw.synth import yosys_command

    cells = {}
    for kind in ("amaranth", "registered"):
        dut = _read_ports(kind, width=16, depth=depth, enable=enable)   # one block RAM
        (tmp_path / f"{kind}.il").write_text(rtlil.convert(dut, name="top"))
        script = (f"read_rtlil {kind}.il; synth_{family} -top top; "
                  f"tee -q -o {kind}.json stat -json")
        subprocess.run([*yosys_command(), "-q", "-p", script], cwd=tmp_path, check=True,
                       capture_output=True, text=True, timeout=300)
        stat = json.loads((tmp_path / f"{kind}.json").read_text())
        module = stat.get("design") or next(iter(stat["modules"].values()))
        cells[kind] = module["num_cells_by_type"]
    ram, lut, ff = (("DP16KD", "LUT4", "TRELLIS_FF") if family == "ecp5"
                    else ("SB_RAM40_4K", "SB_LUT4", "SB_DFF"))

    def count(kind, prefix):
        return sum(n for t, n in cells[kind].items() if t.startswith(prefix))

    assert cells["registered"].get(ram) == 1 == cells["amaranth"].get(ram), cells
    assert count("amaranth", ff) >= 16 + 8 and count("amaranth", lut) > 16, cells
    if family == "ecp5":
        assert count("registered", ff) == 0 and count("registered", lut) == 0, cells
    else:
        # An SB_RAM40_4K's output has no initial value: yosys gives the register's 0 with
        # one flip-flop and a LUT a bit (16), and holds a word under a read enable with
        # the same LUTs.
        assert count("registered", ff) == 1 and count("registered", lut) <= 17, cells
