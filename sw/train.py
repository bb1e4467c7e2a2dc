"""The training loop shared by every backend, with checkpoints and the result record.

``docs/results.md`` documents the result schema this module produces.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Dataset, load_dataset, load_file
from .errors import FxbpError
from .fixed import quantize
from .profile import PrecisionProfile, load_profile
from .runtime import Runtime, make_runtime

__all__ = ["TrainConfig", "Trainer", "initial_parameters", "loss_value", "accuracy",
           "CHECKPOINT_FILE", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
CHECKPOINT_FILE = "checkpoint.npz"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (and must match on resume, bar ``epochs``)."""

    dataset: str | None = None
    data: str | None = None
    target: str | None = None
    backend: str = "golden"
    device: str = "auto"
    precision: str = "fx16"
    rounding: str = "nearest-even"
    sigmoid: str | None = None
    hidden: tuple[int, ...] | None = None
    epochs: int = 10
    batch: int = 32
    lr: float = 1.0
    loss: str = "mse"
    seed: int = 0
    test_fraction: float = 0.2
    scale: str = "minmax"

    def identity(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("epochs")
        d.pop("device")            # where it runs does not change the numbers
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2) + "\n").encode())


@dataclass
class Trainer:
    """Builds the dataset, profile and runtime of a :class:`TrainConfig` and trains.

    All validation happens in the constructor, before anything is written.
    """

    config: TrainConfig
    profile: PrecisionProfile = field(init=False)
    dataset: Dataset = field(init=False)
    runtime: Runtime = field(init=False)

    def __post_init__(self):
        cfg = self.config
        if not isinstance(cfg.epochs, int) or cfg.epochs < 1:
            raise FxbpError(f"--epochs must be a positive integer, not {cfg.epochs!r}")
        if not isinstance(cfg.batch, int) or cfg.batch < 1:
            raise FxbpError(f"--batch must be a positive integer, not {cfg.batch!r}")
        if not (isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and cfg.lr > 0):
            raise FxbpError(f"--lr must be a positive number, not {cfg.lr!r}")
        if cfg.loss not in ("mse", "xent"):
            raise FxbpError(f"unknown loss {cfg.loss!r}: choose mse or xent")
        profile = load_profile(cfg.precision).with_rounding(cfg.rounding)
        if cfg.sigmoid is not None:
            profile = dataclasses.replace(profile, sigmoid=dataclasses.replace(
                profile.sigmoid, kind=cfg.sigmoid))
        self.profile = profile
        x_max = min(1.0, profile.input.fmt.max_real)
        if (cfg.dataset is None) == (cfg.data is None):
            raise FxbpError("give exactly one of --dataset NAME or --data FILE")
        if cfg.dataset is not None:
            self.dataset = load_dataset(cfg.dataset, seed=cfg.seed, test_fraction=cfg.test_fraction,
                                        x_max=x_max)
        else:
            fmt = profile.input.fmt
            self.dataset = load_file(cfg.data, cfg.target, seed=cfg.seed,
                                     test_fraction=cfg.test_fraction, x_max=x_max, scale=cfg.scale,
                                     input_range=(fmt.min_real, fmt.max_real))
        hidden = self.dataset.default_hidden if cfg.hidden is None else tuple(cfg.hidden)
        if any((not isinstance(h, int)) or h < 1 for h in hidden):
            raise FxbpError(f"--hidden widths must be positive integers, not {list(hidden)}")
        self.sizes = (self.dataset.n_features, *hidden, self.dataset.n_outputs)
        if self.dataset.initial is not None:
            if hidden:
                raise FxbpError(f"dataset {self.dataset.name} fixes a network with no hidden "
                                f"layer: drop --hidden")
            w0 = [profile.weight.fmt.to_real(quantize(w, profile.weight.fmt))
                  for w in self.dataset.initial[0]]
            b0 = [profile.bias.fmt.to_real(quantize(b, profile.bias.fmt))
                  for b in self.dataset.initial[1]]
        else:
            w0, b0 = initial_parameters(self.sizes, cfg.seed, profile)
        self.runtime = make_runtime(cfg.backend, self.sizes, profile, w0, b0, loss=cfg.loss,
                                    seed=cfg.seed, lr=cfg.lr, batch=cfg.batch, device=cfg.device)
        ds = self.dataset
        self._train_data = self.runtime.prepare(ds.x_train, ds.t_train)
        self._test_data = self.runtime.prepare(ds.x_test, ds.t_test)
        self.history: list[dict] = []
        self.epoch = 0
        self.samples_trained = 0
        self.train_seconds = 0.0

    # -- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self, directory: Path) -> Path:
        """Raw parameters, formats, generator state and history in one ``.npz``, atomically."""
        meta = {"schema": SCHEMA_VERSION, "config": self.config.identity(), "epoch": self.epoch,
                "history": self.history, "samples_trained": self.samples_trained,
                "train_seconds": self.train_seconds, "profile_toml": self.profile.to_toml(),
                "events": self.runtime.event_counts(), "sizes": list(self.sizes),
                "generator": {"kind": "jenkins32-counter", "seed": self.config.seed,
                              "step": int(self.runtime.state()["step"])}}
        import io
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), **self.runtime.state())
        path = Path(directory) / CHECKPOINT_FILE
        _atomic_write_bytes(path, buf.getvalue())
        return path

    def load_checkpoint(self, directory: Path) -> None:
        path = Path(directory) / CHECKPOINT_FILE
        if not path.exists():
            raise FxbpError(f"no checkpoint in {directory} (expected {CHECKPOINT_FILE}): give the "
                            f"directory a run wrote with --checkpoint")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError) as exc:
            raise FxbpError(f"checkpoint {path} is unreadable ({exc}): start without --resume") from None
        if meta.get("schema") != SCHEMA_VERSION:
            raise FxbpError(f"checkpoint {path} has schema {meta.get('schema')}, this fxbp reads "
                            f"{SCHEMA_VERSION}: start a new run")
        mine = self.config.identity()
        diff = [k for k in mine if meta["config"].get(k) != mine[k]]
        if diff:
            k = diff[0]
            raise FxbpError(f"checkpoint {path} was trained with {k}={meta['config'].get(k)!r}, "
                            f"not {mine[k]!r}: resume with the same options (only --epochs may change)")
        if meta["epoch"] > self.config.epochs:
            raise FxbpError(f"checkpoint {path} already has {meta['epoch']} epochs, more than "
                            f"--epochs {self.config.epochs}: ask for at least {meta['epoch']}")
        self.runtime.load_state(arrays)
        self.runtime.load_event_counts(meta["events"])
        self.epoch = meta["epoch"]
        self.history = meta["history"]
        self.samples_trained = meta["samples_trained"]
        self.train_seconds = meta["train_seconds"]

    # -- training --------------------------------------------------------------------------
    def evaluate(self, xp, t, labels) -> tuple[float, float]:
        y = self.runtime.predict(xp)
        return loss_value(y, t, self.config.loss), accuracy(y, labels)

    def run(self, *, progress=None, checkpoint_dir: Path | None = None) -> dict:
        """Train up to ``config.epochs``; ``progress`` is a :class:`TrainProgress` or None."""
        cfg, ds, rt = self.config, self.dataset, self.runtime
        (xtr, ttr), (xte, _) = self._train_data, self._test_data
        n = len(xtr)
        n_batches = math.ceil(n / cfg.batch)
        if progress:
            progress.start(cfg.epochs, self.epoch, n_batches)
        for epoch in range(self.epoch + 1, cfg.epochs + 1):
            order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            t0 = time.perf_counter()
            rt.train_epoch(xtr, ttr, order, cfg.batch, progress.batch_done if progress else None)
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

    def result(self) -> dict:
        """The result record (``docs/results.md``)."""
        rt, cfg = self.runtime, self.config
        last = self.history[-1] if self.history else {}
        return {
            "schema": SCHEMA_VERSION,
            "dataset": self.dataset.describe(),
            "backend": rt.name,
            "requested_backend": cfg.backend,
            "fixed_point": rt.fixed_point,
            "runtime": rt.describe(),
            "network": {"sizes": list(self.sizes), "activation": "sigmoid",
                        "sigmoid": self.profile.sigmoid.as_dict(), "loss": cfg.loss},
            "precision": self.profile.as_dict(),
            "rounding": cfg.rounding,
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
            "cast_events": rt.event_counts(),
            "layers": rt.real_layers(),
            "weights_digest": rt.digest(),
        }
