"""Precision profiles: presets, the TOML format, and its errors."""

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
    ('base = "fx16"\ncolour = 3', "unknown keys"),
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
