"""Precision profiles: presets, the TOML format, and its errors."""

import dataclasses
import tempfile
import tomllib
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import pytest

from fxbp.sw.errors import FxbpError
from fxbp.sw.fixed import QFormat, Rounding
from fxbp.sw.profile import FORWARD_STAGES, STAGES, TRAINING_STAGES, load_profile, preset_names


def test_presets():
    assert {"fx16", "fx12", "fx8"} <= set(preset_names())
    for name, bits in (("fx16", 16), ("fx12", 12), ("fx8", 8)):
        p = load_profile(name)
        assert all(p.stage(s).fmt.total_bits == bits for s in STAGES)


@pytest.mark.parametrize("name", ["fx16", "fx12", "fx8"])
def test_toml_round_trip(name, tmp_path):
    p = load_profile(name).with_rounding("stochastic")
    path = tmp_path / "p.toml"
    path.write_text(p.to_toml())
    assert load_profile(str(path)) == p


def test_with_rounding_touches_training_stages_only(fx16):
    p = fx16.with_rounding("truncate")
    assert all(p.stage(s).rounding is Rounding.TRUNCATE for s in TRAINING_STAGES)
    assert all(p.stage(s).rounding is Rounding.NEAREST_EVEN for s in FORWARD_STAGES)


def test_base_inherits_and_overrides(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "fx16"\nname = "mine"\n[stages]\nweight = "Q3.13"\n'
                    'gradient = { format = "Q8.8", rounding = "stochastic" }\n')
    p = load_profile(str(path))
    assert p.name == "mine" and p.weight.fmt == QFormat(3, 13)
    assert p.gradient.rounding is Rounding.STOCHASTIC
    assert p.delta == load_profile("fx16").delta


