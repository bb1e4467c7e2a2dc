"""One training step shown stage by stage: float64 next to the fixed-point datapath.

``fxbp explain`` (``docs/explain.md``) takes the first step of a run exactly as
``fxbp train`` would take it (same data, initial weights, profile, learning rate
and batch order) and recomputes it twice:

- in fixed point, **unfused**, with the golden model's own functions
  (:func:`fxbp.sw.fixed.cast` with the site keys of :mod:`fxbp.sw.rng`, the
  sigmoids of :mod:`fxbp.sw.sigmoid`, the cast parameters of
  ``GoldenMLP._layer_plan``), so every intermediate raw tensor of
  ``docs/datapath.md`` sections 2, 5, 6, 7 and 8 is at hand. After the step its
  weights, biases and per-site cast events equal ``GoldenMLP.train_step``'s bit
  for bit (``tests/test_sw_explain.py``);
- in float64 from the same starting real values (the dataset's exact initial
  values when it fixes them, as for ``seed-neuron``; otherwise the real values of
  the raw initial weights), with the float reference's formulas.

Each value is reported as its float64 value, its raw integer, the raw integer's
real reading ``raw * 2**-f`` and the error ``(real - float) / LSB`` in units of
the stage format's LSB, with the event of its cast (overflow or underflow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import FxbpError
from .fixed import MAX_TOTAL_BITS, Overflow, QFormat, cast, exact_matmul, quantize
from .float_ref import FloatMLP
from .golden import GoldenMLP, learning_rate_raw
from .profile import TRAINING_STAGES, Stage
from .rng import site_id, site_key
from .sigmoid import plan_exact_values, sigmoid_lut, sigmoid_lut_table
from .train import loss_value

__all__ = ["StageValues", "Explanation", "fixed_step", "float_step", "next_batch", "explain_step",
           "first_step_record", "parse_neuron", "check_neuron", "EVENT_SITES_OF_STEP", "TINY_TENSOR"]

#: Cast sites a training step counts events for (the ``input`` site is counted when
#: data is prepared, not per step).
EVENT_SITES_OF_STEP = ("preactivation", "activation", "derivative", "error", "delta", "gradient",
                       "bias_gradient", "weight_update", "bias_update")

#: A network whose every tensor in the step has at most this many values is shown
#: value by value; larger ones are summarised per stage.
TINY_TENSOR = 16

# Key, section of docs/datapath.md, and a name for people, in datapath order.
_STAGE_INFO = {
    "x": ("2", "input x"),
    "t": ("2", "target t"),
    "W": ("5", "weight W"),
    "B": ("5", "bias B"),
    "acc": ("5", "accumulator (exact)"),
    "z": ("5", "pre-activation z"),
    "a": ("5", "activation a"),
    "e": ("6", "error e"),
    "d": ("6", "derivative d"),
    "delta": ("6", "delta"),
    "G": ("7", "weight gradient G"),
    "g": ("7", "bias gradient g"),
    "uW": ("8", "weight update eta*G (exact)"),
    "W_new": ("8", "new weight W'"),
    "uB": ("8", "bias update eta*g (exact)"),
    "B_new": ("8", "new bias B'"),
}


@dataclass
class FixedTensor:
    """One raw tensor of the fixed-point step, with the events of the cast that made it.

    ``frac`` is the fraction bits of ``raw``; ``fmt`` the stage format (for an exact
    intermediate, the format it is cast into next: its errors are counted in that LSB).
    """

    raw: np.ndarray
    frac: int
    fmt: QFormat
    site: str | None = None
    overflow: np.ndarray | None = None
    underflow: np.ndarray | None = None
    exact: bool = False

    def __post_init__(self):
        self.raw = np.asarray(self.raw, dtype=np.int64)
        if self.overflow is None:
            self.overflow = np.zeros(self.raw.shape, dtype=bool)
        if self.underflow is None:
            self.underflow = np.zeros(self.raw.shape, dtype=bool)

    @property
    def real(self) -> np.ndarray:
        return self.raw.astype(np.float64) * 2.0 ** -self.frac


@dataclass
class StageValues:
    """One tensor of the step: float64 next to fixed point, in the stage's format."""

    key: str
    layer: int
    fixed: FixedTensor
    ref: np.ndarray

    @property
    def section(self) -> str:
        return _STAGE_INFO[self.key][0]

    @property
    def name(self) -> str:
        return _STAGE_INFO[self.key][1]

    @property
    def fmt(self) -> QFormat:
        return self.fixed.fmt

    @property
    def error_lsb(self) -> np.ndarray:
        """``(real - float) / LSB`` of the stage format."""
        return (self.fixed.real - self.ref) / self.fmt.resolution

    def events(self) -> np.ndarray:
        """Per value: ``"overflow"``, ``"underflow"`` or ``""``."""
        out = np.full(self.fixed.raw.shape, "", dtype=object)
        out[self.fixed.underflow] = "underflow"
        out[self.fixed.overflow] = "overflow"
        return out

    def summary(self) -> dict:
        err = np.abs(self.error_lsb)
        return {"values": int(self.fixed.raw.size),
                "max_abs_error_lsb": float(err.max()) if err.size else 0.0,
                "mean_error_lsb": float(self.error_lsb.mean()) if err.size else 0.0,
                "overflow": int(self.fixed.overflow.sum()),
                "underflow": int(self.fixed.underflow.sum())}

    def as_dict(self) -> dict:
        f = self.fixed
        return {"section": self.section, "stage": self.key, "name": self.name, "layer": self.layer,
                "format": str(self.fmt), "fraction_bits": f.frac, "lsb": self.fmt.resolution,
                "exact": f.exact, "shape": list(f.raw.shape), "float": self.ref.tolist(),
                "raw": f.raw.tolist(), "real": f.real.tolist(),
                "error_lsb": self.error_lsb.tolist(),
                "overflow_at": np.flatnonzero(f.overflow).tolist(),
                "underflow_at": np.flatnonzero(f.underflow).tolist(),
                "summary": self.summary()}


