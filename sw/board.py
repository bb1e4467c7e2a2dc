"""``--backend board``: the training engine on an FPGA board, over the UART host link.

The runtime is :class:`~fxbp.sw.rtl.RtlRuntime` with another transport: every
:class:`~fxbp.sw.engine_host.Program` goes through :class:`~fxbp.sw.host_link.HostLink`
(frames, CRC, retries) on a pyserial port instead of into the Verilator model. The
engine's own counters give the cycles, so the record's ``hardware`` section is the same,
plus a ``link`` section (bytes, frames, retries, the link-bound samples/s).

``--port sim://BOARD`` builds the board's top level (``boards/top.py``: engine and bridge
as ``fxbp build --board BOARD`` places them, without PLL and pins) into the native
harness and serves it on a pty (``sim/board_sim.py``); the host opens the pty with
pyserial, exactly as it opens ``/dev/ttyUSB0``.
"""

from __future__ import annotations

import time

from .errors import FxbpError
from .rtl import RtlRuntime

__all__ = ["BoardRuntime", "board_target", "find_ports", "auto_board_options", "SIM_OPTIONS",
           "SIM_CYCLES_PER_SECOND"]

#: USB-UART bridges on the supported boards (USB vendor, product) -> what they are.
KNOWN_USB_UARTS = {
    (0x0403, 0x6010): "FTDI FT2232H (iCEBreaker)",
    (0x0403, 0x6015): "FTDI FT231X (ULX3S)",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x10C4, 0xEA60): "Silicon Labs CP210x",
}

#: ``sim://BOARD?...`` options: the board's engine and link, and the line faults.
SIM_OPTIONS = ("lanes", "baud", "clock_mhz", "dataset_buffer", "max_words", "flip", "drop", "dup",
               "stall", "stall_cycles", "seed", "retries")

#: The simulated board's speed (cycles per wall second) the link's time-outs assume
#: until it is measured (then ``SimulatedBoard.wall_rate``, halved for safety): the
#: native model of a P = 8 engine runs about 1.2 M alone on this machine, and a quarter
#: of that with three other jobs beside it.
SIM_CYCLES_PER_SECOND = 100_000


def board_target(name: str):
    """The board target called ``name`` (``boards/targets.py``); FxbpError lists them."""
    try:
        from ..boards.targets import target
    except ImportError as exc:
        raise FxbpError(f"board support is not installed ({exc.name}): pip install "
                        f"'fxbp[board]'") from None
    try:
        return target(name)
    except KeyError as exc:
        raise FxbpError(f"{exc.args[0]}") from None


def find_ports() -> list[tuple[str, str]]:
    """Serial ports whose USB IDs are a known USB-UART: ``[(device, what)]``."""
    try:
        from serial.tools import list_ports
    except ImportError:
        return []
    return [(p.device, KNOWN_USB_UARTS[(p.vid, p.pid)]) for p in list_ports.comports()
            if (p.vid, p.pid) in KNOWN_USB_UARTS]


def auto_board_options(options: dict) -> dict:
    """``--backend auto``'s board options: the given port, else an attached known
    USB-UART (FxbpError, the reason auto skips the board, when there is none to use)."""
    if options.get("port"):
        return options
    ports = find_ports()
    if not ports:
        raise FxbpError("no --port given and no known USB-UART is attached")
    if not options.get("board"):
        device, what = ports[0]
        raise FxbpError(f"{what} at {device}, but no --board NAME says which bitstream it runs")
    return {**options, "port": ports[0][0]}


def _sim_value(key: str, text: str):
    try:
        if key in ("flip", "drop", "dup", "stall", "clock_mhz"):
            return float(text)
        return int(text)
    except ValueError:
        raise FxbpError(f"sim:// option {key}={text!r} is not a number") from None


