"""The reference models in sim/models.py are the golden model: equal values and equal event
counts over the same vectors, exhaustively where the formats allow.

The PLAN case with activation overflow "wrap" is the one that caught the models (and the
RTL) saturating where golden wraps: fx8, 50 of 256 inputs differed.
"""

import numpy as np
import pytest

from fxbp.sim import models
from fxbp.sim.vectors import cast_vectors, update_vectors
from fxbp.sw import golden
from fxbp.sw.fixed import CastEvents, Overflow, QFormat, Rounding, cast, cast_spec, exact_matmul
from fxbp.sw.profile import load_profile
from fxbp.sw.sigmoid import SigmoidSpec, sigmoid_derivative, sigmoid_lut_table, lut_params

KEY = 0x5EED1234
MODES = [(r, o) for r in Rounding for o in Overflow]
PRESETS = ["fx16", "fx12", "fx8"]


def assert_cast_equal(values, from_frac, fmt, rounding, overflow):
    want = CastEvents()
    ref = cast(values, from_frac, fmt, rounding, overflow, random_key=KEY, events=want)
    got = models.cast_with_flags(values, from_frac, fmt, rounding, overflow, KEY)
    assert np.array_equal(got["value"], ref)
    assert (got["overflow"].sum(), got["underflow"].sum()) == (want.overflow, want.underflow)


@pytest.mark.parametrize("rounding, overflow", MODES)
def test_cast_every_12_bit_input(rounding, overflow):
    assert_cast_equal(np.arange(-2048, 2048), 6, QFormat(3, 2), rounding, overflow)


@pytest.mark.parametrize("rounding, overflow", MODES)
def test_cast_designed_40_bit_set(rounding, overflow):
    values, _ = cast_vectors(40, 26, QFormat(6, 10), 20_000, np.random.default_rng(1))
    assert_cast_equal(values, 26, QFormat(6, 10), rounding, overflow)


def golden_activation(z, p, kind, rounding, overflow):
    """Golden's forward kernel on pre-activations ``z``: ``a`` and the activation events."""
    zf, af = p.preactivation.fmt, p.activation.fmt
    spec = SigmoidSpec(kind, p.sigmoid.entries, p.sigmoid.input_range)
    table = sigmoid_lut_table(spec, af) if kind == "lut" else np.zeros(1, dtype=np.int64)
    r_raw, shift = lut_params(zf, spec) if kind == "lut" else (0, 0)
    a, af_out = np.empty_like(z), np.empty(z.shape)
    ev = np.zeros((2, 3), dtype=np.int64)
    golden._forward_kernel(z, np.zeros(1, dtype=np.int64), 0,
                           cast_spec(zf.frac_bits, zf, Rounding.NEAREST_EVEN, Overflow.SATURATE),
                           0 if kind == "lut" else 1, table, r_raw, shift, zf.frac_bits,
                           cast_spec(zf.frac_bits + 5, af, rounding, overflow), a, af_out, ev, 0, 1)
    return a, ev[1], spec


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("kind", ["lut", "plan"])
@pytest.mark.parametrize("rounding", [r for r in Rounding if r.deterministic])
@pytest.mark.parametrize("overflow", list(Overflow))
def test_sigmoid_every_preactivation(preset, kind, rounding, overflow):
    p = load_profile(preset)
    z = np.arange(p.preactivation.fmt.min_raw, p.preactivation.fmt.max_raw + 1, dtype=np.int64)
    a, events, spec = golden_activation(z, p, kind, rounding, overflow)
    got = models.sigmoid_model(z, p.preactivation.fmt, p.activation.fmt, spec, rounding, overflow)
    assert np.array_equal(got["value"], a)
    assert [got["overflow"].sum(), got["underflow"].sum(), z.size] == events.tolist()


