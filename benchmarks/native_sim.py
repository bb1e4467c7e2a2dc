"""Native Verilator harness (sim/native.py): build time, cycles/s and Python overhead.

One run prints every figure:
  - build time of the shared library, cold (an empty cache) and cached, for the fx16
    weight-update unit (``fxbp gen weight-update``) and the bank of its 8 deterministic
    rounding x overflow configurations (the cocotb case ``update-16bit-designed``);
  - the bank on the designed 100,000-vector set under four traffic patterns, every output
    and event flag compared with the reference models (golden's code): bit-exact or not,
    and cycles/s inside the C++ loop, against the cocotb bench's figure for the same case
    (docs/rtl.md: 68,348-70,562 cycles/s);
  - the single fx16 unit on 1,000,000 random vectors, bit-exact and cycles/s, and bare
    clock cycles/s (``step``);
  - the share of the wall time spent outside the C++ loop (ctypes call, argument
    checks, output allocation; then also packing and unpacking the payload fields in
    NumPy) for batches of 16 to 65,536 items.

    python benchmarks/native_sim.py [--json out.json] [--keep-cache]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fxbp.hw.generate import build_unit, verilog
from fxbp.sim import models
from fxbp.sim.native import NativeLibrary, pack, payload_fields, unpack
from fxbp.sim.runner import CASES
from fxbp.sw.profile import load_profile

COCOTB = (68_348, 70_562)        # docs/rtl.md, update-16bit-designed, four patterns
PATTERNS = {"full-rate": (None, None), "idles": ([1, 0, 1, 1, 0], None),
            "back-pressure": (None, [1, 1, 0, 0, 1, 0, 1]), "both": ([0, 1, 1], [1, 0])}


def _build(text, top, cache):
    cold = NativeLibrary.build(text, top, cache_dir=cache, progress=False)
    t0 = time.perf_counter()
    hot = NativeLibrary.build(text, top, cache_dir=cache, progress=False)
    assert hot.cached and not cold.cached
    return hot, cold.build_seconds, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep-cache", action="store_true",
                    help="use the user cache (cold figures then only on its first run)")
    args = ap.parse_args(argv)
    cache = None if args.keep_cache else Path(tempfile.mkdtemp(prefix="fxbp-native-bench-"))
    fig = {"machine": platform.processor() or platform.machine(), "cocotb_cycles_per_s": COCOTB}
    ok = True
    try:
        # ---- the single unit, as `fxbp gen weight-update` builds it
        p = load_profile("fx16")
        unit = build_unit("weight-update", p)
        lib, cold, hot = _build(verilog(unit, "fxbp_bench_update"), "fxbp_bench_update", cache)
        fig["build_unit_cold_s"], fig["build_unit_cached_s"] = cold, hot
        fi, fo = payload_fields(unit.i.payload.shape()), payload_fields(unit.o.payload.shape())
        rng = np.random.default_rng(7)
        n = 1_000_000
        w = rng.integers(p.weight.fmt.min_raw, p.weight.fmt.max_raw + 1, n)
        g = rng.integers(p.gradient.fmt.min_raw, p.gradient.fmt.max_raw + 1, n)
        exp = models.weight_update_model(w, g, 1024, p.weight.fmt, p.gradient.fmt,
                                         p.learning_rate, p.weight.rounding, p.weight.overflow)
        m = lib.new()
        m.reset(2)
        m.set("eta", 1024)
        words = pack(fi, {"w": w, "g": g})
        res = m.stream(words, n)
        out = unpack(fo, res.outputs)
        exact = all(np.array_equal(out[k], exp[k]) for k in exp)
        ok &= exact
        fig["unit"] = {"vectors": n, "bit_exact": exact, "cycles": res.cycles,
                       "cycles_per_s": res.cycles_per_second}
        t0 = time.perf_counter()
        m.step(2_000_000)
        fig["unit_step_cycles_per_s"] = 2_000_000 / (time.perf_counter() - t0)

        # ---- overhead outside the C++ loop, by batch size
        over = []
        for batch in (16, 256, 4096, 65536):
            calls = max(4, 400_000 // batch)
            loop = call = conv = 0.0
            for c in range(calls):
                lo = (c * batch) % (n - batch)
                t0 = time.perf_counter()
                wb = pack(fi, {"w": w[lo:lo + batch], "g": g[lo:lo + batch]})
                t1 = time.perf_counter()
                r = m.stream(wb, batch)
                t2 = time.perf_counter()
                unpack(fo, r.outputs)
                t3 = time.perf_counter()
                loop += r.loop_seconds
                call += t2 - t1
                conv += (t1 - t0) + (t3 - t2)
            over.append({"batch": batch, "calls": calls,
                         "us_per_call_outside_loop": (call - loop) / calls * 1e6,
                         "call_overhead_share": (call - loop) / call,
                         "with_pack_unpack_share": (call - loop + conv) / (call + conv)})
        fig["overhead"] = over

        # ---- the 8-configuration bank on the designed set
        case = CASES["update-16bit-designed"]
        bank, statics, _, _, units, inputs, expected, n_out, _ = case.make()
        blib, cold, hot = _build(verilog(bank, "fxbp_bench_bank"), "fxbp_bench_bank", cache)
        fig["build_bank_cold_s"], fig["build_bank_cached_s"] = cold, hot
        bwords = pack(payload_fields(bank.in_layout), inputs)
        bfo = payload_fields(bank.o.payload.shape())
        fig["bank"] = {}
        for name, (valid, ready) in PATTERNS.items():
            bm = blib.new()
            bm.reset(2)
            for k, v in statics.items():
                bm.set(k, v)
            r = bm.stream(bwords, n_out, valid=valid, ready=ready)
            out = unpack(bfo, r.outputs)
            exact = r.produced == n_out and all(
                np.array_equal(out[f"{u}.{f}"], vals) for u, e in enumerate(expected)
                for f, vals in e.items())
            ok &= exact
            fig["bank"][name] = {"bit_exact": exact, "cycles": r.cycles,
                                 "cycles_per_s": r.cycles_per_second}
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)

    u = fig["unit"]
    print(f"native harness, {fig['machine']} ({len(units)} configurations in the bank)")
    print(f"build, fx16 weight-update unit: cold {fig['build_unit_cold_s']:.1f} s, "
          f"cached {fig['build_unit_cached_s'] * 1e3:.0f} ms")
    print(f"build, {len(units)}-configuration bank:    cold {fig['build_bank_cold_s']:.1f} s, "
          f"cached {fig['build_bank_cached_s'] * 1e3:.0f} ms")
    print(f"unit, {u['vectors']:,} random vectors: bit-exact {u['bit_exact']}, "
          f"{u['cycles_per_s']:,.0f} cycles/s in the stream loop; step(): "
          f"{fig['unit_step_cycles_per_s']:,.0f} cycles/s")
    print(f"bank, update-16bit-designed ({n_out:,} vectors x {len(units)} configurations; cocotb "
          f"{COCOTB[0]:,}-{COCOTB[1]:,} cycles/s):")
    for name, b in fig["bank"].items():
        print(f"  {name:14s} bit-exact {b['bit_exact']}  {b['cycles']:>8,} cycles  "
              f"{b['cycles_per_s']:>12,.0f} cycles/s  ({b['cycles_per_s'] / COCOTB[1]:.0f}x cocotb)")
    print("time outside the C++ loop (ctypes call + checks; then with NumPy pack/unpack):")
    for o in fig["overhead"]:
        print(f"  batch {o['batch']:>6,}: {o['us_per_call_outside_loop']:6.1f} us/call, "
              f"{100 * o['call_overhead_share']:5.1f}% of the call, "
              f"{100 * o['with_pack_unpack_share']:5.1f}% with pack/unpack")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1, default=float))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
