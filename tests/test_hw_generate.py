# amaranth: UnusedElaboratable=no
"""fxbp gen: Verilog for every unit, deterministic output, lint-clean under Verilator."""

import hashlib

import pytest

from fxbp.hw.generate import CAST_STAGES, UNITS, build_unit, cast_source, verilog
from fxbp.sim.tools import LINT_WAIVERS, lint
from fxbp.sw.cli import main
from fxbp.sw.profile import load_profile

CASES = [(u, p, r) for u in UNITS for p, r in (("fx16", "nearest-even"), ("fx8", "stochastic"))]


@pytest.mark.parametrize("unit, preset, rounding", CASES)
def test_lint_clean(unit, preset, rounding):
    profile = load_profile(preset).with_rounding(rounding)
    top = f"fxbp_{unit.replace('-', '_')}"
    assert lint(verilog(build_unit(unit, profile), top), top) == []


@pytest.mark.parametrize("preset", ["fx16", "fx12", "fx8"])
@pytest.mark.parametrize("stage", CAST_STAGES)
def test_every_cast_stage_builds(stage, preset):
    profile = load_profile(preset).with_rounding("stochastic")
    dut = build_unit("cast", profile, stage)
    site = profile.stage(CAST_STAGES[stage][0])
    assert (dut.fmt, dut.rounding, dut.overflow) == (site.fmt, site.rounding, site.overflow)
    assert (dut.in_width, dut.from_frac) == cast_source(profile, stage)
    assert "module fxbp_cast" in verilog(dut, "fxbp_cast")


def test_the_casts_the_issue_named_can_be_generated(capsys):
    p = load_profile("fx8")
    assert cast_source(p, "input") == (12, 9)                   # round-to-odd, 2 extra bits
    assert cast_source(p, "output-error") == (9, 7)            # a_L - t
    assert cast_source(p, "xent-delta") == (8, 6)              # e_L -> Delta
    assert cast_source(p, "bias-gradient") == (24, 7)          # sum of deltas
    bias = build_unit("bias-update", p)
    assert bias.w_fmt == p.bias.fmt and bias.rounding == p.bias.rounding
    assert "module fxbp_bias_update" in verilog(bias, "fxbp_bias_update")
    with pytest.raises(SystemExit):
        main(["gen", "--list"])
    out = capsys.readouterr().out
    assert all(f"cast --stage {s}" in out for s in CAST_STAGES) and "bias-update" in out


def test_shift_mode_profiles_build_with_lr_shift(tmp_path, capsys):
    shift = tmp_path / "shift.toml"
    shift.write_text('base = "fx16"\nlr_mode = "shift"\n')
    with pytest.raises(SystemExit) as exc:
        main(["gen", "weight-update", "--precision", str(shift), "--lr-shift", "6",
              "--out", str(tmp_path / "wu.v")])
    assert exc.value.code == 0
    text = (tmp_path / "wu.v").read_text()
    assert "module fxbp_weight_update" in text and " eta" not in text


def test_tag_and_registered_ready_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gen", "sigmoid-derivative", "--tag-width", "12", "--registered-ready"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "[11:0] \\i__payload.tag" in text and "skid_valid" in text


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
    (["gen", "weight-update", "--precision", "SHIFT"], "give it with --lr-shift K"),
    (["gen", "weight-update", "--lr-shift", "3"], "--lr-shift applies to lr_mode = \"shift\""),
    (["gen", "mac", "--lr-shift", "3"], "--lr-shift applies to weight-update and bias-update"),
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


def _profile(tmp_path, base="fx8", **stages):
    toml = tmp_path / "p.toml"
    toml.write_text(f'base = "{base}"\n[stages]\n' + "".join(f'{k} = "{v}"\n' for k, v in stages.items()))
    return load_profile(str(toml))


