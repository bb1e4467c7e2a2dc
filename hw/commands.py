"""The work behind ``fxbp gen`` and ``fxbp synth``; ``sw/cli.py`` only parses options."""

from __future__ import annotations

import math

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..sw.errors import FxbpError
from .generate import build_unit, verilog
from .synth import DEFAULT_DEVICE, DEVICES, place_and_route, synthesize

__all__ = ["synth_command", "FAMILY_CHOICES", "DEVICE_CHOICES"]

FAMILY_CHOICES = ["ice40", "ecp5", "both"]
DEVICE_CHOICES = sorted({d for _, d in DEVICES})


def _families(family: str, device: str | None) -> list[tuple[str, str]]:
    fams = ["ice40", "ecp5"] if family == "both" else [family]
    if device is not None:
        if family == "both":
            raise FxbpError(f"--device {device} names one part: give --family ice40 or ecp5 too")
        if (family, device) not in DEVICES:
            choices = ", ".join(d for f, d in DEVICES if f == family)
            raise FxbpError(f"device {device!r} is not an {family} part: choose {choices}")
    return [(f, device or DEFAULT_DEVICE[f]) for f in fams]


def synth_command(unit: str, profile, *, stage=None, family="both", device=None, pnr=False,
                  freq=None, seeds=1, lr_shift=None, layer=None, out, err) -> dict:
    """Synthesise (and with ``pnr`` place and route) one unit; print the table on ``out``.

    Returns the JSON-ready result. Raises ``FxbpError`` (after printing) when the design
    misses ``freq``.
    """
    if unit == "engine":
        raise FxbpError("the training engine is not built yet (issue 9): synthesise a unit "
                        "(fxbp gen --list names them)")
    if not isinstance(seeds, int) or seeds < 1:
        raise FxbpError(f"--seeds must be a positive integer, not {seeds!r}")
    if freq is not None and not (freq > 0 and math.isfinite(freq)):
        raise FxbpError(f"--freq must be a positive number of MHz, not {freq!r}")
    if (freq is not None or seeds != 1) and not pnr:
        raise FxbpError("--freq and --seeds apply to place and route: add --pnr")
    parts = _families(family, device)
    component = build_unit(unit, profile, stage, lr_shift=lr_shift, layer=layer)
    rows = []
    if not pnr:
        top = f"fxbp_{unit.replace('-', '_')}"
        text = verilog(component, top)
        for fam, _ in parts:
            with err.status(f"synthesising {escape(unit)} for {fam} (yosys)"):
                rows.append(synthesize(text, top, fam))
        t = Table(title=escape(f"{unit}, profile {profile.name}"))
        for col in ("family", "LUT", "FF", "DSP", "BRAM", "cells"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["family"], str(r["lut"]), str(r["ff"]), str(r["dsp"]), str(r["bram"]),
                      escape(", ".join(f"{k} {v}" for k, v in r["cells"].items())))
        out.print(t)
        return {"unit": unit, "stage": stage, "precision": profile.name, "results": rows}
    for fam, dev in parts:
        with err.status(f"{escape(unit)}: {fam} {dev}") as status:
            def progress(text, status=status, fam=fam, dev=dev):
                status.update(f"{escape(unit)} on {fam} {dev}: {escape(text)}")
            rows.append(place_and_route(component, fam, dev, seeds=tuple(range(1, seeds + 1)),
                                        freq=freq, progress=progress))
    t = Table(title=escape(f"{unit}, profile {profile.name}, place and route "
                           f"(worst of {seeds} seed{'s' if seeds > 1 else ''})"))
    for col in ("part", "LUT", "FF", "DSP", "BRAM", "Fmax MHz", "critical path"):
        t.add_column(col)
    for r in rows:
        fmax = r["fmax_worst_mhz"]
        verdict = ""
        if freq is not None:
            verdict = " [green]pass[/]" if r["meets_freq"] else f" [red]fails {freq:g}[/]"
        cp = r["critical_path"] or {}
        path = (f"{cp['from']} -> {cp['to']}: {cp['total_ns']} ns ({cp['logic_ns']} logic, "
                f"{cp['routing_ns']} routing, {cp['logic_levels']} levels)") if cp else "-"
        t.add_row(f"{r['family']} {r['device']}", f"{r['lut']} ({r['lut_pct']:g}%)",
                  f"{r['ff']} ({r['ff_pct']:g}%)", f"{r['dsp']} ({r['dsp_pct']:g}%)",
                  f"{r['bram']} ({r['bram_pct']:g}%)",
                  (f"{fmax:.1f}" if fmax is not None else "-") + verdict, escape(path))
    out.print(t)
    for r in rows:
        if r["dsp_registers"] and not r["dsp_fully_registered"]:
            out.print(f"note: {r['family']}: a hard multiplier runs without its internal "
                      f"registers; it is timed as combinational logic"
                      + (" (nextpnr-ice40 does not time it at all)" if r["family"] == "ice40" else ""))
    result = {"unit": unit, "stage": stage, "precision": profile.name, "results": rows}
    missed = [r for r in rows if freq is not None and not r["meets_freq"]]
    if missed:
        r = missed[0]
        result["error"] = (f"{unit} reaches {r['fmax_worst_mhz']} MHz on {r['family']} "
                           f"{r['device']}, below --freq {freq:g}")
    return result
