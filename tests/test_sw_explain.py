"""`fxbp explain`: one training step stage by stage, against the golden model and the textbook."""

import json

import numpy as np
import pytest

from fxbp.sw.cli import main
from fxbp.sw.explain import (EVENT_SITES_OF_STEP, explain_step, first_step_record,
                             float_step, next_batch)
from fxbp.sw.float_ref import FloatMLP
from fxbp.sw.train import TrainConfig, Trainer

WRAP_SHIFT_TOML = """base = "fx8"
lr_mode = "shift"
[stages]
preactivation = { format = "Q3.4", rounding = "nearest-even", overflow = "wrap" }
error = { format = "Q2.6", rounding = "nearest-even", overflow = "wrap" }
gradient = { format = "Q3.4", rounding = "nearest-even", overflow = "wrap" }
weight = { format = "Q3.5", rounding = "nearest-even", overflow = "wrap" }
"""

# fx16/fx12/fx8; nearest-even/stochastic/truncate/half-up; mse/xent; lut/plan; 0, 1 and 2
# hidden layers; batch 1 and > 1; saturate and wrap; multiply and shift learning rates.
CONFIGS = {
    "seed-neuron fx16": dict(dataset="seed-neuron", precision="fx16", batch=1, lr=0.01),
    "xor fx12 stochastic xent plan": dict(dataset="xor", precision="fx12", rounding="stochastic",
                                          loss="xent", sigmoid="plan", batch=4, lr=2.0),
    "iris fx8 truncate 2 hidden": dict(dataset="iris", precision="fx8", rounding="truncate",
                                       hidden=(6, 5), batch=64, lr=60.0),
    "iris fx16 stochastic plan 2 hidden": dict(dataset="iris", precision="fx16",
                                               rounding="stochastic", sigmoid="plan",
                                               hidden=(5, 4), batch=8, lr=4.0),
    "iris fx12 xent batch 1": dict(dataset="iris", precision="fx12", loss="xent", batch=1, lr=0.5),
    "iris fx8 stochastic xent plan": dict(dataset="iris", precision="fx8", rounding="stochastic",
                                          loss="xent", sigmoid="plan", batch=2, lr=0.2),
    "digits fx8 half-up": dict(dataset="digits", precision="fx8", rounding="half-up", batch=32,
                               lr=8.0),
    "iris wrap shift xent": dict(dataset="iris", precision="WRAP", rounding="stochastic",
                                 loss="xent", batch=32, lr=4.0, seed=3),
}


def trainer(config, tmp_path=None):
    if config.get("precision") == "WRAP":
        path = tmp_path / "wrap.toml"
        path.write_text(WRAP_SHIFT_TOML)
        config = {**config, "precision": str(path)}
    return Trainer(TrainConfig(backend="golden", epochs=1, **config))


def golden_delta(tr, samples):
    """Run GoldenMLP.train_step on the batch; return this step's event counts."""
    model = tr.runtime.model
    x, t = tr.runtime.prepare(tr.dataset.x_train[samples], tr.dataset.t_train[samples])
    before = model.event_counts()
    model.train_step(x, t, tr.runtime.eta)
    after = model.event_counts()
    return {s: {k: after[s][k] - before[s][k] for k in ("overflow", "underflow", "total")}
            for s in EVENT_SITES_OF_STEP}


@pytest.mark.parametrize("name", CONFIGS)
def test_unfused_step_equals_golden(name, tmp_path):
    tr = trainer(CONFIGS[name], tmp_path)
    model = tr.runtime.model
    start = model.digest()
    ex = explain_step(tr)
    assert model.digest() == start and model.step == 0     # the trainer is left as it was
    events = golden_delta(tr, ex.samples)
    assert ex.events == events
    for l, (w, b) in enumerate(model.layers(), start=1):
        assert np.array_equal(ex.stage("W_new", l).fixed.raw, w)
        assert np.array_equal(ex.stage("B_new", l).fixed.raw, b)


