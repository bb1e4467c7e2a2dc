"""The golden model: bit-accurate fixed-point MLP training per ``docs/datapath.md``.

Everything here is integer arithmetic on raw values; the only floats are the
float64 BLAS products, exact because the fit check bounds every partial sum by
the accumulator width (at most 53 bits for the float path; wider accumulators
use int64 products). Casts run in compiled kernels that call
:func:`fxbp.sw.fixed.cast_value`.
Section numbers in comments refer to ``docs/datapath.md``.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import numpy as np

from numba import njit

from .errors import FxbpError
from .fixed import _NO_BITS, CastEvents, QFormat, Rounding, cast_spec, cast_value, quantize
from .profile import PrecisionProfile, Stage
from .rng import SITE_CODES, _words, site_id, step_keys
from .sigmoid import lut_index, lut_params, plan_exact, sigmoid_lut_table

__all__ = ["GoldenMLP", "weights_digest", "learning_rate_raw", "shift_exponent", "check_fit",
           "accumulator_bounds", "LOSSES"]

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


def shift_exponent(eta: float) -> int:
    """``k = round(-log2(eta))`` for the shift-mode learning rate, computed exactly.

    ``eta`` is a float64, hence rational, and ``2**-(k + 1/2)`` is irrational, so
    ``-log2(eta)`` is never exactly halfway between two integers: the nearest
    integer is unique and no tie rule is needed. It is found with exact
    comparisons ``2**(-2k-1) < eta**2 < 2**(-2k+1)`` rather than a float ``log2``,
    whose rounding could manufacture a tie (``docs/datapath.md`` section 8).
    """
    e2 = Fraction(eta) ** 2
    k = -math.floor(math.log2(eta))
    while e2 <= Fraction(1, 2) ** (2 * k + 1):      # eta <= 2**-(k + 1/2): k too small
        k += 1
    while e2 >= Fraction(1, 2) ** (2 * k - 1):      # eta >= 2**-(k - 1/2): k too large
        k -= 1
    return k


def _max_fraction(fmt: QFormat) -> Fraction:
    """A format's largest value, exactly (``max_real`` rounds for formats over 53 bits)."""
    return Fraction(fmt.max_raw, 1 << fmt.frac_bits)


