"""LUT, FF and DSP counts of every RTL unit, synthesised with YoWASP yosys for iCE40
(synth_ice40 -dsp) and ECP5 (synth_ecp5). Prints a table; --json writes the records.

    python benchmarks/rtl_resources.py [--precision fx16] [--rounding stochastic] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys

from fxbp.hw.generate import UNITS, build_unit, verilog
from fxbp.hw.synth import synthesize
from fxbp.sw.profile import load_profile


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="fx16")
    ap.add_argument("--rounding", default="nearest-even")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    profile = load_profile(args.precision).with_rounding(args.rounding)
    rows = []
    for unit in UNITS:
        top = f"fxbp_{unit.replace('-', '_')}"
        text = verilog(build_unit(unit, profile), top)
        for family in ("ice40", "ecp5"):
            res = synthesize(text, top, family)
            rows.append({"unit": unit, **res})
            print(f"{unit:20s} {family:6s} LUT {res['lut']:5d}  FF {res['ff']:5d}  "
                  f"DSP {res['dsp']:2d}  BRAM {res['bram']:2d}   {res['cells']}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"precision": args.precision, "rounding": args.rounding, "rows": rows}, fh,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
