"""Speed of one golden training step against float32 NumPy and apytypes.

One run, ratios printed from that run (the targets in the foundation issue):
  golden step / float32 NumPy step   <= 3
  apytypes step / golden step        >= 2

The three steps train the same network (digits, 64-32-10, batch 64, fx16,
nearest-even) on the same batches. They are timed interleaved, in rounds, and
each figure is the median over rounds of the per-step mean, so that machine
noise hits all three alike. Before timing, the golden and apytypes steps are
checked to produce the same weights.

    python benchmarks/golden_step.py [--batch 64] [--rounds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from fxbp.sw.apytypes_ref import ApyMLP
from fxbp.sw.float_ref import FloatMLP
from fxbp.sw.golden import GoldenMLP
from fxbp.sw.train import TrainConfig, Trainer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--rounding", default="nearest-even")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    tr = Trainer(TrainConfig(dataset="digits", backend="golden", hidden=(args.hidden,),
                             batch=args.batch, lr=2.0, rounding=args.rounding))
    rt = tr.runtime
    gold: GoldenMLP = rt.model
    p = gold.profile
    w0 = [p.weight.fmt.to_real(w) for w in gold.weights]
    b0 = [p.bias.fmt.to_real(b) for b in gold.biases]
    f32 = FloatMLP(gold.sizes, w0, b0, dtype=np.float32)
    apy = ApyMLP(gold.sizes, p, gold.weights, gold.biases) if p.stage("weight").rounding.deterministic else None

    n_batches = 8
    ds = tr.dataset
    batches = []
    for k in range(n_batches):
        sl = slice(k * args.batch, (k + 1) * args.batch)
        xr, tq = rt.prepare(ds.x_train[sl], ds.t_train[sl])
        batches.append((xr, tq, ds.x_train[sl].astype(np.float32), ds.t_train[sl].astype(np.float32)))
    eta_f = tr.config.lr / args.batch

    # Correctness first: golden and apytypes agree bit for bit on these steps.
    if apy is not None:
        for xr, tq, _, _ in batches[:2]:
            gold.train_step(xr, tq, rt.eta)
            apy.train_step(xr, tq, rt.eta)
        same = all((a == c).all() and (b == d).all()
                   for (a, b), (c, d) in zip(gold.layers(), apy.layers()))
        if not same:
            print("golden and apytypes steps disagree: the comparison would be meaningless",
                  file=sys.stderr)
            return 1

    def time_steps(step, reps):
        t0 = time.perf_counter()
        for i in range(reps):
            step(batches[i % n_batches])
        return (time.perf_counter() - t0) / reps

    steps = {
        "float32": (lambda b: f32.train_step(b[2], b[3], eta_f), 200),
        "golden": (lambda b: gold.train_step(b[0], b[1], rt.eta), 100),
    }
    if apy is not None:
        steps["apytypes"] = (lambda b: apy.train_step(b[0], b[1], rt.eta), 10)
    for step, reps in steps.values():  # warm-up (compilation, caches)
        time_steps(step, max(2, reps // 10))
    samples = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, (step, reps) in steps.items():
            samples[name].append(time_steps(step, reps))
    med = {k: statistics.median(v) for k, v in samples.items()}

    print(f"digits {'-'.join(map(str, gold.sizes))}, batch {args.batch}, profile {p.name}, "
          f"rounding {args.rounding}; median of {args.rounds} interleaved rounds")
    for name, t in med.items():
        print(f"  {name:9s} {t * 1e6:9.1f} us/step   {args.batch / t:12,.0f} samples/s")
    ratio_f32 = med["golden"] / med["float32"]
    print(f"golden / float32 step time:   {ratio_f32:5.2f}  (target <= 3)")
    result = {"batch": args.batch, "sizes": list(gold.sizes), "rounding": args.rounding,
              "seconds_per_step": med, "golden_over_float32": ratio_f32}
    if "apytypes" in med:
        ratio_apy = med["apytypes"] / med["golden"]
        print(f"apytypes / golden step time:  {ratio_apy:5.2f}  (target >= 2)")
        result["apytypes_over_golden"] = ratio_apy
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
