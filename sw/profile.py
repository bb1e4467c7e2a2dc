"""Precision profiles: the format, rounding and overflow of every datapath stage.

A profile is read from TOML (``sw/presets/*.toml`` hold the named presets
``fx16``, ``fx12`` and ``fx8``). ``docs/datapath.md`` says where each stage's
cast happens; ``docs/precision-profiles.md`` documents the file format.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import FxbpError
from .fixed import QFormat, Overflow, Rounding
from .sigmoid import SigmoidSpec, lut_params

__all__ = ["Stage", "PrecisionProfile", "load_profile", "preset_names",
           "FORWARD_STAGES", "TRAINING_STAGES", "STAGES"]

#: Stages cast in the forward pass (also at inference): deterministic rounding only.
FORWARD_STAGES = ("input", "preactivation", "activation")
#: Stages cast only while training; ``--rounding`` sets their rounding.
#: ``weight`` and ``bias`` name the casts of the updated weights and biases.
TRAINING_STAGES = ("derivative", "error", "delta", "gradient", "weight", "bias")
STAGES = ("input", "weight", "bias", "preactivation", "activation", "derivative",
          "error", "delta", "gradient")
LR_MODES = ("multiply", "shift")


@dataclass(frozen=True)
class Stage:
    """One stage's format with the rounding and overflow of the cast into it."""

    fmt: QFormat
    rounding: Rounding = Rounding.NEAREST_EVEN
    overflow: Overflow = Overflow.SATURATE

    def as_dict(self) -> dict:
        return {**self.fmt.describe(), "rounding": self.rounding.value,
                "overflow": self.overflow.value}


@dataclass(frozen=True)
class PrecisionProfile:
    """Formats and modes for every stage of the training datapath."""

    name: str
    input: Stage
    weight: Stage
    bias: Stage
    preactivation: Stage
    activation: Stage
    derivative: Stage
    error: Stage
    delta: Stage
    gradient: Stage
    learning_rate: QFormat
    accumulator_bits: int = 40
    lr_mode: str = "multiply"
    sigmoid: SigmoidSpec = SigmoidSpec()
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.accumulator_bits, int) or not 2 <= self.accumulator_bits <= 62:
            raise FxbpError(f"accumulator_bits must be an integer from 2 to 62, not "
                            f"{self.accumulator_bits!r}")
        if self.lr_mode not in LR_MODES:
            raise FxbpError(f"lr_mode must be 'multiply' or 'shift', not {self.lr_mode!r}")
        if self.learning_rate.signed:
            raise FxbpError(f"the learning-rate format must be unsigned (UQ...), not "
                            f"{self.learning_rate}")
        for name in FORWARD_STAGES:
            if not getattr(self, name).rounding.deterministic:
                raise FxbpError(f"stage {name!r} is cast at inference too and needs a "
                                f"deterministic rounding, not 'stochastic'")
        if self.sigmoid.kind == "lut":
            lut_params(self.preactivation.fmt, self.sigmoid)

    def stage(self, name: str) -> Stage:
        return getattr(self, name)

    def with_rounding(self, rounding: Rounding | str) -> PrecisionProfile:
        """A copy whose training stages (``TRAINING_STAGES``) all use ``rounding``."""
        rounding = Rounding.parse(rounding)
        changes = {n: dataclasses.replace(self.stage(n), rounding=rounding) for n in TRAINING_STAGES}
        return dataclasses.replace(self, **changes)

    @property
    def uses_stochastic(self) -> bool:
        return any(not self.stage(n).rounding.deterministic for n in STAGES)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "stages": {n: self.stage(n).as_dict() for n in STAGES},
            "learning_rate": self.learning_rate.describe(),
            "lr_mode": self.lr_mode,
            "accumulator_bits": self.accumulator_bits,
            "sigmoid": self.sigmoid.as_dict(),
        }

    def to_toml(self) -> str:
        """The profile as TOML that :func:`load_profile` reads back to an equal profile."""
        lines = [f'name = "{self.name}"', f'description = "{self.description}"',
                 f"accumulator_bits = {self.accumulator_bits}", f'lr_mode = "{self.lr_mode}"',
                 "", "[sigmoid]", f'kind = "{self.sigmoid.kind}"',
                 f"entries = {self.sigmoid.entries}", f"input_range = {self.sigmoid.input_range}",
                 "", "[stages]"]
        for n in STAGES:
            s = self.stage(n)
            lines.append(f'{n} = {{ format = "{s.fmt}", rounding = "{s.rounding.value}", '
                         f'overflow = "{s.overflow.value}" }}')
        lines.append(f'learning_rate = "{self.learning_rate}"')
        return "\n".join(lines) + "\n"


