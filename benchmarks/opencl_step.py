"""Training throughput of golden (NumPy), OpenCL integer and OpenCL float32 kernels.

One run prints, per batch size, samples/s of each backend on whatever OpenCL
device is selected, and the ratios the GPU-path issue asks for:
  opencl integer / opencl float32 throughput   (goal >= 0.5)
  opencl integer / golden throughput           (goal >= 1.5 at batch >= 256 on PoCL)

Backends are timed interleaved in rounds on the same batches (digits, 64-32-10,
fx16, nearest-even unless --rounding), the median round is reported, and the
integer kernels are first checked to give the golden model's digest.

    python benchmarks/opencl_step.py [--device auto|gpu|cpu] [--batches 64 256]
        [--hidden 32] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from fxbp.sw.opencl import OpenCLFloatRuntime, OpenCLRuntime
from fxbp.sw.train import TrainConfig, Trainer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rounding", default="nearest-even")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    rows = []
    device_name = None
    for batch in args.batches:
        tr = Trainer(TrainConfig(dataset="digits", backend="golden", hidden=tuple(args.hidden),
                                 batch=batch, lr=0.5 * batch / 32, rounding=args.rounding))
        g, p, ds = tr.runtime, tr.profile, tr.dataset
        w0 = [p.weight.fmt.to_real(w) for w in g.model.weights]
        b0 = [p.bias.fmt.to_real(b) for b in g.model.biases]
        kw = dict(loss="mse", seed=0, lr=tr.config.lr, batch=batch, device=args.device)
        oi = OpenCLRuntime(tr.sizes, p, w0, b0, **kw)
        of = OpenCLFloatRuntime(tr.sizes, p, w0, b0, **kw)
        device_name = oi.describe()["device"]
        reps = max(1, len(ds.x_train) // batch)
        idx = [np.arange(k * batch, (k + 1) * batch) % len(ds.x_train) for k in range(reps)]
        data = {name: rt.prepare(ds.x_train, ds.t_train) for name, rt in
                (("golden", g), ("opencl", oi), ("opencl-float32", of))}
        first = np.concatenate(idx[:2])         # same steps on both: digests must agree
        g.train_epoch(*data["golden"], first, batch)
        oi.train_epoch(*data["opencl"], first, batch)
        if g.digest() != oi.digest():
            print("opencl integer kernels disagree with the golden model", file=sys.stderr)
            return 1

        order = np.concatenate(idx)

        def epoch(rt, name):
            x, t = data[name]
            t0 = time.perf_counter()
            rt.train_epoch(x, t, order, batch)
            rt.synchronize()
            return len(order) / (time.perf_counter() - t0)

        runs = {"golden": g, "opencl": oi, "opencl-float32": of}
        for name, rt in runs.items():
            epoch(rt, name)                     # warm-up
        sps = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, rt in runs.items():
                sps[name].append(epoch(rt, name))
        med = {k: statistics.median(v) for k, v in sps.items()}
        rows.append({"batch": batch, "samples_per_second": med,
                     "int_over_float32": med["opencl"] / med["opencl-float32"],
                     "int_over_golden": med["opencl"] / med["golden"]})

    sizes = "-".join(map(str, (64, *args.hidden, 10)))
    print(f"digits {sizes}, fx16 {args.rounding}; OpenCL device: {device_name}; "
          f"median of {args.rounds} rounds")
    print(f"{'batch':>6} {'golden':>12} {'opencl int':>12} {'opencl f32':>12} "
          f"{'int/f32':>8} {'int/golden':>10}   (samples/s)")
    for r in rows:
        s = r["samples_per_second"]
        print(f"{r['batch']:>6} {s['golden']:>12,.0f} {s['opencl']:>12,.0f} "
              f"{s['opencl-float32']:>12,.0f} {r['int_over_float32']:>8.2f} "
              f"{r['int_over_golden']:>10.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device_name, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
