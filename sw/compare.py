"""``fxbp compare``: every backend side by side, on one network and one data order
(``docs/compare.md``).

Each requested backend trains the same split, initialisation and data order through the
code ``fxbp train`` runs (:class:`~fxbp.sw.train.Trainer`). The report answers three
questions:

- **agreement**: golden, OpenCL integer, RTL and board must end with the same
  ``weights_digest``; a mismatch is a failure (red, exit status 1 after the report);
- **accuracy**: final test accuracy, loss curves, and cast events per site over the
  epochs (the runs go epoch by epoch so the cumulative counts can be read after each);
- **throughput**: software backends' measured samples/s at each ``--batches`` value (one
  epoch each, the same per-sample learning rate); FPGA targets' compute-bound samples/s
  (the Fmax ``fxbp synth engine --pnr`` recorded for this engine / the RTL run's cycles
  per sample) and a board's link-bound samples/s; MAC/s and the fraction of peak where
  the peak is known (FPGA: DSPs x Fmax).

Nothing is invented: a backend that cannot run here is listed as "not run: reason", a
figure that was not measured as "not measured: how to measure it".
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import os
import platform
import re
import time
from pathlib import Path

import click

from .choices import ROUNDINGS
from .errors import FxbpError

__all__ = ["BACKEND_NAMES", "DIGEST_BACKENDS", "SOFTWARE_BACKENDS", "FPGA_TARGETS", "SCHEMA",
           "cpu_model", "training_macs_per_sample", "run_backend", "measure_throughput", "timed_epochs",
           "fpga_rows", "agreement", "machine_load", "run_compare", "write_outputs", "compare"]

#: Version of ``compare.json``.
SCHEMA = 1
DATASETS = ("seed-neuron", "xor", "iris", "digits")
#: Every backend ``--backends`` accepts, in report order.
BACKEND_NAMES = ("float32", "float64", "golden", "opencl", "opencl-float32", "rtl", "torch",
                 "board")
DEFAULT_BACKENDS = "float32,golden,opencl,opencl-float32,rtl,torch,board"
#: Backends that implement docs/datapath.md: their digests must be equal.
DIGEST_BACKENDS = ("golden", "opencl", "rtl", "board")
#: Backends whose samples/s are measured on this machine at each ``--batches`` value.
SOFTWARE_BACKENDS = ("float32", "float64", "golden", "opencl", "opencl-float32", "torch")
#: ``--targets`` name -> (family, device) as ``hw/synth.py`` DEVICES and the Fmax cache key it.
FPGA_TARGETS = {"up5k": ("ice40", "up5k"), "ecp5-25f": ("ecp5", "25f"),
                "ecp5-45f": ("ecp5", "45f"), "ecp5-85f": ("ecp5", "85f")}
#: Part names for people.
_PART_NAMES = {"up5k": "iCE40 UP5K", "ecp5-25f": "ECP5 LFE5U-25F", "ecp5-45f": "ECP5 LFE5U-45F",
               "ecp5-85f": "ECP5 LFE5U-85F"}
#: What the record has today, and what the issue asks for beyond it.
MISSING_NOTES = (
    "Per-layer cast events come from the golden model only: the OpenCL kernels, the engine "
    "and the board count per site, summed over the layers. Backends that agree on the "
    "weights digest and on the per-site totals ran the same casts.",
    "Per-epoch cast events come from reading the cumulative counts after each epoch "
    "(fxbp compare trains epoch by epoch); the fxbp train record keeps only the totals.",
    "FPGA cycles per sample come from the RTL run at the accuracy run's batch only; the "
    "FPGA rows do not vary with --batches.",
    "Peak MAC/s is known for FPGA targets (DSPs x Fmax); for CPUs and GPUs it is reported "
    "as unknown (no vendor peak table is kept).",
)


#: 1-minute load average, before compare starts its own work, from which the machine
#: counts as busy: at least half a core taken by other processes. The threaded backends
#: (NumPy/numba, torch) use every core, so their samples/s then fall, by up to 200 times
#: when a place and route holds one of two cores (measured, README).
BUSY_LOAD_AVERAGE = 0.5


# ------------------------------------------------------------------------------- helpers
def machine_load() -> dict:
    """``{"cores", "load_average_at_start", "busy_note"}``: the load other processes put
    on this machine when compare starts; ``busy_note`` says why throughput may read low,
    or is None."""
    cores = os.cpu_count() or 1
    load = round(os.getloadavg()[0], 2)
    note = None
    if load >= BUSY_LOAD_AVERAGE:
        note = (f"this machine was busy when compare started (1-minute load average {load:g} "
                f"on {cores} cores): the measured samples/s may be low, the threaded backends' "
                f"most; measure on an idle machine to compare throughput")
    return {"cores": cores, "load_average_at_start": load, "busy_note": note}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what Python knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def training_macs_per_sample(sizes) -> int:
    """Multiply-accumulates of one training sample: forward, backward (hidden deltas) and
    weight gradients (the RTL runtime's ``macs_per_sample``)."""
    n = list(sizes)
    return (2 * sum(n[l] * n[l - 1] for l in range(1, len(n)))
            + sum(n[l] * n[l + 1] for l in range(1, len(n) - 1)))


def _device_label(name: str, describe: dict | None, cpu: str) -> str:
    """Where a backend's figures were measured, in words."""
    if describe is None:
        return "-"
    if name in ("golden", "float32", "float64"):
        return f"CPU: {cpu} (NumPy/numba)"
    if name in ("opencl", "opencl-float32"):
        return f"OpenCL: {describe['device']} ({describe['platform']})"
    if name in ("torch", "torch-cuda"):
        where = describe["device"]
        if where.startswith("CPU"):
            where = f"CPU: {cpu} {where.removeprefix('CPU').strip()}".strip()
        return f"{where} ({describe['platform']})"
    if name == "rtl":
        return f"Verilator model of the training engine, on CPU: {cpu}"
    if name == "board":
        return f"{describe['platform']}: {describe['device']}"
    return str(describe.get("device", "-"))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def torch_throughput_devices() -> list[tuple[str, str]]:
    """``(row name, --device)`` of the PyTorch baseline's throughput rows: the CPU, and
    CUDA when torch sees a GPU (none when torch is not installed)."""
    from .torch_runtime import torch_devices, torch_missing
    if torch_missing() is not None:
        return []
    return [("torch" if d == "cpu" else "torch-cuda", d) for d in torch_devices()]


def opencl_throughput_devices(name: str, device: str) -> list[tuple[str, str]]:
    """``(row name, --device)`` of an OpenCL backend's throughput rows: the device of its
    accuracy run (``device``; with ``auto``, a GPU when one compiles kernels), and with
    ``auto`` on a machine that has both, the CPU as well (row ``<name>-cpu``)."""
    from .opencl import opencl_device_kinds
    rows = [(name, device)]
    if device == "auto" and {"cpu", "gpu"} <= set(opencl_device_kinds()):
        rows.append((f"{name}-cpu", "cpu"))
    return rows


#: Throughput rows measured beside a backend's own, on another device.
EXTRA_THROUGHPUT_ROWS = {"torch": ("torch-cuda",), "opencl": ("opencl-cpu",),
                         "opencl-float32": ("opencl-float32-cpu",)}


# ------------------------------------------------------------------------------- running
def run_backend(name: str, config, *, cpu: str, say=None) -> dict:
    """Train ``config`` on backend ``name`` epoch by epoch through :class:`Trainer`;
    the entry of ``compare.json``'s ``backends`` list (``ran`` False with a reason when
    the backend cannot start or stops with a user-facing error)."""
    from .train import Trainer
    say = say or (lambda text: None)
    try:
        # torch's accuracy run is on the CPU: deterministic, like the other CPU backends.
        trainer = Trainer(dataclasses.replace(config, backend=name,
                                              device="cpu" if name == "torch" else config.device))
    except FxbpError as exc:
        return {"backend": name, "ran": False, "reason": _one_line(exc)}
    t0 = time.perf_counter()
    per_epoch, per_epoch_layers = [], []
    try:
        say(f"{name}: training {'-'.join(map(str, trainer.sizes))}, {trainer.config.epochs} "
            f"epochs, on {trainer.runtime.describe()['device']}")
        for epoch in range(1, trainer.config.epochs + 1):
            trainer.config = dataclasses.replace(trainer.config, epochs=epoch)
            trainer.run()
            per_epoch.append(trainer.runtime.event_counts())
            per_epoch_layers.append(trainer.runtime.layer_event_counts())
        result = trainer.result()
    except FxbpError as exc:
        return {"backend": name, "ran": False, "reason": f"stopped: {_one_line(exc)}"}
    finally:
        close = getattr(trainer.runtime, "close", None)
        if close is not None:
            close()
    describe = result["runtime"]
    entry = {
        "backend": name,
        "ran": True,
        "device": _device_label(name, describe, cpu),
        "runtime": describe,
        "fixed_point": result["fixed_point"],
        "network": result["network"]["sizes"],
        "precision": result["precision"]["name"] if result["fixed_point"] else None,
        "rounding": result["rounding"] if result["fixed_point"] else None,
        "epochs": result["epochs"],
        "batch": result["batch"],
        "learning_rate": result["learning_rate"],
        "history": result["history"],
        "final_loss": result["final_loss"],
        "final_test_accuracy": result["final_test_accuracy"],
        "samples_per_second": result["samples_per_second"],
        "wall_seconds": time.perf_counter() - t0,
        "weights_digest": result["weights_digest"],
        "cast_events": result["cast_events"],
        "cast_events_per_epoch": per_epoch if result["cast_events"] else [],
        "cast_events_by_layer": result["cast_events_by_layer"],
        "cast_events_by_layer_per_epoch": (per_epoch_layers
                                           if result["cast_events_by_layer"] else []),
    }
    hw = result.get("hardware")
    if hw is not None:
        keep = ("engine", "lanes", "cycles_per_sample", "cycles_per_step", "macs_per_sample",
                "mac_lane_utilisation", "clock_mhz", "clock_source", "fpga_samples_per_second",
                "simulated_cycles_per_second", "board")
        entry["hardware"] = {k: hw[k] for k in keep if k in hw}
        if "link" in hw:
            entry["hardware"]["link"] = {k: hw["link"][k] for k in (
                "port", "simulated", "baud", "retries", "link_bound_samples_per_second")
                if k in hw["link"]}
    return entry


#: The timed part of a throughput run covers at least this many samples (whole epochs).
MIN_TIMED_SAMPLES = 4096


def timed_epochs(n_train: int) -> int:
    """Epochs timed per throughput measurement: at least two, and at least
    :data:`MIN_TIMED_SAMPLES` samples."""
    return max(2, math.ceil(MIN_TIMED_SAMPLES / n_train))


def measure_throughput(name: str, config, batches, *, eta: float, n_train: int, cpu: str,
                       macs_per_sample: int, say=None, device: str = "auto",
                       label: str | None = None) -> list[dict]:
    """Samples/s of backend ``name`` at each batch through :class:`Trainer`: one untimed
    epoch (warm caches and allocations), then :func:`timed_epochs` epochs whose training
    steps are timed as ``fxbp train`` times them (``train_seconds``: steps only, no
    evaluation, no compilation), at the accuracy run's per-sample rate ``eta``
    (``lr = eta x batch``). ``device`` is ``fxbp train --device``; ``label`` names the
    rows (default ``name``)."""
    from .train import Trainer
    say = say or (lambda text: None)
    timed = timed_epochs(n_train)
    rows = []
    for b in batches:
        row = {"backend": label or name, "batch": b, "samples_per_second": None,
               "device": None, "macs_per_second": None, "peak_macs_per_second": None,
               "fraction_of_peak": None}
        if b > n_train:
            rows.append({**row, "reason": f"not run: batch {b} exceeds the {n_train} training "
                                          f"samples"})
            continue
        try:
            trainer = Trainer(dataclasses.replace(config, backend=name, batch=b, lr=eta * b,
                                                  epochs=1 + timed, device=device))
            say(f"{label or name}: throughput at batch {b}, 1 + {timed} epochs")
            trainer.config = dataclasses.replace(trainer.config, epochs=1)
            trainer.run()
            samples, seconds = trainer.samples_trained, trainer.train_seconds
            trainer.config = dataclasses.replace(trainer.config, epochs=1 + timed)
            result = trainer.run()
        except FxbpError as exc:
            rows.append({**row, "reason": f"not run: {_one_line(exc)}"})
            continue
        elapsed = trainer.train_seconds - seconds
        sps = (trainer.samples_trained - samples) / elapsed if elapsed > 0 else None
        rows.append({**row, "samples_per_second": sps, "lr": eta * b,
                     "timed_samples": trainer.samples_trained - samples,
                     "device": _device_label(label or name, result["runtime"], cpu),
                     "macs_per_second": sps * macs_per_sample if sps else None,
                     "peak_macs_per_second": None,
                     "peak_note": "unknown (no vendor peak recorded for this device)",
                     "reason": None})
    return rows


def _fmax_records(engine: dict) -> dict:
    """The Fmax recorded for the netlist of ``engine`` (an RTL run's ``hardware.engine``)."""
    from .engine_fmax import recorded
    if not engine.get("netlist_hash"):
        return {}                 # a record from before netlists were hashed: no match
    return recorded(engine["gen_hash"], engine["netlist_hash"])


def fpga_rows(targets, rtl: dict | None, board: dict | None, *, settings: dict) -> list[dict]:
    """One row per FPGA target: Fmax (recorded by ``fxbp synth engine --pnr`` for this
    engine), cycles per sample (the RTL run), compute-bound samples/s, link-bound samples/s
    (the board run, on the target of its part), MAC/s and the fraction of DSPs x Fmax."""
    from ..hw.synth import DEVICES
    hw = (rtl or {}).get("hardware") if rtl and rtl.get("ran") else None
    board_hw = (board or {}).get("hardware") if board and board.get("ran") else None
    rows = []
    for t in targets:
        family, device = FPGA_TARGETS[t]
        dsp = DEVICES[(family, device)][3]
        row = {"target": t, "part": _PART_NAMES[t], "family": family, "device": device,
               "dsp": dsp, "fmax_mhz": None, "fmax_source": None, "cycles_per_sample": None,
               "compute_bound_samples_per_second": None, "link_bound_samples_per_second": None,
               "macs_per_sample": None, "macs_per_second": None, "peak_macs_per_second": None,
               "fraction_of_peak": None, "notes": []}
        if hw is None:
            row["notes"].append("cycles per sample not measured: add rtl to --backends")
        else:
            eng = hw["engine"]
            row["cycles_per_sample"] = hw["cycles_per_sample"]
            row["macs_per_sample"] = hw["macs_per_sample"]
            row["engine"] = {"gen_hash": eng["gen_hash"],
                             "netlist_hash": eng.get("netlist_hash"), "lanes": hw["lanes"]}
            rec = _fmax_records(eng).get(f"{family} {device}")
            if rec is None:
                net = "-".join(map(str, rtl["network"]))
                cmd = (f"fxbp synth engine --precision {settings['precision']} --rounding "
                       f"{rtl['rounding']} --net {net} --max-batch {rtl['batch']} --lanes "
                       f"{hw['lanes']} --loss {settings['loss']} --family {family} --device "
                       f"{device} --pnr")
                row["notes"].append(f"Fmax not measured: run {cmd}")
            else:
                fmax = float(rec["fmax_mhz"])
                row["fmax_mhz"] = fmax
                row["fmax_source"] = (f"fxbp synth engine --pnr on {family} {device} (netlist "
                                      f"{eng['netlist_hash']}), worst of seeds "
                                      f"{rec.get('seeds')} ({rec.get('date')})")
                cps = hw["cycles_per_sample"]
                if cps:
                    sps = fmax * 1e6 / cps
                    row["compute_bound_samples_per_second"] = sps
                    row["macs_per_second"] = sps * hw["macs_per_sample"]
                    row["peak_macs_per_second"] = dsp * fmax * 1e6
                    row["fraction_of_peak"] = row["macs_per_second"] / row["peak_macs_per_second"]
        if board_hw is not None:
            part = (board_hw.get("board") or {}).get("device", "")
            if part.upper().endswith(device.upper()) and family == board_hw["board"]["family"]:
                link = board_hw.get("link") or {}
                row["link_bound_samples_per_second"] = link.get("link_bound_samples_per_second")
                row["link_board"] = board_hw["board"].get("title")
                row["link_simulated"] = link.get("simulated")
        if row["link_bound_samples_per_second"] is None:
            row["notes"].append("link-bound: no board of this part ran (--backends board "
                                "--port ...)")
        row["measured_on"] = (f"{_PART_NAMES[t]}: Fmax from place and route (nextpnr), cycles "
                              f"from the Verilator model of the engine")
        rows.append(row)
    return rows


def agreement(backends: list[dict]) -> dict:
    """Equal ``weights_digest`` for every fixed-point backend that ran (golden first)."""
    ran = [b for b in backends if b["backend"] in DIGEST_BACKENDS and b.get("ran")]
    digests = {b["backend"]: b["weights_digest"] for b in ran}
    if len(ran) < 2:
        return {"status": "nothing to compare", "digests": digests, "reference": None,
                "mismatched": [],
                "note": "fewer than two of golden, opencl, rtl, board ran"}
    ref = "golden" if "golden" in digests else ran[0]["backend"]
    bad = [n for n, d in digests.items() if d != digests[ref]]
    return {"status": "mismatch" if bad else "agree", "reference": ref, "digests": digests,
            "mismatched": bad}


@dataclasses.dataclass(frozen=True)
class CompareRequest:
    """What ``fxbp compare`` was asked for, after parsing."""

    config: object                 # TrainConfig with the recipe-like options
    backends: tuple[str, ...]
    targets: tuple[str, ...]
    batches: tuple[int, ...]


def run_compare(request: CompareRequest, *, say=None) -> dict:
    """Every backend, throughput and FPGA row: the ``compare.json`` record (no plots)."""
    from .train import Trainer
    say = say or (lambda text: None)
    cpu = cpu_model()
    load = machine_load()
    if load["busy_note"]:
        say(load["busy_note"])
    t0 = time.perf_counter()
    backends = [run_backend(n, request.config, cpu=cpu, say=say) for n in request.backends]
    ref = Trainer(dataclasses.replace(request.config, backend="float32"))
    resolved = ref.config
    n_train = len(ref.dataset.x_train)
    macs = training_macs_per_sample(ref.sizes)
    eta = resolved.lr / resolved.batch
    throughput = []
    for b in backends:
        if b["backend"] not in SOFTWARE_BACKENDS:
            continue
        if not b["ran"]:
            throughput += [{"backend": b["backend"], "batch": n, "samples_per_second": None,
                            "device": None, "reason": f"not run: {b['reason']}"}
                           for n in request.batches]
            continue
        if b["backend"] == "torch":
            runs = torch_throughput_devices()
        elif b["backend"] in ("opencl", "opencl-float32"):
            runs = opencl_throughput_devices(b["backend"], request.config.device)
        else:
            runs = [(b["backend"], request.config.device)]
        for label, device in runs:
            throughput += measure_throughput(b["backend"], request.config, request.batches,
                                             eta=eta, n_train=n_train, cpu=cpu,
                                             macs_per_sample=macs, say=say, device=device,
                                             label=label)
    by_name = {b["backend"]: b for b in backends}
    settings = {"dataset": resolved.dataset, "precision": resolved.precision,
                "rounding": resolved.rounding, "hidden": list(resolved.hidden),
                "epochs": resolved.epochs, "batch": resolved.batch, "lr": resolved.lr,
                "loss": resolved.loss, "seed": resolved.seed, "port": request.config.port,
                "backends": list(request.backends), "targets": list(request.targets),
                "batches": list(request.batches)}
    fpga = fpga_rows(request.targets, by_name.get("rtl"), by_name.get("board"),
                     settings=settings)
    return {
        "schema": SCHEMA,
        "settings": settings,
        "network": list(ref.sizes),
        "training_macs_per_sample": macs,
        "split": {"train": n_train, "test": len(ref.dataset.x_test)},
        "machine": {"cpu": cpu, "python": platform.python_version(),
                    "system": f"{platform.system()} {platform.release()}", **load},
        "backends": backends,
        "agreement": agreement(backends),
        "throughput": throughput,
        "throughput_method": (f"per backend and batch, through fxbp train's Trainer: one "
                              f"untimed epoch, then {timed_epochs(n_train)} timed epochs "
                              f"({timed_epochs(n_train) * n_train} samples); samples/s counts "
                              f"the training steps only (no evaluation, no compilation); "
                              f"per-sample rate eta = {eta:g} at every batch"),
        "fpga": fpga,
        "missing": list(MISSING_NOTES),
        "seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------------- outputs
def _fmt_sps(v) -> str:
    return f"{v:,.0f}" if v else "-"


def _fmt_pct(v) -> str:
    return f"{100 * v:.2f} %" if v is not None else "-"


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=100, format="png")
    finally:
        plt.close(fig)
    from .train import _atomic_write_bytes
    _atomic_write_bytes(path, buf.getvalue())


def _plot_accuracy(record: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    ran = [b for b in record["backends"] if b["ran"]]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.4))
    labels = [b["backend"] for b in ran]
    accs = [100 * b["final_test_accuracy"] for b in ran]
    bars = ax_acc.bar(range(len(ran)), accs, color="tab:blue")
    for bar, a in zip(bars, accs):
        ax_acc.annotate(f"{a:.2f}", (bar.get_x() + bar.get_width() / 2, a), ha="center",
                        va="bottom", fontsize=8)
    ax_acc.set_xticks(range(len(ran)), labels, rotation=20, fontsize=8)
    ax_acc.set(ylabel="final test accuracy (%)", title="test accuracy per backend",
               ylim=(0, 105))
    for b in ran:
        ax_loss.plot([h["epoch"] for h in b["history"]], [h["loss"] for h in b["history"]],
                     label=f"{b['backend']}: {b['device']}", marker="." if len(b["history"]) < 3
                     else None)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss per epoch")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.legend(fontsize=6)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    s = record["settings"]
    fig.suptitle(f"fxbp compare: {s['dataset']} {'-'.join(map(str, record['network']))}, "
                 f"{s['precision']} {s['rounding'] or ''}, {s['epochs']} epochs, batch "
                 f"{s['batch']}", fontsize=10)
    fig.text(0.01, 0.01, "measured on: " + "; ".join(
        sorted({b['device'] for b in ran})), fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    _save(fig, path)


def _plot_throughput(record: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    rows = [r for r in record["throughput"] if r["samples_per_second"]]
    names = list(dict.fromkeys(r["backend"] for r in rows))
    batches = record["settings"]["batches"]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        mine = {r["batch"]: r for r in rows if r["backend"] == name}
        xs = [j + i * width for j, b in enumerate(batches) if b in mine]
        ys = [mine[b]["samples_per_second"] for b in batches if b in mine]
        device = next(iter(mine.values()))["device"]
        ax.bar(xs, ys, width=width, label=f"{name}: {device}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(batches))],
                  [f"batch {b}" for b in batches])
    styles = iter(["--", ":", "-.", (0, (5, 1)), (0, (1, 3))])
    for row in record["fpga"]:
        for key, what in (("compute_bound_samples_per_second", "compute-bound"),
                          ("link_bound_samples_per_second", "link-bound")):
            if row[key]:
                ax.axhline(row[key], color="black" if what == "compute-bound" else "tab:red",
                           linestyle=next(styles, "--"), linewidth=1,
                           label=(f"{row['part']} {what} "
                                  + (f"({row['fmax_mhz']:g} MHz place and route, Verilator "
                                     f"cycles)" if what == "compute-bound" else
                                     f"({row.get('link_board')}"
                                     f"{', simulated' if row.get('link_simulated') else ''})")))
    ax.set(yscale="log", ylabel="training samples/s (log)",
           title="throughput per backend and batch (FPGA targets: horizontal lines)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    _save(fig, path)


def _underflow_series(entry: dict) -> dict[str, list[float]]:
    """Per site, the share of that epoch's casts that underflowed (per-epoch differences
    of the cumulative counts)."""
    series, prev = {}, None
    for counts in entry["cast_events_per_epoch"]:
        for site, c in counts.items():
            p = prev[site] if prev else {"underflow": 0, "total": 0}
            total = c["total"] - p["total"]
            series.setdefault(site, []).append((c["underflow"] - p["underflow"]) / total
                                               if total else None)
        prev = counts
    return {s: v for s, v in series.items() if any(x for x in v)}


def _events_source(record: dict) -> dict | None:
    for b in record["backends"]:
        if b.get("ran") and b.get("cast_events_per_epoch"):
            return b
    return None


def _plot_events(record: dict, path: Path) -> bool:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    src = _events_source(record)
    if src is None:
        return False
    series = _underflow_series(src)
    fig, ax = plt.subplots(figsize=(9, 4.4))
    for site, ys in series.items():
        ax.plot(range(1, len(ys) + 1), [100 * y if y is not None else float("nan") for y in ys],
                label=site, marker="o" if len(ys) < 3 else None)
    ax.set(xlabel="epoch", ylabel="casts that underflowed to zero (%)",
           title=f"cast underflow per site per epoch: {src['backend']} on {src['device']}")
    ax.title.set_fontsize(8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return True


#: Sites of the per-layer plot: the backward casts where gradients vanish.
LAYER_SITES = ("delta", "gradient", "weight_update")


def _layer_source(record: dict) -> dict | None:
    for b in record["backends"]:
        if b.get("ran") and b.get("cast_events_by_layer_per_epoch"):
            return b
    return None


def layer_underflow_series(entry: dict, site: str) -> dict[str, list[float | None]]:
    """Per layer, the share of ``site``'s casts in that layer that underflowed in each
    epoch (differences of the cumulative per-layer counts); ``None`` where it made none."""
    series, prev = {}, None
    for by_layer in entry["cast_events_by_layer_per_epoch"]:
        for layer, sites in by_layer.items():
            c = sites[site]
            p = prev[layer][site] if prev else {"underflow": 0, "total": 0}
            total = c["total"] - p["total"]
            series.setdefault(layer, []).append((c["underflow"] - p["underflow"]) / total
                                                if total else None)
        prev = by_layer
    return series


def _plot_layer_events(record: dict, path: Path) -> bool:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    src = _layer_source(record)
    if src is None:
        return False
    fig, axes = plt.subplots(1, len(LAYER_SITES), figsize=(10, 3.6), sharex=True)
    for ax, site in zip(axes, LAYER_SITES):
        for layer, ys in layer_underflow_series(src, site).items():
            ax.plot(range(1, len(ys) + 1),
                    [100 * y if y is not None else float("nan") for y in ys],
                    label=f"layer {layer}", marker="o" if len(ys) < 3 else None)
        ax.set(xlabel="epoch", title=site)
        ax.title.set_fontsize(9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("casts that underflowed (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"underflow per layer per epoch: {src['backend']} on {src['device']} "
                 f"(weight_update: non-zero updates that left the weight unchanged)",
                 fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


PLOTS = {"accuracy": "accuracy.png", "throughput": "throughput.png",
         "cast_events": "cast_events.png", "layer_events": "layer_underflow.png"}


def headline_rows(record: dict) -> tuple[list[str], list[list[str]], list[bool]]:
    """The headline table: backends and FPGA targets x {device, accuracy, samples/s at each
    batch, digest}; the third list marks red rows (a digest mismatch)."""
    batches = record["settings"]["batches"]
    cols = ["backend", "measured on", "test accuracy", *(f"samples/s, batch {b}"
                                                         for b in batches), "weights digest"]
    agree = record["agreement"]
    rows, red = [], []
    tp = {(r["backend"], r["batch"]): r for r in record["throughput"]}
    for b in record["backends"]:
        if not b["ran"]:
            rows.append([b["backend"], f"not run: {b['reason']}", "-", *("-" for _ in batches),
                         "-"])
            red.append(False)
            continue
        cells = []
        for n in batches:
            r = tp.get((b["backend"], n))
            cells.append(_fmt_sps(r["samples_per_second"]) if r and r["samples_per_second"]
                         else ("FPGA rows below" if b["backend"] in ("rtl", "board") else "-"))
        digest = b["weights_digest"][:16] + "…"
        bad = b["backend"] in agree["mismatched"]
        if b["backend"] in agree["digests"] and agree["status"] != "nothing to compare":
            digest += " MISMATCH" if bad else " (agrees)"
        rows.append([b["backend"], b["device"], _fmt_pct(b["final_test_accuracy"]), *cells,
                     digest])
        red.append(bad)
        for label in EXTRA_THROUGHPUT_ROWS.get(b["backend"], ()):   # on another device
            extra = [tp.get((label, n)) for n in batches]
            if any(extra):
                where = next((r["device"] for r in extra if r and r["device"]), "-")
                rows.append([label, where, "-",
                             *(_fmt_sps(r["samples_per_second"]) if r and r["samples_per_second"]
                               else "-" for r in extra), "-"])
                red.append(False)
    for f in record["fpga"]:
        sps = f["compute_bound_samples_per_second"]
        value = (f"{_fmt_sps(sps)} compute-bound" if sps else "not measured")
        if f["link_bound_samples_per_second"]:
            value += f"; {_fmt_sps(f['link_bound_samples_per_second'])} link-bound"
        where = f["measured_on"] if sps else f"{f['part']}: " + "; ".join(f["notes"][:1])
        if f["link_bound_samples_per_second"]:
            where += (f"; link-bound: {f.get('link_board')} host link"
                      + (" (simulated)" if f.get("link_simulated") else ""))
        rows.append([f"FPGA {f['target']}", where, "-", *(value for _ in batches), "-"])
        red.append(False)
    return cols, rows, red


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:0 12px 40px;line-height:1.45;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
.wrap{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;white-space:nowrap}
tr.mismatch td,.mismatch{color:#c00;font-weight:bold}
.ok{color:#070;font-weight:bold}.warn{color:#8a5a00;font-weight:bold}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}code{font-size:.9em;word-break:break-all}
ol.notes{font-size:.85em;color:#444;margin:.4em 0 0;padding-left:1.6em}
"""

#: A table cell longer than this moves under the table as a numbered note, so that a
#: reason (why a backend did not run, how to measure a target) does not stretch its row
#: down a phone's screen.
NOTE_CHARS = 60


def _table_html(cols, rows, red=None, numeric=()) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body, notes = [], []
    for i, row in enumerate(rows):
        cls = ' class="mismatch"' if red and red[i] else ""
        cells = []
        for j, c in enumerate(row):
            text = str(c)
            if re.fullmatch(r"[0-9a-f]{64}", text):     # a digest: its first 16 digits
                inner = f'<code title="{text}">{text[:16]}…</code>'
            elif len(text) > NOTE_CHARS:
                if text not in notes:
                    notes.append(text)
                inner = f"see note {notes.index(text) + 1}"
            else:
                inner = html.escape(text)
            cells.append(f'<td{" class=num" if j in numeric else ""}>{inner}</td>')
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    listed = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>'
            f'{"".join(body)}</tbody></table></div>'
            + (f'<ol class="notes">{listed}</ol>' if notes else ""))


def render_html(record: dict, images: dict[str, bytes]) -> str:
    """The self-contained report: tables, and the plots embedded as base64 PNG."""
    s = record["settings"]
    agree = record["agreement"]
    e = html.escape
    title = f"fxbp compare: {s['dataset']} {'-'.join(map(str, record['network']))}"
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<p>{e(s['precision'])}, rounding {e(str(s['rounding']))}, {s['epochs']} epochs, "
             f"batch {s['batch']}, lr {s['lr']:g}, loss {e(s['loss'])}, seed {s['seed']}; split "
             f"{record['split']['train']} train / {record['split']['test']} test; machine CPU: "
             f"{e(record['machine']['cpu'])}. Every backend trains the same split, "
             f"initialisation and data order.</p>"]
    if agree["status"] == "mismatch":
        parts.append(f'<p class="mismatch" id="agreement">Agreement FAILED: '
                     f'{e(", ".join(agree["mismatched"]))} differ from {e(agree["reference"])} '
                     f'(weights_digest).</p>')
    elif agree["status"] == "agree":
        parts.append(f'<p class="ok" id="agreement">Agreement: {e(", ".join(agree["digests"]))} '
                     f'end with the same weights_digest '
                     f'<code>{e(agree["digests"][agree["reference"]])}</code>.</p>')
    else:
        parts.append(f'<p id="agreement">Agreement: nothing to compare '
                     f'({e(agree["note"])}).</p>')
    if record["machine"].get("busy_note"):
        parts.append(f'<p class="warn" id="busy">Note: {e(record["machine"]["busy_note"])}.</p>')
    cols, rows, red = headline_rows(record)
    parts += ["<h2>Headline</h2>", _table_html(cols, rows, red,
                                                numeric=range(2, len(cols) - 1))]
    # backends in detail
    bcols = ["backend", "ran", "measured on", "test accuracy", "final loss", "epochs",
             "samples/s (accuracy run)", "weights digest"]
    brows, bred = [], []
    for b in record["backends"]:
        if b["ran"]:
            brows.append([b["backend"], "yes", b["device"], _fmt_pct(b["final_test_accuracy"]),
                          f"{b['final_loss']:.5f}", b["epochs"], _fmt_sps(b["samples_per_second"]),
                          b["weights_digest"]])
        else:
            brows.append([b["backend"], "not run", b["reason"], "-", "-", "-", "-", "-"])
        bred.append(b["backend"] in agree["mismatched"])
    parts += ["<h2>Accuracy and agreement</h2>", _table_html(bcols, brows, bred,
                                                              numeric=(3, 4, 5, 6))]
    if "accuracy" in images:
        parts.append(_figure(images["accuracy"], "Final test accuracy and loss per epoch, "
                             "per backend; the legend names the device of each."))
    # throughput
    tcols = ["backend", "batch", "measured on", "samples/s", "MAC/s", "fraction of peak"]
    trows = []
    for r in record["throughput"]:
        if r["samples_per_second"]:
            trows.append([r["backend"], r["batch"], r["device"], _fmt_sps(r["samples_per_second"]),
                          f"{r['macs_per_second']:.3g}", "unknown"])
        else:
            trows.append([r["backend"], r["batch"], r["reason"], "-", "-", "-"])
    parts += ["<h2>Throughput: software backends</h2>",
              f"<p>{e(record['throughput_method'])}; MAC/s = samples/s x "
              f"{record['training_macs_per_sample']:,} training MACs per sample.</p>",
              _table_html(tcols, trows, numeric=(1, 3, 4))]
    fcols = ["target", "DSPs", "Fmax (MHz)", "cycles/sample", "compute-bound samples/s",
             "link-bound samples/s", "MAC/s", "fraction of DSPs x Fmax", "notes"]
    frows = [[f["part"], f["dsp"], f"{f['fmax_mhz']:g}" if f["fmax_mhz"] else "not measured",
              f"{f['cycles_per_sample']:,.1f}" if f["cycles_per_sample"] else "not measured",
              _fmt_sps(f["compute_bound_samples_per_second"]),
              _fmt_sps(f["link_bound_samples_per_second"]),
              f"{f['macs_per_second']:.3g}" if f["macs_per_second"] else "-",
              _fmt_pct(f["fraction_of_peak"]),
              "; ".join([*([f["fmax_source"]] if f["fmax_source"] else []), *f["notes"]])]
             for f in record["fpga"]]
    parts += ["<h2>Throughput: FPGA targets</h2>",
              "<p>Compute-bound samples/s = Fmax (place and route) / cycles per sample (the "
              "RTL run in Verilator); link-bound from a board run's host link.</p>",
              _table_html(fcols, frows, numeric=(1, 2, 3, 4, 5, 6, 7))]
    if "throughput" in images:
        parts.append(_figure(images["throughput"], "Samples/s per backend and batch (log "
                             "scale); FPGA targets as horizontal lines. The legend names the "
                             "device of each."))
    # cast events
    src = _events_source(record)
    parts.append("<h2>Cast events</h2>")
    if src is None:
        parts.append("<p>No fixed-point backend ran: no cast events.</p>")
    else:
        ecols = ["site", "values", "overflow", "underflow", "underflow share"]
        erows = [[site, f"{c['total']:,}", f"{c['overflow']:,}", f"{c['underflow']:,}",
                  _fmt_pct(c["underflow"] / c["total"]) if c["total"] else "-"]
                 for site, c in src["cast_events"].items() if c["total"]]
        parts += [f"<p>Totals over {src['epochs']} epochs, {e(src['backend'])} on "
                  f"{e(src['device'])} (the fixed-point backends that agree count the same "
                  f"events).</p>", _table_html(ecols, erows, numeric=(1, 2, 3, 4))]
        if "cast_events" in images:
            parts.append(_figure(images["cast_events"], "Share of each site's casts that "
                                 "underflowed to zero, per epoch."))
    layers = _layer_source(record)
    if layers is not None:
        by_layer = layers["cast_events_by_layer"]
        lcols = ["layer"] + [f"{site} underflow" for site in LAYER_SITES]
        lrows = [[layer] + [_fmt_pct(c[site]["underflow"] / c[site]["total"])
                            if c[site]["total"] else "-" for site in LAYER_SITES]
                 for layer, c in by_layer.items()]
        parts += ["<h3>Per layer</h3>",
                  f"<p>Share of each layer's casts that underflowed over {layers['epochs']} "
                  f"epochs ({e(layers['backend'])} on {e(layers['device'])}; layer 1 takes "
                  f"the inputs). Vanishing gradients show as underflow growing toward layer "
                  f"1.</p>", _table_html(lcols, lrows, numeric=tuple(range(1, len(lcols))))]
        if "layer_events" in images:
            parts.append(_figure(images["layer_events"], "Share of each layer's delta, "
                                 "gradient and weight-update casts that underflowed, per "
                                 "epoch."))
    parts.append("<h2>What this report does not show yet</h2><ul>"
                 + "".join(f"<li>{e(n)}</li>" for n in record["missing"]) + "</ul>")
    parts.append(f"<p>Generated by fxbp compare in {record['seconds']:.1f} s. Data: "
                 f"compare.json.</p></body></html>")
    return "\n".join(parts)


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_outputs(record: dict, out_dir: Path) -> dict:
    """``compare.json``, the PNG plots and ``report.html`` in ``out_dir``."""
    import matplotlib
    matplotlib.use("Agg")
    from .train import _atomic_write_bytes, write_json
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {}
    if any(b["ran"] for b in record["backends"]):
        _plot_accuracy(record, out_dir / PLOTS["accuracy"])
        plots["accuracy"] = PLOTS["accuracy"]
    if any(r["samples_per_second"] for r in record["throughput"]) or any(
            f["compute_bound_samples_per_second"] for f in record["fpga"]):
        _plot_throughput(record, out_dir / PLOTS["throughput"])
        plots["throughput"] = PLOTS["throughput"]
    if _plot_events(record, out_dir / PLOTS["cast_events"]):
        plots["cast_events"] = PLOTS["cast_events"]
    if _plot_layer_events(record, out_dir / PLOTS["layer_events"]):
        plots["layer_events"] = PLOTS["layer_events"]
    record = {**record, "plots": plots}
    write_json(out_dir / "compare.json", record)
    images = {k: (out_dir / v).read_bytes() for k, v in plots.items()}
    _atomic_write_bytes(out_dir / "report.html", render_html(record, images).encode())
    return record


# ------------------------------------------------------------------------------- command
def _parse_batch(item: str) -> int:
    if not item.isdigit() or int(item) < 1:
        raise ValueError(f"{item!r} is not a batch size (a positive integer)")
    return int(item)


def _parse_choice(choices):
    def convert(item: str) -> str:
        if item not in choices:
            raise ValueError(f"unknown name {item!r}: choose from {', '.join(choices)}")
        return item
    return convert


@click.command("compare")
@click.option("--dataset", type=click.Choice(list(DATASETS)), required=True,
              help="Built-in dataset.")
@click.option("--precision", default="fx16", show_default=True,
              help="Precision profile: a preset or a .toml file (as for train).")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None,
              help="Rounding of the training casts (default: as fxbp train).")
@click.option("--hidden", default=None, help="Hidden widths: 32, or 32-16 for two hidden "
              "layers (default: the recipe's).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs of the accuracy runs (default: the recipe's).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch of the accuracy runs (default: the recipe's).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate of the accuracy runs (default: the recipe's).")
@click.option("--loss", type=click.Choice(["mse", "xent"]), default=None,
              help="Loss (default: the recipe's).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed: split, initialisation, data order, stochastic rounding.")
@click.option("--backends", default=DEFAULT_BACKENDS, show_default=True,
              help="Backends, comma-separated: " + ", ".join(BACKEND_NAMES) + ".")
@click.option("--targets", default="ecp5-25f,ecp5-85f,up5k", show_default=True,
              help="FPGA targets, comma-separated: " + ", ".join(FPGA_TARGETS) + ".")
@click.option("--batches", default="1,64,1024", show_default=True,
              help="Batches of the throughput runs, comma-separated.")
@click.option("--port", default=None, help="--backends board: the board's serial port, or "
              "sim://BOARD to simulate it (e.g. sim://ulx3s-85f).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Directory for compare.json, the plots and report.html (made when missing).")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def compare(dataset, precision, rounding, hidden, epochs, batch, lr, loss, seed, backends,
            targets, batches, port, out_dir, quiet):
    """Every backend side by side: agreement, accuracy and throughput.

    Trains --dataset on each of --backends with the same split, initialisation and data
    order (the code of fxbp train), checks that golden, opencl, rtl and board end with
    the same weights digest, measures samples/s of the software backends at each of
    --batches, and turns the RTL run's cycles per sample and the Fmax recorded by
    fxbp synth engine --pnr into samples/s for each of --targets. Writes
    OUT/compare.json, PNG plots and a self-contained OUT/report.html. A backend that
    cannot run here is reported as not run, with the reason. Exit status 1 when the
    digests disagree (after the report is written).
    """
    from rich.markup import escape
    from rich.table import Table

    from .cli import _check_output_dir, _console
    from .runtime import FLOAT_BACKENDS
    from .sweep import parse_hidden, parse_list
    from .train import TrainConfig, Trainer
    err, out = _console(stderr=True), _console()
    names = parse_list(backends, "--backends", _parse_choice(BACKEND_NAMES))
    target_names = parse_list(targets, "--targets", _parse_choice(tuple(FPGA_TARGETS)))
    batch_sizes = parse_list(batches, "--batches", _parse_batch)
    hidden_widths = (parse_list(hidden, "--hidden", parse_hidden)[0]
                     if hidden is not None else None)
    if hidden is not None and "," in hidden:
        raise FxbpError("--hidden names one network (32, or 32-16): run compare once per network")
    if port is not None and "board" not in names:
        raise FxbpError("--port applies to an FPGA board: add board to --backends or drop --port")
    _check_output_dir(out_dir, "--out")
    given = {"rounding": rounding, "hidden": hidden_widths, "epochs": epochs, "batch": batch,
             "lr": lr, "loss": loss}
    config = TrainConfig(dataset=dataset, precision=precision, seed=seed, port=port,
                         **{k: v for k, v in given.items() if v is not None})
    # Validate the options as fxbp train would, before any work: a fixed-point backend's
    # checks (formats, rates, accumulators) when one is asked for, else float32's.
    fixed = [n for n in names if n not in (*FLOAT_BACKENDS, "torch")]
    Trainer(dataclasses.replace(config, backend="golden" if fixed else "float32"))
    request = CompareRequest(config=config, backends=names, targets=target_names,
                             batches=batch_sizes)
    say = (lambda text: None) if quiet else (lambda text: err.print(f"[dim]{escape(text)}[/]"))
    record = run_compare(request, say=say)
    record = write_outputs(record, out_dir)
    cols, rows, red = headline_rows(record)
    table = Table(title=escape(f"fxbp compare: {dataset} "
                               f"{'-'.join(map(str, record['network']))}"))
    for c in cols:
        table.add_column(escape(c), overflow="fold")
    for row, bad in zip(rows, red):
        table.add_row(*(escape(str(c)) for c in row), style="red" if bad else None)
    if not out.is_terminal:
        from rich.console import Console
        out = Console(width=max(out.width, min(220, Console(width=1000).measure(table).maximum)))
    out.print(table)
    agree = record["agreement"]
    if agree["status"] == "mismatch":
        out.print(f"[bold red]agreement FAILED: {escape(', '.join(agree['mismatched']))} differ "
                  f"from {escape(agree['reference'])} (weights_digest)[/]")
    elif agree["status"] == "agree":
        out.print(f"[green]agreement: {escape(', '.join(agree['digests']))} end with the same "
                  f"weights_digest[/]")
    else:
        out.print(f"agreement: nothing to compare ({escape(agree['note'])})")
    if record["machine"]["busy_note"]:
        out.print(f"[yellow]note: {escape(record['machine']['busy_note'])}[/]")
    out.print(f"report: {escape(str(out_dir / 'report.html'))}, JSON: "
              f"{escape(str(out_dir / 'compare.json'))}")
    if agree["status"] == "mismatch":
        raise SystemExit(1)
