"""Datasets: the built-in ones (no network access) and user CSV/NPZ files.

Features are scaled into ``[0, x_max]`` with ``x_max = min(1, input format max)``
(per-feature min-max over the training split, test values clipped into the
same range); the scaling is recorded in the result. Targets are one-hot for
several classes, or a single 0/1 output for two.
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FxbpError

__all__ = ["Dataset", "load_dataset", "load_file", "BUILTIN_DATASETS", "split_and_scale",
           "MAX_CLASSES"]

#: The most classes a target column may hold (one output unit each).
MAX_CLASSES = 4096
#: Float labels must be integers no larger than this in magnitude (exact in float64).
MAX_EXACT_LABEL = 2 ** 53


@dataclass
class Dataset:
    """Features, targets and labels, already split.

    ``x_*`` are real features (scaled), ``t_*`` real targets in ``[0, 1]``,
    ``y_*`` integer class labels used for accuracy.
    """

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    y_test: np.ndarray
    classes: list = field(default_factory=list)
    scaling: dict = field(default_factory=dict)
    default_hidden: tuple = ()
    initial: tuple | None = None      # (weights, biases) as reals, when the dataset fixes them
    split: str = "seeded"

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.t_train.shape[1]

    def describe(self) -> dict:
        return {"name": self.name, "features": self.n_features, "outputs": self.n_outputs,
                "classes": [str(c) for c in self.classes], "train_samples": len(self.x_train),
                "test_samples": len(self.x_test), "split": self.split, "scaling": self.scaling}


def _targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        return labels.reshape(-1, 1).astype(np.float64)
    t = np.zeros((len(labels), n_classes))
    t[np.arange(len(labels)), labels] = 1.0
    return t


def _check_scalable(name: str, x: np.ndarray, x_max: float, columns, first_line) -> None:
    """Refuse columns whose min-max scaling cannot be computed in float64 (the span
    ``max - min`` overflows, or ``x_max / span`` does), so no NaN reaches a cast."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    with np.errstate(over="ignore", divide="ignore"):
        span = hi - lo
        factor = np.where(span > 0, x_max / np.where(span > 0, span, 1.0), 0.0)
    bad = np.flatnonzero(~np.isfinite(span) | ~np.isfinite(factor))
    if bad.size:
        c = int(bad[0])
        col = f"column {columns[c]!r}" if columns else f"column {c + 1}"
        rows = int(np.argmin(x[:, c])), int(np.argmax(x[:, c]))
        where = (f"lines {rows[0] + first_line} and {rows[1] + first_line}" if first_line
                 else f"rows {rows[0] + 1} and {rows[1] + 1}")
        problem = ("is too wide: the span overflows" if not np.isfinite(span[c]) else
                   "is too narrow: scaling it to [0, 1] overflows")
        raise FxbpError(f"{name}: {col} spans [{lo[c]:g}, {hi[c]:g}] ({where}), which {problem}: "
                        f"rescale that column or drop it")


