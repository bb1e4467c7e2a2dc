"""``fxbp compare``: the record, digest agreement between golden and the RTL engine, the
HTML report (parsed, images embedded), a forced mismatch (exit 1, red), FPGA figures
from a recorded Fmax, and refusals of bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from fxbp.sw import cli as cli_module
from fxbp.sw import compare as compare_module
from fxbp.sw import engine_fmax
from fxbp.sw.compare import (agreement, compare, fpga_rows, timed_epochs,
                             training_macs_per_sample)
from fxbp.sw.torch_runtime import torch_missing
from fxbp.sw.train import TrainConfig, Trainer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _invoke(*args):
    return CliRunner().invoke(compare, [str(a) for a in args], catch_exceptions=False)


class _Report(HTMLParser):
    """What a browser would need: the viewport, images and their sources, classes."""

    def __init__(self):
        super().__init__()
        self.meta, self.images, self.links, self.mismatch_text = [], [], [], []
        self.tables = 0
        self._in_mismatch = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta":
            self.meta.append(a)
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag in ("a", "link", "script"):
            self.links.append(a.get("href") or a.get("src") or "")
        elif tag == "table":
            self.tables += 1
        if "mismatch" in (a.get("class") or "").split():
            self._in_mismatch += 1

    def handle_endtag(self, tag):
        if tag in ("tr", "p") and self._in_mismatch:
            self._in_mismatch -= 1

    def handle_data(self, data):
        if self._in_mismatch and data.strip():
            self.mismatch_text.append(data.strip())


def _parse(path: Path) -> _Report:
    p = _Report()
    p.feed(path.read_text())
    p.close()
    return p


@pytest.fixture
def no_fmax(tmp_path, monkeypatch):
    """An empty Fmax record: no engine has been placed and routed (the simulation
    models stay in their cache)."""
    monkeypatch.setattr(engine_fmax, "fmax_file", lambda: tmp_path / "engine-fmax.json")


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """golden, float32, rtl and torch on iris, 2 epochs, throughput at batches 1 and 16."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("compare")
    mp.setattr(engine_fmax, "fmax_file", lambda: base / "engine-fmax.json")
    out = base / "out"
    try:
        res = _invoke("--dataset", "iris", "--epochs", 2, "--backends", "golden,float32,rtl,torch",
                      "--targets", "ecp5-25f,up5k", "--batches", "1,16,500", "--out", out,
                      "--quiet")
    finally:
        mp.undo()
    return res, out


@pytest.mark.sim
def test_record_agreement_and_accuracy(iris_run):
    res, out = iris_run
    assert res.exit_code == 0, res.output
    assert "agreement: golden, rtl end with the same weights_digest" in res.output
    rec = json.loads((out / "compare.json").read_text())
    by = {b["backend"]: b for b in rec["backends"]}
    assert [b["backend"] for b in rec["backends"]] == ["golden", "float32", "rtl", "torch"]
    assert by["golden"]["ran"] and by["rtl"]["ran"] and by["float32"]["ran"]
    assert by["golden"]["weights_digest"] == by["rtl"]["weights_digest"]
    assert rec["agreement"] == {"status": "agree", "reference": "golden", "mismatched": [],
                                "digests": {"golden": by["golden"]["weights_digest"],
                                            "rtl": by["rtl"]["weights_digest"]}}
    # the same numbers as fxbp train's Trainer in one go (compare trains epoch by epoch)
    direct = Trainer(TrainConfig(dataset="iris", backend="golden", epochs=2)).run()
    assert by["golden"]["weights_digest"] == direct["weights_digest"]
    assert by["golden"]["history"] == direct["history"]
    assert by["golden"]["cast_events"] == direct["cast_events"]
    # cumulative cast events after each epoch, the last one the totals
    per_epoch = by["golden"]["cast_events_per_epoch"]
    assert len(per_epoch) == 2 and per_epoch[-1] == by["golden"]["cast_events"]
    assert per_epoch[0]["gradient"]["total"] * 2 == per_epoch[1]["gradient"]["total"]
    assert by["rtl"]["cast_events_per_epoch"] == per_epoch
    assert by["float32"]["cast_events_per_epoch"] == []
    # per layer (golden only; the engine counts per site): the last epoch's are fxbp
    # train's, and each site's layers add up to its total
    layers = by["golden"]["cast_events_by_layer_per_epoch"]
    assert len(layers) == 2 and layers[-1] == by["golden"]["cast_events_by_layer"]
    assert layers[-1] == direct["cast_events_by_layer"]
    for site, c in per_epoch[-1].items():
        if site != "input":
            assert sum(layers[-1][l][site]["underflow"] for l in ("1", "2")) == c["underflow"]
    assert by["rtl"]["cast_events_by_layer"] is None
    assert by["rtl"]["cast_events_by_layer_per_epoch"] == []
    if torch_missing() is None:
        # PyTorch float32 on the CPU: the float32 reference's problem, its own rounding
        assert by["torch"]["ran"] and by["torch"]["cast_events"] == {}
        assert by["torch"]["device"].startswith(f"CPU: {rec['machine']['cpu']}")
        assert "PyTorch" in by["torch"]["device"]
        assert len(by["torch"]["history"]) == 2
    else:
        assert by["torch"]["ran"] is False and "pip install 'fxbp[torch]'" in by["torch"]["reason"]
    # every figure names its device
    assert by["golden"]["device"].startswith("CPU: ")
    assert "Verilator" in by["rtl"]["device"]
    assert rec["machine"]["cpu"] in by["golden"]["device"]


