"""A simulated board on a pseudo-terminal: ``--port sim://BOARD``.

The board's own top level (``boards/top.py``: the engine and its UART bridge, as built
for the board, without the PLL and pins) runs in the native Verilator harness. The
harness drives the UART at the bit level, at the board's baud rate counted in simulated
cycles of its engine clock (``NativeModel.uart``). A thread moves the bytes between that
line and the master side of a pty; the host opens the slave side with pyserial, exactly
as it opens ``/dev/ttyUSB0``. So the code under test is the code that talks to a real
board: ``sw/host_link.py`` and the bridge's RTL.

Faults are injected on the line, in both directions (:class:`LineFaults`): flipped bits,
dropped bytes, duplicated host writes (a frame sent twice) and stalls (the line from the
host holds its bytes back for a number of simulated cycles).
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from dataclasses import dataclass, fields
from urllib.parse import parse_qsl

import numpy as np

from ..sw.errors import FxbpError

__all__ = ["LineFaults", "SimulatedBoard", "parse_sim_url"]

#: Simulated cycles per call while the line is quiet: the board keeps running (a RUN
#: trains for millions of cycles with no traffic) in slices this long.
QUIET_SLICE = 20_000


@dataclass(frozen=True)
class LineFaults:
    """Faults on the simulated line, each drawn per byte (``flip``, ``drop``) or per host
    write (``dup``, ``stall``) from a generator seeded with ``seed``.

    Parameters
    ----------
    flip : float
        Probability that a byte has one bit flipped (both directions).
    drop : float
        Probability that a byte is lost (both directions).
    dup : float
        Probability that a host write (a frame) reaches the board twice.
    stall : float
        Probability that a host write is held back for ``stall_cycles`` cycles first.
    stall_cycles : int
        Length of a stall in simulated cycles.
    seed : int
        Seed of the fault generator.
    """

    flip: float = 0.0
    drop: float = 0.0
    dup: float = 0.0
    stall: float = 0.0
    stall_cycles: int = 2_000_000
    seed: int = 0

    def __post_init__(self):
        for f in ("flip", "drop", "dup", "stall"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"fault rate {f}={v!r} must be a probability in [0, 1]")
        if not isinstance(self.stall_cycles, int) or self.stall_cycles < 0:
            raise ValueError(f"stall_cycles={self.stall_cycles!r} must be an int >= 0")

    @property
    def any(self) -> bool:
        return bool(self.flip or self.drop or self.dup or self.stall)


@dataclass
class LineCounts:
    """What crossed the simulated line, and what the faults did to it."""

    to_board: int = 0
    to_host: int = 0
    flipped: int = 0
    dropped: int = 0
    duplicated: int = 0
    stalled: int = 0
    cycles: int = 0
    framing_errors: int = 0
    sim_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_sim_url(url: str) -> tuple[str, dict]:
    """``sim://BOARD?key=value&...`` -> (board, options as strings)."""
    if not url.startswith("sim://"):
        raise FxbpError(f"{url!r} is not a simulated port: write sim://BOARD")
    rest = url[len("sim://"):]
    board, _, query = rest.partition("?")
    if not board:
        raise FxbpError("sim:// needs a board name: sim://ulx3s-25f (fxbp build --help lists them)")
    opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    return board, opts


class SimulatedBoard:
    """A native model with a UART, served on a pty until :meth:`close`.

    Parameters
    ----------
    model : NativeModel
        A model built with ``uart=(rx, tx)``, out of reset.
    clock_hz, baud : int
        The board's engine clock and the line's baud rate: a bit lasts
        ``clock_hz / baud`` simulated cycles.
    faults : LineFaults
        Faults to inject (none by default).
    """

    def __init__(self, model, *, clock_hz: int, baud: int, faults: LineFaults | None = None):
        self.model = model
        self.clock_hz, self.baud = int(clock_hz), int(baud)
        self.cycles_per_bit = self.clock_hz / self.baud
        self.faults = faults or LineFaults()
        self.counts = LineCounts()
        self._rng = np.random.default_rng(self.faults.seed)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._held = bytearray()          # host bytes in a stall
        self._rate = 0.0
        self._stall_left = 0
        self._thread = threading.Thread(target=self._serve, name="fxbp-sim-board", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ faults
    def _bytewise(self, data: bytes) -> bytes:
        f = self.faults
        if not (f.flip or f.drop) or not data:
            return data
        out = bytearray()
        draws = self._rng.random((len(data), 2))
        bits = self._rng.integers(0, 8, len(data))
        for b, (pf, pd), bit in zip(data, draws, bits):
            if pd < f.drop:
                self.counts.dropped += 1
                continue
            if pf < f.flip:
                b ^= 1 << int(bit)
                self.counts.flipped += 1
            out.append(b)
        return bytes(out)

    def _from_host(self, data: bytes) -> bytes:
        f = self.faults
        if data and f.dup and self._rng.random() < f.dup:
            data = data + data
            self.counts.duplicated += 1
        if data and f.stall and self._rng.random() < f.stall:
            self.counts.stalled += 1
            self._stall_left = f.stall_cycles
        return self._bytewise(data)

    # ------------------------------------------------------------------ the line
    def _serve(self) -> None:
        pending = b""
        last = time.monotonic()
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([self._master], [], [], 0)
                if r:
                    try:
                        got = os.read(self._master, 1 << 16)
                    except OSError:           # the host closed its side (EIO)
                        got = b""
                    if got:
                        self._held += self._from_host(got)
                if self._stall_left == 0 and self._held:
                    pending, self._held = pending + bytes(self._held), bytearray()
                # run a slice: long enough to send what is pending
                need = int(len(pending) * 10 * self.cycles_per_bit) + 1
                slice_ = max(QUIET_SLICE, need) if not self._stall_left else min(
                    self._stall_left, QUIET_SLICE)
                res = self.model.uart(pending, cycles_per_bit=self.cycles_per_bit,
                                      max_cycles=slice_, max_out=1 << 16)
                pending = pending[res.consumed:]
                self.counts.to_board += res.consumed
                self.counts.cycles += res.cycles
                self.counts.sim_seconds += res.loop_seconds
                now = time.monotonic()
                if now > last:
                    # cycles per wall second, Python and other processes included
                    self._rate += 0.2 * (res.cycles / (now - last) - self._rate)
                last = now
                self.counts.framing_errors = res.framing_errors
                if self._stall_left:
                    self._stall_left = max(0, self._stall_left - res.cycles)
                if res.data:
                    out = self._bytewise(res.data)
                    self.counts.to_host += len(res.data)
                    view = memoryview(out)
                    while view:
                        n = os.write(self._master, view)
                        view = view[n:]
        except BaseException as exc:          # surfaced by close() and check()
            self._error = exc

    def check(self) -> None:
        """Raise what stopped the simulation thread, if anything did."""
        if self._error is not None:
            raise FxbpError(f"the simulated board stopped: {self._error}")
        if not self._thread.is_alive() and not self._stop.is_set():
            raise FxbpError("the simulated board stopped")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wall_rate(self) -> float:
        """Simulated cycles per wall second of late (a moving average over the last
        slices, so it follows the load on the machine): the host's time-outs use it."""
        return self._rate

