"""The training loop shared by every backend, with checkpoints and the result record.

``docs/results.md`` documents the result schema this module produces.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Dataset, load_dataset, load_file
from .errors import FxbpError
from .fixed import quantize
from .golden import check_fit
from .profile import TRAINING_STAGES, PrecisionProfile, load_profile, preset_names
from .recipes import recipe_for
from .runtime import FLOAT_BACKENDS, Runtime, make_runtime

__all__ = ["TrainConfig", "Trainer", "initial_parameters", "loss_value", "accuracy",
           "data_digest", "CHECKPOINT_FILE", "SCHEMA_VERSION"]

SCHEMA_VERSION = 2
CHECKPOINT_FILE = "checkpoint.npz"


@dataclass(frozen=True)
class TrainConfig:
    """What the user asked for. ``None`` means "the default": the dataset's recipe
    (``fxbp.sw.recipes``) for epochs, batch, lr, hidden and loss; for rounding, the
    recipe's rounding on a preset profile, else the profile's own per-stage roundings.
    :class:`Trainer` resolves these into ``trainer.config``."""

    dataset: str | None = None
    data: str | None = None
    target: str | None = None
    backend: str = "golden"
    device: str = "auto"
    precision: str = "fx16"
    rounding: str | None = None
    sigmoid: str | None = None
    hidden: tuple[int, ...] | None = None
    epochs: int | None = None
    batch: int | None = None
    lr: float | None = None
    loss: str | None = None
    seed: int = 0
    test_fraction: float = 0.2
    scale: str = "minmax"
    #: --backend rtl and board: MAC lanes (None: 8 on rtl, the board target's on a board),
    #: golden beside it every step, FPGA clock, dataset buffer (None: 0 on rtl, the
    #: target's on a board), waves.
    lanes: int | None = None
    verify_every_step: bool = False
    clock_mhz: float | None = None
    dataset_buffer: int | None = None
    #: --backend rtl and board: units without the registers only a fast clock needs
    #: (None: off on rtl, the target's choice on a board).
    shallow: bool | None = None
    #: --backend rtl and board: cast-event counters in the engine (None: on for rtl, the
    #: target's choice on a board).
    event_counters: bool | None = None
    #: --backend rtl: "generic", or the family whose primitive instances are simulated.
    primitives: str = "generic"
    trace: tuple | None = None
    #: --backend board (and auto): the serial port (or sim://BOARD), the board target,
    #: the baud rate (None: the target's).
    port: str | None = None
    board: str | None = None
    baud: int | None = None

    def identity(self) -> dict:
        """The fields that define a run's numbers (all but ``epochs`` and where it runs;
        the profile, with its roundings and sigmoid, and the data are compared by
        content, not by the options that named them)."""
        d = dataclasses.asdict(self)
        for k in ("epochs", "device", "precision", "data", "backend", "rounding", "sigmoid",
                  "lanes", "verify_every_step", "clock_mhz", "dataset_buffer", "shallow",
                  "event_counters", "primitives",
                  "trace",
                  "port", "board", "baud"):
            d.pop(k)
        d["hidden"] = list(d["hidden"]) if d["hidden"] is not None else None
        return d


def initial_parameters(sizes, seed: int, profile: PrecisionProfile):
    """Seeded initial weights (uniform, ``+-4 sqrt(6 / (in + out))``, the Glorot range
    for sigmoid units) and zero biases, rounded into the profile's formats and
    returned as the real values of those raw integers."""
    rng = np.random.default_rng([seed, 0x1417])
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        r = 4.0 * math.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-r, r, size=(n_out, n_in))
        weights.append(profile.weight.fmt.to_real(quantize(w, profile.weight.fmt)))
        biases.append(np.zeros(n_out))
    return weights, biases


def loss_value(y: np.ndarray, t: np.ndarray, loss: str) -> float:
    """Mean over samples of ``1/2 sum (t - y)**2`` or of the binary cross-entropy."""
    if loss == "mse":
        return float(np.mean(0.5 * np.sum((t - y) ** 2, axis=1)))
    yc = np.clip(y, 1e-7, 1 - 1e-7)
    return float(np.mean(-np.sum(t * np.log(yc) + (1 - t) * np.log(1 - yc), axis=1)))


def accuracy(y: np.ndarray, labels: np.ndarray) -> float:
    """Fraction correct: arg-max of the outputs, or ``y >= 0.5`` for one output."""
    pred = (y[:, 0] >= 0.5).astype(np.int64) if y.shape[1] == 1 else np.argmax(y, axis=1)
    return float(np.mean(pred == labels))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    The temporary name is chosen before the file exists and the file is created inside
    the ``try``, so an interrupt (SIGINT, SIGTERM) at any point leaves no temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2) + "\n").encode())


def data_digest(ds: Dataset) -> str:
    """SHA-256 over the split, scaled data (features, targets, labels; shapes included),
    so a resume can prove it trains on the same numbers."""
    h = hashlib.sha256()
    for a in (ds.x_train, ds.t_train, ds.y_train, ds.x_test, ds.t_test, ds.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _checkpoint_digest(meta: dict, arrays: dict) -> str:
    """SHA-256 over a checkpoint's metadata (canonical JSON) and every array (name,
    dtype, shape, bytes): any change after writing, in range or not, is detected."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _memory_available() -> int | None:
    """Bytes of memory available now (``MemAvailable``), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


#: Bytes a runtime holds per parameter (raw and float copies, the new values, the
#: gradient) and per activation value (raw, float, delta, error), generously.
BYTES_PER_PARAMETER = 64
BYTES_PER_ACTIVATION = 64


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo or (
            hi is not None and value > hi):
        span = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise FxbpError(f"{name} must be an integer {span}, not {value!r}")
    return int(value)


def _first_difference(a, b, path=""):
    """The first path at which two JSON-like values differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}{k}"
            d = _first_difference(a[k], b[k], f"{path}{k}.")
            if d is not None:
                return d
        return None
    return None if a == b else path.rstrip(".")


