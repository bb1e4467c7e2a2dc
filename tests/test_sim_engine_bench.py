# amaranth: UnusedElaboratable=no
"""The cocotb bench of the training engine (``fxbp.sim.engine_bench``, marker: sim): the host
protocol, every error code and short training runs bit-exact with the golden model, under
full-rate, idle-gap, back-pressure and combined traffic on the host interface; and proof
that the bench fails when the engine and the golden model part."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fxbp.sim.engine_bench import (CASES, NETWORKS, PATTERNS, TABLE_COLUMNS, bench_config,
                                   compare_events, compare_outputs, compare_parameters,
                                   event_delta, run_engine_bench, table_rows)
from fxbp.sw.golden import GoldenMLP

ROOT = Path(__file__).resolve().parent.parent / "sim_build"


@pytest.mark.sim
def test_engine_bench_passes_every_test():
    res = run_engine_bench(ROOT)
    failed = [f"{r['case']} {r['test']}: {r['message']}" for r in res["results"] if not r["passed"]]
    assert not failed, failed
    expected = {(c, f"host_protocol/pattern={p}") for c in CASES for p in PATTERNS}
    expected |= {(c, f"train/net={n}/pattern={p}") for c in CASES for n in NETWORKS
                 for p in PATTERNS}
    assert {(r["case"], r["test"]) for r in res["results"]} == expected
    assert res["passed"] and res["tests"] == len(expected) and res["failures"] == 0
    for r in res["results"]:
        assert r["cycles"] > 0
        if r["test"].startswith("train"):
            net = r["test"].split("/")[1].split("=")[1]
            assert len(r["train_cycles"]) == len(NETWORKS[net]["steps"])
            assert len(r["eval_cycles"]) == 2 and min(r["train_cycles"] + r["eval_cycles"]) > 0
        else:
            # the four truncated payloads answered TIMEOUT after the 1000-cycle register
            assert len(r["timeout_waits"]) == 4
            assert all(1000 <= w <= 1008 for w in r["timeout_waits"])
    # the iris run saturates on purpose: the overflow counters compared were not all zero
    iris = [r for r in res["results"] if "net=iris" in r["test"]]
    assert all(r["events_compared"]["preactivation"][0] > 0 for r in iris)
    assert {b["case"] for b in res["builds"]} == set(CASES)
    assert [b["gen_hash"] for b in res["builds"]] == [f"{bench_config(c).gen_hash:08x}"
                                                       for c in CASES]
    json.dumps(res)
    rows = table_rows(res)
    assert len(rows) == len(expected) and all(len(r) == len(TABLE_COLUMNS) for r in rows)


@pytest.mark.sim
def test_engine_bench_fails_on_a_wrong_golden_weight():
    # Fault injection: golden starts with the output layer's last weight 1/16 off the
    # engine's; the first comparison, the EVAL before training, must report the outputs.
    res = run_engine_bench(ROOT, cases=["fx16-nearest"], fault="weight",
                           test_filter=r"train/net=\w+/pattern=full_rate")
    assert res["tests"] == 2 and res["failures"] == 2 and not res["passed"]
    for r in res["results"]:
        assert re.match(r"\[full_rate\] EVAL before training: outputs: \d+ of \d+ differ, "
                        r"first at \[\d+, \d+\]: golden raw \d+, engine raw \d+$",
                        r["message"]), r["message"]


@pytest.mark.sim
@pytest.mark.slow
def test_engine_bench_waves(tmp_path):
    from fxbp.sim.runner import fst_supported
    res = run_engine_bench(tmp_path, cases=["fx16-nearest"], waves=True,
                           test_filter=r"train/net=xor/pattern=full_rate")
    assert res["passed"] and res["tests"] == 1
    dump = Path(res["builds"][0]["build_dir"]) / ("dump.fst" if fst_supported() else "dump.vcd")
    assert dump.exists() and dump.stat().st_size > 100_000


def test_run_engine_bench_refuses_unknown_cases(tmp_path):
    with pytest.raises(ValueError, match="unknown engine bench case 'fx9'"):
        run_engine_bench(tmp_path, cases=["fx9"])
    with pytest.raises(ValueError, match="fault must be"):
        run_engine_bench(tmp_path, fault="bias")


# ------------------------------------------------------------ the comparisons themselves

def _golden(fx16):
    rng = np.random.default_rng(3)
    w = [rng.integers(-4096, 4096, (4, 2)), rng.integers(-4096, 4096, (1, 4))]
    b = [rng.integers(-2048, 2048, 4), rng.integers(-2048, 2048, 1)]
    return GoldenMLP((2, 4, 1), fx16, w, b, seed=5)


def test_compare_parameters_names_the_changed_weight(fx16):
    golden = _golden(fx16)
    ws, bs = [w.copy() for w in golden.weights], [b.copy() for b in golden.biases]
    assert compare_parameters("step 1", ws, bs, golden) == []
    ws[1][0, 2] += 1
    bs[0][3] -= 7
    msgs = compare_parameters("step 1", ws, bs, golden)
    assert len(msgs) == 2
    assert msgs[0].startswith("step 1: layer 1 biases: 1 of 4 differ, first at [3]")
    assert msgs[1] == (f"step 1: layer 2 weights: 1 of 4 differ, first at [0, 2]: golden raw "
                       f"{golden.weights[1][0, 2]}, engine raw {golden.weights[1][0, 2] + 1}")
    assert "2 weight / 1 bias tensors" in compare_parameters("x", ws, bs[:1], golden)[0]


def test_compare_events_and_outputs(fx16):
    golden = _golden(fx16)
    x = golden.quantize_input(np.array([[0.5, -0.25], [1.0, 1.0]]))
    before = golden.event_counts()
    out = golden.forward(x)[-1]
    delta = event_delta(golden.event_counts(), before)
    assert delta["preactivation"]["total"] == 10 and delta["activation"]["total"] == 10
    from fxbp.hw.engine.config import COUNTERS
    counters = {n: 0 for n in COUNTERS}
    counters.update({"preactivation.total": 10, "activation.total": 10})
    assert compare_events("EVAL", counters, delta) == []
    counters["activation.total"] = 9
    assert compare_events("EVAL", counters, delta) == [
        "EVAL: counter activation.total: golden 10, engine 9"]
    assert compare_outputs("EVAL", out.copy(), out) == []
    wrong = out.copy()
    wrong[1, 0] ^= 1
    assert compare_outputs("EVAL", wrong, out)[0].startswith("EVAL: outputs: 1 of 2 differ, "
                                                             "first at [1, 0]")
    assert "shape (2,)" in compare_outputs("EVAL", out.reshape(-1), out)[0]


def test_table_rows():
    res = {"results": [
        {"case": "fx16-nearest", "test": "train/net=xor/pattern=both", "passed": True,
         "cycles": 3132, "train_cycles": [218, 218, 217], "message": None},
        {"case": "fx16-nearest", "test": "host_protocol/pattern=idle_gaps", "passed": False,
         "cycles": None, "message": "[idle_gaps] NOP after RREG 0x05 answered []\nassert"}]}
    assert table_rows(res) == [
        ("fx16-nearest", "train xor", "both", "yes", "3,132", "218/218/217", ""),
        ("fx16-nearest", "host_protocol", "idle_gaps", "NO", "-", "-",
         "[idle_gaps] NOP after RREG 0x05 answered []")]
