# amaranth: UnusedElaboratable=no
"""Sigmoid unit (LUT and PLAN) in Amaranth's simulator: every input of the format."""

import numpy as np
import pytest

from fxbp.hw import Sigmoid
from fxbp.sim import models
from fxbp.sim.amaranth_bench import run_stream
from fxbp.sw.fixed import QFormat, Rounding
from fxbp.sw.sigmoid import SigmoidSpec


@pytest.mark.parametrize("kind, latency", [("lut", 1), ("plan", 2)])
@pytest.mark.parametrize("z_fmt, a_fmt, entries", [(QFormat(4, 4), QFormat(1, 7), 64),
                                                    (QFormat(5, 7), QFormat(2, 10), 256)])
def test_every_input(kind, latency, z_fmt, a_fmt, entries):
    spec = SigmoidSpec(kind, entries, 8)
    dut = Sigmoid(z_fmt=z_fmt, a_fmt=a_fmt, spec=spec)
    z = np.arange(z_fmt.min_raw, z_fmt.max_raw + 1)
    out, lat = run_stream(dut, [int(v) for v in z], valid_prob=0.8, ready_prob=0.7)
    assert out == models.sigmoid_model(z, z_fmt, a_fmt, spec).tolist()
    assert run_stream(dut, [0, 1, 2])[1] == latency == dut.latency


def test_parameter_checks():
    with pytest.raises(ValueError, match="must be deterministic"):
        Sigmoid(z_fmt=QFormat(6, 10), a_fmt=QFormat(2, 14), rounding=Rounding.STOCHASTIC)
    with pytest.raises(TypeError, match="Sigmoid spec must be a SigmoidSpec"):
        Sigmoid(z_fmt=QFormat(6, 10), a_fmt=QFormat(2, 14), spec="lut")
    with pytest.raises(ValueError, match="finer than"):
        Sigmoid(z_fmt=QFormat(8, 0), a_fmt=QFormat(2, 14), spec=SigmoidSpec("lut", 256, 8))
