"""Measured Fmax of generated engines, so ``--backend rtl`` can turn cycles into FPGA
samples/s: ``fxbp synth engine --pnr`` records each result here, keyed by the engine's
netlist (:func:`record_key`: its generation hash and a hash of its Verilog) and the
device. A configuration keeps its ``gen_hash`` across fxbp versions while its RTL
changes, so a key of the configuration alone would put one netlist's Fmax on another."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

__all__ = ["fmax_file", "record_fmax", "known_fmax", "recorded", "netlist_hash",
           "verilog_hash", "record_key"]

#: Preferred device when several were measured.
_PREFERENCE = ("ecp5 25f", "ecp5 45f", "ecp5 85f", "ice40 up5k")


def fmax_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "fxbp" / "engine-fmax.json"


#: netlist_hash's results in this process, by generation hash.
_NETLISTS: dict[int, str] = {}


def verilog_hash(text: str) -> str:
    """8 hex digits of a SHA-256 of an engine's Verilog."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def netlist_hash(config, verilog: str | None = None) -> str:
    """The hash of ``config``'s engine as ``--backend rtl`` simulates it by default
    (:func:`~fxbp.sw.rtl.engine_verilog`: generic, collision poisoning on), whose RTL is
    the synthesised one's (the poison is simulation logic beside it). ``verilog``, when
    the caller has that text already, saves generating it again."""
    key = config.gen_hash
    if key not in _NETLISTS:
        if verilog is None:
            from .rtl import engine_verilog
            verilog = engine_verilog(config)
        _NETLISTS[key] = verilog_hash(verilog)
    return _NETLISTS[key]


def record_key(gen_hash: str, netlist: str) -> str:
    """The record's key: ``GENHASH-NETLIST``, both 8 hex digits."""
    return f"{gen_hash}-{netlist}"


def _load() -> dict:
    try:
        return json.loads(fmax_file().read_text())
    except (OSError, ValueError):
        return {}


def recorded(gen_hash: str, netlist: str) -> dict:
    """``{"FAMILY DEVICE": {"fmax_mhz", "seeds", "date"}}`` recorded for this netlist."""
    data = _load()
    found = data.get(record_key(gen_hash, netlist), {}) if isinstance(data, dict) else {}
    return found if isinstance(found, dict) else {}


def record_fmax(config, family: str, device: str, fmax_mhz: float, seeds) -> None:
    data = _load()
    key = record_key(f"{config.gen_hash:08x}", netlist_hash(config))
    data.setdefault(key, {})[f"{family} {device}"] = {
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
    netlist = netlist_hash(config)
    found = recorded(f"{config.gen_hash:08x}", netlist)
    for dev in (*_PREFERENCE, *found):
        if dev in found:
            r = found[dev]
            return float(r["fmax_mhz"]), (f"fxbp synth engine --pnr on {dev} (netlist "
                                          f"{netlist}), worst of seeds {r['seeds']} "
                                          f"({r['date']})")
    return None