class BoardRuntime(RtlRuntime):
    """The engine on a board (or ``sim://BOARD``), driven over the host link.

    ``port``: a serial device, or ``sim://BOARD[?option=value&...]`` (options:
    :data:`SIM_OPTIONS`). ``board``: the target the bitstream was built for (taken from
    a ``sim://`` port). ``lanes``, ``dataset_buffer``, ``shallow``, ``baud``, ``clock_mhz``: the build's
    options where they differ from the target's defaults; the engine is checked against
    the board's ID (its generation hash) before anything is written.
    """

    name = "board"

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 port: str | None = None, board: str | None = None, lanes: int | None = None,
                 baud: int | None = None, clock_mhz: float | None = None,
                 dataset_buffer: int | None = None, shallow: bool | None = None,
                 event_counters: bool | None = None, progress=None, retries: int = 8):
        if not port:
            raise FxbpError("--backend board needs --port: the board's serial port "
                            "(/dev/ttyUSB1), or sim://BOARD to simulate it")
        sim_options = {}
        if port.startswith("sim://"):
            from ..sim.board_sim import parse_sim_url
            sim_board, raw = parse_sim_url(port)
            unknown = sorted(set(raw) - set(SIM_OPTIONS))
            if unknown:
                raise FxbpError(f"unknown sim:// option {unknown[0]!r}: use "
                                f"{', '.join(SIM_OPTIONS)}")
            if board is not None and board != sim_board:
                raise FxbpError(f"--board {board} and --port {port} name different boards: "
                                f"drop --board")
            board = sim_board
            sim_options = {k: _sim_value(k, v) for k, v in raw.items()}
        if board is None:
            raise FxbpError(f"--port {port}: give --board NAME, the target the bitstream was "
                            f"built for (fxbp build --board NAME)")
        self.target = t = board_target(board)
        pick = {"lanes": lanes, "baud": baud, "clock_mhz": clock_mhz,
                "dataset_buffer": dataset_buffer}
        for k, v in sim_options.items():
            if k in pick:
                if pick[k] is not None and pick[k] != v:
                    raise FxbpError(f"--{k.replace('_', '-')} {pick[k]} and sim:// {k}={v} "
                                    f"disagree: give one")
                pick[k] = v
        self.board_lanes = pick["lanes"] or t.lanes
        self.board_baud = pick["baud"] or t.baud
        if not 300 <= self.board_baud <= t.max_baud:
            raise FxbpError(f"baud {self.board_baud} is outside 300..{t.max_baud:,}, what the "
                            f"{t.title}'s {t.usb_uart} carries: choose a rate in that range")
        self.board_clock_mhz = float(pick["clock_mhz"] or t.clock_mhz)
        dataset_buffer = t.dataset_buffer if pick["dataset_buffer"] is None else pick["dataset_buffer"]
        max_sizes = tuple(int(n) for n in t.net.split("-"))
        if len(max_sizes) != len(sizes) or any(n > m for n, m in zip(sizes, max_sizes)):
            raise FxbpError(f"the {'-'.join(map(str, sizes))} network does not fit the "
                            f"{t.name} engine (built for {t.net}): rebuild with --net")
        if batch > t.max_batch:
            raise FxbpError(f"--batch {batch} is larger than the {t.name} engine's "
                            f"{t.max_batch}: lower --batch, or rebuild with --max-batch")
        self.port_name = port
        self.sim_options = sim_options
        self.retries = int(sim_options.get("retries", retries))
        self.max_words = int(sim_options.get("max_words", 256))
        self.simboard = None
        self.serial = None
        self.link = None
        self.train_bytes = 0
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed, lr=lr,
                         batch=batch, lanes=self.board_lanes, progress=progress,
                         clock_mhz=self.board_clock_mhz, max_sizes=max_sizes,
                         max_batch=t.max_batch, dataset_buffer=dataset_buffer,
                         **t.engine_options(profile, shallow, event_counters))

    # ---------------------------------------------------------------- transport
    def _open(self, progress, trace) -> None:
        from .host_link import HostLink, open_port
        clock_hz = int(round(self.board_clock_mhz * 1e6))
        if self.port_name.startswith("sim://"):
            self.simboard = self._simulate(clock_hz, progress)
            device = self.simboard.port
        else:
            device = self.port_name
        self.serial = open_port(device, self.board_baud)
        self.link = HostLink(self.serial, retries=self.retries, baud=self.board_baud)
        self._pace()
        try:
            self.link_info = self.link.info()
        except FxbpError:
            self.close()
            raise

    def _simulate(self, clock_hz: int, progress):
        from ..boards.top import BoardTop
        from ..hw.generate import verilog
        from ..sim.board_sim import LineFaults, SimulatedBoard
        from ..sim.native import NativeLibrary
        faults = {k: v for k, v in self.sim_options.items()
                  if k in ("flip", "drop", "dup", "stall", "stall_cycles", "seed")}
        try:
            line = LineFaults(**faults)
            top = BoardTop(self.config, clock_hz=clock_hz, baud=self.board_baud,
                           max_words=self.max_words)
        except (TypeError, ValueError) as exc:
            raise FxbpError(f"cannot simulate {self.port_name}: {exc}") from None
        text = verilog(top, "fxbp_board")
        lib = NativeLibrary.build(text, "fxbp_board", uart=("rx", "tx"), progress=progress)
        model = lib.new()
        model.reset(2)
        return SimulatedBoard(model, clock_hz=clock_hz, baud=self.board_baud, faults=line)

    def _pace(self) -> None:
        """The simulation runs slower than the board, and slower still when the machine
        is busy: scale the link's time-outs (its notion of the baud rate) by the
        simulated cycles per wall second, measured as it runs."""
        clock_hz = self.board_clock_mhz * 1e6
        if self.simboard is None:
            self.cycles_per_second = clock_hz
            return
        measured = self.simboard.wall_rate()
        rate = max(10_000.0, 0.5 * measured) if measured else SIM_CYCLES_PER_SECOND
        self.cycles_per_second = min(rate, clock_hz)
        self.link.baud = max(1, int(self.board_baud * self.cycles_per_second / clock_hz))

    def _run(self, prog):
        if self.simboard is not None:
            self.simboard.check()
            self._pace()
        budget = self._cycle_budget(prog)
        t0 = time.perf_counter()
        words = self.link.transact(prog, self.layout.id_words,
                                   reply_seconds=budget / self.cycles_per_second)
        self.call_seconds += time.perf_counter() - t0
        return prog.decode(words, self.layout.id_words)

    def close(self) -> None:
        if self.serial is not None:
            self.serial.close()
            self.serial = None
        if self.simboard is not None:
            self.simboard.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---------------------------------------------------------------- Runtime
    def describe(self) -> dict:
        t = self.target
        where = ("simulated: the board's top level in Verilator behind a pty"
                 if self.simboard is not None else self.port_name)
        return {"backend": "board", "platform": f"{t.title} ({t.part.device})",
                "device": f"training engine, {self.lanes} MAC lanes, {where}"}

    def progress_info(self) -> str:
        s = self.link.stats
        return f"{(s['bytes_out'] + s['bytes_in']) / 1e3:,.0f} kB on the link, {s['retries']} retries"

    def train_epoch(self, x, t, order, batch, on_batch=None) -> None:
        before = self.link.stats["bytes_out"] + self.link.stats["bytes_in"]
        try:
            super().train_epoch(x, t, order, batch, on_batch)
        finally:
            self.train_bytes += self.link.stats["bytes_out"] + self.link.stats["bytes_in"] - before

    def _load_resident(self, x, t) -> bool:
        """As on rtl; the one-off upload is not training traffic (``train_bytes``)."""
        before = self.link.stats["bytes_out"] + self.link.stats["bytes_in"]
        try:
            return super()._load_resident(x, t)
        finally:
            self.train_bytes -= self.link.stats["bytes_out"] + self.link.stats["bytes_in"] - before

    def hardware(self) -> dict:
        hw = super().hardware()
        s = dict(self.link.stats)
        samples = hw["samples_trained"]
        bits = 10 * self.train_bytes
        link = {
            "port": self.port_name,
            "simulated": self.simboard is not None,
            "baud": self.board_baud,
            "divisor": self.link_info.divisor,
            "max_words": self.link_info.max_words,
            **s,
            # the line time of the training epochs' traffic (batches or orders, RUN or
            # TRAIN, counters; not the one-off upload of a resident training set, nor
            # the evaluations) per trained sample, at the baud rate: what the link alone
            # allows (the engine's cycles are the compute bound)
            "training_bytes": self.train_bytes,
            "training_line_seconds": bits / self.board_baud,
            "link_bound_samples_per_second": (samples * self.board_baud / bits
                                              if samples and bits else None),
        }
        if self.simboard is not None:
            link["line"] = self.simboard.counts.as_dict()
            link["faults"] = {k: v for k, v in self.sim_options.items()
                              if k in ("flip", "drop", "dup", "stall", "stall_cycles", "seed")}
        hw["board"] = self.target.describe()
        hw["link"] = link
        line = self.simboard.counts if self.simboard else None
        hw["simulated_cycles"] = line.cycles if line else None
        hw["simulated_cycles_per_second"] = (line.cycles / line.sim_seconds
                                             if line and line.sim_seconds else None)
        return hw

    def _clock(self):
        return self.board_clock_mhz, f"the {self.target.name} engine clock"

