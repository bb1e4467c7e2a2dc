"""Dataset recipes: defaults that learn, overridden part by part, recorded in the result."""

import pytest

from fxbp.sw.recipes import RECIPES
from fxbp.sw.train import TrainConfig, Trainer

#: The issue's bars with no option but --dataset (golden, fx16).
BARS = {"digits": 0.95, "iris": 0.93, "xor": 1.0}


@pytest.mark.parametrize("dataset", sorted(BARS))
def test_defaults_alone_learn(dataset):
    res = Trainer(TrainConfig(dataset=dataset)).run()
    assert res["final_test_accuracy"] >= BARS[dataset]
    r = RECIPES[dataset]
    assert (res["epochs"], res["batch"], res["learning_rate"]["lr"], res["network"]["loss"]) == (
        r.epochs, r.batch, r.lr, r.loss)
    assert res["network"]["sizes"][1:-1] == list(r.hidden)
    assert res["recipe"]["name"] == dataset
    assert set(res["recipe"]["used_for"]) >= {"epochs", "batch", "lr", "hidden", "loss"}


def test_each_flag_overrides_its_part_only():
    res = Trainer(TrainConfig(dataset="iris", epochs=3, hidden=(5,))).run()
    r = RECIPES["iris"]
    assert res["epochs"] == 3 and res["network"]["sizes"] == [4, 5, 3]
    assert res["batch"] == r.batch and res["learning_rate"]["lr"] == r.lr
    assert sorted(res["recipe"]["used_for"]) == ["batch", "loss", "lr"]


def test_recipe_rounding_applies_to_presets_only(tmp_path):
    res = Trainer(TrainConfig(dataset="digits", epochs=1)).run()
    assert res["rounding"] == "stochastic" and res["rounding_source"] == "recipe"
    res = Trainer(TrainConfig(dataset="digits", epochs=1, rounding="truncate")).run()
    assert res["rounding"] == "truncate" and res["rounding_source"] == "command line"
    toml = tmp_path / "p.toml"
    toml.write_text('base = "fx16"\n[stages]\nweight = { format = "Q4.12", rounding = "stochastic" }\n'
                    'delta = { format = "Q2.14", rounding = "truncate" }\n')
    res = Trainer(TrainConfig(dataset="digits", epochs=1, precision=str(toml))).run()
    stages = res["precision"]["stages"]
    assert res["rounding_source"] == "profile" and res["rounding"] == "per-stage"
    assert stages["weight"]["rounding"] == "stochastic" and stages["delta"]["rounding"] == "truncate"
    assert stages["gradient"]["rounding"] == "nearest-even"


def test_toml_learning_rate_rounding_is_used(tmp_path):
    """eta = 0.21 / 8 = 6.72 LSB of UQ0.8: truncate gives 6, half-up 7 (the issue found the
    profile's learning-rate rounding ignored)."""
    for mode, want in (("truncate", 6), ("half-up", 7), ("nearest-even", 7)):
        toml = tmp_path / f"{mode}.toml"
        toml.write_text(f'base = "fx8"\n[stages]\nlearning_rate = {{ format = "UQ0.8", '
                        f'rounding = "{mode}" }}\n')
        res = Trainer(TrainConfig(dataset="iris", epochs=1, lr=0.21, batch=8,
                                  precision=str(toml))).run()
        assert res["learning_rate"]["eta_raw"] == want


def test_small_user_data_caps_the_recipe_batch(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i / 10},{(i * 7 % 10) / 10},{i % 2}\n" for i in range(10)))
    res = Trainer(TrainConfig(data=str(csv), target="y", epochs=2)).run()
    assert res["batch"] == 8 and res["recipe"]["name"] == "file"