def test_plan_wrap_differs_from_saturate_on_fx8():
    # The fault of issue 8: golden wraps PLAN's 1.0 under activation overflow "wrap".
    p = load_profile("fx8")
    z = np.arange(-128, 128, dtype=np.int64)
    wrap, events, _ = golden_activation(z, p, "plan", Rounding.NEAREST_EVEN, Overflow.WRAP)
    sat, _, _ = golden_activation(z, p, "plan", Rounding.NEAREST_EVEN, Overflow.SATURATE)
    assert (wrap != sat).sum() == events[0] == 50


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("rounding, overflow", MODES)
def test_derivative_every_activation(preset, rounding, overflow):
    p = load_profile(preset)
    af, df = p.activation.fmt, p.derivative.fmt
    a = np.arange(af.min_raw, af.max_raw + 1, dtype=np.int64)
    want = CastEvents()
    words = models.random_words(KEY, np.arange(a.size))
    ref = sigmoid_derivative(a, af, df, rounding, overflow, random_bits=words, events=want)
    got = models.derivative_model(a, af, df, rounding, overflow, KEY)
    assert np.array_equal(got["value"], ref)
    assert (got["overflow"].sum(), got["underflow"].sum()) == (want.overflow, want.underflow)


def golden_update(w, g, eta, fl, w_fmt, g_fmt, rounding, overflow):
    """Golden's weight-update kernel, with the gradient already in its format."""
    u_frac = fl + g_fmt.frac_bits
    frac = max(u_frac, w_fmt.frac_bits)
    spec = cast_spec(frac, w_fmt, rounding, overflow)
    key = KEY if rounding is Rounding.STOCHASTIC and frac > w_fmt.frac_bits else -1
    out, out_f = np.empty_like(w), np.empty(w.shape)
    ev = np.zeros((2, 3), dtype=np.int64)
    golden._weight_update_kernel(g, w, eta, cast_spec(g_fmt.frac_bits, g_fmt, rounding, overflow),
                                 -1, frac - w_fmt.frac_bits, frac - u_frac, spec, key, out, out_f,
                                 ev, 0, 1)
    return out, ev


@pytest.mark.parametrize("rounding, overflow", MODES)
@pytest.mark.parametrize("preset, eta, exhaustive", [("fx8", 4, True), ("fx8", 255, True),
                                                     ("fx16", 1024, False), ("fx16", 3, False),
                                                     ("fx12", 77, False)])
def test_update(rounding, overflow, preset, eta, exhaustive):
    p = load_profile(preset)
    wf, gf, lf = p.weight.fmt, p.gradient.fmt, p.learning_rate
    if exhaustive:
        w, g = (c.ravel().astype(np.int64) for c in np.meshgrid(
            np.arange(wf.min_raw, wf.max_raw + 1), np.arange(gf.min_raw, gf.max_raw + 1)))
    else:
        w, g, _ = update_vectors(wf, gf, 30_000, np.random.default_rng(eta))
    ref, ev = golden_update(w, g, eta, lf.frac_bits, wf, gf, rounding, overflow)
    got = models.weight_update_model(w, g, eta, wf, gf, lf, rounding, overflow, KEY)
    assert np.array_equal(got["value"], ref)
    assert [got["overflow"].sum(), got["stalled"].sum()] == ev[1, :2].tolist()
    assert ev[1, 1] > 0 or eta == 255


@pytest.mark.parametrize("rounding", [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC])
@pytest.mark.parametrize("k", [0, 4, 11])
def test_update_shift_mode(rounding, k):
    p = load_profile("fx16")
    wf, gf = p.weight.fmt, p.gradient.fmt
    w, g, _ = update_vectors(wf, gf, 20_000, np.random.default_rng(k))
    ref, ev = golden_update(w, g, 1, k, wf, gf, rounding, Overflow.SATURATE)
    got = models.weight_update_model(w, g, None, wf, gf, None, rounding, Overflow.SATURATE, KEY,
                                     lr_shift=k)
    assert np.array_equal(got["value"], ref)
    assert [got["overflow"].sum(), got["stalled"].sum()] == ev[1, :2].tolist()


def test_mac_sums_are_the_golden_products():
    rng = np.random.default_rng(0)
    a = rng.integers(-(1 << 15), 1 << 15, (6, 50))
    b = rng.integers(-(1 << 15), 1 << 15, (6, 50))
    bias = rng.integers(-(1 << 15), 1 << 15, 6)
    want = exact_matmul(a[:, None, :], b[:, :, None]).ravel() + (bias << 12)
    got = models.mac_sums(a.ravel(), b.ravel(), [50] * 6, bias, 12)
    assert got == want.tolist()
