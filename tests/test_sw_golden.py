"""The golden model: whole training steps against an independent apytypes build of the
datapath, the accumulator and learning-rate rules, stochastic rounding, event counts."""

import dataclasses

import numpy as np
import pytest

from fxbp.sw.errors import FxbpError
from fxbp.sw.fixed import QFormat, quantize
from fxbp.sw.golden import GoldenMLP, learning_rate_raw
from fxbp.sw.profile import load_profile

apytypes_ref = pytest.importorskip("fxbp.sw.apytypes_ref")

SHAPES = {
    "digits": ((64, 32, 10), 64),
    "iris": ((4, 8, 3), 16),
    "single": ((2, 1), 1),
    "deep-odd": ((5, 7, 6, 3), 13),
}


def make_model(sizes, profile, seed=0, loss="mse", **kw):
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        r = 4 * np.sqrt(6 / (n_in + n_out))
        ws.append(quantize(rng.uniform(-r, r, (n_out, n_in)), profile.weight.fmt))
        bs.append(quantize(rng.uniform(-0.5, 0.5, n_out), profile.bias.fmt))
    return GoldenMLP(sizes, profile, ws, bs, loss=loss, seed=seed, **kw)


def make_batches(model, batch, n=3, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.uniform(0, 1, (batch, model.sizes[0]))
        labels = rng.integers(0, model.sizes[-1], batch)
        t = (np.eye(model.sizes[-1])[labels] if model.sizes[-1] > 1
             else rng.integers(0, 2, (batch, 1)).astype(float))
        out.append((model.quantize_input(x), model.quantize_target(t)))
    return out


def same_layers(a, b):
    return all(np.array_equal(w1, w2) and np.array_equal(b1, b2) for (w1, b1), (w2, b2) in zip(a, b))


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("loss", ["mse", "xent"])
@pytest.mark.parametrize("rounding", ["nearest-even", "truncate", "toward-zero", "half-up"])
@pytest.mark.parametrize("preset", ["fx16", "fx12", "fx8"])
def test_training_steps_match_apytypes(preset, rounding, loss, shape):
    sizes, batch = SHAPES[shape]
    profile = load_profile(preset).with_rounding(rounding)
    model = make_model(sizes, profile, loss=loss)
    ref = apytypes_ref.ApyMLP(sizes, profile, model.weights, model.biases, loss=loss)
    lr = 0.5 if batch == 1 else (2.0 if preset != "fx8" else 4.0)
    eta = learning_rate_raw(lr, batch, profile)
    for x, t in make_batches(model, batch):
        acts = model.train_step(x, t, eta)
        ref_acts = ref.train_step(x, t, eta)
        for a, r in zip(acts, ref_acts):
            np.testing.assert_array_equal(a, ref.raw(r))
        assert same_layers(model.layers(), ref.layers())


def test_float_and_integer_product_paths_agree(fx16):
    # accumulator_bits <= 53 runs products on float64 BLAS; above, on int64. Same bits.
    wide = dataclasses.replace(fx16, accumulator_bits=60)
    for rounding in ("nearest-even", "stochastic"):
        a = make_model((64, 32, 10), fx16.with_rounding(rounding))
        b = make_model((64, 32, 10), wide.with_rounding(rounding))
        eta = learning_rate_raw(2.0, 64, fx16)
        for x, t in make_batches(a, 64, n=4):
            a.train_step(x, t, eta)
            b.train_step(x, t, eta)
        assert a.digest() == b.digest()


def test_stochastic_rounding_is_reproducible_and_seeded(fx16):
    sr = fx16.with_rounding("stochastic")
    eta = learning_rate_raw(2.0, 16, sr)

    def run(seed):
        m = make_model((4, 8, 3), sr)
        m.seed = seed
        for x, t in make_batches(m, 16, n=5):
            m.train_step(x, t, eta)
        return m.digest()

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_stochastic_key_advances_with_step(fx16):
    sr = fx16.with_rounding("stochastic")
    eta = learning_rate_raw(2.0, 16, sr)
    m1, m2 = make_model((4, 8, 3), sr), make_model((4, 8, 3), sr)
    m2.step = 10                          # same parameters, another position in the stream
    (x, t), = make_batches(m1, 16, n=1)
    m1.train_step(x, t, eta)
    m2.train_step(x, t, eta)
    assert m1.digest() != m2.digest()


def test_shift_mode_equals_multiply_by_a_power_of_two(fx16):
    shift = dataclasses.replace(fx16, lr_mode="shift")
    assert learning_rate_raw(2.0, 64, shift) == (1, 5)          # 2/64 = 2**-5
    assert learning_rate_raw(2.0, 64, fx16) == (1 << 11, 16)   # same value, UQ0.16
    a, b = make_model((64, 32, 10), fx16), make_model((64, 32, 10), shift)
    for x, t in make_batches(a, 64):
        a.train_step(x, t, learning_rate_raw(2.0, 64, fx16))
        b.train_step(x, t, learning_rate_raw(2.0, 64, shift))
    assert a.digest() == b.digest()


def test_learning_rate_checks(fx16):
    with pytest.raises(FxbpError, match="rounds to zero in the learning-rate format UQ0.16"):
        learning_rate_raw(1e-6, 32, fx16)
    with pytest.raises(FxbpError, match="exceeds the learning-rate format"):
        learning_rate_raw(2.0, 1, fx16)
    with pytest.raises(FxbpError, match="positive number"):
        learning_rate_raw(float("nan"), 1, fx16)


def test_accumulator_fit_is_checked(fx16):
    narrow = dataclasses.replace(fx16, accumulator_bits=36)
    with pytest.raises(FxbpError, match="layer 1 forward sums can reach .* 36-bit accumulator"):
        make_model((64, 32, 10), narrow)
    m = make_model((64, 32, 10), fx16)
    m.check_fit(256)
    with pytest.raises(FxbpError, match="weight gradient"):
        m.check_fit(512)


def test_update_stalls_are_counted(fx16):
    # A learning rate so small that every update is below half a weight LSB.
    m = make_model((4, 8, 3), fx16)
    before = m.digest()
    eta = (1, 16)                                   # 2**-16 per summed gradient
    for x, t in make_batches(m, 16):
        m.train_step(x, t, eta)
    ev = m.event_counts()["weight_update"]
    assert m.digest() == before
    assert ev["total"] == 3 * (8 * 4 + 3 * 8)
    assert 0 < ev["underflow"] <= ev["total"]


def test_overflow_events_in_the_forward_pass(fx16):
    m = make_model((4, 8, 3), fx16)
    big = [np.full_like(w, fx16.weight.fmt.max_raw) for w in m.weights]
    m.set_parameters(big, [np.zeros_like(b) for b in m.biases])
    m.forward(m.quantize_input(np.full((5, 4), 1.5)))
    ev = m.event_counts()["preactivation"]
    # Layer 1: 4 * 1.5 * 8 = 48 and layer 2: 8 * ~1 * 8 = 64 both exceed Q6.10's 32.
    assert ev["overflow"] == ev["total"] == 5 * (8 + 3)
    m.set_parameters([w // 4 for w in big], [np.zeros_like(b) for b in m.biases])
    m.forward(m.quantize_input(np.full((5, 4), 0.5)))
    # Now layer 1 sums to 4 * 0.5 * 2 = 4 and layer 2 to 8 * ~0.98 * 2 < 16: no overflow.
    assert m.event_counts()["preactivation"]["overflow"] == 5 * (8 + 3)


def test_cast_events_are_attributed_to_their_layer(fx16):
    """Layer 1's weights and biases are 0, so every layer-1 activation is sigmoid(0) = a.
    Layer 2's weights are all W: its pre-activation is 8 a W rounded by 2^-s. W is chosen
    one LSB either side of Q6.10's largest value, so layer 2 overflows exactly when W
    is one above the bound, and layer 1 never does."""
    m = make_model((4, 8, 3), fx16)
    zero_b = [np.zeros_like(b) for b in m.biases]
    w1 = np.zeros_like(m.weights[0])
    m.set_parameters([w1, m.weights[1]], zero_b)
    a = int(m.forward(m.quantize_input(np.zeros((1, 4))))[1][0, 0])
    shift = (fx16.weight.fmt.frac_bits + fx16.activation.fmt.frac_bits
             - fx16.preactivation.fmt.frac_bits)
    hi = fx16.preactivation.fmt.max_raw
    # The largest W whose sum stays below hi + 1/2 LSB (no rounding tie either side).
    w_in = ((2 * hi + 1) << (shift - 1)) // (8 * a)
    assert 8 * a * w_in < (2 * hi + 1) << (shift - 1) < 8 * a * (w_in + 1)
    for w, over in ((w_in, 0), (w_in + 1, 5 * 3)):
        m.set_parameters([w1, np.full_like(m.weights[1], w)], zero_b)
        before = m.layer_event_counts()
        m.forward(m.quantize_input(np.full((5, 4), 1.5)))
        after = m.layer_event_counts()
        pre = {l: {k: after[l]["preactivation"][k] - before[l]["preactivation"][k]
                   for k in ("overflow", "total")} for l in after}
        assert pre == {"1": {"overflow": 0, "total": 5 * 8}, "2": {"overflow": over, "total": 5 * 3}}


def test_layer_event_counts_add_up_and_have_each_layer_s_totals(fx16):
    sizes, batch = (6, 5, 4, 3), 7
    m = make_model(sizes, fx16)
    batches = make_batches(m, batch, n=2)
    for x, t in batches:
        m.train_step(x, t, learning_rate_raw(0.5, batch, fx16))
    by_layer = m.layer_event_counts()
    assert set(by_layer) == {"1", "2", "3"}
    totals = m.event_counts()
    for site, counts in totals.items():
        if site != "input":
            for k in counts:
                assert counts[k] == sum(by_layer[l][site][k] for l in by_layer)
    steps = len(batches)
    for l in (1, 2, 3):
        n_in, n_out = sizes[l - 1], sizes[l]
        got = {site: c["total"] for site, c in by_layer[str(l)].items()}
        assert got == {"preactivation": steps * batch * n_out, "activation": steps * batch * n_out,
                       "derivative": steps * batch * n_out,
                       "error": steps * batch * n_out,
                       "delta": steps * batch * n_out, "gradient": steps * n_out * n_in,
                       "bias_gradient": steps * n_out, "weight_update": steps * n_out * n_in,
                       "bias_update": steps * n_out}


def test_layer_event_counts_restore_or_are_refused(fx16):
    m = make_model((4, 8, 3), fx16)
    for x, t in make_batches(m, 4):
        m.train_step(x, t, learning_rate_raw(0.5, 4, fx16))
    counts, by_layer = m.event_counts(), m.layer_event_counts()
    fresh = make_model((4, 8, 3), fx16)
    fresh.set_event_counts(counts, by_layer)
    assert (fresh.event_counts(), fresh.layer_event_counts()) == (counts, by_layer)
    fresh.set_event_counts(counts)                       # totals only: the split is unknown
    assert fresh.event_counts() == counts and fresh.layer_event_counts() is None
    bad = {l: {s: dict(c) for s, c in sites.items()} for l, sites in by_layer.items()}
    bad["1"]["gradient"]["total"] += 1
    with pytest.raises(FxbpError, match="do not add up"):
        fresh.set_event_counts(counts, bad)
    with pytest.raises(FxbpError, match="name layers"):
        fresh.set_event_counts(counts, {"1": by_layer["1"]})


def test_bad_batches_are_refused(fx16):
    m = make_model((4, 8, 3), fx16)
    with pytest.raises(FxbpError, match="a batch must be"):
        m.train_step(np.zeros((2, 5), dtype=np.int64), np.zeros((2, 3), dtype=np.int64), (1, 8))
    with pytest.raises(FxbpError, match="do not match the network shape"):
        GoldenMLP((4, 3), fx16, [np.zeros((4, 3))], [np.zeros(3)])


def test_bias_format_finer_than_products_is_refused():
    p = load_profile("fx8")
    fine = dataclasses.replace(p, bias=dataclasses.replace(p.bias, fmt=QFormat(1, 20)))
    with pytest.raises(FxbpError, match="more fraction bits than the layer 1 products"):
        make_model((4, 3), fine)


# -- every exact intermediate must fit the 64-bit datapath (section 4) -------------------------

def _profile(tmp_path, **stages):
    from fxbp.sw.profile import load_profile
    extra = stages.pop("top", "")
    body = "".join(f'{k} = "{v}"\n' for k, v in stages.items())
    p = tmp_path / "p.toml"
    p.write_text(f'base = "fx16"\n{extra}\n[stages]\n{body}')
    return load_profile(str(p))


@pytest.mark.parametrize("stages, what", [
    # the reproduction: u = eta * G needs 40 + 60 bits
    (dict(gradient="Q30.30", learning_rate="UQ0.40", top="accumulator_bits = 62"),
     r"weight update w - eta g needs \d+ bits"),
    (dict(error="Q30.30", derivative="Q2.40"), r"e \* d needs \d+ bits"),
    (dict(activation="Q2.33", input="Q2.14", top="accumulator_bits = 62"),
     r"a\(1 - a\) needs \d+ bits"),
    (dict(preactivation="Q8.54", top="[sigmoid]\nkind = \"plan\""), r"PLAN sigmoid needs \d+ bits"),
])
def test_wide_intermediates_are_refused(tmp_path, stages, what):
    from fxbp.sw.runtime import GoldenRuntime
    p = _profile(tmp_path, **stages)
    sizes = (4, 3, 2)
    w = [np.zeros((3, 4)), np.zeros((2, 3))]
    b = [np.zeros(3), np.zeros(2)]
    with pytest.raises(FxbpError, match=what + ", more than the 64-bit datapath: narrow"):
        GoldenRuntime(sizes, p, w, b, loss="mse", seed=0, lr=1e-3, batch=1)
    # the model itself refuses too, before it steps
    m = GoldenMLP(sizes, p, [np.zeros((3, 4), np.int64), np.zeros((2, 3), np.int64)],
                  [np.zeros(3, np.int64), np.zeros(2, np.int64)])
    with pytest.raises(FxbpError, match=what):
        m.train_step(np.zeros((1, 4), np.int64), np.zeros((1, 2), np.int64), (1, 40))


def test_presets_fit_with_room():
    from fxbp.sw.profile import load_profile
    for name in ("fx8", "fx12", "fx16"):
        p = load_profile(name)
        m = GoldenMLP((64, 32, 10), p, [np.zeros((32, 64), np.int64), np.zeros((10, 32), np.int64)],
                      [np.zeros(32, np.int64), np.zeros(10, np.int64)])
        bounds = m.intermediate_bounds(256, learning_rate_raw(2.0, 256, p))
        assert max(b for b, _ in bounds.values()) < 1 << 62


# -- the shift-mode learning rate ----------------------------------------------------------------

def test_shift_exponent_is_exact_where_a_float_log2_ties():
    """fl(2**-3.5) is just above 2**-3.5, so -log2(eta) is just below 3.5: k = 3. A float
    log2 returns exactly 3.5 there, where Python's round (half-even) and C's round
    (half-away) would both say 4."""
    from fractions import Fraction
    import math
    from fxbp.sw.golden import shift_exponent
    eta = 2.0 ** -3.5
    assert math.log2(eta) == -3.5 and round(3.5) == 4
    assert Fraction(eta) ** 2 > Fraction(1, 2 ** 7)          # eta > 2**-3.5 exactly
    assert shift_exponent(eta) == 3
    assert shift_exponent(2.0 ** -2.5) == 2                    # fl(2**-2.5) > 2**-2.5 too
    assert [shift_exponent(e) for e in (1.0, 0.75, 0.5, 2 ** -15, 3.05e-5)] == [0, 0, 1, 15, 15]
    for k in range(40):                                        # exact powers map to themselves
        assert shift_exponent(2.0 ** -k) == k


def test_shift_mode_is_bounded_by_the_formats(tmp_path):
    p = _profile(tmp_path, top='lr_mode = "shift"')
    assert learning_rate_raw(1e-3, 32, p) == (1, 15)
    with pytest.raises(FxbpError, match=r"shift 2\^-105, below the learning-rate format UQ0\.16"):
        learning_rate_raw(1e-30, 32, p)
    with pytest.raises(FxbpError, match=r"shift 2\^0, above 1 or the learning-rate format UQ0\.16"):
        learning_rate_raw(1.0, 1, p)
    wide = _profile(tmp_path, top='lr_mode = "shift"', learning_rate="UQ0.40")
    with pytest.raises(FxbpError, match="rounds every update away"):
        learning_rate_raw(1e-9, 1, wide)


def test_largest_rate_is_named():
    from fxbp.sw.profile import load_profile
    with pytest.raises(FxbpError, match=r"the largest --lr that fits with --batch 1 is 0\.999985"):
        learning_rate_raw(1.0, 1, load_profile("fx16"))


def test_shift_mode_refuses_rates_above_one_and_underflow(tmp_path):
    wide = _profile(tmp_path, top='lr_mode = "shift"', learning_rate="UQ3.13", gradient="Q8.0")
    with pytest.raises(FxbpError, match=r"shift 2\^2, above 1 .* k >= 0"):
        learning_rate_raw(16.0, 4, wide)
    for lr_mode in ("shift", "multiply"):
        p = _profile(tmp_path, top=f'lr_mode = "{lr_mode}"')
        with pytest.raises(FxbpError, match="underflows to zero|rounds to zero"):
            learning_rate_raw(5e-324, 32, p)


def test_learning_rate_range_is_exact_for_wide_formats(tmp_path):
    """UQ1.61's maximum is 2 - 2**-61, which float64 rounds to 2.0: eta = 2 must still be
    refused (it would saturate silently), and a scalar quantize of it must not crash."""
    from fxbp.sw.fixed import QFormat
    p = _profile(tmp_path, learning_rate="UQ1.61")
    assert p.learning_rate.max_real == 2.0
    with pytest.raises(FxbpError, match="exceeds the learning-rate format UQ1.61"):
        learning_rate_raw(2.0, 1, p)
    q = quantize(2.0, QFormat.parse("UQ1.61"))
    assert q.shape == () and int(q) == (1 << 62) - 1


@pytest.mark.parametrize("rounding", ["nearest-even", "truncate", "half-up", "toward-zero"])
def test_wrapping_updates_match_apytypes(tmp_path, rounding):
    """Every stage wraps instead of saturating, and the rate is large enough that weight
    and bias updates do wrap: golden still equals the apytypes reference bit for bit
    (which rebuilds each cast from its bits, see sw/apytypes_ref.py)."""
    stages = {n: f'{{ format = "{f}", overflow = "wrap" }}' for n, f in (
        ("weight", "Q3.5"), ("bias", "Q3.5"), ("preactivation", "Q4.4"), ("error", "Q2.6"),
        ("delta", "Q1.7"), ("gradient", "Q4.4"), ("derivative", "Q1.7"))}
    toml = tmp_path / "wrap.toml"
    toml.write_text('base = "fx8"\n[stages]\n' + "".join(f"{k} = {v}\n" for k, v in stages.items()))
    profile = load_profile(str(toml)).with_rounding(rounding)
    sizes, batch = (6, 5, 3), 32
    model = make_model(sizes, profile)
    rng = np.random.default_rng(5)                 # weights over the whole format: they wrap
    model.set_parameters([rng.integers(-128, 128, w.shape) for w in model.weights],
                         [rng.integers(-128, 128, b.shape) for b in model.biases])
    ref = apytypes_ref.ApyMLP(sizes, profile, model.weights, model.biases)
    eta = learning_rate_raw(31.0, batch, profile)
    for x, t in make_batches(model, batch, n=6):
        model.train_step(x, t, eta)
        ref.train_step(x, t, eta)
        assert same_layers(model.layers(), ref.layers())
    assert model.event_counts()["weight_update"]["overflow"] > 0


def test_wrapped_extremes_match_apytypes(tmp_path):
    """A case the review found (tests/ reference, not golden, was wrong): weights at both
    ends of Q3.11 wrap on update; apytypes 0.5.1 then kept -4.00195 in Q3.11, a value the
    format cannot hold, unless the reference rebuilds each cast from its bits."""
    toml = tmp_path / "edge.toml"
    toml.write_text(
        'base = "fx16"\naccumulator_bits = 51\n[sigmoid]\ninput_range = 1\n[stages]\n'
        'input = "Q3.9"\nweight = { format = "Q3.11", rounding = "toward-zero", overflow = "wrap" }\n'
        'bias = { format = "Q3.18", rounding = "truncate", overflow = "wrap" }\n'
        'preactivation = "Q2.12"\nactivation = "Q3.9"\n'
        'derivative = { format = "Q1.10", rounding = "toward-zero", overflow = "wrap" }\n'
        'error = { format = "Q6.16", rounding = "half-up" }\n'
        'delta = { format = "Q6.8", rounding = "toward-zero", overflow = "wrap" }\n'
        'gradient = { format = "Q7.37", rounding = "half-up" }\n'
        'learning_rate = { format = "UQ0.23", rounding = "toward-zero" }\n')
    profile = load_profile(str(toml))
    w = [np.array([[-8192], [8191]]), np.array([[8191, -8192]])]
    b = [np.array([-1048576, 1048575]), np.array([-1048576])]
    x, t = np.array([[-2048]] * 3), np.array([[0], [512], [512]])
    model = GoldenMLP((1, 2, 1), profile, w, b)
    ref = apytypes_ref.ApyMLP((1, 2, 1), profile, w, b)
    for _ in range(3):
        acts = model.train_step(x, t, (27962, 23))
        ref_acts = ref.train_step(x, t, (27962, 23))
        for a, r in zip(acts, ref_acts):
            np.testing.assert_array_equal(a, ref.raw(r))
        assert same_layers(model.layers(), ref.layers())
    assert model.event_counts()["weight_update"]["overflow"] > 0
