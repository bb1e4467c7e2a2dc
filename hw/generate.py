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

#: Cast sites ``fxbp gen cast --stage`` can build: source (width, fraction bits) per profile.
CAST_STAGES = ("preactivation", "error", "derivative", "delta", "gradient")


def _cast_source(p: PrecisionProfile, stage: str) -> tuple[int, int]:
    fw, fa = p.weight.fmt.frac_bits, p.activation.fmt.frac_bits
    fdl, fe, fd = p.delta.fmt.frac_bits, p.error.fmt.frac_bits, p.derivative.fmt.frac_bits
    acc = p.accumulator_bits
    return {
        "preactivation": (acc, fw + fa),                     # a hidden layer's MAC sum
        "error": (acc, fdl + fw),                            # back-propagated error sum
        "derivative": (2 * p.activation.fmt.total_bits + 2, 2 * fa),
        "delta": (p.error.fmt.total_bits + p.derivative.fmt.total_bits, fe + fd),
        "gradient": (acc, fdl + fa),                         # weight-gradient sum
    }[stage]


def _mac(p, stage):
    w, a = p.weight.fmt, p.activation.fmt
    fan_in = max_exact_fan_in(w.total_bits, a.total_bits + (0 if a.signed else 1), p.accumulator_bits)
    return MAC(a_width=w.total_bits, b_width=a.total_bits + (0 if a.signed else 1),
               acc_width=p.accumulator_bits, max_fan_in=max(1, fan_in))


def _cast(p, stage):
    stage = stage or "preactivation"
    if stage not in CAST_STAGES:
        raise FxbpError(f"unknown cast stage {stage!r}: choose one of {', '.join(CAST_STAGES)}")
    width, frac = _cast_source(p, stage)
    s = p.stage(stage)
    return Cast(in_width=width, from_frac=frac, fmt=s.fmt, rounding=s.rounding, overflow=s.overflow)


def _sigmoid(p, stage):
    return Sigmoid(z_fmt=p.preactivation.fmt, a_fmt=p.activation.fmt, spec=p.sigmoid,
                   rounding=p.activation.rounding)


def _derivative(p, stage):
    return SigmoidDerivative(a_fmt=p.activation.fmt, d_fmt=p.derivative.fmt,
                             rounding=p.derivative.rounding, overflow=p.derivative.overflow)


def _weight_update(p, stage):
    if p.lr_mode != "multiply":
        raise FxbpError(f"profile {p.name} uses lr_mode = \"shift\", whose shift depends on --lr "
                        f"and --batch; fxbp gen builds the multiplier form only: use lr_mode = "
                        f"\"multiply\"")
    return WeightUpdate(w_fmt=p.weight.fmt, g_fmt=p.gradient.fmt, lr_fmt=p.learning_rate,
                        rounding=p.weight.rounding, overflow=p.weight.overflow)


#: name -> (builder, what its parameters come from)
UNITS = {
    "mac": (_mac, "a: weight format, b: activation format, accumulator_bits; max fan-in: "
                  "the largest the accumulator holds exactly"),
    "cast": (_cast, "source width/fraction of the --stage site (default preactivation), that "
                    "stage's format, rounding and overflow"),
    "sigmoid": (_sigmoid, "preactivation -> activation format, the profile's sigmoid (lut/plan)"),
    "sigmoid-derivative": (_derivative, "activation -> derivative format, derivative rounding "
                                        "and overflow"),
    "weight-update": (_weight_update, "weight, gradient and learning-rate formats, the weight "
                                      "stage's rounding and overflow"),
}


def build_unit(name: str, profile: PrecisionProfile, stage: str | None = None):
    """The Amaranth component ``name`` for ``profile``."""
    if name not in UNITS:
        raise FxbpError(f"unknown unit {name!r}: choose one of {', '.join(UNITS)}")
    if stage is not None and name != "cast":
        raise FxbpError("--stage applies to the cast unit only")
    try:
        return UNITS[name][0](profile, stage)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, FxbpError):
            raise
        raise FxbpError(f"{name} does not fit profile {profile.name}: {exc}") from None


def verilog(component, name: str) -> str:
    """Verilog for ``component``; the same parameters always give the same text."""
    from amaranth.back import verilog as back
    return back.convert(component, name=name, emit_src=False)
