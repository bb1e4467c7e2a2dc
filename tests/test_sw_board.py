"""``--backend board`` over ``--port sim://BOARD``: the board's own top level (engine and
UART bridge) in the native harness, its UART at the bit level at the board's baud rate,
behind a pty that the host opens with pyserial; and ``--backend auto``.

Every training here is compared with the golden model's weights digest for the same run:
exact equality, no tolerance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("serial")
pytest.importorskip("amaranth_boards")

pytestmark = pytest.mark.sim


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "fxbp.sw.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_cli_module():
    return _run


@pytest.fixture
def run_cli():
    return _run


def _digest(run_cli, tmp_path, name, *args):
    out = tmp_path / f"{name}.json"
    r = run_cli("train", *args, "--quiet", "--json", str(out))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def golden_iris(run_cli_module, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "iris.json"
    r = run_cli_module("train", "--dataset", "iris", "--epochs", "2", "--quiet", "--json", str(out))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


#: The CI runs clock the engines at 24 MHz, where 3 Mbaud is exactly 8 cycles a bit (the
#: targets' own clocks give 33.3 and 10: four and 1.25 times the simulated cycles for the
#: same bytes). The logic is the targets' own; only the divisor differs.
CI = "clock_mhz=24"
ECP5, ICE40 = "ulx3s-85f", "icebreaker"


@pytest.mark.parametrize("board", [ECP5, ICE40])
def test_iris_over_the_simulated_link_is_bit_exact(run_cli, tmp_path, golden_iris, board):
    """An ECP5 target (P = 8, the training set resident in the dataset buffer) and the
    iCE40 target (P = 1, batches streamed, built here with its event counters): golden's
    digest and cast events."""
    rec = _digest(run_cli, tmp_path, board, "--dataset", "iris", "--epochs", "2",
                  "--backend", "board", "--port", f"sim://{board}?{CI}", "--event-counters")
    assert rec["weights_digest"] == golden_iris["weights_digest"]
    assert rec["cast_events"] == golden_iris["cast_events"]
    link = rec["hardware"]["link"]
    assert link["simulated"] and link["retries"] == 0 and link["line"]["framing_errors"] == 0
    assert link["bytes_out"] == link["line"]["to_board"]
    assert link["bytes_in"] == link["line"]["to_host"]
    assert rec["hardware"]["board"]["board"] == board
    assert link["link_bound_samples_per_second"] > 0
    # the compute bound: the engine's own cycles at the target's clock
    hw = rec["hardware"]
    assert hw["fpga_samples_per_second"] == pytest.approx(hw["clock_mhz"] * 1e6
                                                          / hw["cycles_per_sample"])


@pytest.mark.parametrize("board, run", [
    (ECP5, ()),
    # The iCEBreaker's own engine: batch 8 at most, nearest-even, so shallow units; no
    # event counters.
    (ICE40, ("--rounding", "nearest-even", "--batch", "8"))])
def test_digits_over_the_simulated_link_is_bit_exact(run_cli, tmp_path, board, run):
    """The demo's digits run (64-32-10, fx16 stochastic, batch 32; on the iCEBreaker
    nearest-even, batch 8), one epoch, the whole training and test sets over the link:
    golden's digest and events (none from the iCEBreaker's engine, which counts none)."""
    gold = _digest(run_cli, tmp_path, "golden-digits", "--dataset", "digits", "--epochs", "1",
                   *run)
    rec = _digest(run_cli, tmp_path, board, "--dataset", "digits", "--epochs", "1", *run,
                  "--backend", "board", "--port", f"sim://{board}?{CI}")
    assert rec["weights_digest"] == gold["weights_digest"]
    assert rec["cast_events"] == ({} if board == ICE40 else gold["cast_events"])
    assert rec["hardware"]["link"]["retries"] == 0
    engine = rec["hardware"]["engine"]
    assert engine.get("shallow", False) is (board == ICE40)
    assert engine.get("event_counters", True) is (board != ICE40)
    assert rec["hardware"]["samples_trained"] == 1438


def test_line_faults_are_retried_and_change_nothing(run_cli, tmp_path, golden_iris):
    """Flipped bits, dropped bytes, duplicated frames and stalls past the bridge's idle
    time-out, in both directions: every one is caught (CRC, length, sequence number,
    time-out) and retried; the digest is golden's."""
    url = (f"sim://{ECP5}?{CI}&flip=0.0002&drop=0.0002&dup=0.1&stall=0.1"
           f"&stall_cycles=1100000&seed=5")
    rec = _digest(run_cli, tmp_path, "faults", "--dataset", "iris", "--epochs", "2",
                  "--backend", "board", "--port", url)
    assert rec["weights_digest"] == golden_iris["weights_digest"]
    assert rec["cast_events"] == golden_iris["cast_events"]
    line = rec["hardware"]["link"]["line"]
    assert line["flipped"] + line["dropped"] + line["duplicated"] + line["stalled"] > 0
    assert rec["hardware"]["link"]["retries"] > 0