@pytest.mark.parametrize("text, match", [
    ('base = "fx16"\n[stages]\nweight = "Q4.x"', "invalid fixed-point format 'Q4.x'"),
    ('base = "fx16"\n[stages]\nweight = "Q0.8"', "sign bit"),
    ('base = "fx16"\n[stages]\nweight = { format = "Q4.12", rounding = "up" }', "unknown rounding"),
    ('base = "fx16"\n[stages]\nbogus = "Q4.12"', "unknown stages"),
    ('base = "fx16"\ncolour = 3', "unknown key 'colour'; allowed: name, description, base"),
    ('[stages]\nweight = "Q4.12"', "lacks input"),
    ('base = "fx16"\n[stages]\ninput = { format = "Q2.14", rounding = "stochastic" }',
     "deterministic rounding"),
    ('base = "fx16"\n[stages]\nlearning_rate = "Q1.15"', "must be unsigned"),
    ('base = "fx16"\naccumulator_bits = 99', "accumulator_bits"),
    ('base = "fx16"\nlr_mode = "exp"', "lr_mode"),
    ('base = "fx16"\n[sigmoid]\nentries = 100', "power of two"),
    ('base = "fx16"\n[stages]\npreactivation = "Q8.0"', "finer than"),
    ('base = "fx99"', "unknown precision preset"),
    ("name = ", "not valid TOML"),
    # a misspelled key inside a stage table names the key and the allowed ones
    ('base = "fx16"\n[stages]\nweight = { formt = "Q4.12" }',
     "stage 'weight' has unknown key 'formt'; allowed: format, rounding, overflow"),
    ('base = "fx16"\n[stages]\nlearning_rate = { formt = "UQ0.16" }',
     "learning_rate has unknown key 'formt'; allowed: format, rounding"),
    ('base = "fx16"\n[stages]\nlearning_rate = { format = "UQ0.16", overflow = "wrap" }',
     "learning_rate has unknown key 'overflow'"),
    ('base = "fx16"\n[stages]\nlearning_rate = { rounding = "truncate" }',
     "learning_rate needs a format"),
    ('base = "fx16"\n[stages]\nlearning_rate = { format = "UQ0.16", rounding = "stochastic" }',
     "learning_rate is cast once per run and needs a deterministic rounding"),
    ('base = "fx16"\n[stages]\nlearning_rate = { format = "UQ0.16", rounding = "up" }',
     "learning_rate: unknown rounding mode 'up'"),
    ('base = "fx16"\n[stages]\nlearning_rate = 16', "learning_rate must be a format string or a table"),
    ('base = "fx16"\n[sigmoid]\nentreis = 64', r"\[sigmoid\] has unknown key 'entreis'; allowed: kind"),
    # values of the wrong type: one line each
    ('base = "fx16"\nsigmoid = 5', r"sigmoid must be a table \(\[sigmoid\]\), not 5"),
    ('base = "fx16"\nstages = [1, 2]', r"stages must be a table \(\[stages\]\), not \[1, 2\]"),
    ('base = "fx16"\nname = 5', "name must be a string, not 5"),
    ('base = "fx16"\ndescription = ["a"]', "description must be a string"),
    ('base = "fx16"\naccumulator_bits = "40"', "accumulator_bits must be an integer, not '40'"),
    ('base = "fx16"\naccumulator_bits = true', "accumulator_bits must be an integer, not True"),
    ('base = "fx16"\naccumulator_bits = 40.0', "accumulator_bits must be an integer, not 40.0"),
    ('base = "fx16"\nlr_mode = 1', "lr_mode must be a string"),
    ('base = "fx16"\n[sigmoid]\nentries = "x"', "entries must be a power of two"),
    ('base = "fx16"\n[sigmoid]\nentries = 4194304', "from 2 to 2\\*\\*20"),
    ('base = "fx16"\n[sigmoid]\nkind = 3', "sigmoid kind must be 'lut' or 'plan'"),
    ('base = "fx16"\n[sigmoid]\ninput_range = 0.3', "power of two 2\\*\\*k"),
    ('base = "fx16"\n[sigmoid]\ninput_range = 0.75', "power of two 2\\*\\*k"),
    ('base = "fx16"\n[sigmoid]\ninput_range = -8', "power of two 2\\*\\*k"),
    ('base = "fx16"\n[sigmoid]\ninput_range = nan', "power of two 2\\*\\*k"),
    ('base = "fx16"\n[sigmoid]\ninput_range = true', "power of two 2\\*\\*k"),
    ('base = "fx16"\n[sigmoid]\ninput_range = 0x4000000000000000', "beyond 64-bit raw values"),
    ('base = "fx16"\n[sigmoid]\ninput_range = 0.00048828125\nentries = 2', "below the LSB"),
    ('base = "fx16"\n[sigmoid]\ninput_range = 0.001953125', "finer than"),
    ('base = "fx16"\n[stages]\nweight = { format = 5 }', "format must be given as a string"),
    ('base = 5', "base must be a string, not 5"),
])
def test_bad_profiles(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(FxbpError, match=match):
        load_profile(str(path))


def test_missing_and_unknown(tmp_path):
    with pytest.raises(FxbpError, match="does not exist"):
        load_profile(str(tmp_path / "nope.toml"))
    with pytest.raises(FxbpError, match="unknown precision preset 'fx15'"):
        load_profile("fx15")


def test_as_dict_lists_every_stage(fx16):
    d = fx16.as_dict()
    assert set(d["stages"]) == set(STAGES)
    assert d["stages"]["weight"]["format"] == "Q4.12"
    assert d["learning_rate"]["format"] == "UQ0.16"


def test_learning_rate_rounding(tmp_path):
    path = tmp_path / "lr.toml"
    path.write_text('base = "fx16"\n[stages]\nlearning_rate = { format = "UQ0.12", rounding = "truncate" }\n')
    p = load_profile(str(path))
    assert p.learning_rate == QFormat(0, 12, signed=False)
    assert p.learning_rate_rounding is Rounding.TRUNCATE
    assert p.as_dict()["learning_rate_rounding"] == "truncate"
    assert 'learning_rate = { format = "UQ0.12", rounding = "truncate" }' in p.to_toml()
    again = tmp_path / "again.toml"
    again.write_text(p.to_toml())
    assert load_profile(str(again)) == p
    # a string keeps nearest-even, also when the base had another rounding
    child = tmp_path / "child.toml"
    child.write_text('base = "lr.toml"\n[stages]\nlearning_rate = "UQ0.14"\n')
    assert load_profile(str(child)).learning_rate_rounding is Rounding.NEAREST_EVEN
    assert load_profile("fx16").as_dict()["learning_rate_rounding"] == "nearest-even"


def test_base_is_a_preset_or_a_file_relative_to_the_referring_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "parent.toml").write_text('base = "fx8"\nname = "parent"\n'
                                                  '[stages]\nweight = "Q2.6"\n')
    (tmp_path / "child.toml").write_text('base = "sub/parent.toml"\nname = "child"\n')
    monkeypatch.chdir(tmp_path / "sub")           # the base is not looked up in the cwd
    p = load_profile(str(tmp_path / "child.toml"))
    assert p.name == "child" and p.weight.fmt == QFormat(2, 6) and p.delta == load_profile("fx8").delta