def test_configs_exercise_events(tmp_path):
    """The equality above covers overflows and underflows at every kind of site."""
    seen = {s: [0, 0] for s in EVENT_SITES_OF_STEP}
    for config in CONFIGS.values():
        for site, c in explain_step(trainer(config, tmp_path)).events.items():
            seen[site][0] += c["overflow"]
            seen[site][1] += c["underflow"]
    assert seen["preactivation"][0] and seen["error"][0] and seen["gradient"][0]
    assert seen["weight_update"][0] and seen["weight_update"][1] and seen["delta"][1]


def test_per_value_events_sit_where_the_values_say():
    ex = explain_step(trainer(CONFIGS["iris fx8 truncate 2 hidden"]))
    kinds = set()
    for s in ex.stages:
        f = s.fixed
        if f.site is None:                # inputs, targets, parameters, exact values: no cast now
            if s.key not in ("x", "t"):   # (inputs and targets are cast when data is prepared)
                assert not f.overflow.any() and not f.underflow.any()
            continue
        # saturate: an overflowed value sits at an end of the range
        assert np.all(np.isin(f.raw[f.overflow], (s.fmt.min_raw, s.fmt.max_raw)))
        if s.key in ("W_new", "B_new"):   # a non-zero update that left the parameter unchanged
            old = ex.stage(s.key[0], s.layer).fixed.raw
            u = ex.stage("u" + s.key[0], s.layer).fixed.raw
            assert np.array_equal(f.underflow, (u != 0) & (f.raw == old))
        else:                             # a non-zero value rounded to 0
            assert np.all(f.raw[f.underflow] == 0)
        kinds |= {k for k in s.events().reshape(-1) if k}
        assert (s.events() == "underflow").sum() == f.underflow.sum()
    assert kinds == {"overflow", "underflow"}


def test_first_batch_is_the_one_train_takes():
    tr = trainer(CONFIGS["iris fx16 stochastic plan 2 hidden"])
    seen = []

    class Stop(Exception):
        pass

    def record(x, t):
        seen.append((x.copy(), t.copy()))
        raise Stop

    tr.runtime.train_batch = record
    with pytest.raises(Stop):
        tr.run()
    samples = next_batch(tr)
    x, t = tr.runtime.prepare(tr.dataset.x_train[samples], tr.dataset.t_train[samples])
    assert len(samples) == 8
    assert np.array_equal(seen[0][0], x) and np.array_equal(seen[0][1], t)


def test_float_side_equals_float_reference():
    tr = trainer(CONFIGS["iris fx16 stochastic plan 2 hidden"])
    ex = explain_step(tr)
    x = tr.dataset.x_train[ex.samples]
    t = tr.dataset.t_train[ex.samples]
    w0 = [ex.stage("W", l).ref for l in (1, 2, 3)]
    b0 = [ex.stage("B", l).ref for l in (1, 2, 3)]
    ref = FloatMLP(tr.sizes, w0, b0, loss="mse")
    grads, acts = ref.gradients(x, t)
    ref.train_step(x, t, 4.0 / 8)
    for l in (1, 2, 3):
        assert np.allclose(ex.stage("a", l).ref, acts[l], rtol=1e-13, atol=0)
        assert np.allclose(ex.stage("G", l).ref, grads[l - 1][0], rtol=1e-12, atol=1e-15)
        assert np.allclose(ex.stage("g", l).ref, grads[l - 1][1], rtol=1e-12, atol=1e-15)
        assert np.allclose(ex.stage("W_new", l).ref, ref.weights[l - 1], rtol=1e-13, atol=1e-15)
        assert np.allclose(ex.stage("B_new", l).ref, ref.biases[l - 1], rtol=1e-13, atol=1e-15)
    # The float start is the golden model's real weights when the dataset fixes none.
    p = tr.profile
    assert np.array_equal(w0[0], p.weight.fmt.to_real(tr.runtime.model.weights[0]))
    xent = float_step(tr.sizes, w0, b0, x, t, loss="xent", eta=0.5)
    assert ("d", 3) not in xent and np.array_equal(xent["delta", 3], acts[3] - t)


