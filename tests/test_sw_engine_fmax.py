"""The Fmax record: keyed by the engine's netlist, so a figure measured on one version of
the RTL never becomes the default clock of another with the same configuration."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("amaranth")

from fxbp.hw.engine import EngineConfig                      # noqa: E402
from fxbp.sw import engine_fmax                              # noqa: E402
from fxbp.sw.profile import load_profile                     # noqa: E402
from fxbp.sw.rtl import engine_verilog                       # noqa: E402


@pytest.fixture
def record(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_fmax, "fmax_file", lambda: tmp_path / "engine-fmax.json")
    monkeypatch.setattr(engine_fmax, "_NETLISTS", {})
    return tmp_path / "engine-fmax.json"


def small_config():
    return EngineConfig(profile=load_profile("fx16"), sizes=(2, 3, 1), batch=4, lanes=2)


def test_netlist_hash_is_the_default_simulated_verilog(record):
    cfg = small_config()
    text = engine_verilog(cfg)
    assert engine_fmax.netlist_hash(cfg) == engine_fmax.verilog_hash(text)
    # the ECP5 netlist and the unpoisoned one are other texts: only the default form keys
    assert engine_fmax.verilog_hash(engine_verilog(cfg, poison_collisions=False)) != \
        engine_fmax.netlist_hash(cfg)


def test_record_found_for_its_netlist_only(record, monkeypatch):
    cfg = small_config()
    engine_fmax.record_fmax(cfg, "ecp5", "25f", 111.5, (1, 2, 3))
    netlist = engine_fmax.netlist_hash(cfg)
    data = json.loads(record.read_text())
    assert list(data) == [f"{cfg.gen_hash:08x}-{netlist}"]
    mhz, where = engine_fmax.known_fmax(cfg)
    assert mhz == 111.5 and f"netlist {netlist}" in where and "[1, 2, 3]" in where
    # The same configuration after an RTL change: another netlist, so no default clock.
    monkeypatch.setattr(engine_fmax, "_NETLISTS", {cfg.gen_hash: "0123abcd"})
    assert engine_fmax.known_fmax(cfg) is None


def test_record_under_the_configuration_alone_is_ignored(record):
    # The format before netlists were hashed: the key was the generation hash alone.
    cfg = small_config()
    record.write_text(json.dumps({f"{cfg.gen_hash:08x}": {
        "ecp5 25f": {"fmax_mhz": 100.0, "seeds": [1], "date": "2026-01-01"}}}))
    assert engine_fmax.known_fmax(cfg) is None
