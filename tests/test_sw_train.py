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
    assert resumed["cast_events_by_layer"] == straight["cast_events_by_layer"]
    assert (straight["cast_events_by_layer"] is None) == (backend == "float32")


def test_checkpoint_round_trip_is_exact(tmp_path):
    t = Trainer(config(epochs=1))
    t.run(checkpoint_dir=tmp_path)
    u = Trainer(config(epochs=1))
    u.load_checkpoint(tmp_path)
    for (w1, b1), (w2, b2) in zip(t.runtime.raw_layers(), u.runtime.raw_layers()):
        assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    assert u.runtime.model.step == t.runtime.model.step
    assert u.runtime.event_counts() == t.runtime.event_counts()
    assert u.runtime.layer_event_counts() == t.runtime.layer_event_counts()
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
    with pytest.raises(FxbpError, match="damaged or not an fxbp checkpoint"):
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


# -- a resume must continue the same run, or be refused ----------------------------------------

def write_profile(path, weight="Q4.12"):
    path.write_text(f'base = "fx16"\nname = "mine"\n[stages]\nweight = "{weight}"\n')
    return str(path)


def test_resume_refuses_a_changed_profile(tmp_path):
    """The issue's reproduction: the TOML's weight format changed between runs."""
    toml = write_profile(tmp_path / "p.toml")
    Trainer(config(epochs=2, precision=toml)).run(checkpoint_dir=tmp_path / "ck")
    write_profile(tmp_path / "p.toml", weight="Q3.13")
    with pytest.raises(FxbpError, match=r"another precision profile: stages\.weight\.format is "
                                        r"'Q4\.12' there, 'Q3\.13' now"):
        Trainer(config(epochs=3, precision=toml)).load_checkpoint(tmp_path / "ck")
    # the same profile under another name and path is the same run
    write_profile(tmp_path / "q.toml")
    t = Trainer(config(epochs=3, precision=str(tmp_path / "q.toml")))
    t.load_checkpoint(tmp_path / "ck")
    assert t.epoch == 2


def csv_data(path, rows=40, extra=0.0, drop_column=False):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (rows, 3))
    x[0, 0] += extra
    header = "a,c,label" if drop_column else "a,b,c,label"
    lines = [header] + [",".join(f"{v:.6f}" for v in (r[[0, 2]] if drop_column else r))
                        + f",{int(r[0] > 0.5)}" for r in x]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("backend", ["golden", "float64"])
def test_resume_refuses_changed_data(tmp_path, backend):
    data = csv_data(tmp_path / "d.csv")
    cfg = dict(data=data, target="label", backend=backend, epochs=2, batch=8, lr=1.0)
    Trainer(TrainConfig(**cfg)).run(checkpoint_dir=tmp_path / "ck")
    csv_data(tmp_path / "d.csv", extra=0.5)                      # one value changed
    with pytest.raises(FxbpError, match="trained on other data"):
        Trainer(TrainConfig(**{**cfg, "epochs": 3})).load_checkpoint(tmp_path / "ck")
    csv_data(tmp_path / "d.csv", drop_column=True)               # a column lost
    with pytest.raises(FxbpError, match="another run: it has sizes"):
        Trainer(TrainConfig(**{**cfg, "epochs": 3})).load_checkpoint(tmp_path / "ck")


def test_resume_accepts_the_default_hidden_spelled_out(tmp_path):
    Trainer(TrainConfig(dataset="xor", epochs=2)).run(checkpoint_dir=tmp_path)
    t = Trainer(TrainConfig(dataset="xor", epochs=3, hidden=(4,), batch=4, lr=2.0))
    t.load_checkpoint(tmp_path)
    assert t.epoch == 2


def test_resume_into_another_directory(tmp_path):
    """--resume A --checkpoint B: B gets the continuation unless it holds another run or
    this run further along; A is never touched."""
    a, b, other = tmp_path / "a", tmp_path / "b", tmp_path / "other"
    Trainer(config(epochs=1)).run(checkpoint_dir=a)
    Trainer(config(epochs=1, seed=9)).run(checkpoint_dir=other)
    a_bytes = (a / CHECKPOINT_FILE).read_bytes()
    t = Trainer(config(epochs=2))
    t.load_checkpoint(a)
    with pytest.raises(FxbpError, match="would overwrite.*another run: it has seed=9"):
        t.run(checkpoint_dir=other)
    t.run(checkpoint_dir=b)
    assert (a / CHECKPOINT_FILE).read_bytes() == a_bytes
    u = Trainer(config(epochs=3))
    u.load_checkpoint(a)
    with pytest.raises(FxbpError, match="holds this run further along"):
        u.run(checkpoint_dir=b)
    straight = Trainer(config(epochs=2)).run()
    v = Trainer(config(epochs=2))
    v.load_checkpoint(b)
    assert v.result()["weights_digest"] == straight["weights_digest"]