# -- fixed point, unfused ------------------------------------------------------------------


def _wide(fmt: QFormat) -> QFormat:
    """A signed format with ``fmt``'s fraction bits and the widest range: casting into it
    rounds exactly as into ``fmt`` and shows the rounded value before overflow."""
    return QFormat(MAX_TOTAL_BITS - fmt.frac_bits, fmt.frac_bits)


def _cast_site(x, from_frac: int, stage: Stage, key: int | None) -> FixedTensor:
    """``cast(x, from_frac -> stage)`` (section 1) with the per-value overflow and underflow."""
    x = np.ascontiguousarray(x, dtype=np.int64)
    q = cast(x, from_frac, stage.fmt, stage.rounding, stage.overflow, random_key=key)
    rounded = cast(x, from_frac, _wide(stage.fmt), stage.rounding, Overflow.SATURATE,
                   random_key=key)
    over = (rounded < stage.fmt.min_raw) | (rounded > stage.fmt.max_raw)
    under = (q == 0) & (x != 0) & (from_frac > stage.fmt.frac_bits)
    return FixedTensor(q, stage.fmt.frac_bits, stage.fmt, overflow=over, underflow=under)


def _quantize_site(values, stage: Stage) -> FixedTensor:
    """Section 2: real values into ``stage`` (:func:`fxbp.sw.fixed.quantize`) with events."""
    v = np.asarray(values, dtype=np.float64)
    q = quantize(v, stage.fmt, stage.rounding, stage.overflow)
    rounded = quantize(v, _wide(stage.fmt), stage.rounding, Overflow.SATURATE)
    over = (rounded < stage.fmt.min_raw) | (rounded > stage.fmt.max_raw)
    under = (q == 0) & (v != 0)
    return FixedTensor(q, stage.fmt.frac_bits, stage.fmt, overflow=over, underflow=under)