@pytest.mark.sim
def test_throughput_and_fpga_rows(iris_run):
    res, out = iris_run
    rec = json.loads((out / "compare.json").read_text())
    rows = {(r["backend"], r["batch"]): r for r in rec["throughput"]}
    torch_rows = [label for label, _ in compare_module.torch_throughput_devices()] or ["torch"]
    assert set(rows) == {(b, n) for b in ("golden", "float32", *torch_rows) for n in (1, 16, 500)}
    for b in ("golden", "float32"):
        for n in (1, 16):
            assert rows[(b, n)]["samples_per_second"] > 0
            assert rows[(b, n)]["timed_samples"] == timed_epochs(120) * 120
            assert rows[(b, n)]["macs_per_second"] == pytest.approx(
                rows[(b, n)]["samples_per_second"] * training_macs_per_sample((4, 8, 3)))
            assert rows[(b, n)]["peak_macs_per_second"] is None
        # 500 > the 120 training samples: not run, with the reason
        assert rows[(b, 500)]["samples_per_second"] is None
        assert "exceeds the 120 training samples" in rows[(b, 500)]["reason"]
    if torch_missing() is None:
        for n in (1, 16):
            assert rows[("torch", n)]["samples_per_second"] > 0
            assert "PyTorch" in rows[("torch", n)]["device"]
        assert "exceeds the 120 training samples" in rows[("torch", 500)]["reason"]
    else:
        assert rows[("torch", 1)]["reason"].startswith("not run: torch is not installed")
    # the rtl runs no throughput row; FPGA rows carry its cycles but no invented Fmax
    assert not any(r["backend"] == "rtl" for r in rec["throughput"])
    rtl = next(b for b in rec["backends"] if b["backend"] == "rtl")
    for f in rec["fpga"]:
        assert f["cycles_per_sample"] == rtl["hardware"]["cycles_per_sample"] > 0
        assert f["fmax_mhz"] is None and f["compute_bound_samples_per_second"] is None
        assert any(n.startswith("Fmax not measured: run fxbp synth engine") and "--pnr" in n
                   for n in f["notes"])
    assert [f["target"] for f in rec["fpga"]] == ["ecp5-25f", "up5k"]


