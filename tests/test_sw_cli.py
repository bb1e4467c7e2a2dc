"""The fxbp command as a user runs it, bad input included."""

import json
import os
import subprocess
import sys

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


def test_info_format_profile(capsys):
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
        "accumulator too small": (d + ["--batch", "4096"], "accumulator"),
    }




@pytest.mark.parametrize("case", ["format string", "zero width", "format command", "negative hidden",
                                  "zero epochs", "lr rounds to zero", "nan in data", "out of range",
                                  "mismatched shapes csv", "mismatched shapes npz", "unknown dataset",
                                  "unknown backend", "unknown preset", "unknown rounding",
                                  "missing file", "unreadable npz", "missing profile",
                                  "missing checkpoint", "json under a file", "plot suffix",
                                  "no data", "accumulator too small"])
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


def test_info_names_the_fix_for_a_missing_package(monkeypatch, capsys):
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
