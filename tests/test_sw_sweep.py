"""``fxbp sweep``: Dask execution on a two-worker LocalCluster, equality with ``fxbp train``,
the result cache (interruption and resume), refusals of bad input, outputs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("distributed")

from fxbp.sw import cli as cli_module  # noqa: E402
from fxbp.sw.errors import FxbpError  # noqa: E402
from fxbp.sw.sweep import (SweepAxes, code_version, missing_tasks, open_client,  # noqa: E402
                           pareto_front, plan_sweep, run_sweep)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: A TOML profile beside the presets: fx16 with narrower weights.
MY_TOML = 'name = "my12w"\nbase = "fx16"\n[stages]\nweight = "Q4.8"\n'
#: The command line as the `fxbp` script runs it.
FXBP = [sys.executable, "-m", "fxbp.sw.cli"]


def _invoke(*args):
    return CliRunner().invoke(cli_module.cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def client():
    """One two-worker LocalCluster (processes) for the tests that call the engine."""
    with open_client(workers=2) as c:
        yield c


def _results_by_labels(record: dict) -> dict:
    return {(r["precision"], r["rounding"], tuple(r["hidden"] or ()), r["seed"]): r
            for r in record["configurations"]}


def test_sweep_on_local_cluster_equals_fxbp_train(tmp_path):
    """The command on its own two-worker LocalCluster; every configuration's accuracy and
    weights digest equal `fxbp train` run directly with the same options (exact)."""
    toml = tmp_path / "my.toml"
    toml.write_text(MY_TOML)
    out = tmp_path / "sweep"
    res = _invoke("sweep", "--dataset", "xor", "--precision", f"fx8,{toml}",
                  "--rounding", "nearest-even,stochastic", "--hidden", "3", "--seeds", "0,1",
                  "--epochs", 60, "--workers", 2, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    record = json.loads((out / "sweep.json").read_text())
    assert record["summary"]["configurations"] == 8
    assert record["summary"]["done"] == 8 and record["summary"]["failed"] == 0
    assert record["summary"]["tasks_run"] == 8 and record["summary"]["tasks_reused"] == 0
    assert record["summary"]["cluster"].startswith("LocalCluster")
    assert record["summary"]["cluster"].endswith("(2 workers)")
    assert all(r["training"]["worker"].startswith("tcp://") for r in record["configurations"])
    for (precision, rounding, hidden, seed), row in _results_by_labels(record).items():
        direct = tmp_path / f"direct-{Path(precision).stem}-{rounding}-{seed}.json"
        res = _invoke("train", "--dataset", "xor", "--precision", precision, "--rounding",
                      rounding, "--hidden", 3, "--seed", seed, "--epochs", 60, "--quiet",
                      "--json", direct)
        assert res.exit_code == 0, res.output
        want = json.loads(direct.read_text())
        got = row["training"]
        assert got["weights_digest"] == want["weights_digest"]
        assert got["final_test_accuracy"] == want["final_test_accuracy"]
        assert got["final_loss"] == want["final_loss"]
        assert got["cast_events"] == want["cast_events"]
        wu = want["cast_events"]["weight_update"]
        assert got["stalled_updates"] == wu["underflow"] / wu["total"]
        assert row["sizes"] == want["network"]["sizes"] == [2, 3, 1]
        assert row["profile"] == want["precision"]["name"]
    # Outputs: the table, the bits plot (no hardware plots without --synth), the JSON.
    assert (out / "pareto_bits.png").read_bytes()[:8] == PNG_MAGIC
    assert not (out / "pareto_lut.png").exists()
    assert [p["metric"] for p in record["plots"]] == ["bits"]
    assert record["plots"][0]["file"] == "pareto_bits.png" and record["plots"][0]["pareto_front"]
    md = (out / "sweep.md").read_text()
    assert md.count("\n| fx8 |") == 4 and md.count(f"\n| {toml} |") == 4
    assert "![accuracy vs bits](pareto_bits.png)" in md
    bits = {r["precision"]: r["bits"] for r in record["configurations"]}
    assert bits == {"fx8": 72, str(toml): 9 * 16 - 4}
    assert set(record["configurations"][0]["training"]["underflow_rates"]) == set(
        record["configurations"][0]["training"]["cast_events"])


def _axes(**kw):
    base = dict(dataset="xor", precisions=("fx16", "fx8"), roundings=("nearest-even",
                "stochastic"), hidden=((2,), (3,)), seeds=(0,), epochs=40)
    return SweepAxes(**{**base, **kw})


class _StopAfter:
    """A progress display that stops the client (Ctrl-C) after ``n`` results."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def start(self, total, done, failed, reused):
        self.start_args = (total, done, failed, reused)

    def update(self, done, failed):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt

    def stop(self):
        pass


