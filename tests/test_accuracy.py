"""The README's accuracy claims on digits (64-32-10, MSE, 30 epochs, batch 32, lr 2, seed 0)."""

import pytest

from fxbp.sw.train import TrainConfig, Trainer

DIGITS = dict(dataset="digits", hidden=(32,), epochs=30, batch=32, lr=2.0, loss="mse", seed=0)


@pytest.fixture(scope="module")
def float32():
    return Trainer(TrainConfig(backend="float32", **DIGITS)).run()


def test_float32_reaches_95_percent(float32):
    assert float32["final_test_accuracy"] >= 0.95


def test_golden_fx16_stochastic_within_one_point_of_float32(float32):
    res = Trainer(TrainConfig(backend="golden", precision="fx16", rounding="stochastic",
                              **DIGITS)).run()
    assert abs(res["final_test_accuracy"] - float32["final_test_accuracy"]) <= 0.01


@pytest.mark.slow
def test_fx8_round_to_nearest_stalls_where_stochastic_learns(float32):
    runs = {r: Trainer(TrainConfig(backend="golden", precision="fx8", rounding=r, **DIGITS)).run()
            for r in ("nearest-even", "stochastic")}
    assert runs["stochastic"]["final_test_accuracy"] >= float32["final_test_accuracy"] - 0.02
    assert runs["nearest-even"]["final_test_accuracy"] < 0.6