def fixed_step(model: GoldenMLP, x_raw, t_raw, eta: tuple[int, int]) -> dict:
    """One training step of ``model`` recomputed stage by stage (sections 5-8), unfused.

    Parameters
    ----------
    model : GoldenMLP
        Supplies the raw weights and biases, the profile, the loss, the seed and the
        step counter (the random keys), and ``_layer_plan`` (fraction bits, shifts).
        It is not changed.
    x_raw, t_raw : int64 arrays
        Raw inputs ``[batch, n_0]`` (input format) and targets ``[batch, n_L]``
        (activation format).
    eta : tuple of int
        ``(raw, frac_bits)`` from :func:`fxbp.sw.golden.learning_rate_raw`.

    Returns
    -------
    dict
        ``{(key, layer): FixedTensor}`` for keys ``W B acc z a e d delta G g uW W_new
        uB B_new`` (layer 1-based; ``d`` is absent for the cross-entropy output layer).
    """
    p = model.profile
    x_raw = np.ascontiguousarray(x_raw, dtype=np.int64)
    t_raw = np.ascontiguousarray(t_raw, dtype=np.int64)
    n_layers = len(model.sizes) - 1
    plans = [model._layer_plan(l) for l in range(n_layers)]
    weights, biases = model.weights, model.biases

    def key(layer: int, site: str) -> int:
        return int(site_key(model.seed, model.step, site_id(layer, site)))

    out: dict = {}
    fz, fa = p.preactivation.fmt.frac_bits, p.activation.fmt.frac_bits
    table = sigmoid_lut_table(p.sigmoid, p.activation.fmt) if p.sigmoid.kind == "lut" else None
    acts = [x_raw]
    for l, plan in enumerate(plans):                                   # section 5
        layer = l + 1
        fin = model._in_fmt(l).frac_bits
        w, b = weights[l], biases[l]
        out["W", layer] = FixedTensor(w, p.weight.fmt.frac_bits, p.weight.fmt)
        out["B", layer] = FixedTensor(b, p.bias.fmt.frac_bits, p.bias.fmt)
        acc = exact_matmul(acts[-1], w.T) + (b << plan["bias_shift"])
        out["acc", layer] = FixedTensor(acc, p.weight.fmt.frac_bits + fin, p.preactivation.fmt,
                                        exact=True)
        z = _cast_site(acc, p.weight.fmt.frac_bits + fin, p.preactivation, None)
        z.site = "preactivation"
        out["z", layer] = z
        if table is not None:                                          # section 3.1
            a = FixedTensor(sigmoid_lut(z.raw, p.preactivation.fmt, p.activation.fmt, p.sigmoid,
                                        table), fa, p.activation.fmt)
        else:                                                          # section 3.2
            a = _cast_site(plan_exact_values(z.raw, fz), fz + 5, p.activation, None)
        a.site = "activation"
        out["a", layer] = a
        acts.append(a.raw)
    one = 1 << fa
    deltas = [None] * n_layers
    for l in range(n_layers - 1, -1, -1):                              # section 6
        plan, layer = plans[l], l + 1
        if l == n_layers - 1:
            err = acts[-1] - t_raw
        else:
            err = exact_matmul(deltas[l + 1], weights[l + 1])
        e = _cast_site(err, plan["err_frac"], p.error, key(layer, "error"))
        e.site = "error"
        out["e", layer] = e
        if plan["derivative"]:
            a = acts[layer]
            d = _cast_site(a * (one - a), plan["d_frac"], p.derivative, key(layer, "derivative"))
            d.site = "derivative"
            out["d", layer] = d
            product = e.raw * d.raw
        else:
            product = e.raw
        delta = _cast_site(product, plan["delta_frac"], p.delta, key(layer, "delta"))
        delta.site = "delta"
        out["delta", layer] = delta
        deltas[l] = delta.raw
    eta_raw, eta_frac = eta
    fg = p.gradient.fmt.frac_bits
    u_frac = eta_frac + fg
    for l, plan in enumerate(plans):                                   # sections 7 and 8
        layer = l + 1
        g_w = _cast_site(exact_matmul(deltas[l].T, acts[l]), plan["g_frac"], p.gradient,
                         key(layer, "gradient"))
        g_w.site = "gradient"
        g_b = _cast_site(deltas[l].sum(axis=0), plan["gb_frac"], p.gradient,
                         key(layer, "bias_gradient"))
        g_b.site = "bias_gradient"
        out["G", layer], out["g", layer] = g_w, g_b
        for grad, old, stage, u_key, new_key, site in (
                (g_w, weights[l], p.weight, "uW", "W_new", "weight_update"),
                (g_b, biases[l], p.bias, "uB", "B_new", "bias_update")):
            u = eta_raw * grad.raw
            out[u_key, layer] = FixedTensor(u, u_frac, stage.fmt, exact=True)
            frac = max(u_frac, stage.fmt.frac_bits)
            new = _cast_site((old << (frac - stage.fmt.frac_bits)) - (u << (frac - u_frac)), frac,
                             stage, key(layer, site))
            new.underflow = (u != 0) & (new.raw == old)            # section 1, update casts
            new.site = site
            out[new_key, layer] = new
    return out