def learning_rate_raw(lr: float, batch: int, profile: PrecisionProfile) -> tuple[int, int]:
    """The per-sample learning rate ``eta = lr / batch`` as ``(raw, frac_bits)`` (section 8).

    ``multiply`` mode: ``eta`` cast into the learning-rate format ``L`` with the
    profile's learning-rate rounding. ``shift`` mode: ``eta = 2**-k`` with
    ``k = round(-log2(eta))`` (:func:`shift_exponent`), i.e. raw 1 with ``k``
    fraction bits. Either way the applied rate must be representable in ``L``:
    not zero, not above its maximum.
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise FxbpError(f"the learning rate must be a positive number, not {lr!r}")
    eta = lr / batch
    fmt = profile.learning_rate
    largest = f"the largest --lr that fits with --batch {batch} is {fmt.max_real * batch:g}"
    if eta == 0:
        raise FxbpError(f"learning rate {lr} / batch {batch} underflows to zero: raise --lr")
    if profile.lr_mode == "shift":
        k = shift_exponent(eta)
        if k < 0 or Fraction(1, 1 << k) > _max_fraction(fmt):
            raise FxbpError(f"learning rate {lr} / batch {batch} = {eta:g} gives the shift "
                            f"2^{-k}, above 1 or the learning-rate format {fmt} (max "
                            f"{fmt.max_real:g}); shift mode applies eta = 2^-k with k >= 0: "
                            f"lower --lr or raise --batch")
        if k > fmt.frac_bits:
            raise FxbpError(f"learning rate {lr} / batch {batch} = {eta:g} gives the shift 2^-{k}, "
                            f"below the learning-rate format {fmt} (LSB 2^-{fmt.frac_bits}): raise "
                            f"--lr, lower --batch, or give learning_rate more fraction bits")
        _refuse_vanishing_updates(1, k, lr, batch, profile)
        return 1, k
    if Fraction(eta) > _max_fraction(fmt):
        raise FxbpError(f"learning rate {lr} / batch {batch} = {eta:g} exceeds the learning-rate "
                        f"format {fmt} (max {fmt.max_real:g}): lower --lr or raise --batch "
                        f"({largest}), or widen learning_rate")
    raw = int(quantize(eta, fmt, profile.learning_rate_rounding)[()])
    if raw == 0:
        raise FxbpError(f"learning rate {lr} / batch {batch} = {eta:g} rounds to zero in the "
                        f"learning-rate format {fmt} (LSB {fmt.resolution:g}): raise --lr, lower "
                        f"--batch, or give learning_rate more fraction bits")
    _refuse_vanishing_updates(raw, fmt.frac_bits, lr, batch, profile)
    return raw, fmt.frac_bits


def _refuse_vanishing_updates(eta_raw: int, eta_frac: int, lr, batch, profile) -> None:
    """Refuse a rate at which every update rounds away: with a round-to-nearest update
    cast, ``|eta G| < 1/2 LSB`` of the parameter for the largest gradient ``G``."""
    g = profile.gradient.fmt
    for name in ("weight", "bias"):
        stage = profile.stage(name)
        if stage.rounding not in (Rounding.NEAREST_EVEN, Rounding.HALF_UP):
            continue
        largest = _max_abs(g) * eta_raw                 # fraction bits eta_frac + fg
        if largest << (stage.fmt.frac_bits + 1) < 1 << (eta_frac + g.frac_bits):
            raise FxbpError(f"learning rate {lr} / batch {batch}: even the largest {name} update "
                            f"(eta x max gradient {g.max_real:g}) is below half an LSB of {stage.fmt}, "
                            f"so {stage.rounding.value} rounds every update away: raise --lr, or "
                            f"give the {name} format more fraction bits")


# Fused kernels. Each runs a few steps of docs/datapath.md over a whole tensor in
# one pass; every cast goes through fixed.cast_value, every random word through
# rng.hash32. Index i is the element's row-major index in the tensor being cast.
# Products arrive from BLAS as float64 holding exact integers (or as int64).


@njit(cache=True, nogil=True)
def _forward_kernel(acc, bias, bias_shift, pre_spec, kind, table, r_raw, addr_shift, plan_f,
                    act_spec, a_out, a_float, ev, r_pre, r_act):
    """Section 5: ``z = cast(acc + (b << bias_shift))``; ``a = sigmoid(z)``."""
    n_out = bias.size
    c0 = c1 = c2 = c3 = 0
    for i in range(acc.size):
        z, ov, un = cast_value(np.int64(acc[i]) + (bias[i % n_out] << bias_shift), i, pre_spec,
                               _NO_BITS, -1)
        c0 += ov
        c1 += un
        if kind == 0:
            a = table[lut_index(z, r_raw, addr_shift)]
        else:
            a, ov, un = cast_value(plan_exact(z, plan_f), i, act_spec, _NO_BITS, -1)
            c2 += ov
            c3 += un
        a_out[i] = a
        a_float[i] = a
    _count(ev, r_pre, c0, c1, acc.size)
    _count(ev, r_act, c2, c3, acc.size)


@njit(cache=True, nogil=True, inline="always")
def _count(ev, row, overflow, underflow, total):
    ev[row, 0] += overflow
    ev[row, 1] += underflow
    ev[row, 2] += total


@njit(cache=True, nogil=True)
def _delta_kernel(err_exact, act, e_spec, e_key, use_derivative, one, d_spec, d_key,
                  delta_spec, delta_key, delta_out, delta_float, ev, r_err, r_d, r_delta):
    """Section 6: ``e = cast(err)``; ``d = cast(a (1 - a))``; ``delta = cast(e d)``
    (``delta = cast(e)`` for the cross-entropy output layer)."""
    c0 = c1 = c2 = c3 = c4 = c5 = 0
    n = act.size
    # Random words first, in simple loops the compiler vectorises (section 9 order).
    e_bits = _words(e_key, n) if e_key >= 0 else _NO_BITS
    d_bits = _words(d_key, n) if d_key >= 0 and use_derivative else _NO_BITS
    q_bits = _words(delta_key, n) if delta_key >= 0 else _NO_BITS
    for i in range(n):
        e, ov, un = cast_value(np.int64(err_exact[i]), i, e_spec, e_bits, -1)
        c0 += ov
        c1 += un
        if use_derivative:
            d, ov, un = cast_value(act[i] * (one - act[i]), i, d_spec, d_bits, -1)
            c2 += ov
            c3 += un
            q, ov, un = cast_value(e * d, i, delta_spec, q_bits, -1)
        else:
            q, ov, un = cast_value(e, i, delta_spec, q_bits, -1)
        c4 += ov
        c5 += un
        delta_out[i] = q
        delta_float[i] = q
    _count(ev, r_err, c0, c1, act.size)
    if use_derivative:
        _count(ev, r_d, c2, c3, act.size)
    _count(ev, r_delta, c4, c5, act.size)


@njit(cache=True, nogil=True, inline="always")
def _update_value(g_exact, w, i, eta, g_spec, g_bits, w_shift, u_shift, upd_spec, upd_bits):
    """Sections 7-8 for one parameter: ``g = cast(sum)``, ``w' = cast(w - eta g)``.

    Returns ``(w', g overflowed, g underflowed, w' overflowed, stalled)``, where
    *stalled* marks a non-zero update that left ``w`` unchanged (the update
    cast's "underflow").
    """
    g, g_ov, g_un = cast_value(g_exact, i, g_spec, g_bits, -1)
    u = (g * eta) << u_shift
    q, ov, un = cast_value((w << w_shift) - u, i, upd_spec, upd_bits, -1)
    return q, g_ov, g_un, ov, 1 if (u != 0 and q == w) else 0


@njit(cache=True, nogil=True)
def _weight_update_kernel(g_exact, w, eta, g_spec, g_key, w_shift, u_shift, upd_spec, upd_key,
                          w_out, w_float, ev, r_g, r_upd):
    c0 = c1 = c2 = c3 = 0
    g_bits = _words(g_key, w.size) if g_key >= 0 else _NO_BITS
    u_bits = _words(upd_key, w.size) if upd_key >= 0 else _NO_BITS
    for i in range(w.size):
        q, a, b, c, d = _update_value(np.int64(g_exact[i]), w[i], i, eta, g_spec, g_bits, w_shift,
                                      u_shift, upd_spec, u_bits)
        w_out[i] = q
        w_float[i] = q
        c0 += a
        c1 += b
        c2 += c
        c3 += d
    _count(ev, r_g, c0, c1, w.size)
    _count(ev, r_upd, c2, c3, w.size)


@njit(cache=True, nogil=True)
def _bias_update_kernel(delta, b, eta, g_spec, g_key, w_shift, u_shift, upd_spec, upd_key, b_out,
                        ev, r_g, r_upd):
    """The bias gradient is the batch sum of the deltas (``delta`` is ``[batch, out]``)."""
    c0 = c1 = c2 = c3 = 0
    g_bits = _words(g_key, b.size) if g_key >= 0 else _NO_BITS
    u_bits = _words(upd_key, b.size) if upd_key >= 0 else _NO_BITS
    for j in range(b.size):
        s = np.int64(0)
        for k in range(delta.shape[0]):
            s += delta[k, j]
        q, a, bb, c, d = _update_value(s, b[j], j, eta, g_spec, g_bits, w_shift, u_shift,
                                       upd_spec, u_bits)
        b_out[j] = q
        c0 += a
        c1 += bb
        c2 += c
        c3 += d
    _count(ev, r_g, c0, c1, b.size)
    _count(ev, r_upd, c2, c3, b.size)


#: Rows of the cast-event table: ``[overflow, underflow, values]`` per site.
EVENT_SITES = ("input", *SITE_CODES)
_R = {name: i for i, name in enumerate(EVENT_SITES)}


def _site_counts(table: np.ndarray, sites=EVENT_SITES) -> dict[str, dict]:
    """``{site: {overflow, underflow, total}}`` from the rows of ``table`` for ``sites``."""
    return {name: {"overflow": int(table[_R[name], 0]), "underflow": int(table[_R[name], 1]),
                   "total": int(table[_R[name], 2])} for name in sites}


def _in_format(profile: PrecisionProfile, layer: int) -> QFormat:
    """Format of layer ``layer``'s input (0-based): the input format, then activations."""
    return profile.input.fmt if layer == 0 else profile.activation.fmt


def accumulator_bounds(sizes, profile: PrecisionProfile, batch: int) -> dict[str, int]:
    """Largest magnitude each multiply-accumulate of a network can reach (section 4)."""
    p = profile
    wmax, dmax, bmax = _max_abs(p.weight.fmt), _max_abs(p.delta.fmt), _max_abs(p.bias.fmt)
    bounds = {}
    for l in range(len(sizes) - 1):
        fin = _in_format(p, l)
        bias_shift = p.weight.fmt.frac_bits + fin.frac_bits - p.bias.fmt.frac_bits
        bounds[f"layer {l + 1} forward"] = (sizes[l] * wmax * _max_abs(fin)
                                            + (bmax << max(bias_shift, 0)))
        bounds[f"layer {l + 1} weight gradient"] = batch * dmax * _max_abs(fin)
        bounds[f"layer {l + 1} bias gradient"] = batch * dmax
        if l > 0:
            bounds[f"layer {l} backpropagated error"] = sizes[l + 1] * dmax * wmax
    return bounds


def check_fit(sizes, profile: PrecisionProfile, batch: int) -> None:
    """Refuse a network or batch for which an accumulator could overflow (section 4).

    Needs only the sizes, so callers can run it before allocating any parameter."""
    p = profile
    limit = (1 << (p.accumulator_bits - 1)) - 1
    for l in range(len(sizes) - 1):
        shift = p.weight.fmt.frac_bits + _in_format(p, l).frac_bits - p.bias.fmt.frac_bits
        if shift < 0:
            raise FxbpError(f"bias format {p.bias.fmt} has more fraction bits than the layer "
                            f"{l + 1} products ({p.weight.fmt.frac_bits + _in_format(p, l).frac_bits}): "
                            f"give the bias fewer fraction bits")
    for name, bound in accumulator_bounds(sizes, p, batch).items():
        if bound > limit:
            raise FxbpError(f"{name} sums can reach {bound.bit_length() + 1} bits, more than the "
                            f"{p.accumulator_bits}-bit accumulator: lower the fan-in or --batch, "
                            f"or raise accumulator_bits in the profile")


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
        # Cast events: row 0 the input quantisation, row l the casts of layer l.
        self._layer_events = np.zeros((len(sizes), len(EVENT_SITES), 3), dtype=np.int64)
        self._layers_since_start = True
        self._table = (sigmoid_lut_table(profile.sigmoid, profile.activation.fmt)
                       if profile.sigmoid.kind == "lut" else np.zeros(1, dtype=np.int64))
        self._lut = (lut_params(profile.preactivation.fmt, profile.sigmoid)
                     if profile.sigmoid.kind == "lut" else (0, 0))
        self.set_parameters(weights, biases, step)
        self.check_fit(1)
        self._fits: set[tuple[int, tuple[int, int]]] = set()
        self._plans = [self._layer_plan(l) for l in range(len(sizes) - 1)]
        self._update_specs: dict = {}
        pairs = [(l, s) for l in range(1, len(sizes)) for s in SITE_CODES]
        self._site_pos = {pair: j for j, pair in enumerate(pairs)}
        self._site_ids = np.array([site_id(l, s) for l, s in pairs], dtype=np.int64)
        self._keys_step = None

    def set_parameters(self, weights, biases, step: int | None = None) -> None:
        """Replace the raw weights and biases (and the step counter)."""
        w = [np.array(x, dtype=np.int64, order="C") for x in weights]
        b = [np.array(x, dtype=np.int64, order="C") for x in biases]
        if len(w) != len(self.sizes) - 1 or len(b) != len(w):
            raise FxbpError(f"{len(w)} weight and {len(b)} bias arrays for a network of "
                            f"{len(self.sizes) - 1} layers")
        for l, (wl, bl) in enumerate(zip(w, b)):
            if wl.shape != (self.sizes[l + 1], self.sizes[l]) or bl.shape != (self.sizes[l + 1],):
                raise FxbpError(f"layer {l + 1}: weights {wl.shape} / bias {bl.shape} do not "
                                f"match the network shape {self.sizes}")
        self._weights, self._biases = w, b
        self._w_float = [x.astype(np.float64) for x in w]
        if step is not None:
            self.step = int(step)

    @property
    def weights(self) -> tuple[np.ndarray, ...]:
        """Raw weights per layer, ``[out, in]`` (read-only: use :meth:`set_parameters`)."""
        return tuple(self._weights)

    @property
    def biases(self) -> tuple[np.ndarray, ...]:
        """Raw biases per layer (read-only: use :meth:`set_parameters`)."""
        return tuple(self._biases)

    # -- formats ---------------------------------------------------------------------------
    def _in_fmt(self, layer: int) -> QFormat:
        """Format of layer ``layer``'s input (0-based): the input format, then activations."""
        return _in_format(self.profile, layer)

    def accumulator_bounds(self, batch: int) -> dict[str, int]:
        """Largest magnitude each multiply-accumulate can reach (section 4)."""
        return accumulator_bounds(self.sizes, self.profile, batch)

    def check_fit(self, batch: int) -> None:
        """Refuse a network or batch for which an accumulator could overflow."""
        check_fit(self.sizes, self.profile, batch)

    def intermediate_bounds(self, batch: int, eta: tuple[int, int]) -> dict[str, tuple[int, str]]:
        """Largest magnitude of every exact intermediate between casts (section 4), with
        the formats that set it: ``{name: (bound, formats)}``.

        Each cast ``from F -> fmt`` also needs ``x + 2^s`` (rounding, ``s = F - f > 0``)
        or ``x << -s`` (``s < 0``) to fit; that is included in the bound of its input.
        """
        p = self.profile
        M = {n: _max_abs(p.stage(n).fmt) for n in ("weight", "bias", "preactivation", "activation",
                                                   "derivative", "error", "delta", "gradient")}
        fw, fa, fz = p.weight.fmt.frac_bits, p.activation.fmt.frac_bits, p.preactivation.fmt.frac_bits
        eta_raw, fl = eta
        out: dict[str, tuple[int, str]] = {}

        def cast_in(name, bound, from_frac, fmt, formats):
            s = from_frac - fmt.frac_bits
            if s > 62:
                bound = max(bound, 1 << 63)           # the shift itself leaves the 64-bit word
            need = bound + (1 << s) if s > 0 else bound << -s
            if name not in out or out[name][0] < need:
                out[name] = (need, formats)

        acc = self.accumulator_bounds(batch)
        for l, plan in enumerate(self._plans):
            fin = self._in_fmt(l).frac_bits
            cast_in("pre-activation sum", acc[f"layer {l + 1} forward"], fw + fin, p.preactivation.fmt,
                    "weight, input/activation, preactivation")
            if p.sigmoid.kind == "plan":
                cast_in("PLAN sigmoid", max(8 * M["preactivation"] + (16 << fz), 32 << fz), fz + 5,
                        p.activation.fmt, "preactivation, activation")
            if plan["err_frac"] == fa:
                cast_in("output error a - t", 2 * M["activation"], fa, p.error.fmt, "activation, error")
            else:
                cast_in("back-propagated error", acc[f"layer {l + 1} backpropagated error"],
                        plan["err_frac"], p.error.fmt, "delta, weight, error")
            cast_in("a(1 - a)", M["activation"] * ((1 << fa) + M["activation"]), 2 * fa,
                    p.derivative.fmt, "activation, derivative")
            cast_in("e * d" if plan["derivative"] else "e", M["error"] * (M["derivative"] if
                    plan["derivative"] else 1), plan["delta_frac"], p.delta.fmt,
                    "error, derivative, delta")
            cast_in("weight gradient sum", acc[f"layer {l + 1} weight gradient"], plan["g_frac"],
                    p.gradient.fmt, "delta, input/activation, gradient")
            cast_in("bias gradient sum", acc[f"layer {l + 1} bias gradient"], plan["gb_frac"],
                    p.gradient.fmt, "delta, gradient")
        fg = p.gradient.fmt.frac_bits
        for what in ("weight", "bias"):
            fmt = p.stage(what).fmt
            big = max(fl + fg, fmt.frac_bits)
            u = M["gradient"] * eta_raw
            cast_in(f"{what} update w - eta g", (M[what] << (big - fmt.frac_bits)) +
                    (u << (big - fl - fg)), big, fmt, f"{what}, gradient, learning_rate")
        return out

    def check_widths(self, batch: int, eta: tuple[int, int]) -> None:
        """Refuse a profile whose exact intermediates leave the 64-bit two's complement
        word that the golden model, the OpenCL kernels and the RTL compute in."""
        for name, (bound, formats) in self.intermediate_bounds(batch, eta).items():
            if bound >= 1 << 63:
                raise FxbpError(f"the {name} needs {bound.bit_length() + 1} bits, more than the "
                                f"64-bit datapath: narrow the formats ({formats}) in the profile")

    def ensure_fits(self, batch: int, eta: tuple[int, int]) -> None:
        """:meth:`check_fit` and :meth:`check_widths`, once per ``(batch, eta)``."""
        if (batch, eta) not in self._fits:
            self.check_fit(batch)
            self.check_widths(batch, eta)
            self._fits.add((batch, eta))

    def _layer_plan(self, l: int) -> dict:
        """Static kernel parameters of layer ``l`` (0-based): cast specs and alignment shifts."""
        p = self.profile
        fin = self._in_fmt(l).frac_bits
        fw, fb, fa = p.weight.fmt.frac_bits, p.bias.fmt.frac_bits, p.activation.fmt.frac_bits
        fd, fe, fdl = p.derivative.fmt.frac_bits, p.error.fmt.frac_bits, p.delta.fmt.frac_bits
        last = l == len(self.sizes) - 2
        err_frac = fa if last else fdl + fw
        derivative = not (last and self.loss == "xent")
        plan = {
            "bias_shift": fw + fin - fb,
            "pre": cast_spec(fw + fin, p.preactivation.fmt, p.preactivation.rounding,
                             p.preactivation.overflow),
            "act": cast_spec(p.preactivation.fmt.frac_bits + 5, p.activation.fmt,
                             p.activation.rounding, p.activation.overflow),
            "err_frac": err_frac,
            "derivative": derivative,
            "d_frac": 2 * fa,
            "delta_frac": fe + fd if derivative else fe,
            "g_frac": fdl + fin,
            "gb_frac": fdl,
        }
        for name, frac, stage in (("err", err_frac, p.error), ("d", 2 * fa, p.derivative),
                                  ("delta", plan["delta_frac"], p.delta),
                                  ("g", fdl + fin, p.gradient), ("gb", fdl, p.gradient)):
            plan[name] = cast_spec(frac, stage.fmt, stage.rounding, stage.overflow)
        return plan

    def _key(self, frac: int, stage: Stage, site: str, layer: int) -> int:
        """The site's random key this step, or -1 when the cast draws no random bits.

        All of a step's keys come from one :func:`fxbp.sw.rng.step_keys` call."""
        if stage.rounding is not Rounding.STOCHASTIC or frac <= stage.fmt.frac_bits:
            return -1
        if self._keys_step != (self.seed, self.step):
            self._keys = step_keys(self.seed, self.step, self._site_ids)
            self._keys_step = (self.seed, self.step)
        return int(self._keys[self._site_pos[(layer, site)]])

    def _matmul(self, a, b):
        """Exact product of exact-integer operands (float64 or int64)."""
        if self.profile.accumulator_bits <= 53:
            # check_fit bounds every partial sum by the accumulator, so below 2**52:
            # float64 represents each exactly and BLAS is exact.
            return a @ b
        return np.asarray(a, dtype=np.int64) @ np.asarray(b, dtype=np.int64)

    def quantize_input(self, x) -> np.ndarray:
        """Raw inputs from real features (section 2)."""
        s = self.profile.input
        ev = CastEvents()
        raw = quantize(x, s.fmt, s.rounding, s.overflow, events=ev)
        self._layer_events[0, _R["input"]] += (ev.overflow, ev.underflow, ev.total)
        return raw

    def quantize_target(self, t) -> np.ndarray:
        """Raw targets in the activation format: nearest-even, saturate."""
        return quantize(t, self.profile.activation.fmt)

    # -- forward ---------------------------------------------------------------------------
    def _forward(self, x_raw) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Activations of every layer, input first, as int64 and as exact float64."""
        p = self.profile
        x = np.asarray(x_raw, dtype=np.int64, order="C")
        acts, acts_f = [x], [x.astype(np.float64)]
        kind = 0 if p.sigmoid.kind == "lut" else 1
        for l, plan in enumerate(self._plans):
            acc = self._matmul(acts_f[-1], self._w_float[l].T)
            a = np.empty(acc.shape, dtype=np.int64)
            af = np.empty(acc.shape, dtype=np.float64)
            _forward_kernel(acc.reshape(-1), self._biases[l], plan["bias_shift"], plan["pre"], kind,
                            self._table, self._lut[0], self._lut[1], p.preactivation.fmt.frac_bits,
                            plan["act"], a.reshape(-1), af.reshape(-1),
                            self._layer_events[l + 1],
                            _R["preactivation"], _R["activation"])
            acts.append(a)
            acts_f.append(af)
        return acts, acts_f

    def forward(self, x_raw) -> list[np.ndarray]:
        """Raw activations of every layer, input first, each ``[batch, width]`` (section 5)."""
        return self._forward(x_raw)[0]

    def predict(self, x_raw) -> np.ndarray:
        """Output activations as real numbers."""
        return self.profile.activation.fmt.to_real(self.forward(x_raw)[-1])

    # -- backward and update ---------------------------------------------------------------
    def train_step(self, x_raw, t_raw, eta: tuple[int, int],
                   trace: dict | None = None) -> list[np.ndarray]:
        """One SGD step on a batch (sections 5-8); returns the raw forward activations.

        ``eta`` is ``(raw, frac_bits)`` from :func:`learning_rate_raw`. ``trace``, when
        given, receives the step's raw deltas (``trace["deltas"][l]`` for layer ``l + 1``).
        """
        p = self.profile
        x_raw = np.asarray(x_raw, dtype=np.int64)
        t_raw = np.asarray(t_raw, dtype=np.int64)
        if x_raw.ndim != 2 or x_raw.shape[1] != self.sizes[0] or t_raw.shape != (len(x_raw), self.sizes[-1]):
            raise FxbpError(f"a batch must be inputs [n, {self.sizes[0]}] and targets "
                            f"[n, {self.sizes[-1]}], not {x_raw.shape} and {t_raw.shape}")
        self.ensure_fits(len(x_raw), eta)
        acts, acts_f = self._forward(x_raw)
        one = 1 << p.activation.fmt.frac_bits
        n_layers = len(self._plans)
        deltas, deltas_f = [None] * n_layers, [None] * n_layers
        for l in range(n_layers - 1, -1, -1):
            plan, layer = self._plans[l], l + 1
            if l == n_layers - 1:
                err = acts[-1] - t_raw                                   # section 6.1
            else:
                err = self._matmul(deltas_f[l + 1], self._w_float[l + 1])  # section 6.2
            delta = np.empty(acts[layer].shape, dtype=np.int64)
            delta_f = np.empty(acts[layer].shape, dtype=np.float64)
            _delta_kernel(
                err.reshape(-1), acts[layer].reshape(-1),
                plan["err"], self._key(plan["err_frac"], p.error, "error", layer),
                plan["derivative"], one,
                plan["d"], self._key(plan["d_frac"], p.derivative, "derivative", layer),
                plan["delta"], self._key(plan["delta_frac"], p.delta, "delta", layer),
                delta.reshape(-1), delta_f.reshape(-1), self._layer_events[layer], _R["error"],
                _R["derivative"], _R["delta"])
            deltas[l], deltas_f[l] = delta, delta_f
        if trace is not None:
            trace["deltas"] = list(deltas)
        eta_raw, eta_frac = eta
        u_frac = eta_frac + p.gradient.fmt.frac_bits
        for l, plan in enumerate(self._plans):
            layer = l + 1
            g_exact = self._matmul(deltas_f[l].T, acts_f[l])               # section 7
            w_frac = max(u_frac, p.weight.fmt.frac_bits)
            w_new = np.empty_like(self._weights[l])
            _weight_update_kernel(
                g_exact.reshape(-1), self._weights[l].reshape(-1), eta_raw,
                plan["g"], self._key(plan["g_frac"], p.gradient, "gradient", layer),
                w_frac - p.weight.fmt.frac_bits, w_frac - u_frac,
                self._spec_update(w_frac, p.weight),
                self._key(w_frac, p.weight, "weight_update", layer),
                w_new.reshape(-1), self._w_float[l].reshape(-1), self._layer_events[layer],
                _R["gradient"],
                _R["weight_update"])
            b_frac = max(u_frac, p.bias.fmt.frac_bits)
            b_new = np.empty_like(self._biases[l])
            _bias_update_kernel(
                deltas[l], self._biases[l], eta_raw,
                plan["gb"], self._key(plan["gb_frac"], p.gradient, "bias_gradient", layer),
                b_frac - p.bias.fmt.frac_bits, b_frac - u_frac,
                self._spec_update(b_frac, p.bias),
                self._key(b_frac, p.bias, "bias_update", layer), b_new, self._layer_events[layer],
                _R["bias_gradient"], _R["bias_update"])
            self._weights[l], self._biases[l] = w_new, b_new
        self.step += 1
        return acts

    def _spec_update(self, frac: int, stage: Stage) -> np.ndarray:
        """Cast spec of an update into ``stage`` from ``frac`` bits (depends on eta's bits)."""
        key = (frac, id(stage))
        spec = self._update_specs.get(key)
        if spec is None:
            spec = self._update_specs[key] = cast_spec(frac, stage.fmt, stage.rounding,
                                                       stage.overflow)
        return spec

    # -- state -----------------------------------------------------------------------------
    def layers(self):
        return list(zip(self.weights, self.biases))

    def digest(self) -> str:
        return weights_digest(self.layers())

    @property
    def events(self) -> np.ndarray:
        """Cast events per site, summed over the layers: ``[overflow, underflow, values]``
        rows in ``EVENT_SITES`` order (a copy)."""
        return self._layer_events.sum(axis=0)

    def event_counts(self) -> dict[str, dict]:
        return _site_counts(self.events)

    def layer_event_counts(self) -> dict[str, dict] | None:
        """Cast events of each layer's sites (``docs/datapath.md`` section 1): ``{"1":
        {site: counts}, ...}``; ``None`` when the counts were restored without their
        per-layer split, so that some events cannot be attributed to a layer."""
        if not self._layers_since_start:
            return None
        return {str(l): _site_counts(self._layer_events[l], sites=SITE_CODES)
                for l in range(1, len(self.sizes))}

    def set_event_counts(self, counts: dict, by_layer: dict | None = None) -> None:
        """Restore :meth:`event_counts` (from a checkpoint), with :meth:`layer_event_counts`
        when given; without them the per-layer split is unknown from now on (the totals
        are kept in row 0). ``FxbpError`` when the per-layer counts do not add up to
        ``counts``."""
        restored = np.zeros_like(self._layer_events)
        for name, c in counts.items():
            if by_layer is None or name == "input":
                restored[0, _R[name]] = (c["overflow"], c["underflow"], c["total"])
        if by_layer is not None:
            if set(by_layer) != {str(l) for l in range(1, len(self.sizes))}:
                raise FxbpError(f"per-layer cast events name layers {sorted(by_layer)}, not "
                                f"1..{len(self.sizes) - 1}: the checkpoint is damaged")
            for l, sites in by_layer.items():
                for name, c in sites.items():
                    restored[int(l), _R[name]] = (c["overflow"], c["underflow"], c["total"])
            if _site_counts(restored.sum(axis=0), sites=counts) != counts:
                raise FxbpError("the per-layer cast events do not add up to the totals: the "
                                "checkpoint is damaged")
        self._layer_events = restored
        self._layers_since_start = by_layer is not None
