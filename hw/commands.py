"""The work behind ``fxbp gen`` and ``fxbp synth``; ``sw/cli.py`` only parses options."""

from __future__ import annotations

import math


from rich.markup import escape
from rich.table import Table

from ..sw.errors import FxbpError
from .generate import build_unit, verilog
from .registered_product import SynthTarget
from .synth import DEFAULT_DEVICE, DEVICES, place_and_route, refuse_conflicts, synthesize

__all__ = ["synth_command", "engine_config", "FAMILY_CHOICES", "DEVICE_CHOICES"]

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


def parse_net(text: str) -> tuple[int, ...]:
    """``"64-32-10"`` -> ``(64, 32, 10)``; FxbpError otherwise."""
    try:
        sizes = tuple(int(s) for s in str(text).split("-"))
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise FxbpError(f"--net {text!r} must be layer widths joined by '-', input first, e.g. "
                        f"64-32-10")
    return sizes


def engine_config(profile, *, net: str = "64-32-10", max_batch: int = 32, lanes: int = 8,
                  loss: str = "mse", lr_shift=None, shallow: bool = False,
                  event_counters: bool = True):
    """The :class:`EngineConfig` of ``fxbp gen/synth engine`` options; FxbpError when it
    cannot be generated."""
    from .engine import EngineConfig
    sizes = parse_net(net)
    try:
        return EngineConfig(profile=profile, sizes=sizes, batch=max_batch, lanes=lanes,
                            loss=loss, lr_shift=lr_shift, shallow=shallow,
                            event_counters=event_counters)
    except (TypeError, ValueError) as exc:
        raise FxbpError(f"cannot generate the engine: {exc}") from None


def build_component(unit: str, profile, *, stage=None, lr_shift=None, layer=None, engine=None,
                    shallow: bool = False):
    """The unit, or the engine for ``unit == "engine"`` (``engine``: engine_config options);
    ``shallow``: without the registers only a fast clock needs (:func:`build_unit`)."""
    if unit != "engine":
        if engine:
            raise FxbpError(f"--net, --max-batch, --lanes and --loss describe the engine, not "
                            f"the unit {unit}: drop them")
        return build_unit(unit, profile, stage, lr_shift=lr_shift, layer=layer, shallow=shallow)
    if stage is not None or layer is not None:
        raise FxbpError("--stage and --layer pick a unit's variant; the engine has every site")
    from .engine import Engine
    config = engine_config(profile, lr_shift=lr_shift, shallow=shallow, **(engine or {}))
    try:
        return Engine(config)
    except (TypeError, ValueError) as exc:
        raise FxbpError(f"cannot generate the engine: {exc}") from None


def synth_command(unit: str, profile, *, stage=None, family="both", device=None, pnr=False,
                  freq=None, seeds=1, lr_shift=None, layer=None, engine=None, shallow=False,
                  out, err) -> dict:
    """Synthesise (and with ``pnr`` place and route) one unit; print the table on ``out``.

    Returns the JSON-ready result. Raises ``FxbpError`` (after printing) when the design
    misses ``freq``.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise FxbpError(f"--seeds must be a positive integer, not {seeds!r}")
    if freq is not None and not (freq > 0 and math.isfinite(freq)):
        raise FxbpError(f"--freq must be a positive number of MHz, not {freq!r}")
    if (freq is not None or seeds != 1) and not pnr:
        raise FxbpError("--freq and --seeds apply to place and route: add --pnr")
    parts = _families(family, device)
    component = build_component(unit, profile, stage=stage, lr_shift=lr_shift, layer=layer,
                                engine=engine, shallow=shallow)
    rows = []
    if not pnr:
        top = f"fxbp_{unit.replace('-', '_')}"
        for fam, _ in parts:
            with err.status(f"synthesising {escape(unit)} for {fam} (yosys)"):
                rows.append(synthesize(verilog(component, top, platform=SynthTarget(fam)), top, fam))
        t = Table(title=escape(f"{unit}, profile {profile.name}"))
        for col in ("family", "LUT", "FF", "DSP", "BRAM", "cells"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["family"], str(r["lut"]), str(r["ff"]), str(r["dsp"]), str(r["bram"]),
                      escape(", ".join(f"{k} {v}" for k, v in r["cells"].items())))
        out.print(t)
        for r in rows:
            refuse_conflicts(r["conflicts"], f"{unit} for {r['family']}")
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
    if unit == "engine":
        from ..sw.engine_fmax import netlist_hash, record_fmax
        result["engine"] = component.config.describe()
        result["engine"]["gen_hash"] = f"{component.config.gen_hash:08x}"
        result["engine"]["netlist_hash"] = netlist_hash(component.config)
        for r in rows:
            if r["fmax_worst_mhz"] is not None:
                record_fmax(component.config, r["family"], r["device"], r["fmax_worst_mhz"],
                            r["seeds"])
    missed = [r for r in rows if freq is not None and not r["meets_freq"]]
    if missed:
        r = missed[0]
        result["error"] = (f"{unit} reaches {r['fmax_worst_mhz']} MHz on {r['family']} "
                           f"{r['device']}, below --freq {freq:g}")
    return result
