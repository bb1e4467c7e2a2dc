"""End-to-end training speed as the result record reports it: golden against float32.

One run, the ratio printed from that run (issue "Trust on every input", section 5):
  float32 samples/s / golden samples/s   <= 3   (digits recipe at --batch 64)

Each round trains the full digits recipe (30 epochs, stochastic rounding on golden)
once per backend, interleaved, through ``Trainer.run`` — the same code and timer as
``fxbp train`` — and takes ``samples_per_second`` and ``compile_seconds`` from the
record. Figures are medians over rounds, so machine noise hits both alike.

    python benchmarks/end_to_end.py [--batch 64] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

from fxbp.sw.train import TrainConfig, Trainer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    backends = ("float32", "golden")
    sps = {b: [] for b in backends}
    compile_s = {b: [] for b in backends}
    digests = {b: set() for b in backends}
    for r in range(args.rounds):
        for b in backends:
            res = Trainer(TrainConfig(dataset=args.dataset, backend=b, batch=args.batch)).run()
            sps[b].append(res["samples_per_second"])
            compile_s[b].append(res["compile_seconds"])
            digests[b].add(res["weights_digest"])
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{b} {sps[b][-1]:,.0f} samples/s" for b in backends), flush=True)
    assert all(len(d) == 1 for d in digests.values()), "a backend gave different weights"
    med = {b: statistics.median(v) for b, v in sps.items()}
    ratio = med["float32"] / med["golden"]
    print(f"\n{args.dataset} recipe, batch {args.batch}, median of {args.rounds} rounds:")
    for b in backends:
        print(f"  {b:8s} {med[b]:>12,.0f} samples/s   compile {max(compile_s[b]):.3f} s (excluded)")
    print(f"  float32 / golden = {ratio:.2f}  (target <= 3)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"samples_per_second": med, "ratio_float32_over_golden": ratio,
                       "compile_seconds": compile_s, "batch": args.batch,
                       "dataset": args.dataset}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
