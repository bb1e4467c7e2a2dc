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

__all__ = ["Stage", "PrecisionProfile", "load_profile", "preset_names", "toml_string",
           "FORWARD_STAGES", "TRAINING_STAGES", "STAGES"]

#: Stages cast in the forward pass (also at inference): deterministic rounding only.
FORWARD_STAGES = ("input", "preactivation", "activation")
#: Stages cast only while training; ``--rounding`` sets their rounding.
#: ``weight`` and ``bias`` name the casts of the updated weights and biases.
TRAINING_STAGES = ("derivative", "error", "delta", "gradient", "weight", "bias")
STAGES = ("input", "weight", "bias", "preactivation", "activation", "derivative",
          "error", "delta", "gradient")
LR_MODES = ("multiply", "shift")
#: How deep ``base`` may nest (a guard besides the cycle check).
MAX_BASE_DEPTH = 32


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
    """Formats and modes for every stage of the training datapath.

    ``learning_rate_rounding`` is the rounding of the cast ``eta_raw = cast(lr / batch)``
    into ``learning_rate`` (deterministic: the rate is cast once per run).
    """

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
    learning_rate_rounding: Rounding = Rounding.NEAREST_EVEN

    def __post_init__(self):
        for key in ("name", "description"):
            if not isinstance(getattr(self, key), str):
                raise FxbpError(f"{key} must be a string, not {getattr(self, key)!r}")
        if (isinstance(self.accumulator_bits, bool) or not isinstance(self.accumulator_bits, int)
                or not 2 <= self.accumulator_bits <= 62):
            raise FxbpError(f"accumulator_bits must be an integer from 2 to 62, not "
                            f"{self.accumulator_bits!r}")
        if self.lr_mode not in LR_MODES:
            raise FxbpError(f"lr_mode must be 'multiply' or 'shift', not {self.lr_mode!r}")
        if self.learning_rate.signed:
            raise FxbpError(f"the learning-rate format must be unsigned (UQ...), not "
                            f"{self.learning_rate}")
        if not isinstance(self.learning_rate_rounding, Rounding):
            raise FxbpError(f"learning_rate rounding must be a Rounding, not "
                            f"{self.learning_rate_rounding!r}")
        if not self.learning_rate_rounding.deterministic:
            raise FxbpError("learning_rate is cast once per run and needs a deterministic "
                            "rounding (truncate, toward-zero, half-up, nearest-even), not "
                            "'stochastic'")
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
            "learning_rate_rounding": self.learning_rate_rounding.value,
            "lr_mode": self.lr_mode,
            "accumulator_bits": self.accumulator_bits,
            "sigmoid": self.sigmoid.as_dict(),
        }

    def to_toml(self) -> str:
        """The profile as TOML that :func:`load_profile` reads back to an equal profile."""
        lines = [f"name = {toml_string(self.name)}",
                 f"description = {toml_string(self.description)}",
                 f"accumulator_bits = {self.accumulator_bits}",
                 f"lr_mode = {toml_string(self.lr_mode)}",
                 "", "[sigmoid]", f"kind = {toml_string(self.sigmoid.kind)}",
                 f"entries = {self.sigmoid.entries}",
                 f"input_range = {self.sigmoid.input_range!r}",
                 "", "[stages]"]
        for n in STAGES:
            s = self.stage(n)
            lines.append(f'{n} = {{ format = "{s.fmt}", rounding = "{s.rounding.value}", '
                         f'overflow = "{s.overflow.value}" }}')
        lines.append(f'learning_rate = {{ format = "{self.learning_rate}", '
                     f'rounding = "{self.learning_rate_rounding.value}" }}')
        return "\n".join(lines) + "\n"


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (quoted, with quotes, backslashes and control
    characters escaped)."""
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def preset_names() -> list[str]:
    files = resources.files("fxbp.sw") / "presets"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


STAGE_KEYS = ("format", "rounding", "overflow")
LEARNING_RATE_KEYS = ("format", "rounding")
TOP_KEYS = ("name", "description", "base", "accumulator_bits", "lr_mode", "sigmoid", "stages")
SIGMOID_KEYS = ("kind", "entries", "input_range")


def _unknown_keys(where: str, what: str, given, allowed) -> None:
    """Refuse keys of a table outside ``allowed``, naming them and the allowed ones."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        raise FxbpError(f"{where}: {what} has unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{keys}; allowed: {', '.join(allowed)}")


def _parse_stage(name: str, value, where: str) -> Stage:
    try:
        if isinstance(value, str):
            return Stage(QFormat.parse(value))
        if isinstance(value, dict):
            _unknown_keys(where, f"stage {name!r}", value, STAGE_KEYS)
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


