"""One host-runtime interface for every backend.

A runtime owns a network's parameters on some executor (NumPy golden model,
float reference, and later OpenCL, RTL simulation, a board) and offers the same
calls: put data in its representation, train on a batch, predict, report its
state. ``fxbp.sw.train`` drives any of them the same way.
"""

from __future__ import annotations

import abc

import numpy as np

from .errors import FxbpError
from .fixed import quantize
from .float_ref import FloatMLP
from .golden import GoldenMLP, learning_rate_raw, weights_digest
from .profile import PrecisionProfile

__all__ = ["Runtime", "GoldenRuntime", "FloatRuntime", "BACKENDS", "FLOAT_BACKENDS", "make_runtime"]


def golden_model(sizes, profile, init_weights, init_biases, *, loss, seed, batch,
                 eta: tuple[int, int]) -> GoldenMLP:
    """A golden model from real initial values (rounded into the formats), checked for
    ``batch`` and ``eta`` before any work: accumulators (section 4) and every exact
    intermediate. The OpenCL runtime uses one too, as its static plan."""
    model = GoldenMLP(sizes, profile, [quantize(w, profile.weight.fmt) for w in init_weights],
                      [quantize(b, profile.bias.fmt) for b in init_biases], loss=loss, seed=seed)
    model.ensure_fits(batch, eta)
    return model


class Runtime(abc.ABC):
    """What a training backend provides.

    ``init_weights``/``init_biases`` are real values. Fixed-point runtimes round them
    into the weight and bias formats (nearest-even, saturate); float runtimes take
    them as given. Random initialisation (``train.initial_parameters``) draws values
    already representable in the weight format, so every backend starts from the same
    point; a dataset's fixed values (seed-neuron's textbook weights) reach the float
    backends exactly.
    """

    name: str = "?"
    #: True when the runtime implements docs/datapath.md (its digest is comparable bit for bit).
    fixed_point: bool = False
    #: ``--backend auto``: every backend tried, in order, with whether it ran and why not.
    selection: list | None = None

    def __init__(self, sizes, profile: PrecisionProfile, init_weights, init_biases, *,
                 loss: str, seed: int, lr: float, batch: int):
        self.sizes = tuple(sizes)
        self.profile = profile
        self.loss = loss
        self.seed = seed
        self.lr = lr
        self.batch = batch

    def describe(self) -> dict:
        """What actually runs: backend, platform, device."""
        return {"backend": self.name, "platform": "numpy", "device": "host CPU"}

    @abc.abstractmethod
    def prepare(self, x, t):
        """Data (real features and targets) in this runtime's representation."""

    @abc.abstractmethod
    def train_batch(self, x, t) -> None:
        """One SGD step on prepared data."""

    def train_epoch(self, x, t, order: np.ndarray, batch: int, on_batch=None) -> None:
        """One pass over prepared data in ``order``, ``batch`` samples a step (the last
        step takes what is left). Runtimes that keep data on a device override this."""
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            self.train_batch(x[idx], t[idx])
            if on_batch is not None:
                on_batch()

    @abc.abstractmethod
    def predict(self, x) -> np.ndarray:
        """Real-valued outputs for prepared inputs."""

    def raw_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Weights and biases as raw integers in the profile's formats (float runtimes
        round theirs to nearest-even, saturating)."""
        layers = self._parameters()[1]
        if self.fixed_point:
            return [(np.asarray(w, dtype=np.int64), np.asarray(b, dtype=np.int64)) for w, b in layers]
        p = self.profile
        return [(quantize(np.asarray(w, dtype=np.float64), p.weight.fmt),
                 quantize(np.asarray(b, dtype=np.float64), p.bias.fmt)) for w, b in layers]

    def real_layers(self) -> list[dict]:
        """Weights and biases as real numbers, layer by layer."""
        p = self.profile
        if self.fixed_point:
            return [{"weights": p.weight.fmt.to_real(w).tolist(), "bias": p.bias.fmt.to_real(b).tolist()}
                    for w, b in self.raw_layers()]
        return [{"weights": np.asarray(w, dtype=np.float64).tolist(),
                 "bias": np.asarray(b, dtype=np.float64).tolist()} for w, b in self._parameters()[1]]

    @abc.abstractmethod
    def _parameters(self) -> tuple[int, list]:
        """``(step, [(weights, bias), ...])`` in the runtime's own representation."""

    @abc.abstractmethod
    def _set_parameters(self, weights: list, biases: list, step: int) -> None:
        """Replace the parameters and the step counter."""

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue training exactly (arrays only)."""
        step, layers = self._parameters()
        out = {"step": np.array(step)}
        for l, (w, b) in enumerate(layers):
            out[f"w{l}"], out[f"b{l}"] = w, b
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""
        n = len(self.sizes) - 1
        self._set_parameters([state[f"w{l}"] for l in range(n)],
                             [state[f"b{l}"] for l in range(n)], int(state["step"]))

    def warm_up(self) -> None:
        """Compile, or load from cache, whatever the first step would otherwise compile,
        without touching this runtime's state; the training loop calls it outside the
        timed region. Runtimes with nothing to compile keep this no-op."""

    def progress_info(self) -> str:
        """A few words for the batch progress bar (the RTL runtime: simulated cycles)."""
        return ""

    def hardware(self) -> dict | None:
        """The record's ``hardware`` section (the RTL runtime); ``None`` elsewhere."""
        return None

    def synchronize(self) -> None:
        """Wait until queued work is done (for timing); host runtimes have none."""

    def event_counts(self) -> dict:
        """Cast events per site (``docs/datapath.md``); empty for float backends."""
        return {}

    def layer_event_counts(self) -> dict | None:
        """Cast events of each layer, ``{"1": {site: counts}, ...}``; ``None`` where the
        backend counts per site only (the OpenCL kernels and the engine's counters do)."""
        return None

    def load_event_counts(self, counts: dict, by_layer: dict | None = None) -> None:
        """Restore :meth:`event_counts` (from a checkpoint), and :meth:`layer_event_counts`
        where the backend keeps them and ``by_layer`` has them."""

    @property
    def learning_rate_info(self) -> dict:
        """The learning rate asked for and the per-sample rate applied."""
        if not self.fixed_point:
            return {"lr": self.lr, "batch": self.batch, "eta": self.lr / self.batch}
        raw, frac = self.eta
        return {"lr": self.lr, "batch": self.batch, "eta": raw * 2.0 ** -frac, "eta_raw": raw,
                "eta_frac_bits": frac, "mode": self.profile.lr_mode}

    def digest(self) -> str:
        return weights_digest(self.raw_layers())


