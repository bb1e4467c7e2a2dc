"""Measured Fmax of generated engines, so ``--backend rtl`` can turn cycles into FPGA
samples/s: ``fxbp synth engine --pnr`` records each result here, keyed by the engine's
generation hash (``EngineConfig.gen_hash``) and the device."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["fmax_file", "record_fmax", "known_fmax"]

#: Preferred device when several were measured.
_PREFERENCE = ("ecp5 25f", "ecp5 45f", "ecp5 85f", "ice40 up5k")


def fmax_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "fxbp" / "engine-fmax.json"


def _load() -> dict:
    try:
        return json.loads(fmax_file().read_text())
    except (OSError, ValueError):
        return {}


def record_fmax(config, family: str, device: str, fmax_mhz: float, seeds) -> None:
    data = _load()
    data.setdefault(f"{config.gen_hash:08x}", {})[f"{family} {device}"] = {
        "fmax_mhz": fmax_mhz, "seeds": list(seeds), "date": time.strftime("%Y-%m-%d")}
    path = fmax_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError:
        pass                     # a read-only cache only loses the default clock


def known_fmax(config) -> tuple[float, str] | None:
    """``(MHz, where it comes from)`` for this engine, or None."""
    found = _load().get(f"{config.gen_hash:08x}", {})
    for dev in (*_PREFERENCE, *found):
        if dev in found:
            r = found[dev]
            return float(r["fmax_mhz"]), (f"fxbp synth engine --pnr on {dev}, worst of seeds "
                                          f"{r['seeds']} ({r['date']})")
    return None
