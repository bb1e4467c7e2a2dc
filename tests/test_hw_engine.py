"""The training engine (hw/engine) against the golden model, through the native harness.

Every case trains the same run on golden and on ``--backend rtl`` and compares the
``weights_digest`` and every cast-event count after every epoch (exact equality). The
CI set covers each item of the issue's list once; the long runs are ``slow``.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from fxbp.hw.engine import Engine, EngineConfig
from fxbp.hw.generate import verilog
from fxbp.hw.engine.config import COUNTERS, REG, Err, Mem, Op, status_word
from fxbp.sw.engine_host import Layout, Program
from fxbp.sw.errors import FxbpError
from fxbp.sw.profile import load_profile
from fxbp.sw.rtl import RtlRuntime, VerifyMismatch
from fxbp.sw.train import TrainConfig, Trainer

pytestmark = pytest.mark.sim


def _epochs(config: TrainConfig) -> tuple[list, dict]:
    """``(digest and events after each epoch, result)`` of one run."""
    trainer = Trainer(config)
    rt = trainer.runtime
    seen = []
    inner = rt.train_epoch

    def train_epoch(*args, **kwargs):
        inner(*args, **kwargs)
        seen.append((rt.digest(), rt.event_counts()))

    rt.train_epoch = train_epoch
    result = trainer.run()
    return seen, result


def _same_as_golden(**kw) -> dict:
    gold, _ = _epochs(TrainConfig(backend="golden", **kw))
    rtl, result = _epochs(TrainConfig(backend="rtl", **kw))
    assert len(gold) == len(rtl) == result["epochs"]
    for epoch, ((gd, ge), (rd, re_)) in enumerate(zip(gold, rtl), 1):
        assert re_ == ge, f"cast events differ after epoch {epoch}"
        assert rd == gd, f"weights digest differs after epoch {epoch}"
    return result


# The list, one case each (CI); lanes vary so that P = 1, 2, 4 and 8 all run.
CI_CASES = {
    "digits-fx16-stochastic-1-epoch": dict(dataset="digits", epochs=1),
    "xor": dict(dataset="xor", epochs=30, lanes=2),
    "iris": dict(dataset="iris", epochs=3, lanes=4),
    "seed-neuron-batch-1": dict(dataset="seed-neuron", lanes=1),
    "iris-two-hidden-layers-xent-plan": dict(dataset="iris", epochs=2, hidden=(8, 6), loss="xent",
                                             sigmoid="plan", lanes=4),
    "iris-fx8-batch-1": dict(dataset="iris", epochs=1, precision="fx8", batch=1, lr=0.5, lanes=2),
    "iris-fx12-stochastic-batch-7": dict(dataset="iris", epochs=2, precision="fx12",
                                         rounding="stochastic", batch=7, lanes=4),
    "iris-shallow-nearest-even": dict(dataset="iris", epochs=2, rounding="nearest-even",
                                      lanes=2, shallow=True),
}

SLOW_CASES = {
    "digits-demo-recipe-30-epochs": dict(dataset="digits"),
    "xor-500-epochs": dict(dataset="xor"),
    "iris-100-epochs": dict(dataset="iris"),
    "digits-xent-plan-fx12": dict(dataset="digits", epochs=3, loss="xent", sigmoid="plan",
                                  precision="fx12"),
    "digits-fx8-nearest-even": dict(dataset="digits", epochs=3, precision="fx8",
                                    rounding="nearest-even"),
    "digits-two-hidden-p4": dict(dataset="digits", epochs=2, hidden=(24, 16), lanes=4),
}


@pytest.mark.parametrize("case", CI_CASES)
def test_engine_trains_bit_exact_with_golden(case):
    _same_as_golden(**CI_CASES[case])


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES)
def test_engine_trains_bit_exact_with_golden_long(case):
    _same_as_golden(**SLOW_CASES[case])


def test_digits_hardware_figures():
    """The counters add up: every busy lane-cycle is one multiply-accumulate of the
    contract, and the cycles per training sample meet the issue's bound."""
    result = _same_as_golden(dataset="digits", epochs=1)
    hw = result["hardware"]
    n = (64, 32, 10)
    macs = 2 * (64 * 32 + 32 * 10) + 32 * 10
    assert hw["macs_per_sample"] == macs == 5056
    assert hw["samples_trained"] == 1438 and hw["steps"] == 45
    assert hw["lane_busy_cycles"] == 1438 * macs
    assert hw["training_cycles"] == sum(hw["cycles_per_phase"].values())
    assert hw["cycles_per_sample"] <= hw["target_cycles_per_sample"] == 1.25 * macs / 8
    assert hw["mac_lane_utilisation"] >= 0.80
    assert n == tuple(result["network"]["sizes"])