def event_counts(tensors: dict) -> dict[str, dict]:
    """Per cast site, this step's ``overflow``, ``underflow`` and ``total`` (as
    ``GoldenMLP.event_counts``)."""
    counts = {s: {"overflow": 0, "underflow": 0, "total": 0} for s in EVENT_SITES_OF_STEP}
    for t in tensors.values():
        if t.site is None:
            continue
        c = counts[t.site]
        c["overflow"] += int(t.overflow.sum())
        c["underflow"] += int(t.underflow.sum())
        c["total"] += int(t.raw.size)
    return counts


# -- float64 -------------------------------------------------------------------------------


def float_step(sizes, weights, biases, x, t, *, loss: str, eta: float) -> dict:
    """The same step in float64, stage by stage (the formulas of :class:`FloatMLP`).

    Returns ``{(key, layer): array}`` with the keys of :func:`fixed_step` (``acc`` equals
    ``z``: float has no pre-activation cast).
    """
    model = FloatMLP(sizes, weights, biases, loss=loss, dtype=np.float64)
    acts = model.forward(np.asarray(x, dtype=np.float64))
    t = np.asarray(t, dtype=np.float64)
    n_layers = len(model.weights)
    out: dict = {}
    for l in range(n_layers):
        layer = l + 1
        out["W", layer], out["B", layer] = model.weights[l], model.biases[l]
        z = acts[l] @ model.weights[l].T + model.biases[l]
        out["acc", layer] = out["z", layer] = z
        out["a", layer] = acts[layer]
    delta = None
    for l in range(n_layers - 1, -1, -1):
        layer, a = l + 1, acts[l + 1]
        e = a - t if l == n_layers - 1 else delta @ model.weights[l + 1]
        out["e", layer] = e
        if l == n_layers - 1 and loss == "xent":
            delta = e
        else:
            out["d", layer] = a * (1.0 - a)
            delta = e * a * (1.0 - a)
        out["delta", layer] = delta
    for l in range(n_layers):
        layer = l + 1
        d = out["delta", layer]
        g_w, g_b = d.T @ acts[l], d.sum(axis=0)
        out["G", layer], out["g", layer] = g_w, g_b
        out["uW", layer], out["uB", layer] = eta * g_w, eta * g_b
        out["W_new", layer] = model.weights[l] - eta * g_w
        out["B_new", layer] = model.biases[l] - eta * g_b
    return out


# -- the step of a run ---------------------------------------------------------------------


def next_batch(trainer) -> np.ndarray:
    """Training-set indices of the trainer's next step: the first batch of epoch
    ``trainer.epoch + 1``, in :meth:`fxbp.sw.train.Trainer.run`'s order."""
    return trainer.batch_order(trainer.epoch + 1)[:trainer.runtime.batch]