def _outcomes(run):
    return {k: (v[0], v[1]["weights_digest"], v[1]["final_test_accuracy"])
            for k, v in run["outcomes"].items()}


def test_interrupted_sweep_resumes_with_cached_results(tmp_path, client):
    """Stop the client after 3 results: those 3 are cached, the run again reuses exactly
    them, runs the other 5, and ends with the results of an uninterrupted sweep."""
    plan = plan_sweep(_axes())
    assert len(plan) == 8
    straight = run_sweep(plan, cache_dir=tmp_path / "straight", client=client)
    assert straight["ran"] == 8 and straight["reused"] == 0
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, cache_dir=cache, client=client, progress=_StopAfter(3))
    assert len(list(cache.glob("*.json"))) == 3
    assert len(missing_tasks(plan, cache)) == 5
    watch = _StopAfter(0)
    resumed = run_sweep(plan, cache_dir=cache, client=client, progress=watch)
    assert resumed["reused"] == 3 and resumed["ran"] == 5
    assert watch.start_args == (8, 3, 0, 3)
    assert sum(v[2] for v in resumed["outcomes"].values()) == 3
    assert _outcomes(resumed) == _outcomes(straight)
    again = run_sweep(plan, cache_dir=cache, client=None)      # nothing missing: no cluster
    assert again["reused"] == 8 and again["ran"] == 0 and again["cluster"] is None