# The worked example's figures (prediction and loss before the update).
TEXTBOOK = {"prediction": 0.874352143, "loss": 0.356465271, "grad": (0.009276093, 0.027828278),
            "delta": 0.0927609256, "new_w": (0.49990723907, 0.1997217172)}


def test_seed_neuron_float_column_is_the_textbook():
    ex = explain_step(trainer(CONFIGS["seed-neuron fx16"]))
    assert abs(ex.prediction()["float"][0][0] - TEXTBOOK["prediction"]) < 1e-9
    assert abs(ex.loss()["float"] - TEXTBOOK["loss"]) < 1e-9
    g = ex.gradients("float")
    assert np.allclose(g["weights"][0][0], TEXTBOOK["grad"], rtol=0, atol=1e-9)
    assert abs(g["bias"][0][0] - TEXTBOOK["delta"]) < 1e-9
    new = ex.parameters_after("float")[0]
    assert np.allclose(new["weights"][0], TEXTBOOK["new_w"], rtol=0, atol=1e-9)
    assert abs(new["bias"][0] - (1.83 - 0.01 * g["bias"][0][0])) < 1e-15
    assert abs(new["bias"][0] - 1.8290723907) < 1e-9
    # Fixed point next to it: the prediction is within the LUT's error, and every value of
    # the tiny network is reported.
    assert abs(ex.prediction()["fixed"][0][0] - TEXTBOOK["prediction"]) < 0.01
    assert ex.tiny and ex.float_start == "the dataset's initial values"


def test_first_step_record(tmp_path):
    tr = trainer(CONFIGS["seed-neuron fx16"])
    rec = first_step_record(tr)
    ex = explain_step(tr)
    assert set(rec) == {"prediction", "loss", "gradients"}
    assert rec["prediction"] == ex.prediction()["fixed"] and rec["loss"] == ex.loss()["fixed"]
    assert rec["gradients"] == ex.gradients("fixed")
    assert rec["gradients"]["weights"][0][0] == [9 / 1024, 28 / 1024]
    # The float64 backend starts from the textbook's exact values: its record is the textbook.
    rec = first_step_record(Trainer(TrainConfig(dataset="seed-neuron", backend="float64",
                                                epochs=1, batch=1, lr=0.01, loss="mse")))
    assert abs(rec["prediction"][0][0] - TEXTBOOK["prediction"]) < 1e-9
    assert abs(rec["loss"] - TEXTBOOK["loss"]) < 1e-9
    assert np.allclose(rec["gradients"]["weights"][0][0], TEXTBOOK["grad"], rtol=0, atol=1e-9)
    assert abs(rec["gradients"]["bias"][0][0] - TEXTBOOK["delta"]) < 1e-9
    for backend in ("float64", "float32"):
        ft = Trainer(TrainConfig(dataset="iris", backend=backend, hidden=(5, 4), batch=8, lr=4.0,
                                 epochs=1))
        rec = first_step_record(ft)
        idx = next_batch(ft)
        w = [np.asarray(layer["weights"]) for layer in ft.runtime.real_layers()]
        b = [np.asarray(layer["bias"]) for layer in ft.runtime.real_layers()]
        dtype = np.float32 if backend == "float32" else np.float64
        ref = FloatMLP(ft.sizes, w, b, dtype=dtype)
        grads, acts = ref.gradients(ft.dataset.x_train[idx].astype(dtype),
                                    ft.dataset.t_train[idx].astype(dtype))
        assert rec["prediction"] == acts[-1].astype(np.float64).tolist()
        assert rec["gradients"]["weights"][2] == grads[2][0].astype(np.float64).tolist()
        assert len(rec["gradients"]["bias"]) == 3


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cli_seed_neuron_json(tmp_path, capsys):
    js = tmp_path / "out" / "explain.json"
    code, out, err = run(["explain", "--dataset", "seed-neuron", "--batch", "1", "--lr", "0.01",
                          "--loss", "mse", "--json", str(js)], capsys)
    assert code == 0, err
    assert "every value" in out and "float64 (textbook)" in out and "0.874352143485" in out
    assert "underflow" in out and "new weight W'" in out
    rec = json.loads(js.read_text())
    assert rec["command"] == "explain" and rec["config"]["dataset"] == "seed-neuron"
    assert abs(rec["prediction"]["float"][0][0] - TEXTBOOK["prediction"]) < 1e-9
    assert abs(rec["loss"]["float"] - TEXTBOOK["loss"]) < 1e-9
    assert rec["prediction"]["fixed"] == [[14377 / 2 ** 14]]
    assert np.allclose(rec["gradients"]["float"]["weights"][0][0], TEXTBOOK["grad"], atol=1e-9)
    assert rec["gradients"]["fixed"]["bias"] == [[93 / 1024]]
    stages = {(s["stage"], s["layer"]): s for s in rec["stages"]}
    assert list(stages)[:3] == [("x", 0), ("t", 1), ("W", 1)]
    new_w = stages["W_new", 1]
    assert new_w["raw"] == [[2048, 818]] and new_w["underflow_at"] == [0]
    assert new_w["format"] == "Q4.12" and new_w["summary"]["underflow"] == 1
    assert rec["cast_events"]["weight_update"] == {"overflow": 0, "underflow": 1, "total": 2}


