"""Drive a unit's streams in Amaranth's simulator: bubbles, back-pressure, latency."""

from __future__ import annotations

import numpy as np
from amaranth.lib import data
from amaranth.sim import Simulator

__all__ = ["run_stream"]


def _as_python(value, shape):
    """An int, or a dict of ints for a struct payload."""
    if isinstance(shape, data.StructLayout):
        return {name: int(getattr(value, name)) for name, _ in shape}
    return int(value)


def run_stream(dut, inputs: list, *, statics=(), valid_prob: float = 1.0,
               ready_prob: float = 1.0, seed: int = 0, n_out: int | None = None):
    """Feed ``inputs`` (ints, or dicts of payload fields) to ``dut.i``; collect ``dut.o``.

    ``statics`` is a sequence of ``(port, value)`` held constant; ``n_out`` the number of
    outputs to wait for (default: one per input).
    ``valid_prob`` < 1 inserts random bubbles on the input, ``ready_prob`` < 1 random
    back-pressure on the output. Returns ``(outputs, latency)``: the output payloads in
    order, and the cycles from the first accepted input to the first output.
    """
    rng = np.random.default_rng(seed)
    offers = rng.random(20 * len(inputs) + 100) < valid_prob
    readies = rng.random(20 * len(inputs) + 100) < ready_prob
    out_shape = dut.o.payload.shape() if hasattr(dut.o.payload, "shape") else None
    outputs = []
    marks = {}

    async def testbench(ctx):
        for port, value in statics:
            ctx.set(port, value)
        k = 0
        for cycle in range(len(offers)):
            if len(outputs) == (len(inputs) if n_out is None else n_out):
                break
            offer = bool(offers[cycle]) and k < len(inputs)
            ctx.set(dut.i.valid, offer)
            if offer:
                if isinstance(inputs[k], dict):
                    for name, v in inputs[k].items():
                        ctx.set(getattr(dut.i.payload, name), v)
                else:
                    ctx.set(dut.i.payload, inputs[k])
            ctx.set(dut.o.ready, bool(readies[cycle]))
            *_, payload, i_ready, o_valid = await ctx.tick().sample(dut.o.payload, dut.i.ready,
                                                                    dut.o.valid)
            if offer and i_ready:
                marks.setdefault("in", cycle)
                k += 1
            if o_valid and readies[cycle]:
                marks.setdefault("out", cycle)
                outputs.append(_as_python(payload, out_shape))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    latency = marks["out"] - marks["in"] if "in" in marks and "out" in marks else None
    return outputs, latency