@pytest.mark.parametrize("stage, values", [
    ("xent-delta", list(range(0, 256, 7)) + [255]),                        # an unsigned error
    ("delta", [e * d for e in (0, 1, 100, 200, 255) for d in (1, 128, 255)]),   # unsigned x unsigned
])
def test_unsigned_sources_get_a_wide_enough_port(tmp_path, stage, values):
    """The review found these ports one bit short: e = 133 (UQ2.6) read as negative."""
    from fxbp.sim import models
    from fxbp.sim.amaranth_bench import run_stream
    p = _profile(tmp_path, error="UQ2.6", derivative="UQ0.8")
    dut = build_unit("cast", p, stage)
    width, frac = cast_source(p, stage)
    assert max(values) < 1 << (width - 1)                   # every value fits the signed port
    out, _ = run_stream(dut, [{"value": v} for v in values])
    want = models.cast_with_flags(values, frac, p.delta.fmt, p.delta.rounding, p.delta.overflow)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()


def test_layer_one_units_are_chosen_explicitly(tmp_path, capsys):
    """When the input and activation formats differ, layer 1's MAC and pre-activation and
    gradient casts differ from a hidden layer's: the generator makes the user say which."""
    from fxbp.sw.errors import FxbpError
    p = _profile(tmp_path, base="fx16", input="Q1.15")       # fx16 activation is Q2.14
    with pytest.raises(FxbpError, match="--layer first or --layer hidden"):
        build_unit("mac", p)
    for stage in ("preactivation", "gradient"):
        first = cast_source(p, stage, "first")[1]
        hidden = cast_source(p, stage, "hidden")[1]
        assert first - hidden == 15 - 14
    first, hidden = build_unit("mac", p, layer="first"), build_unit("mac", p, layer="hidden")
    assert first.bias_shift - hidden.bias_shift == 1
    assert "module" in verilog(first, "first") and "module" in verilog(hidden, "hidden")
    with pytest.raises(FxbpError, match="--layer applies to mac"):
        build_unit("sigmoid", p, layer="first")
    code = None
    with pytest.raises(SystemExit) as exc:
        main(["gen", "cast", "--stage", "gradient", "--precision", str(tmp_path / "p.toml")])
    code = exc.value.code
    assert code == 2 and "--layer" in capsys.readouterr().err


def test_input_site_refuses_formats_its_port_cannot_cover(tmp_path):
    from fxbp.sw.errors import FxbpError
    p = _profile(tmp_path, input="Q40.22")
    with pytest.raises(FxbpError, match="66 bits for Q40.22, more than 64"):
        build_unit("cast", p, "input")


@pytest.mark.parametrize("rounding", ["truncate", "toward-zero", "half-up", "nearest-even"])
def test_input_site_with_round_to_odd_equals_golden_quantize(tmp_path, rounding):
    """The host rule of docs/rtl.md: round to odd at f_in + 2 bits, saturate beyond the
    port; the unit then gives golden's one rounding of the exact float64 (section 2)."""
    import math
    from fractions import Fraction
    import numpy as np
    from fxbp.sim.amaranth_bench import run_stream
    from fxbp.sw.fixed import quantize
    toml = tmp_path / "in.toml"
    toml.write_text(f'base = "fx8"\n[stages]\ninput = {{ format = "Q1.7", rounding = "{rounding}" }}\n')
    p = load_profile(str(toml))
    fmt = p.input.fmt
    width, frac = cast_source(p, "input")
    lsb = 2.0 ** -fmt.frac_bits
    rng = np.random.default_rng(3)
    ties = [(k + 0.5) * lsb for k in range(-130, 130, 7)]
    near = [t + d * lsb * 2.0 ** -30 for t in ties[:10] for d in (-1, 1)]
    values = ties + near + list(rng.uniform(-1.3, 1.3, 200)) + [-1.0, 1.0 - lsb, 5.0, -5.0, 0.0]
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1

    def round_to_odd(v):
        x = Fraction(v) * (1 << frac)
        t = math.floor(x)
        return min(max(t | (1 if x != t else 0), lo), hi)

    dut = build_unit("cast", p, "input")
    out, _ = run_stream(dut, [{"value": round_to_odd(v)} for v in values])
    assert [o["value"] for o in out] == quantize(values, fmt, p.input.rounding).tolist()
