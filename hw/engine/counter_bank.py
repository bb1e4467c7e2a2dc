"""Many wide event counters in one block RAM, with a few bits of flip-flops each."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..pipeline import check_bool, check_int
from ..registered_block_ram import NO_RW_CHECK, RegisteredReadPort, read_data

__all__ = ["CounterBank"]


def _field(name: str) -> str:
    return name.replace(".", "_")


class CounterBank(wiring.Component):
    """``len(counters)`` counters of ``width`` bits, kept in a memory.

    Each counter has a small *pending* register that sums its increments. A sweep visits
    one counter a cycle, in turn: it reads the counter's word, takes (and restarts) its
    pending sum, and writes the word plus the sum back two cycles later. Every counter is
    visited once every ``N = len(counters)`` cycles, so a pending sum never holds more
    than ``N`` cycles of increments, and a read and a write never meet at one address
    (the memory carries :data:`NO_RW_CHECK`). Against one ``width``-bit register and
    adder per counter, this keeps the flip-flops to the pending sums (a few bits each)
    and the adders to one.

    A read waits for the sweep: the value is the word plus the pending sum at the
    counter's visit. ``clear`` zeroes every counter at once: the pending sums restart and
    every word is marked stale, which its next visit treats as 0. Counts wrap modulo
    ``2**width``.

    Parameters
    ----------
    counters : dict of str to int
        Each counter's name and the width of its increment (an increment is 0 to
        ``2**w - 1`` per cycle). At least 3 counters: the sweep writes a word two cycles
        after reading it, before its next visit.
    width : int
        Bits of a counter (1 to 64).
    poison_collisions : bool
        Simulation only: the memory's read data is inverted in a cycle whose address was
        written in the same cycle (:func:`read_data`); a bit-exact design never uses one.

    Members
    -------
    inc : In(StructLayout({name: w}))
        This cycle's increments (names with ``.`` become ``_``).
    clear : In(1)
        Zero every counter.
    read : In(CounterBank.ReadSignature(...))
        ``index`` and ``request`` (held until ``valid``) from the reader; ``valid`` (one
        cycle) and ``data`` back.

    Latency
    -------
    An increment or a clear takes effect one cycle after its input (both are
    registered). A read is answered 3 to ``N + 2`` cycles after ``request`` rises, with
    every increment up to 2 cycles before the visit that answers it.
    """

    class ReadSignature(wiring.Signature):
        """A read of one counter, from the reader's side.

        Members
        -------
        index : Out(range(count))
        request : Out(1)
        valid : In(1)
        data : In(width)
        """

        def __init__(self, *, count: int, width: int):
            check_int("CounterBank.ReadSignature count", count, low=1)
            check_int("CounterBank.ReadSignature width", width, low=1, high=64)
            super().__init__({"index": Out(range(count)), "request": Out(1),
                              "valid": In(1), "data": In(width)})

    def __init__(self, *, counters: dict, width: int = 32, poison_collisions: bool = False):
        if not isinstance(counters, dict):
            raise TypeError(f"CounterBank counters must be a dict of names to increment "
                            f"widths, not {counters!r}")
        if len(counters) < 3:
            raise ValueError(f"CounterBank needs at least 3 counters, not {len(counters)} "
                             f"({counters!r})")
        for name, w in counters.items():
            if not isinstance(name, str):
                raise TypeError(f"CounterBank counter name must be a str, not {name!r}")
            check_int(f"CounterBank increment width of {name!r}", w, low=1, high=width)
        if len({_field(n) for n in counters}) != len(counters):
            raise ValueError(f"CounterBank counter names must differ after '.' -> '_': "
                             f"{list(counters)!r}")
        check_int("CounterBank width", width, low=1, high=64)
        check_bool("CounterBank poison_collisions", poison_collisions)
        self.counters = dict(counters)
        self.width = width
        self.poison_collisions = poison_collisions
        n = len(counters)
        #: Bits of each pending sum: ``N`` cycles of the largest increment.
        self.pending_widths = {name: ((2 ** w - 1) * n).bit_length()
                               for name, w in counters.items()}
        layout = data.StructLayout({_field(name): w for name, w in counters.items()})
        super().__init__({"inc": In(layout), "clear": In(1),
                          "read": In(self.ReadSignature(count=n, width=width))})

    def elaborate(self, platform):
        m = Module()
        names = list(self.counters)
        n, width = len(names), self.width
        mem = memory.Memory(shape=width, depth=n, init=[], attrs=NO_RW_CHECK)
        m.submodules.words = mem
        rd = RegisteredReadPort(m, mem, "words")
        wr = mem.write_port()
        word = read_data(m, rd, wr, "words", self.poison_collisions)

        inc_q = Signal(self.inc.shape(), name="inc_q")
        clear_q = Signal(name="clear_q")
        m.d.sync += [inc_q.eq(self.inc), clear_q.eq(self.clear)]

        # Stage 0: visit counter `s`: read its word, take its pending sum and stale bit.
        s = Signal(range(n), name="sweep")
        m.d.sync += s.eq(Mux(s == n - 1, 0, s + 1))
        pend = [Signal(self.pending_widths[name], name=f"pending_{_field(name)}")
                for name in names]
        stale = Signal(n, name="stale", init=(1 << n) - 1)
        take = Signal(max(self.pending_widths.values()), name="take")
        stale_1 = Signal(name="stale_1")
        idx_1 = Signal(range(n), name="index_1")
        hit_1 = Signal(name="hit_1")
        m.d.comb += [rd.addr.eq(s), rd.en.eq(1)]
        m.d.sync += [take.eq(Array(pend)[s]), stale_1.eq(stale.bit_select(s, 1)),
                     idx_1.eq(s), hit_1.eq(self.read.request & (self.read.index == s))]
        for i, name in enumerate(names):
            visit = s == i
            kept = Mux(visit, 0, pend[i])
            m.d.sync += pend[i].eq(Mux(clear_q, 0, kept + inc_q[_field(name)]))
            with m.If(clear_q):
                m.d.sync += stale[i].eq(1)
            with m.Elif(visit):
                m.d.sync += stale[i].eq(0)

        # Stage 1: the word (0 when stale) into a register, beside the sum taken.
        word_2 = Signal(width, name="word_2")
        take_2 = Signal(take.shape(), name="take_2")
        idx_2 = Signal(range(n), name="index_2")
        hit_2 = Signal(name="hit_2")
        m.d.sync += [word_2.eq(Mux(stale_1, 0, word)), take_2.eq(take), idx_2.eq(idx_1),
                     hit_2.eq(hit_1)]

        # Stage 2: write the sum back; answer a read of this counter.
        total = Signal(width, name="total")
        m.d.comb += [total.eq(word_2 + take_2), wr.addr.eq(idx_2), wr.data.eq(total),
                     wr.en.eq(1)]
        m.d.sync += [self.read.valid.eq(hit_2 & self.read.request),
                     self.read.data.eq(total)]
        return m