@pytest.mark.sim
def test_html_report_is_self_contained(iris_run):
    _, out = iris_run
    rec = json.loads((out / "compare.json").read_text())
    assert set(rec["plots"]) == {"accuracy", "throughput", "cast_events", "layer_events"}
    for name in rec["plots"].values():
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    page = _parse(out / "report.html")
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.meta
    assert len(page.images) == 4
    for src in page.images:
        head, data = src.split(",", 1)
        assert head == "data:image/png;base64"
        assert base64.b64decode(data).startswith(PNG_MAGIC)
    assert page.links == []                      # nothing to fetch
    assert page.tables >= 5
    assert "Per layer" in (out / "report.html").read_text()
    assert page.mismatch_text == []
    text = (out / "report.html").read_text()
    assert "http://" not in text and "https://" not in text
    assert ("torch is not installed" in text) == (torch_missing() is not None)


@pytest.mark.parametrize("load, busy", [(0.0, False), (0.49, False), (0.5, True), (1.47, True)])
def test_a_busy_machine_is_noted(monkeypatch, load, busy):
    """The load other processes put on the machine when compare starts goes into the
    record; from BUSY_LOAD_AVERAGE on, a note says the samples/s may read low."""
    monkeypatch.setattr(compare_module.os, "getloadavg", lambda: (load, 9.0, 9.0))
    monkeypatch.setattr(compare_module.os, "cpu_count", lambda: 2)
    got = compare_module.machine_load()
    assert got["cores"] == 2 and got["load_average_at_start"] == load
    assert (got["busy_note"] is not None) == busy
    if busy:
        assert f"1-minute load average {load:g} on 2 cores" in got["busy_note"]


@pytest.mark.sim
def test_busy_note_reaches_the_report(iris_run):
    """The report shows the record's busy note, and only when there is one."""
    _, out = iris_run
    rec = json.loads((out / "compare.json").read_text())
    assert set(rec["machine"]) >= {"cores", "load_average_at_start", "busy_note"}
    note = "this machine was busy <now>"
    busy = compare_module.render_html({**rec, "machine": {**rec["machine"], "busy_note": note}}, {})
    idle = compare_module.render_html({**rec, "machine": {**rec["machine"], "busy_note": None}}, {})
    assert '<p class="warn" id="busy">Note: this machine was busy &lt;now&gt;.</p>' in busy
    assert 'id="busy"' not in idle


@pytest.mark.sim
def test_forced_mismatch_is_red_and_exit_1(tmp_path, no_fmax, monkeypatch):
    from fxbp.sw.rtl import RtlRuntime
    monkeypatch.setattr(RtlRuntime, "digest", lambda self: "0" * 64)
    out = tmp_path / "out"
    res = _invoke("--dataset", "iris", "--epochs", 1, "--backends", "golden,rtl",
                  "--batches", "1", "--targets", "ecp5-25f", "--out", out, "--quiet")
    assert res.exit_code == 1
    assert "agreement FAILED: rtl differ from golden" in res.output
    rec = json.loads((out / "compare.json").read_text())
    assert rec["agreement"]["status"] == "mismatch" and rec["agreement"]["mismatched"] == ["rtl"]
    page = _parse(out / "report.html")
    assert any(t.startswith("Agreement FAILED") for t in page.mismatch_text)
    assert "rtl" in page.mismatch_text              # the rtl rows are red
    assert any("MISMATCH" in t for t in page.mismatch_text)
    assert ".mismatch{color:#c00" in (out / "report.html").read_text().replace("tr.mismatch td,", "")


def test_layer_underflow_series_is_per_epoch_shares():
    from fxbp.sw.compare import layer_underflow_series

    def counts(u1, t1, u2, t2):
        return {"1": {"gradient": {"overflow": 0, "underflow": u1, "total": t1}},
                "2": {"gradient": {"overflow": 0, "underflow": u2, "total": t2}}}
    # cumulative: epoch 1 has 30 of 100 and 0 of 10; epoch 2 adds 50 of 100 and 5 of 10
    entry = {"cast_events_by_layer_per_epoch": [counts(30, 100, 0, 10), counts(80, 200, 5, 20)]}
    assert layer_underflow_series(entry, "gradient") == {"1": [0.3, 0.5], "2": [0.0, 0.5]}
    entry = {"cast_events_by_layer_per_epoch": [counts(0, 0, 0, 0)]}
    assert layer_underflow_series(entry, "gradient") == {"1": [None], "2": [None]}