def _float_start(trainer):
    """Float64 starting values: the dataset's exact initial values when it fixes them
    (and the run has not started), else the runtime's parameters read as reals."""
    rt = trainer.runtime
    if trainer.dataset.initial is not None and int(rt.state()["step"]) == 0:
        w, b = trainer.dataset.initial
        return ([np.array(x, dtype=np.float64) for x in w],
                [np.array(x, dtype=np.float64) for x in b], "the dataset's initial values")
    if rt.fixed_point:
        p = trainer.profile
        layers = rt.raw_layers()
        return ([p.weight.fmt.to_real(w) for w, _ in layers],
                [p.bias.fmt.to_real(b) for _, b in layers], "the real values of the raw weights")
    layers = rt._parameters()[1]
    return ([np.asarray(w, dtype=np.float64) for w, _ in layers],
            [np.asarray(b, dtype=np.float64) for _, b in layers], "the runtime's weights")


def _golden_copy(trainer) -> GoldenMLP:
    """A golden model holding the trainer's current raw parameters and step (fixed-point
    runtimes only); the trainer's own model is left untouched."""
    rt = trainer.runtime
    layers = rt.raw_layers()
    return GoldenMLP(trainer.sizes, trainer.profile, [w for w, _ in layers],
                     [b for _, b in layers], loss=rt.loss, seed=rt.seed,
                     step=int(rt.state()["step"]))


def parse_neuron(text: str | None) -> tuple[int, int] | None:
    """``"L:J"`` (layer from 1, neuron from 0) as ``(L, J)``; None for None."""
    if text is None:
        return None
    parts = str(text).split(":")
    if len(parts) != 2 or not all(s.strip().isdigit() for s in parts):
        raise FxbpError(f"--neuron {text!r} is not L:J: give the layer (from 1) and the neuron "
                        f"(from 0), e.g. --neuron 1:3")
    return int(parts[0]), int(parts[1])


def check_neuron(neuron: tuple[int, int], sizes) -> tuple[int, int]:
    """Refuse a neuron ``(L, J)`` that the network ``sizes`` (input first) lacks."""
    layer, j = neuron
    n_layers = len(sizes) - 1
    if not 1 <= layer <= n_layers:
        raise FxbpError(f"--neuron {layer}:{j}: the network {'-'.join(map(str, sizes))} has "
                        f"layers 1 to {n_layers}: give a layer in that range")
    if not 0 <= j < sizes[layer]:
        raise FxbpError(f"--neuron {layer}:{j}: layer {layer} has neurons 0 to "
                        f"{sizes[layer] - 1}: give a neuron in that range")
    return layer, j


