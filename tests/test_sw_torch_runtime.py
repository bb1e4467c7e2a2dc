"""The PyTorch float32 baseline (``fxbp.sw.torch_runtime``): the float reference's
problem, trained the way a PyTorch user would."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fxbp.sw.cli import main
from fxbp.sw.float_ref import FloatMLP
from fxbp.sw.profile import load_profile
from fxbp.sw.train import CHECKPOINT_FILE, TrainConfig, Trainer, initial_parameters

torch = pytest.importorskip("torch", reason="the optional PyTorch baseline: pip install 'fxbp[torch]'")
from fxbp.sw.torch_runtime import TorchRuntime  # noqa: E402

#: float32's unit roundoff.
U32 = 2.0 ** -24


def make(sizes, loss, lr=2.0, batch=8, seed=5):
    p = load_profile("fx16")
    w0, b0 = initial_parameters(sizes, seed, p)
    rt = TorchRuntime(sizes, p, w0, b0, loss=loss, seed=seed, lr=lr, batch=batch, device="cpu")
    return rt, w0, b0


@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_one_step_is_the_float_reference_step_within_float32_rounding(loss):
    """The exact step is FloatMLP's in float64; torch's float32 step may differ from it by
    the rounding error bound of :func:`step_error_bound` only."""
    sizes, batch, lr = (6, 9, 5, 3), 8, 2.0
    rt, w0, b0 = make(sizes, loss, lr=lr, batch=batch)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (batch, sizes[0]))
    t = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    # the initial values are representable in float32: they reach torch exactly
    for (w, b), w_ref, b_ref in zip(rt._parameters()[1], w0, b0):
        assert np.array_equal(w.astype(np.float64), w_ref)
        assert np.array_equal(b.astype(np.float64), b_ref)
    rt.train_batch(*rt.prepare(x.astype(np.float32), t))
    exact = FloatMLP(sizes, w0, b0, loss=loss, dtype=np.float64)
    x32 = x.astype(np.float32).astype(np.float64)          # what torch was given
    bounds = step_error_bound(exact, x32, t, lr / batch)
    exact.train_step(x32, t, lr / batch)
    moved = 0
    for (w, b), w_x, b_x, (tol_w, tol_b) in zip(rt._parameters()[1], exact.weights,
                                                exact.biases, bounds):
        assert np.all(np.abs(w - w_x) <= tol_w)
        assert np.all(np.abs(b - b_x) <= tol_b)
        moved += int(np.sum(w != np.asarray(w_x, dtype=np.float32)))
    assert moved > 0                     # the bound is not so loose that any step passes


def step_error_bound(model: FloatMLP, x, t, eta: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Bounds on |float32 step - exact step| per weight and bias, by running error
    analysis (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1).

    With u = 2^-24, a float32 sum of n products is within gamma_n = n u / (1 - n u) of
    the exact sum, relative to the sum of the products' magnitudes; each elementwise
    operation adds at most u relative (torch's sigmoid: 4 u, the exp and the division).
    An error e in a sigmoid's input moves its output by at most e / 4; an error e in
    ``a`` moves (a - t) a (1 - a) by at most 3 e and a (1 - a) by at most e, for a and t
    in [0, 1]."""
    def gamma(n):
        return n * U32 / (1 - n * U32)

    ws, bs = model.weights, model.biases
    acts, err_a = [x], [np.zeros_like(x)]
    for w, b in zip(ws, bs):
        mag = acts[-1] @ np.abs(w).T + np.abs(b)          # activations are >= 0
        err_z = gamma(w.shape[1] + 1) * mag + err_a[-1] @ np.abs(w).T
        a = 1 / (1 + np.exp(-(acts[-1] @ w.T + b)))
        acts.append(a)
        err_a.append(err_z / 4 + 4 * U32 * a)
    a_out, n_layers = acts[-1], len(ws)
    deltas, err_d = [None] * n_layers, [None] * n_layers
    for l in range(n_layers - 1, -1, -1):
        a = acts[l + 1]
        if l == n_layers - 1:
            if model.loss == "xent":                       # sigmoid(z) - t from the logits
                d = a_out - t
                e = err_a[-1] + U32 * (np.abs(a_out) + np.abs(t))
            else:
                d = (a_out - t) * a * (1 - a)
                e = 3 * err_a[-1] + 3 * U32 * (np.abs(a_out) + np.abs(t)) * a * (1 - a)
        else:
            back = deltas[l + 1] @ ws[l + 1]
            mag = np.abs(deltas[l + 1]) @ np.abs(ws[l + 1])
            d = back * a * (1 - a)
            e = ((err_d[l + 1] @ np.abs(ws[l + 1]) + gamma(ws[l + 1].shape[0]) * mag) * a * (1 - a)
                 + err_a[l + 1] * np.abs(back) + 3 * U32 * np.abs(d))
        deltas[l], err_d[l] = d, e
    out = []
    n = len(x)
    for l in range(n_layers):
        g = deltas[l].T @ acts[l]
        err_g = (err_d[l].T @ np.abs(acts[l]) + np.abs(deltas[l]).T @ err_a[l]
                 + gamma(n) * (np.abs(deltas[l]).T @ np.abs(acts[l])))
        err_gb = err_d[l].sum(axis=0) + gamma(n) * np.abs(deltas[l]).sum(axis=0)
        gb = deltas[l].sum(axis=0)
        # w - eta g: the product and the difference round once each
        tol_w = eta * err_g + 2 * U32 * (np.abs(ws[l]) + eta * np.abs(g)) + 2 * eta * U32 * err_g
        tol_b = eta * err_gb + 2 * U32 * (np.abs(bs[l]) + eta * np.abs(gb))
        out.append((tol_w, tol_b))
    return out


def test_train_record_and_resume(tmp_path):
    cfg = TrainConfig(dataset="iris", backend="torch", hidden=(8,), epochs=4, batch=16, lr=2.0,
                      seed=3, device="cpu")
    straight = Trainer(cfg).run()
    assert straight["runtime"]["platform"] == f"PyTorch {torch.__version__}"
    assert straight["runtime"]["device"].startswith("CPU")
    assert straight["cast_events"] == {} and straight["cast_events_by_layer"] is None
    first = Trainer(TrainConfig(**{**cfg.__dict__, "epochs": 2}))
    first.run(checkpoint_dir=tmp_path)
    second = Trainer(cfg)
    second.load_checkpoint(tmp_path)
    resumed = second.run(checkpoint_dir=tmp_path)
    assert resumed["weights_digest"] == straight["weights_digest"]
    assert resumed["history"] == straight["history"]
    assert (tmp_path / CHECKPOINT_FILE).exists()


def run_cli(args) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return exc.code
    return 0


def test_cli_trains_on_torch(tmp_path):
    out = tmp_path / "r.json"
    code = run_cli(["train", "--dataset", "xor", "--backend", "torch", "--device", "cpu",
                    "--epochs", "2", "--json", str(out)])
    assert code == 0
    rec = json.loads(out.read_text())
    assert rec["backend"] == "torch" and rec["runtime"]["backend"] == "torch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_without_cuda_is_refused(tmp_path, capsys):
    code = run_cli(["train", "--dataset", "xor", "--backend", "torch", "--device", "gpu",
                    "--json", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "torch sees no CUDA device" in err and "--device cpu" in err
    assert not (tmp_path / "r.json").exists()
