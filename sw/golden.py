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
from numba import njit

from .fixed import (_NO_BITS, CastEvents, QFormat, Rounding, cast_spec, cast_value, cast_with,
                    exact_matmul, quantize)
from .profile import PrecisionProfile, Stage
from .rng import SITE_CODES, site_id, site_key
from .sigmoid import sigmoid, sigmoid_lut_table

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


# Fused kernels: each is a few datapath steps of docs/datapath.md on whole tensors,
# one pass, every cast through fixed.cast_value. Index i is the row-major element index.

@njit(cache=True, nogil=True)
def _preactivation_kernel(acc, bias, bias_shift, spec, out):
    """Section 5: ``z = cast(acc + (b << bias_shift))``; ``acc`` is ``[batch, out]``."""
    n_out = bias.size
    a, o = acc.reshape(-1), out.reshape(-1)
    n_over = n_under = 0
    for i in range(a.size):
        q, ov, un = cast_value(a[i] + (bias[i % n_out] << bias_shift), i, spec, _NO_BITS, -1)
        o[i] = q
        n_over += ov
        n_under += un
    return np.array([n_over, n_under])


@njit(cache=True, nogil=True)
def _delta_kernel(err, act, one, d_spec, d_key, delta_spec, delta_key, out):
    """Section 6: ``d = cast(a (1 - a))``, ``delta = cast(e d)``."""
    e, a, o = err.reshape(-1), act.reshape(-1), out.reshape(-1)
    counts = np.zeros(4, dtype=np.int64)
    for i in range(e.size):
        d, ov, un = cast_value(a[i] * (one - a[i]), i, d_spec, _NO_BITS, d_key)
        counts[0] += ov
        counts[1] += un
        q, ov, un = cast_value(e[i] * d, i, delta_spec, _NO_BITS, delta_key)
        counts[2] += ov
        counts[3] += un
        o[i] = q
    return counts


@njit(cache=True, nogil=True)
def _update_kernel(w, g, eta, w_shift, u_shift, spec, key, out):
    """Section 8: ``w' = cast((w << w_shift) - ((eta g) << u_shift))``.

    The second count is of non-zero updates that left the value unchanged.
    """
    wf, gf, o = w.reshape(-1), g.reshape(-1), out.reshape(-1)
    n_over = n_stalled = 0
    for i in range(wf.size):
        u = (gf[i] * eta) << u_shift
        q, ov, un = cast_value((wf[i] << w_shift) - u, i, spec, _NO_BITS, key)
        o[i] = q
        n_over += ov
        if u != 0 and q == wf[i]:
            n_stalled += 1
    return np.array([n_over, n_stalled])


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
        self._specs: dict = {}

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
    def _spec(self, frac: int, stage: Stage) -> np.ndarray:
        spec = self._specs.get((frac, stage))
        if spec is None:
            spec = self._specs[(frac, stage)] = cast_spec(frac, stage.fmt, stage.rounding,
                                                          stage.overflow)
        return spec

    def _key(self, frac: int, stage: Stage, site: str, layer: int) -> int:
        """The site's random key this step, or -1 when the cast draws no random bits."""
        if stage.rounding is Rounding.STOCHASTIC and frac > stage.fmt.frac_bits:
            return int(site_key(self.seed, self.step, site_id(layer, site)))
        return -1

    def _cast(self, x, frac: int, stage: Stage, site: str, layer: int) -> np.ndarray:
        key = self._key(frac, stage, site, layer)
        return cast_with(x, self._spec(frac, stage), random_key=key if key >= 0 else None,
                         events=self.events[site])

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
            z = np.empty_like(acc)
            counts = _preactivation_kernel(acc, b, frac - p.bias.fmt.frac_bits,
                                           self._spec(frac, p.preactivation), z)
            self.events["preactivation"].record(counts, z.size)
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
                delta = np.empty_like(err)
                counts = _delta_kernel(
                    err, a, 1 << fa,
                    self._spec(2 * fa, p.derivative), self._key(2 * fa, p.derivative, "derivative", l + 1),
                    self._spec(fe + fd, p.delta), self._key(fe + fd, p.delta, "delta", l + 1), delta)
                self.events["derivative"].record(counts[:2], delta.size)
                self.events["delta"].record(counts[2:], delta.size)
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
        new = np.empty_like(w)
        counts = _update_kernel(w, g, eta_raw, frac - stage.fmt.frac_bits, frac - u_frac,
                                self._spec(frac, stage), self._key(frac, stage, site, layer), new)
        self.events[site].record(counts, w.size)
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
