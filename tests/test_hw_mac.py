# amaranth: UnusedElaboratable=no
"""MAC unit in Amaranth's simulator: exact sums, first/last framing, latency, stalls."""

import numpy as np
import pytest

from fxbp.hw import MAC, max_exact_fan_in
from fxbp.sim import models
from fxbp.sim.amaranth_bench import run_stream


def framed(rng, a_width, b_width, n_sums, max_len, edge=False):
    lengths = rng.integers(1, max_len + 1, n_sums)
    n = int(lengths.sum())
    lo_a, hi_a = -(1 << (a_width - 1)), (1 << (a_width - 1)) - 1
    lo_b, hi_b = -(1 << (b_width - 1)), (1 << (b_width - 1)) - 1
    a = rng.integers(lo_a, hi_a + 1, n)
    b = rng.integers(lo_b, hi_b + 1, n)
    if edge:                       # the largest sums: most negative x most negative
        a[:lengths[0]], b[:lengths[0]] = lo_a, lo_b
    items, k = [], 0
    for length in lengths:
        for j in range(length):
            items.append({"a": int(a[k]), "b": int(b[k]), "first": int(j == 0),
                          "last": int(j == length - 1)})
            k += 1
    return items, models.mac_sums(a, b, lengths)


@pytest.mark.parametrize("widths", [(16, 16, 40, 256), (8, 8, 24, 511), (18, 18, 48, 1024)])
@pytest.mark.parametrize("valid_prob, ready_prob", [(1.0, 1.0), (0.6, 0.4)])
def test_exact_sums(widths, valid_prob, ready_prob):
    a_w, b_w, acc_w, fan_in = widths
    dut = MAC(a_width=a_w, b_width=b_w, acc_width=acc_w, max_fan_in=fan_in)
    rng = np.random.default_rng(sum(widths))
    items, sums = framed(rng, a_w, b_w, 12, fan_in, edge=True)
    out, _ = run_stream(dut, items, n_out=len(sums), valid_prob=valid_prob, ready_prob=ready_prob)
    assert [o["sum"] for o in out] == sums
    assert not any(o["fan_in_exceeded"] for o in out)


def test_latency_and_full_rate():
    dut = MAC(a_width=16, b_width=16, acc_width=40, max_fan_in=8)
    items = [{"a": 3, "b": 5, "first": 1, "last": 1}] + [
        {"a": i, "b": -i, "first": int(i == 1), "last": int(i == 8)} for i in range(1, 9)]
    out, latency = run_stream(dut, items, n_out=2)
    assert [o["sum"] for o in out] == [15, -sum(i * i for i in range(1, 9))]
    assert latency == MAC.LATENCY          # one-product sum: accepted at 0, out at 3


def test_sums_longer_than_the_fan_in_are_flagged():
    dut = MAC(a_width=8, b_width=8, acc_width=20, max_fan_in=4)
    items = []
    for length in (4, 5, 1, 9):
        items += [{"a": 3, "b": 2, "first": int(j == 0), "last": int(j == length - 1)}
                  for j in range(length)]
    out, _ = run_stream(dut, items, n_out=4, ready_prob=0.6)
    assert [(o["sum"], o["fan_in_exceeded"]) for o in out] == [(24, 0), (30, 1), (6, 0), (54, 1)]


@pytest.mark.parametrize("preset", ["fx16", "fx12", "fx8"])
def test_bias_for_every_preset(preset):
    # The bias enters as bias << (fw + fa - fb): fx8's shift of 7 is wiring, not an operand.
    from fxbp.hw.generate import build_unit
    from fxbp.sw.profile import load_profile
    p = load_profile(preset)
    dut = build_unit("mac", p)
    assert dut.bias_shift == p.weight.fmt.frac_bits + p.activation.fmt.frac_bits - p.bias.fmt.frac_bits
    rng = np.random.default_rng(7)
    lengths = [1, 4, 9, 2]
    bias = [p.bias.fmt.min_raw, p.bias.fmt.max_raw, -1, 3]
    items, a, b = [], [], []
    for j, n in enumerate(lengths):
        for k in range(n):
            a.append(int(rng.integers(-(1 << (dut.a_width - 1)), 1 << (dut.a_width - 1))))
            b.append(int(rng.integers(-(1 << (dut.b_width - 1)), 1 << (dut.b_width - 1))))
            items.append({"a": a[-1], "b": b[-1], "bias": bias[j] if k == 0 else 0,
                          "first": int(k == 0), "last": int(k == n - 1)})
    out, _ = run_stream(dut, items, n_out=len(lengths), ready_prob=0.6)
    assert [o["sum"] for o in out] == models.mac_sums(a, b, lengths, bias, dut.bias_shift)


def test_tag_comes_out_with_its_sum():
    dut = MAC(a_width=8, b_width=8, acc_width=24, max_fan_in=16, tag_width=6)
    items = []
    for tag, n in enumerate((3, 1, 5, 2)):
        items += [{"a": 1, "b": n, "first": int(k == 0), "last": int(k == n - 1), "tag": tag + 40}
                  for k in range(n)]
    out, _ = run_stream(dut, items, n_out=4, valid_prob=0.7, ready_prob=0.5)
    assert [(o["sum"], o["tag"]) for o in out] == [(9, 40), (1, 41), (25, 42), (4, 43)]


def test_fan_in_check():
    assert max_exact_fan_in(16, 16, 40) == 511
    with pytest.raises(ValueError, match="exact for at most 511 products of 16x16 bits, not 512"):
        MAC(a_width=16, b_width=16, acc_width=40, max_fan_in=512)
    with pytest.raises(ValueError, match="MAC maximum fan-in must be at least 1, not 0"):
        MAC(max_fan_in=0)
    with pytest.raises(TypeError, match="MAC operand width must be an integer, not '16'"):
        MAC(a_width="16")
