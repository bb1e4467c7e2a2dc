# amaranth: UnusedElaboratable=no
"""RegisteredProduct: the generic registers and the ECP5 MULT18X18D form give the same
product on every cycle, and the ECP5 form uses all of the DSP's registers.

Both forms run in Verilator on the same stimulus and are compared, cycle by cycle and
exactly, with a Python model of three enabled registers around an exact multiply. The ECP5
form is simulated with ``sim/mult18x18d.v``, the cell model written from Lattice's
description of the block (yosys has only a black box).

Vectors per operand shape: every pair of {min, min + 1, -1 (signed), 0, 1, max - 1, max},
so each corner of the product (the most negative times the most negative included), then
random operands; the enable is high ~70 % of cycles, with runs of low, so the registers
must hold.
"""

from __future__ import annotations

import itertools
import json
import random

import pytest
from amaranth.hdl import Module, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fxbp.hw.registered_product import (MULT18X18D_WIDTH, RegisteredProduct, SynthTarget,
                                        product_shape)

#: (a, b) operand shapes: the units' (unsigned |g| x eta, signed a x a), the mixed and the
#: full-width 18-bit cases, and narrow odd widths (sign extension of short operands).
SHAPES = [(unsigned(16), unsigned(16)), (signed(16), signed(16)), (signed(18), unsigned(18)),
          (unsigned(18), signed(18)), (signed(18), signed(18)), (signed(7), unsigned(3)),
          (unsigned(1), signed(18))]


class Products(wiring.Component):
    """One RegisteredProduct per shape pair, with a shared enable."""

    def __init__(self, shapes):
        self.shapes = shapes
        members = {"enable": In(1)}
        for k, (sa, sb) in enumerate(shapes):
            members[f"a{k}"] = In(sa)
            members[f"b{k}"] = In(sb)
            members[f"p{k}"] = Out(product_shape(sa, sb))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for k, (sa, sb) in enumerate(self.shapes):
            rp = m.submodules[f"rp{k}"] = RegisteredProduct(a_shape=sa, b_shape=sb)
            m.d.comb += [rp.a.eq(getattr(self, f"a{k}")), rp.b.eq(getattr(self, f"b{k}")),
                         rp.enable.eq(self.enable), getattr(self, f"p{k}").eq(rp.p)]
        return m


def _range(shape: Shape) -> tuple[int, int]:
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _corners(shape: Shape) -> list[int]:
    lo, hi = _range(shape)
    values = {lo, lo + 1, 0, 1, hi - 1, hi} | ({-1} if shape.signed else set())
    return sorted(v for v in values if lo <= v <= hi)


