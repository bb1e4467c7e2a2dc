# amaranth: UnusedElaboratable=no
"""WeightUpdate unit in Amaranth's simulator, against the reference model."""

import numpy as np
import pytest
from amaranth.back import rtlil

from fxbp.hw import WeightUpdate
from fxbp.sim import models
from fxbp.sim.amaranth_bench import run_stream
from fxbp.sim.vectors import update_vectors
from fxbp.sw.fixed import Overflow, QFormat, Rounding

FX16 = dict(w_fmt=QFormat(4, 12), g_fmt=QFormat(6, 10), lr_fmt=QFormat(0, 16, signed=False))
FX8 = dict(w_fmt=QFormat(3, 5), g_fmt=QFormat(4, 4), lr_fmt=QFormat(0, 8, signed=False))


def run(dut, w, g, eta=None, key=11, **kw):
    items = [dict(w=int(w[i]), g=int(g[i]), **({"index": i} if dut.stochastic else {}))
             for i in range(len(w))]
    st = ([(dut.eta, eta)] if dut.lr_fmt is not None else []) + \
         ([(dut.key, key)] if dut.stochastic else [])
    return run_stream(dut, items, statics=st, **kw)


@pytest.mark.parametrize("rounding", list(Rounding))
@pytest.mark.parametrize("overflow", list(Overflow))
@pytest.mark.parametrize("fmts, eta", [(FX16, 1024), (FX16, 3), (FX8, 4), (FX8, 255)])
def test_updates(rounding, overflow, fmts, eta):
    dut = WeightUpdate(rounding=rounding, overflow=overflow, **fmts)
    w, g, mix = update_vectors(fmts["w_fmt"], fmts["g_fmt"], 1500, np.random.default_rng(eta))
    out, lat = run(dut, w, g, eta, valid_prob=0.85, ready_prob=0.75)
    want = models.weight_update_model(w, g, eta, rounding=rounding, overflow=overflow, key=11,
                                      **fmts)
    assert want["overflow"].sum() > 0
    assert want["stalled"].sum() > 0 or eta == 255     # eta 255/256 moves w by every g != 0
    for field in ("value", "overflow", "stalled"):
        assert [o[field] for o in out] == want[field].tolist()


@pytest.mark.parametrize("rounding", [r for r in Rounding if r.deterministic])
@pytest.mark.parametrize("overflow", list(Overflow))
@pytest.mark.parametrize("fmts, eta", [(FX16, 1024), (FX8, 4)])
def test_shallow_updates(rounding, overflow, fmts, eta):
    dut = WeightUpdate(rounding=rounding, overflow=overflow, shallow=True, **fmts)
    w, g, _ = update_vectors(fmts["w_fmt"], fmts["g_fmt"], 1500, np.random.default_rng(eta))
    out, _ = run(dut, w, g, eta, valid_prob=0.85, ready_prob=0.6)
    want = models.weight_update_model(w, g, eta, rounding=rounding, overflow=overflow, key=11,
                                      **fmts)
    assert want["overflow"].sum() > 0 and want["stalled"].sum() > 0
    for field in ("value", "overflow", "stalled"):
        assert [o[field] for o in out] == want[field].tolist()
    assert run(dut, [5], [7], eta)[1] == dut.LATENCY == WeightUpdate.SHALLOW_LATENCY == 4


@pytest.mark.parametrize("lr_shift", [0, 3, 9])
def test_shallow_shift_mode(lr_shift):
    w_fmt, g_fmt = FX16["w_fmt"], FX16["g_fmt"]
    dut = WeightUpdate(w_fmt=w_fmt, g_fmt=g_fmt, lr_shift=lr_shift, shallow=True)
    w, g, _ = update_vectors(w_fmt, g_fmt, 800, np.random.default_rng(lr_shift))
    out, _ = run(dut, w, g, ready_prob=0.7)
    want = models.weight_update_model(w, g, None, w_fmt, g_fmt, None, Rounding.NEAREST_EVEN,
                                      Overflow.SATURATE, key=11, lr_shift=lr_shift)
    for field in ("value", "overflow", "stalled"):
        assert [o[field] for o in out] == want[field].tolist()
    assert run(dut, [5], [7])[1] == 4
    stochastic = dict(w_fmt=w_fmt, g_fmt=g_fmt, lr_shift=lr_shift, rounding=Rounding.STOCHASTIC)
    if WeightUpdate(**stochastic).stochastic:      # eta g has fraction bits the weight lacks
        with pytest.raises(ValueError, match="WeightUpdate shallow=True is for deterministic"):
            WeightUpdate(**stochastic, shallow=True)
    else:
        assert WeightUpdate(**stochastic, shallow=True).LATENCY == 4


@pytest.mark.parametrize("rounding", [Rounding.NEAREST_EVEN, Rounding.STOCHASTIC])
@pytest.mark.parametrize("lr_shift", [0, 3, 9])
def test_shift_mode(rounding, lr_shift):
    w_fmt, g_fmt = FX16["w_fmt"], FX16["g_fmt"]
    dut = WeightUpdate(w_fmt=w_fmt, g_fmt=g_fmt, lr_shift=lr_shift, rounding=rounding)
    assert not hasattr(dut, "eta")
    w, g, _ = update_vectors(w_fmt, g_fmt, 800, np.random.default_rng(lr_shift))
    out, _ = run(dut, w, g, ready_prob=0.7)
    want = models.weight_update_model(w, g, None, w_fmt, g_fmt, None, rounding, Overflow.SATURATE,
                                      key=11, lr_shift=lr_shift)
    for field in ("value", "overflow", "stalled"):
        assert [o[field] for o in out] == want[field].tolist()


def test_shift_mode_builds_no_multiplier():
    shift = WeightUpdate(w_fmt=FX16["w_fmt"], g_fmt=FX16["g_fmt"], lr_shift=5)
    multiply = WeightUpdate(**FX16)
    assert "$mul" not in rtlil.convert(shift) and "$mul" in rtlil.convert(multiply)


@pytest.mark.parametrize("rounding, latency", [(Rounding.NEAREST_EVEN, 6), (Rounding.STOCHASTIC, 7)])
def test_latency(rounding, latency):
    dut = WeightUpdate(**FX16, rounding=rounding)
    assert dut.LATENCY == latency
    assert run(dut, [5], [7], 100)[1] == latency


def test_parameter_checks():
    with pytest.raises(ValueError, match="learning-rate format must be unsigned"):
        WeightUpdate(w_fmt=QFormat(4, 12), g_fmt=QFormat(6, 10), lr_fmt=QFormat(1, 15))
    with pytest.raises(TypeError, match="exactly one of lr_fmt"):
        WeightUpdate(w_fmt=QFormat(4, 12), g_fmt=QFormat(6, 10))
    with pytest.raises(TypeError, match="learning-rate shift must be an integer, not 1.5"):
        WeightUpdate(w_fmt=QFormat(4, 12), g_fmt=QFormat(6, 10), lr_shift=1.5)
