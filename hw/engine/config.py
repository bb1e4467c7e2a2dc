"""What an engine is generated for, its memory map and its host register map.

One place for every constant the engine, the host runtime and ``docs/engine.md`` share:
the generated maxima, the region bases inside each memory, the register and memory
numbers of the host interface, and the status codes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ...sw.errors import FxbpError
from ...sw.fixed import Rounding
from ...sw.profile import PrecisionProfile
from ..pipeline import check_int

__all__ = ["EngineConfig", "Op", "Err", "Mem", "REG", "COUNTERS", "CYCLE_COUNTERS",
           "EVENT_COUNTERS", "EVENT_CODES", "STATUS_MARK",
           "ID_MAGIC", "status_word", "signed_width"]

#: The first word the ID command returns ("FXBP").
ID_MAGIC = 0x46584250
#: Bits 31..24 of every status word.
STATUS_MARK = 0xF5


class Op:
    """Command opcodes (bits 7..0 of a command's first word)."""
    NOP = 0x00
    ID = 0x01
    WREG = 0x02      # arg = register; payload: value
    RREG = 0x03      # arg = register; answer: value
    WMEM = 0x04      # arg = memory; payload: address, count, count values
    RMEM = 0x05      # arg = memory; payload: address, count; answer: count values
    TRAIN = 0x06     # one SGD step on the loaded batch
    EVAL = 0x07      # forward pass only on the loaded batch
    CLEAR = 0x08     # zero every counter
    RUN = 0x09       # dataset buffer only: run_steps steps over the on-chip samples in order


class Err:
    """Error codes (bits 23..16 of a status word)."""
    OK = 0
    OPCODE = 1       # unknown opcode
    REGISTER = 2     # unknown register, or a write to a read-only one
    MEMORY = 3       # unknown memory, or an address range outside it (payload consumed)
    CONFIG = 4       # TRAIN/EVAL with a shape or batch outside the generated maxima
    TIMEOUT = 5      # a payload word did not arrive within TIMEOUT cycles


class Mem:
    """Memory numbers of WMEM/RMEM (bits 15..8 of the command word)."""
    W = 0            # weights, layer after layer, row-major
    B = 1            # biases
    A = 2            # activation banks (inputs, hidden and output activations), interleaved
    T = 3            # targets
    DELTA = 4        # delta banks, interleaved
    D = 5            # hidden-layer derivatives
    DSX = 6          # dataset buffer only: samples, sample s at s * max n_0
    DST = 7          # dataset buffer only: targets, sample s at s * max n_L
    ORDER = 8        # dataset buffer only: sample numbers in training order


def status_word(op: int, err: int) -> int:
    return (STATUS_MARK << 24) | (err << 16) | op


#: Cast sites counted by the engine, by the code of ``fxbp.sw.rng.SITE_CODES``.
EVENT_CODES = {1: "preactivation", 2: "activation", 3: "derivative", 4: "error", 5: "delta",
               6: "gradient", 7: "bias_gradient", 8: "weight_update", 9: "bias_update"}


#: The counters every engine has: cycles, lane-cycles, steps and samples.
CYCLE_COUNTERS = ("cycles", "cycles_forward", "cycles_backward", "cycles_gradient",
                  "cycles_control", "cycles_eval", "cycles_host", "lane_busy", "lane_busy_eval",
                  "steps", "samples_trained", "samples_evaluated", "chain_overruns")
#: The cast-event counters (an engine built with ``event_counters``).
EVENT_COUNTERS = tuple(f"{site}.{k}" for site in EVENT_CODES.values()
                       for k in ("overflow", "underflow", "total"))
#: Read-only counters, in register order from ``REG["counters"]`` (an engine without
#: event counters has the first ``len(CYCLE_COUNTERS)`` of them).
COUNTERS = CYCLE_COUNTERS + EVENT_COUNTERS

#: Host registers. Writable: batch .. timeout; widths are ``width0 + l`` for l = 0..L.
REG = {
    "batch": 0x00,      # B of the next TRAIN/EVAL
    "eta": 0x01,        # the learning rate, raw in the profile's learning_rate format
    "seed": 0x02,       # the stochastic-rounding seed (section 9)
    "step": 0x03,       # the step number n of the next TRAIN (incremented by TRAIN)
    "timeout": 0x04,    # payload timeout in cycles (0: none)
    "order_len": 0x05,  # dataset buffer: samples in ORDER
    "position": 0x06,   # dataset buffer: the next step's first ORDER entry
    "run_steps": 0x07,  # dataset buffer: steps of the next RUN
    "width0": 0x10,     # n_0 .. n_L
    "counters": 0x40,   # COUNTERS[k] at 0x40 + k (read-only)
}


def signed_width(fmt) -> int:
    """Bits of a two's complement value holding every value of ``fmt``."""
    return fmt.total_bits + (0 if fmt.signed else 1)


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class EngineConfig:
    """Generation parameters of a training engine.

    Parameters
    ----------
    profile : PrecisionProfile
        Formats, roundings, overflow modes, sigmoid, accumulator width (the training
        rounding already applied).
    sizes : tuple of int
        The largest layer widths ``n_0 .. n_L``; the depth ``L`` is fixed by the build,
        the widths are set at run time up to these.
    batch : int
        The largest batch ``B_max``.
    lanes : int
        MAC lanes ``P``, a power of two.
    loss : str
        ``"mse"`` or ``"xent"``.
    lr_shift : int or None
        The shift ``k`` of a ``lr_mode = "shift"`` profile (``eta = 2^-k``); ``None`` in
        multiply mode, where ``eta`` is a run-time register.
    dataset_buffer : int
        Samples held on chip (0: the host loads each batch). With ``S > 0`` the host loads
        the samples and targets once and an order per epoch; RUN trains over it.
    counter_bits : int
        Width of every counter (the host reads and clears them often enough).
    shallow : bool
        Units without the registers that only a fast clock needs (``docs/engine.md``
        section 6: an iCE40 at 30 MHz); deterministic training rounding only. The same
        numbers, fewer cycles of latency, fewer flip-flops.
    event_counters : bool
        Count each site's cast events (overflow, underflow, total) in the engine. Without
        them (a small part: 27 of the 40 counters, about 850 iCE40 logic cells) the engine
        still counts cycles, lane-cycles, steps and samples; its runtime reports no cast
        events.
    """

    profile: PrecisionProfile
    sizes: tuple
    batch: int
    lanes: int = 8
    loss: str = "mse"
    lr_shift: int | None = None
    dataset_buffer: int = 0
    counter_bits: int = 32
    shallow: bool = False
    event_counters: bool = True

    def __post_init__(self):
        if not isinstance(self.profile, PrecisionProfile):
            raise TypeError(f"engine profile must be a PrecisionProfile, not {self.profile!r}")
        if not isinstance(self.sizes, (tuple, list)):
            raise TypeError(f"engine sizes must be a tuple of widths, not {self.sizes!r}")
        object.__setattr__(self, "sizes", tuple(self.sizes))
        if len(self.sizes) < 2:
            raise ValueError(f"engine sizes need an input and at least one layer, not "
                             f"{self.sizes!r}")
        for n in self.sizes:
            check_int("engine layer width", n, low=1, high=4096)
        check_int("engine batch", self.batch, low=1, high=4096)
        check_int("engine lanes", self.lanes, low=1, high=64)
        if self.lanes & (self.lanes - 1):
            raise ValueError(f"engine lanes must be a power of two, not {self.lanes!r}")
        if self.loss not in ("mse", "xent"):
            raise ValueError(f"engine loss must be 'mse' or 'xent', not {self.loss!r}")
        check_int("engine dataset buffer", self.dataset_buffer, high=65536)
        check_int("engine counter width", self.counter_bits, low=16, high=64)
        if not isinstance(self.shallow, bool):
            raise TypeError(f"engine shallow must be a bool, not {self.shallow!r}")
        if not isinstance(self.event_counters, bool):
            raise TypeError(f"engine event_counters must be a bool, not {self.event_counters!r}")
        if self.shallow and self.stochastic:
            raise ValueError("shallow units are for deterministic training rounding: a unit "
                             "that draws random words keeps its hash's stages; choose "
                             "--rounding nearest-even (or another deterministic mode)")
        p = self.profile
        if p.lr_mode == "shift":
            if self.lr_shift is None:
                raise ValueError(f"profile {p.name} uses lr_mode = \"shift\": give lr_shift")
            check_int("engine lr_shift", self.lr_shift, high=62)
        elif self.lr_shift is not None:
            raise ValueError(f"lr_shift applies to lr_mode = \"shift\" profiles, not "
                             f"{self.lr_shift!r} for profile {p.name}")
        if p.input.fmt.frac_bits != p.activation.fmt.frac_bits:
            raise ValueError(f"the engine needs the input and activation formats to have the "
                             f"same fraction bits ({p.input.fmt} and {p.activation.fmt} do not): "
                             f"one lane datapath serves every layer")

    # -- shapes --------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.sizes) - 1

    @property
    def log2_lanes(self) -> int:
        return self.lanes.bit_length() - 1

    @property
    def groups(self) -> int:
        """Sample groups of a full batch, ``ceil(B_max / P)``."""
        return _ceil_div(self.batch, self.lanes)

    @property
    def max_fan_in(self) -> int:
        return max(max(self.sizes), self.batch)

    # -- memory map ----------------------------------------------------------------------
    def _bases(self, sizes_of_region) -> tuple[list[int], int]:
        bases, at = [], 0
        for s in sizes_of_region:
            bases.append(at)
            at += s
        return bases, max(at, 1)

    @property
    def weight_bases(self):
        """``(bases, depth)``: layer ``l`` (1-based, index ``l - 1``) starts at ``bases[l-1]``."""
        n = self.sizes
        return self._bases([n[l] * n[l - 1] for l in range(1, len(n))])

    @property
    def bias_bases(self):
        return self._bases(list(self.sizes[1:]))

    @property
    def activation_bases(self):
        """Per-bank bases of ``a_0 .. a_L`` (``a_0`` is the input) in the A banks."""
        return self._bases([self.groups * n for n in self.sizes])

    @property
    def delta_bases(self):
        """Per-bank bases of ``delta_1 .. delta_L`` in the delta banks."""
        return self._bases([self.groups * n for n in self.sizes[1:]])

    @property
    def derivative_bases(self):
        """Bases of ``d_1 .. d_(L-1)`` (hidden layers) in D, each ``[B_max, n_l]``."""
        return self._bases([self.batch * n for n in self.sizes[1:-1]])

    @property
    def target_depth(self) -> int:
        return self.batch * self.sizes[-1]

    # -- identity ------------------------------------------------------------------------
    @property
    def counter_names(self) -> tuple:
        """This engine's counters, in register order."""
        return COUNTERS if self.event_counters else CYCLE_COUNTERS

    @property
    def stochastic(self) -> bool:
        return any(self.profile.stage(s).rounding is Rounding.STOCHASTIC
                   for s in ("derivative", "error", "delta", "gradient", "weight", "bias"))

    def describe(self) -> dict:
        return {"profile": self.profile.as_dict(), "sizes": list(self.sizes), "batch": self.batch,
                "lanes": self.lanes, "loss": self.loss, "lr_shift": self.lr_shift,
                "dataset_buffer": self.dataset_buffer, "counter_bits": self.counter_bits,
                # Only when set: the default engine's hash (and Verilog) stay as they were.
                **({"shallow": True} if self.shallow else {}),
                **({} if self.event_counters else {"event_counters": False})}

    @property
    def gen_hash(self) -> int:
        """32 bits of a SHA-256 of :meth:`describe`; the ID command returns it."""
        text = repr(sorted(_flatten(self.describe())))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")

    @property
    def saturating_registers(self) -> dict:
        """``{register: bits}`` of the host registers narrower than a word that saturate
        on a write: in a shallow engine (the UP5K's), the batch and the widths, one bit
        wider than their maxima need, so any value over the maximum stays over it (all
        ones) and TRAIN/EVAL refuse it. Other engines keep 32-bit registers: the ECP5
        boards' place-and-route results were measured with them (``docs/engine.md``
        section 4)."""
        if not self.shallow:
            return {}
        bits = lambda n: max(1, int(n).bit_length()) + 1
        out = {REG["batch"]: bits(self.batch)}
        for l in range(len(self.sizes)):
            out[REG["width0"] + l] = bits(max(self.sizes))
        return out

    def check_shape(self, sizes, batch: int) -> None:
        """FxbpError unless a run-time network ``sizes`` and ``batch`` fit this build."""
        sizes = tuple(sizes)
        if len(sizes) != len(self.sizes):
            raise FxbpError(f"the engine was built for {self.depth} layer(s), the network "
                            f"{'-'.join(map(str, sizes))} has {len(sizes) - 1}")
        for l, (n, m) in enumerate(zip(sizes, self.sizes)):
            if not 1 <= n <= m:
                raise FxbpError(f"layer width n_{l} = {n} is outside the engine's 1..{m}: "
                                f"generate it with --max-shape covering the network")
        if not 1 <= batch <= self.batch:
            raise FxbpError(f"batch {batch} is outside the engine's 1..{self.batch}: generate "
                            f"it with a larger --max-batch")


def _flatten(d, prefix=""):
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}{k}.")
        return out
    return [(prefix, repr(d))]
