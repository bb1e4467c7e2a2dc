"""Training throughput of golden (NumPy), OpenCL integer and OpenCL float32 kernels,
and PyTorch float32 when torch is installed.

One run prints, per batch size, samples/s of each backend on whatever OpenCL
device is selected, and the ratios the GPU-path issue asks for:
  opencl integer / opencl float32 throughput   (goal >= 0.5)
  opencl integer / golden throughput
  opencl integer MAC/s against --peak-gmacs (a GPU's INT32 peak, when given)

Backends are timed interleaved in rounds on the same batches (digits, 64-32-10,
fx16, nearest-even unless --rounding; --net 784-256-10 trains that network on
synthetic data), the median round is reported, and the integer kernels are first
checked to give the golden model's digest.

    python benchmarks/opencl_step.py [--device auto|gpu|cpu] [--batches 1 64 1024 8192]
        [--net 64-32-10] [--precision fx16|FILE.toml] [--rounds 5] [--no-golden] [--no-torch]
        [--kernels auto|tiled|straight]
        [--peak-gmacs G] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fxbp.sw.opencl import OpenCLFloatRuntime, OpenCLRuntime
from fxbp.sw.torch_runtime import TorchRuntime, torch_missing
from fxbp.sw.train import TrainConfig, Trainer


def _synthetic(sizes, n: int, folder: Path) -> str:
    """An .npz of ``n`` samples for a ``sizes`` network: uniform inputs, random labels."""
    rng = np.random.default_rng(0)
    path = folder / f"synthetic-{'-'.join(map(str, sizes))}.npz"
    np.savez(path, x=rng.uniform(0, 1, (n, sizes[0])), y=rng.integers(0, sizes[-1], n))
    return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024, 8192])
    ap.add_argument("--net", default="64-32-10",
                    help="64-...-10 trains digits (1,438 training samples: batch <= 1438); "
                         "any other shape, synthetic data sized for the largest batch")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rounding", default="nearest-even")
    ap.add_argument("--precision", default="fx16",
                    help="a preset or a TOML profile (large batches need wider accumulators)")
    ap.add_argument("--kernels", choices=("auto", "tiled", "straight"), default="auto",
                    help="the matrix sums' form (auto: tiled on GPUs, straight on CPUs)")
    ap.add_argument("--no-golden", action="store_true", help="leave the golden model out")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--peak-gmacs", type=float,
                    help="the device's integer peak in G multiply-accumulates/s")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    sizes = tuple(int(v) for v in args.net.split("-"))
    digits = sizes[0] == 64 and sizes[-1] == 10
    tmp = tempfile.TemporaryDirectory()
    source = (dict(dataset="digits") if digits else
              dict(data=_synthetic(sizes, max(4096, -(-max(args.batches) * 5 // 4) + 8),
                                   Path(tmp.name))))
    # multiply-accumulates of one training sample: forward, back-propagated error, gradient
    macs = sum(2 * a * b for a, b in zip(sizes, sizes[1:])) + sum(
        a * b for a, b in zip(sizes[1:], sizes[2:]))

    rows = []
    device_name = torch_device = None
    for batch in args.batches:
        tr = Trainer(TrainConfig(**source, backend="golden", hidden=sizes[1:-1],
                                 batch=batch, lr=0.5 * batch / 32, rounding=args.rounding,
                                 precision=args.precision))
        g, p, ds = tr.runtime, tr.profile, tr.dataset
        w0 = [p.weight.fmt.to_real(w) for w in g.model.weights]
        b0 = [p.bias.fmt.to_real(b) for b in g.model.biases]
        kw = dict(loss="mse", seed=0, lr=tr.config.lr, batch=batch, device=args.device)
        form = {} if args.kernels == "auto" else {"tiled": args.kernels == "tiled"}
        oi = OpenCLRuntime(tr.sizes, p, w0, b0, **kw, **form)
        of = OpenCLFloatRuntime(tr.sizes, p, w0, b0, **kw, **form)
        device_name = f"{oi.describe()['device']}, {oi.describe().get('kernels', 'one-item')} kernels"
        tt = None
        if torch_missing() is None and not args.no_torch:
            tt = TorchRuntime(tr.sizes, p, w0, b0, **{**kw, "device": "auto"})
            torch_device = tt.describe()["device"]
        reps = max(1, len(ds.x_train) // batch)
        idx = [np.arange(k * batch, (k + 1) * batch) % len(ds.x_train) for k in range(reps)]
        runs = {"golden": g, "opencl": oi, "opencl-float32": of, "torch": tt}
        runs = {k: v for k, v in runs.items() if v is not None}
        data = {name: rt.prepare(ds.x_train, ds.t_train) for name, rt in runs.items()}
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

        if args.no_golden:
            del runs["golden"]
        for name, rt in runs.items():
            epoch(rt, name)                     # warm-up
        sps = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, rt in runs.items():
                sps[name].append(epoch(rt, name))
        med = {k: statistics.median(v) for k, v in sps.items()}
        row = {"batch": batch, "samples_per_second": med,
               "int_over_float32": med["opencl"] / med["opencl-float32"],
               "int_gmacs": med["opencl"] * macs / 1e9}
        if "golden" in med:
            row["int_over_golden"] = med["opencl"] / med["golden"]
        if "torch" in med:
            row["int_over_torch"] = med["opencl"] / med["torch"]
        if args.peak_gmacs:
            row["int_fraction_of_peak"] = row["int_gmacs"] / args.peak_gmacs
        rows.append(row)

    what = "digits" if digits else "synthetic data"
    print(f"{args.net} on {what}, {p.name} {args.rounding}; OpenCL device: {device_name}; "
          f"PyTorch: {torch_device or 'not installed'}; median of {args.rounds} rounds; "
          f"{macs:,} multiply-accumulates a sample")
    cols = [k for k in ("golden", "opencl", "opencl-float32", "torch") if k in rows[0]["samples_per_second"]]
    print(f"{'batch':>6} " + " ".join(f"{c:>14}" for c in cols)
          + f" {'int/f32':>8} {'int/golden':>10} {'int/torch':>9} {'int GMAC/s':>10}"
          + (f" {'of peak':>8}" if args.peak_gmacs else "") + "   (samples/s)")
    for r in rows:
        s = r["samples_per_second"]
        opt = lambda k, f: format(r[k], f) if k in r else "-"
        print(f"{r['batch']:>6} " + " ".join(f"{s[c]:>14,.0f}" for c in cols)
              + f" {r['int_over_float32']:>8.2f} {opt('int_over_golden', '.2f'):>10}"
              f" {opt('int_over_torch', '.2f'):>9} {r['int_gmacs']:>10.3f}"
              + (f" {r['int_fraction_of_peak']:>8.1%}" if args.peak_gmacs else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device_name, "torch_device": torch_device, "net": args.net,
                       "macs_per_sample": macs, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