@pytest.mark.parametrize("first, second", [("golden", "rtl"), ("rtl", "golden")])
def test_checkpoint_moves_between_golden_and_rtl(tmp_path, first, second):
    kw = dict(dataset="iris", lanes=4)
    straight = Trainer(TrainConfig(backend="golden", epochs=3, **kw)).run()
    a = Trainer(TrainConfig(backend=first, epochs=2, **kw))
    a.run(checkpoint_dir=tmp_path)
    b = Trainer(TrainConfig(backend=second, epochs=3, **kw))
    b.load_checkpoint(tmp_path)
    result = b.run()
    assert result["weights_digest"] == straight["weights_digest"]
    assert result["cast_events"] == straight["cast_events"]


def test_the_icebreaker_engine_trains_bit_exact_without_event_counters(tmp_path):
    """The iCEBreaker's engine (one lane, batch 8, nearest-even, shallow units, no event
    counters): golden's digest after every epoch; no cast events in the record (as a float
    backend has none), the cycle counters still there; an event counter's register is
    refused; and a golden checkpoint resumes on it (its events set aside), while its own
    checkpoint cannot resume where events are counted."""
    kw = dict(dataset="digits", rounding="nearest-even", batch=8, lanes=1, shallow=True,
              event_counters=False)
    gold, _ = _epochs(TrainConfig(backend="golden", epochs=2, **kw))
    rtl, result = _epochs(TrainConfig(backend="rtl", epochs=2, **kw))
    assert [d for d, _ in rtl] == [d for d, _ in gold] and all(e == {} for _, e in rtl)
    assert result["cast_events"] == {} and result["cast_events_by_layer"] is None
    hw = result["hardware"]
    assert hw["engine"]["shallow"] is True and hw["engine"]["event_counters"] is False
    assert hw["samples_trained"] == 2 * 1438 and hw["steps"] == 2 * 180
    assert hw["lane_busy_cycles"] == 2 * 1438 * hw["macs_per_sample"]
    assert hw["training_cycles"] == sum(hw["cycles_per_phase"].values()) > 0

    cfg = EngineConfig(profile=load_profile("fx16").with_rounding("nearest-even"),
                       sizes=(64, 32, 10), batch=8, lanes=1, shallow=True, event_counters=False)
    zeros_w, zeros_b = [np.zeros((32, 64)), np.zeros((10, 32))], [np.zeros(32), np.zeros(10)]
    rt = RtlRuntime((64, 32, 10), cfg.profile, zeros_w, zeros_b, loss="mse", seed=0, lr=1.0,
                    batch=8, lanes=1, shallow=True, event_counters=False, progress=False)
    assert rt.config == cfg and len(cfg.counter_names) == 13
    prog = Program()
    ident = prog.ident()
    answers = rt._run(prog)
    assert int(answers[ident][2]) >> 26 & 1 == 1        # ID: no event counters
    prog = Program()
    prog.rreg(REG["counters"] + len(cfg.counter_names))
    with pytest.raises(FxbpError, match="unknown register"):
        rt._run(prog)

    kw2 = dict(kw, epochs=2)
    straight = Trainer(TrainConfig(backend="golden", **kw2)).run()
    a = Trainer(TrainConfig(backend="golden", **dict(kw2, epochs=1)))
    a.run(checkpoint_dir=tmp_path / "g")
    b = Trainer(TrainConfig(backend="rtl", **kw2))
    b.load_checkpoint(tmp_path / "g")
    assert b.run()["weights_digest"] == straight["weights_digest"]
    c = Trainer(TrainConfig(backend="rtl", **dict(kw2, epochs=1)))
    c.run(checkpoint_dir=tmp_path / "r")
    with pytest.raises(FxbpError, match="holds no cast-event counts"):
        Trainer(TrainConfig(backend="golden", **kw2)).load_checkpoint(tmp_path / "r")


