"""Accuracy against precision: float32 and the golden model at 16, 12 and 8 bits,
round-to-nearest against stochastic rounding, with the update-underflow counts.

Every row trains the same network on the same split, seed and data order; the
table is the README's "Numbers" table and the JSON holds every run's record.

    python benchmarks/precision_table.py [--dataset digits] [--epochs 30] [--json out.json]
        [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fxbp.sw.report import TrainProgress, save_plot
from fxbp.sw.train import TrainConfig, Trainer

ROWS = [
    ("float32", "fx16", "nearest-even"),
    ("float64", "fx16", "nearest-even"),
    ("golden", "fx16", "stochastic"),
    ("golden", "fx16", "nearest-even"),
    ("golden", "fx12", "stochastic"),
    ("golden", "fx12", "nearest-even"),
    ("golden", "fx8", "stochastic"),
    ("golden", "fx8", "nearest-even"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--hidden", type=int, nargs="*", default=[32])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2.0)
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=len(ROWS), help="only the first N rows")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    args = ap.parse_args(argv)

    console = Console(stderr=True)
    results = []
    for backend, precision, rounding in ROWS[:args.rows]:
        cfg = TrainConfig(dataset=args.dataset, backend=backend, precision=precision,
                          rounding=rounding, hidden=tuple(args.hidden), epochs=args.epochs,
                          batch=args.batch, lr=args.lr, loss=args.loss, seed=args.seed)
        label = f"{backend} {precision} {rounding}" if backend == "golden" else backend
        results.append(Trainer(cfg).run(progress=TrainProgress(console, label)))

    ref = results[0]["final_test_accuracy"]
    t = Table(title=f"{args.dataset} {'-'.join(map(str, results[0]['network']['sizes']))}, "
                    f"{args.epochs} epochs, batch {args.batch}, lr {args.lr}, loss {args.loss}, "
                    f"seed {args.seed}")
    for col in ("backend", "precision", "rounding", "test acc %", "vs float32 (pp)",
                "epoch-1 acc %", "gradient underflow", "stalled updates", "samples/s"):
        t.add_column(col, justify="left" if col in ("backend", "precision", "rounding") else "right")
    for r in results:
        ev = r["cast_events"]
        golden = r["backend"] == "golden"
        stalled = ev.get("weight_update", {})
        grad = ev.get("gradient", {})
        t.add_row(r["backend"], r["precision"]["name"] if golden else "-",
                  r["rounding"] if golden else "-",
                  f"{100 * r['final_test_accuracy']:.2f}",
                  f"{100 * (r['final_test_accuracy'] - ref):+.2f}",
                  f"{100 * r['history'][0]['test_accuracy']:.2f}",
                  f"{100 * grad['underflow'] / grad['total']:.1f} %" if golden else "-",
                  f"{100 * stalled['underflow'] / stalled['total']:.1f} %" if golden else "-",
                  f"{r['samples_per_second']:,.0f}")
    Console(width=200).print(t)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        save_plot(results, Path(args.plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
