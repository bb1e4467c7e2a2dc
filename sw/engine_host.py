"""The host side of the engine's command interface (``docs/engine.md``, host interface).

A :class:`Program` is a list of commands sent to the engine in one transport call (the
native Verilator harness now, the board's UART bridge next); its answers are parsed and
every status word is checked. :class:`Layout` maps tensors onto the engine's memories,
including the skewed banks. Nothing here knows how the words travel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..hw.engine.config import (COUNTERS, ID_MAGIC, REG, STATUS_MARK, EngineConfig, Err, Mem,
                                Op)
from .errors import FxbpError

__all__ = ["Program", "Layout", "ERROR_NAMES"]

ERROR_NAMES = {Err.OK: "ok", Err.OPCODE: "unknown opcode", Err.REGISTER: "unknown register",
               Err.MEMORY: "memory range", Err.CONFIG: "shape or batch outside the build",
               Err.TIMEOUT: "payload timeout"}
_OP_NAMES = {v: k for k, v in vars(Op).items() if not k.startswith("_")}


@dataclass
class _Command:
    op: int
    words: list
    answer: int                       # data words before the status word
    what: str


@dataclass
class Program:
    """Commands for one transport call.

    Each ``r*`` method returns the position of its answer in :meth:`decode`'s result.
    """

    commands: list = field(default_factory=list)

    def _add(self, op: int, arg: int, payload=(), answer: int = 0, what: str = "") -> int:
        words = np.concatenate([np.array([op | (arg << 8)], dtype=np.uint64),
                                np.asarray(payload, dtype=np.int64).astype(np.uint64)
                                & np.uint64(0xFFFFFFFF)])
        self.commands.append(_Command(op, words, answer, what or _OP_NAMES[op]))
        return len(self.commands) - 1

    def nop(self) -> int:
        return self._add(Op.NOP, 0)

    def ident(self) -> int:
        return self._add(Op.ID, 0, answer=-1)

    def wreg(self, reg: int, value: int) -> int:
        return self._add(Op.WREG, reg, [int(value) & 0xFFFFFFFF], what=f"WREG 0x{reg:02x}")

    def rreg(self, reg: int) -> int:
        return self._add(Op.RREG, reg, answer=1, what=f"RREG 0x{reg:02x}")

    def wmem(self, mem: int, addr: int, values) -> int:
        values = np.asarray(values, dtype=np.int64).reshape(-1)
        return self._add(Op.WMEM, mem, np.concatenate([[addr, values.size], values]),
                         what=f"WMEM {mem} [{addr}, +{values.size})")

    def rmem(self, mem: int, addr: int, count: int) -> int:
        return self._add(Op.RMEM, mem, [addr, count], answer=count,
                         what=f"RMEM {mem} [{addr}, +{count})")

    def train(self) -> int:
        return self._add(Op.TRAIN, 0)

    def evaluate(self) -> int:
        return self._add(Op.EVAL, 0)

    def run(self) -> int:
        """RUN: ``run_steps`` steps over the dataset buffer (builds with one)."""
        return self._add(Op.RUN, 0)

    def clear(self) -> int:
        return self._add(Op.CLEAR, 0)

    def counters(self, count: int = len(COUNTERS)) -> list[int]:
        """RREG of the first ``count`` counters (``COUNTERS`` order; an engine's
        ``EngineConfig.counter_names``)."""
        return [self.rreg(REG["counters"] + n) for n in range(count)]

    # ---------------------------------------------------------------- wire format
    def encode(self, id_words: int = 0) -> np.ndarray:
        if not self.commands:
            return np.zeros(0, dtype=np.uint64)
        return np.concatenate([c.words for c in self.commands])

    def responses(self, id_words: int = 0) -> int:
        """Response words the engine sends for this program."""
        return sum((id_words if c.answer < 0 else c.answer) + 1 for c in self.commands)

    def decode(self, words, id_words: int = 0) -> list[np.ndarray]:
        """Each command's answer as int64 words (sign-extended from 32 bits), after
        checking every status word; FxbpError names the first command that failed."""
        words = np.asarray(words, dtype=np.uint64).reshape(-1)
        out, at = [], 0
        for c in self.commands:
            n = id_words if c.answer < 0 else c.answer
            if at + n >= words.size:
                raise FxbpError(f"the engine stopped answering at {c.what} ({words.size} of "
                                f"{self.responses(id_words)} response words)")
            data = words[at:at + n].astype(np.int64)
            status = int(words[at + n])
            at += n + 1
            err = (status >> 16) & 0xFF
            if status >> 24 != STATUS_MARK or (status & 0xFF) != c.op:
                raise FxbpError(f"the engine answered {c.what} with 0x{status:08x}, not a status "
                                f"word for it: host and engine are out of step")
            if err != Err.OK:
                raise FxbpError(f"the engine refused {c.what}: "
                                f"{ERROR_NAMES.get(err, f'error {err}')}")
            out.append(np.where(data >= 1 << 31, data - (1 << 32), data))
        return out


class Layout:
    """Where each tensor of a network lives in an engine built for ``config``."""

    def __init__(self, config: EngineConfig, sizes):
        config.check_shape(sizes, 1)
        self.config = config
        self.sizes = tuple(sizes)

    @property
    def id_words(self) -> int:
        return 4 + len(self.config.sizes)

    def check_id(self, words) -> None:
        c = self.config
        if int(words[0]) & 0xFFFFFFFF != ID_MAGIC:
            raise FxbpError("the device did not answer ID with the engine's magic word")
        if int(words[1]) & 0xFFFFFFFF != c.gen_hash:
            raise FxbpError(f"the engine was generated for another configuration (hash "
                            f"0x{int(words[1]) & 0xFFFFFFFF:08x}, expected 0x{c.gen_hash:08x}); "
                            f"rebuild it")

    def configure(self, prog: Program, batch: int) -> None:
        for l, n in enumerate(self.sizes):
            prog.wreg(REG["width0"] + l, n)
        prog.wreg(REG["batch"], batch)

    # ---------------------------------------------------------------- parameters
    def write_parameters(self, prog: Program, weights, biases) -> None:
        c = self.config
        wb, bb = c.weight_bases[0], c.bias_bases[0]
        for l, (w, b) in enumerate(zip(weights, biases)):
            prog.wmem(Mem.W, wb[l], np.asarray(w, dtype=np.int64).reshape(-1))
            prog.wmem(Mem.B, bb[l], np.asarray(b, dtype=np.int64).reshape(-1))

    def read_parameters(self, prog: Program) -> list[tuple[int, int]]:
        c = self.config
        wb, bb = c.weight_bases[0], c.bias_bases[0]
        n = self.sizes
        return [(prog.rmem(Mem.W, wb[l], n[l + 1] * n[l]), prog.rmem(Mem.B, bb[l], n[l + 1]))
                for l in range(len(n) - 1)]

    def parameters(self, answers, handles) -> tuple[list, list]:
        n = self.sizes
        ws = [answers[hw].reshape(n[l + 1], n[l]) for l, (hw, _) in enumerate(handles)]
        bs = [answers[hb] for _, hb in handles]
        return ws, bs

    # ---------------------------------------------------------------- banked tensors
    def _skew(self, values, n: int) -> np.ndarray:
        """A ``[B, n]`` tensor as the host words of its bank region (section 2.2):
        element ``(b, j)`` in bank ``(b + j) mod P`` at ``base + (b // P) n + j``."""
        P = self.config.lanes
        values = np.asarray(values, dtype=np.int64)
        B = values.shape[0]
        groups = -(-B // P)
        region = np.zeros((groups * n, P), dtype=np.int64)
        b = np.arange(B)[:, None]
        j = np.arange(n)[None, :]
        region[(b // P) * n + j, (b + j) % P] = values
        return region.reshape(-1)

    def _unskew(self, words, B: int, n: int) -> np.ndarray:
        P = self.config.lanes
        region = np.asarray(words).reshape(-1, P)
        b = np.arange(B)[:, None]
        j = np.arange(n)[None, :]
        return region[(b // P) * n + j, (b + j) % P]

    def write_batch(self, prog: Program, x_raw, t_raw=None) -> None:
        c = self.config
        prog.wmem(Mem.A, c.activation_bases[0][0] * c.lanes, self._skew(x_raw, self.sizes[0]))
        if t_raw is not None:
            prog.wmem(Mem.T, 0, np.asarray(t_raw, dtype=np.int64).reshape(-1))
        prog.wreg(REG["batch"], len(x_raw))

    def read_activations(self, prog: Program, layer: int, batch: int) -> int:
        """RMEM of ``a_layer`` (0 = the inputs) for ``batch`` samples."""
        c = self.config
        groups = -(-batch // c.lanes)
        return prog.rmem(Mem.A, c.activation_bases[0][layer] * c.lanes,
                         groups * self.sizes[layer] * c.lanes)

    def read_deltas(self, prog: Program, layer: int, batch: int) -> int:
        c = self.config
        groups = -(-batch // c.lanes)
        return prog.rmem(Mem.DELTA, c.delta_bases[0][layer - 1] * c.lanes,
                         groups * self.sizes[layer] * c.lanes)

    def read_derivatives(self, prog: Program, layer: int, batch: int) -> int:
        c = self.config
        return prog.rmem(Mem.D, c.derivative_bases[0][layer - 1], batch * self.sizes[layer])

    def activations(self, words, layer: int, batch: int) -> np.ndarray:
        return self._unskew(words, batch, self.sizes[layer])

    def deltas(self, words, layer: int, batch: int) -> np.ndarray:
        return self._unskew(words, batch, self.sizes[layer])
