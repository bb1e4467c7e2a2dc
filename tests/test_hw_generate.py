# amaranth: UnusedElaboratable=no
"""fxbp gen: Verilog for every unit, deterministic output, lint-clean under Verilator."""

import hashlib

import pytest

from fxbp.hw.generate import CAST_STAGES, UNITS, build_unit, verilog
from fxbp.sim.tools import LINT_WAIVERS, lint
from fxbp.sw.cli import main
from fxbp.sw.profile import load_profile

CASES = [(u, p, r) for u in UNITS for p, r in (("fx16", "nearest-even"), ("fx8", "stochastic"))]


@pytest.mark.parametrize("unit, preset, rounding", CASES)
def test_lint_clean(unit, preset, rounding):
    profile = load_profile(preset).with_rounding(rounding)
    top = f"fxbp_{unit.replace('-', '_')}"
    assert lint(verilog(build_unit(unit, profile), top), top) == []


@pytest.mark.parametrize("stage", CAST_STAGES)
def test_every_cast_stage_builds(stage):
    dut = build_unit("cast", load_profile("fx16").with_rounding("stochastic"), stage)
    assert dut.fmt == load_profile("fx16").stage(stage).fmt
    assert "module fxbp_cast" in verilog(dut, "fxbp_cast")


def test_same_parameters_same_verilog(tmp_path, capsys):
    digests = set()
    for k in range(2):
        with pytest.raises(SystemExit) as exc:
            main(["gen", "weight-update", "--precision", "fx12", "--rounding", "stochastic",
                  "--out", str(tmp_path / f"wu{k}.v")])
        assert exc.value.code == 0
        digests.add(hashlib.sha256((tmp_path / f"wu{k}.v").read_bytes()).hexdigest())
    assert len(digests) == 1
    assert "module fxbp_weight_update" in (tmp_path / "wu0.v").read_text()


def test_list_and_stdout(capsys):
    with pytest.raises(SystemExit):
        main(["gen", "--list"])
    out = capsys.readouterr().out
    assert all(u in out for u in UNITS)
    with pytest.raises(SystemExit):
        main(["gen", "mac", "--precision", "fx8"])
    assert "module fxbp_mac" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["gen", "adder"], "unknown unit 'adder'"),
    (["gen", "cast", "--stage", "bias"], "unknown cast stage 'bias'"),
    (["gen", "mac", "--stage", "delta"], "--stage applies to the cast unit only"),
    (["gen"], "name a unit"),
    (["gen", "mac", "--out", "x.txt"], "must end in .v"),
    (["gen", "weight-update", "--precision", "SHIFT"], "builds the multiplier form only"),
])
def test_bad_gen_input(argv, match, capsys, tmp_path):
    if "SHIFT" in argv:
        shift = tmp_path / "shift.toml"
        shift.write_text('base = "fx16"\nlr_mode = "shift"\n')
        argv = [str(shift) if a == "SHIFT" else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and match in err and len(err.strip().splitlines()) == 1


def test_waivers_are_few_and_named():
    assert set(LINT_WAIVERS) == {"DECLFILENAME", "PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND",
                                 "WIDTHTRUNC"}
