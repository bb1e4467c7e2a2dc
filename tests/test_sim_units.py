# amaranth: UnusedElaboratable=no
"""cocotb testbenches under Verilator (marker: sim): every unit bit-exact with the reference
model over exhaustive 8/12-bit and 100,000-vector 16-bit sets, under full-rate, bubble and
back-pressure traffic, with the latency asserted. One build per case in sim_build/<case>."""

from pathlib import Path

import pytest

from fxbp.sim.runner import CASES, run_case

pytestmark = pytest.mark.sim
ROOT = Path(__file__).resolve().parent.parent / "sim_build"


@pytest.mark.parametrize("case", list(CASES))
def test_unit_bit_exact_under_verilator(case):
    res = run_case(case, ROOT)
    assert res["tests"] == 4 and res["failures"] == 0, f"see {res['log']}"
    assert set(res["cycles_per_second"]) == {"full-rate", "bubbles", "back-pressure", "both"}


def test_a_wrong_expectation_is_reported(tmp_path):
    # Fault injection into the scoreboard: the bench must fail and name the vector and bits.
    res = run_case("sigmoid-lut-8bit", tmp_path, corrupt=100)
    assert res["failures"] == 4
    log = Path(res["log"]).read_text()
    assert "output 100, unit 0 (lut/saturate), field value: expected" in log and "inputs {'value': -28}" in log


def test_waves_on_demand(tmp_path, monkeypatch):
    from fxbp.sim.runner import fst_supported
    monkeypatch.setenv("WAVES", "1")
    res = run_case("sigmoid-plan-8bit", tmp_path)
    assert res["failures"] == 0
    # FST when the lz4/zlib headers Verilator's FST writer needs are installed, else VCD.
    dump = Path(res["build_dir"]) / ("dump.fst" if fst_supported() else "dump.vcd")
    assert dump.exists() and dump.stat().st_size > 1000


def test_fxbp_sim_command(tmp_path, capsys):
    import json
    from fxbp.sw.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["sim", "sigmoid-plan-8bit", "--build-dir", str(tmp_path), "--json",
              str(tmp_path / "r.json")])
    assert exc.value.code == 0
    (res,) = json.loads((tmp_path / "r.json").read_text())
    assert res["case"] == "sigmoid-plan-8bit" and res["failures"] == 0
    assert "4/4" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["sim", "no-such-case"])
    assert exc.value.code == 2


def test_fxbp_sim_list_names_every_case_in_one_column(capsys):
    from fxbp.sw.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["sim", "--list"])
    assert exc.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["engine", *CASES]
    width = max(map(len, CASES))
    for line, name in zip(lines[1:], CASES):
        assert line[:width + 1] == f"{name:{width}s} " and line[width + 1] != " "
        assert line[width + 1:] == CASES[name].note