class GoldenRuntime(Runtime):
    """The bit-accurate NumPy golden model."""

    name = "golden"
    fixed_point = True

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch)
        self.eta = learning_rate_raw(lr, batch, profile)
        self.model = golden_model(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                                  batch=batch, eta=self.eta)

    def prepare(self, x, t):
        return self.model.quantize_input(x), self.model.quantize_target(t)

    def warm_up(self) -> None:
        """One step and one prediction of a throwaway two-wide network with this profile,
        loss and rate: the same compiled kernels (numba specialises on types, not sizes)."""
        tiny = (2,) * len(self.sizes)
        p = self.profile
        model = GoldenMLP(tiny, p, [np.zeros((2, 2), dtype=np.int64)] * (len(tiny) - 1),
                          [np.zeros(2, dtype=np.int64)] * (len(tiny) - 1), loss=self.loss,
                          seed=self.seed)
        x = model.quantize_input(np.zeros((1, 2)))
        model.train_step(x, model.quantize_target(np.zeros((1, 2))), self.eta)
        model.predict(x)

    def train_batch(self, x, t) -> None:
        self.model.train_step(x, t, self.eta)

    def predict(self, x) -> np.ndarray:
        return self.model.predict(x)

    def _parameters(self):
        return self.model.step, self.model.layers()

    def _set_parameters(self, weights, biases, step):
        self.model.set_parameters(weights, biases, step)

    def event_counts(self):
        return self.model.event_counts()

    def layer_event_counts(self):
        return self.model.layer_event_counts()

    def load_event_counts(self, counts, by_layer=None):
        self.model.set_event_counts(counts, by_layer)



class FloatRuntime(Runtime):
    """The float reference (float64 or float32); its digest quantises the final
    weights into the profile's weight and bias formats (nearest-even, saturate)."""

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 dtype=np.float64):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch)
        if not (np.isfinite(lr) and lr > 0):
            raise FxbpError(f"the learning rate must be a positive number, not {lr!r}")
        self.dtype = np.dtype(dtype)
        self.name = str(self.dtype)
        self.model = FloatMLP(sizes, init_weights, init_biases, loss=loss, dtype=dtype)

    def prepare(self, x, t):
        return np.asarray(x, dtype=self.dtype), np.asarray(t, dtype=self.dtype)

    def train_batch(self, x, t) -> None:
        self.model.train_step(x, t, self.lr / self.batch)

    def predict(self, x):
        return self.model.predict(x)

    def _parameters(self):
        return self.model.step, list(zip(self.model.weights, self.model.biases))

    def _set_parameters(self, weights, biases, step):
        self.model.weights = [np.array(w, dtype=self.dtype) for w in weights]
        self.model.biases = [np.array(b, dtype=self.dtype) for b in biases]
        self.model.step = step


