"""One block RAM with a write port and a read port whose data is registered twice."""

from __future__ import annotations

from amaranth.hdl import Array, ClockSignal, Const, Instance, Module, Mux, Shape, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import check_int

__all__ = ["RegisteredBlockRam", "RegisteredReadPort", "read_data", "NO_RW_CHECK",
           "DP16KD_WIDTH", "DP16KD_DEPTH"]

#: The ECP5 block RAM's widest port of one word per address (DATA_WIDTH 18) and its depth
#: at that width.
DP16KD_WIDTH = 18
DP16KD_DEPTH = 1024


#: Attributes of every engine memory. yosys's ``no_rw_check``: a read of an address in
#: the cycle it is written may return anything, so yosys maps the memory onto a block RAM
#: alone. Without it, yosys keeps Amaranth's old-data semantics for such a read with
#: fabric logic (a compare of both addresses, registers and a multiplexer on the data).
#: yosys applies it only to the read ports it builds itself (``memory_dff``, from an
#: asynchronous port and the register after it): read ports are :class:`RegisteredReadPort`.
#: The engine never uses a read that meets a write; simulation proves it with
#: :func:`read_data`'s poison.
NO_RW_CHECK = {"no_rw_check": 1}


class RegisteredReadPort:
    """A synchronous read port built as yosys needs it to honour :data:`NO_RW_CHECK`.

    Amaranth's own synchronous port (``read_port(transparent_for=())``) reaches yosys as
    a ``$memrd_v2`` that is already synchronous, which ``memory_dff`` never visits, so
    yosys keeps its old-data semantics on a read/write collision and emulates them
    around every block RAM: 41 LUT4 and 44 FF a 16-bit DP16KD (ECP5), 30 LUT4 and 44 FF
    an SB_RAM40_4K (iCE40), with the block RAM's output through a LUT. This port is an
    asynchronous read port followed by a reset-less register with an enable, which
    ``memory_dff`` merges into the block RAM's port and marks don't-care on collision.
    Its behaviour is Amaranth's synchronous, non-transparent port: ``data`` is the word
    at ``addr`` of the last cycle ``en`` was high (the old word if that cycle wrote it).

    Members
    -------
    addr : Signal
        The read address.
    en : Signal
        Read enable (high unless driven): ``data`` holds while it is low.
    data : Signal
        The registered word.
    """

    def __init__(self, m: Module, mem: memory.Memory, name: str):
        port = mem.read_port(domain="comb")
        self.addr = port.addr
        self.en = Signal(name=f"{name}_rd_en", init=1)
        self.data = Signal(mem.shape, name=f"{name}_rd_data", reset_less=True)
        with m.If(self.en):
            m.d.sync += self.data.eq(port.data)


def read_data(m: Module, rd, wr, name: str, poison: bool):
    """The data of read port ``rd`` of a memory written through ``wr``.

    Without ``poison``, ``rd.data``. With it (simulation), the data is inverted for as
    long as it holds a word read in the cycle ``wr`` wrote that address: what a block
    RAM under :data:`NO_RW_CHECK` may return instead of the old word. A design that
    stays bit-exact with the poison never depends on such a read."""
    if not poison:
        return rd.data
    hit = Signal(name=f"{name}_rw_collision")
    with m.If(rd.en):
        m.d.sync += hit.eq(wr.en.any() & (wr.addr == rd.addr))
    data = Signal(rd.data.shape(), name=f"{name}_read_data")
    m.d.comb += data.eq(Mux(hit, ~rd.data, rd.data))
    return data


def _addr_bits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