@dataclass
class Explanation:
    """The first step of a run, stage by stage (see :func:`explain_step`)."""

    trainer: object
    samples: np.ndarray
    stages: list[StageValues]
    eta: tuple[int, int]
    float_start: str
    events: dict
    neuron: tuple[int, int] | None = None

    @property
    def tiny(self) -> bool:
        """Every tensor small enough to print value by value."""
        return max(s.fixed.raw.size for s in self.stages) <= TINY_TENSOR

    def stage(self, key: str, layer: int) -> StageValues:
        for s in self.stages:
            if s.key == key and s.layer == layer:
                return s
        raise KeyError((key, layer))

    @property
    def n_layers(self) -> int:
        return len(self.trainer.sizes) - 1

    def prediction(self) -> dict:
        out = self.stage("a", self.n_layers)
        return {"float": out.ref.tolist(), "fixed": out.fixed.real.tolist()}

    def loss(self) -> dict:
        out = self.stage("a", self.n_layers)
        t = self.stage("t", self.n_layers).ref
        loss = self.trainer.runtime.loss
        return {"float": loss_value(out.ref, t, loss), "fixed": loss_value(out.fixed.real, t, loss)}

    def gradients(self, side: str) -> dict:
        """Per layer, the batch-summed weight and bias gradients as reals (``side`` is
        ``"float"`` or ``"fixed"``)."""
        pick = (lambda s: s.ref) if side == "float" else (lambda s: s.fixed.real)
        layers = range(1, self.n_layers + 1)
        return {"weights": [pick(self.stage("G", l)).tolist() for l in layers],
                "bias": [pick(self.stage("g", l)).tolist() for l in layers]}

    def parameters_after(self, side: str) -> list[dict]:
        pick = (lambda s: s.ref) if side == "float" else (lambda s: s.fixed.real)
        return [{"weights": pick(self.stage("W_new", l)).tolist(),
                 "bias": pick(self.stage("B_new", l)).tolist()}
                for l in range(1, self.n_layers + 1)]

    def neuron_values(self) -> list[tuple[StageValues, list[tuple]]]:
        """For ``--neuron L:J``: each stage of that neuron with the indices of its values
        (per sample for ``z, a, e, d, delta``; its incoming weights' row otherwise)."""
        if self.neuron is None:
            return []
        layer, j = self.neuron
        rows = []
        for s in self.stages:
            if s.layer != layer:
                continue
            shape = s.fixed.raw.shape
            if s.key in ("t", "acc", "z", "a", "e", "d", "delta"):
                idx = [(b, j) for b in range(shape[0])]
            elif s.key in ("W", "G", "uW", "W_new"):
                idx = [(j, i) for i in range(shape[1])]
            else:
                idx = [(j,)]
            rows.append((s, idx))
        return rows

    def record(self) -> dict:
        """The JSON record of ``fxbp explain --json`` (``docs/explain.md``)."""
        tr = self.trainer
        rt = tr.runtime
        rec = {
            "schema": 1,
            "command": "explain",
            "config": tr.config.identity(),
            "dataset": tr.dataset.describe(),
            "network": {"sizes": list(tr.sizes), "activation": "sigmoid",
                        "sigmoid": tr.profile.sigmoid.as_dict(), "loss": rt.loss},
            "precision": tr.profile.as_dict(),
            "learning_rate": rt.learning_rate_info,
            "step": {"epoch": tr.epoch + 1, "counter": int(rt.state()["step"]),
                     "samples": self.samples.tolist(), "batch": int(len(self.samples))},
            "float_start": self.float_start,
            "prediction": self.prediction(),
            "loss": self.loss(),
            "gradients": {"float": self.gradients("float"), "fixed": self.gradients("fixed")},
            "parameters_after": {"float": self.parameters_after("float"),
                                 "fixed": self.parameters_after("fixed")},
            "cast_events": self.events,
            "stages": [s.as_dict() for s in self.stages],
        }
        if self.neuron is not None:
            layer, j = self.neuron
            rec["neuron"] = {"layer": layer, "index": j, "values": [
                {"stage": s.key, "layer": s.layer, "index": list(i),
                 "float": float(s.ref[i]), "raw": int(s.fixed.raw[i]),
                 "real": float(s.fixed.real[i]), "error_lsb": float(s.error_lsb[i]),
                 "event": s.events()[i]}
                for s, idx in self.neuron_values() for i in idx]}
        return rec


def explain_step(trainer, *, neuron: str | tuple[int, int] | None = None) -> Explanation:
    """The trainer's next step (the first of epoch ``trainer.epoch + 1``), both ways.

    ``trainer`` must hold a fixed-point runtime (build it with ``backend="golden"``);
    it is not changed. ``neuron`` is ``"L:J"``, ``(L, J)`` or None.
    """
    rt = trainer.runtime
    if not rt.fixed_point:
        raise FxbpError(f"fxbp explain follows the fixed-point datapath, not backend {rt.name}: "
                        f"use --backend golden")
    if isinstance(neuron, str):
        neuron = parse_neuron(neuron)
    chosen = None if neuron is None else check_neuron(neuron, trainer.sizes)
    p = trainer.profile
    idx = next_batch(trainer)
    ds = trainer.dataset
    x, t = ds.x_train[idx], ds.t_train[idx]
    n_layers = len(trainer.sizes) - 1
    x_fixed = _quantize_site(x, p.input)
    x_fixed.site = None                     # counted when data is prepared, not per step
    t_fixed = _quantize_site(t, Stage(p.activation.fmt))
    model = _golden_copy(trainer)
    eta = learning_rate_raw(rt.lr, rt.batch, p)
    fixed = fixed_step(model, x_fixed.raw, t_fixed.raw, eta)
    w0, b0, start = _float_start(trainer)
    ref = float_step(trainer.sizes, w0, b0, x, t, loss=rt.loss, eta=rt.lr / rt.batch)
    stages = [StageValues("x", 0, x_fixed, np.asarray(x, dtype=np.float64)),
              StageValues("t", n_layers, t_fixed, np.asarray(t, dtype=np.float64))]
    order = ([(k, l) for l in range(1, n_layers + 1) for k in ("W", "B", "acc", "z", "a")]
             + [(k, l) for l in range(n_layers, 0, -1) for k in ("e", "d", "delta")]
             + [(k, l) for l in range(1, n_layers + 1) for k in ("G", "g")]
             + [(k, l) for l in range(1, n_layers + 1) for k in ("uW", "W_new", "uB", "B_new")])
    stages += [StageValues(k, l, fixed[k, l], np.asarray(ref[k, l], dtype=np.float64))
               for k, l in order if (k, l) in fixed]
    return Explanation(trainer, idx, stages, eta, start, event_counts(fixed), chosen)


