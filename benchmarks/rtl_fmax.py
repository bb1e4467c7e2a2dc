"""Fmax and resources of every RTL unit after place and route (YoWASP yosys + nextpnr).

Each unit is wrapped so that every port is driven from a register and captured into one
(``fxbp.hw.synth.PnrWrapper``); Fmax is the worst over the seeds. Rounding-independent units
(mac, sigmoid: forward stages) run once per preset and fill both rounding columns. The cast
row is the gradient site (a 40/32/24-bit batch sum), whose rounding follows --rounding.
Writes the records as JSON (after every run, so a long sweep can be read while it runs) and
prints the Markdown table for docs/rtl.md.

    python benchmarks/rtl_fmax.py --json runs/rtl_fmax.json                  # full sweep
    python benchmarks/rtl_fmax.py --units mac cast --presets fx16 --seeds 1  # a quick look
    python benchmarks/rtl_fmax.py --table runs/rtl_fmax.json                 # table only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fxbp.hw.generate import build_unit
from fxbp.hw.synth import place_and_route
from fxbp.sw.profile import load_profile

UNITS = ["mac", "cast", "sigmoid", "sigmoid-derivative", "weight-update", "bias-update"]
ROUNDING_FREE = {"mac", "sigmoid"}
PARTS = [("ecp5", "25f"), ("ice40", "up5k")]
TARGET = {"ecp5": 125.0, "ice40": 40.0}


def sweep(units, presets, roundings, parts, seeds, out: Path | None) -> list[dict]:
    rows = []
    for preset in presets:
        for unit in units:
            for rounding in roundings:
                if unit in ROUNDING_FREE and rounding != roundings[0]:
                    continue
                profile = load_profile(preset).with_rounding(rounding)
                stage = "gradient" if unit == "cast" else None
                for family, device in parts:
                    t0 = time.perf_counter()
                    res = place_and_route(build_unit(unit, profile, stage), family, device,
                                          seeds=tuple(range(1, seeds + 1)))
                    res.pop("cells")
                    row = {"unit": unit, "preset": preset,
                           "rounding": "any" if unit in ROUNDING_FREE else rounding,
                           "seconds": round(time.perf_counter() - t0, 1), **res}
                    rows.append(row)
                    print(f"{preset} {unit:18s} {row['rounding']:12s} {family:5s} "
                          f"{res['fmax_worst_mhz']:7.1f} MHz  LUT {res['lut']:4d} FF {res['ff']:4d} "
                          f"DSP {res['dsp']} BRAM {res['bram']}  ({row['seconds']} s)",
                          file=sys.stderr, flush=True)
                    if out:
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_text(json.dumps({"seeds": seeds, "rows": rows}, indent=1))
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one line per unit x preset, Fmax (worst of seeds) for each rounding x part."""
    cols = [(r, f, d) for r in ("nearest-even", "stochastic") for f, d in PARTS]
    head = ["unit", "preset"] + [f"{'det.' if r == 'nearest-even' else 'stoch.'} "
                                 f"{'ECP5-25F' if f == 'ecp5' else 'UP5K'} MHz" for r, f, d in cols]
    head += ["ECP5 LUT/FF/DSP/BRAM", "UP5K LUT/FF/DSP/BRAM"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = []
    for r in rows:
        if (r["unit"], r["preset"]) not in keys:
            keys.append((r["unit"], r["preset"]))
    for unit, preset in keys:
        cells = [unit, preset]
        res = {}
        for r in rows:
            if r["unit"] == unit and r["preset"] == preset:
                for rnd in ("nearest-even", "stochastic"):
                    if r["rounding"] in (rnd, "any"):
                        res[(rnd, r["family"])] = r
        for rnd, fam, _ in cols:
            r = res.get((rnd, fam))
            if r is None:
                cells.append("-")
                continue
            mark = "" if r["fmax_worst_mhz"] >= TARGET[fam] else " **(below target)**"
            cells.append(f"{r['fmax_worst_mhz']:.1f}{mark}")
        for fam, _ in PARTS:
            parts = []
            for rnd in ("nearest-even", "stochastic"):
                r = res.get((rnd, fam))
                if r is not None:
                    text = f"{r['lut']}/{r['ff']}/{r['dsp']}/{r['bram']}"
                    if text not in parts:
                        parts.append(text)
            cells.append(" ; ".join(parts) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", nargs="+", default=UNITS, choices=UNITS)
    ap.add_argument("--presets", nargs="+", default=["fx16", "fx12", "fx8"])
    ap.add_argument("--roundings", nargs="+", default=["nearest-even", "stochastic"])
    ap.add_argument("--families", nargs="+", default=["ecp5", "ice40"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--table", type=Path, help="Print the table of an earlier --json and stop.")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())["rows"]))
        return 0
    parts = [(f, d) for f, d in PARTS if f in args.families]
    rows = sweep(args.units, args.presets, args.roundings, parts, args.seeds, args.json)
    print(table(rows))
    worst = [r for r in rows if r["fmax_worst_mhz"] < TARGET[r["family"]]]
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
