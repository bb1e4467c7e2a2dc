"""Units from a precision profile, and their Verilog (``fxbp gen``)."""

from __future__ import annotations

from ..sw.errors import FxbpError
from ..sw.profile import PrecisionProfile
from .cast import Cast
from .mac import MAC, max_exact_fan_in
from .sigmoid import Sigmoid
from .sigmoid_derivative import SigmoidDerivative
from .weight_update import WeightUpdate

__all__ = ["UNITS", "CAST_STAGES", "build_unit", "verilog"]

#: Cast sites ``fxbp gen cast --stage`` builds: the profile stage whose format, rounding and
#: overflow the cast uses, and what its input is.
CAST_STAGES = {
    "input": ("input", "a host value rounded to odd at f_in + 2 fraction bits (section 2; "
                       "docs/rtl.md)"),
    "preactivation": ("preactivation", "a layer's MAC sum (section 5; --layer first|hidden)"),
    "output-error": ("error", "a_L - t, the output error (section 6.1)"),
    "error": ("error", "a back-propagated error sum (section 6.2)"),
    "derivative": ("derivative", "a (1 - a), exact (section 3.3)"),
    "delta": ("delta", "e d, exact (section 6)"),
    "xent-delta": ("delta", "e_L, the cross-entropy output delta (section 6.1)"),
    "gradient": ("gradient", "a weight-gradient batch sum (section 7; --layer first|hidden)"),
    "bias-gradient": ("gradient", "a bias-gradient batch sum of deltas (section 7)"),
}


#: Units whose layer-1 instance differs from a hidden layer's when the input and
#: activation formats differ (the layer's input operand).
LAYER_DEPENDENT = {("mac", None), ("cast", "preactivation"), ("cast", "gradient")}
LAYERS = ("first", "hidden")


def layer_input(p: PrecisionProfile, layer: str | None, what: str):
    """The format of a layer's inputs: the input format for layer 1, else the activation
    format. ``layer`` may be left out only when the two agree."""
    if layer is None:
        if p.input.fmt != p.activation.fmt:
            raise FxbpError(f"{what}: the input ({p.input.fmt}) and activation "
                            f"({p.activation.fmt}) formats differ, so layer 1's unit differs "
                            f"from a hidden layer's: choose with --layer first or --layer hidden")
        return p.activation.fmt
    if layer not in LAYERS:
        raise FxbpError(f"unknown layer {layer!r}: choose first or hidden")
    return p.input.fmt if layer == "first" else p.activation.fmt


def _signed_width(fmt) -> int:
    """Bits of a two's complement port that holds every value of ``fmt``."""
    return fmt.total_bits + (0 if fmt.signed else 1)


def cast_source(p: PrecisionProfile, stage: str, layer: str | None = None) -> tuple[int, int]:
    """``(input width, input fraction bits)`` of the cast at ``stage``; the port is two's
    complement, one bit wider for each unsigned operand."""
    fw, fa = p.weight.fmt.frac_bits, p.activation.fmt.frac_bits
    fdl, fe, fd = p.delta.fmt.frac_bits, p.error.fmt.frac_bits, p.derivative.fmt.frac_bits
    acc, width = p.accumulator_bits, lambda s: _signed_width(p.stage(s).fmt)
    if stage == "input":
        # Round to odd at 2 extra bits keeps every deterministic rounding exact (docs/rtl.md);
        # 2 more integer bits let out-of-range values reach the saturation logic.
        need = width("input") + 4
        if need > 64:
            raise FxbpError(f"the input cast site takes f_in + 2 fraction bits and 2 integer "
                            f"bits of headroom: {need} bits for {p.input.fmt}, more than 64; "
                            f"quantise inputs on the host (fxbp.sw.fixed.quantize) instead")
        return need, p.input.fmt.frac_bits + 2
    if stage in ("preactivation", "gradient"):
        fin = layer_input(p, layer, f"cast --stage {stage}").frac_bits
        return (acc, fw + fin) if stage == "preactivation" else (acc, fdl + fin)
    return {
        "output-error": (width("activation") + 1, fa),
        "error": (acc, fdl + fw),
        "derivative": (2 * width("activation") + 2, 2 * fa),
        "delta": (width("error") + width("derivative"), fe + fd),
        "xent-delta": (width("error"), fe),
        "bias-gradient": (acc, fdl),
    }[stage]


def _common(kw):
    """The options every unit takes (``shallow``: every one but the MAC)."""
    out = {"tag_width": kw.get("tag_width", 0),
           "registered_ready": kw.get("registered_ready", False)}
    if kw.get("shallow"):
        out["shallow"] = True
    return out


def _mac(p, stage, **kw):
    w, a, b = p.weight.fmt, layer_input(p, kw.get("layer"), "mac"), p.bias.fmt
    b_width = _signed_width(a)
    shift = w.frac_bits + a.frac_bits - b.frac_bits
    bound = (1 << (b.total_bits - 1)) << shift
    fan_in = max_exact_fan_in(w.total_bits, b_width, p.accumulator_bits, bound)
    return MAC(a_width=w.total_bits, b_width=b_width, acc_width=p.accumulator_bits,
               max_fan_in=max(1, fan_in), bias_width=b.total_bits, bias_shift=shift, **_common(kw))