@pytest.mark.parametrize("files, match", [
    ({"a.toml": 'base = "a.toml"'}, r"bases form a cycle \(.*a\.toml -> .*a\.toml\)"),
    ({"a.toml": 'base = "b.toml"', "b.toml": 'base = "./a.toml"'},
     r"bases form a cycle \(.*a\.toml -> .*b\.toml -> .*a\.toml\)"),
    ({"a.toml": 'base = "b.toml"', "b.toml": 'base = "c.toml"', "c.toml": 'base = "b.toml"'},
     r"bases form a cycle \(.*b\.toml -> .*c\.toml -> .*b\.toml\)"),
    ({"a.toml": 'base = "missing.toml"'}, "missing.toml does not exist"),
    ({"a.toml": 'base = "fx77"'}, "unknown precision preset 'fx77'"),
])
def test_bad_bases(tmp_path, files, match):
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    with pytest.raises(FxbpError, match=match):
        load_profile(str(tmp_path / "a.toml"))


@pytest.mark.parametrize("input_range, entries", [(0.5, 256), (0.25, 64), (1, 256), (2.0, 16),
                                                  (0.0625, 16)])
def test_lut_input_range_any_power_of_two(tmp_path, input_range, entries):
    from fxbp.sw.sigmoid import lut_params, sigmoid_lut_table
    path = tmp_path / "r.toml"
    path.write_text(f'base = "fx16"\n[sigmoid]\ninput_range = {input_range}\nentries = {entries}\n')
    p = load_profile(str(path))
    assert p.sigmoid.input_range == input_range
    r_raw, shift = lut_params(p.preactivation.fmt, p.sigmoid)
    assert r_raw == input_range * 2 ** p.preactivation.fmt.frac_bits
    assert (2 * r_raw) >> shift == entries                    # one address per entry
    table = sigmoid_lut_table(p.sigmoid, p.activation.fmt)
    assert len(table) == entries and table[0] < table[-1]
    again = tmp_path / "again.toml"
    again.write_text(p.to_toml())
    assert load_profile(str(again)) == p


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(name=st.text(), description=st.text())
def test_toml_round_trip_of_any_name(name, description):
    p = dataclasses.replace(load_profile("fx12"), name=name, description=description)
    text = p.to_toml()
    assert tomllib.loads(text)["name"] == name
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.toml"
        path.write_text(text, encoding="utf-8")
        assert load_profile(str(path)) == p


def test_profile_command_prints_valid_toml_for_awkward_names(tmp_path, capsys):
    from fxbp.sw.cli import main
    path = tmp_path / "q.toml"
    path.write_text('base = "fx16"\nname = "say \\"hi\\" \\\\ \\n"\n'
                    'description = "tab\\there"\n')
    with pytest.raises(SystemExit) as exc:
        main(["profile", str(path), "--toml"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    again = tmp_path / "again.toml"
    again.write_text(out)
    p = load_profile(str(again))
    assert p == load_profile(str(path)) and p.name == 'say "hi" \\ \n'