def first_step_record(trainer) -> dict:
    """Pre-update prediction, loss and gradients of the trainer's next step, as reals.

    Call it before :meth:`~fxbp.sw.train.Trainer.run` to describe a run's first step.
    Fixed-point runtimes (golden, opencl) report the fixed-point values (the datapath
    recomputed with the golden functions from the runtime's raw parameters); float
    runtimes their own float values (their dtype, from their current parameters).

    Returns
    -------
    dict
        ``{"prediction": [batch][outputs], "loss": float, "gradients": {"weights":
        [per layer [out][in]], "bias": [per layer [out]]}}``. Gradients are summed
        over the batch (the update applies ``eta = lr / batch`` to them).
    """
    rt = trainer.runtime
    idx = next_batch(trainer)
    ds = trainer.dataset
    x, t = ds.x_train[idx], ds.t_train[idx]
    if rt.fixed_point:
        p = trainer.profile
        model = _golden_copy(trainer)
        x_raw = quantize(x, p.input.fmt, p.input.rounding, p.input.overflow)
        fixed = fixed_step(model, x_raw, quantize(t, p.activation.fmt),
                           learning_rate_raw(rt.lr, rt.batch, p))
        n_layers = len(trainer.sizes) - 1
        y = fixed["a", n_layers].real
        layers = range(1, n_layers + 1)
        grads = {"weights": [fixed["G", l].real.tolist() for l in layers],
                 "bias": [fixed["g", l].real.tolist() for l in layers]}
    else:
        layers = rt._parameters()[1]
        dtype = np.asarray(layers[0][0]).dtype
        model = FloatMLP(trainer.sizes, [w for w, _ in layers], [b for _, b in layers],
                         loss=rt.loss, dtype=dtype)
        g, acts = model.gradients(np.asarray(x, dtype=dtype), np.asarray(t, dtype=dtype))
        y = acts[-1].astype(np.float64)
        grads = {"weights": [gw.astype(np.float64).tolist() for gw, _ in g],
                 "bias": [gb.astype(np.float64).tolist() for _, gb in g]}
    return {"prediction": y.tolist(), "loss": loss_value(y, t, rt.loss), "gradients": grads}


# -- tables --------------------------------------------------------------------------------


def _num(v: float) -> str:
    return f"{v:.12g}" if math.isfinite(v) else str(v)