def _stimulus(shapes, seed=7, n_random=150):
    """Per cycle: (enable, [(a_k, b_k) per shape])."""
    rng = random.Random(seed)
    pairs = []
    for sa, sb in shapes:
        designed = list(itertools.product(_corners(sa), _corners(sb)))
        designed += [(rng.randint(*_range(sa)), rng.randint(*_range(sb))) for _ in range(n_random)]
        pairs.append(designed)
    n = max(len(p) for p in pairs)
    cycles, loaded, t = [], 0, 0
    while loaded < n + 3:           # every pair is loaded once, and its product reaches p
        enable = int(rng.random() < 0.7) if (t // 25) % 4 != 3 else 0   # every 4th run of 25: held
        # A pair stays on the inputs until an enabled edge loads it; while held, the
        # inputs change to other values that must not get in.
        index = loaded if enable else rng.randrange(n)
        cycles.append((enable, [p[index % len(p)] for p in pairs]))
        loaded += enable
        t += 1
    return cycles


def _reference(shapes, cycles):
    """p_k after each edge: three registers loaded on enabled edges around a * b."""
    regs = [(0, 0, 0) for _ in shapes]
    out = []
    for enable, values in cycles:
        if enable:
            regs = [(a, b, ra * rb) for (a, b), (ra, rb, _) in zip(values, regs)]
        out.append([r[2] for r in regs])
    return out


def _native_run(design, family, shapes, cycles):
    from fxbp.sim.native import NativeModel
    from fxbp.sw.rtl import netlist_verilog
    text = netlist_verilog(design, "products", family)
    got = []
    with NativeModel.build(text, "products", progress=False) as sim:
        sim.reset()
        for enable, values in cycles:
            sim.set("enable", enable)
            for k, (a, b) in enumerate(values):
                sim.set(f"a{k}", a)
                sim.set(f"b{k}", b)
            sim.step()
            got.append([sim.get(f"p{k}", signed=design.shapes[k][0].signed
                                or design.shapes[k][1].signed) for k in range(len(shapes))])
    return text, got


@pytest.mark.sim
@pytest.mark.parametrize("form", ["generic", "ecp5"])
def test_every_cycle_matches_the_exact_registered_product(form):
    shapes = SHAPES
    cycles = _stimulus(shapes)
    design = Products(shapes)
    text, got = _native_run(design, None if form == "generic" else form, shapes, cycles)
    assert ("MULT18X18D" in text) == (form == "ecp5")
    want = _reference(shapes, cycles)
    for t, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"cycle {t}: {g} != {w}"
    # The stimulus exercised what it claims: holds, and every corner product reached p.
    assert 0 < sum(e for e, _ in cycles) < len(cycles)
    for k, (sa, sb) in enumerate(shapes):
        seen = {row[k] for row in got}
        for a, b in itertools.product(_corners(sa), _corners(sb)):
            assert a * b in seen


def test_ecp5_form_is_one_fully_registered_mult18x18d_and_nothing_else():
    from fxbp.hw.generate import verilog
    from fxbp.hw.synth import dsp_registers, synthesize
    import tempfile
    from pathlib import Path
    unit = RegisteredProduct(a_shape=unsigned(16), b_shape=unsigned(16))
    with tempfile.TemporaryDirectory() as tmp:
        net = Path(tmp) / "n.json"
        res = synthesize(verilog(unit, "rp", platform=SynthTarget("ecp5")), "rp", "ecp5", netlist=net)
        dsp = dsp_registers(json.loads(net.read_text()))
    assert res["dsp"] == 1 and res["ff"] == 0 and res["lut"] == 0
    assert dsp == [{"cell": dsp[0]["cell"], "inputs": True, "output": True}]
    generic = synthesize(verilog(unit, "rp"), "rp", "ecp5")
    assert generic["dsp"] == 1 and generic["ff"] == 16 + 16 + 32


def test_operands_wider_than_the_dsp_stay_generic_on_ecp5():
    from fxbp.hw.generate import verilog
    wide = RegisteredProduct(a_shape=signed(MULT18X18D_WIDTH + 1), b_shape=unsigned(4))
    assert not wide.fits_mult18x18d
    assert "MULT18X18D" not in verilog(wide, "rp", platform=SynthTarget("ecp5"))
    assert "MULT18X18D" not in verilog(RegisteredProduct(a_shape=signed(18), b_shape=signed(18)),
                                       "rp", platform=SynthTarget("ice40"))


def test_product_shape_is_amaranths_exact_product_shape():
    for sa, sb in SHAPES:
        assert product_shape(sa, sb) == (Signal(sa) * Signal(sb)).shape()


@pytest.mark.parametrize("kwargs, exc, text", [
    ({"a_shape": "x", "b_shape": unsigned(4)}, TypeError, "a_shape must be a shape, not 'x'"),
    ({"a_shape": unsigned(4), "b_shape": 1.5}, TypeError, "b_shape must be a shape, not 1.5"),
    ({"a_shape": unsigned(0), "b_shape": unsigned(4)}, ValueError, "at least 1 bit"),
])
def test_parameters_are_checked(kwargs, exc, text):
    with pytest.raises(exc, match=text.replace("(", r"\(").replace(")", r"\)")):
        RegisteredProduct(**kwargs)


@pytest.mark.parametrize("family, exc", [(3, TypeError), ("gowin", ValueError)])
def test_synth_target_is_checked(family, exc):
    with pytest.raises(exc, match=repr(family)):
        SynthTarget(family)
