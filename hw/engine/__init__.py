"""The training engine (docs/engine.md): generation parameters, the Amaranth design."""

from .config import EngineConfig
from .engine import Engine

__all__ = ["EngineConfig", "Engine"]
