# amaranth: UnusedElaboratable=no
"""SigmoidDerivative unit in Amaranth's simulator: every activation of the format."""

import numpy as np
import pytest

from fxbp.hw import SigmoidDerivative
from fxbp.sim import models
from fxbp.sim.amaranth_bench import run_stream
from fxbp.sw.fixed import Overflow, QFormat, Rounding


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("overflow", list(Overflow))
@pytest.mark.parametrize("a_fmt, d_fmt", [(QFormat(1, 7), QFormat(1, 7)),
                                           (QFormat(2, 10), QFormat(1, 11))])
def test_every_activation(rounding, overflow, a_fmt, d_fmt):
    dut = SigmoidDerivative(a_fmt=a_fmt, d_fmt=d_fmt, rounding=rounding, overflow=overflow)
    a = np.arange(a_fmt.min_raw, a_fmt.max_raw + 1)
    items = [{"value": int(v), "index": i} if dut.stochastic else {"value": int(v)}
             for i, v in enumerate(a)]
    st = [(dut.key, 5)] if dut.stochastic else []
    out, lat = run_stream(dut, items, statics=st, valid_prob=0.9, ready_prob=0.8)
    want = models.derivative_model(a, a_fmt, d_fmt, rounding, overflow, key=5)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()
    assert run_stream(dut, items[:1], statics=st)[1] == dut.LATENCY == (7 if dut.stochastic else 6)


@pytest.mark.parametrize("rounding", [r for r in Rounding if r.deterministic])
@pytest.mark.parametrize("overflow", list(Overflow))
@pytest.mark.parametrize("a_fmt, d_fmt", [(QFormat(1, 7), QFormat(1, 7)),
                                           (QFormat(2, 10), QFormat(1, 11))])
def test_shallow_every_activation(rounding, overflow, a_fmt, d_fmt):
    dut = SigmoidDerivative(a_fmt=a_fmt, d_fmt=d_fmt, rounding=rounding, overflow=overflow,
                            shallow=True)
    a = np.arange(a_fmt.min_raw, a_fmt.max_raw + 1)
    items = [{"value": int(v)} for v in a]
    out, _ = run_stream(dut, items, valid_prob=0.9, ready_prob=0.6)
    want = models.derivative_model(a, a_fmt, d_fmt, rounding, overflow)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()
    assert run_stream(dut, items[:1])[1] == dut.LATENCY == SigmoidDerivative.SHALLOW_LATENCY == 4


def test_shallow_is_refused_when_the_cast_draws_random_words():
    with pytest.raises(ValueError, match="SigmoidDerivative shallow=True is for deterministic"):
        SigmoidDerivative(a_fmt=QFormat(2, 14), d_fmt=QFormat(1, 15),
                          rounding=Rounding.STOCHASTIC, shallow=True)


def test_parameter_checks():
    with pytest.raises(TypeError, match="SigmoidDerivative activation format must be a QFormat"):
        SigmoidDerivative(a_fmt=None, d_fmt=QFormat(1, 15))
