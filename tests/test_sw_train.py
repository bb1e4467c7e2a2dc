"""Training runs, the result record, checkpoints and exact resume."""

import json

import numpy as np
import pytest

from fxbp.sw.errors import FxbpError
from fxbp.sw.fixed import QFormat
from fxbp.sw.golden import weights_digest
from fxbp.sw.train import CHECKPOINT_FILE, TrainConfig, Trainer

REQUIRED = {"schema", "dataset", "backend", "runtime", "network", "precision", "rounding",
            "epochs", "batch", "learning_rate", "seed", "history", "final_test_accuracy",
            "samples_per_second", "cast_events", "layers", "weights_digest"}


def config(**kw):
    base = dict(dataset="iris", backend="golden", hidden=(8,), epochs=4, batch=16, lr=2.0,
                rounding="stochastic", seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("backend", ["golden", "float32", "float64"])
def test_result_record(backend):
    res = Trainer(config(backend=backend, epochs=2)).run()
    assert REQUIRED <= set(res)
    assert res["backend"] == backend and res["runtime"]["backend"] == backend
    assert 0 <= res["final_test_accuracy"] <= 1 and res["samples_per_second"] > 0
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    assert res["network"]["sizes"] == [4, 8, 3]
    json.dumps(res)  # serialisable
    # The digest is SHA-256 of the raw integers, which the real values determine exactly
    # (golden) or after rounding into the profile's formats (float backends).
    w_fmt = QFormat.parse(res["precision"]["stages"]["weight"]["format"])
    b_fmt = QFormat.parse(res["precision"]["stages"]["bias"]["format"])
    from fxbp.sw.fixed import quantize
    raw = [(quantize(np.array(l["weights"]), w_fmt), quantize(np.array(l["bias"]), b_fmt))
           for l in res["layers"]]
    assert weights_digest(raw) == res["weights_digest"]
    if backend == "golden":
        assert res["cast_events"]["weight_update"]["total"] == 2 * 8 * (4 * 8 + 8 * 3)
    else:
        assert res["cast_events"] == {}


@pytest.mark.parametrize("backend", ["golden", "float32"])
def test_resume_gives_the_same_digest(tmp_path, backend):
    straight = Trainer(config(backend=backend)).run()
    first = Trainer(config(backend=backend, epochs=2))
    first.run(checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).exists()
    second = Trainer(config(backend=backend))
    second.load_checkpoint(tmp_path)
    assert second.epoch == 2
    resumed = second.run(checkpoint_dir=tmp_path)
    assert resumed["weights_digest"] == straight["weights_digest"]
    assert resumed["history"] == straight["history"]
    assert resumed["cast_events"] == straight["cast_events"]


def test_checkpoint_round_trip_is_exact(tmp_path):
    t = Trainer(config(epochs=1))
    t.run(checkpoint_dir=tmp_path)
    u = Trainer(config(epochs=1))
    u.load_checkpoint(tmp_path)
    for (w1, b1), (w2, b2) in zip(t.runtime.raw_layers(), u.runtime.raw_layers()):
        assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    assert u.runtime.model.step == t.runtime.model.step
    assert u.runtime.event_counts() == t.runtime.event_counts()
    assert list(tmp_path.iterdir()) == [tmp_path / CHECKPOINT_FILE]   # no temporary files left


@pytest.mark.parametrize("change, match", [
    ({"lr": 1.0}, "lr=2.0"), ({"rounding": "truncate"}, "rounding"), ({"seed": 4}, "seed"),
    ({"epochs": 1}, "already has 2 epochs"),
])
def test_resume_refuses_other_settings(tmp_path, change, match):
    Trainer(config(epochs=2)).run(checkpoint_dir=tmp_path)
    with pytest.raises(FxbpError, match=match):
        Trainer(config(**change)).load_checkpoint(tmp_path)


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(FxbpError, match="no checkpoint"):
        Trainer(config()).load_checkpoint(tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(FxbpError, match="unreadable"):
        Trainer(config()).load_checkpoint(tmp_path)


def test_same_seed_same_digest_different_seed_differs():
    a = Trainer(config(epochs=1)).run()["weights_digest"]
    b = Trainer(config(epochs=1)).run()["weights_digest"]
    c = Trainer(config(epochs=1, seed=4)).run()["weights_digest"]
    assert a == b != c


def test_xor_learns():
    res = Trainer(TrainConfig(dataset="xor", backend="golden", hidden=(4,), epochs=300, batch=4,
                              lr=3.0, seed=1, loss="xent")).run()
    assert res["final_test_accuracy"] == 1.0


@pytest.mark.parametrize("kw, match", [
    ({"epochs": 0}, "--epochs"), ({"batch": -1}, "--batch"), ({"lr": -1.0}, "--lr"),
    ({"hidden": (0,)}, "--hidden"), ({"backend": "tpu"}, "unknown backend 'tpu'"),
    ({"precision": "fx99"}, "unknown precision preset"), ({"loss": "hinge"}, "unknown loss"),
    ({"lr": 1e-9}, "rounds to zero"), ({"dataset": None}, "exactly one of"),
])
def test_config_errors(kw, match):
    with pytest.raises(FxbpError, match=match):
        Trainer(config(**kw))