def test_one_build_trains_a_smaller_network_and_batch():
    """Widths and batch are run-time registers: an engine generated for 6-9-5, batch 8,
    trains 4-7-3 at batch 6, bit-exact, after first training another network."""
    from fxbp.sw.runtime import GoldenRuntime
    p = load_profile("fx16").with_rounding("stochastic")
    rng = np.random.default_rng(5)
    for sizes, batch in (((6, 9, 5), 8), ((4, 7, 3), 6)):
        ws = [rng.uniform(-1, 1, (sizes[l + 1], sizes[l])) for l in range(2)]
        bs = [rng.uniform(-0.5, 0.5, sizes[l + 1]) for l in range(2)]
        kw = dict(loss="mse", seed=9, lr=2.0, batch=batch)
        gold = GoldenRuntime(sizes, p, ws, bs, **kw)
        rtl = RtlRuntime(sizes, p, ws, bs, lanes=4, max_sizes=(6, 9, 5), max_batch=8,
                         progress=False, **kw)
        x, t = rng.uniform(0, 1, (3 * batch - 1, sizes[0])), rng.uniform(0, 1, (3 * batch - 1,
                                                                               sizes[-1]))
        xg, tg = gold.prepare(x, t)
        xr, tr = rtl.prepare(x, t)
        order = np.arange(len(x))
        gold.train_epoch(xg, tg, order, batch)
        rtl.train_epoch(xr, tr, order, batch)
        np.testing.assert_array_equal(rtl.predict(xr), gold.predict(xg))
        assert rtl.digest() == gold.digest()
        assert rtl.event_counts() == gold.event_counts()
        assert rtl.config.sizes == (6, 9, 5) and rtl.config.batch == 8


def _golden_and_rtl(sizes, rng_seed: int, *, seed: int, batch: int, **rtl_kw):
    """``(rng, golden, rtl)``: fx16 stochastic mse runtimes from the same random initial
    parameters (two layers); ``rng`` goes on to draw the data."""
    from fxbp.sw.runtime import GoldenRuntime
    p = load_profile("fx16").with_rounding("stochastic")
    rng = np.random.default_rng(rng_seed)
    ws = [rng.uniform(-1, 1, (sizes[l + 1], sizes[l])) for l in range(2)]
    bs = [rng.uniform(-0.5, 0.5, sizes[l + 1]) for l in range(2)]
    kw = dict(loss="mse", seed=seed, lr=2.0, batch=batch)
    return (rng, GoldenRuntime(sizes, p, ws, bs, **kw),
            RtlRuntime(sizes, p, ws, bs, progress=False, **kw, **rtl_kw))


def test_ecp5_netlist_with_mult18x18d_trains_bit_exact():
    """The engine as synthesised for ECP5 (every product in a MULT18X18D instance with its
    registers, the weights in a DP16KD with its output register), simulated with the cell
    models, trains
    to golden's digest and events: the instances are wired as the generic form computes."""
    from fxbp.sw.rtl import engine_verilog
    sizes, batch = (5, 7, 3), 4
    rng, gold, rtl = _golden_and_rtl(sizes, 11, seed=3, batch=batch, lanes=2, family="ecp5")
    text = engine_verilog(rtl.config, "ecp5")
    # one instance a MAC lane, and the e.d MAC, the sigmoid derivative and the update
    # (one for weights and biases: their stages are equal in fx16)
    assert rtl.config.profile.weight == rtl.config.profile.bias
    assert text.count('.REG_OUTPUT_CLK("CLK0")') == 2 + 3
    # the weights and each of the 2 activation and 2 delta banks in one DP16KD, read
    # through its output register
    assert text.count('.REGMODE_B("OUTREG")') == 1 + 2 + 2
    x, t = rng.uniform(0, 1, (2 * batch + 1, sizes[0])), rng.uniform(0, 1, (2 * batch + 1, sizes[-1]))
    xg, tg = gold.prepare(x, t)
    xr, tr = rtl.prepare(x, t)
    for epoch in range(2):
        order = np.random.default_rng(epoch).permutation(len(x))
        gold.train_epoch(xg, tg, order, batch)
        rtl.train_epoch(xr, tr, order, batch)
        assert rtl.digest() == gold.digest() and rtl.event_counts() == gold.event_counts()
    np.testing.assert_array_equal(rtl.predict(xr), gold.predict(xg))