def checkpoint_parts(path):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(str(arrays.pop("meta")))


def save_parts(path, arrays, meta, sign=True):
    """Write a checkpoint; ``sign`` recomputes its checksum, as a crafted (not merely
    damaged) file would, so the field checks behind the checksum are exercised."""
    from fxbp.sw.train import _checkpoint_digest
    if sign and isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k != "digest"}
        meta["digest"] = _checkpoint_digest(meta, arrays)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def _set(d, key, value):
    d = dict(d)
    d[key] = value
    return d


CORRUPTIONS = {
    "weight above its format": lambda a, m: ({**a, "w0": a["w0"] + (1 << 20)}, m),
    "float weights": lambda a, m: ({**a, "w0": a["w0"].astype(np.float64)}, m),
    "negative step": lambda a, m: ({**a, "step": np.array(-1)}, m),
    "step off by one": lambda a, m: ({**a, "step": a["step"] + 1}, m),
    "w1 missing": lambda a, m: ({k: v for k, v in a.items() if k != "w1"}, m),
    "extra array": lambda a, m: ({**a, "w9": a["w0"]}, m),
    "wrong shape": lambda a, m: ({**a, "b0": a["b0"][:-1]}, m),
    "epoch missing": lambda a, m: (a, {k: v for k, v in m.items() if k != "epoch"}),
    "identity missing": lambda a, m: (a, {k: v for k, v in m.items() if k != "identity"}),
    "epoch a string": lambda a, m: (a, _set(m, "epoch", "2")),
    "epoch negative": lambda a, m: (a, _set(m, "epoch", -1)),
    "history short": lambda a, m: (a, _set(m, "history", m["history"][:1])),
    "history NaN": lambda a, m: (a, _set(m, "history", [_set(h, "loss", float("nan"))
                                                        for h in m["history"]])),
    "events negative": lambda a, m: (a, _set(m, "events", {**m["events"], "delta": {
        "overflow": -1, "underflow": 0, "total": 0}})),
    "events a list": lambda a, m: (a, _set(m, "events", [])),
    "generator moved": lambda a, m: (a, _set(m, "generator", {**m["generator"], "step": 0})),
    "meta a list": lambda a, m: (a, [1, 2]),
    "accuracy above 1": lambda a, m: (a, _set(m, "history", [_set(h, "train_accuracy", 5.0)
                                                             for h in m["history"]])),
    "event count beyond int64": lambda a, m: (a, _set(m, "events", {**m["events"], "delta": {
        "overflow": 10 ** 30, "underflow": 0, "total": 0}})),
    "schema a float": lambda a, m: (a, _set(m, "schema", 2.0)),
    "per-layer events a list": lambda a, m: (a, _set(m, "events_by_layer", [])),
    "per-layer events without layer 2": lambda a, m: (a, _set(m, "events_by_layer", {
        "1": m["events_by_layer"]["1"]})),
    "per-layer events not adding up": lambda a, m: (a, _set(m, "events_by_layer", {
        **m["events_by_layer"], "1": {**m["events_by_layer"]["1"], "delta": {
            **m["events_by_layer"]["1"]["delta"],
            "total": m["events_by_layer"]["1"]["delta"]["total"] + 1}}})),
    "deeply nested meta": lambda a, m: (a, _set(m, "history", json.loads("[" * 50 + "]" * 50))),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_checkpoint_fields_are_validated(tmp_path, name):
    Trainer(config(epochs=2)).run(checkpoint_dir=tmp_path)
    arrays, meta = checkpoint_parts(tmp_path / CHECKPOINT_FILE)
    save_parts(tmp_path / CHECKPOINT_FILE, *CORRUPTIONS[name](arrays, meta))
    with pytest.raises(FxbpError, match="damaged or not an fxbp checkpoint|another run|schema"):
        Trainer(config(epochs=3)).load_checkpoint(tmp_path)


EDITS_IN_RANGE = {
    "one weight + 1": lambda a, m: ({**a, "w0": a["w0"] + np.eye(*a["w0"].shape, dtype=np.int64)}, m),
    "weights as int8": lambda a, m: ({**a, "w0": a["w0"].astype(np.int8)}, m),
    "train_seconds": lambda a, m: (a, _set(m, "train_seconds", 1e308)),
    "profile TOML": lambda a, m: (a, _set(m, "profile_toml", "garbage")),
    "a loss": lambda a, m: (a, _set(m, "history", [_set(h, "loss", 0.5) for h in m["history"]])),
}


@pytest.mark.parametrize("name", EDITS_IN_RANGE)
def test_checkpoint_checksum_catches_edits_that_look_valid(tmp_path, name):
    Trainer(config(epochs=2)).run(checkpoint_dir=tmp_path)
    arrays, meta = checkpoint_parts(tmp_path / CHECKPOINT_FILE)
    save_parts(tmp_path / CHECKPOINT_FILE, *EDITS_IN_RANGE[name](arrays, meta), sign=False)
    with pytest.raises(FxbpError, match="do not match the checksum"):
        Trainer(config(epochs=3)).load_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "directory", "not npz"])
