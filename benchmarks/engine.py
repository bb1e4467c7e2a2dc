"""The training engine's figures (issue 9, section 4), from one run of the digits recipe
on ``--backend rtl``: digits 64-32-10, fx16, stochastic rounding, batch 32, P lanes.

Prints, from the engine's own counters:
  - MAC-lane utilisation over the training epoch, overall and per phase (the per-phase
    multiply-accumulates follow from the shapes; their sum is checked against the
    engine's busy-lane counter);
  - cycles per training sample against the bound 1.25 x (MACs per sample / P);
and, measured on this machine:
  - the wall time of one epoch (training and the two evaluations) and the simulated
    cycles/s;
  - the harness overhead: wall time outside the C++ clock loop / total;
  - the build time of the simulation model, from an empty cache.

    python benchmarks/engine.py [--epochs 1] [--lanes 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

from fxbp.sw.train import TrainConfig, Trainer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--warm-cache", action="store_true",
                    help="use the user's build cache instead of timing a cold build")
    args = ap.parse_args(argv)

    saved = os.environ.get("XDG_CACHE_HOME")
    tmp = None
    if not args.warm_cache:
        tmp = tempfile.TemporaryDirectory(prefix="fxbp-engine-bench-")
        os.environ["XDG_CACHE_HOME"] = tmp.name        # a cold build of the native model
    try:
        t0 = time.perf_counter()
        trainer = Trainer(TrainConfig(dataset="digits", backend="rtl", epochs=args.epochs,
                                      lanes=args.lanes))
        setup = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = trainer.run()
        run_wall = time.perf_counter() - t1
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved
        if tmp is not None:
            tmp.cleanup()
    hw = result["hardware"]
    n = trainer.sizes
    P = args.lanes
    samples = hw["samples_trained"]
    phase_macs = {
        "forward": sum(n[l] * n[l - 1] for l in range(1, len(n))),
        "backward": sum(n[l] * n[l + 1] for l in range(1, len(n) - 1)),
        "gradient": sum(n[l] * n[l - 1] for l in range(1, len(n))),
    }
    assert sum(phase_macs.values()) == hw["macs_per_sample"]
    assert hw["lane_busy_cycles"] == samples * hw["macs_per_sample"], "busy-lane counter"
    phases = hw["cycles_per_phase"]
    per_phase = {k: {"cycles": phases[k], "macs": phase_macs.get(k, 0) * samples,
                     "utilisation": phase_macs.get(k, 0) * samples / (P * phases[k])
                     if phases[k] else None} for k in phases}
    epoch_wall = run_wall / args.epochs
    figures = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "network": "-".join(map(str, n)), "lanes": P, "batch": result["batch"],
        "epochs": args.epochs, "samples_per_epoch": samples // args.epochs,
        "weights_digest": result["weights_digest"],
        "test_accuracy": result["final_test_accuracy"],
        "mac_lane_utilisation": hw["mac_lane_utilisation"],
        "per_phase": per_phase,
        "cycles_per_sample": hw["cycles_per_sample"],
        "cycles_per_sample_bound": hw["target_cycles_per_sample"],
        "cycles_per_sample_ratio_to_ideal": hw["cycles_per_sample"] / (hw["macs_per_sample"] / P),
        "epoch_wall_seconds": epoch_wall,
        "simulated_cycles_per_second": hw["simulated_cycles_per_second"],
        "simulated_cycles_per_epoch": hw["simulated_cycles"] / args.epochs,
        "harness_overhead": hw["harness_overhead"],
        "build_seconds": hw["build_seconds"], "build_cold": not args.warm_cache,
        "setup_seconds": setup,
    }
    print(f"engine benchmark: digits {figures['network']}, fx16 stochastic, batch "
          f"{figures['batch']}, P = {P}, {args.epochs} epoch(s) on {figures['machine']}")
    print(f"{'phase':10s} {'cycles':>12s} {'MACs':>12s} {'utilisation':>12s}")
    for k, v in per_phase.items():
        u = f"{100 * v['utilisation']:.2f} %" if v["utilisation"] is not None else "-"
        print(f"{k:10s} {v['cycles']:12,d} {v['macs']:12,d} {u:>12s}")
    print(f"{'total':10s} {hw['training_cycles']:12,d} {samples * hw['macs_per_sample']:12,d} "
          f"{100 * hw['mac_lane_utilisation']:11.2f} %   (target >= 80 %, stretch 90 %)")
    print(f"cycles per training sample: {hw['cycles_per_sample']:.1f} (bound "
          f"{hw['target_cycles_per_sample']:.1f} = 1.25 x {hw['macs_per_sample']} / {P}; "
          f"{figures['cycles_per_sample_ratio_to_ideal']:.3f} x ideal)")
    print(f"epoch wall time (training + 2 evaluations): {epoch_wall:.2f} s (target <= 5 s); "
          f"simulated {figures['simulated_cycles_per_epoch']:,.0f} cycles at "
          f"{hw['simulated_cycles_per_second'] / 1e6:.2f} M cycles/s")
    print(f"harness overhead (outside the C++ loop): {100 * hw['harness_overhead']:.1f} % "
          f"(target <= 10 %)")
    print(f"build of the simulation model ({'cold' if not args.warm_cache else 'cached'}): "
          f"{hw['build_seconds']:.1f} s (target <= 90 s)")
    print(f"test accuracy {100 * result['final_test_accuracy']:.2f} %, digest "
          f"{result['weights_digest'][:16]}...")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