def test_cli_primitives_ecp5_trains_to_the_golden_digest(tmp_path, capsys):
    """``fxbp train --backend rtl --primitives ecp5``: the ECP5 netlist's digest, events and
    record say what ran."""
    import json
    from fxbp.sw.cli import main
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "iris", "--epochs", "1", "--backend", "rtl", "--lanes", "4",
              "--primitives", "ecp5", "--quiet", "--json", str(out)])
    assert exc.value.code == 0
    result = json.loads(out.read_text())
    gold = Trainer(TrainConfig(dataset="iris", epochs=1, backend="golden")).run()
    assert result["weights_digest"] == gold["weights_digest"]
    assert result["cast_events"] == gold["cast_events"]
    assert result["hardware"]["primitives"] == "ecp5"
    assert "ecp5 primitives with their cell models" in result["runtime"]["device"]


def test_engine_verilog_refuses_a_family_without_cell_models():
    from fxbp.sw.errors import FxbpError
    from fxbp.sw.rtl import engine_verilog
    with pytest.raises(FxbpError, match="no cell models for family 'ice40': choose ecp5"):
        engine_verilog(None, "ice40")


def test_shift_mode_profile(tmp_path):
    toml = tmp_path / "shift.toml"
    toml.write_text('base = "fx16"\nname = "fx16-shift"\nlr_mode = "shift"\n')
    _same_as_golden(dataset="iris", epochs=2, precision=str(toml), lanes=4)


def test_bias_stage_unlike_the_weight_stage_gets_its_own_update(tmp_path):
    """When the bias stage differs from the weight stage, the engine keeps a bias update
    of its own beside the weight update (both fed by the one gradient cast)."""
    toml = tmp_path / "bias.toml"
    toml.write_text('base = "fx16"\nname = "fx16-bias"\n[stages]\n'
                    'bias = { format = "Q5.11", rounding = "stochastic", overflow = "saturate" }\n')
    profile = load_profile(str(toml))
    assert profile.bias != profile.weight
    text = verilog(Engine(EngineConfig(profile=profile, sizes=(4, 8, 3), batch=8, lanes=2)), "t")
    assert "module \\t.wupd " in text and "module \\t.bupd " in text
    assert "module \\t.upd " not in text
    _same_as_golden(dataset="iris", epochs=2, precision=str(toml), rounding="stochastic",
                    lanes=2)


@pytest.mark.parametrize("lanes, batch, banking, family", [
    (4, 8, None, None), (2, 7, None, None), (2, 8, (16, 2), None), (2, 8, (16, 2), "ecp5")])
