"""What every unit shares: its signature, stall-all pipeline control, the sideband tag,
the optional skid buffer on the output, and reset-less delay registers."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import HASH_STAGES, hash_rounds

__all__ = ["PipelineControl", "UnitSignature", "StreamUnit", "check_int", "check_bool",
           "check_shallow"]


def check_int(what: str, value, *, low: int = 0, high: int | None = None) -> int:
    """``value`` if it is an integer in ``[low, high]``: TypeError / ValueError otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        where = f"at least {low}" if high is None else f"{low} to {high}"
        raise ValueError(f"{what} must be {where}, not {value!r}")
    return value


def check_bool(what: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool, not {value!r}")
    return value


def check_shallow(unit: str, shallow, draws_random_words: bool) -> bool:
    """``shallow`` if it is a bool that the unit can honour: a unit that draws random
    words keeps every stage (the hash's stages set its depth)."""
    check_bool(f"{unit} shallow", shallow)
    if shallow and draws_random_words:
        raise ValueError(f"{unit} shallow=True is for deterministic rounding: a unit that draws "
                         f"random words keeps its hash's stages; build it with shallow=False")
    return shallow


class UnitSignature(wiring.Signature):
    """The ports of a unit: streams ``i`` and ``o`` of struct payloads, plus constant inputs.

    Parameters
    ----------
    inputs, outputs : dict of str to shape
        Payload fields of ``i`` and ``o``.
    stochastic : bool
        Adds the ``index`` input field (unsigned 32, the element's index, section 9) and the
        ``key`` port (the site's random key): only stochastic units have them.
    tag_width : int
        Width of the sideband ``tag`` field carried from ``i`` to ``o`` with the data
        (0: no tag).
    statics : dict of str to shape
        Further constant input ports (a learning rate, say).

    Members
    -------
    i : In(stream.Signature(StructLayout(inputs [+ index] [+ tag])))
    o : Out(stream.Signature(StructLayout(outputs [+ tag])))
    key : In(32), stochastic only
    (statics) : In(shape)
    """

    def __init__(self, *, inputs: dict, outputs: dict, stochastic: bool = False,
                 tag_width: int = 0, statics: dict | None = None):
        check_int("tag width", tag_width, high=1024)
        inputs, outputs = dict(inputs), dict(outputs)
        if stochastic:
            inputs["index"] = unsigned(32)
        if tag_width:
            inputs["tag"] = unsigned(tag_width)
            outputs["tag"] = unsigned(tag_width)
        members = {"i": In(stream.Signature(data.StructLayout(inputs))),
                   "o": Out(stream.Signature(data.StructLayout(outputs)))}
        if stochastic:
            members["key"] = In(32)
        for name, shape in (statics or {}).items():
            members[name] = In(shape)
        self.stochastic, self.tag_width = stochastic, tag_width
        super().__init__(members)

    def __eq__(self, other):
        return type(self) is type(other) and self.members == other.members

    def __hash__(self):
        return hash(type(self))

    def __repr__(self):
        return f"{type(self).__qualname__}({dict(self.members)!r})"


class PipelineControl:
    """Valid bits of an ``n``-stage pipeline that advances only when its output can move.

    ``enable`` is high when the last stage is empty or its value is being taken; every
    pipeline register updates only under ``enable``, so back-pressure freezes the whole
    pipeline and no value is lost. Initiation interval 1 while the consumer is ready.
    """

    def __init__(self, m: Module, stages: int, i_valid, o_ready, *, out_valid=None):
        self.m = m
        self.enable = Signal(name="enable")
        self.valid = [Signal(name=f"valid{k}") for k in range(stages)]
        last = self.valid[-1] if out_valid is None else out_valid
        m.d.comb += self.enable.eq(~last | o_ready)
        with m.If(self.enable):
            m.d.sync += self.valid[0].eq(i_valid)
            for k in range(1, stages):
                m.d.sync += self.valid[k].eq(self.valid[k - 1])

    def reg(self, value, name: str, shape=None):
        """A reset-less register loaded with ``value`` whenever the pipeline advances."""
        sig = Signal(shape if shape is not None else value.shape(), name=name, reset_less=True)
        with self.m.If(self.enable):
            self.m.d.sync += sig.eq(value)
        return sig

    def product(self, a, b, name: str):
        """``a * b`` two pipeline registers later: ``a`` and ``b`` registered, then the exact
        product (:class:`RegisteredProduct`: one MULT18X18D with its own registers on ECP5)."""
        from .registered_product import RegisteredProduct
        unit = RegisteredProduct(a_shape=a.shape(), b_shape=b.shape())
        self.m.submodules[name] = unit
        self.m.d.comb += [unit.a.eq(a), unit.b.eq(b), unit.enable.eq(self.enable)]
        return unit.p

    def hashed(self, word):
        """``hash32(word)`` after ``len(HASH_STAGES)`` pipeline registers."""
        for k, rounds in enumerate(HASH_STAGES):
            word = self.reg(hash_rounds(word, rounds), f"hash{k}")
        return word

    def delay(self, value, stages: int, name: str):
        """``value`` after ``stages`` pipeline registers (``value`` itself for 0)."""
        for k in range(stages):
            value = self.reg(value, f"{name}_d{k}")
        return value


class StreamUnit(wiring.Component):
    """Base of the units: builds the pipeline control, the tag delay line and the skid buffer.

    A subclass sets ``LATENCY`` and implements ``datapath(m, ctl, out)``, which must drive
    every output field except ``tag`` into ``out`` (a reset-less register loaded in the last
    stage, under ``ctl.enable``). ``out_valid`` (optional, from ``datapath``) replaces the
    last valid bit for units that emit fewer outputs than inputs (the MAC).
    """

    LATENCY: int

    def __init__(self, signature, *, registered_ready=False):
        self.registered_ready = check_bool(f"{type(self).__name__} registered_ready",
                                           registered_ready)
        super().__init__(signature)

    @property
    def tag_width(self) -> int:
        return self.signature.tag_width

    def datapath(self, m, ctl, out):                    # pragma: no cover - abstract
        raise NotImplementedError

    def output_valid(self, m, ctl):
        """The last stage's valid bit; the MAC narrows it to the last product of a sum."""
        return ctl.valid[-1]

    def elaborate(self, platform):
        m = Module()
        layout = self.o.payload.shape()
        out = Signal(layout, name="out", reset_less=True)
        out_valid = Signal(name="out_valid")
        ready = Signal(name="internal_ready")
        ctl = PipelineControl(m, self.LATENCY, self.i.valid, ready, out_valid=out_valid)
        m.d.comb += [self.i.ready.eq(ctl.enable), out_valid.eq(self.output_valid(m, ctl))]
        self.datapath(m, ctl, out)
        if self.tag_width:
            tag = ctl.delay(self.i.payload.tag, self.LATENCY - 1, "tag")
            with m.If(ctl.enable):
                m.d.sync += out.tag.eq(tag)
        if not self.registered_ready:
            m.d.comb += [ready.eq(self.o.ready), self.o.valid.eq(out_valid),
                         self.o.payload.eq(out)]
            return m
        # Skid buffer: i.ready depends on registers only, never combinationally on o.ready.
        skid = Signal(layout, name="skid", reset_less=True)
        skid_valid = Signal(name="skid_valid")
        m.d.comb += [ready.eq(~skid_valid), self.o.valid.eq(out_valid | skid_valid),
                     self.o.payload.eq(Mux(skid_valid, skid.as_value(), out.as_value()))]
        with m.If(~skid_valid & out_valid & ~self.o.ready):
            m.d.sync += [skid_valid.eq(1), skid.eq(out)]
        with m.Elif(self.o.ready):
            m.d.sync += skid_valid.eq(0)
        return m

