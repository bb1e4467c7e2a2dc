"""Packaging: a clean, non-editable install imports the one namespace from outside the checkout."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (whl,) = out.glob("fxbp-*.whl")
    return whl


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for must in ("fxbp/sw/__init__.py", "fxbp/sw/golden.py", "fxbp/sw/presets/fx16.toml",
                 "fxbp/sw/kernels/fixed_train.cl", "fxbp/sw/kernels/float_train.cl",
                 "fxbp/hw/__init__.py", "fxbp/sim/__init__.py", "fxbp/boards/__init__.py"):
        assert must in names
    assert not any(n.startswith(("sw/", "hw/", "tests/", "fxbp/__init__.py")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fxbp = fxbp.sw.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_non_editable_install_imports(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    code = ("import fxbp.sw, fxbp.hw, fxbp.sim, fxbp.boards, fxbp.sw.cli;"
            "from fxbp.sw.profile import load_profile;"
            "print(fxbp.sw.__file__); print(load_profile('fx8').name)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
    path, name = proc.stdout.split()
    assert Path(path).is_relative_to(target) and name == "fx8"