def tables(ex: Explanation) -> list:
    """Rich tables for the console: overview, values (or per-stage summary), neuron, events."""
    from rich.markup import escape
    from rich.table import Table

    tr = ex.trainer
    rt = tr.runtime
    textbook = tr.dataset.initial is not None
    ref_col = "float64 (textbook)" if textbook else "float64"
    out = []
    lr = rt.learning_rate_info
    head = Table(title=escape(f"fxbp explain: {tr.dataset.name}, step 1 of epoch {tr.epoch + 1}"),
                 show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value")
    head.add_row("network", "-".join(map(str, tr.sizes)) + f" sigmoid, loss {rt.loss}")
    rounding = "/".join(sorted({tr.profile.stage(n).rounding.value for n in TRAINING_STAGES}))
    head.add_row("precision", escape(f"{tr.profile.name}, training casts {rounding}, sigmoid "
                                     f"{tr.profile.sigmoid.kind}"))
    head.add_row("batch", f"{len(ex.samples)} sample(s) {_short(ex.samples.tolist())}, "
                          f"batch size {rt.batch}")
    head.add_row("learning rate", f"lr {lr['lr']:g}, eta = lr / batch = {rt.lr / rt.batch:.10g}"
                                  f" (fixed: {ex.eta[0]} * 2^-{ex.eta[1]} = {lr['eta']:.10g})")
    head.add_row("float64 starts from", ex.float_start)
    out.append(head)

    pred = Table(title="before the update")
    for col in ("quantity", ref_col, "fixed point (real)", "difference"):
        pred.add_column(col, justify="left" if col == "quantity" else "right")
    y = ex.stage("a", ex.n_layers)
    loss = ex.loss()
    shown = list(np.ndindex(y.ref.shape))[:TINY_TENSOR]
    for i in shown:
        pred.add_row(f"prediction {list(i)}", _num(y.ref[i]), _num(y.fixed.real[i]),
                     f"{y.fixed.real[i] - y.ref[i]:+.3g}")
    if len(shown) < y.ref.size:
        pred.add_row(f"({y.ref.size - len(shown)} more predictions in --json)", "", "", "")
    pred.add_row("loss", _num(loss["float"]), _num(loss["fixed"]),
                 f"{loss['fixed'] - loss['float']:+.3g}")
    out.append(pred)

    if ex.tiny:
        out.append(_value_table("every value, in docs/datapath.md order",
                                [(s, list(np.ndindex(s.fixed.raw.shape))) for s in ex.stages],
                                ref_col))
    else:
        summ = Table(title="per stage (docs/datapath.md order)")
        for col in ("§", "stage", "layer", "format", "values", "max |error| (LSB)",
                    "mean error (LSB)", "overflow", "underflow"):
            summ.add_column(col, justify="left" if col in ("stage", "format") else "right")
        for s in ex.stages:
            m = s.summary()
            summ.add_row(s.section, s.name, str(s.layer), str(s.fmt), f"{m['values']:,}",
                         f"{m['max_abs_error_lsb']:.3f}", f"{m['mean_error_lsb']:+.3f}",
                         f"{m['overflow']:,}", f"{m['underflow']:,}")
        out.append(summ)
    if ex.neuron is not None:
        layer, j = ex.neuron
        out.append(_value_table(f"neuron {j} of layer {layer}", ex.neuron_values(), ref_col))
    ev = Table(title="cast events of this step")
    for col in ("site", "values", "overflow", "underflow"):
        ev.add_column(col, justify="left" if col == "site" else "right")
    for name, c in ex.events.items():
        if c["total"]:
            ev.add_row(name, f"{c['total']:,}", f"{c['overflow']:,}", f"{c['underflow']:,}")
    out.append(ev)
    return out


def _short(values: list, n: int = 8) -> str:
    return str(values) if len(values) <= n else f"[{', '.join(map(str, values[:n]))}, ...]"


def _value_table(title: str, rows, ref_col: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title))
    for col in ("§", "stage", "layer", "index", "format", ref_col, "raw", "real", "error (LSB)",
                "event"):
        t.add_column(col, justify="left" if col in ("stage", "format", "event", "index") else "right")
    for s, idx in rows:
        err, ev = s.error_lsb, s.events()
        fmt = f"{s.fmt}" if not s.fixed.exact else f"2^-{s.fixed.frac} -> {s.fmt}"
        for i in idx:
            t.add_row(s.section, s.name, str(s.layer), ",".join(map(str, i)), fmt,
                      _num(float(s.ref[i])), str(int(s.fixed.raw[i])),
                      _num(float(s.fixed.real[i])), f"{err[i]:+.3f}", ev[i])
    return t