class RegisteredBlockRam(wiring.Component):
    """``depth`` words of block RAM: a write port, and a read port with two registers.

    The read port's first register is the block RAM's own read, loaded while
    ``read_en`` is high; the second is its output register, loaded while ``out_en`` is
    high. On ECP5 (``platform.family == "ecp5"``) with words of at most 18 bits, this is
    one ``DP16KD`` with ``REGMODE_B = "OUTREG"`` per 1,024 words (``CEB = read_en``,
    ``OCEB = out_en``): the second register is the one inside the block RAM, so nextpnr
    times the RAM's read to that register inside the block (about 5.8 ns from the clock
    to an unregistered output, which with routing to a fabric register held the ULX3S
    85F to 94.86 MHz) and the output leaves the block from a register. yosys never uses
    that register itself. A memory of several blocks picks the block after the output
    registers, by the block number registered beside the data with the same enables.
    Elsewhere (simulation, iCE40, wider words) the same two registers are an Amaranth
    memory's read port and a register after it, which yosys maps onto block RAM and a
    fabric register. Both forms load their registers on the same enabled edges, so they
    give the same ``read_data`` on every cycle.

    A read of the address written in the same cycle is undefined on a block RAM (the
    memory carries yosys's ``no_rw_check``: :data:`NO_RW_CHECK`). With
    ``poison_collisions``, the generic form returns such a word inverted, and the cell
    model of the ECP5 form (``sim/dp16kd.v``) always does: a design that stays bit-exact
    in simulation never uses one.

    Parameters
    ----------
    shape : shape-like
        A word.
    depth : int
        Words (at least 2).
    poison_collisions : bool
        Simulation only, generic form: invert a word read in the cycle its address was
        written.

    Members
    -------
    read_addr : In(range(depth))
    read_en : In(1, init=1)
        The first register (the block RAM's read) loads at a clock edge only while high.
    out_en : In(1, init=1)
        The output register loads at a clock edge only while high.
    read_data : Out(shape)
        The output register: with both enables high, the word at ``read_addr`` of two
        cycles before.
    write_addr : In(range(depth))
    write_data : In(shape)
    write_en : In(1)

    Latency
    -------
    Reads: 2 enabled edges (``read_en``, then ``out_en``). Writes: the word is written at
    the clock edge of the request; a read at a later edge returns it.
    """

    def __init__(self, *, shape, depth: int, poison_collisions: bool = False):
        try:
            self.shape = Shape.cast(shape)
        except TypeError:
            raise TypeError(f"RegisteredBlockRam shape must be a shape, not {shape!r}") from None
        self.depth = check_int("RegisteredBlockRam depth", depth, low=2)
        if not isinstance(poison_collisions, bool):
            raise TypeError(f"RegisteredBlockRam poison_collisions must be a bool, not "
                            f"{poison_collisions!r}")
        self.poison_collisions = poison_collisions
        aw = _addr_bits(depth)
        super().__init__({"read_addr": In(aw), "read_en": In(1, init=1), "out_en": In(1, init=1),
                          "read_data": Out(self.shape),
                          "write_addr": In(aw), "write_data": In(self.shape),
                          "write_en": In(1)})

    @property
    def fits_dp16kd(self) -> bool:
        """Whether the words fit the ECP5 DP16KD at 18 bits a word."""
        return self.shape.width <= DP16KD_WIDTH

    @property
    def blocks(self) -> int:
        """DP16KDs of the ECP5 form."""
        return -(-self.depth // DP16KD_DEPTH)

    def elaborate(self, platform):
        if getattr(platform, "family", None) == "ecp5" and self.fits_dp16kd:
            return self._dp16kd()
        m = Module()
        mm = memory.Memory(shape=self.shape, depth=self.depth, init=[], attrs=NO_RW_CHECK)
        m.submodules.mem = mm
        rd, wr = RegisteredReadPort(m, mm, "ram"), mm.write_port()
        m.d.comb += [rd.addr.eq(self.read_addr), rd.en.eq(self.read_en),
                     wr.addr.eq(self.write_addr), wr.data.eq(self.write_data),
                     wr.en.eq(self.write_en)]
        out = Signal(self.shape, name="out", reset_less=True)
        with m.If(self.out_en):
            m.d.sync += out.eq(read_data(m, rd, wr, "ram", self.poison_collisions))
        m.d.comb += self.read_data.eq(out)
        return m

    def _dp16kd(self) -> Module:
        """One DP16KD per 1,024 words: port A writes, port B reads into its output register
        (``REGMODE_B = OUTREG``).

        At 18 bits a word the address is pins 13..4; pins 1..0 of port A are its two byte
        enables (both on), pins 3..2 and the chip selects are 0. Words narrower than 18
        bits are zero-extended and read back truncated. With several blocks, the write
        enable is decoded by block and the output picked by the block number, registered
        twice beside the data.
        """
        m = Module()
        width, lb = DP16KD_WIDTH, _addr_bits(DP16KD_DEPTH)
        outs = []
        for k in range(self.blocks):
            di = Signal(width, name=f"di{k}")
            do = Signal(width, name=f"do{k}")
            do_a = Signal(width, name=f"do_a{k}")          # port A's read: unused
            we = Signal(name=f"we{k}")
            m.d.comb += [di.eq(self.write_data.as_unsigned()),
                         we.eq(self.write_en & (self.write_addr[lb:] == k) if self.blocks > 1
                               else self.write_en)]
            ports = {"CLKA": ClockSignal("sync"), "CEA": Const(1, 1), "OCEA": Const(1, 1),
                     "WEA": we, "RSTA": Const(0, 1),
                     "CLKB": ClockSignal("sync"), "CEB": self.read_en, "OCEB": self.out_en,
                     "WEB": Const(0, 1), "RSTB": Const(0, 1)}
            for side, addr, enables in (("A", self.write_addr[:lb], 1),
                                        ("B", self.read_addr[:lb], 0)):
                for j in range(3):
                    ports[f"CS{side}{j}"] = Const(0, 1)
                for j in range(14):
                    if j < 2:
                        ports[f"AD{side}{j}"] = Const(enables, 1)
                    elif j < 4 or j - 4 >= len(addr):
                        ports[f"AD{side}{j}"] = Const(0, 1)
                    else:
                        ports[f"AD{side}{j}"] = addr[j - 4]
            for j in range(width):
                ports[f"DIA{j}"] = di[j]
                ports[f"DIB{j}"] = Const(0, 1)
            kwargs = {f"i_{name}": v for name, v in ports.items()}
            kwargs.update({f"o_DOB{j}": do[j] for j in range(width)})
            kwargs.update({f"o_DOA{j}": do_a[j] for j in range(width)})
            m.submodules[f"ram{k}" if self.blocks > 1 else "ram"] = Instance(
                "DP16KD",
                p_DATA_WIDTH_A=width, p_DATA_WIDTH_B=width,
                p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG",
                p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="AUTO",
                **kwargs)
            outs.append(do[:self.shape.width])
        if self.blocks == 1:
            m.d.comb += self.read_data.eq(outs[0])
            return m
        sel_read = Signal(len(self.read_addr) - lb, name="sel_read", reset_less=True)
        sel_out = Signal(len(self.read_addr) - lb, name="sel_out", reset_less=True)
        with m.If(self.read_en):
            m.d.sync += sel_read.eq(self.read_addr[lb:])
        with m.If(self.out_en):
            m.d.sync += sel_out.eq(sel_read)
        m.d.comb += self.read_data.eq(Array(outs)[sel_out])
        return m
