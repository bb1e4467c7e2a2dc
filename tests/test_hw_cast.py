# amaranth: UnusedElaboratable=no
"""Cast unit in Amaranth's simulator, against the reference model."""

import numpy as np
import pytest

from fxbp.hw import Cast
from fxbp.sim import models
from fxbp.sim.amaranth_bench import run_stream
from fxbp.sim.vectors import cast_vectors
from fxbp.sw.fixed import Overflow, QFormat, Rounding


def feed(dut, xs):
    """Input payloads: ``index`` only where the unit has the field (stochastic casts)."""
    if dut.stochastic:
        return [{"value": int(x), "index": i} for i, x in enumerate(xs)]
    return [{"value": int(x)} for x in xs]


def statics(dut, key):
    return [(dut.key, key)] if dut.stochastic else []


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("overflow", list(Overflow))
def test_every_12_bit_input(rounding, overflow):
    fmt = QFormat(3, 2)
    dut = Cast(in_width=12, from_frac=6, fmt=fmt, rounding=rounding, overflow=overflow)
    xs = np.arange(-2048, 2048)
    out, latency = run_stream(dut, feed(dut, xs), statics=statics(dut, 0xC0FFEE))
    want = models.cast_with_flags(xs, 6, fmt, rounding, overflow, key=0xC0FFEE)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()
    stochastic = rounding is Rounding.STOCHASTIC
    assert latency == dut.LATENCY == (Cast.RANDOM_LATENCY if stochastic else Cast.PLAIN_LATENCY)
    assert (Cast.RANDOM_LATENCY, Cast.PLAIN_LATENCY) == (6, 2)


@pytest.mark.parametrize("valid_prob, ready_prob", [(1.0, 0.5), (0.5, 1.0), (0.7, 0.3)])
@pytest.mark.parametrize("rounding", [Rounding.STOCHASTIC, Rounding.NEAREST_EVEN])
def test_40_bit_designed_vectors_with_bubbles_and_back_pressure(valid_prob, ready_prob, rounding):
    fmt = QFormat(4, 12)
    dut = Cast(in_width=40, from_frac=26, fmt=fmt, rounding=rounding)
    xs, mix = cast_vectors(40, 26, fmt, 1500, np.random.default_rng(3))
    assert mix["in range"] >= len(xs) // 2 and mix["ties (all parts)"] > 0 and mix["bound +-1"] > 0
    out, _ = run_stream(dut, feed(dut, xs), statics=statics(dut, 77), valid_prob=valid_prob,
                        ready_prob=ready_prob)
    want = models.cast_with_flags(xs, 26, fmt, rounding, Overflow.SATURATE, key=77)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()


@pytest.mark.parametrize("rounding", list(Rounding))
def test_shift_at_least_as_wide_as_the_input(rounding):
    # Nearest-even reads bit s of x; with s >= the input width that is the sign bit
    # (it raised IndexError before).
    fmt = QFormat(4, 0)
    dut = Cast(in_width=8, from_frac=10, fmt=fmt, rounding=rounding, overflow=Overflow.WRAP)
    xs = np.arange(-128, 128)
    out, _ = run_stream(dut, feed(dut, xs), statics=statics(dut, 9))
    want = models.cast_with_flags(xs, 10, fmt, rounding, Overflow.WRAP, key=9)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()


def test_ports_exist_only_when_needed():
    det = Cast(in_width=16, from_frac=8, fmt=QFormat(4, 4))
    assert not hasattr(det, "key") and "index" not in dict(det.i.payload.shape())
    sto = Cast(in_width=16, from_frac=8, fmt=QFormat(4, 4), rounding=Rounding.STOCHASTIC)
    assert len(sto.key) == 32 and "index" in dict(sto.i.payload.shape())
    # A stochastic cast that drops no bits draws no words, so it has no key either.
    exact = Cast(in_width=16, from_frac=4, fmt=QFormat(8, 4), rounding=Rounding.STOCHASTIC)
    assert not hasattr(exact, "key")


def test_signature_class_matches_the_unit():
    dut = Cast(in_width=40, from_frac=26, fmt=QFormat(6, 10), rounding=Rounding.STOCHASTIC,
               tag_width=9)
    sig = Cast.Signature(in_width=40, fmt=QFormat(6, 10), stochastic=True, tag_width=9)
    assert dut.signature == sig
    assert sig != Cast.Signature(in_width=40, fmt=QFormat(6, 10), stochastic=True)
    assert sig.members["o"].signature.members["payload"].shape.size == 16 + 2 + 9


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"in_width": 0}, ValueError, "Cast input width must be 1 to 64, not 0"),
    ({"in_width": 8.0}, TypeError, "Cast input width must be an integer, not 8.0"),
    ({"from_frac": -1}, ValueError, "Cast input fraction bits must be at least 0, not -1"),
    ({"from_frac": 2.5}, TypeError, "Cast input fraction bits must be an integer, not 2.5"),
    ({"fmt": 3}, TypeError, "Cast format must be a QFormat, not 3"),
    ({"rounding": "up"}, ValueError, "unknown rounding mode"),
    ({"overflow": 1}, TypeError, "overflow must be an Overflow, not 1"),
    ({"tag_width": -1}, ValueError, "tag width must be 0 to 1024, not -1"),
    ({"registered_ready": 1}, TypeError, "Cast registered_ready must be a bool, not 1"),
])
def test_parameter_checks(kwargs, exc, match):
    args = dict(in_width=16, from_frac=8, fmt=QFormat(4, 4))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        Cast(**args)


@pytest.mark.parametrize("rounding", [r for r in Rounding if r.deterministic])
@pytest.mark.parametrize("overflow", list(Overflow))
def test_shallow_every_12_bit_input(rounding, overflow):
    # One stage: the same values and flags as the two-stage cast, a cycle earlier.
    fmt = QFormat(3, 2)
    dut = Cast(in_width=12, from_frac=6, fmt=fmt, rounding=rounding, overflow=overflow,
               shallow=True)
    xs = np.arange(-2048, 2048)
    out, latency = run_stream(dut, feed(dut, xs), valid_prob=0.8, ready_prob=0.6)
    want = models.cast_with_flags(xs, 6, fmt, rounding, overflow)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()
    assert run_stream(dut, feed(dut, xs[:1]))[1] == dut.LATENCY == Cast.SHALLOW_LATENCY == 1


def test_shallow_is_refused_for_a_cast_that_draws_random_words():
    with pytest.raises(ValueError, match=r"Cast shallow=True is for deterministic rounding"):
        Cast(in_width=12, from_frac=6, fmt=QFormat(3, 2), rounding=Rounding.STOCHASTIC,
             shallow=True)
    # No fraction bit is dropped: nothing random is drawn, so shallow is allowed.
    assert Cast(in_width=8, from_frac=4, fmt=QFormat(4, 4), rounding=Rounding.STOCHASTIC,
                shallow=True).LATENCY == 1
    with pytest.raises(TypeError, match="Cast shallow must be a bool, not 1"):
        Cast(in_width=12, from_frac=6, fmt=QFormat(3, 2), shallow=1)