def split_and_scale(name, x, labels, classes, *, seed: int, test_fraction: float, x_max: float,
                    default_hidden=(), scale: str = "minmax", columns=None,
                    first_line: int | None = None) -> Dataset:
    """Seeded split, then scaling fitted on the training split.

    ``columns`` (feature names) and ``first_line`` (the file line of row 0)
    only sharpen messages.
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise FxbpError(f"{name}: features must be a non-empty 2-D array (samples x features), "
                        f"not shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise FxbpError(f"{name}: feature value at row {bad[0] + 1}, column {bad[1] + 1} is NaN or "
                        f"infinite: clean or drop that row")
    if scale == "minmax":
        _check_scalable(name, x, x_max, columns, first_line)
    if not 0.0 < test_fraction < 1.0:
        raise FxbpError(f"--test-fraction must be between 0 and 1, not {test_fraction!r}")
    n = len(x)
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n - n_test < 1:
        raise FxbpError(f"{name}: {n} samples cannot be split into train and test sets with "
                        f"--test-fraction {test_fraction}: give more data")
    order = np.random.default_rng(seed).permutation(n)
    tr, te = order[n_test:], order[:n_test]
    if scale == "minmax":
        lo = x[tr].min(axis=0)
        span = x[tr].max(axis=0) - lo
        factor = np.where(span > 0, x_max / np.where(span > 0, span, 1.0), 0.0)
        xs = np.clip((x - lo) * factor, 0.0, x_max)
        scaling = {"method": "minmax", "range": [0.0, x_max], "offset": lo.tolist(),
                   "factor": factor.tolist()}
    elif scale == "none":
        xs = x
        scaling = {"method": "none"}
    else:
        raise FxbpError(f"unknown scaling {scale!r}: choose minmax or none")
    t = _targets(labels, len(classes))
    return Dataset(name, xs[tr], t[tr], labels[tr], xs[te], t[te], labels[te], list(classes),
                   scaling, tuple(default_hidden), split=f"seeded permutation, seed {seed}, "
                   f"test fraction {test_fraction}")


def _seed_neuron() -> Dataset:
    x = np.array([[0.1, 0.3]])
    t = np.array([[0.03]])
    y = np.array([0])
    return Dataset("seed-neuron", x, t, y, x, t, y, ["y"], {"method": "none"}, (),
                   initial=([np.array([[0.5, 0.2]])], [np.array([1.83])]),
                   split="none: one sample, train = test")


def _xor(x_max: float) -> Dataset:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64) * x_max
    y = np.array([0, 1, 1, 0])
    t = y.reshape(-1, 1).astype(np.float64)
    return Dataset("xor", x, t, y, x, t, y, [0, 1], {"method": "minmax", "range": [0.0, x_max]},
                   (4,), split="none: all four patterns, train = test")


BUILTIN_DATASETS = ("seed-neuron", "xor", "iris", "digits")


def load_dataset(name: str, *, seed: int = 0, test_fraction: float = 0.2,
                 x_max: float = 1.0) -> Dataset:
    """A built-in dataset: ``seed-neuron``, ``xor``, ``iris`` or ``digits``."""
    if name == "seed-neuron":
        return _seed_neuron()
    if name == "xor":
        return _xor(x_max)
    if name in ("iris", "digits"):
        from sklearn import datasets  # bundled data files: no network
        bunch = datasets.load_iris() if name == "iris" else datasets.load_digits()
        return split_and_scale(name, bunch.data, bunch.target, list(bunch.target_names),
                               seed=seed, test_fraction=test_fraction, x_max=x_max,
                               default_hidden=(8,) if name == "iris" else (32,))
    raise FxbpError(f"unknown dataset {name!r}: choose one of {', '.join(BUILTIN_DATASETS)}, "
                    f"or pass --data FILE.csv|FILE.npz --target COLUMN")


def _labels_from(values, source: str, where=None):
    """Integer labels and class names from a target column.

    Integers, booleans and strings are class names as they are; floats must be
    integers of magnitude at most 2**53 (exact in float64). ``where(i)`` names
    the place of value ``i`` in messages ("line 5").
    """
    values = np.asarray(values)
    where = where or (lambda i: f"row {i + 1}")
    if values.size == 0:
        raise FxbpError(f"{source}: there are no labels: give data rows")
    if values.dtype.kind not in "biufUS":
        raise FxbpError(f"{source}: labels must be integers, booleans or strings, not "
                        f"{values.dtype}")
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not np.all(finite):
            i = int(np.flatnonzero(~finite)[0])
            raise FxbpError(f"{source}: the target column holds NaN or infinite values "
                            f"({where(i)}): fix them")
        whole = values == np.round(values)
        if not np.all(whole):
            i = int(np.flatnonzero(~whole)[0])
            raise FxbpError(f"{source}: the target column holds non-integer numbers ({values[i].item()!r} "
                            f"on {where(i)}); fxbp trains classifiers: give class labels")
        huge = np.abs(values) > MAX_EXACT_LABEL
        if np.any(huge):
            i = int(np.flatnonzero(huge)[0])
            raise FxbpError(f"{source}: label {values[i]:g} on {where(i)} is beyond the integers a "
                            f"float holds exactly (2**53): give class labels as integers or names")
        values = values.astype(np.int64)
    classes, labels = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise FxbpError(f"{source}: the target column has a single class ({classes[0].item()!r}): "
                        f"a classifier needs at least two")
    if len(classes) > MAX_CLASSES:
        raise FxbpError(f"{source}: the target column has {len(classes)} classes, more than "
                        f"{MAX_CLASSES}; fxbp trains classifiers: give class labels")
    return labels.reshape(-1), [c.item() if hasattr(c, "item") else c for c in classes]


def load_file(path: str | Path, target: str | None, *, seed: int = 0, test_fraction: float = 0.2,
              x_max: float = 1.0, scale: str = "minmax", input_range=None) -> Dataset:
    """User data: a CSV with a header row, or an NPZ.

    CSV: numeric feature columns plus the ``target`` column (class labels, any
    strings or integers). NPZ: arrays ``x`` (samples x features) and ``y``
    (labels), or the array named by ``target`` as labels.
    ``scale="none"`` takes features as they are and refuses values outside
    ``input_range`` (the input format's ``(min, max)``).
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise FxbpError(f"data file {source} does not exist: check the path")
    if path.is_dir():
        raise FxbpError(f"data file {source} is a directory: give a .csv or .npz file")
    suffix = path.suffix.lower()
    columns, first_line = None, None
    try:
        if suffix == ".csv":
            x, labels, classes, columns = _read_csv(path, target)
            first_line = 2
        elif suffix == ".npz":
            x, labels, classes = _read_npz(path, target)
        else:
            raise FxbpError(f"data file {source} must end in .csv or .npz, not {path.suffix or '(none)'}")
    except UnicodeDecodeError as exc:
        raise FxbpError(f"cannot read data file {source}: it is not UTF-8 text ({exc.reason} at "
                        f"byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise FxbpError(f"cannot read data file {source}: {exc}") from None
    if x.ndim != 2 or x.shape[1] < 1 or x.shape[0] != len(labels):
        raise FxbpError(f"{source}: features {x.shape} and labels ({len(labels)}) do not match: "
                        f"give one label per row")
    if scale == "none" and input_range is not None:
        finite = x[np.isfinite(x)]
        lo, hi = input_range
        if finite.size and (finite.min() < lo or finite.max() > hi):
            raise FxbpError(f"{source}: feature values span [{finite.min():g}, {finite.max():g}], "
                            f"outside the input format's range [{lo:g}, {hi:g}]: use --scale "
                            f"minmax or a wider input format")
    return split_and_scale(path.stem, x, labels, classes, seed=seed, test_fraction=test_fraction,
                           x_max=x_max, default_hidden=(max(4, min(64, 2 * x.shape[1])),),
                           scale=scale, columns=columns, first_line=first_line)


def _read_csv(path: Path, target: str | None):
    """Features, labels, class names and feature column names of a CSV with a header row.

    UTF-8 (a byte-order mark is allowed); blank lines are skipped.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(n, row) for n, row in enumerate(csv.reader(fh), start=1) if row]
    except csv.Error as exc:
        raise FxbpError(f"{path}: not a readable CSV file ({exc}): save it as comma-separated "
                        f"text with a header row") from None
    if not rows:
        raise FxbpError(f"{path}: the file is empty: give a header row and data rows")
    header = [h.strip() for h in rows[0][1]]
    if target is None:
        raise FxbpError(f"{path}: say which column holds the labels with --target "
                        f"(columns: {', '.join(header)})")
    seen: dict[str, int] = {}
    for i, h in enumerate(header):
        if h in seen:
            raise FxbpError(f"{path}: the header names column {h!r} twice (columns {seen[h] + 1} "
                            f"and {i + 1}): give every column its own name")
        seen[h] = i
    if target not in header:
        raise FxbpError(f"{path}: no column named {target!r}; columns are {', '.join(header)}")
    if len(header) < 2:
        raise FxbpError(f"{path}: the only column is the target {target!r}: add feature columns")
    ti = header.index(target)
    data = rows[1:]
    if not data:
        raise FxbpError(f"{path}: the file has a header but no data rows")
    feats, tvals, lines = [], [], []
    for r, row in data:
        if len(row) != len(header):
            raise FxbpError(f"{path}: line {r} has {len(row)} fields, the header has "
                            f"{len(header)}: fix that line")
        label = row[ti].strip()
        if not label:
            raise FxbpError(f"{path}: line {r} has an empty label in column {target!r}: give "
                            f"every row a class")
        tvals.append(label)
        lines.append(r)
        try:
            feats.append([float(v) for i, v in enumerate(row) if i != ti])
        except ValueError:
            bad = next(v for i, v in enumerate(row) if i != ti and not _is_float(v))
            raise FxbpError(f"{path}: line {r} has a non-numeric feature {bad!r}: features "
                            f"must be numbers") from None
    x = np.array(feats, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise FxbpError(f"{path}: line {lines[bad[0]]} holds a NaN or infinite feature: clean or "
                        f"drop that row")
    tarr = np.array(tvals)
    if all(_is_float(v) for v in tvals):
        tarr = tarr.astype(np.float64)
    labels, classes = _labels_from(tarr, str(path), lambda i: f"line {lines[i]}")
    columns = [h for i, h in enumerate(header) if i != ti]
    return x, labels, classes, columns


#: What numpy and zipfile raise on a damaged .npz (the zip or a member .npy).
_NPZ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
               NotImplementedError)


def _read_npz(path: Path, target: str | None):
    if not zipfile.is_zipfile(path):
        raise FxbpError(f"{path} is not a readable .npz file (not a zip archive): save it with "
                        f"numpy.savez")
    key = target or "y"
    if key == "x":
        raise FxbpError(f"{path}: --target names the features 'x': name the labels array")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if "x" not in names or key not in names:
                raise FxbpError(f"{path}: needs arrays 'x' (features) and {key!r} (labels); it "
                                f"has {', '.join(repr(n) for n in names) or 'none'}")
            x, y = z["x"], z[key]
    except FxbpError:
        raise
    except _NPZ_ERRORS as exc:
        raise FxbpError(f"{path} is not a readable .npz file ({exc}): save it with numpy.savez") from None
    for name, a in (("x", x), (key, y)):
        if not isinstance(a, np.ndarray):     # a zip member that is not a .npy comes back as bytes
            raise FxbpError(f"{path}: member {name!r} is not a NumPy array: save the file with "
                            f"numpy.savez")
    if x.dtype.kind not in "iuf":
        raise FxbpError(f"{path}: 'x' must be numeric (integers or floats), not {x.dtype}")
    if x.ndim != 2:
        raise FxbpError(f"{path}: 'x' must be 2-D (samples x features), not shape {x.shape}")
    if x.shape[0] < 1:
        raise FxbpError(f"{path}: 'x' has no rows: give data")
    if x.shape[1] < 1:
        raise FxbpError(f"{path}: 'x' has no feature columns (shape {x.shape}): give features")
    with np.errstate(over="ignore"):
        x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise FxbpError(f"{path}: 'x' holds NaN or infinite values: clean them")
    if y.ndim > 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise FxbpError(f"{path}: labels {key!r} must be 1-D (one class label per row), not shape "
                        f"{y.shape}")
    y = y.reshape(-1)
    if len(y) != len(x):
        raise FxbpError(f"{path}: features {x.shape} and labels ({len(y)}) do not match: "
                        f"give one label per row")
    labels, classes = _labels_from(y, str(path))
    return x, labels, classes


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False
