# amaranth: UnusedElaboratable=no
"""RegisteredBlockRam: the generic memory with two read registers and the ECP5 DP16KDs
with their output registers give the same read data on every cycle.

Both forms run in Verilator on the same stimulus and are compared, cycle by cycle and
exactly, with a Python model: a memory written at the clock edge of the request, and a
read registered twice (the first register loaded under ``read_en``, the second under
``out_en``), a read of the address written at the same edge returning the old word
inverted (the poison; block RAM leaves it undefined). The ECP5 form is simulated with
``sim/dp16kd.v``, the cell model written from Lattice's description of the block.

Vectors per shape: every address written with a designed word (the shape's minimum,
maximum, 0, -1 / all ones, alternating bits), then each read back; the first and the
last address; a read of the address written at the same edge (a collision) and at the
edge before (the new word); then random reads and writes, ~30 % of cycles writing, each
enable low ~25 % of cycles (so both registers must hold, apart and together).
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Shape, signed, unsigned

from fxbp.hw.registered_block_ram import DP16KD_DEPTH, DP16KD_WIDTH, RegisteredBlockRam
from fxbp.hw.registered_product import SynthTarget

#: (shape, depth): a dataset bank (16-bit words, a whole DP16KD), the digits engine's
#: weights (three DP16KDs, the last one partly used), the block's full width, and a
#: narrow, shallow memory (zero-extended words, unused address pins).
CASES = [(signed(16), DP16KD_DEPTH), (signed(16), 2368), (unsigned(DP16KD_WIDTH), DP16KD_DEPTH),
         (signed(7), 45)]


def _range(shape: Shape) -> tuple[int, int]:
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _wrap(shape: Shape, raw: int) -> int:
    raw &= (1 << shape.width) - 1
    if shape.signed and raw >> (shape.width - 1):
        raw -= 1 << shape.width
    return raw


def _stimulus(shape: Shape, depth: int, seed=5, n_random=600):
    """Per cycle: (read_addr, write_en, write_addr, write_data, read_en, out_en)."""
    rng = random.Random(seed)
    lo, hi = _range(shape)
    designed = [lo, hi, 0, _wrap(shape, -1), _wrap(shape, 0x2AAAA), _wrap(shape, 0x15555)]
    cycles = []
    for a in range(depth):                            # fill, reading the address before
        cycles.append(((a - 1) % depth, 1, a, designed[a % len(designed)], 1, 1))
    cycles += [(a, 0, 0, 0, 1, 1) for a in range(depth)]   # read every word back
    last = depth - 1
    cycles += [(last, 1, last, hi, 1, 1), (last, 0, 0, 0, 1, 1),  # collision, the new word
               (0, 1, 0, lo, 1, 1), (0, 1, last, 0, 1, 1), (0, 0, 0, 0, 1, 1),
               (last, 0, 0, 0, 1, 1)]
    for _ in range(n_random):
        write = int(rng.random() < 0.3)
        cycles.append((rng.randrange(depth), write, rng.randrange(depth), rng.randint(lo, hi),
                       int(rng.random() < 0.75), int(rng.random() < 0.75)))
    return cycles + [(0, 0, 0, 0, 1, 1)] * 2


def _reference(shape: Shape, cycles):
    """read_data after each edge."""
    mem, r1, r2, out = {}, 0, 0, []
    for raddr, we, waddr, wdata, read_en, out_en in cycles:
        word = mem.get(raddr, 0)
        if we and waddr == raddr:
            word = _wrap(shape, ~word)
        if out_en:
            r2 = r1
        if read_en:
            r1 = word
        if we:
            mem[waddr] = wdata
        out.append(r2)
    return out


def _native_run(ram, family, cycles):
    from fxbp.sim.native import NativeModel
    from fxbp.sw.rtl import netlist_verilog
    text = netlist_verilog(ram, "ram", family)
    got = []
    with NativeModel.build(text, "ram", progress=False) as sim:
        sim.reset()
        for raddr, we, waddr, wdata, read_en, out_en in cycles:
            sim.set("read_addr", raddr)
            sim.set("read_en", read_en)
            sim.set("out_en", out_en)
            sim.set("write_en", we)
            sim.set("write_addr", waddr)
            sim.set("write_data", wdata)
            sim.step()
            got.append(sim.get("read_data", signed=ram.shape.signed))
    return text, got


@pytest.mark.sim
@pytest.mark.parametrize("form", ["generic", "ecp5"])
@pytest.mark.parametrize("shape,depth", CASES, ids=["s16x1024", "s16x2368", "u18x1024", "s7x45"])
def test_every_cycle_matches_the_twice_registered_read(form, shape, depth):
    ram = RegisteredBlockRam(shape=shape, depth=depth, poison_collisions=True)
    cycles = _stimulus(shape, depth)
    text, got = _native_run(ram, None if form == "generic" else form, cycles)
    assert ("DP16KD" in text) == (form == "ecp5")
    want = _reference(shape, cycles)
    for t, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"cycle {t}: {g} != {w} ({cycles[max(0, t - 2)]})"
    # The stimulus did what it claims: collisions happened and every designed word came back.
    assert any(we and wa == ra and re for ra, we, wa, _, re, _ in cycles)
    lo, hi = _range(shape)
    assert {lo, hi, 0} <= set(got)


@pytest.mark.parametrize("depth,blocks", [(1024, 1), (1025, 2), (2368, 3)])
def test_ecp5_form_is_a_dp16kd_per_1024_words_each_with_its_output_register(depth, blocks):
    from amaranth.back import rtlil
    text = rtlil.convert(RegisteredBlockRam(shape=signed(16), depth=depth),
                         platform=SynthTarget("ecp5"))
    assert text.count("cell \\DP16KD ") == blocks
    assert text.count('parameter \\REGMODE_B "OUTREG"') == blocks
    assert text.count('parameter \\REGMODE_A "NOREG"') == blocks
    assert "$mem" not in text
    # One block: no fabric flip-flop; several: the block number, twice (read, output).
    assert ("$dff" in text) == (blocks > 1)


def test_words_wider_than_a_dp16kd_take_the_generic_form():
    from amaranth.back import rtlil
    ram = RegisteredBlockRam(shape=signed(DP16KD_WIDTH + 1), depth=16)
    assert not ram.fits_dp16kd
    assert "DP16KD" not in rtlil.convert(ram, platform=SynthTarget("ecp5"))


@pytest.mark.parametrize("kwargs,error,text", [
    (dict(shape="wide", depth=4), TypeError, "shape must be a shape, not 'wide'"),
    (dict(shape=8, depth=1), ValueError, "depth"),
    (dict(shape=8, depth=4, poison_collisions=1), TypeError, "poison_collisions must be a bool"),
])
def test_parameters_are_checked(kwargs, error, text):
    with pytest.raises(error, match=text):
        RegisteredBlockRam(**kwargs)