def test_dataset_buffer_runs_epochs_bit_exact(lanes, batch, banking, family, monkeypatch):
    """The training set loaded once into the dataset buffer; each epoch sends its order and
    RUNs the steps (the last one partial) on chip: the digest and events of golden.
    ``banking`` (words a bank, multiplexer ways) shrinks the banks so the small buffer is
    built as the 85F's is: 120 sample words in 8 banks, 3 registered levels. ``family``
    ``ecp5``: the netlist as synthesised, every bank a DP16KD read through its output
    register (``sim/dp16kd.v``)."""
    from fxbp.hw.engine import engine as engine_module
    if banking:
        monkeypatch.setattr(engine_module, "DS_BANK_DEPTH", banking[0])
        monkeypatch.setattr(engine_module, "DS_MUX_WAYS", banking[1])
    sizes, n = (4, 8, 3), 30
    rng, gold, rtl = _golden_and_rtl(sizes, 2, seed=4, batch=batch, lanes=lanes,
                                     dataset_buffer=n, batches_per_call=3, family=family)
    if family:
        from fxbp.sw.rtl import engine_verilog
        # 120 sample words and 90 target words in banks of 16: 8 + 6 DP16KD; the weights
        # 1, the activation and delta banks 2 + 2.
        assert engine_verilog(rtl.config, family).count('.REGMODE_B("OUTREG")') == 8 + 6 + 5
    x, t = rng.uniform(0, 1, (n, sizes[0])), rng.uniform(0, 1, (n, sizes[-1]))
    xg, tg = gold.prepare(x, t)
    xr, tr = rtl.prepare(x, t)
    calls = []
    for epoch in range(3):
        order = np.random.default_rng(epoch).permutation(n)
        gold.train_epoch(xg, tg, order, batch)
        rtl.train_epoch(xr, tr, order, batch, on_batch=lambda: calls.append(1))
        assert rtl.digest() == gold.digest() and rtl.event_counts() == gold.event_counts()
    steps = 3 * -(-n // batch)
    assert rtl.counters["steps"] == steps == len(calls) and rtl.counters["samples_trained"] == 3 * n
    assert rtl._resident is not None                     # loaded once, then only orders


def test_run_wraps_the_order_and_keeps_the_position_between_runs():
    """RUN from a position near the order's end: a batch that ends exactly at the end
    (the wrap on equality), a whole batch, then a short last batch that wraps; a second
    RUN goes on from the position the engine kept. The batches are golden's, in that
    order (digest and events), and the position register reads back where they end."""
    sizes, n, batch = (4, 8, 3), 7, 3
    rng, gold, rtl = _golden_and_rtl(sizes, 3, seed=9, batch=batch, lanes=2, dataset_buffer=n)
    x, t = rng.uniform(0, 1, (n, sizes[0])), rng.uniform(0, 1, (n, sizes[-1]))
    xg, tg = gold.prepare(x, t)
    xr, tr = rtl.prepare(x, t)
    order = np.random.default_rng(5).permutation(n)
    assert rtl._load_resident(xr, tr)
    prog = Program()
    prog.wmem(Mem.ORDER, 0, order)
    for r, v in (("order_len", n), ("position", 4), ("batch", batch)):
        prog.wreg(REG[r], v)
    rtl._run(prog)
    position = 4
    for steps, expected_end in ((4, 0), (2, 6)):
        for _ in range(steps):                     # golden's batches: position .. wrap
            end = min(position + batch, n)
            idx = order[position:end]
            gold.train_batch(xg[idx], tg[idx])
            position = 0 if end == n else end
        assert position == expected_end
        prog = Program()
        prog.wreg(REG["run_steps"], steps)
        prog.run()
        handles = rtl._collect_counters(prog)
        at = prog.rreg(REG["position"])
        answers = rtl._run(prog)
        rtl._add_counters(answers, handles)
        assert int(answers[at][0]) == expected_end
        assert rtl.digest() == gold.digest() and rtl.event_counts() == gold.event_counts()


@pytest.mark.parametrize("banking", [None, (8, 2), (16, 4)])
def test_dataset_buffer_reads_back_what_was_written(small_engine, banking, monkeypatch):
    """WMEM then RMEM of the samples, targets and order, for one bank and for banks behind
    registered multiplexers (latency 2 to 5): every word comes back at its address."""
    from fxbp.hw.engine import engine as engine_module
    from fxbp.hw.engine.banked_memory import BankedMemory
    from fxbp.sw.rtl import build_engine
    if banking:
        monkeypatch.setattr(engine_module, "DS_BANK_DEPTH", banking[0])
        monkeypatch.setattr(engine_module, "DS_MUX_WAYS", banking[1])
    cfg, _ = small_engine
    cfg = dataclasses.replace(cfg, dataset_buffer=9)
    if banking:
        assert BankedMemory.latency_of(9 * cfg.sizes[0], bank_depth=banking[0],
                                       mux_ways=banking[1]) > 2
    sim = build_engine(cfg, progress=False).new()
    sim.reset(2)
    rng = np.random.default_rng(7)
    for mem, depth, bits in ((Mem.DSX, 9 * cfg.sizes[0], 16), (Mem.DST, 9 * cfg.sizes[-1], 16),
                             (Mem.ORDER, 9, 4)):
        values = [int(v) for v in rng.integers(0, 1 << (bits - 1), depth)]
        got, _ = _send(sim, [Op.WMEM | mem << 8, 0, depth, *values], 1)
        assert got == [status_word(Op.WMEM, Err.OK)]
        got, _ = _send(sim, [Op.RMEM | mem << 8, 0, depth], depth + 1)
        assert got == values + [status_word(Op.RMEM, Err.OK)], mem


def test_run_is_refused_without_a_buffer_and_with_a_bad_order(small_engine):
    cfg, lib = small_engine                               # built with dataset_buffer 0
    sim = lib.new()
    sim.reset(2)
    got, _ = _send(sim, [Op.RUN, Op.NOP], 2)
    assert got == [status_word(Op.RUN, Err.OPCODE), status_word(Op.NOP, Err.OK)]
    from fxbp.sw.rtl import build_engine
    lib = build_engine(dataclasses.replace(cfg, dataset_buffer=6), progress=False)
    sim = lib.new()
    sim.reset(2)
    good = {REG["order_len"]: 3, REG["position"]: 0, REG["run_steps"]: 1}
    cases = [({}, Err.OK), ({REG["order_len"]: 0}, Err.CONFIG), ({REG["order_len"]: 7}, Err.CONFIG),
             ({REG["position"]: 3}, Err.CONFIG), ({REG["run_steps"]: 0}, Err.CONFIG)]
    for change, err in cases:
        words = []
        for r, v in {**good, **change}.items():
            words += [Op.WREG | r << 8, v]
        got, _ = _send(sim, words + [Op.RUN, Op.NOP], 3 + 2)
        assert got[-2:] == [status_word(Op.RUN, err), status_word(Op.NOP, Err.OK)], change


# ------------------------------------------------------------------ verify-every-step
def _xor_runtime(verify=True):
    trainer = Trainer(TrainConfig(dataset="xor", backend="rtl", epochs=1, lanes=2,
                                  verify_every_step=verify))
    return trainer


def test_verify_every_step_passes_when_equal():
    trainer = _xor_runtime()
    result = trainer.run()
    assert result["epochs"] == 1


def test_verify_every_step_names_an_injected_fault():
    """A weight flipped in the engine between steps is caught at the next step, in the
    first tensor it changes: layer 1's activations, at a sample whose input 0 is set."""
    trainer = _xor_runtime()
    rt = trainer.runtime
    (x, t), order = trainer._train_data, trainer.batch_order(1)
    rt.train_epoch(x, t, order, 4)                      # step 0: equal
    rt.inject_fault(Mem.W, 0, 0x400)                    # W_1[0, 0] += 0.25 (Q4.12)
    with pytest.raises(VerifyMismatch) as info:
        rt.train_epoch(x, t, order, 4)
    text = str(info.value)
    match = re.search(r"step 1, layer 1, tensor activation a_1, index \[b=(\d), j=0\] "
                      r"\(flat \d+\): expected raw (-?\d+), actual (-?\d+)", text)
    assert match, text
    b = int(match[1])
    xb = x[order][b]
    assert xb[0] != 0 and not any(x[order][:b, 0])     # the first sample that sees W[0, 0]
    assert match[2] != match[3]


# ------------------------------------------------------------------ host interface
@pytest.fixture(scope="module")
def small_engine():
    from fxbp.sw.rtl import build_engine
    cfg = EngineConfig(profile=load_profile("fx16"), sizes=(2, 3, 1), batch=4, lanes=2)
    lib = build_engine(cfg, progress=False)
    return cfg, lib


def _send(sim, words, n_out, **kw):
    res = sim.stream(np.array(words, dtype=np.uint64), n_out, max_cycles=20_000, **kw)
    return [int(w) for w in res.outputs[:, 0]], res


@pytest.mark.parametrize("pattern", ["full", "idle", "backpressure"])
def test_every_error_answers_and_the_next_command_works(small_engine, pattern):
    cfg, lib = small_engine
    sim = lib.new()
    sim.reset(2)
    kw = {"full": {}, "idle": {"valid": [1, 0, 0]}, "backpressure": {"ready": [0, 1, 0]}}[pattern]
    nop = status_word(Op.NOP, Err.OK)
    cases = [
        ([0x7F], [status_word(0x7F, Err.OPCODE)]),
        ([Op.RREG | 0x3F << 8], [0, status_word(Op.RREG, Err.REGISTER)]),
        ([Op.WREG | 0x3F << 8, 5], [status_word(Op.WREG, Err.REGISTER)]),
        ([Op.WREG | REG["counters"] << 8, 5], [status_word(Op.WREG, Err.REGISTER)]),
        # Out of range: the payload is consumed, then refused.
        ([Op.WMEM | Mem.W << 8, cfg.weight_bases[1] - 1, 2, 7, 8], [status_word(Op.WMEM, Err.MEMORY)]),
        ([Op.WMEM | 9 << 8, 0, 1, 7], [status_word(Op.WMEM, Err.MEMORY)]),
        ([Op.RMEM | Mem.B << 8, 0, cfg.bias_bases[1] + 1], [0] * (cfg.bias_bases[1] + 1)
         + [status_word(Op.RMEM, Err.MEMORY)]),
        ([Op.WREG | REG["batch"] << 8, 0, Op.TRAIN], [status_word(Op.WREG, Err.OK),
                                                     status_word(Op.TRAIN, Err.CONFIG)]),
        ([Op.WREG | REG["batch"] << 8, 5, Op.EVAL], [status_word(Op.WREG, Err.OK),
                                                    status_word(Op.EVAL, Err.CONFIG)]),
        ([Op.WREG | REG["batch"] << 8, 2, Op.WREG | (REG["width0"] + 1) << 8, 0, Op.TRAIN],
         [status_word(Op.WREG, Err.OK)] * 2 + [status_word(Op.TRAIN, Err.CONFIG)]),
        ([Op.WREG | (REG["width0"] + 1) << 8, 3], [status_word(Op.WREG, Err.OK)]),
        # A value whose low bits would pass (0x10003: 3) is refused: the register keeps
        # all 32 bits.
        ([Op.WREG | (REG["width0"] + 1) << 8, 0x10003, Op.RREG | (REG["width0"] + 1) << 8,
          Op.TRAIN, Op.WREG | (REG["width0"] + 1) << 8, 3],
         [status_word(Op.WREG, Err.OK), 0x10003, status_word(Op.RREG, Err.OK),
          status_word(Op.TRAIN, Err.CONFIG), status_word(Op.WREG, Err.OK)]),
    ]
    for words, expected in cases:
        got, _ = _send(sim, words + [Op.NOP], len(expected) + 1, **kw)
        assert got == expected + [nop], [hex(w) for w in words]


def test_a_shallow_engine_saturates_its_batch_and_width_registers():
    """A shallow engine's batch and width registers are as wide as their maxima need, plus
    a bit: a value whose low bits would pass (0x10003: 3) saturates, reads back as all
    ones, and TRAIN/EVAL refuse it, as a 32-bit register's engine does."""
    from fxbp.sw.rtl import build_engine
    cfg = EngineConfig(profile=load_profile("fx16").with_rounding("nearest-even"),
                       sizes=(2, 3, 1), batch=4, lanes=2, shallow=True)
    assert cfg.saturating_registers == {REG["batch"]: 4, REG["width0"]: 3,
                                        REG["width0"] + 1: 3, REG["width0"] + 2: 3}
    sim = build_engine(cfg, progress=False).new()
    sim.reset(2)
    w1, ok = REG["width0"] + 1, status_word(Op.WREG, Err.OK)
    words = [Op.WREG | w1 << 8, 0x10003, Op.RREG | w1 << 8, Op.TRAIN,
             Op.WREG | w1 << 8, 3, Op.WREG | REG["batch"] << 8, 0x20001,
             Op.RREG | REG["batch"] << 8, Op.EVAL, Op.WREG | REG["batch"] << 8, 4,
             Op.RREG | REG["batch"] << 8, Op.NOP]
    got, _ = _send(sim, words, 13)
    assert got == [ok, 7, status_word(Op.RREG, Err.OK), status_word(Op.TRAIN, Err.CONFIG),
                   ok, ok, 15, status_word(Op.RREG, Err.OK), status_word(Op.EVAL, Err.CONFIG),
                   ok, 4, status_word(Op.RREG, Err.OK), status_word(Op.NOP, Err.OK)]


def test_a_truncated_payload_times_out(small_engine):
    cfg, lib = small_engine
    sim = lib.new()
    sim.reset(2)
    got, _ = _send(sim, [Op.WREG | REG["timeout"] << 8, 1000], 1)
    assert got == [status_word(Op.WREG, Err.OK)]
    got, res = _send(sim, [Op.WMEM | Mem.W << 8, 0, 4, 1], 1)    # 3 of 4 values never come
    assert got == [status_word(Op.WMEM, Err.TIMEOUT)]
    assert res.cycles < 1100
    got, _ = _send(sim, [Op.NOP], 1)
    assert got == [status_word(Op.NOP, Err.OK)]


def test_registers_and_memories_read_back(small_engine):
    cfg, lib = small_engine
    sim = lib.new()
    sim.reset(2)
    prog = Program()
    ident = prog.ident()
    prog.wreg(REG["seed"], 0xDEADBEEF)
    seed = prog.rreg(REG["seed"])
    lay = Layout(cfg, (2, 3, 1))
    w = [np.array([[1, -2], [3, -4], [5, -32768]]), np.array([[32767, 0, -1]])]
    b = [np.array([7, -8, 9]), np.array([-10])]
    lay.write_parameters(prog, w, b)
    handles = lay.read_parameters(prog)
    counters = prog.counters()
    words = prog.encode()
    res = sim.stream(words, prog.responses(lay.id_words), max_cycles=50_000)
    answers = prog.decode(res.outputs[:, 0], lay.id_words)
    lay.check_id(answers[ident])
    assert int(answers[seed][0]) & 0xFFFFFFFF == 0xDEADBEEF
    ws, bs = lay.parameters(answers, handles)
    for got, exp in zip(ws + bs, w + b):
        np.testing.assert_array_equal(got, exp)
    assert len(counters) == len(COUNTERS)


def test_decode_refuses_a_failed_status():
    prog = Program()
    prog.nop()
    with pytest.raises(FxbpError, match="refused NOP: unknown opcode"):
        prog.decode([status_word(Op.NOP, Err.OPCODE)])
    with pytest.raises(FxbpError, match="out of step"):
        prog.decode([status_word(Op.TRAIN, Err.OK)])
    with pytest.raises(FxbpError, match="stopped answering"):
        prog.decode([])


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize("kw, exc, text", [
    ({"profile": "fx16"}, TypeError, "engine profile must be a PrecisionProfile, not 'fx16'"),
    ({"lanes": 6}, ValueError, "engine lanes must be a power of two, not 6"),
    ({"lanes": 0}, ValueError, "engine lanes must be 1 to 64, not 0"),
    ({"sizes": (4,)}, ValueError, "engine sizes need an input and at least one layer"),
    ({"sizes": (4, 0)}, ValueError, "engine layer width must be 1 to 4096, not 0"),
    ({"batch": 0}, ValueError, "engine batch must be 1 to 4096, not 0"),
    ({"loss": "hinge"}, ValueError, "engine loss must be 'mse' or 'xent', not 'hinge'"),
    ({"dataset_buffer": 70000}, ValueError, "engine dataset buffer must be 0 to 65536, not 70000"),
    ({"lr_shift": 3}, ValueError, "lr_shift applies to lr_mode"),
    ({"shallow": 1}, TypeError, "engine shallow must be a bool, not 1"),
    ({"event_counters": 0}, TypeError, "engine event_counters must be a bool, not 0"),
    ({"shallow": True, "profile": load_profile("fx16").with_rounding("stochastic")}, ValueError,
     "shallow units are for deterministic training rounding"),
])
def test_engine_config_is_checked(kw, exc, text):
    base = dict(profile=load_profile("fx16"), sizes=(4, 3), batch=4, lanes=2)
    with pytest.raises(exc, match=re.escape(text)):
        EngineConfig(**{**base, **kw})


def test_shape_outside_the_build_is_refused():
    cfg = EngineConfig(profile=load_profile("fx16"), sizes=(4, 3, 2), batch=4, lanes=2)
    with pytest.raises(FxbpError, match="n_1 = 5 is outside the engine's 1..3"):
        cfg.check_shape((4, 5, 2), 4)
    with pytest.raises(FxbpError, match="built for 2 layer"):
        cfg.check_shape((4, 2), 4)
    with pytest.raises(FxbpError, match="batch 5 is outside"):
        cfg.check_shape((4, 3, 2), 5)


def test_shallow_and_event_counters_are_named_in_the_hash_only_when_not_default():
    """The default engine's generation hash (and so its Verilog) is the one measured before
    the option existed; a shallow engine's differs, so a host cannot drive one as the other."""
    base = EngineConfig(profile=load_profile("fx16").with_rounding("nearest-even"),
                        sizes=(4, 3), batch=4, lanes=2)
    shallow = dataclasses.replace(base, shallow=True)
    assert "shallow" not in base.describe() and shallow.describe()["shallow"] is True
    assert base.gen_hash != shallow.gen_hash
    quiet = dataclasses.replace(base, event_counters=False)
    assert "event_counters" not in base.describe() and quiet.describe()["event_counters"] is False
    assert len({base.gen_hash, shallow.gen_hash, quiet.gen_hash}) == 3


def test_engine_verilog_is_deterministic():
    from fxbp.hw.generate import verilog
    cfg = EngineConfig(profile=load_profile("fx8"), sizes=(3, 2), batch=2, lanes=2)
    assert verilog(Engine(cfg), "e") == verilog(Engine(dataclasses.replace(cfg)), "e")