def test_a_persistent_fault_is_one_clear_error_and_writes_nothing(run_cli, tmp_path):
    out = tmp_path / "r.json"
    r = run_cli("train", "--dataset", "iris", "--epochs", "1", "--quiet", "--json", str(out),
                "--backend", "board", "--port", f"sim://{ECP5}?{CI}&flip=1&retries=2")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("fxbp: error: host link: frame 0 (INFO) failed 3 times")
    assert "Traceback" not in r.stderr and not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--backend", "board"], "--backend board needs --port"),
    (["--backend", "board", "--port", "/dev/ttyUSB9"], "give --board NAME"),
    (["--backend", "board", "--port", "sim://nosuch"], "unknown board 'nosuch'"),
    (["--backend", "board", "--port", "sim://ulx3s-25f?flop=1"], "unknown sim:// option 'flop'"),
    (["--backend", "board", "--port", "sim://ulx3s-25f?flip=x"], "flip='x' is not a number"),
    (["--backend", "board", "--port", "sim://ulx3s-25f?baud=7"], "baud 7 is outside 300..3,000,000"),
    (["--backend", "board", "--port", "sim://ulx3s-25f", "--baud", "12000000"],
     "baud 12000000 is outside 300..3,000,000"),
    (["--backend", "board", "--port", "sim://ulx3s-25f", "--board", "icebreaker"],
     "name different boards"),
    (["--backend", "board", "--port", "sim://ulx3s-25f", "--hidden", "40"],
     "does not fit the ulx3s-25f engine (built for 64-32-10)"),
    (["--backend", "golden", "--port", "sim://ulx3s-25f"], "--port applies to an FPGA board"),
    (["--backend", "rtl", "--baud", "115200"], "--baud applies to an FPGA board"),
    (["--backend", "board", "--port", "sim://ulx3s-25f", "--verify-every-step"],
     "--verify-every-step applies to the RTL engine: add --backend rtl"),
    (["--backend", "board", "--port", "/dev/nonexistent-fxbp", "--board", "ulx3s-25f"],
     "cannot open the serial port /dev/nonexistent-fxbp"),
])
def test_board_options_are_checked_before_work(run_cli, tmp_path, args, message):
    out = tmp_path / "r.json"
    r = run_cli("train", "--dataset", "iris", "--epochs", "1", "--quiet", "--json", str(out),
                *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and not out.exists()


def test_auto_says_what_ran_and_why_the_others_did_not(run_cli, tmp_path, golden_iris):
    rec = _digest(run_cli, tmp_path, "auto", "--dataset", "iris", "--epochs", "2",
                  "--backend", "auto")
    sel = rec["backend_selection"]
    assert [(s["backend"], s["device"]) for s in sel][:1] == [("board", None)]
    assert sel[0]["ran"] is False and "no --port given" in sel[0]["reason"]
    assert sum(s["ran"] for s in sel) == 1 and sel[-1]["ran"]
    assert all(s["reason"] for s in sel)
    assert rec["backend"] == sel[-1]["backend"]
    if rec["backend"] in ("golden", "opencl"):
        assert rec["weights_digest"] == golden_iris["weights_digest"]


def test_auto_takes_a_board_on_the_given_port(run_cli, tmp_path, golden_iris):
    rec = _digest(run_cli, tmp_path, "auto-board", "--dataset", "iris", "--epochs", "2",
                  "--backend", "auto", "--port", f"sim://{ECP5}?{CI}")
    assert rec["backend"] == "board" and rec["backend_selection"][0]["ran"]
    assert len(rec["backend_selection"]) == 1
    assert rec["weights_digest"] == golden_iris["weights_digest"]