def test_fpga_rows_from_recorded_fmax(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_fmax, "fmax_file", lambda: tmp_path / "engine-fmax.json")
    (tmp_path / "engine-fmax.json").write_text(json.dumps(
        {"0badcafe-12345678": {"ecp5 25f": {"fmax_mhz": 100.0, "seeds": [1, 2],
                                            "date": "2026-01-01"}},
         # the same configuration, another netlist (an older RTL): never used
         "0badcafe-87654321": {"ecp5 85f": {"fmax_mhz": 90.0, "seeds": [1],
                                            "date": "2026-01-01"}}}))
    rtl = {"backend": "rtl", "ran": True, "network": [64, 32, 10], "rounding": "stochastic",
           "batch": 32, "hardware": {"engine": {"gen_hash": "0badcafe",
                                                "netlist_hash": "12345678"}, "lanes": 8,
                                     "cycles_per_sample": 500.0, "macs_per_sample": 5056}}
    board = {"backend": "board", "ran": True, "hardware": {
        "board": {"family": "ecp5", "device": "LFE5U-85F", "title": "ULX3S 85F"},
        "link": {"link_bound_samples_per_second": 1234.5, "simulated": True}}}
    settings = {"precision": "fx16", "loss": "mse"}
    rows = {r["target"]: r for r in fpga_rows(["ecp5-25f", "ecp5-85f", "up5k"], rtl, board,
                                              settings=settings)}
    r = rows["ecp5-25f"]
    assert r["fmax_mhz"] == 100.0 and r["dsp"] == 28
    assert r["compute_bound_samples_per_second"] == 100e6 / 500.0
    assert r["macs_per_second"] == 200_000 * 5056
    assert r["peak_macs_per_second"] == 28 * 100e6
    assert r["fraction_of_peak"] == pytest.approx(200_000 * 5056 / 2.8e9)
    assert "worst of seeds [1, 2]" in r["fmax_source"] and "netlist 12345678" in r["fmax_source"]
    assert r["link_bound_samples_per_second"] is None
    assert rows["ecp5-85f"]["link_bound_samples_per_second"] == 1234.5
    assert rows["ecp5-85f"]["fmax_mhz"] is None
    assert rows["up5k"]["dsp"] == 8 and rows["up5k"]["compute_bound_samples_per_second"] is None
    assert "--family ice40 --device up5k --pnr" in rows["up5k"]["notes"][0]
    # no RTL run: nothing computed, and it says how to get it
    none = fpga_rows(["ecp5-25f"], None, None, settings=settings)[0]
    assert none["cycles_per_sample"] is None
    assert none["notes"][0] == "cycles per sample not measured: add rtl to --backends"


def test_agreement_rules():
    def b(name, digest, ran=True):
        return {"backend": name, "ran": ran, "weights_digest": digest}
    assert agreement([b("golden", "a"), b("float32", "z")])["status"] == "nothing to compare"
    assert agreement([b("golden", "a"), b("rtl", "a"), b("opencl", "b", ran=False)]) == {
        "status": "agree", "reference": "golden", "digests": {"golden": "a", "rtl": "a"},
        "mismatched": []}
    bad = agreement([b("rtl", "a"), b("golden", "b"), b("board", "b")])
    assert bad["status"] == "mismatch" and bad["reference"] == "golden"
    assert bad["mismatched"] == ["rtl"]


