"""A deep memory built of block-RAM-sized banks whose read data is registered."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..pipeline import check_int
from ..registered_block_ram import RegisteredBlockRam

__all__ = ["BankedMemory"]


def _bits(n: int) -> int:
    return max(1, (int(n) - 1).bit_length())


class BankedMemory(wiring.Component):
    """One write port and one read port over ``depth`` words, timed for deep memories.

    A memory deeper than one block RAM becomes ``ceil(depth / bank_depth)`` banks. Each
    bank's read data is registered next to its block RAM, then the banks are picked by
    multiplexers of at most ``mux_ways`` inputs, each level registered: no block RAM
    output and no wide multiplexer share a cycle (a 90-bank sample memory's read once
    held an ECP5 build to 50 MHz). A memory of one bank is read into one register.

    Parameters
    ----------
    shape : shape-like
        A word.
    depth : int
        Words (at least 1).
    bank_depth : int
        Words a bank, a power of two (1024: one ECP5 DP16KD at 16 or 18 bits).
    mux_ways : int
        The widest multiplexer of a level, a power of two, at least 2.
    bank_registers : int
        Registers in series after each bank's block RAM read, before the multiplexers (at
        least 1). The first is the bank's output register (:class:`RegisteredBlockRam`:
        on ECP5 the DP16KD's own, so the unregistered DP16KD output, 5.8 ns after the
        clock, never leaves the block); a second sits between it and the multiplexers.
    latency : int or None
        The read latency wanted; at least :attr:`natural_latency`, which ``None`` gives.
        More pads the output with registers, so memories read side by side line up.
    read_registers : int
        0 or 1. With 1, the read address is registered before the banks: a read takes
        one cycle more, and the logic that makes the address (an adder, a multiplexer
        between its users) never shares a cycle with its fan-out to every bank
        (ulx3s-85f: the host's state through the RUN copy's address adder into 90 banks'
        address pins, 79.02 MHz).
    write_registers : int
        0 or 1. With 1, a write lands a cycle after its request: the address and the
        data are registered once, and each bank's write enable (the request decoded by
        bank) in a register of its own, which place and route can put beside the bank's
        block RAM. The decode and its fan-out to every bank then never share a cycle
        with the logic that makes the request (ulx3s-85f: 90 banks' write enables
        decoded across the die, 71.85 MHz).
    poison_collisions : bool
        Simulation only: :func:`read_data`'s poison on every bank.

    Members
    -------
    read_addr : In(range(depth))
    read_data : Out(shape)
        The word at ``read_addr`` of :attr:`latency` cycles before (registered).
    write_addr : In(range(depth))
    write_data : In(shape)
    write_en : In(1)

    Latency
    -------
    Reads: ``read_registers + 1 + bank_registers`` for one bank (the address register,
    the block RAM's read and the output registers); ``read_registers + 1 +
    bank_registers + levels`` for banks, with ``levels`` the multiplexer levels
    (``ceil(log_mux_ways(banks))``); or the ``latency`` asked for.
    Writes: ``write_registers`` cycles from the request to the word written.
    """

    def __init__(self, *, shape, depth: int, bank_depth: int = 1024, mux_ways: int = 16,
                 bank_registers: int = 1, latency: int | None = None,
                 read_registers: int = 0, write_registers: int = 0,
                 poison_collisions: bool = False):
        try:
            Shape.cast(shape)
        except TypeError:
            raise TypeError(f"BankedMemory shape must be a shape, not {shape!r}") from None
        check_int("BankedMemory depth", depth, low=1)
        check_int("BankedMemory bank depth", bank_depth, low=2)
        if bank_depth & (bank_depth - 1):
            raise ValueError(f"BankedMemory bank depth must be a power of two, not "
                             f"{bank_depth!r}")
        check_int("BankedMemory mux ways", mux_ways, low=2)
        if mux_ways & (mux_ways - 1):
            raise ValueError(f"BankedMemory mux ways must be a power of two, not {mux_ways!r}")
        check_int("BankedMemory bank registers", bank_registers, low=1, high=4)
        self.bank_registers = bank_registers
        self.read_registers = check_int("BankedMemory read registers", read_registers,
                                        high=1)
        self.write_registers = check_int("BankedMemory write registers", write_registers,
                                         high=1)
        if not isinstance(poison_collisions, bool):
            raise TypeError(f"BankedMemory poison_collisions must be a bool, not "
                            f"{poison_collisions!r}")
        self.poison_collisions = poison_collisions
        self.shape, self.depth = shape, depth
        self.bank_depth, self.mux_ways = bank_depth, mux_ways
        self.banks = -(-depth // bank_depth)
        self.natural_latency = self.latency_of(depth, bank_depth=bank_depth, mux_ways=mux_ways,
                                               bank_registers=bank_registers,
                                               read_registers=read_registers)
        self.levels = self.natural_latency - read_registers - 1 - bank_registers
        if latency is not None:
            check_int("BankedMemory latency", latency, low=self.natural_latency)
        self.latency = self.natural_latency if latency is None else latency
        aw = _bits(max(2, depth))
        super().__init__({"read_addr": In(aw), "read_data": Out(shape),
                          "write_addr": In(aw), "write_data": In(shape), "write_en": In(1)})

    @staticmethod
    def latency_of(depth: int, *, bank_depth: int = 1024, mux_ways: int = 16,
                   bank_registers: int = 1, read_registers: int = 0) -> int:
        """The natural read latency of a memory of ``depth`` words (checked values)."""
        levels, n = 0, -(-depth // bank_depth)
        while n > 1:
            n, levels = -(-n // mux_ways), levels + 1
        return read_registers + 1 + bank_registers + levels

    def elaborate(self, platform):
        m = Module()
        lb = _bits(self.bank_depth)
        words = [min(self.bank_depth, self.depth - k * self.bank_depth)
                 for k in range(self.banks)]
        r_addr, w_addr, w_data = self.read_addr, self.write_addr, self.write_data
        if self.read_registers:
            r_addr = Signal.like(self.read_addr, name="r_addr", reset_less=True)
            m.d.sync += r_addr.eq(self.read_addr)
        if self.write_registers:
            w_addr = Signal.like(self.write_addr, name="w_addr", reset_less=True)
            w_data = Signal.like(self.write_data, name="w_data", reset_less=True)
            m.d.sync += [w_addr.eq(self.write_addr), w_data.eq(self.write_data)]
        ports = []
        for k, n in enumerate(words):
            # Each bank is read into two registers: the block RAM's read and the first
            # bank register (on ECP5 the DP16KD's own output register).
            # Depth 2 at least: a one-word memory would have a zero-width address.
            bank = RegisteredBlockRam(shape=self.shape, depth=max(2, n),
                                      poison_collisions=self.poison_collisions)
            m.submodules[f"bank{k}"] = bank
            m.d.comb += [bank.read_addr.eq(r_addr[:lb] if self.banks > 1 else r_addr),
                         bank.write_addr.eq(w_addr[:lb] if self.banks > 1 else w_addr),
                         bank.write_data.eq(w_data)]
            en = (self.write_en & (self.write_addr[lb:] == k) if self.banks > 1
                  else self.write_en)
            if self.write_registers:
                en_q = Signal(name=f"bank{k}_we")
                m.d.sync += en_q.eq(en)
                en = en_q
            m.d.comb += bank.write_en.eq(en)
            ports.append(bank.read_data)
        def registered(values, name):
            out = []
            for k, v in enumerate(values):
                q = Signal(self.shape, name=f"bank{k}_{name}", reset_less=True)
                m.d.sync += q.eq(v)
                out.append(q)
            return out

        level = ports
        for r in range(1, self.bank_registers):
            level = registered(level, f"q{r}")
        if self.banks == 1:
            word = level[0]
        else:
            # The bank number travels beside the data: one register per stage.
            sel = Signal(len(self.read_addr) - lb, name="sel_port", reset_less=True)
            m.d.sync += sel.eq(r_addr[lb:])
            for r in range(self.bank_registers):
                sel_q = Signal(len(sel), name="sel_bank" if r == 0 else f"sel_bank{r}",
                               reset_less=True)
                m.d.sync += sel_q.eq(sel)
                sel = sel_q
            shift = 0
            for lv in range(self.levels):
                wb = _bits(self.mux_ways)
                nxt = []
                for g in range(-(-len(level) // self.mux_ways)):
                    group = level[g * self.mux_ways:(g + 1) * self.mux_ways]
                    q = Signal(self.shape, name=f"mux{lv}_{g}", reset_less=True)
                    pick = sel[shift:shift + wb]
                    m.d.sync += q.eq(Array(group)[pick] if len(group) > 1 else group[0])
                    nxt.append(q)
                level, shift = nxt, shift + wb
                if lv < self.levels - 1:
                    sel_next = Signal(len(sel), name=f"sel_mux{lv}", reset_less=True)
                    m.d.sync += sel_next.eq(sel)
                    sel = sel_next
            word = level[0]
        for k in range(self.latency - self.natural_latency):
            pad = Signal(self.shape, name=f"pad{k}", reset_less=True)
            m.d.sync += pad.eq(word)
            word = pad
        m.d.comb += self.read_data.eq(word)
        return m