def test_killed_command_resumes(tmp_path):
    """`fxbp sweep` stopped by SIGTERM part-way (exit 143, 'fxbp: interrupted'); the same
    command again reports how many results it reused and runs only the rest."""
    out = tmp_path / "s"
    args = ["sweep", "--dataset", "xor", "--precision", "fx16,fx8", "--rounding",
            "nearest-even,stochastic", "--hidden", "2", "--seeds", "0,1", "--epochs", "2500", "--out", str(out),
            "--workers", "2", "--quiet"]
    proc = subprocess.Popen([*FXBP, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240        # numba compiles in each worker first
    while time.monotonic() < deadline and len(list((out / "cache").glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "fxbp: interrupted"
    cached = len(list((out / "cache").glob("*.json")))
    assert 2 <= cached < 8
    assert not (out / "sweep.json").exists()
    done = subprocess.run([*FXBP, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "sweep.json").read_text())
    assert record["summary"]["tasks_reused"] == cached
    assert record["summary"]["tasks_run"] == 8 - cached
    assert f"{cached} cached results reused, {8 - cached} tasks run" in done.stdout


def test_cache_key_follows_profile_content(tmp_path, monkeypatch):
    """Same file name, other content: another key; the same content again: the same key."""
    toml = tmp_path / "p.toml"
    monkeypatch.setattr("fxbp.sw.sweep.code_version", lambda **_: "fixed")

    def key():
        (conf,) = plan_sweep(_axes(precisions=(str(toml),), roundings=(None,), hidden=((2,),)))
        return conf.train[0]

    toml.write_text(MY_TOML)
    first = key()
    toml.write_text(MY_TOML.replace("Q4.8", "Q4.9"))
    second = key()
    assert second != first
    toml.write_text(MY_TOML)
    assert key() == first
    toml.write_text(MY_TOML.replace('weight = "Q4.8"', 'weight = "Q4.8"\ndelta = "Q2.12"'))
    assert key() not in (first, second)
    (a,) = plan_sweep(_axes(precisions=("fx16",), roundings=(None,), hidden=((2,),)))
    (b,) = plan_sweep(_axes(precisions=("fx16",), roundings=(None,), hidden=((2,),),
                            epochs=41))
    (c,) = plan_sweep(_axes(precisions=("fx16",), roundings=(None,), hidden=((2,),),
                            seeds=(1,)))
    assert len({a.train[0], b.train[0], c.train[0]}) == 3


@pytest.mark.parametrize("args, message", [
    (["--precision", "fx7"], "unknown precision preset 'fx7'"),
    (["--precision", "fx16,missing.toml"], "precision profile missing.toml does not exist"),
    (["--precision", "BAD"], "is not valid TOML"),
    (["--precision", ""], "--precision is an empty list"),
    (["--precision", "fx16,,fx8"], "has an empty item"),
    (["--precision", "fx16,fx8,fx16"], "--precision names 'fx16' twice"),
    (["--rounding", "nearest-even,nearest"], "unknown rounding 'nearest'"),
    (["--hidden", "4,0"], "'0' is not a hidden width"),
    (["--hidden", "4,x"], "'x' is not a hidden width"),
    (["--hidden", "4,04"], "names '04' twice"),
    (["--seeds", "0,-1"], "'-1' is not a seed"),
    (["--seeds", "4294967296"], "is not a seed"),
    (["--synth", "--lanes", "3"], "'3' is not a lane count"),
    (["--pnr"], "--pnr applies to --synth"),
    (["--family", "ice40"], "--family applies to --synth"),
    (["--synth", "--pnr-seeds", "3"], "--pnr-seeds applies to place and route"),
    (["--scheduler", "tcp://127.0.0.1:9", "--workers", "2"], "drop --workers"),
    (["--scheduler", "notanaddress"], "missing port number"),
    (["--dataset", "mnist"], "Invalid value for '--dataset'"),
    (["--epochs", "0"], "Invalid value for '--epochs'"),
    (["--lr", "40"], "no configuration of the sweep can run"),
    (["--out", "FILE"], "is not a directory"),
])
def test_bad_input_is_refused_before_work(tmp_path, monkeypatch, capsys, args, message):
    """One line 'fxbp: error: ...', exit status 2, nothing written."""
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = tmp_path / "out"
    args = [str(bad) if a == "BAD" else str(afile) if a == "FILE" else a for a in args]
    argv = ["sweep", "--dataset", "xor", "--epochs", "5", "--out", str(out), *args]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli_module.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith("fxbp: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "bad.toml"]


def test_unreachable_scheduler_is_refused_before_writing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setattr("fxbp.sw.sweep.SCHEDULER_TIMEOUT", "1s")
    with pytest.raises(SystemExit) as stop:
        cli_module.main(["sweep", "--dataset", "xor", "--epochs", "5", "--out", str(out),
                         "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith("fxbp: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert err.count("\n") == 1 and not out.exists()


def test_failed_configurations_are_reported_not_dropped(tmp_path, client):
    """A learning rate fx8's UQ0.8 cannot hold (eta = 0.001 rounds to zero) fails the fx8
    configurations with the reason; a worker that raises fails its task, uncached; both
    are in sweep.json and the table."""
    from fxbp.sw.sweep import build_record, write_outputs
    axes = _axes(lr=0.004, roundings=("nearest-even",), hidden=((2,),))
    plan = plan_sweep(axes)
    fx16, fx8 = plan
    assert fx16.failure is None and "rounds to zero" in fx8.failure
    assert fx8.train is None
    key, spec = fx16.train
    bad = (key, {**spec, "code": "0" * 16})
    fx16.train = bad
    run = run_sweep(plan, cache_dir=tmp_path / "cache", client=client, check_code=True)
    state, reason, _ = run["outcomes"][key]
    assert state == "failed" and reason.startswith("worker ") and "other fxbp code" in reason
    assert "\n" not in reason
    assert not list((tmp_path / "cache").glob("*.json"))
    record = write_outputs(build_record(axes, plan, run, cache_dir=tmp_path / "cache",
                                        seconds=0.0), tmp_path)
    rows = record["configurations"]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert rows[0]["reason"].startswith("training: worker ")
    assert "rounds to zero" in rows[1]["reason"]
    assert record["summary"]["failed"] == 2
    assert record["plots"] == [{"metric": "bits", "file": None,
                                "note": "no configuration finished"}]
    assert (tmp_path / "sweep.md").read_text().count("failed: ") == 2
    fx16.train = (key, spec)
    run = run_sweep(plan, cache_dir=tmp_path / "cache", client=client)
    assert run["outcomes"][key][0] == "done" and run["ran"] == 1


def test_cli_exit_status_1_when_a_configuration_fails(tmp_path, client):
    """Through --scheduler (the module's cluster, by address)."""
    out = tmp_path / "out"
    res = _invoke("sweep", "--dataset", "xor", "--precision", "fx16,fx8", "--hidden", "2",
                  "--lr", "0.004", "--epochs", "5", "--out", out, "--quiet", "--scheduler",
                  client.scheduler.address)
    assert res.exit_code == 1
    assert f"tasks run on scheduler {client.scheduler.address} (2 workers)" in res.output
    record = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in record["configurations"]] == ["done", "failed"]
    assert "rounds to zero" in record["configurations"][1]["reason"]
    assert "failed: learning rate" in res.output


def test_lanes_without_synth_do_not_multiply_runs(tmp_path, client):
    out = tmp_path / "out"
    res = CliRunner().invoke(cli_module.cli, ["sweep", "--dataset", "xor", "--hidden", "2",
                                        "--lanes", "4,8", "--epochs", "5", "--out", str(out),
                                        "--quiet", "--scheduler", client.scheduler.address],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "note: --lanes applies to --synth only" in res.output
    record = json.loads((out / "sweep.json").read_text())
    assert len(record["configurations"]) == 1 and record["axes"]["lanes"] is None
    assert record["configurations"][0]["lanes"] is None


def test_code_version_covers_what_training_imports():
    """Every fxbp.sw module a golden training run loads is in the code version: an
    import added to the training path without it would fail here."""
    from fxbp.sw import sweep as sweep_module
    code = ("import sys; from fxbp.sw.train import TrainConfig, Trainer; "
            "Trainer(TrainConfig(dataset='xor', epochs=2, hidden=(2,))).run(); "
            "print(' '.join(m for m in sys.modules if m.startswith('fxbp.sw.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert {m.removeprefix("fxbp.sw.") for m in loaded} <= set(sweep_module._TRAINING_MODULES)
    assert len(code_version()) == 16 and code_version() == code_version()


def test_progress_bar_counts_configurations():
    import io

    from rich.console import Console

    from fxbp.sw.sweep import SweepProgress
    buf = io.StringIO()
    bar = SweepProgress(Console(file=buf, width=120, force_terminal=False))
    bar.start(8, 2, 0, 3)
    bar.update(5, 1)
    bar.stop()
    last = buf.getvalue().strip().splitlines()[-1]
    assert "sweep" in last and "6/8" in last and "cached tasks 3, failed 1" in last


def test_pareto_front():
    pts = [(72, 90.0), (108, 95.0), (144, 95.0), (72, 80.0), (144, 97.0), (100, 89.0)]
    assert pareto_front(pts) == [0, 1, 4]
    assert pareto_front(pts, maximize_x=True) == [4]
    sps = [(1e5, 90.0), (2e5, 85.0), (3e5, 80.0), (2e5, 70.0)]
    assert pareto_front(sps, maximize_x=True) == [0, 1, 2]
    assert pareto_front([]) == []


def test_axes_refusals():
    with pytest.raises(FxbpError, match="unknown dataset"):
        SweepAxes(dataset="mnist")
    with pytest.raises(FxbpError, match="list of seeds is empty"):
        SweepAxes(dataset="xor", seeds=())


@pytest.mark.slow
@pytest.mark.synth
@pytest.mark.sim
def test_sweep_synth_pnr(tmp_path):
    """--synth --pnr on ECP5: LUT/FF/DSP/BRAM and Fmax per engine, cycles per sample equal
    to `fxbp train --backend rtl`'s counters, samples/s = Fmax / cycles, four plots."""
    out = tmp_path / "out"
    res = _invoke("sweep", "--dataset", "xor", "--precision", "fx16", "--rounding",
                  "nearest-even", "--hidden", "2", "--lanes", "1,2", "--epochs", 20,
                  "--synth", "--pnr", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    record = json.loads((out / "sweep.json").read_text())
    rows = record["configurations"]
    assert len(rows) == 2 and record["summary"]["tasks_run"] == 1 + 2
    for r in rows:
        hw = r["hardware"]
        assert hw["lut"] > 0 and hw["ff"] > 0 and hw["fmax_mhz"] > 0
        assert hw["fpga_samples_per_second"] == hw["fmax_mhz"] * 1e6 / hw["cycles_per_sample"]
        direct = tmp_path / f"rtl-{r['rounding']}-{r['lanes']}.json"
        res = _invoke("train", "--dataset", "xor", "--backend", "rtl", "--lanes", r["lanes"],
                      "--rounding", r["rounding"], "--hidden", 2, "--epochs", 1, "--quiet",
                      "--json", direct)
        assert res.exit_code == 0, res.output
        want = json.loads(direct.read_text())["hardware"]
        assert hw["cycles_per_sample"] == want["cycles_per_sample"]
        assert hw["gen_hash"] == want["engine"]["gen_hash"]
    assert [p["metric"] for p in record["plots"]] == ["bits", "lut", "dsp", "sps"]
    for p in record["plots"]:
        assert (out / p["file"]).read_bytes()[:8] == PNG_MAGIC
