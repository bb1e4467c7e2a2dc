"""The training engine: a whole MLP trained in RTL, built from the arithmetic units.

``docs/engine.md`` describes the architecture, the schedule, the memory map and the host
interface; ``docs/datapath.md`` is the arithmetic it implements bit for bit. The engine
puts one sample on each of ``P`` MAC lanes and broadcasts one weight (or delta) a
cycle; every product, sum and cast goes through a unit of ``hw/``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arith import HASH_STAGES, hash_rounds
from ..generate import build_unit
from ..mac import MAC
from ..registered_block_ram import NO_RW_CHECK, RegisteredBlockRam, RegisteredReadPort, read_data
from .banked_memory import BankedMemory
from .counter_bank import CounterBank
from .config import (EVENT_CODES, ID_MAGIC, REG, EngineConfig, Err, Mem, Op,
                     signed_width, status_word)

__all__ = ["Engine"]

#: Pass kinds: forward (section 5), backward errors (6.2), gradients and updates (7, 8).
F, E, G = 0, 1, 2
#: Stochastic site codes, in key order (section 9).
KEY_CODES = (3, 4, 5, 6, 7, 8, 9)
#: The dataset buffer's sample and target memories: words a bank (one ECP5 DP16KD at
#: 16 bits) and the widest multiplexer of a registered level (``BankedMemory``).
DS_BANK_DEPTH = 1024
DS_MUX_WAYS = 16
#: Registers after each dataset bank: the first sits beside its DP16KD (ulx3s-85f: the
#: 90 banks' unregistered outputs crossed the die to their registers, 88.17 MHz).
DS_BANK_REGISTERS = 2
#: The dataset buffer's writes (the host's upload) are registered once, each bank's
#: enable beside its block RAM (``BankedMemory(write_registers=1)``).
DS_WRITE_REGISTERS = 1
#: Their read address too, before its fan-out to every bank (the RUN copy's address
#: adder and the host's multiplexer no longer share a cycle with it).
DS_READ_REGISTERS = 1


def _bits(n: int) -> int:
    """Bits of an unsigned value up to ``n``."""
    return max(1, int(n).bit_length())


def _popcount(bits, n: int):
    total = Const(0, _bits(n))
    for q in range(n):
        total = total + bits[q]
    return total


def _saturated(word, bits: int):
    """``word`` in ``bits`` bits, all ones when it does not fit (a register narrower than
    the host's 32-bit word keeps "too large" as too large)."""
    if bits >= len(word):
        return word
    return Mux(word[bits:].any(), (1 << bits) - 1, word[:bits])


class _Fetch:
    """A pipeline register that reads memory at an address taken from its input.

    ``payload`` is the input registered and ``data`` the memory word read for it. The
    read is enabled only when a value moves in, so a stall keeps the word. ``addr`` and
    ``en`` are for the port's multiplexer. ``port_data`` is the read port's data, or a
    function of the first register's payload giving it (a choice between ports).

    With ``data_register``, a second register follows, holding the payload and the word:
    the memory's output then reaches only that register (latency 2, not 1). With
    ``registered_port`` as well, that register is the memory's own output register
    (:class:`RegisteredBlockRam`'s, loaded under ``advance``): ``port_data`` is then a
    function of the second register's payload, and no data register is built here.
    """

    def __init__(self, m: Module, name: str, shape, addr, port_data, i_valid, i_payload, *,
                 data_register: bool = False, registered_port: bool = False):
        self.ready = Signal(name=f"{name}_ready")          # from downstream
        self.i_ready = Signal(name=f"{name}_i_ready")
        self.addr = Signal(32, name=f"{name}_addr")
        self.en = Signal(name=f"{name}_en")
        valid = Signal(name=f"{name}_valid")
        payload = Signal(shape, name=f"{name}_payload", reset_less=True)
        word = None if registered_port else (port_data(payload) if callable(port_data)
                                              else port_data)
        if data_register:
            self.valid = Signal(name=f"{name}_valid2")
            self.payload = Signal(shape, name=f"{name}_payload2", reset_less=True)
            self.advance = Signal(name=f"{name}_advance")    # the second register loads
            ready = ~self.valid | self.ready
            m.d.comb += self.advance.eq(valid & ready)
            with m.If(self.advance):
                m.d.sync += [self.valid.eq(1), self.payload.eq(payload)]
            with m.Elif(self.ready):
                m.d.sync += self.valid.eq(0)
            if registered_port:
                self.data = port_data(self.payload)
            else:
                self.data = Signal.like(word, name=f"{name}_data2", reset_less=True)
                with m.If(self.advance):
                    m.d.sync += self.data.eq(word)
        else:
            self.valid, self.payload, self.data, ready = valid, payload, word, self.ready
        m.d.comb += [self.i_ready.eq(~valid | ready),
                     self.en.eq(i_valid & self.i_ready), self.addr.eq(addr)]
        with m.If(self.en):
            m.d.sync += [valid.eq(1), payload.eq(i_payload)]
        with m.Elif(ready):
            m.d.sync += valid.eq(0)


class Engine(wiring.Component):
    """A training engine for one :class:`EngineConfig`.

    Parameters
    ----------
    config : EngineConfig
        What the engine is generated for (profile, maxima, lanes, loss).
    poison_collisions : bool
        Simulation only: invert a memory read's data whenever the address read was written
        in the same cycle. The memories carry yosys's ``no_rw_check`` (block RAM leaves
        such a read undefined, and yosys builds no fabric logic to hide it); tests train
        with the poison on and must stay bit-exact, which proves no read whose data is
        used ever meets a write to its address.

    Members
    -------
    cmd : In(stream.Signature(32))
        Command words from the host (``docs/engine.md``, host interface).
    rsp : Out(stream.Signature(32))
        Response words: each command's answer, then its status word.
    """

    def __init__(self, config: EngineConfig, *, poison_collisions: bool = False):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Engine config must be an EngineConfig, not {config!r}")
        if not isinstance(poison_collisions, bool):
            raise TypeError(f"Engine poison_collisions must be a bool, not "
                            f"{poison_collisions!r}")
        self.config = config
        self.poison_collisions = poison_collisions
        self._units()              # fails here, before any signal, when a unit does not fit
        super().__init__({"cmd": In(stream.Signature(32)), "rsp": Out(stream.Signature(32))})

    # ------------------------------------------------------------------ units
    def _units(self):
        c, p = self.config, self.config.profile
        hidden = "hidden" if p.input.fmt != p.activation.fmt else None
        self.w_width = signed_width(p.weight.fmt)
        self.bias_width = signed_width(p.bias.fmt)
        self.act_width = max(signed_width(p.input.fmt), signed_width(p.activation.fmt))
        self.delta_width = signed_width(p.delta.fmt)
        self.d_width = signed_width(p.derivative.fmt)
        self.t_width = signed_width(p.activation.fmt)
        fw, fin, fb = p.weight.fmt.frac_bits, p.activation.fmt.frac_bits, p.bias.fmt.frac_bits
        self.lane_a = max(self.w_width, self.delta_width)
        # The bias column's b operand is 1.0 in the activation format (2^fin): it needs
        # fin + 2 bits as a signed value.
        self.lane_b = max(self.act_width, self.delta_width, 2, fin + 2)
        self.one_a = 1 << fin
        self.frame_tag = data.StructLayout({
            "kind": 2, "layer": _bits(c.depth), "idx0": self._idx_bits(), "off": self._addr_bits(),
            "row": _bits(max(c.sizes)), "col0": _bits(max(c.sizes) + c.lanes), "mask": c.lanes})
        self.lanes = [MAC(a_width=self.lane_a, b_width=self.lane_b, acc_width=p.accumulator_bits,
                          max_fan_in=c.max_fan_in, bias_width=self.bias_width,
                          bias_shift=fw + fin - fb,
                          tag_width=self.frame_tag.size if q == 0 else 0)
                      for q in range(c.lanes)]
        el = self.elem = data.StructLayout({
            "kind": 2, "layer": _bits(c.depth), "idx": self._idx_bits(), "off": self._addr_bits(),
            "bank": max(1, c.log2_lanes), "row": _bits(max(c.sizes)), "bias": 1})
        aw, ew = signed_width(p.activation.fmt), signed_width(p.error.fmt)
        self.err_width = ew

        def tag(**extra):
            return data.StructLayout({"el": el, **extra})

        self.tag_ft = tag(t=signed(aw))                      # F: the target
        self.tag_fa = tag(a=signed(aw))                      # F: the activation
        self.tag_fe = tag(a=signed(aw), err=signed(ew))      # F: activation and error
        self.tag_ed = tag(d=signed(self.d_width))            # E: the derivative
        self.tag_g = tag(w=signed(max(self.w_width, self.bias_width)))  # G: weight or bias
        # One update unit serves weights and biases when their stages are equal.
        self.shared_update = p.weight == p.bias

        def unit(name, stage=None, layout=el, **kw):
            return build_unit(name, p, stage, tag_width=layout.size, shallow=c.shallow, **kw)

        self.u = {
            "pre": unit("cast", "preactivation", self.tag_ft, layer=hidden),
            "sig": unit("sigmoid", None, self.tag_ft),
            "oerr": unit("cast", "output-error", self.tag_fa),
            "der": unit("sigmoid-derivative", None, self.tag_fe),
            "err": unit("cast", "error", self.tag_ed),
            "ed": MAC(a_width=ew, b_width=self.d_width, acc_width=ew + self.d_width,
                      max_fan_in=1, tag_width=el.size),
            "delta": unit("cast", "delta"),
            "grad": unit("cast", "gradient", self.tag_g, layer=hidden),
        }
        if self.shared_update:
            self.u["upd"] = unit("weight-update", None, el, lr_shift=c.lr_shift)
        else:
            self.u["wupd"] = unit("weight-update", None, el, lr_shift=c.lr_shift)
            self.u["bupd"] = unit("bias-update", None, el, lr_shift=c.lr_shift)
        if c.loss == "xent":
            self.u["xent"] = unit("cast", "xent-delta")

    def _idx_bits(self) -> int:
        """Bits of an element's index (DP 9): it stays below the largest tensor, plus a
        frame's overshoot past its end (lanes beyond the batch or the row)."""
        c = self.config
        n = c.sizes
        largest = max([c.groups * c.lanes * max(n)]
                      + [n[l] * (n[l - 1] + c.lanes + 1) for l in range(1, len(n))])
        return _bits(largest + c.lanes * max(n))

    def _addr_bits(self) -> int:
        c = self.config
        return _bits(max(c.weight_bases[1], c.activation_bases[1], c.delta_bases[1],
                         c.derivative_bases[1], c.target_depth) + 2 * max(c.sizes) + c.lanes)

    # ------------------------------------------------------------------ elaborate
    def elaborate(self, platform):
        c, p = self.config, self.config.profile
        m = Module()
        P, L, lg = c.lanes, c.depth, c.log2_lanes
        u_ = self.u
        for name, unit in u_.items():
            m.submodules[name] = unit
        for q, lane in enumerate(self.lanes):
            m.submodules[f"lane{q}"] = lane

        def pack(layout, name, **fields):
            sig = Signal(layout, name=name)
            m.d.comb += [getattr(sig, k).eq(v) for k, v in fields.items()]
            return sig.as_value()

        def view(layout, value):
            return data.View(layout, value)

        # ---------------------------------------------------------- host registers
        # In a shallow engine the batch and the widths are one bit wider than their
        # maxima need, and a write saturates (EngineConfig.saturating_registers): any
        # value over the maximum stays over it, and TRAIN/EVAL refuse it (Err.CONFIG), as
        # with 32 bits, without 32-bit registers and compares.
        sat = c.saturating_registers
        cfg_batch = Signal(sat.get(REG["batch"], 32), name="cfg_batch", init=c.batch)
        widths = [Signal(sat.get(REG["width0"] + l, 32), name=f"cfg_n{l}", init=n)
                  for l, n in enumerate(c.sizes)]
        eta = Signal(p.learning_rate.total_bits, name="cfg_eta")
        seed = Signal(32, name="cfg_seed")
        step = Signal(32, name="cfg_step")
        timeout = Signal(32, name="cfg_timeout", init=1 << 20)
        # The counters live in a CounterBank (built with the increments, below); the host
        # reads them through this interface.
        ctr = CounterBank.ReadSignature(count=len(c.counter_names), width=c.counter_bits).create(
            path=("ctr_read",))
        nb = _bits(max(c.sizes))
        n_arr = Array([w[:nb] for w in widths])
        if c.dataset_buffer:
            # RUN's steps may be shorter than the batch register (the end of the order).
            batch = Signal(_bits(c.batch), name="cur_batch")
        else:
            batch = cfg_batch[:_bits(c.batch)]
        groups = Signal(_bits(c.groups), name="groups")
        m.d.comb += groups.eq((batch + (P - 1)) >> lg)

        def const_array(values):
            width = _bits(max(list(values) + [1]))
            return Array([Const(v, width) for v in values])

        wbase = const_array(c.weight_bases[0])              # layer l at index l - 1
        bbase = const_array(c.bias_bases[0])
        abase = const_array(c.activation_bases[0])          # a_0 .. a_L
        dlbase = const_array(c.delta_bases[0])              # delta_l at index l - 1
        dbase = const_array(c.derivative_bases[0] or [0])   # d_l at index l - 1

        # ---------------------------------------------------------- memories
        def mem(name, width, depth):
            # Depth 2 at least: a one-word memory would have a zero-width address.
            mm = memory.Memory(shape=signed(width), depth=max(2, depth), init=[], attrs=NO_RW_CHECK)
            m.submodules[f"mem_{name}"] = mm
            return mm

        def ram(name, width, depth):
            r = RegisteredBlockRam(shape=signed(width), depth=max(2, depth),
                                   poison_collisions=self.poison_collisions)
            m.submodules[f"mem_{name}"] = r
            return r

        # The weights, the activation banks and the delta banks are read through the
        # block RAM's output register (on ECP5 the DP16KD's own: a weight block's
        # unregistered output through the blocks' multiplexer into the gradient cast's
        # input was ulx3s-85f's and ulx3s-12f's critical path, 10.1-11.8 ns). Their output
        # registers are w_q, a_q and dl_q, which the sequencer's operands and the host's
        # reads took one cycle after the read; the gradient fetch loads w_q as its weight
        # register.
        mw = ram("w", self.w_width, c.weight_bases[1])
        mb = mem("b", self.bias_width, c.bias_bases[1])
        mt = mem("t", self.t_width, c.target_depth)
        md = mem("d", self.d_width, c.derivative_bases[1])
        ma = [ram(f"a{q}", self.act_width, c.activation_bases[1]) for q in range(P)]
        mdl = [ram(f"delta{q}", self.delta_width, c.delta_bases[1]) for q in range(P)]
        rd = {k: RegisteredReadPort(m, v, f"mem_{k}") for k, v in
              (("b", mb), ("t", mt), ("d", md))}
        wr = {k: v.write_port() for k, v in (("b", mb), ("t", mt), ("d", md))}
        # Every use of a read port's data goes through read_data (collision poisoning).
        rdd = {k: read_data(m, rd[k], wr[k], f"mem_{k}", self.poison_collisions) for k in rd}
        depths = {Mem.W: c.weight_bases[1], Mem.B: c.bias_bases[1],
                  Mem.A: P * c.activation_bases[1], Mem.T: c.target_depth,
                  Mem.DELTA: P * c.delta_bases[1], Mem.D: c.derivative_bases[1]}

        # ---------------------------------------------------------- run control state
        running = Signal(name="running")
        training = Signal(name="training")
        kind = Signal(2, name="pass_kind")
        layer = self._layer = Signal(_bits(L), name="pass_layer")
        start_run = Signal(name="start_run")
        start_train = Signal(name="start_train")
        run_done = Signal(name="run_done")
        kg_start = Signal(name="keygen_start")
        kg_busy = Signal(name="keygen_busy")
        in_pass = Signal(name="in_pass")

        # ---------------------------------------------------------- sequencer
        cb = _bits(max(max(c.sizes), c.batch, c.groups) + 1)
        u, v, k = (Signal(cb, name=nm) for nm in ("seq_u", "seq_v", "seq_k"))
        U, V, K = (Signal(cb, name=nm) for nm in ("seq_U", "seq_V", "seq_K"))
        n_in, n_out, n_next = (Signal(nb, name=nm) for nm in ("n_in", "n_out", "n_next"))
        ab = self._addr_bits()
        w_run = Signal(ab, name="w_run")       # F: this row's start; E: this op's address
        lane_row = Signal(ab, name="lane_row")
        bc_row = Signal(ab, name="bc_row")     # G: the broadcast delta's address
        idx_u = Signal(self._idx_bits(), name="idx_u")
        off_u = Signal(ab, name="off_u")
        # issuing: the run is in state ISSUE, kept in a register of its own (set on every
        # way into ISSUE, cleared on the way out) rather than decoded from the state: the
        # issue enable `fire` heads the loop registers' update (ulx3s-85f: the run
        # state's decode -> fire -> seq_k -> seq_v -> w_run -> w_addr_f, 7 levels,
        # 10.42 ns, 8.46 of it routing).
        issuing = self._issuing = Signal(name="seq_issuing")
        pending = Signal(2, name="pending")    # collector banks reserved (0..2)
        inflight = Signal(_bits(c.batch * max(c.sizes) * 2 + 4 * P), name="inflight")
        # drained: the pass's drain test (inflight == 0, pending == 0, and no element in
        # s1, s2, s2r or s3), one register computed from the counts' and the stages'
        # next values, so the next pass's setup, which loads every loop register, starts
        # at a register (ECP5-25F: inflight -> seq_k, 7 levels, 97.1 MHz; ulx3s-45f: the
        # stages' valid bits ANDed -> seq_k, 10.40 ns; ulx3s-85f: inflight_zero &
        # pending_zero & pipe_idle -> b_addr, 10.12 ns, 2.65 of it the AND's fan-out).
        drained = Signal(name="drained", init=1)
        pending_two = Signal(name="pending_two")           # pending == 2, likewise
        release = Signal(name="release")

        # kind == F, E, G, kept in registers beside kind (setup() sets all four): the
        # gather addresses' step (is_g & wrap) and the read multiplexers start at a
        # register, not at a decode of kind (ulx3s-45f: kind -> is_g -> the step ->
        # g_addr's adder, 10.04 ns).
        is_f = Signal(name="pass_is_f", init=1)            # kind's reset value is F
        is_e, is_g = Signal(name="pass_is_e"), Signal(name="pass_is_g")
        # U, V, K hold the last value of each loop (set once per pass, so no subtractor
        # sits in the issue path). last_op (k == K), last_v (v == V) and last_u (u == U)
        # are registers kept one step ahead with k, v and u (setup() and the loop below),
        # so no comparator sits in front of the issue enable that every address register
        # waits on.
        first_op = k == 0
        last_op = Signal(name="seq_last_op")
        last_v = Signal(name="seq_last_v")
        last_u = Signal(name="seq_last_u")
        single_op = Signal(name="seq_single_op")   # K == 0: every op is a row's last
        single_v = Signal(name="seq_single_v")     # V == 0
        last_frame = last_v & last_u
        col0 = Signal(nb + 1 + lg, name="col0")
        b0 = Signal(_bits(c.groups * P), name="b0")
        m.d.comb += [col0.eq(v << lg), b0.eq(u << lg)]
        mask = Signal(P, name="lane_mask")
        bias_lane = Signal(P, name="bias_lane")
        for q in range(P):
            m.d.comb += [mask[q].eq(Mux(is_g, col0 + q <= n_in, b0 + q < batch)),
                         bias_lane[q].eq(is_g & (col0 + q == n_in))]
        fire = Signal(name="seq_fire")
        m.d.comb += fire.eq(issuing & ~(last_op & pending_two))
        kmod = k[:lg] if lg else Const(0, 1)
        # k mod P == P - 1, a register kept one step ahead with k like last_op: the
        # gather addresses' step (is_g & wrap) then starts at a register, not at a
        # compare of k (ulx3s-85f: seq_k -> the step -> g_addr5, 11 levels, 10.28 ns).
        wrap = Signal(name="seq_kwrap") if lg else Const(1, 1)
        # The issue's read addresses are registers kept one step ahead of the loop
        # counters, so a memory's address comes from a register through multiplexers,
        # never through an adder (ECP5: the adder, yosys's read/write collision logic
        # and the routing did not fit 10 ns). Each is updated wherever its sources are:
        #   w_addr_f  = w_run + k                       (forward passes)
        #   lane_k    = lane_row + k                    (forward and backward passes)
        #   g_addr[q] = lane_row + ((q - k) mod P)      (gradient passes)
        #   b_addr    = bbase[layer - 1] + v            (forward passes)
        w_addr_f = Signal(ab, name="w_addr_f")
        lane_k = Signal(ab, name="lane_k")
        g_addr = [Signal(ab, name=f"g_addr{q}") for q in range(P)]
        b_addr = Signal(ab, name="b_addr")
        seq_w_addr = Mux(is_f, w_addr_f, w_run)
        bank_addrs = [Mux(is_g, g_addr[q], lane_k) for q in range(P)]

        frame = Signal(self.frame_tag, name="frame")
        m.d.comb += [frame.kind.eq(kind), frame.layer.eq(layer), frame.row.eq(Mux(is_g, u, v)),
                     frame.col0.eq(col0), frame.mask.eq(mask),
                     frame.idx0.eq(Mux(is_g, idx_u + col0, idx_u + v)),
                     frame.off.eq(off_u + v)]
        ctl = data.StructLayout({"valid": 1, "first": 1, "last": 1, "rot": max(1, lg),
                                 "bsel": max(1, lg), "kind": 2, "one": P, "frame": self.frame_tag})
        s1, s2 = Signal(ctl, name="s1"), Signal(ctl, name="s2")
        m.d.sync += [s1.valid.eq(fire), s1.first.eq(first_op), s1.last.eq(last_op),
                     s1.rot.eq(kmod), s1.bsel.eq((k + u)[:max(1, lg)] if lg else 0),
                     s1.kind.eq(kind), s1.one.eq(bias_lane), s1.frame.eq(frame), s2.eq(s1)]
        w_q = Signal(signed(self.w_width), name="w_q", reset_less=True)
        b_q = Signal(signed(self.bias_width), name="b_q", reset_less=True)
        a_q = [Signal(signed(self.act_width), name=f"a_q{q}", reset_less=True) for q in range(P)]
        dl_q = [Signal(signed(self.delta_width), name=f"dl_q{q}", reset_less=True)
                for q in range(P)]
        t_q = Signal(signed(self.t_width), name="t_q", reset_less=True)
        d_q = Signal(signed(self.d_width), name="d_q", reset_less=True)
        m.d.comb += w_q.eq(mw.read_data)
        m.d.sync += [b_q.eq(rdd["b"]), t_q.eq(rdd["t"]), d_q.eq(rdd["d"])]
        m.d.comb += [a_q[q].eq(ma[q].read_data) for q in range(P)]
        m.d.comb += [dl_q[q].eq(mdl[q].read_data) for q in range(P)]
        # s2r: the memories' words registered once more in the fabric, beside their
        # block RAMs, before the lanes' operand multiplexers. A block RAM's output
        # register drives only this register, so the route from a block to the lanes (up
        # to 6.45 ns on ulx3s-85f: a delta bank's output register through the rotation
        # into lane 1's operand, 10.89 ns) no longer shares a cycle with the rotation.
        # A shallow engine (a slow clock) leaves s2r out: the lanes' operands come from the
        # memories' output registers (w_r stays: the host reads weights from it).
        w_r = Signal.like(w_q, name="w_r", reset_less=True)
        if c.shallow:
            s2r, b_r, a_r, dl_r = s2, b_q, a_q, dl_q
            m.d.sync += w_r.eq(w_q)
            w_lane = w_q
        else:
            s2r = Signal(ctl, name="s2r")
            b_r = Signal.like(b_q, name="b_r", reset_less=True)
            a_r = [Signal.like(a_q[q], name=f"a_r{q}", reset_less=True) for q in range(P)]
            dl_r = [Signal.like(dl_q[q], name=f"dl_r{q}", reset_less=True) for q in range(P)]
            m.d.sync += [s2r.eq(s2), w_r.eq(w_q), b_r.eq(b_q)]
            m.d.sync += [a_r[q].eq(a_q[q]) for q in range(P)]
            m.d.sync += [dl_r[q].eq(dl_q[q]) for q in range(P)]
            w_lane = w_r
        s3 = Signal(data.StructLayout({"valid": 1, "first": 1, "last": 1}), name="s3")
        s3_frame = Signal(self.frame_tag, name="s3_frame", reset_less=True)
        s3_a = Signal(signed(self.lane_a), name="s3_a", reset_less=True)
        s3_bias = Signal(signed(self.bias_width), name="s3_bias", reset_less=True)
        s3_b = [Signal(signed(self.lane_b), name=f"s3_b{q}", reset_less=True) for q in range(P)]
        a_arr, dl_arr = Array(a_r), Array(dl_r)
        # No element in s1, s2, s2r or s3 next cycle: each stage's valid is the one before
        # it a cycle late (s1.valid <= fire), so ~(fire | s1 | s2 | s2r) now is exactly
        # ~(s1 | s2 | s2r | s3) in the next cycle (for `drained`).
        pipe_idle_n = ~(fire | s1.valid | s2.valid | s2r.valid)     # shallow: s2r is s2
        m.d.sync += [s3.valid.eq(s2r.valid), s3.first.eq(s2r.first), s3.last.eq(s2r.last),
                     s3_frame.eq(s2r.frame),
                     s3_a.eq(Mux(s2r.kind == G, dl_arr[s2r.bsel] if lg else dl_r[0], w_lane)),
                     s3_bias.eq(Mux((s2r.kind == F) & s2r.first, b_r, 0))]
        for q in range(P):
            src = ((q + s2r.rot) & (P - 1)) if lg else 0
            lane_val = Mux(s2r.kind == E, dl_arr[src] if lg else dl_r[0],
                           a_arr[src] if lg else a_r[0])
            m.d.sync += s3_b[q].eq(Mux(s2r.one[q], self.one_a, lane_val))
        for q, lane in enumerate(self.lanes):
            pl = lane.i.payload
            m.d.comb += [lane.i.valid.eq(s3.valid), pl.a.eq(s3_a), pl.b.eq(s3_b[q]),
                         pl.bias.eq(s3_bias), pl.first.eq(s3.first), pl.last.eq(s3.last),
                         lane.o.ready.eq(1)]
        m.d.comb += self.lanes[0].i.payload.tag.eq(s3_frame)

        # ---------------------------------------------------------- collector
        acc = p.accumulator_bits
        sums = [[Signal(signed(acc), name=f"coll{bk}_{q}", reset_less=True) for q in range(P)]
                for bk in range(2)]
        ctag = [Signal(self.frame_tag, name=f"coll{bk}_tag", reset_less=True) for bk in range(2)]
        full = [Signal(name=f"coll{bk}_full") for bk in range(2)]
        wp, rp = Signal(name="coll_wp"), Signal(name="coll_rp")
        cnt = Signal(max(1, lg), name="coll_cnt")
        idx_run = Signal(self._idx_bits(), name="coll_idx")
        lane0 = self.lanes[0]
        with m.If(lane0.o.valid):
            m.d.sync += wp.eq(~wp)
            for bk in range(2):
                with m.If(wp == bk):
                    m.d.sync += [full[bk].eq(1), ctag[bk].eq(lane0.o.payload.tag)]
                    m.d.sync += [sums[bk][q].eq(self.lanes[q].o.payload.sum) for q in range(P)]
        cur = view(self.frame_tag, Mux(rp, ctag[1].as_value(), ctag[0].as_value()))
        cur_full = Mux(rp, full[1], full[0])
        sum_arr = Array([Array(sums[0]), Array(sums[1])])
        lane_on = cur.mask.bit_select(cnt, 1) if P > 1 else cur.mask[0]
        # The chains after the collector never stall (every sink is a write port), so the
        # collector hands out one element a cycle into a register, without a ready.
        coll_valid = Signal(name="coll_valid")
        cnt_w = cnt if lg else Const(0, 1)
        coll_idx = Mux(cnt_w == 0, cur.idx0, idx_run)
        coll_el = pack(self.elem, "coll_el", kind=cur.kind, layer=cur.layer, idx=coll_idx,
                       off=cur.off, bank=(cnt_w + cur.row)[:max(1, lg)] if lg else 0,
                       row=cur.row,
                       bias=(cur.kind == G) & (cur.col0 + cnt_w == n_arr[cur.layer - 1]))
        coll_el = view(self.elem, coll_el)
        coll_layout = data.StructLayout({"sum": signed(acc), "el": self.elem})
        coll_next = pack(coll_layout, "coll_next", sum=sum_arr[rp][cnt_w], el=coll_el)
        coll = Signal(coll_layout, name="coll", reset_less=True)
        m.d.sync += [coll_valid.eq(cur_full & lane_on), coll.eq(coll_next)]
        coll = coll.as_value()
        advance = cur_full
        m.d.comb += release.eq(advance & (cnt_w == P - 1))
        with m.If(advance):
            m.d.sync += idx_run.eq(coll_idx + Mux(cur.kind == G, 1, n_arr[cur.layer]))
            with m.If(cnt_w == P - 1):
                m.d.sync += rp.eq(~rp)
                if lg:
                    m.d.sync += cnt.eq(0)
                for bk in range(2):
                    with m.If(rp == bk):
                        m.d.sync += full[bk].eq(0)
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)

        # ---------------------------------------------------------- keys (section 9)
        keys = self._keygen(m, seed, step, kg_start, kg_busy) if c.stochastic else {}
        if not c.stochastic:
            m.d.comb += kg_busy.eq(0)

        def rand(unit, code, el, index, bias_code=None):
            """The unit's site key and word index; with ``bias_code``, a bias element
            (``el.bias``) takes that site's key."""
            if getattr(unit, "stochastic", False):
                key = Array(keys[code])[el.layer - 1]
                if bias_code is not None:
                    key = Mux(el.bias, Array(keys[bias_code])[el.layer - 1], key)
                m.d.comb += [unit.key.eq(key), unit.i.payload.index.eq(index)]

        events = {code: [] for code in EVENT_CODES}

        def count(code, fired, over, under):
            events[code].append((fired, over, under))

        def connect(src_valid, src_ready, unit, value, tag, **fields):
            m.d.comb += [unit.i.valid.eq(src_valid), unit.i.payload.value.eq(value),
                         unit.i.payload.tag.eq(tag), src_ready.eq(unit.i.ready)]
            for name, val in fields.items():
                m.d.comb += getattr(unit.i.payload, name).eq(val)

        def fired(unit):
            return unit.o.valid & unit.o.ready

        # F chain: target fetch, pre-activation cast, sigmoid, output-error cast (a - t),
        # derivative; then the activation and derivative memories, or the delta tail.
        cv = view(coll_layout, coll)
        ft = _Fetch(m, "fetch_t", coll_layout, cv.el.idx, rdd["t"],
                    coll_valid & (cv.el.kind == F), coll)
        pre, sig, oerr, der = u_["pre"], u_["sig"], u_["oerr"], u_["der"]
        connect(ft.valid, ft.ready, pre, ft.payload.sum,
                pack(self.tag_ft, "tag_ft", el=ft.payload.el, t=ft.data))
        connect(pre.o.valid, pre.o.ready, sig, pre.o.payload.value, pre.o.payload.tag)
        count(1, fired(pre), pre.o.payload.overflow, pre.o.payload.underflow)
        count(2, fired(sig), sig.o.payload.overflow, sig.o.payload.underflow)
        st = view(self.tag_ft, sig.o.payload.tag)
        a_sig = sig.o.payload.value
        connect(sig.o.valid, sig.o.ready, oerr, a_sig - st.t,
                pack(self.tag_fa, "tag_fa", el=st.el, a=a_sig))
        rand(oerr, 4, st.el, st.el.idx)
        ot = view(self.tag_fa, oerr.o.payload.tag)
        count(4, fired(oerr) & training & (ot.el.layer == L), oerr.o.payload.overflow,
              oerr.o.payload.underflow)
        connect(oerr.o.valid, oerr.o.ready, der, ot.a,
                pack(self.tag_fe, "tag_fe", el=ot.el, a=ot.a, err=oerr.o.payload.value))
        rand(der, 3, ot.el, ot.el.idx)
        dt = view(self.tag_fe, der.o.payload.tag)
        out_layer = dt.el.layer == L
        count(3, fired(der) & training & ~(out_layer & (c.loss == "xent")),
              der.o.payload.overflow, der.o.payload.underflow)
        to_tail = training & out_layer

        # E chain: derivative fetch, then the error cast.
        fd = _Fetch(m, "fetch_d", coll_layout, dbase[cv.el.layer - 1] + cv.el.idx, rdd["d"],
                    coll_valid & (cv.el.kind == E), coll)
        err = u_["err"]
        connect(fd.valid, fd.ready, err, fd.payload.sum,
                pack(self.tag_ed, "tag_ed", el=fd.payload.el, d=fd.data))
        rand(err, 4, fd.payload.el, fd.payload.el.idx)
        et = view(self.tag_ed, err.o.payload.tag)
        count(4, fired(err), err.o.payload.overflow, err.o.payload.underflow)

        # Delta tail: e d on its MAC, then the delta cast (xent's output layer: cast e).
        ed, dcast, xent = u_["ed"], u_["delta"], u_.get("xent")
        f_mse = der.o.valid & to_tail & (c.loss != "xent")
        f_xent = der.o.valid & to_tail & (c.loss == "xent")
        m.d.comb += [ed.i.valid.eq(f_mse | err.o.valid),
                     ed.i.payload.a.eq(Mux(f_mse, dt.err, err.o.payload.value)),
                     ed.i.payload.b.eq(Mux(f_mse, der.o.payload.value, et.d)),
                     ed.i.payload.first.eq(1), ed.i.payload.last.eq(1),
                     ed.i.payload.tag.eq(Mux(f_mse, dt.el.as_value(), et.el.as_value())),
                     err.o.ready.eq(ed.i.ready)]
        # The output layer's tail (F) and the error chain (E) share the e·d MAC but never a
        # cycle: a pass starts after the one before has drained. err's ready therefore
        # does not wait on the tail (that put `training` and the tail's valid in front of
        # the error cast's ~500 enables); a collision would count as a chain overrun.
        connect(ed.o.valid, ed.o.ready, dcast, ed.o.payload.sum, ed.o.payload.tag)
        dct = view(self.elem, ed.o.payload.tag)
        rand(dcast, 5, dct, dct.idx)
        delta_units = [dcast]
        der_ready = Mux(to_tail & (c.loss != "xent"), ed.i.ready, 1)
        if xent is not None:
            m.d.comb += [xent.i.valid.eq(f_xent), xent.i.payload.value.eq(dt.err),
                         xent.i.payload.tag.eq(dt.el.as_value())]
            rand(xent, 5, dt.el, dt.el.idx)
            der_ready = Mux(to_tail, Mux(c.loss == "xent", xent.i.ready, ed.i.ready), 1)
            delta_units.append(xent)
        m.d.comb += der.o.ready.eq(der_ready)
        f_end = fired(der)
        for unit in delta_units:
            m.d.comb += unit.o.ready.eq(1)
            count(5, unit.o.valid, unit.o.payload.overflow, unit.o.payload.underflow)
        delta_valid = Cat(*[unit.o.valid for unit in delta_units]).any()
        delta_el = view(self.elem, dcast.o.payload.tag)
        delta_val = dcast.o.payload.value
        if xent is not None:
            delta_el = view(self.elem, Mux(xent.o.valid, xent.o.payload.tag, dcast.o.payload.tag))
            delta_val = Mux(xent.o.valid, xent.o.payload.value, dcast.o.payload.value)

        # G chain: weight or bias fetch, gradient cast, update. The lanes multiply the
        # bias column by 1.0 in the activation format (one_a), so a bias sum arrives with
        # the weight gradient's fraction bits: one gradient cast serves both, bit-exact
        # (docs/engine.md section 4: a sum with zero bits appended casts as before).
        g_valid = coll_valid & (cv.el.kind == G)
        g_b_addr = Signal(32, name="fetch_g_b_addr")
        m.d.comb += g_b_addr.eq(bbase[cv.el.layer - 1] + cv.el.row)
        # The weight's second register is the weight memory's output register, loaded as
        # the fetch advances (outside G passes it loads every cycle: w_q); the bias's is
        # fetch_g_bias. The fetch's data picks between them.
        b_g = Signal(signed(self.bias_width), name="fetch_g_bias", reset_less=True)
        fg = _Fetch(m, "fetch_g", coll_layout, wbase[cv.el.layer - 1] + cv.el.idx,
                    lambda pl: Mux(pl.el.bias, b_g, mw.read_data), g_valid, coll,
                    data_register=True, registered_port=True)
        with m.If(fg.advance):
            m.d.sync += b_g.eq(rdd["b"])
        m.d.comb += mw.out_en.eq(Mux(running & is_g, fg.advance, 1))
        gcast = u_["grad"]
        connect(fg.valid, fg.ready, gcast, fg.payload.sum,
                pack(self.tag_g, "tag_grad", el=fg.payload.el, w=fg.data))
        gel = fg.payload.el
        rand(gcast, 6, gel, Mux(gel.bias, gel.row, gel.idx), bias_code=7)
        gt = view(self.tag_g, gcast.o.payload.tag)
        for code, sel in ((6, ~gt.el.bias), (7, gt.el.bias)):
            count(code, fired(gcast) & sel, gcast.o.payload.overflow,
                  gcast.o.payload.underflow)
        if self.shared_update:
            updates = [(u_["upd"], None)]
        else:
            updates = [(u_["wupd"], False), (u_["bupd"], True)]
        for upd, bias in updates:
            sel = 1 if bias is None else (gt.el.bias if bias else ~gt.el.bias)
            m.d.comb += [upd.i.valid.eq(gcast.o.valid & sel), upd.i.payload.w.eq(gt.w),
                         upd.i.payload.g.eq(gcast.o.payload.value),
                         upd.i.payload.tag.eq(gt.el.as_value()), upd.o.ready.eq(1)]
            if bias is None:
                rand(upd, 8, gt.el, Mux(gt.el.bias, gt.el.row, gt.el.idx), bias_code=9)
            else:
                rand(upd, 9 if bias else 8, gt.el, gt.el.row if bias else gt.el.idx)
            if hasattr(upd, "eta"):
                m.d.comb += upd.eta.eq(eta)
            uel = view(self.elem, upd.o.payload.tag)
            for code, is_bias in ((8, False), (9, True)):
                if bias is None or bias == is_bias:
                    on = upd.o.valid & (uel.bias if is_bias else ~uel.bias)
                    count(code, on, upd.o.payload.overflow, upd.o.payload.stalled)
        if self.shared_update:
            m.d.comb += gcast.o.ready.eq(u_["upd"].i.ready)
            w_upd = b_upd = u_["upd"]
        else:
            w_upd, b_upd = u_["wupd"], u_["bupd"]
            m.d.comb += gcast.o.ready.eq(Mux(gt.el.bias, b_upd.i.ready, w_upd.i.ready))
        w_el, b_el = view(self.elem, w_upd.o.payload.tag), view(self.elem, b_upd.o.payload.tag)
        w_end = w_upd.o.valid & ~w_el.bias
        b_end = b_upd.o.valid & b_el.bias
        # Every chain takes an element each cycle (a fetch stage never refuses its input);
        # were one refused, the element would be lost: the counter chain_overruns says so.
        overrun = Signal(name="chain_overrun")
        m.d.comb += overrun.eq((coll_valid & Mux(cv.el.kind == F, ~ft.i_ready,
                                                 Mux(cv.el.kind == E, ~fd.i_ready,
                                                     ~fg.i_ready)))
                               | (f_mse & err.o.valid))

        # Elements done: every element ends in exactly one of these writes.
        done = (
            (f_end & ~to_tail).as_unsigned()
            + delta_valid.as_unsigned()
            + w_end.as_unsigned() + b_end.as_unsigned())

        # ---------------------------------------------------------- host interface
        # The host reads a weight from w_r, the lanes' fabric copy (loaded every cycle;
        # RDATA comes a cycle after the output register holds the word), not from the
        # block RAM's output register (ulx3s-85f: mem_w's output register through the
        # host's multiplexer into the response register, 10.71 ns).
        h = self._host(m, running=running, start_run=start_run, start_train=start_train,
                       run_done=run_done, cfg_batch=cfg_batch, widths=widths, eta=eta,
                       seed=seed, step=step, timeout=timeout, ctr=ctr, depths=depths,
                       registered={Mem.W: w_r, Mem.B: b_q, Mem.T: t_q, Mem.D: d_q},
                       cur_batch=batch,
                       banks={Mem.A: a_q, Mem.DELTA: dl_q})

        # ---------------------------------------------------------- memory ports
        # Host reads take their address from the host's address register alone (the
        # RUN copy's address multiplexer feeds only the registered write path below).
        hword = h["raddr"] >> lg
        # Host (and RUN-copy) writes reach the write ports a cycle after the command
        # decoder or the copy chose them, each port's write enable already decoded (memory
        # and bank) in a register of its own: no path runs from the host state machine
        # through the decode into every write port in one cycle, and `running` meets
        # each enable in one gate (ulx3s-45f: running through the decode into a delta
        # bank's enable, 5 levels, 85.4 MHz).
        w_addr = Signal(32, name="hw_addr", reset_less=True)
        w_data = Signal(32, name="hw_data", reset_less=True)
        m.d.sync += [w_addr.eq(h["addr"]), w_data.eq(h["wdata"])]
        w_word = w_addr >> lg

        def host_we(mem_id, bank=None):
            """The host's write enable of memory ``mem_id`` (bank ``bank``): the request
            decoded a cycle before, and the engine not running now."""
            decoded = ~running & h["wen"] & (h["mem"] == mem_id)
            if bank is not None and lg:
                decoded &= h["addr"][:lg] == bank
            name = f"hw_en_m{mem_id}" + ("" if bank is None else f"_b{bank}")
            q = Signal(name=name)
            m.d.sync += q.eq(decoded)
            return ~running & q

        if c.dataset_buffer:
            for mem_id, name in ((Mem.DSX, "dsx"), (Mem.DST, "dst")):
                bm = h["ds"][name]
                m.d.comb += [bm.write_en.eq(host_we(mem_id)), bm.write_addr.eq(w_addr),
                             bm.write_data.eq(w_data)]
            port = h["ds"]["order"][1]
            m.d.comb += [port.en.eq(host_we(Mem.ORDER)), port.addr.eq(w_addr),
                         port.data.eq(w_data)]
        f_el = dt.el
        m.d.comb += [
            mw.write_en.eq(Mux(running, w_end, host_we(Mem.W))),
            mw.write_addr.eq(Mux(running, wbase[w_el.layer - 1] + w_el.idx, w_addr)),
            mw.write_data.eq(Mux(running, w_upd.o.payload.value, w_data)),
            wr["b"].en.eq(Mux(running, b_end, host_we(Mem.B))),
            wr["b"].addr.eq(Mux(running, bbase[b_el.layer - 1] + b_el.row, w_addr)),
            wr["b"].data.eq(Mux(running, b_upd.o.payload.value, w_data)),
            wr["t"].en.eq(host_we(Mem.T)), wr["t"].addr.eq(w_addr),
            wr["t"].data.eq(w_data),
            wr["d"].en.eq(Mux(running, f_end & training & ~out_layer, host_we(Mem.D))),
            wr["d"].addr.eq(Mux(running, dbase[f_el.layer - 1] + f_el.idx, w_addr)),
            wr["d"].data.eq(Mux(running, der.o.payload.value, w_data)),
        ]
        for q in range(P):
            m.d.comb += [
                ma[q].write_en.eq(Mux(running, f_end & ((f_el.bank == q) if lg else 1),
                                      host_we(Mem.A, q))),
                ma[q].write_addr.eq(Mux(running, abase[f_el.layer] + f_el.off, w_word)),
                ma[q].write_data.eq(Mux(running, dt.a, w_data)),
                mdl[q].write_en.eq(Mux(running, delta_valid & ((delta_el.bank == q) if lg else 1),
                                       host_we(Mem.DELTA, q))),
                mdl[q].write_addr.eq(Mux(running, dlbase[delta_el.layer - 1] + delta_el.off, w_word)),
                mdl[q].write_data.eq(Mux(running, delta_val, w_data)),
                ma[q].read_addr.eq(Mux(running, bank_addrs[q], hword)),
                mdl[q].read_addr.eq(Mux(running, Mux(is_g, bc_row, lane_k), hword)),
            ]
        m.d.comb += [
            mw.read_addr.eq(Mux(running, Mux(is_g, fg.addr, seq_w_addr), h["raddr"])),
            mw.read_en.eq(Mux(running & is_g, fg.en, 1)),
            rd["b"].addr.eq(Mux(running, Mux(is_g, g_b_addr, b_addr), h["raddr"])),
            rd["b"].en.eq(Mux(running & is_g, fg.en, 1)),
            rd["t"].addr.eq(Mux(running, ft.addr, h["raddr"])),
            rd["t"].en.eq(Mux(running, ft.en, 1)),
            rd["d"].addr.eq(Mux(running, fd.addr, h["raddr"])),
            rd["d"].en.eq(Mux(running, fd.en, 1)),
        ]

        # ---------------------------------------------------------- run control
        def setup(kind_, layer_):
            """Loop bounds and address bases of pass (kind_, layer_), for the next cycle."""
            l = layer_                      # a Python int: every base below is a constant
            stmts = [kind.eq(kind_), is_f.eq(kind_ == F), is_e.eq(kind_ == E),
                     is_g.eq(kind_ == G), layer.eq(l), u.eq(0), v.eq(0), k.eq(0), idx_u.eq(0),
                     off_u.eq(0), b_addr.eq(c.bias_bases[0][l - 1])]
            if lg:
                stmts.append(wrap.eq(0))                   # k = 0
            if kind_ == F:
                row = c.activation_bases[0][l - 1]
                ops, frames, outer = n_arr[l - 1], n_arr[l], groups
                stmts += [n_in.eq(n_arr[l - 1]), n_out.eq(n_arr[l]),
                          w_run.eq(wbase[l - 1]), w_addr_f.eq(c.weight_bases[0][l - 1])]
            elif kind_ == E:
                row = c.delta_bases[0][l]
                ops, frames, outer = n_arr[l + 1], n_arr[l], groups
                stmts += [n_out.eq(n_arr[l]), n_next.eq(n_arr[l + 1]), w_run.eq(wbase[l])]
            else:
                row = c.activation_bases[0][l - 1]
                ops, frames, outer = batch, (n_arr[l - 1] + P) >> lg, n_arr[l]
                stmts += [n_in.eq(n_arr[l - 1]), n_out.eq(n_arr[l]), bc_row.eq(dlbase[l - 1])]
            stmts += [K.eq(ops - 1), V.eq(frames - 1), U.eq(outer - 1),
                      single_op.eq(ops == 1), single_v.eq(frames == 1),
                      last_op.eq(ops == 1), last_v.eq(frames == 1), last_u.eq(outer == 1)]
            stmts += [lane_row.eq(row), lane_k.eq(row)]
            stmts += [g_addr[q].eq(row + q) for q in range(P)]
            return stmts

        # A row's last op (k back to 0): the next w_run and lane_row, which the address
        # registers take too (k = 0). Only these branches change w_run, lane_row or v
        # while a pass issues; setup() sets them all at a pass's start.
        w_run_n = Signal(ab, name="w_run_next")
        lane_row_n = Signal(ab, name="lane_row_next")
        m.d.comb += [w_run_n.eq(w_run), lane_row_n.eq(lane_row)]
        abase_q = [const_array([a + q for a in c.activation_bases[0]]) for q in range(P)]
        abase_pq = [const_array([a + P + q for a in c.activation_bases[0]]) for q in range(P)]
        bbase_1 = const_array([b + 1 for b in c.bias_bases[0]])
        with m.If(fire):
            with m.If(last_op):
                m.d.sync += [k.eq(0), w_run.eq(w_run_n), lane_row.eq(lane_row_n),
                             w_addr_f.eq(w_run_n), lane_k.eq(lane_row_n),
                             last_op.eq(single_op)]
                if lg:
                    m.d.sync += wrap.eq(0)                 # k = 0
                with m.If(last_v):
                    m.d.sync += [v.eq(0), u.eq(u + 1), b_addr.eq(bbase[layer - 1]),
                                 last_v.eq(single_v), last_u.eq(u + 1 == U)]
                    with m.Switch(kind):
                        with m.Case(F):
                            m.d.comb += [w_run_n.eq(wbase[layer - 1]),
                                         lane_row_n.eq(lane_row + n_in)]
                            m.d.sync += [idx_u.eq(idx_u + (n_out << lg)), off_u.eq(off_u + n_out)]
                        with m.Case(E):
                            m.d.comb += [w_run_n.eq(wbase[layer]), lane_row_n.eq(lane_row + n_next)]
                            m.d.sync += [idx_u.eq(idx_u + (n_out << lg)), off_u.eq(off_u + n_out)]
                        with m.Case(G):
                            m.d.comb += lane_row_n.eq(abase[layer - 1])
                            m.d.sync += [bc_row.eq(dlbase[layer - 1] + u + 1),
                                         idx_u.eq(idx_u + n_in)]
                            m.d.sync += [g_addr[q].eq(abase_q[q][layer - 1]) for q in range(P)]
                with m.Else():
                    m.d.sync += [v.eq(v + 1), b_addr.eq(bbase_1[layer - 1] + v),
                                 last_v.eq(v + 1 == V)]
                    with m.Switch(kind):
                        with m.Case(F):
                            m.d.comb += w_run_n.eq(w_run + n_in)
                        with m.Case(E):
                            m.d.comb += w_run_n.eq(wbase[layer] + v + 1)
                        with m.Case(G):
                            m.d.comb += lane_row_n.eq(abase[layer - 1] + col0 + P)
                            m.d.sync += bc_row.eq(dlbase[layer - 1] + u)
                            m.d.sync += [g_addr[q].eq(abase_pq[q][layer - 1] + col0)
                                         for q in range(P)]
            with m.Else():
                m.d.sync += [k.eq(k + 1), w_addr_f.eq(w_addr_f + 1), lane_k.eq(lane_k + 1),
                             last_op.eq(k + 1 == K)]
                if lg:
                    m.d.sync += wrap.eq(kmod == P - 2)     # (k + 1) mod P == P - 1
                with m.If(is_e):
                    m.d.sync += w_run.eq(w_run + n_out)
                with m.If(is_g & wrap):
                    m.d.sync += [lane_row.eq(lane_row + n_in), bc_row.eq(bc_row + n_out)]
                # g_addr[q] = lane_row + ((q - k) mod P): one more k rotates the banks'
                # addresses by one; when k mod P wraps, lane_row moves on by n_in.
                step_in = Mux(is_g & wrap, n_in, 0)
                m.d.sync += [g_addr[q].eq(g_addr[(q - 1) % P] + step_in) for q in range(P)]
        # Elements issued, counted a cycle late (the drain also waits for s1..s3).
        issued = Signal(_bits(P), name="issued")
        m.d.sync += issued.eq(Mux(fire & last_op, _popcount(mask, P), 0))
        inflight_n = Value.cast(inflight + issued - done)[:len(inflight)]
        pending_n = Value.cast(pending + (fire & last_op) - release)[:len(pending)]
        m.d.sync += [inflight.eq(inflight_n), pending.eq(pending_n),
                     drained.eq((inflight_n == 0) & (pending_n == 0) & pipe_idle_n),
                     pending_two.eq(pending_n == 2)]

        # run_done: high in the DONE state, from a register set on the way in (the host's
        # state machine waits on it: ulx3s-85f, the run state's decode into the host
        # state's enable, 6 levels, 9.99 ns).
        m.d.sync += run_done.eq(0)
        with m.FSM(name="run"):
            # The first pass's setup is loaded in every cycle of IDLE and KEYS, whatever
            # happens: a decode of the state alone enables it, not start_run, start_train
            # or the key generator's state (ulx3s-45f: keygen state -> start_run ->
            # setup -> seq_k, 10.43 ns). Nothing reads those registers outside a pass.
            with m.State("IDLE"):
                m.d.sync += setup(F, 1)
                with m.If(start_run):
                    m.d.sync += [running.eq(1), training.eq(start_train)]
                    if c.stochastic:
                        with m.If(start_train):
                            m.d.comb += kg_start.eq(1)
                            m.next = "KEYS"
                        with m.Else():
                            self._go_issue(m)
                    else:
                        self._go_issue(m)
            with m.State("KEYS"):
                m.d.sync += setup(F, 1)
                with m.If(~kg_busy):
                    self._go_issue(m)
            with m.State("ISSUE"):
                m.d.comb += in_pass.eq(1)
                with m.If(fire & last_op & last_frame):
                    m.d.sync += issuing.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += in_pass.eq(1)
                with m.If(drained):
                    last_pass = Signal(name="last_pass")
                    with m.Switch(kind):
                        with m.Case(F):
                            with m.If(layer != L):
                                self._next_pass(m, setup, F, L)
                            with m.Elif(training):
                                m.d.sync += setup(E, L - 1) if L > 1 else setup(G, L)
                                self._go_issue(m)
                            with m.Else():
                                m.d.comb += last_pass.eq(1)
                        with m.Case(E):
                            with m.If(layer != 1):
                                self._next_pass(m, setup, E, L)
                            with m.Else():
                                m.d.sync += setup(G, L)
                                self._go_issue(m)
                        with m.Case(G):
                            with m.If(layer != 1):
                                self._next_pass(m, setup, G, L)
                            with m.Else():
                                m.d.comb += last_pass.eq(1)
                    with m.If(last_pass):
                        m.d.sync += run_done.eq(1)
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += running.eq(0)
                with m.If(training):
                    m.d.sync += step.eq(step + 1)
                m.next = "IDLE"

        # ---------------------------------------------------------- counters
        inc = {name: Const(0, 1) for name in c.counter_names}
        inc["cycles"] = Const(1, 1)
        inc["cycles_forward"] = in_pass & is_f & training
        inc["cycles_backward"] = in_pass & is_e & training
        inc["cycles_gradient"] = in_pass & is_g & training
        inc["cycles_control"] = running & ~in_pass & training
        inc["cycles_eval"] = running & ~training
        inc["cycles_host"] = h["busy"] & ~running
        busy_lanes = Signal(_bits(P), name="busy_lanes")
        m.d.sync += busy_lanes.eq(Mux(fire, _popcount(mask & ~bias_lane, P), 0))
        inc["lane_busy"] = Mux(training, busy_lanes, 0)
        inc["lane_busy_eval"] = Mux(training, 0, busy_lanes)
        inc["steps"] = run_done & training
        inc["samples_trained"] = Mux(run_done & training, batch, 0)
        inc["samples_evaluated"] = Mux(run_done & ~training, batch, 0)
        inc["chain_overruns"] = overrun
        for code, site in EVENT_CODES.items() if c.event_counters else ():
            lst = events[code]
            inc[f"{site}.overflow"] = sum((f & o).as_unsigned() for f, o, _ in lst)
            inc[f"{site}.underflow"] = sum((f & un).as_unsigned() for f, _, un in lst)
            inc[f"{site}.total"] = sum(f.as_unsigned() for f, _, _ in lst)
        # The counters are words of one memory (CounterBank): each keeps only a pending
        # sum of a few bits in flip-flops, and a sweep adds the sums into the words, one
        # counter a cycle. The bank registers the increments (they come from the ends of
        # the units' pipelines) and CLEAR (its decoder drives one register, not the
        # pending sums' resets). CLEAR zeroes every count at once, dropping the
        # increments of its own cycle; RREG of a counter waits for the sweep (at most
        # len(counter_names) + 3 cycles). A count lands a few cycles after its event, long
        # before the host can read it: a status word and a command come between.
        bank = CounterBank(counters={name: len(Value.cast(inc[name])) for name in c.counter_names},
                           width=c.counter_bits, poison_collisions=self.poison_collisions)
        m.submodules.counters = bank
        m.d.comb += [bank.inc[name.replace(".", "_")].eq(inc[name]) for name in c.counter_names]
        m.d.comb += bank.clear.eq(h["clear"])
        wiring.connect(m, ctr, bank.read)
        return m

    # ------------------------------------------------------------------ pass order
    def _go_issue(self, m):
        """Enter ISSUE: every way in sets the ``seq_issuing`` register with the state."""
        m.d.sync += self._issuing.eq(1)
        m.next = "ISSUE"

    def _next_pass(self, m, setup, kind_, L):
        """Forward passes go up a layer; backward and gradient passes go down."""
        with m.Switch(self._layer):
            for l in range(1, L + 1):
                nxt = l + 1 if kind_ == F else l - 1
                if 1 <= nxt <= L and not (kind_ == E and nxt > L - 1):
                    with m.Case(l):
                        m.d.sync += setup(kind_, nxt)
        self._go_issue(m)

    # ------------------------------------------------------------------ keys
    def _keygen(self, m, seed, step, start, busy) -> dict:
        """The step's keys, ``key[l][c] = H(H(H(seed) ^ n) ^ ((l << 8) | c))`` (section 9),
        on one pipeline of the units' own hash rounds."""
        L = self.config.depth
        sites = [(l, code) for l in range(1, L + 1) for code in KEY_CODES]
        keys = {code: [Signal(32, name=f"key_{l}_{code}", reset_less=True)
                       for l in range(1, L + 1)] for code in KEY_CODES}
        flat = [keys[code][l - 1] for l, code in sites]
        db = _bits(len(sites) + 2)
        feed_valid, feed_word, feed_dest = Signal(name="kg_fv"), Signal(32, name="kg_fw"), \
            Signal(db, name="kg_fd")
        # The feed is registered before the hash stages: the FSM's choice of word does not
        # share a cycle with the first rounds.
        word = Signal(32, name="kg_in_w", reset_less=True)
        valid = Signal(name="kg_in_v")
        dest = Signal(db, name="kg_in_d", reset_less=True)
        m.d.sync += [word.eq(feed_word), valid.eq(feed_valid), dest.eq(feed_dest)]
        for s, rounds in enumerate(HASH_STAGES):
            nw, nv, nd = (Signal(32, name=f"kg_w{s}", reset_less=True), Signal(name=f"kg_v{s}"),
                          Signal(db, name=f"kg_d{s}", reset_less=True))
            m.d.sync += [nw.eq(hash_rounds(word, rounds)), nv.eq(valid), nd.eq(dest)]
            word, valid, dest = nw, nv, nd
        base = Signal(32, name="kg_base", reset_less=True)
        j = Signal(db, name="kg_j")
        site_words = Array([Const((l << 8) | code, 32) for l, code in sites])
        with m.If(valid & (dest >= 2)):
            with m.Switch(dest):
                for n, sig in enumerate(flat):
                    with m.Case(n + 2):
                        m.d.sync += sig.eq(word)
        with m.FSM(name="keygen"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.comb += [feed_valid.eq(1), feed_word.eq(seed), feed_dest.eq(0)]
                    m.next = "SEED"
            with m.State("SEED"):
                m.d.comb += busy.eq(1)
                with m.If(valid & (dest == 0)):
                    m.d.comb += [feed_valid.eq(1), feed_word.eq(word ^ step), feed_dest.eq(1)]
                    m.next = "BASE"
            with m.State("BASE"):
                m.d.comb += busy.eq(1)
                with m.If(valid & (dest == 1)):
                    m.d.sync += [base.eq(word), j.eq(0)]
                    m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += [busy.eq(1), feed_valid.eq(1), feed_word.eq(base ^ site_words[j]),
                             feed_dest.eq(j + 2)]
                m.d.sync += j.eq(j + 1)
                with m.If(j == len(sites) - 1):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += busy.eq(1)
                with m.If(valid & (dest == len(sites) + 1)):
                    m.next = "IDLE"
        return keys

    # ------------------------------------------------------------------ host interface
    def _host(self, m, *, running, start_run, start_train, run_done, cfg_batch, widths, eta,
              seed, step, timeout, ctr, depths, registered, banks, cur_batch) -> dict:
        """The command decoder (``docs/engine.md``, host interface)."""
        c = self.config
        P, L, lg = c.lanes, c.depth, c.log2_lanes
        cmd, rsp = self.cmd, self.rsp
        op = Signal(8, name="h_op")
        arg = Signal(8, name="h_arg")
        addr = Signal(33, name="h_addr")
        count = Signal(33, name="h_count")
        # Registered tests of count, so no 33-bit compare sits before the answer registers.
        count_zero, count_one = Signal(name="h_count_zero"), Signal(name="h_count_one")
        wdata = Signal(32, name="h_wdata")
        wen = Signal(name="h_wen")
        bad = Signal(name="h_bad")
        wait = Signal(32, name="h_wait")
        rsp_data = Signal(32, name="h_rsp", reset_less=True)
        clear = Signal(name="h_clear")
        busy = Signal(name="h_busy")
        idx = Signal(8, name="h_idx")
        word = cmd.payload
        got = cmd.valid & cmd.ready
        m.d.comb += rsp.payload.eq(rsp_data)
        sent = rsp.valid & rsp.ready

        regs = {REG["batch"]: cfg_batch, REG["eta"]: eta, REG["seed"]: seed,
                REG["step"]: step, REG["timeout"]: timeout}
        for l, w in enumerate(widths):
            regs[REG["width0"] + l] = w
        # The batch and the widths saturate (see the host registers); the others keep
        # their low bits.
        saturating = c.saturating_registers
        S = c.dataset_buffer
        ds = self._dataset_memories(m, regs, depths, registered) if S else None
        id_words = [ID_MAGIC, c.gen_hash,
                    P | (L << 8) | (c.counter_bits << 16) | (int(c.stochastic) << 24)
                    | (int(c.loss == "xent") << 25) | (int(not c.event_counters) << 26),
                    c.batch, *c.sizes]

        def go_status(e, opv=op):
            e = Const(e, 8) if isinstance(e, int) else e
            m.d.sync += rsp_data.eq(Const(status_word(0, 0), 32) | opv | (e << 16))
            m.next = "STATUS"

        # Registered (a cycle late, cleared by a word), so the 32-bit compare is not in
        # the FSM's next-state logic.
        late = Signal(name="h_timed_out")
        m.d.sync += late.eq((timeout != 0) & (wait >= timeout) & ~got)

        def timed_out():
            return late

        # Both checks are registered: the registers they read settle a cycle before use.
        shape = (cfg_batch >= 1) & (cfg_batch <= c.batch)
        for l, (w, n) in enumerate(zip(widths, c.sizes)):
            shape = shape & (w >= 1) & (w <= n)
        shape_ok = Signal(name="h_shape_ok")
        m.d.sync += shape_ok.eq(shape)
        end = Signal(34, name="h_end")          # addr + count, then its compare: two stages
        m.d.sync += end.eq(addr + count)
        in_range = Signal(name="h_in_range")
        with m.Switch(arg):
            for mem_id, depth in depths.items():
                with m.Case(mem_id):
                    m.d.comb += in_range.eq(end <= depth)
        range_ok = Signal(name="h_range_ok")
        m.d.sync += range_ok.eq(in_range)
        # Read data of the memory and bank addressed: the registered read data (the word
        # two cycles after its address), so no block RAM output drives logic directly.
        hbank = Signal(max(1, lg), name="h_bank")
        m.d.sync += hbank.eq(addr[:lg] if lg else 0)
        hbank2 = Signal(max(1, lg), name="h_bank2")
        m.d.sync += hbank2.eq(hbank)
        # The memory is picked by a one-hot register per memory, decoded from the command's
        # argument the cycle after it arrives (a read's data comes many cycles later): an
        # AND-OR of registers, with no decode of the argument in front of the response
        # register (ulx3s-45f: h_arg -> the memory multiplexer -> h_rsp, 5 levels, 10.00 ns).
        words = dict(registered)
        for mem_id, bank_regs in banks.items():
            # The bank's word, registered once more (the RSEL state waits for it).
            picked = Signal(bank_regs[0].shape(), name=f"h_bank_word{mem_id}", reset_less=True)
            m.d.sync += picked.eq(Array(bank_regs)[hbank2] if lg else bank_regs[0])
            words[mem_id] = picked
        rdata = Signal(32, name="h_rdata")      # each word sign- or zero-extended
        picked_words = Const(0, 1)
        for mem_id, w in words.items():
            sel = Signal(name=f"h_rsel_m{mem_id}")
            m.d.sync += sel.eq(arg == mem_id)
            picked_words = picked_words | Mux(sel, w, 0)
        m.d.comb += rdata.eq(picked_words)

        # RREG reads through two registered levels of multiplexers: eight registers a
        # group by the address's low bits, then the group by its high bits.
        readable = dict(regs)
        first_ctr = REG["counters"]
        is_ctr = Signal(name="h_is_counter")
        m.d.sync += [is_ctr.eq((arg >= first_ctr) & (arg < first_ctr + len(c.counter_names))),
                     ctr.index.eq(arg - first_ctr)]
        groups = {}
        for r, sig in readable.items():
            groups.setdefault(r >> 3, {})[r & 7] = sig
        group_regs, group_ok = {}, {}
        for g_, members in groups.items():
            gr = Signal(32, name=f"h_rgroup{g_}", reset_less=True)
            gk = Signal(name=f"h_rgroup{g_}_ok", reset_less=True)
            with m.Switch(arg[:3]):
                for low, sig in members.items():
                    with m.Case(low):
                        m.d.sync += [gr.eq(sig), gk.eq(1)]
                with m.Default():
                    m.d.sync += [gr.eq(0), gk.eq(0)]
            group_regs[g_], group_ok[g_] = gr, gk
        group_value = Signal(32, name="h_rvalue")
        group_known = Signal(name="h_rknown")
        with m.Switch(arg[3:]):
            for g_ in groups:
                with m.Case(g_):
                    m.d.comb += [group_value.eq(group_regs[g_]), group_known.eq(group_ok[g_])]

        m.d.sync += start_run.eq(0)             # a one-cycle pulse (CHECK sets it)
        with m.FSM(name="host"):
            with m.State("IDLE"):
                m.d.comb += cmd.ready.eq(1)
                m.d.sync += wait.eq(0)
                with m.If(got):
                    o, a = word[:8], word[8:16]
                    m.d.sync += [op.eq(o), arg.eq(a), idx.eq(0), bad.eq(0)]
                    # Only the next state depends on the word: the commands answered at
                    # once (NOP, CLEAR, ID, an unknown opcode) answer from REPLY, a
                    # cycle later, so the opcode's decode does not feed the response
                    # register (ulx3s-45f: the word -> the decode -> h_rsp, 10.01 ns).
                    with m.Switch(o):
                        with m.Case(Op.WREG):
                            m.next = "WREG"
                        with m.Case(Op.RREG):
                            m.next = "RREG"
                        with m.Case(Op.WMEM, Op.RMEM):
                            m.next = "ADDR"
                        with m.Case(Op.TRAIN, Op.EVAL):
                            m.next = "CHECK"
                        if S:
                            with m.Case(Op.RUN):
                                m.next = "DSCHECK"
                        with m.Default():
                            m.next = "REPLY"
            with m.State("REPLY"):
                m.d.comb += busy.eq(1)
                with m.Switch(op):
                    with m.Case(Op.NOP):
                        go_status(Err.OK)
                    with m.Case(Op.CLEAR):
                        m.d.comb += clear.eq(1)
                        go_status(Err.OK)
                    with m.Case(Op.ID):
                        m.d.sync += rsp_data.eq(id_words[0])
                        m.next = "ID"
                    with m.Default():
                        m.d.sync += rsp_data.eq(status_word(0, Err.OPCODE) | op)
                        m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [rsp.valid.eq(1), busy.eq(1)]
                with m.If(sent):
                    m.next = "IDLE"
            with m.State("ID"):
                m.d.comb += [rsp.valid.eq(1), busy.eq(1)]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.Switch(idx):
                        for n in range(len(id_words) - 1):
                            with m.Case(n):
                                m.d.sync += rsp_data.eq(id_words[n + 1])
                        with m.Default():
                            go_status(Err.OK)
            with m.State("WREG"):
                m.d.comb += [cmd.ready.eq(1), busy.eq(1)]
                m.d.sync += wait.eq(wait + 1)
                with m.If(got):
                    with m.Switch(arg):
                        for r, sig in regs.items():
                            with m.Case(r):
                                m.d.sync += sig.eq(_saturated(word, len(sig))
                                                   if r in saturating else word)
                                go_status(Err.OK)
                        with m.Default():
                            go_status(Err.REGISTER)
                with m.Elif(timed_out()):
                    go_status(Err.TIMEOUT)
            with m.State("RREG"):
                m.d.comb += busy.eq(1)      # first level of the register multiplexer
                m.next = "RREG2"
            with m.State("RREG2"):
                m.d.comb += busy.eq(1)
                m.d.sync += [rsp_data.eq(group_value), bad.eq(~group_known)]
                with m.If(is_ctr):
                    m.next = "RCTR"
                with m.Else():
                    m.next = "RREG_SEND"
            with m.State("RCTR"):
                m.d.comb += [busy.eq(1), ctr.request.eq(1)]
                with m.If(ctr.valid):
                    m.d.sync += [rsp_data.eq(ctr.data), bad.eq(0)]
                    m.next = "RREG_SEND"
            with m.State("RREG_SEND"):
                m.d.comb += [rsp.valid.eq(1), busy.eq(1)]
                with m.If(sent):
                    go_status(Mux(bad, Err.REGISTER, Err.OK))
            with m.State("ADDR"):
                m.d.comb += [cmd.ready.eq(1), busy.eq(1)]
                m.d.sync += wait.eq(wait + 1)
                with m.If(got):
                    m.d.sync += [addr.eq(word), wait.eq(0)]
                    m.next = "COUNT"
                with m.Elif(timed_out()):
                    go_status(Err.TIMEOUT)
            with m.State("COUNT"):
                m.d.comb += [cmd.ready.eq(1), busy.eq(1)]
                m.d.sync += wait.eq(wait + 1)
                with m.If(got):
                    m.d.sync += [count.eq(word), wait.eq(0), count_zero.eq(word == 0),
                                 count_one.eq(word == 1)]
                    m.next = "RANGE0"
                with m.Elif(timed_out()):
                    go_status(Err.TIMEOUT)
            with m.State("RANGE0"):
                m.d.comb += busy.eq(1)      # end = addr + count settles
                m.next = "RANGE1"
            with m.State("RANGE1"):
                m.d.comb += busy.eq(1)      # range_ok settles
                m.next = "RANGE"
            with m.State("RANGE"):
                m.d.comb += busy.eq(1)
                m.d.sync += bad.eq(~range_ok)
                with m.If(count_zero):
                    go_status(Mux(range_ok, Err.OK, Err.MEMORY))
                with m.Elif(op == Op.WMEM):
                    m.next = "WDATA"
                with m.Else():
                    m.next = "RISSUE"
            with m.State("WDATA"):
                m.d.comb += [cmd.ready.eq(1), busy.eq(1)]
                m.d.sync += wait.eq(wait + 1)
                with m.If(got):
                    m.d.comb += [wen.eq(~bad), wdata.eq(word)]
                    m.d.sync += [addr.eq(addr + 1), count.eq(count - 1), wait.eq(0),
                                 count_one.eq(count == 2)]
                    with m.If(count_one):
                        go_status(Mux(bad, Err.MEMORY, Err.OK))
                with m.Elif(timed_out()):
                    go_status(Err.TIMEOUT)
            with m.State("RISSUE"):
                m.d.comb += busy.eq(1)      # the address is on the read ports this cycle
                m.next = "RWAIT"
            with m.State("RWAIT"):
                m.d.comb += busy.eq(1)      # the word is on the ports, registered at the edge
                m.next = "RSEL"
            with m.State("RSEL"):
                m.d.comb += busy.eq(1)      # a banked memory's word is picked and registered
                # The dataset buffer's deeper memories take longer (their latency - 3).
                extra = ds["latency"] - 3 if ds else 0
                if extra > 0:
                    rsel = Signal(range(extra + 1), name="h_rsel")
                    m.d.sync += rsel.eq(rsel + 1)
                    with m.If(rsel == extra):
                        m.d.sync += rsel.eq(0)
                        m.next = "RDATA"
                else:
                    m.next = "RDATA"
            with m.State("RDATA"):
                m.d.comb += busy.eq(1)
                m.d.sync += rsp_data.eq(Mux(bad, 0, rdata))
                m.next = "RSEND"
            with m.State("RSEND"):
                m.d.comb += [rsp.valid.eq(1), busy.eq(1)]
                with m.If(sent):
                    m.d.sync += [addr.eq(addr + 1), count.eq(count - 1),
                                 count_one.eq(count == 2)]
                    with m.If(count_one):
                        go_status(Mux(bad, Err.MEMORY, Err.OK))
                    with m.Else():
                        m.next = "RISSUE"
            with m.State("CHECK"):
                m.d.comb += busy.eq(1)
                with m.If(shape_ok):
                    # A registered start: the run FSM and the key generator act next cycle.
                    m.d.sync += [start_run.eq(1), start_train.eq(op == Op.TRAIN)]
                    if S:
                        m.d.sync += cur_batch.eq(cfg_batch)
                    m.next = "RUN"
                with m.Else():
                    go_status(Err.CONFIG)
            with m.State("RUN"):
                with m.If(run_done):
                    go_status(Err.OK)
            if S:
                g = self._gather_states(m, ds, host_addr=addr[:32], shape_ok=shape_ok,
                                        cfg_batch=cfg_batch,
                                        cur_batch=cur_batch, widths=widths, start_run=start_run,
                                        start_train=start_train, run_done=run_done,
                                        go_status=go_status, busy=busy)
                return {"ds": ds, "mem": Mux(g["active"], g["mem"], arg),
                        "addr": Mux(g["active"], g["addr"], addr[:32]), "raddr": addr[:32],
                        "wdata": Mux(g["active"], g["wdata"], wdata),
                        "wen": Mux(g["active"], g["wen"], wen), "clear": clear, "busy": busy}
        return {"mem": arg, "addr": addr[:32], "raddr": addr[:32], "wdata": wdata, "wen": wen,
                "clear": clear, "busy": busy}

    # ------------------------------------------------------------------ dataset buffer
    def _dataset_memories(self, m, regs, depths, registered) -> dict:
        """The on-chip samples, targets and order (``dataset_buffer = S > 0``), their host
        registers, and their ports (host WMEM/RMEM and the gather)."""
        c = self.config
        S, n0, nL = c.dataset_buffer, c.sizes[0], c.sizes[-1]
        ds = {"order_len": Signal(32, name="cfg_order_len"),
              "position": Signal(32, name="cfg_position"),
              "run_steps": Signal(32, name="cfg_run_steps")}
        for name in ("order_len", "position", "run_steps"):
            regs[REG[name]] = ds[name]
        # Samples and targets: banked, read data registered at every level, both read
        # with the same latency (the copy reads one or the other each cycle).
        banking = {"bank_depth": DS_BANK_DEPTH, "mux_ways": DS_MUX_WAYS,
                   "bank_registers": DS_BANK_REGISTERS, "read_registers": DS_READ_REGISTERS}
        latency = max(BankedMemory.latency_of(S * n0, **banking),
                      BankedMemory.latency_of(S * nL, **banking))
        ds["latency"] = latency
        for mem_id, name, width, depth in ((Mem.DSX, "dsx", self.act_width, S * n0),
                                           (Mem.DST, "dst", self.t_width, S * nL)):
            bm = BankedMemory(shape=signed(width), depth=depth, latency=latency,
                              write_registers=DS_WRITE_REGISTERS,
                              poison_collisions=self.poison_collisions, **banking)
            m.submodules[f"mem_{name}"] = bm
            ds[name] = bm
            depths[mem_id] = depth
            registered[mem_id] = ds[f"{name}_q"] = bm.read_data
        # The order: one word a sample, read straight from its port.
        mm = memory.Memory(shape=_bits(S), depth=max(2, S), init=[], attrs=NO_RW_CHECK)
        m.submodules["mem_order"] = mm
        ds["order"] = (RegisteredReadPort(m, mm, "mem_order"), mm.write_port())
        ds["order_data"] = read_data(m, *ds["order"], "mem_order", self.poison_collisions)
        depths[Mem.ORDER] = S
        q = Signal(mm.shape, name="order_q", reset_less=True)
        m.d.sync += q.eq(ds["order_data"])
        registered[Mem.ORDER] = ds["order_q"] = q
        return ds

    def _gather_states(self, m, ds, *, host_addr, shape_ok, cfg_batch, cur_batch, widths,
                       start_run,
                       start_train, run_done, go_status, busy) -> dict:
        """RUN: for each of ``run_steps`` steps, copy the next batch of the order from the
        dataset buffer into the input region and the targets (through the host's write
        path), then train one step; the position wraps at the end of the order."""
        c = self.config
        P, lg, n0max, nLmax = c.lanes, c.log2_lanes, c.sizes[0], c.sizes[-1]
        order_len, position, run_steps = ds["order_len"], ds["position"], ds["run_steps"]
        (o_rd, _), x_mem, t_mem = ds["order"], ds["dsx"], ds["dst"]
        n0, nL = widths[0], widths[-1]
        ok = Signal(name="ds_ok")
        m.d.sync += ok.eq((order_len >= 1) & (order_len <= c.dataset_buffer)
                          & (position < order_len) & (run_steps >= 1))
        steps_left = Signal(32, name="ds_steps_left")
        g_b = Signal(_bits(c.batch), name="g_b")
        g_j = Signal(_bits(n0max + nLmax), name="g_j")
        g_row = Signal(_bits(c.activation_bases[1]), name="g_row")   # (b div P) * n_0
        t_row = Signal(_bits(c.target_depth), name="t_row")           # b * n_L
        sample = Signal(_bits(c.dataset_buffer), name="g_sample")
        # The sample's rows in DSX and DST, registered (no multiplier before the read).
        x_base = Signal(_bits(c.dataset_buffer * n0max), name="g_xbase")
        t_base = Signal(_bits(c.dataset_buffer * nLmax), name="g_tbase")
        # One copy a cycle, three stages: the read (address from registers and a counter),
        # the read data registered with the write's address computed, the write.
        pv, px, pj, pb = (Signal(name="gp_valid"), Signal(name="gp_x"),
                          Signal(_bits(n0max + nLmax), name="gp_j"), Signal(_bits(c.batch), name="gp_b"))
        prow, ptrow = Signal(len(g_row), name="gp_row"), Signal(len(t_row), name="gp_trow")
        wv, wx = Signal(name="gw_valid"), Signal(name="gw_x")
        waddr = Signal(32, name="gw_addr", reset_less=True)
        active = Signal(name="g_active")
        gmem, gaddr = Signal(8, name="g_mem"), Signal(32, name="g_addr")
        gwdata, gwen = Signal(32, name="g_wdata"), Signal(name="g_wen")
        is_x = g_j < n0
        m.d.comb += [o_rd.addr.eq(Mux(active, position + g_b, host_addr)),
                     x_mem.read_addr.eq(Mux(active, x_base + g_j, host_addr)),
                     t_mem.read_addr.eq(Mux(active, t_base + (g_j - n0), host_addr))]
        m.d.sync += [pv.eq(0), wv.eq(pv), wx.eq(px),
                     waddr.eq(Mux(px, ((c.activation_bases[0][0] + prow + pj) << lg)
                                  | ((pb + pj) & (P - 1) if lg else 0),
                                  ptrow + (pj - n0)))]
        # The write waits for the read data: the memories' latency less the two stages
        # above (read, then the address computed).
        for k in range(ds["latency"] - 2):
            dv, dx = Signal(name=f"gw_valid{k}"), Signal(name=f"gw_x{k}")
            da = Signal(32, name=f"gw_addr{k}", reset_less=True)
            m.d.sync += [dv.eq(wv), dx.eq(wx), da.eq(waddr)]
            wv, wx, waddr = dv, dx, da
        drain = Signal(range(ds["latency"] + 1), name="g_drain")
        # The copy loops' last values, registered when a batch's copy starts, so the loop
        # ends are compares of two registers (no adder after the width registers).
        j_end = Signal(len(g_j), name="g_j_end")          # n_0 + n_L - 1
        b_end = Signal(len(g_b), name="g_b_end")          # cur_batch - 1
        m.d.comb += [gwen.eq(wv), gmem.eq(Mux(wx, Mem.A, Mem.T)),
                     gwdata.eq(Mux(wx, ds["dsx_q"], ds["dst_q"])), gaddr.eq(waddr)]
        # The position's arithmetic, in registers and in the buffer's width (ds_ok holds
        # position < order_len <= S): rem = order_len - position, set before each batch;
        # the batch wraps the order when rem <= batch (then position + cur_batch ==
        # order_len), and the next position is added while the step trains. (It was one
        # 32-bit add and compare from position to itself at run_done: Colorlight, seed 3,
        # 97.67 MHz.)
        pb_w = _bits(c.dataset_buffer)
        order_n, position_n = order_len[:pb_w], position[:pb_w]
        rem = Signal(pb_w, name="g_rem")
        wraps = Signal(name="g_wraps")
        pos_next = Signal(pb_w, name="g_pos_next")
        with m.State("DSCHECK"):
            m.d.comb += busy.eq(1)
            m.d.sync += rem.eq(order_n - position_n)
            with m.If(shape_ok & ok):
                m.d.sync += steps_left.eq(run_steps)
                m.next = "GSTART"
            with m.Else():
                go_status(Err.CONFIG)
        with m.State("GSTART"):
            m.d.comb += [busy.eq(1), active.eq(1)]
            m.d.sync += [cur_batch.eq(Mux(rem < cfg_batch, rem, cfg_batch)), g_b.eq(0),
                         wraps.eq(rem <= cfg_batch),
                         g_row.eq(0), t_row.eq(0), j_end.eq(n0 + nL - 1)]
            m.next = "GORD"
        with m.State("GORD"):                      # the order entry is read
            m.d.comb += [busy.eq(1), active.eq(1)]
            m.d.sync += [b_end.eq(cur_batch - 1), pos_next.eq(position_n + cur_batch)]
            m.next = "GORDW"
        with m.State("GORDW"):
            m.d.comb += [busy.eq(1), active.eq(1)]
            m.d.sync += [sample.eq(ds["order_data"]), g_j.eq(0)]
            m.next = "GBASE"
        with m.State("GBASE"):                     # the sample's rows
            m.d.comb += [busy.eq(1), active.eq(1)]
            m.d.sync += [x_base.eq(sample * n0max), t_base.eq(sample * nLmax)]
            m.next = "GCOPY"
        with m.State("GCOPY"):
            m.d.comb += [busy.eq(1), active.eq(1)]
            m.d.sync += [pv.eq(1), px.eq(is_x), pj.eq(g_j), pb.eq(g_b), prow.eq(g_row),
                         ptrow.eq(t_row), g_j.eq(g_j + 1)]
            with m.If(g_j == j_end):
                m.d.sync += [g_b.eq(g_b + 1), t_row.eq(t_row + nL)]
                if lg:
                    with m.If((g_b & (P - 1)) == P - 1):
                        m.d.sync += g_row.eq(g_row + n0)
                else:
                    m.d.sync += g_row.eq(g_row + n0)
                with m.If(g_b == b_end):
                    m.d.sync += drain.eq(0)
                    m.next = "GDRAIN"
                with m.Else():
                    m.next = "GORD"
        with m.State("GDRAIN"):                    # the last copy's data is read
            m.d.comb += [busy.eq(1), active.eq(1)]
            m.d.sync += drain.eq(drain + 1)
            # The read latency less two, and one for the registered write request.
            with m.If(drain == ds["latency"] - 1):
                m.next = "GLAST"
        with m.State("GLAST"):                     # the last copy is written
            m.d.comb += [busy.eq(1), active.eq(1)]
            m.d.sync += [start_run.eq(1), start_train.eq(1)]
            m.next = "DSWAIT"
        with m.State("DSWAIT"):
            m.d.sync += rem.eq(Mux(wraps, order_n, order_n - pos_next))
            with m.If(run_done):
                m.d.sync += [position.eq(Mux(wraps, 0, pos_next)),
                             steps_left.eq(steps_left - 1)]
                with m.If(steps_left == 1):
                    go_status(Err.OK)
                with m.Else():
                    m.next = "GSTART"
        return {"active": active, "mem": gmem, "addr": gaddr, "wdata": gwdata, "wen": gwen}