def test_torch_absent_is_reported(monkeypatch):
    import importlib.util

    from fxbp.sw import torch_runtime
    real = importlib.util.find_spec
    monkeypatch.setattr(torch_runtime.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    entry = compare_module.run_backend("torch", TrainConfig(dataset="xor"), cpu="x")
    assert entry == {"backend": "torch", "ran": False,
                     "reason": "torch is not installed (the optional PyTorch float32 "
                               "baseline): pip install 'fxbp[torch]'"}
    assert compare_module.torch_throughput_devices() == []


@pytest.mark.parametrize("args, message", [
    (["--backends", "golden,cuda"], "--backends: unknown name 'cuda': choose from"),
    (["--backends", "golden,golden"], "--backends names 'golden' twice"),
    (["--backends", ""], "--backends is an empty list"),
    (["--targets", "ecp5-12f"], "--targets: unknown name 'ecp5-12f'"),
    (["--batches", "1,0"], "--batches: '0' is not a batch size"),
    (["--batches", "1,,64"], "--batches '1,,64' has an empty item"),
    (["--hidden", "8,16"], "--hidden names one network"),
    (["--hidden", "x"], "--hidden: 'x' is not a hidden width"),
    (["--backends", "golden,rtl", "--port", "sim://ulx3s-85f"],
     "--port applies to an FPGA board"),
    (["--precision", "fx99"], "fx99"),
    (["--lr", "1000"], "--lr"),
    (["--dataset", "mnist"], "Invalid value for '--dataset'"),
])
def test_refusals(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setitem(cli_module.cli.commands, "compare", compare)
    out = tmp_path / "out"
    argv = ["compare", "--dataset", "iris", "--out", str(out), *args]
    with pytest.raises(SystemExit) as exc:
        cli_module.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fxbp: error: ")
    assert message in err[0]
    assert not out.exists()


def test_out_is_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli_module.cli.commands, "compare", compare)
    f = tmp_path / "file"
    f.write_text("keep")
    with pytest.raises(SystemExit) as exc:
        cli_module.main(["compare", "--dataset", "xor", "--out", str(f)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is not a directory" in err
    assert f.read_text() == "keep"


def test_long_cells_become_notes_and_digests_wrap():
    """A reason longer than NOTE_CHARS leaves its cell for a numbered note under the
    table (one note per distinct text); a digest shows its first 16 digits, the whole
    one in its title."""
    from fxbp.sw.compare import NOTE_CHARS, _table_html
    reason = "not run: " + "x" * NOTE_CHARS
    digest = "ab" * 32
    text = _table_html(["backend", "why", "digest"],
                       [["opencl", reason, "-"], ["opencl-float32", reason, "-"],
                        ["golden", "CPU", digest]])
    assert text.count("see note 1") == 2 and "see note 2" not in text
    assert text.count(reason) == 1 and '<ol class="notes"><li>' + reason in text
    assert f'<td><code title="{digest}">{digest[:16]}…</code></td>' in text
    assert "<ol" not in _table_html(["a"], [["short"]])


def test_opencl_throughput_on_the_cpu_beside_a_gpu(tmp_path, no_fmax, monkeypatch):
    """With --device auto on a machine whose OpenCL has a GPU and a CPU, the OpenCL
    backends' throughput is measured on both: rows <name> (the accuracy run's device)
    and <name>-cpu, in the throughput table and the headline."""
    opencl = pytest.importorskip("fxbp.sw.opencl")
    if opencl.opencl_problem() is not None:
        pytest.skip(f"no usable OpenCL device: {opencl.opencl_problem()}")
    assert compare_module.opencl_throughput_devices("opencl", "gpu") == [("opencl", "gpu")]
    monkeypatch.setattr(opencl, "opencl_device_kinds", lambda: ["cpu", "gpu"])
    assert compare_module.opencl_throughput_devices("opencl", "auto") == [
        ("opencl", "auto"), ("opencl-cpu", "cpu")]
    out = tmp_path / "out"
    res = _invoke("--dataset", "iris", "--epochs", 1, "--backends", "golden,opencl",
                  "--targets", "ecp5-25f", "--batches", "8", "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "compare.json").read_text())
    rows = {r["backend"]: r for r in rec["throughput"]}
    assert {"opencl", "opencl-cpu"} <= set(rows)
    assert rows["opencl-cpu"]["samples_per_second"] > 0
    assert "CPU" in rows["opencl-cpu"]["device"]            # names the device it ran on
    cols, head, _ = compare_module.headline_rows(rec)
    assert [r[0] for r in head][:3] == ["golden", "opencl", "opencl-cpu"]