def test_cli_digits_neuron(tmp_path, capsys):
    js = tmp_path / "d.json"
    code, out, err = run(["explain", "--dataset", "digits", "--neuron", "1:3", "--json", str(js)],
                         capsys)
    assert code == 0, err
    assert "per stage" in out and "neuron 3 of layer 1" in out and "every value" not in out
    rec = json.loads(js.read_text())
    batch = rec["step"]["batch"]
    n_in = rec["network"]["sizes"][0]
    vals = rec["neuron"]["values"]
    per_sample = [v for v in vals if v["stage"] in ("acc", "z", "a", "e", "d", "delta")]
    incoming = [v for v in vals if v["stage"] in ("W", "G", "uW", "W_new")]
    assert len(per_sample) == 6 * batch and all(v["index"][1] == 3 for v in per_sample)
    assert len(incoming) == 4 * n_in and all(v["index"][0] == 3 for v in incoming)
    assert {v["stage"] for v in vals} - {v["stage"] for v in per_sample + incoming} == \
        {"B", "g", "uB", "B_new"}
    z = next(s for s in rec["stages"] if s["stage"] == "z" and s["layer"] == 1)
    v = per_sample[batch]                       # z of the first sample
    assert v["stage"] == "z" and v["raw"] == z["raw"][0][3]


@pytest.mark.parametrize("value,message", [
    ("3:0", "has layers 1 to 2"),
    ("1:32", "layer 1 has neurons 0 to 31"),
    ("0:1", "has layers 1 to 2"),
    ("1", "is not L:J"),
    ("a:b", "is not L:J"),
    ("1:2:3", "is not L:J"),
    ("-1:0", "is not L:J"),
])
def test_cli_bad_neuron(value, message, tmp_path, capsys):
    js = tmp_path / "bad.json"
    code, out, err = run(["explain", "--dataset", "digits", "--neuron", value, "--json", str(js)],
                         capsys)
    assert code == 2 and out == ""
    assert err.startswith("fxbp: error: --neuron") and err.count("\n") == 1 and message in err
    assert not js.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, match", [
    (["--dataset", "xor", "--target", "y"], "--target applies to --data files only"),
    (["--dataset", "iris", "--scale", "none"], "--scale applies to --data files only"),
    (["--dataset", "iris", "--seed", "-1"], "--seed"),
    (["--dataset", "iris", "--hidden", "0"], "--hidden"),
    (["--dataset", "iris", "--test-fraction", "1.5"], "--test-fraction"),
])
def test_explain_refuses_what_train_refuses(tmp_path, capsys, argv, match):
    code, out, err = run(["explain", *argv, "--json", str(tmp_path / "e.json")], capsys)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e.json").exists()
