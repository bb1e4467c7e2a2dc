# amaranth: UnusedElaboratable=no
"""WeightUpdate unit in Amaranth's simulator, against the reference model."""

import numpy as np
import pytest

from fxbp.hw import WeightUpdate
from fxbp.sim import models
from fxbp.sim.amaranth_bench import run_stream
from fxbp.sw.fixed import Overflow, QFormat, Rounding

FX16 = dict(w_fmt=QFormat(4, 12), g_fmt=QFormat(6, 10), lr_fmt=QFormat(0, 16, signed=False))
FX8 = dict(w_fmt=QFormat(3, 5), g_fmt=QFormat(4, 4), lr_fmt=QFormat(0, 8, signed=False))


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("overflow", list(Overflow))
@pytest.mark.parametrize("fmts, eta", [(FX16, 1024), (FX16, 3), (FX8, 4)])
def test_updates(rounding, overflow, fmts, eta):
    dut = WeightUpdate(rounding=rounding, overflow=overflow, **fmts)
    rng = np.random.default_rng(eta)
    wf, gf = fmts["w_fmt"], fmts["g_fmt"]
    w = rng.integers(wf.min_raw, wf.max_raw + 1, 2000)
    g = rng.integers(gf.min_raw, gf.max_raw + 1, 2000)
    w[:4] = [wf.min_raw, wf.max_raw, 0, 1]
    g[:4] = [gf.max_raw, gf.min_raw, 1, -1]
    out, lat = run_stream(dut, [{"w": int(w[i]), "g": int(g[i]), "index": i} for i in range(len(w))],
                          statics=[(dut.key, 11), (dut.eta, eta)], valid_prob=0.85, ready_prob=0.75)
    want = models.weight_update_model(w, g, eta, rounding=rounding, overflow=overflow, key=11, **fmts)
    for field in ("value", "overflow", "stalled"):
        assert [o[field] for o in out] == want[field].tolist()


def test_latency():
    dut = WeightUpdate(**FX16)
    assert run_stream(dut, [{"w": 5, "g": 7, "index": 0}], statics=[(dut.eta, 100)])[1] == 3


def test_parameter_checks():
    with pytest.raises(ValueError, match="learning-rate format must be unsigned"):
        WeightUpdate(w_fmt=QFormat(4, 12), g_fmt=QFormat(6, 10), lr_fmt=QFormat(1, 15))
