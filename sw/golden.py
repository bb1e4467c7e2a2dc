"""The golden model: bit-accurate fixed-point MLP training per ``docs/datapath.md``.

Everything here is integer arithmetic on raw values; the only floats are the
float64 BLAS products, which :func:`fxbp.sw.fixed.exact_matmul` proves exact.
Section numbers in comments refer to ``docs/datapath.md``.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from .errors import FxbpError
from .fixed import CastEvents, QFormat, Rounding, cast, exact_matmul, quantize
from .profile import PrecisionProfile, Stage
from .rng import SITE_CODES, random_words, site_id
from .sigmoid import sigmoid, sigmoid_derivative_exact, sigmoid_lut_table

__all__ = ["GoldenMLP", "weights_digest", "learning_rate_raw", "LOSSES"]

LOSSES = ("mse", "xent")


def _max_abs(fmt: QFormat) -> int:
    return max(-fmt.min_raw, fmt.max_raw)


def weights_digest(layers) -> str:
    """SHA-256 over raw integer weights and biases: little-endian int64, layer by
    layer, the weight matrix (row-major, ``[out, in]``) then the bias vector."""
    h = hashlib.sha256()
    for w, b in layers:
        h.update(np.ascontiguousarray(w, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(b, dtype="<i8").tobytes())
    return h.hexdigest()


def learning_rate_raw(lr: float, batch: int, profile: PrecisionProfile) -> tuple[int, int]:
    """The per-sample learning rate ``eta = lr / batch`` as ``(raw, frac_bits)`` (section 7).

    ``multiply`` mode: ``eta`` rounded to nearest-even into the learning-rate
    format. ``shift`` mode: ``eta = 2**-k`` with ``k = round(-log2(eta))``, i.e.
    raw 1 with ``k`` fraction bits.
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise FxbpError(f"the learning rate must be a positive number, not {lr!r}")
    eta = lr / batch
    fmt = profile.learning_rate
    if profile.lr_mode == "shift":
        k = round(-math.log2(eta))
        if k < 0:
            raise FxbpError(f"learning rate {lr} / batch {batch} = {eta:g} exceeds 1, which the "
                            f"power-of-two shift mode cannot apply: lower --lr or raise --batch")
        return 1, k
    raw = int(quantize(eta, fmt)[()])
    if raw == 0:
        raise FxbpError(f"learning rate {lr} / batch {batch} = {eta:g} rounds to zero in the "
                        f"learning-rate format {fmt} (LSB {fmt.resolution:g}): raise --lr, lower "
                        f"--batch, or give learning_rate more fraction bits")
    if eta > fmt.max_real:
        raise FxbpError(f"learning rate {lr} / batch {batch} = {eta:g} exceeds the learning-rate "
                        f"format {fmt} (max {fmt.max_real:g}): lower --lr, raise --batch, or "
                        f"widen learning_rate")
    return raw, fmt.frac_bits