def preset_names() -> list[str]:
    files = resources.files("fxbp.sw") / "presets"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def _parse_stage(name: str, value, where: str) -> Stage:
    try:
        if isinstance(value, str):
            return Stage(QFormat.parse(value))
        if isinstance(value, dict):
            unknown = set(value) - {"format", "rounding", "overflow"}
            if unknown:
                raise FxbpError(f"{where}: stage {name!r} has unknown keys {sorted(unknown)}; "
                                f"use format, rounding, overflow")
            if "format" not in value:
                raise FxbpError(f"{where}: stage {name!r} needs a format, e.g. format = \"Q4.12\"")
            return Stage(QFormat.parse(value["format"]),
                         Rounding.parse(value.get("rounding", "nearest-even")),
                         Overflow.parse(value.get("overflow", "saturate")))
    except FxbpError:
        raise
    except (ValueError, TypeError) as exc:
        raise FxbpError(f"{where}: stage {name!r}: {exc}") from None
    raise FxbpError(f"{where}: stage {name!r} must be a format string or a table, not {value!r}")


def profile_from_dict(data: dict, where: str) -> PrecisionProfile:
    base = data.get("base")
    merged: dict = {}
    if base is not None:
        parent = load_profile(base)
        merged = tomllib.loads(parent.to_toml())
    stages = {**merged.get("stages", {}), **data.get("stages", {})}
    sig = {**merged.get("sigmoid", {}), **data.get("sigmoid", {})}
    top = {**{k: v for k, v in merged.items() if k not in ("stages", "sigmoid")},
           **{k: v for k, v in data.items() if k not in ("stages", "sigmoid", "base")}}
    unknown = set(top) - {"name", "description", "accumulator_bits", "lr_mode"}
    if unknown:
        raise FxbpError(f"{where}: unknown keys {sorted(unknown)}; allowed: name, description, "
                        f"base, accumulator_bits, lr_mode, [sigmoid], [stages]")
    missing = [n for n in (*STAGES, "learning_rate") if n not in stages]
    if missing:
        raise FxbpError(f"{where}: [stages] lacks {', '.join(missing)}; give every stage a "
                        f"format or start from a preset with base = \"fx16\"")
    extra = set(stages) - set(STAGES) - {"learning_rate"}
    if extra:
        raise FxbpError(f"{where}: unknown stages {sorted(extra)}; stages are "
                        f"{', '.join(STAGES)}, learning_rate")
    try:
        lr_value = stages["learning_rate"]
        lr_fmt = QFormat.parse(lr_value["format"] if isinstance(lr_value, dict) else lr_value)
        spec = SigmoidSpec(kind=sig.get("kind", "lut"), entries=sig.get("entries", 256),
                           input_range=sig.get("input_range", 8))
        return PrecisionProfile(
            name=top.get("name", where), description=top.get("description", ""),
            accumulator_bits=top.get("accumulator_bits", 40), lr_mode=top.get("lr_mode", "multiply"),
            learning_rate=lr_fmt, sigmoid=spec,
            **{n: _parse_stage(n, stages[n], where) for n in STAGES})
    except FxbpError as exc:
        if str(exc).startswith(where):
            raise
        raise FxbpError(f"{where}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise FxbpError(f"{where}: {exc}") from None


def load_profile(name_or_path: str | Path) -> PrecisionProfile:
    """A named preset (``fx16``, ``fx12``, ``fx8``) or a TOML file."""
    text = str(name_or_path)
    if text in preset_names():
        data = tomllib.loads((resources.files("fxbp.sw") / "presets" / f"{text}.toml").read_text())
        return profile_from_dict(data, f"preset {text}")
    path = Path(text)
    if not text.endswith(".toml"):
        raise FxbpError(f"unknown precision preset {text!r}: use one of "
                        f"{', '.join(preset_names())} or a .toml profile file")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FxbpError(f"precision profile {text} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FxbpError(f"cannot read precision profile {text}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FxbpError(f"precision profile {text} is not valid TOML: {exc}") from None
    return profile_from_dict(data, text)
