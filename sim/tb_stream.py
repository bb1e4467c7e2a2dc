"""cocotb testbench for any fxbp unit (or bank of units) with valid/ready streams.

The runner (``fxbp.sim.runner``) builds the design and writes, in the build
directory, ``case.json`` (field layouts, constant ports, latency) and
``vectors.npz`` (input fields and the reference model's expected outputs). This
module only drives and compares: it feeds every vector under three traffic
patterns, checks every output bit, asserts the latency at full rate, and reports
the first failing vector with its inputs, expected bits and actual bits.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

PATTERNS = {"full-rate": (1.0, 1.0), "bubbles": (0.6, 1.0), "back-pressure": (1.0, 0.45),
            "both": (0.7, 0.5)}


def _load():
    case_dir = Path(os.environ["FXBP_TB_CASE_DIR"])
    cfg = json.loads((case_dir / "case.json").read_text())
    vec = np.load(case_dir / "vectors.npz")
    return case_dir, cfg, vec


def _pack(fields_layout, columns, n, words=None, offset=0):
    """Pack ``columns[name]`` (one array per field) into integers, fields LSB first in
    declaration order from bit ``offset``; adds into ``words`` when given."""
    words = [0] * n if words is None else words
    for name, width, _signed in fields_layout:
        mask = (1 << width) - 1
        col = columns[name].tolist()
        for k in range(n):
            words[k] |= (col[k] & mask) << offset
        offset += width
    return words


def _unpack(value, fields_layout):
    out = {}
    offset = 0
    for name, width, signed in fields_layout:
        v = (value >> offset) & ((1 << width) - 1)
        if signed and v >> (width - 1):
            v -= 1 << width
        out[name] = v
        offset += width
    return out


def _expected_words(cfg, vec, n_out):
    """The whole expected output word (all units, all fields) per output."""
    out_layout = cfg["out_fields"]
    unit_width = sum(w for _, w, _ in out_layout)
    words = [0] * n_out
    for u in range(cfg["n_units"]):
        columns = {name: vec[f"exp_{u}_{name}"] for name, _, _ in out_layout}
        _pack(out_layout, columns, n_out, words, u * unit_width)
    return words


def _mismatch(cfg, vec, pattern, index, word, want_word):
    """The first differing field of output ``index``, with its inputs, as a message."""
    out_layout = cfg["out_fields"]
    unit_width = sum(w for _, w, _ in out_layout)
    for u in range(cfg["n_units"]):
        got = _unpack(word >> (u * unit_width), out_layout)
        want = _unpack(want_word >> (u * unit_width), out_layout)
        for name, width, _ in out_layout:
            if got[name] != want[name]:
                mask = (1 << width) - 1
                if cfg["n_inputs"] == cfg["n_outputs"]:
                    inputs = {nm: int(vec[f"in_{nm}"][index]) for nm, _, _ in cfg["in_fields"]}
                    where = f"inputs {inputs}"
                else:
                    where = "inputs: see sum number above"
                return (f"{cfg['name']} [{pattern}] output {index}, unit {u} ({cfg['units'][u]}), "
                        f"field {name}: expected {want[name]} (0b{want[name] & mask:0{width}b}), "
                        f"got {got[name]} (0b{got[name] & mask:0{width}b}); {where}")
    return f"{cfg['name']} [{pattern}] output {index}: words differ"


@cocotb.test()
@cocotb.parametrize(pattern=list(PATTERNS))
async def stream_vectors(dut, pattern):
    """Every vector through the unit under one traffic pattern; every output bit checked."""
    case_dir, cfg, vec = _load()
    valid_prob, ready_prob = PATTERNS[pattern]
    n = int(cfg["n_inputs"])
    n_out = int(cfg["n_outputs"])
    packed = _pack(cfg["in_fields"], {name: vec[f"in_{name}"] for name, _, _ in cfg["in_fields"]}, n)
    expected = _expected_words(cfg, vec, n_out)
    rng = np.random.default_rng(sorted(PATTERNS).index(pattern))
    offers = (rng.random(n * 4 + 1000) < valid_prob).tolist()
    readies = (rng.random(n * 4 + 1000) < ready_prob).tolist()

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for name, value in cfg["statics"].items():
        getattr(dut, name).value = value
    edge, settled = RisingEdge(dut.clk), ReadOnly()
    await edge
    await edge
    dut.rst.value = 0

    i_valid, i_payload, o_ready = dut.i__valid, dut.i__payload, dut.o__ready
    monitor = dut.monitor          # {o.payload, o.valid, i.ready}: one read a cycle
    k = got = cycle = 0
    first_in = first_out = None
    last_valid = last_ready = None
    last_payload = None
    limit = len(offers)
    t0 = time.perf_counter()
    while got < n_out and cycle < limit:
        offer = offers[cycle] and k < n
        if offer != last_valid:
            i_valid.value = int(offer)
            last_valid = offer
        if offer and last_payload != k:
            i_payload.value = packed[k]
            last_payload = k
        ready = readies[cycle]
        if ready != last_ready:
            o_ready.value = int(ready)
            last_ready = ready
        await settled
        seen = monitor.value.to_unsigned() if (offer or ready) else 0
        if offer and seen & 1:
            if first_in is None:
                first_in = cycle
            k += 1
        if ready and seen & 2:
            if first_out is None:
                first_out = cycle
            word = seen >> 2
            if word != expected[got]:
                raise AssertionError(_mismatch(cfg, vec, pattern, got, word, expected[got]))
            got += 1
        await edge
        cycle += 1
    seconds = time.perf_counter() - t0
    assert got == n_out, f"{cfg['name']} [{pattern}]: {got} of {n_out} outputs in {cycle} cycles"
    if pattern == "full-rate" and cfg["latency"] is not None:
        latency = first_out - first_in
        assert latency == cfg["latency"], f"latency {latency}, expected {cfg['latency']}"
    with open(case_dir / f"speed-{pattern}.json", "w") as fh:
        json.dump({"cycles": cycle, "seconds": seconds, "outputs": got}, fh)
