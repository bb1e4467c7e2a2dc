# amaranth: UnusedElaboratable=no
"""Sigmoid unit (LUT and PLAN) in Amaranth's simulator: every input of the format."""

import numpy as np
import pytest

from fxbp.hw import Sigmoid
from fxbp.sim import models
from fxbp.sim.amaranth_bench import run_stream
from fxbp.sw.fixed import Overflow, QFormat, Rounding
from fxbp.sw.sigmoid import SigmoidSpec


def run_all(dut, z_fmt, **kw):
    z = np.arange(z_fmt.min_raw, z_fmt.max_raw + 1)
    out, _ = run_stream(dut, [{"value": int(v)} for v in z], **kw)
    return z, out


@pytest.mark.parametrize("shallow", [False, True])
@pytest.mark.parametrize("kind", ["lut", "plan"])
@pytest.mark.parametrize("z_fmt, a_fmt, entries", [(QFormat(4, 4), QFormat(1, 7), 64),
                                                    (QFormat(5, 7), QFormat(2, 10), 256)])
def test_every_input(kind, z_fmt, a_fmt, entries, shallow):
    spec = SigmoidSpec(kind, entries, 8)
    dut = Sigmoid(z_fmt=z_fmt, a_fmt=a_fmt, spec=spec, shallow=shallow)
    z, out = run_all(dut, z_fmt, valid_prob=0.8, ready_prob=0.7)
    want = models.sigmoid_model(z, z_fmt, a_fmt, spec)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()
    assert run_stream(dut, [{"value": 0}, {"value": 1}])[1] == dut.LATENCY == (3 if shallow else 5)


@pytest.mark.parametrize("rounding", [r for r in Rounding if r.deterministic])
@pytest.mark.parametrize("overflow", list(Overflow))
@pytest.mark.parametrize("shallow", [False, True])
def test_plan_honours_the_activation_overflow_and_flags_its_events(rounding, overflow, shallow):
    # fx8: PLAN reaches 1.0, which Q1.7 lacks. Golden wraps it to -1.0 under "wrap" and
    # counts an overflow; the unit used to saturate always and flag nothing.
    z_fmt, a_fmt = QFormat(4, 4), QFormat(1, 7)
    dut = Sigmoid(z_fmt=z_fmt, a_fmt=a_fmt, spec=SigmoidSpec("plan"), rounding=rounding,
                  overflow=overflow, shallow=shallow)
    z, out = run_all(dut, z_fmt)
    want = models.sigmoid_model(z, z_fmt, a_fmt, SigmoidSpec("plan"), rounding, overflow)
    assert want["overflow"].sum() > 0
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()


@pytest.mark.parametrize("kind", ["lut", "plan"])
@pytest.mark.parametrize("z_fmt, a_fmt", [(QFormat(4, 4, signed=False), QFormat(1, 7)),
                                          (QFormat(4, 4, signed=False), QFormat(0, 8, signed=False))])
@pytest.mark.parametrize("overflow", list(Overflow))
def test_unsigned_preactivation(kind, z_fmt, a_fmt, overflow):
    """An unsigned pre-activation is never negative (PLAN once read its top bit as a sign)."""
    spec = SigmoidSpec(kind, 64, 8)
    dut = Sigmoid(z_fmt=z_fmt, a_fmt=a_fmt, spec=spec, overflow=overflow)
    z, out = run_all(dut, z_fmt)
    want = models.sigmoid_model(z, z_fmt, a_fmt, spec, Rounding.NEAREST_EVEN, overflow)
    for field in ("value", "overflow", "underflow"):
        assert [o[field] for o in out] == want[field].tolist()


def test_parameter_checks():
    with pytest.raises(ValueError, match="must be deterministic"):
        Sigmoid(z_fmt=QFormat(6, 10), a_fmt=QFormat(2, 14), rounding=Rounding.STOCHASTIC)
    with pytest.raises(TypeError, match="Sigmoid spec must be a SigmoidSpec"):
        Sigmoid(z_fmt=QFormat(6, 10), a_fmt=QFormat(2, 14), spec="lut")
    with pytest.raises(ValueError, match="finer than"):
        Sigmoid(z_fmt=QFormat(8, 0), a_fmt=QFormat(2, 14), spec=SigmoidSpec("lut", 256, 8))
    with pytest.raises(TypeError, match="overflow must be an Overflow"):
        Sigmoid(z_fmt=QFormat(6, 10), a_fmt=QFormat(2, 14), overflow=Overflow)
