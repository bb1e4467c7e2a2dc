"""Smoke tests of the runnable examples and benchmark scripts (no timing asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(path, *args):
    return subprocess.run([sys.executable, str(ROOT / path), *args], capture_output=True,
                          text=True, check=True, cwd=ROOT).stdout


def test_api_example():
    out = run_script("examples/api_example.py", "--epochs", "1")
    assert "test accuracy" in out and "weights digest" in out


def test_golden_step_benchmark(tmp_path):
    out = run_script("benchmarks/golden_step.py", "--rounds", "1", "--json", str(tmp_path / "b.json"))
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["golden_over_float32"] > 0 and res["apytypes_over_golden"] > 0
    assert "golden / float32 step time" in out


def test_precision_table_script(tmp_path):
    out = run_script("benchmarks/precision_table.py", "--dataset", "iris", "--hidden", "8",
                     "--epochs", "2", "--rows", "3", "--json", str(tmp_path / "t.json"),
                     "--plot", str(tmp_path / "t.png"))
    rows = json.loads((tmp_path / "t.json").read_text())
    assert [r["backend"] for r in rows] == ["float32", "float64", "golden"]
    assert "stalled updates" in out and (tmp_path / "t.png").exists()


def test_opencl_benchmark(tmp_path):
    import pytest
    opencl = pytest.importorskip("fxbp.sw.opencl")
    if opencl.opencl_problem() is not None:
        pytest.skip(f"no usable OpenCL device: {opencl.opencl_problem()}")
    out = run_script("benchmarks/opencl_step.py", "--batches", "16", "--rounds", "1",
                     "--json", str(tmp_path / "o.json"))
    res = json.loads((tmp_path / "o.json").read_text())
    assert res["rows"][0]["int_over_float32"] > 0 and res["device"]
    assert "int/golden" in out
    # a network of its own on synthetic data, batch 1 included, golden left out
    out = run_script("benchmarks/opencl_step.py", "--net", "12-20-3", "--batches", "1", "20",
                     "--rounds", "1", "--no-golden", "--json", str(tmp_path / "s.json"))
    res = json.loads((tmp_path / "s.json").read_text())
    assert [r["batch"] for r in res["rows"]] == [1, 20]
    assert res["macs_per_sample"] == 2 * (12 * 20 + 20 * 3) + 20 * 3
    assert "golden" not in res["rows"][0]["samples_per_second"]
    assert "12-20-3 on synthetic data" in out
