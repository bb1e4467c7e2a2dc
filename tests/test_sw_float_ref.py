"""The float reference, and the seed-neuron worked example on both float and golden."""

import math

import numpy as np
import pytest

from fxbp.sw.float_ref import FloatMLP
from fxbp.sw.train import TrainConfig, Trainer

X = (0.1, 0.3)
W = (0.5, 0.2)
B = 1.83
T = 0.03
LR = 0.01


def textbook():
    """One step of plain gradient descent on 1/2 (t - y)**2, by hand."""
    z = W[0] * X[0] + W[1] * X[1] + B
    y = 1 / (1 + math.exp(-z))
    loss = 0.5 * (T - y) ** 2
    dz = (y - T) * y * (1 - y)
    grads = (dz * X[0], dz * X[1], dz)
    new = (W[0] - LR * grads[0], W[1] - LR * grads[1], B - LR * grads[2])
    return y, loss, grads, new


def test_textbook_values():
    y, loss, grads, new = textbook()
    # The worked example's published figures, to the digits it prints them.
    assert round(y, 4) == 0.8744 and round(loss, 4) == 0.3565
    assert round(grads[0], 6) == 0.009276 and round(grads[1], 6) == 0.027828


def test_float64_one_step_matches_textbook():
    y, loss, grads, new = textbook()
    m = FloatMLP((2, 1), [np.array([W])], [np.array([B])], loss="mse")
    x, t = np.array([X]), np.array([[T]])
    (gw, gb), = m.gradients(x, t)[0]
    acts = m.train_step(x, t, LR)
    assert abs(acts[-1][0, 0] - y) < 1e-9
    assert abs(0.5 * (T - acts[-1][0, 0]) ** 2 - loss) < 1e-9
    assert np.allclose(gw[0], grads[:2], rtol=0, atol=1e-9) and abs(gb[0] - grads[2]) < 1e-9
    assert np.allclose(m.weights[0][0], new[:2], rtol=0, atol=1e-9)
    assert abs(m.biases[0][0] - new[2]) < 1e-9


@pytest.mark.parametrize("rounding", ["nearest-even", "stochastic", "truncate"])
def test_golden_one_step_within_format_bound(rounding):
    y, loss, grads, new = textbook()
    tr = Trainer(TrainConfig(dataset="seed-neuron", backend="golden", precision="fx16",
                             rounding=rounding, epochs=1, batch=1, lr=LR, loss="mse"))
    p = tr.profile
    lsb_x, lsb_w, lsb_b = p.input.fmt.resolution, p.weight.fmt.resolution, p.bias.fmt.resolution
    x_raw, _ = tr.runtime.prepare(np.array([X]), np.array([[T]]))
    y_golden = tr.runtime.predict(x_raw)[0, 0]
    # Prediction (docs/datapath.md, "Error bounds"): z is off by the rounding of inputs,
    # weights, bias and the pre-activation cast; sigma's slope is at most 1/4; the LUT adds
    # 1/4 of half a bin plus half an activation LSB.
    z_err = (sum(abs(w) * lsb_x / 2 + abs(x) * lsb_w / 2 for w, x in zip(W, X)) + lsb_b / 2
             + p.preactivation.fmt.resolution / 2)
    spec = p.sigmoid
    lut_err = 0.25 * (spec.input_range / spec.entries) + p.activation.fmt.resolution / 2
    assert abs(y_golden - y) <= 0.25 * z_err + lut_err
    res = tr.run()
    # Update: the initial value was rounded to nearest (1/2 LSB), the update cast adds 1/2 LSB
    # (nearest) or 1 LSB (directed, stochastic), and lr * grad itself is off by lr * |x| times
    # the delta error, which the prediction error above bounds (|d sigma| <= 1/4, |e| <= 1).
    cast_err = 0.5 if rounding == "nearest-even" else 1.0
    delta_err = 0.25 * (0.25 * z_err + lut_err) + 0.25 * (0.25 * z_err + lut_err) + 2 ** -13
    (w1, w2), = res["layers"][0]["weights"]
    (b,) = res["layers"][0]["bias"]
    assert abs(w1 - new[0]) <= (0.5 + cast_err) * lsb_w + LR * X[0] * delta_err
    assert abs(w2 - new[1]) <= (0.5 + cast_err) * lsb_w + LR * X[1] * delta_err
    assert abs(b - new[2]) <= (0.5 + cast_err) * lsb_b + LR * delta_err


def test_float32_tracks_float64():
    rng = np.random.default_rng(0)
    ws = [rng.uniform(-1, 1, (8, 4)), rng.uniform(-1, 1, (3, 8))]
    bs = [np.zeros(8), np.zeros(3)]
    m64 = FloatMLP((4, 8, 3), ws, bs, dtype=np.float64)
    m32 = FloatMLP((4, 8, 3), ws, bs, dtype=np.float32)
    x = rng.uniform(0, 1, (16, 4))
    t = np.eye(3)[rng.integers(0, 3, 16)]
    for _ in range(20):
        m64.train_step(x, t, 0.1)
        m32.train_step(x, t, 0.1)
    # float32 rounding (2**-24 relative) over 20 steps of O(1) arithmetic: 1e-4 is generous.
    assert np.max(np.abs(m64.weights[0] - m32.weights[0])) < 1e-4


def test_cli_float64_reproduces_the_textbook(tmp_path):
    """`fxbp train --dataset seed-neuron --backend float64 --epochs 1 --batch 1 --lr 0.01
    --loss mse` starts from the dataset's exact values (not values rounded into the
    weight format) and lands on the textbook's weights to 1e-9."""
    import json
    from fxbp.sw.cli import main
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "seed-neuron", "--backend", "float64", "--epochs", "1",
              "--batch", "1", "--lr", "0.01", "--loss", "mse", "--quiet", "--json", str(out)])
    assert exc.value.code == 0
    res = json.loads(out.read_text())
    (w1, w2), = res["layers"][0]["weights"]
    (b,) = res["layers"][0]["bias"]
    assert abs(w1 - 0.49990723907) < 1e-9 and abs(w2 - 0.1997217172) < 1e-9
    assert abs(b - (1.83 - 0.01 * 0.09276093)) < 1e-9
    y, loss, grads, new = textbook()
    assert np.allclose([w1, w2, b], new, rtol=0, atol=1e-12)