def test_damaged_checkpoint_files_are_refused(tmp_path, damage):
    Trainer(config(epochs=1)).run(checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        flipped = bytearray(data)
        for i in range(200, len(flipped), 97):
            flipped[i] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_text("x,y\n1,2\n")
    with pytest.raises(FxbpError, match="damaged or not an fxbp checkpoint"):
        Trainer(config(epochs=2)).load_checkpoint(tmp_path)


# -- options a run would otherwise silently misuse ---------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"seed": -1}, "--seed must be an integer from 0 to 4294967295"),
    ({"seed": 1 << 32}, "--seed"), ({"seed": True}, "--seed"),
    ({"batch": 121}, "--batch 121 exceeds the 120 training samples of iris.*use --batch 120"),
    ({"hidden": (100_000_000,)}, "needs about .* GiB|sums can reach"),
    ({"hidden": (2_000_000_000,)}, "needs about .* GiB|sums can reach"),
])
def test_more_config_errors(kw, match):
    import time
    t0 = time.perf_counter()
    with pytest.raises(FxbpError, match=match):
        Trainer(config(**kw))
    assert time.perf_counter() - t0 < 5          # refused before allocating


def test_memory_is_checked_before_allocating(monkeypatch):
    import fxbp.sw.train as train
    monkeypatch.setattr(train, "_memory_available", lambda: 1 << 20)
    with pytest.raises(FxbpError, match=r"64-32-10 network needs about .* more than the 0\.0 GiB"):
        Trainer(TrainConfig(dataset="digits", backend="float32", epochs=1))


def test_compilation_is_outside_the_timed_region(monkeypatch):
    """samples_per_second counts training steps only; compile time is reported apart."""
    import time
    from fxbp.sw.runtime import GoldenRuntime
    real = GoldenRuntime.warm_up

    def slow_warm_up(self):
        real(self)
        time.sleep(0.5)

    monkeypatch.setattr(GoldenRuntime, "warm_up", slow_warm_up)
    res = Trainer(config(epochs=1)).run()
    assert res["compile_seconds"] >= 0.5 > res["train_seconds"]
    assert res["samples_per_second"] == pytest.approx(120 / res["train_seconds"])


def test_warm_up_leaves_the_run_unchanged():
    a = Trainer(config(epochs=2))
    a.warm_up()
    b = Trainer(config(epochs=2))
    assert a.run()["weights_digest"] == b.run()["weights_digest"]
    assert a.runtime.event_counts() == b.runtime.event_counts()


def test_one_step_run_records_its_step():
    """A one-step run's record holds the pre-update prediction, loss and gradients; the
    float64 seed-neuron step is the textbook's."""
    res = Trainer(TrainConfig(dataset="seed-neuron", backend="float64")).run()
    fs = res["first_step"]
    assert abs(fs["prediction"][0][0] - 0.874352143) < 1e-9
    assert abs(fs["loss"] - 0.356465271) < 1e-9
    assert np.allclose(fs["gradients"]["weights"][0][0], [0.009276093, 0.027828278], atol=1e-9)
    golden = Trainer(TrainConfig(dataset="seed-neuron")).run()["first_step"]
    assert abs(golden["prediction"][0][0] - 0.874352143) < 0.01
    assert "first_step" not in Trainer(config(epochs=1)).run()


def test_resume_accepts_options_that_restate_the_profile(tmp_path):
    """--sigmoid lut on a LUT profile and --rounding nearest-even on a nearest-even TOML
    change nothing, so they resume; the profile comparison still refuses a real change."""
    toml = write_profile(tmp_path / "p.toml")
    Trainer(config(epochs=1, precision=toml, rounding=None)).run(checkpoint_dir=tmp_path / "ck")
    t = Trainer(config(epochs=2, precision=toml, rounding="nearest-even", sigmoid="lut"))
    t.load_checkpoint(tmp_path / "ck")
    assert t.epoch == 1
    with pytest.raises(FxbpError, match="another precision profile: sigmoid.kind"):
        Trainer(config(epochs=2, precision=toml, rounding=None, sigmoid="plan")).load_checkpoint(
            tmp_path / "ck")