def _lookup(obj, path: str):
    for k in path.split("."):
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


@dataclass
class Trainer:
    """Builds the dataset, profile and runtime of a :class:`TrainConfig` and trains.

    All validation happens in the constructor, before anything is written.
    ``requested`` is the configuration as given; ``config`` the resolved one.
    """

    config: TrainConfig
    profile: PrecisionProfile = field(init=False)
    dataset: Dataset = field(init=False)
    runtime: Runtime = field(init=False)

    def __post_init__(self):
        cfg = self.requested = self.config
        _check_int("--seed", cfg.seed, 0, (1 << 32) - 1)
        if (cfg.dataset is None) == (cfg.data is None):
            raise FxbpError("give exactly one of --dataset NAME or --data FILE")
        self.recipe_name, recipe = recipe_for(cfg.dataset)
        epochs = _check_int("--epochs", recipe.epochs if cfg.epochs is None else cfg.epochs, 1)
        lr = recipe.lr if cfg.lr is None else cfg.lr
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr)
                and lr > 0):
            raise FxbpError(f"--lr must be a positive number, not {lr!r}")
        loss = recipe.loss if cfg.loss is None else cfg.loss
        if loss not in ("mse", "xent"):
            raise FxbpError(f"unknown loss {loss!r}: choose mse or xent")
        profile = load_profile(cfg.precision)
        if cfg.rounding is not None:
            rounding, self.rounding_source = cfg.rounding, "command line"
        elif recipe.rounding is not None and cfg.precision in preset_names():
            rounding, self.rounding_source = recipe.rounding, "recipe"
        else:
            rounding, self.rounding_source = None, "profile"
        if rounding is not None:
            profile = profile.with_rounding(rounding)
        if cfg.sigmoid is not None:
            profile = dataclasses.replace(profile, sigmoid=dataclasses.replace(
                profile.sigmoid, kind=cfg.sigmoid))
        self.profile = profile
        x_max = min(1.0, profile.input.fmt.max_real)
        if cfg.dataset is not None:
            self.dataset = load_dataset(cfg.dataset, seed=cfg.seed, test_fraction=cfg.test_fraction,
                                        x_max=x_max)
        else:
            fmt = profile.input.fmt
            self.dataset = load_file(cfg.data, cfg.target, seed=cfg.seed,
                                     test_fraction=cfg.test_fraction, x_max=x_max, scale=cfg.scale,
                                     input_range=(fmt.min_real, fmt.max_real))
        ds = self.dataset
        n_train = len(ds.x_train)
        if cfg.batch is None:
            batch = min(recipe.batch, n_train)
        else:
            batch = _check_int("--batch", cfg.batch, 1)
            if batch > n_train:
                raise FxbpError(f"--batch {batch} exceeds the {n_train} training samples of "
                                f"{ds.name}, so every step would be a smaller batch: use --batch "
                                f"{n_train} or less")
        if cfg.hidden is not None:
            hidden = tuple(cfg.hidden)
        elif recipe.hidden is not None:
            hidden = recipe.hidden
        else:
            hidden = ds.default_hidden
        for h in hidden:
            _check_int("--hidden widths", h, 1)
        hidden = tuple(int(h) for h in hidden)
        if ds.initial is not None and hidden:
            raise FxbpError(f"dataset {ds.name} fixes a network with no hidden layer: drop --hidden")
        self.sizes = (ds.n_features, *hidden, ds.n_outputs)
        self.config = dataclasses.replace(cfg, epochs=epochs, batch=batch, lr=float(lr), loss=loss,
                                          hidden=hidden, rounding=rounding)
        self._from_recipe = [k for k in ("epochs", "batch", "lr", "hidden", "loss", "rounding")
                             if getattr(cfg, k) is None and not (k == "rounding" and rounding is None)]
        self._check_size(batch)
        if ds.initial is not None:
            # The dataset's own values, exact: float backends start from them as given
            # (the textbook's numbers); fixed-point runtimes round them into the formats.
            w0, b0 = ds.initial
        else:
            w0, b0 = initial_parameters(self.sizes, cfg.seed, profile)
        extra = {}
        if cfg.backend == "rtl":
            extra = {"lanes": cfg.lanes or 8, "verify": cfg.verify_every_step, "trace": cfg.trace,
                     "clock_mhz": cfg.clock_mhz, "dataset_buffer": cfg.dataset_buffer or 0,
                     "family": None if cfg.primitives == "generic" else cfg.primitives,
                     "shallow": bool(cfg.shallow),
                     "event_counters": cfg.event_counters is not False}
        elif cfg.backend in ("board", "auto"):
            board = {"port": cfg.port, "board": cfg.board, "baud": cfg.baud, "lanes": cfg.lanes,
                     "clock_mhz": cfg.clock_mhz, "dataset_buffer": cfg.dataset_buffer,
                     "shallow": cfg.shallow, "event_counters": cfg.event_counters}
            extra = board if cfg.backend == "board" else {"board": board}
        self.runtime = make_runtime(cfg.backend, self.sizes, profile, w0, b0, loss=loss,
                                    seed=cfg.seed, lr=float(lr), batch=batch, device=cfg.device,
                                    **extra)
        self._train_data = self.runtime.prepare(ds.x_train, ds.t_train)
        self._test_data = self.runtime.prepare(ds.x_test, ds.t_test)
        self.data_digest = data_digest(ds)
        self.history: list[dict] = []
        self.epoch = 0
        self.samples_trained = 0
        self.train_seconds = 0.0
        self.compile_seconds = 0.0
        self._warm = False
        self._resumed_from: Path | None = None
        self.first_step: dict | None = None

    def _check_size(self, batch: int) -> None:
        """Refuse, before anything is allocated, a network the accumulators cannot hold
        (fixed-point backends) or that would not fit in memory."""
        if self.requested.backend not in FLOAT_BACKENDS:
            check_fit(self.sizes, self.profile, batch)
        params = sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        values = max(batch, len(self.dataset.x_test), len(self.dataset.x_train)) * sum(self.sizes)
        need = params * BYTES_PER_PARAMETER + values * BYTES_PER_ACTIVATION
        have = _memory_available()
        if have is not None and need > 0.8 * have:
            raise FxbpError(f"a {'-'.join(map(str, self.sizes))} network needs about "
                            f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB of "
                            f"memory available: lower --hidden")

    def identity(self) -> dict:
        """What must match for a checkpoint to continue this run."""
        d = self.config.identity()
        d["sizes"] = list(self.sizes)
        d["fixed_point"] = self.runtime.fixed_point
        if not self.runtime.fixed_point:
            d["float"] = self.runtime.name
        return d

    def _profile_identity(self) -> dict:
        d = self.profile.as_dict()
        d.pop("name")
        d.pop("description")
        return d

    # -- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self, directory: Path) -> Path:
        """Raw parameters, formats, generator state and history in one ``.npz``, atomically."""
        meta = {"schema": SCHEMA_VERSION, "identity": self.identity(), "epoch": self.epoch,
                "history": self.history, "samples_trained": self.samples_trained,
                "train_seconds": self.train_seconds, "profile_toml": self.profile.to_toml(),
                "profile": self._profile_identity(), "data_digest": self.data_digest,
                "events": self.runtime.event_counts(),
                "events_by_layer": self.runtime.layer_event_counts(),
                "generator": {"kind": "jenkins32-counter", "seed": self.config.seed,
                              "step": int(self.runtime.state()["step"])}}
        state = self.runtime.state()
        meta["digest"] = _checkpoint_digest(meta, state)
        import io
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), **state)
        path = Path(directory) / CHECKPOINT_FILE
        _atomic_write_bytes(path, buf.getvalue())
        return path

    def _read_checkpoint(self, directory: Path) -> tuple[dict, dict]:
        """``(arrays, meta)`` of a checkpoint, checked to belong to this very run."""
        path = Path(directory) / CHECKPOINT_FILE
        if not path.exists():
            raise FxbpError(f"no checkpoint in {directory} (expected {CHECKPOINT_FILE}): give the "
                            f"directory a run wrote with --checkpoint")
        damaged = f"checkpoint {path} is damaged or not an fxbp checkpoint"
        fix = "start without --resume, or give an intact checkpoint"
        if not path.is_file():
            raise FxbpError(f"{damaged} (not a regular file): {fix}")
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # any parse failure of untrusted bytes: zip, npy, zlib, EOF
            raise FxbpError(f"{damaged} ({type(exc).__name__}): {fix}") from None
        if not all(isinstance(a, np.ndarray) for a in arrays.values()):
            raise FxbpError(f"{damaged} (a member is not array data): {fix}")
        raw_meta = arrays.pop("meta", None)
        try:
            if raw_meta is None or raw_meta.shape != () or raw_meta.dtype.kind != "U":
                raise ValueError("no meta record")
            meta = json.loads(str(raw_meta))
            if not isinstance(meta, dict):
                raise ValueError("meta is not an object")
        except (ValueError, RecursionError) as exc:
            raise FxbpError(f"{damaged} ({type(exc).__name__}): {fix}") from None
        if meta.get("schema") != SCHEMA_VERSION or type(meta.get("schema")) is not int:
            raise FxbpError(f"checkpoint {path} has schema {meta.get('schema')!r}, this fxbp reads "
                            f"{SCHEMA_VERSION}: start a new run")
        digest = meta.pop("digest", None)
        try:
            intact = digest == _checkpoint_digest(meta, arrays)
        except (TypeError, ValueError, RecursionError):
            intact = False
        if not intact:
            raise FxbpError(f"{damaged} (its contents do not match the checksum it was written "
                            f"with): {fix}")
        types = {"identity": dict, "epoch": int, "history": list, "samples_trained": int,
                 "train_seconds": (int, float), "profile_toml": str, "profile": dict,
                 "data_digest": str, "events": dict, "generator": dict}
        for key, kind in types.items():
            if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
                raise FxbpError(f"{damaged} (meta field {key!r} is missing or has the wrong "
                                f"type): {fix}")
        mine = self.identity()
        diff = ("sizes" if meta["identity"].get("sizes") != mine["sizes"] else
                _first_difference(meta["identity"], mine))
        if diff is not None:
            raise FxbpError(f"checkpoint {path} belongs to another run: it has {diff}="
                            f"{_lookup(meta['identity'], diff)!r}, this run {_lookup(mine, diff)!r}; "
                            f"resume with the same options (only --epochs and --device may change)")
        diff = _first_difference(meta["profile"], self._profile_identity())
        if diff is not None:
            raise FxbpError(f"checkpoint {path} was trained with another precision profile: "
                            f"{diff} is {_lookup(meta['profile'], diff)!r} there, "
                            f"{_lookup(self._profile_identity(), diff)!r} now; resume with the "
                            f"profile it was trained with")
        if meta["data_digest"] != self.data_digest:
            raise FxbpError(f"checkpoint {path} was trained on other data (the training and test "
                            f"sets differ from this run's after splitting and scaling): resume "
                            f"with the same data file, target, scaling and seed")
        return arrays, meta

    def _check_state(self, path, arrays: dict, meta: dict) -> None:
        """Every field of a checkpoint against the formats and the run: nothing loads
        that this run could not have written."""
        bad = f"checkpoint {path} is damaged or not an fxbp checkpoint"
        fix = "start without --resume, or give an intact checkpoint"
        n = len(self.sizes) - 1
        want = {"step", *(f"w{l}" for l in range(n)), *(f"b{l}" for l in range(n))}
        if set(arrays) != want:
            odd = sorted(want - set(arrays)) or sorted(set(arrays) - want)
            raise FxbpError(f"{bad} (arrays {', '.join(odd)} "
                            f"{'missing' if want - set(arrays) else 'unexpected'}): {fix}")
        step = arrays["step"]
        epoch = meta["epoch"]
        per_epoch = math.ceil(len(self.dataset.x_train) / self.config.batch)
        if step.shape != () or step.dtype.kind not in "iu" or int(step) != epoch * per_epoch:
            raise FxbpError(f"{bad} (step {step!r} is not {epoch} epochs x {per_epoch} steps): {fix}")
        if not 0 <= epoch <= self.config.epochs:
            if epoch > self.config.epochs:
                raise FxbpError(f"checkpoint {path} already has {epoch} epochs, more than "
                                f"--epochs {self.config.epochs}: ask for at least {epoch}")
            raise FxbpError(f"{bad} (epoch {epoch}): {fix}")
        gen = meta["generator"]
        if gen != {"kind": "jenkins32-counter", "seed": self.config.seed, "step": int(step)}:
            raise FxbpError(f"{bad} (generator state {gen!r}): {fix}")
        p = self.profile
        for l in range(n):
            for name, shape, fmt in ((f"w{l}", (self.sizes[l + 1], self.sizes[l]), p.weight.fmt),
                                     (f"b{l}", (self.sizes[l + 1],), p.bias.fmt)):
                a = arrays[name]
                if a.shape != shape:
                    raise FxbpError(f"{bad} ({name} has shape {a.shape}, the network needs "
                                    f"{shape}): {fix}")
                if self.runtime.fixed_point:
                    if a.dtype.kind not in "iu" or (a.size and (a.min() < fmt.min_raw or
                                                                a.max() > fmt.max_raw)):
                        raise FxbpError(f"{bad} ({name} is not raw {fmt} integers): {fix}")
                elif a.dtype.kind != "f" or not np.all(np.isfinite(a)):
                    raise FxbpError(f"{bad} ({name} is not finite floats): {fix}")
        hist = meta["history"]
        rows_ok = len(hist) == epoch and all(
            isinstance(h, dict) and h.get("epoch") == i + 1 and all(
                isinstance(h.get(k), (int, float)) and not isinstance(h.get(k), bool)
                and math.isfinite(h[k]) and h[k] >= 0 and (k == "loss" or h[k] <= 1)
                for k in ("loss", "train_accuracy", "test_accuracy"))
            for i, h in enumerate(hist))
        if not rows_ok:
            raise FxbpError(f"{bad} (history does not match {epoch} epochs): {fix}")
        if meta["samples_trained"] != epoch * len(self.dataset.x_train) or not (
                math.isfinite(meta["train_seconds"]) and meta["train_seconds"] >= 0):
            raise FxbpError(f"{bad} (sample count or training time): {fix}")
        events, sites = meta["events"], self.runtime.event_counts()
        if sites and events == {}:
            raise FxbpError(f"checkpoint {path} holds no cast-event counts (a backend that "
                            f"counts none wrote it, such as an engine built without event "
                            f"counters): --backend {self.runtime.name} would count from zero "
                            f"mid-run; resume it where no events are counted")
        if not sites:
            events = {}             # this backend counts none: the checkpoint's are not used
        if set(events) != set(sites) or not all(
                isinstance(c, dict) and set(c) == {"overflow", "underflow", "total"} and all(
                    isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 63
                    for v in c.values())
                for c in events.values()):
            raise FxbpError(f"{bad} (cast-event counts): {fix}")
        by_layer = meta.get("events_by_layer") if sites else None
        layers = {str(l) for l in range(1, len(self.sizes))}
        if by_layer is not None and not (
                isinstance(by_layer, dict) and set(by_layer) == layers and all(
                    isinstance(per, dict) and set(per) == set(sites) - {"input"} and all(
                        isinstance(c, dict) and set(c) == {"overflow", "underflow", "total"}
                        and all(isinstance(v, int) and not isinstance(v, bool)
                                and 0 <= v < 1 << 63 for v in c.values())
                        for c in per.values())
                    for per in by_layer.values()) and all(
                    sum(per[site][k] for per in by_layer.values()) == events[site][k]
                    for site in set(sites) - {"input"} for k in events[site])):
            raise FxbpError(f"{bad} (per-layer cast-event counts, or their sums): {fix}")

    def load_checkpoint(self, directory: Path) -> None:
        """Continue from ``directory``: refused unless it holds this same run (options,
        profile and data), intact and consistent."""
        path = Path(directory) / CHECKPOINT_FILE
        arrays, meta = self._read_checkpoint(directory)
        self._check_state(path, arrays, meta)
        self.runtime.load_state(arrays)
        self.runtime.load_event_counts(meta["events"], meta.get("events_by_layer"))
        self.epoch = meta["epoch"]
        self.history = meta["history"]
        self.samples_trained = meta["samples_trained"]
        self.train_seconds = float(meta["train_seconds"])
        self._resumed_from = Path(directory).resolve()

    def check_checkpoint_target(self, directory: Path) -> None:
        """Refuse to write checkpoints into ``directory`` when that would overwrite another
        run's checkpoint, or this run's own from further along."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise FxbpError(f"checkpoint directory {directory} is a file: give a directory")
        if not (directory / CHECKPOINT_FILE).exists() or directory.resolve() == self._resumed_from:
            return
        try:
            arrays, meta = self._read_checkpoint(directory)
        except FxbpError as exc:
            raise FxbpError(f"{directory} already holds a checkpoint that this run would overwrite "
                            f"({exc}): choose another --checkpoint directory") from None
        if meta["epoch"] > self.epoch:
            raise FxbpError(f"{directory} holds this run further along (epoch {meta['epoch']}): "
                            f"resume from it with --resume {directory}")

    # -- training --------------------------------------------------------------------------
    def evaluate(self, xp, t, labels) -> tuple[float, float]:
        y = self.runtime.predict(xp)
        return loss_value(y, t, self.config.loss), accuracy(y, labels)

    def batch_order(self, epoch: int) -> np.ndarray:
        """Training-set indices in the order epoch ``epoch`` (1-based) visits them; batches
        are consecutive slices. Host-side and seeded: the same for every backend."""
        return np.random.default_rng([self.config.seed, epoch]).permutation(len(self.dataset.x_train))

    def warm_up(self) -> float:
        """Compile (or load from cache) the runtime's kernels outside the timed region;
        returns the seconds it took (``compile_seconds`` in the record)."""
        if not self._warm:
            t0 = time.perf_counter()
            self.runtime.warm_up()
            self.compile_seconds += time.perf_counter() - t0
            self._warm = True
        return self.compile_seconds

    def run(self, *, progress=None, checkpoint_dir: Path | None = None) -> dict:
        """Train up to ``config.epochs``; ``progress`` is a :class:`TrainProgress` or None."""
        cfg, ds, rt = self.config, self.dataset, self.runtime
        if checkpoint_dir is not None:
            self.check_checkpoint_target(checkpoint_dir)
        self.warm_up()
        (xtr, ttr), (xte, _) = self._train_data, self._test_data
        n = len(xtr)
        n_batches = math.ceil(n / cfg.batch)
        if self.epoch == 0 and cfg.epochs == 1 and n_batches == 1:
            from .explain import first_step_record      # a one-step run records its step
            self.first_step = first_step_record(self)
        if progress:
            progress.start(cfg.epochs, self.epoch, n_batches)
        for epoch in range(self.epoch + 1, cfg.epochs + 1):
            order = self.batch_order(epoch)
            t0 = time.perf_counter()
            on_batch = (lambda: progress.batch_done(rt.progress_info())) if progress else None
            rt.train_epoch(xtr, ttr, order, cfg.batch, on_batch)
            rt.synchronize()
            self.train_seconds += time.perf_counter() - t0
            self.samples_trained += n
            loss, train_acc = self.evaluate(xtr, ds.t_train, ds.y_train)
            _, test_acc = self.evaluate(xte, ds.t_test, ds.y_test)
            self.history.append({"epoch": epoch, "loss": loss, "train_accuracy": train_acc,
                                 "test_accuracy": test_acc})
            self.epoch = epoch
            if checkpoint_dir is not None:
                self.save_checkpoint(checkpoint_dir)
            if progress:
                progress.epoch_done(self.history[-1])
        if progress:
            progress.stop()
        return self.result()

    def _rounding_label(self) -> str:
        modes = {self.profile.stage(n).rounding.value for n in TRAINING_STAGES}
        return modes.pop() if len(modes) == 1 else "per-stage"

    def result(self) -> dict:
        """The result record (``docs/results.md``)."""
        rt, cfg = self.runtime, self.config
        last = self.history[-1] if self.history else {}
        return {
            "schema": SCHEMA_VERSION,
            "dataset": {**self.dataset.describe(), "digest": self.data_digest},
            "backend": rt.name,
            "requested_backend": cfg.backend,
            "fixed_point": rt.fixed_point,
            "runtime": rt.describe(),
            **({"backend_selection": rt.selection} if rt.selection is not None else {}),
            "network": {"sizes": list(self.sizes), "activation": "sigmoid",
                        "sigmoid": self.profile.sigmoid.as_dict(), "loss": cfg.loss},
            "precision": self.profile.as_dict(),
            "rounding": self._rounding_label(),
            "rounding_source": self.rounding_source,
            "recipe": {"name": self.recipe_name, **recipe_for(cfg.dataset)[1].as_dict(),
                       "used_for": self._from_recipe},
            "epochs": self.epoch,
            "batch": cfg.batch,
            "learning_rate": rt.learning_rate_info,
            "seed": cfg.seed,
            "history": self.history,
            "final_loss": last.get("loss"),
            "final_train_accuracy": last.get("train_accuracy"),
            "final_test_accuracy": last.get("test_accuracy"),
            "samples_per_second": (self.samples_trained / self.train_seconds
                                   if self.train_seconds > 0 else None),
            "train_seconds": self.train_seconds,
            "compile_seconds": self.compile_seconds,
            "cast_events": rt.event_counts(),
            "cast_events_by_layer": rt.layer_event_counts(),
            **({"hardware": rt.hardware()} if rt.hardware() is not None else {}),
            **({"first_step": self.first_step} if self.first_step is not None else {}),
            "layers": rt.real_layers(),
            "weights_digest": rt.digest(),
        }
