"""fxbp's software side: fixed-point core, golden model, float reference, runtimes, CLI."""

from .errors import FxbpError
from .fixed import CastEvents, Overflow, QFormat, Rounding, cast, exact_matmul, quantize
from .profile import PrecisionProfile, Stage, load_profile
from .train import TrainConfig, Trainer

__all__ = ["FxbpError", "QFormat", "Rounding", "Overflow", "CastEvents", "cast", "quantize",
           "exact_matmul", "PrecisionProfile", "Stage", "load_profile", "TrainConfig", "Trainer"]