def _cast(p, stage, **kw):
    stage = stage or "preactivation"
    if stage not in CAST_STAGES:
        raise FxbpError(f"unknown cast stage {stage!r}: choose one of {', '.join(CAST_STAGES)}")
    width, frac = cast_source(p, stage, kw.get("layer"))
    s = p.stage(CAST_STAGES[stage][0])
    return Cast(in_width=width, from_frac=frac, fmt=s.fmt, rounding=s.rounding,
                overflow=s.overflow, **_common(kw))


def _sigmoid(p, stage, **kw):
    return Sigmoid(z_fmt=p.preactivation.fmt, a_fmt=p.activation.fmt, spec=p.sigmoid,
                   rounding=p.activation.rounding, overflow=p.activation.overflow, **_common(kw))


def _derivative(p, stage, **kw):
    return SigmoidDerivative(a_fmt=p.activation.fmt, d_fmt=p.derivative.fmt,
                             rounding=p.derivative.rounding, overflow=p.derivative.overflow,
                             **_common(kw))


def _update(p, which, kw):
    lr_shift = kw.get("lr_shift")
    if p.lr_mode == "shift":
        if lr_shift is None:
            raise FxbpError(f"profile {p.name} uses lr_mode = \"shift\", whose shift k (eta = "
                            f"2^-k) depends on --lr and --batch: give it with --lr-shift K")
        lr = {"lr_shift": lr_shift}
    else:
        if lr_shift is not None:
            raise FxbpError(f"--lr-shift applies to lr_mode = \"shift\" profiles; profile "
                            f"{p.name} multiplies by the learning rate")
        lr = {"lr_fmt": p.learning_rate}
    s = p.stage(which)
    return WeightUpdate(w_fmt=s.fmt, g_fmt=p.gradient.fmt, rounding=s.rounding,
                        overflow=s.overflow, **lr, **_common(kw))


#: name -> (builder, what its parameters come from)
UNITS = {
    "mac": (_mac, "a: weight format, b: activation format, accumulator_bits, bias: bias format "
                  "shifted by fw + fa - fb; max fan-in: the largest the accumulator holds exactly"),
    "cast": (_cast, "the --stage site (default preactivation; " + ", ".join(CAST_STAGES)
                    + "): its source width/fraction bits, the stage's format, rounding, overflow"),
    "sigmoid": (_sigmoid, "preactivation -> activation format, the profile's sigmoid (lut/plan), "
                          "activation rounding and overflow"),
    "sigmoid-derivative": (_derivative, "activation -> derivative format, derivative rounding "
                                        "and overflow"),
    "weight-update": (lambda p, s, **kw: _update(p, "weight", kw),
                      "weight, gradient and learning-rate formats (shift mode: --lr-shift), the "
                      "weight stage's rounding and overflow"),
    "bias-update": (lambda p, s, **kw: _update(p, "bias", kw),
                    "bias, gradient and learning-rate formats (shift mode: --lr-shift), the "
                    "bias stage's rounding and overflow"),
}


def build_unit(name: str, profile: PrecisionProfile, stage: str | None = None, *,
               tag_width: int = 0, registered_ready: bool = False, lr_shift: int | None = None,
               layer: str | None = None, shallow: bool = False):
    """The Amaranth component ``name`` for ``profile``.

    ``shallow`` leaves out the registers that only a fast clock needs (every unit but the
    MAC, whose registers are the hard multiplier's; deterministic rounding only).

    ``layer`` (``"first"`` or ``"hidden"``) picks the layer whose inputs a MAC or a
    pre-activation/gradient cast takes; it must be given when the input and activation
    formats differ (``LAYER_DEPENDENT``).
    """
    if name not in UNITS:
        raise FxbpError(f"unknown unit {name!r}: choose one of {', '.join(UNITS)}")
    if stage is not None and name != "cast":
        raise FxbpError("--stage applies to the cast unit only")
    if lr_shift is not None and name not in ("weight-update", "bias-update"):
        raise FxbpError("--lr-shift applies to weight-update and bias-update only")
    if shallow and name == "mac":
        raise FxbpError("--shallow applies to every unit but the MAC, whose registers are the "
                        "hard multiplier's own")
    site = (name, (stage or "preactivation") if name == "cast" else None)
    if layer is not None and site not in LAYER_DEPENDENT:
        raise FxbpError("--layer applies to mac and to the preactivation and gradient casts only")
    try:
        return UNITS[name][0](profile, stage, tag_width=tag_width,
                              registered_ready=registered_ready, lr_shift=lr_shift, layer=layer,
                              shallow=shallow)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, FxbpError):
            raise
        raise FxbpError(f"{name} does not fit profile {profile.name}: {exc}") from None


def verilog(component, name: str, *, platform=None) -> str:
    """Verilog for ``component``; the same parameters always give the same text.

    ``platform``: what every ``elaborate`` is given; ``SynthTarget("ecp5")`` (or an ECP5
    board platform) makes the hard-multiplier units instantiate MULT18X18D with its
    registers. None (simulation) gives generic logic."""
    from amaranth.back import verilog as back
    return back.convert(component, name=name, platform=platform, emit_src=False)
