# amaranth: UnusedElaboratable=no
"""Cast unit in Amaranth's simulator, against the reference model."""

import numpy as np
import pytest

from fxbp.hw import Cast
from fxbp.sim import models
from fxbp.sim.amaranth_bench import run_stream
from fxbp.sw.fixed import Overflow, QFormat, Rounding


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("overflow", list(Overflow))
def test_every_12_bit_input(rounding, overflow):
    fmt = QFormat(3, 2)
    dut = Cast(in_width=12, from_frac=6, fmt=fmt, rounding=rounding, overflow=overflow)
    xs = np.arange(-2048, 2048)
    out, latency = run_stream(dut, [{"value": int(x), "index": i} for i, x in enumerate(xs)],
                              statics=[(dut.key, 0xC0FFEE)])
    want = models.cast_with_flags(xs, 6, fmt, rounding, overflow, key=0xC0FFEE)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()
    assert latency == Cast.LATENCY


@pytest.mark.parametrize("valid_prob, ready_prob", [(1.0, 0.5), (0.5, 1.0), (0.7, 0.3)])
def test_bubbles_and_back_pressure(valid_prob, ready_prob):
    fmt = QFormat(4, 12)
    dut = Cast(in_width=40, from_frac=26, fmt=fmt, rounding=Rounding.STOCHASTIC)
    rng = np.random.default_rng(3)
    xs = rng.integers(-(1 << 39), 1 << 39, 1500)
    out, _ = run_stream(dut, [{"value": int(x), "index": i} for i, x in enumerate(xs)],
                        statics=[(dut.key, 77)], valid_prob=valid_prob, ready_prob=ready_prob)
    assert [o["value"] for o in out] == models.cast_with_flags(
        xs, 26, fmt, Rounding.STOCHASTIC, Overflow.SATURATE, key=77)["value"].tolist()


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"in_width": 0}, ValueError, "Cast input width must be 1 to 64 bits, not 0"),
    ({"in_width": 8.0}, TypeError, "Cast input width must be an integer, not 8.0"),
    ({"from_frac": -1}, ValueError, "fraction bits"),
    ({"fmt": 3}, TypeError, "Cast format must be a QFormat, not 3"),
    ({"rounding": "up"}, ValueError, "unknown rounding mode"),
    ({"overflow": 1}, TypeError, "overflow must be an Overflow, not 1"),
])
def test_parameter_checks(kwargs, exc, match):
    args = dict(in_width=16, from_frac=8, fmt=QFormat(4, 4))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        Cast(**args)