class GoldenMLP:
    """A sigmoid MLP trained with the fixed-point datapath of ``docs/datapath.md``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first: ``(64, 32, 10)``.
    profile : PrecisionProfile
        Formats and modes of every stage.
    weights, biases : sequence of int64 arrays
        Initial raw values: ``weights[l]`` is ``[out, in]`` in the weight format,
        ``biases[l]`` is ``[out]`` in the bias format.
    loss : str
        ``"mse"`` (``1/2 (t - y)**2``) or ``"xent"`` (cross-entropy on sigmoid outputs).
    seed : int
        Seed of the stochastic-rounding generator (``fxbp.sw.rng``).
    step : int
        Training steps already taken (the generator's counter).
    """

    def __init__(self, sizes, profile: PrecisionProfile, weights, biases, *, loss: str = "mse",
                 seed: int = 0, step: int = 0):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise FxbpError(f"a network needs an input and at least one layer, all of width >= 1, "
                            f"not {sizes}")
        if loss not in LOSSES:
            raise FxbpError(f"unknown loss {loss!r}: choose mse or xent")
        self.sizes = sizes
        self.profile = profile
        self.loss = loss
        self.seed = int(seed)
        self.step = int(step)
        self.weights = [np.array(w, dtype=np.int64) for w in weights]
        self.biases = [np.array(b, dtype=np.int64) for b in biases]
        for l, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.shape != (sizes[l + 1], sizes[l]) or b.shape != (sizes[l + 1],):
                raise FxbpError(f"layer {l + 1}: weights {w.shape} / bias {b.shape} do not match "
                                f"the network shape {sizes}")
        self.events = {name: CastEvents() for name in ("input", *SITE_CODES)}
        self._table = (sigmoid_lut_table(profile.sigmoid, profile.activation.fmt)
                       if profile.sigmoid.kind == "lut" else None)
        self.check_fit(1)
        self._fits = {1}

    # -- formats ---------------------------------------------------------------------------
    def _in_fmt(self, layer: int) -> QFormat:
        """Format of layer ``layer``'s input (0-based): the input format, then activations."""
        p = self.profile
        return p.input.fmt if layer == 0 else p.activation.fmt

    def accumulator_bounds(self, batch: int) -> dict[str, int]:
        """Largest magnitude each multiply-accumulate can reach (section 4)."""
        p = self.profile
        wmax, dmax, bmax = _max_abs(p.weight.fmt), _max_abs(p.delta.fmt), _max_abs(p.bias.fmt)
        bounds = {}
        for l in range(len(self.weights)):
            fin = self._in_fmt(l)
            bias_shift = p.weight.fmt.frac_bits + fin.frac_bits - p.bias.fmt.frac_bits
            bounds[f"layer {l + 1} forward"] = (self.sizes[l] * wmax * _max_abs(fin)
                                                + (bmax << bias_shift))
            bounds[f"layer {l + 1} weight gradient"] = batch * dmax * _max_abs(fin)
            bounds[f"layer {l + 1} bias gradient"] = batch * dmax
            if l > 0:
                bounds[f"layer {l + 1} backpropagated error"] = self.sizes[l + 1] * dmax * wmax
        return bounds

    def check_fit(self, batch: int) -> None:
        """Refuse a network or batch for which an accumulator could overflow."""
        p = self.profile
        limit = (1 << (p.accumulator_bits - 1)) - 1
        for l in range(len(self.weights)):
            shift = p.weight.fmt.frac_bits + self._in_fmt(l).frac_bits - p.bias.fmt.frac_bits
            if shift < 0:
                raise FxbpError(f"bias format {p.bias.fmt} has more fraction bits than the layer "
                                f"{l + 1} products ({p.weight.fmt.frac_bits + self._in_fmt(l).frac_bits}): "
                                f"give the bias fewer fraction bits")
        for name, bound in self.accumulator_bounds(batch).items():
            if bound > limit:
                raise FxbpError(f"{name} sums can reach {bound.bit_length() + 1} bits, more than the "
                                f"{p.accumulator_bits}-bit accumulator: lower the fan-in or --batch, "
                                f"or raise accumulator_bits in the profile")

    # -- casts -----------------------------------------------------------------------------
    def _cast(self, x, frac: int, stage: Stage, site: str, layer: int) -> np.ndarray:
        bits = None
        if stage.rounding is Rounding.STOCHASTIC and frac > stage.fmt.frac_bits:
            bits = random_words(self.seed, self.step, site_id(layer, site), x.size)
        return cast(x, frac, stage.fmt, stage.rounding, stage.overflow,
                    random_bits=bits, events=self.events[site])

    def quantize_input(self, x) -> np.ndarray:
        """Raw inputs from real features (section 2): nearest-even, saturate."""
        s = self.profile.input
        return quantize(x, s.fmt, s.rounding, s.overflow, events=self.events["input"])

    def quantize_target(self, t) -> np.ndarray:
        """Raw targets in the activation format: nearest-even, saturate."""
        return quantize(t, self.profile.activation.fmt)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x_raw) -> list[np.ndarray]:
        """Activations of every layer, input first, each ``[batch, width]`` (section 5)."""
        p = self.profile
        acts = [np.asarray(x_raw, dtype=np.int64)]
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            fin = self._in_fmt(l)
            frac = p.weight.fmt.frac_bits + fin.frac_bits
            acc = exact_matmul(acts[-1], w.T, _max_abs(fin), _max_abs(p.weight.fmt))
            acc += b << (frac - p.bias.fmt.frac_bits)
            z = self._cast(acc, frac, p.preactivation, "preactivation", l + 1)
            acts.append(sigmoid(z, p.preactivation.fmt, p.activation.fmt, p.sigmoid,
                                p.activation.rounding, self.events["activation"], self._table))
        return acts

    def predict(self, x_raw) -> np.ndarray:
        """Output activations as real numbers."""
        return self.profile.activation.fmt.to_real(self.forward(x_raw)[-1])

    # -- backward and update ---------------------------------------------------------------
    def train_step(self, x_raw, t_raw, eta: tuple[int, int]) -> list[np.ndarray]:
        """One SGD step on a batch (sections 5-8); returns the forward activations.

        ``eta`` is ``(raw, frac_bits)`` from :func:`learning_rate_raw`.
        """
        p = self.profile
        x_raw = np.asarray(x_raw, dtype=np.int64)
        t_raw = np.asarray(t_raw, dtype=np.int64)
        if len(x_raw) not in self._fits:
            self.check_fit(len(x_raw))
            self._fits.add(len(x_raw))
        acts = self.forward(x_raw)
        fa, fe, fd = p.activation.fmt.frac_bits, p.error.fmt.frac_bits, p.derivative.fmt.frac_bits
        n_layers = len(self.weights)
        delta = None
        deltas = [None] * n_layers
        for l in range(n_layers - 1, -1, -1):
            a = acts[l + 1]
            if l == n_layers - 1:
                err = self._cast(a - t_raw, fa, p.error, "error", l + 1)
            else:
                back = exact_matmul(delta, self.weights[l + 1], _max_abs(p.delta.fmt),
                                    _max_abs(p.weight.fmt))
                err = self._cast(back, p.delta.fmt.frac_bits + p.weight.fmt.frac_bits,
                                 p.error, "error", l + 1)
            if l == n_layers - 1 and self.loss == "xent":
                delta = self._cast(err, fe, p.delta, "delta", l + 1)
            else:
                d_exact, d_frac = sigmoid_derivative_exact(a, p.activation.fmt)
                d = self._cast(d_exact, d_frac, p.derivative, "derivative", l + 1)
                delta = self._cast(err * d, fe + fd, p.delta, "delta", l + 1)
            deltas[l] = delta
        eta_raw, eta_frac = eta
        for l in range(n_layers):
            fin = self._in_fmt(l)
            g_frac = p.delta.fmt.frac_bits + fin.frac_bits
            g = self._cast(exact_matmul(deltas[l].T, acts[l], _max_abs(p.delta.fmt), _max_abs(fin)),
                           g_frac, p.gradient, "gradient", l + 1)
            gb = self._cast(deltas[l].sum(axis=0), p.delta.fmt.frac_bits, p.gradient,
                            "bias_gradient", l + 1)
            self.weights[l] = self._update(self.weights[l], g, eta_raw, eta_frac, p.weight,
                                           "weight_update", l + 1)
            self.biases[l] = self._update(self.biases[l], gb, eta_raw, eta_frac, p.bias,
                                          "bias_update", l + 1)
        self.step += 1
        return acts

    def _update(self, w, g, eta_raw: int, eta_frac: int, stage: Stage, site: str, layer: int):
        """``w - eta * g`` formed exactly, then one cast into ``stage`` (section 8)."""
        u_frac = eta_frac + self.profile.gradient.fmt.frac_bits
        frac = max(u_frac, stage.fmt.frac_bits)
        u = (g * eta_raw) << (frac - u_frac)
        exact = (w << (frac - stage.fmt.frac_bits)) - u
        before = self.events[site].underflow
        new = self._cast(exact, frac, stage, site, layer)
        # For update casts "underflow" counts non-zero updates that left the value unchanged.
        self.events[site].underflow = before + int(np.count_nonzero((new == w) & (u != 0)))
        return new

    # -- state -----------------------------------------------------------------------------
    def layers(self):
        return list(zip(self.weights, self.biases))

    def digest(self) -> str:
        return weights_digest(self.layers())

    def real_layers(self) -> list[dict]:
        p = self.profile
        return [{"weights": p.weight.fmt.to_real(w).tolist(), "bias": p.bias.fmt.to_real(b).tolist()}
                for w, b in self.layers()]

    def event_counts(self) -> dict[str, dict]:
        return {k: v.as_dict() for k, v in self.events.items()}
