# amaranth: UnusedElaboratable=no
"""CounterBank: every read is the exact sum of the increments since the last clear."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fxbp.hw.engine.counter_bank import CounterBank

#: A read answered with ``valid`` in cycle ``t`` counts the increments given in cycles
#: up to ``t - ANSWER_AGE`` (the visit that answers it started 3 cycles before, and the
#: increments are registered, then summed in the pending register).
ANSWER_AGE = 5


def _want(sums, t, i):
    """The model's count for a read answered in cycle ``t``: 0 before any increment."""
    return sums[t - ANSWER_AGE][i] if t >= ANSWER_AGE else 0


def _run(counters, width, cycles, seed, *, poison=True, increments="random"):
    """Drive the bank for ``cycles``; return (reads: [(cycle, index, value, waited)], sums
    by cycle: sums[t][i] = the increments of counter i given in cycles <= t since the
    last clear, modulo 2**width)."""
    dut = CounterBank(counters=counters, width=width, poison_collisions=poison)
    names = list(counters)
    n = len(names)
    rng = np.random.default_rng(seed)
    top = [(1 << w) - 1 for w in counters.values()]
    sums, reads = [], []
    running = [0] * n

    async def bench(ctx):
        request, index, since = False, 0, 0
        for t in range(cycles):
            # Increments: the largest, 0, or random (a third each); all largest in bursts.
            burst = increments == "largest" or (t // 97) % 3 == 1
            for i, name in enumerate(names):
                kind = 0 if burst else int(rng.integers(0, 3))
                v = top[i] if kind == 0 else (0 if kind == 1 else int(rng.integers(0, top[i] + 1)))
                ctx.set(dut.inc[name.replace(".", "_")], v)
                running[i] = (running[i] + v) % (1 << width)
            clear = increments == "random" and rng.random() < 0.01
            ctx.set(dut.clear, clear)
            if clear:
                running[:] = [0] * n
            sums.append(list(running))
            if not request and rng.random() < 0.2:
                request, index, since = True, int(rng.integers(0, n)), t
            ctx.set(dut.read.request, request)
            ctx.set(dut.read.index, index)
            await ctx.tick()
            if ctx.get(dut.read.valid) and request:
                reads.append((t + 1, index, ctx.get(dut.read.data), t + 1 - since))
                request = False

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return reads, sums


@pytest.mark.parametrize("counters, width", [
    ({"cycles": 1, "lane.busy": 3, "samples": 6, "events.total": 1, "x": 2}, 12),
    ({"a": 1, "b": 1, "c": 1}, 32),                  # the fewest counters: 3
    ({f"c{i}": 1 + i % 4 for i in range(40)}, 8),    # the engine's count, narrow words
])
def test_every_read_is_the_exact_sum_of_increments_since_the_last_clear(counters, width):
    reads, sums = _run(counters, width, cycles=1200, seed=len(counters))
    assert len(reads) > 20
    for t, i, value, _ in reads:
        assert value == _want(sums, t, i), (t, i)


def test_a_read_waits_at_most_one_sweep():
    counters = {f"c{i}": 2 for i in range(7)}
    reads, _ = _run(counters, 16, cycles=400, seed=3)
    waits = {w for *_, w in reads}
    # from the request's first cycle to valid: 3 cycles at best, a whole sweep more at worst
    assert min(waits) >= 3 and max(waits) <= len(counters) + 3
    assert len(waits) > 4


def test_pending_sums_hold_a_sweep_of_the_largest_increments_without_loss():
    # every counter gets its largest increment every cycle: the pending sums fill most
    counters = {"one": 1, "three": 3, "seven": 7, "w": 1}
    reads, sums = _run(counters, 24, cycles=600, seed=5, increments="largest")
    assert reads
    for t, i, value, _ in reads:
        assert value == _want(sums, t, i)
    assert CounterBank(counters=counters, width=24).pending_widths == {
        "one": 3, "three": 5, "seven": 9, "w": 3}


def test_counters_read_zero_after_reset():
    dut = CounterBank(counters={"a": 1, "b": 2, "c": 3}, width=16)
    got = []

    async def bench(ctx):
        for index in range(3):
            ctx.set(dut.read.request, 1)
            ctx.set(dut.read.index, index)
            while True:
                await ctx.tick()
                if ctx.get(dut.read.valid):
                    got.append(ctx.get(dut.read.data))
                    break
            ctx.set(dut.read.request, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [0, 0, 0]


@pytest.mark.parametrize("kw, exc, message", [
    ({"counters": ["a", "b", "c"]}, TypeError, "counters must be a dict"),
    ({"counters": {"a": 1, "b": 1}}, ValueError, "at least 3 counters, not 2"),
    ({"counters": {"a": 1, "b": 1, 3: 1}}, TypeError, "counter name must be a str, not 3"),
    ({"counters": {"a": 0, "b": 1, "c": 1}}, ValueError,
     "increment width of 'a' must be 1 to 32, not 0"),
    ({"counters": {"a.b": 1, "a_b": 1, "c": 1}}, ValueError, "must differ after"),
    ({"width": 65}, ValueError, "CounterBank width must be 1 to 64, not 65"),
    ({"poison_collisions": 1}, TypeError, "poison_collisions must be a bool, not 1"),
])
def test_parameters_are_checked(kw, exc, message):
    args = {"counters": {"a": 1, "b": 1, "c": 1}, "width": 32, **kw}
    with pytest.raises(exc, match=message):
        CounterBank(**args)
