# amaranth: UnusedElaboratable=no
"""What every unit shares: class latency, the sideband tag, the skid buffer (registered
ready), named signatures."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fxbp.hw import MAC, Cast, Sigmoid, SigmoidDerivative, WeightUpdate
from fxbp.sim.amaranth_bench import run_stream
from fxbp.sw.fixed import QFormat, Rounding
from fxbp.sw.sigmoid import SigmoidSpec

Q = QFormat


def units(**kw):
    return [
        Cast(in_width=20, from_frac=10, fmt=Q(4, 4), rounding=Rounding.STOCHASTIC, **kw),
        SigmoidDerivative(a_fmt=Q(2, 10), d_fmt=Q(1, 11), **kw),
        WeightUpdate(w_fmt=Q(3, 9), g_fmt=Q(5, 7), lr_fmt=Q(0, 12, signed=False), **kw),
        Sigmoid(z_fmt=Q(4, 4), a_fmt=Q(1, 7), spec=SigmoidSpec("plan"), **kw),
        Sigmoid(z_fmt=Q(4, 4), a_fmt=Q(1, 7), spec=SigmoidSpec("lut", 64, 8), **kw),
    ]


def payloads(dut, n, rng):
    items = []
    for k in range(n):
        item = {}
        for name, field in dut.i.payload.shape():
            width = field.shape.width if hasattr(field.shape, "width") else field.width
            item[name] = int(rng.integers(0, 1 << min(width, 12)))
        item["tag"] = k % 128
        items.append(item)
    return items


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("registered_ready", [False, True])
def test_tag_travels_with_its_value_under_stalls(index, registered_ready):
    dut = units(tag_width=7, registered_ready=registered_ready)[index]
    ref = units()[index]
    rng = np.random.default_rng(index)
    items = payloads(dut, 300, rng)
    statics = [(getattr(d, n), 3) for d in (dut,) for n in ("key", "eta") if hasattr(d, n)]
    out, _ = run_stream(dut, items, statics=statics, valid_prob=0.7, ready_prob=0.4, seed=5)
    plain = [{k: v for k, v in it.items() if k != "tag"} for it in items]
    ref_statics = [(getattr(ref, n), 3) for n in ("key", "eta") if hasattr(ref, n)]
    want, _ = run_stream(ref, plain, statics=ref_statics)
    assert [o["tag"] for o in out] == [it["tag"] for it in items]
    assert [{k: v for k, v in o.items() if k != "tag"} for o in out] == want


@pytest.mark.parametrize("registered_ready", [False, True])
def test_ready_is_registered_with_the_skid_buffer(registered_ready):
    # Fill the pipeline, then flip o.ready without a clock edge: i.ready follows it
    # combinationally without the skid buffer, and does not move with it.
    dut = SigmoidDerivative(a_fmt=Q(2, 10), d_fmt=Q(1, 11), registered_ready=registered_ready)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        for _ in range(dut.LATENCY + 3):
            await ctx.tick()
        for ready in (0, 1, 0, 1):
            ctx.set(dut.o.ready, ready)
            seen.append(ctx.get(dut.i.ready))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == ([0, 0, 0, 0] if registered_ready else [0, 1, 0, 1])


def test_full_rate_with_the_skid_buffer():
    dut = Cast(in_width=16, from_frac=8, fmt=Q(4, 4), registered_ready=True)
    out, latency = run_stream(dut, [{"value": v} for v in range(-500, 500)])
    assert len(out) == 1000 and latency == Cast.PLAIN_LATENCY


def test_latencies_are_fixed_when_a_unit_is_built():
    assert (MAC.LATENCY, Sigmoid.DEEP_LATENCY, Sigmoid.SHALLOW_LATENCY) == (3, 5, 3)
    # The cast's, the derivative's and the update's depend on their rounding (the hash's
    # stages), fixed when each is built.
    assert (Cast.RANDOM_LATENCY, Cast.PLAIN_LATENCY) == (6, 2)
    for unit in (SigmoidDerivative, WeightUpdate):
        assert (unit.RANDOM_LATENCY, unit.PLAIN_LATENCY) == (7, 6)
    assert units()[0].LATENCY == 6
    assert Cast(in_width=20, from_frac=10, fmt=Q(4, 4)).LATENCY == 2
    # a stochastic cast that drops no bits draws no random word either
    assert Cast(in_width=8, from_frac=4, fmt=Q(4, 4), rounding=Rounding.STOCHASTIC).LATENCY == 2
    assert not hasattr(units()[3], "latency")


def test_named_signatures_build_without_a_unit():
    sig = WeightUpdate.Signature(w_fmt=Q(4, 12), g_fmt=Q(6, 10), lr_fmt=Q(0, 16, signed=False))
    assert set(sig.members) == {"i", "o", "eta"}
    assert WeightUpdate(w_fmt=Q(4, 12), g_fmt=Q(6, 10), lr_fmt=Q(0, 16, signed=False)).signature == sig
    mac = MAC.Signature(a_width=8, b_width=8, acc_width=24, bias_width=8, tag_width=4)
    assert set(dict(mac.members["i"].signature.members["payload"].shape)) == {
        "a", "b", "bias", "first", "last", "tag"}
    assert repr(Sigmoid.Signature(z_fmt=Q(4, 4), a_fmt=Q(1, 7))).startswith("Sigmoid.Signature(")


def test_stream_register_passes_every_word_in_order_under_stalls():
    from fxbp.hw import StreamRegister
    dut = StreamRegister(32)
    words = [{"data": (k * 2654435761) & 0xFFFFFFFF} for k in range(400)]
    out, latency = run_stream(dut, words, valid_prob=0.6, ready_prob=0.3, seed=2)
    assert out == words
    out, latency = run_stream(StreamRegister(32), words)
    assert out == words and latency == StreamRegister.LATENCY


def test_stream_register_ready_and_valid_leave_registers():
    from fxbp.hw import StreamRegister
    dut = StreamRegister(8)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        await ctx.tick()
        await ctx.tick()
        await ctx.tick()                     # full: one word out, one in the skid buffer
        for ready, valid in ((1, 0), (0, 1), (1, 1)):
            ctx.set(dut.o.ready, ready)
            ctx.set(dut.i.valid, valid)
            seen.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(0, 1)] * 3


def test_stream_register_refuses_a_non_shape():
    from fxbp.hw import StreamRegister
    with pytest.raises(TypeError, match="StreamRegister shape must be a shape, not 'wide'"):
        StreamRegister("wide")