def _parse_learning_rate(value, where: str) -> tuple[QFormat, Rounding]:
    """The learning-rate format and the rounding of ``eta``'s cast into it."""
    try:
        if isinstance(value, str):
            return QFormat.parse(value), Rounding.NEAREST_EVEN
        if isinstance(value, dict):
            _unknown_keys(where, "learning_rate", value, LEARNING_RATE_KEYS)
            if "format" not in value:
                raise FxbpError(f"{where}: learning_rate needs a format, e.g. "
                                f"learning_rate = {{ format = \"UQ0.16\" }}")
            return (QFormat.parse(value["format"]),
                    Rounding.parse(value.get("rounding", "nearest-even")))
    except FxbpError:
        raise
    except (ValueError, TypeError) as exc:
        raise FxbpError(f"{where}: learning_rate: {exc}") from None
    raise FxbpError(f"{where}: learning_rate must be a format string or a table, not {value!r}")


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise FxbpError(f"{where}: {key} must be a table ([{key}]), not {value!r}")
    return value


def _checked(value, kind, what: str, where: str):
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        names = {str: "a string", int: "an integer"}
        raise FxbpError(f"{where}: {what} must be {names.get(kind, kind.__name__)}, not {value!r}")
    return value


def profile_from_dict(data: dict, where: str, *, directory: Path | None = None,
                      chain: tuple[str, ...] = ()) -> PrecisionProfile:
    """The profile a parsed TOML table describes.

    ``where`` names the source in messages; ``directory`` is where a relative
    ``base`` path is looked up; ``chain`` lists the sources already being read
    (a ``base`` among them is a cycle).
    """
    _unknown_keys(where, "the profile", data, TOP_KEYS)
    base = data.get("base")
    merged: dict = {}
    if base is not None:
        _checked(base, str, "base", where)
        parent = load_profile(base, relative_to=directory, _chain=chain)
        merged = tomllib.loads(parent.to_toml())
    stages = {**merged.get("stages", {}), **_table(data, "stages", where)}
    sig = {**merged.get("sigmoid", {}), **_table(data, "sigmoid", where)}
    _unknown_keys(where, "[sigmoid]", sig, SIGMOID_KEYS)
    top = {**{k: v for k, v in merged.items() if k not in ("stages", "sigmoid")},
           **{k: v for k, v in data.items() if k not in ("stages", "sigmoid", "base")}}
    missing = [n for n in (*STAGES, "learning_rate") if n not in stages]
    if missing:
        raise FxbpError(f"{where}: [stages] lacks {', '.join(missing)}; give every stage a "
                        f"format or start from a preset with base = \"fx16\"")
    extra = set(stages) - set(STAGES) - {"learning_rate"}
    if extra:
        raise FxbpError(f"{where}: unknown stages {sorted(extra)}; stages are "
                        f"{', '.join(STAGES)}, learning_rate")
    name = _checked(top.get("name", where), str, "name", where)
    description = _checked(top.get("description", ""), str, "description", where)
    accumulator_bits = _checked(top.get("accumulator_bits", 40), int, "accumulator_bits", where)
    lr_mode = _checked(top.get("lr_mode", "multiply"), str, "lr_mode", where)
    lr_fmt, lr_rounding = _parse_learning_rate(stages["learning_rate"], where)
    try:
        spec = SigmoidSpec(kind=sig.get("kind", "lut"), entries=sig.get("entries", 256),
                           input_range=sig.get("input_range", 8))
        return PrecisionProfile(
            name=name, description=description, accumulator_bits=accumulator_bits,
            lr_mode=lr_mode, learning_rate=lr_fmt, learning_rate_rounding=lr_rounding,
            sigmoid=spec, **{n: _parse_stage(n, stages[n], where) for n in STAGES})
    except FxbpError as exc:
        if str(exc).startswith(where):
            raise
        raise FxbpError(f"{where}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise FxbpError(f"{where}: {exc}") from None


def load_profile(name_or_path: str | Path, *, relative_to: Path | None = None,
                 _chain: tuple[str, ...] = ()) -> PrecisionProfile:
    """A named preset (``fx16``, ``fx12``, ``fx8``) or a TOML file.

    A relative path is looked up in ``relative_to`` when given (a ``base`` is
    relative to the file that names it). ``_chain`` holds the sources whose
    ``base`` led here; meeting one again is a cycle, refused.
    """
    text = str(name_or_path)
    if text in preset_names():
        key, where = f"preset {text}", f"preset {text}"
        source = resources.files("fxbp.sw") / "presets" / f"{text}.toml"
        directory = None
    else:
        if not text.endswith(".toml"):
            raise FxbpError(f"unknown precision preset {text!r}: use one of "
                            f"{', '.join(preset_names())} or a .toml profile file")
        path = Path(text)
        if relative_to is not None and not path.is_absolute():
            path = Path(relative_to) / path
        key, where = str(path.resolve()), str(path) if relative_to is not None else text
        source, directory = path, path.parent
    if key in _chain:
        cycle = " -> ".join((*_chain[_chain.index(key):], key))
        raise FxbpError(f"precision profile bases form a cycle ({cycle}): remove one base")
    if len(_chain) >= MAX_BASE_DEPTH:
        raise FxbpError(f"{where}: more than {MAX_BASE_DEPTH} nested bases: flatten the profile")
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FxbpError(f"precision profile {where} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FxbpError(f"cannot read precision profile {where}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FxbpError(f"precision profile {where} is not valid TOML: {exc}") from None
    return profile_from_dict(data, where, directory=directory, chain=(*_chain, key))