def _opencl(*args, device="auto", **kwargs):
    from .opencl import OpenCLRuntime
    return OpenCLRuntime(*args, device=device, **kwargs)


def _opencl_float32(*args, device="auto", **kwargs):
    from .opencl import OpenCLFloatRuntime
    return OpenCLFloatRuntime(*args, device=device, **kwargs)


def best_backend() -> tuple[str, str]:
    """The fastest bit-exact backend available here, as ``(backend, device)``.

    Order: an OpenCL GPU, then the golden model. (FPGA boards will come first once
    their runtime exists.) OpenCL on a CPU is used only when asked for.
    """
    try:
        from .opencl import select_device
        select_device("gpu")
        return "opencl", "gpu"
    except FxbpError:
        return "golden", "auto"


def _torch(*args, device="auto", **kwargs):
    from .torch_runtime import TorchRuntime
    return TorchRuntime(*args, device=device, **kwargs)


def _rtl(*args, device="auto", **kwargs):
    from .rtl import RtlRuntime
    return RtlRuntime(*args, **kwargs)


def _board(*args, device="auto", **kwargs):
    from .board import BoardRuntime
    return BoardRuntime(*args, **kwargs)


#: ``--backend auto``: what it tries, in order (backend, OpenCL device).
AUTO_ORDER = (("board", None), ("opencl", "gpu"), ("opencl", "cpu"), ("golden", None))


def _auto(*args, device="auto", board=None, **kwargs):
    """The first of :data:`AUTO_ORDER` that starts here; ``runtime.selection`` lists
    every candidate with whether it ran and why the others were skipped."""
    tried = []
    for name, dev in AUTO_ORDER:
        try:
            if name == "board":
                from .board import auto_board_options
                rt = _board(*args, **kwargs, **auto_board_options(board or {}))
            elif name == "opencl":
                rt = _opencl(*args, device=dev, **kwargs)
            else:
                rt = GoldenRuntime(*args, **kwargs)
        except FxbpError as exc:
            tried.append({"backend": name, "device": dev, "ran": False,
                          "reason": str(exc).removeprefix("error: ")})
            continue
        tried.append({"backend": name, "device": dev, "ran": True,
                      "reason": "the first in the order board, OpenCL GPU, OpenCL CPU, golden "
                                "that started here"})
        rt.selection = tried
        return rt
    raise FxbpError("no backend could start: " + "; ".join(
        f"{t['backend']}: {t['reason']}" for t in tried))


#: Backend name -> factory(sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch, device).
BACKENDS = {
    "golden": lambda *a, device="auto", **k: GoldenRuntime(*a, **k),
    "float32": lambda *a, device="auto", **k: FloatRuntime(*a, dtype=np.float32, **k),
    "float64": lambda *a, device="auto", **k: FloatRuntime(*a, dtype=np.float64, **k),
    "opencl": _opencl,
    "opencl-float32": _opencl_float32,
    "torch": _torch,
    "rtl": _rtl,
    "board": _board,
    "auto": _auto,
}
BACKEND_CHOICES = (*BACKENDS, "best")
#: Backends that do not implement docs/datapath.md (no accumulator or width checks apply).
FLOAT_BACKENDS = ("float32", "float64", "opencl-float32", "torch")


def make_runtime(backend: str, *args, device: str = "auto", **kwargs) -> Runtime:
    """A runtime for ``backend`` (``best`` picks with :func:`best_backend`)."""
    if backend == "best":
        backend, device = best_backend()
    try:
        factory = BACKENDS[backend]
    except KeyError:
        raise FxbpError(f"unknown backend {backend!r}: choose one of "
                        f"{', '.join(BACKEND_CHOICES)}") from None
    if device not in ("auto", "gpu", "cpu"):
        raise FxbpError(f"unknown device {device!r}: choose auto, gpu or cpu")
    return factory(*args, device=device, **kwargs)
