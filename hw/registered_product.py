"""``a * b`` with registered operands and a registered product: one hard multiplier."""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisteredProduct", "SynthTarget", "MULT18X18D_WIDTH", "product_shape"]

#: Operand width of the ECP5 sysDSP multiplier, signed or unsigned (SIGNEDA/SIGNEDB).
MULT18X18D_WIDTH = 18


def product_shape(a_shape, b_shape) -> Shape:
    """The exact shape of ``a * b``: the widths added, signed when either operand is."""
    a, b = Shape.cast(a_shape), Shape.cast(b_shape)
    return Shape(a.width + b.width, a.signed or b.signed)


class SynthTarget:
    """What ``elaborate`` is given when a design is synthesised without a board platform.

    Amaranth hands the platform to every ``elaborate``; a board build passes the board's
    (``LatticeECP5Platform.family == "ecp5"``), ``fxbp synth`` passes one of these so the
    same family-specific choices are made. Simulation passes none: generic logic.

    Parameters
    ----------
    family : str
        ``"ice40"`` or ``"ecp5"``.
    """

    def __init__(self, family: str):
        if not isinstance(family, str):
            raise TypeError(f"SynthTarget family must be a string, not {family!r}")
        if family not in ("ice40", "ecp5"):
            raise ValueError(f"SynthTarget family must be 'ice40' or 'ecp5', not {family!r}")
        self.family = family

    def __repr__(self):
        return f"SynthTarget({self.family!r})"


class RegisteredProduct(wiring.Component):
    """The exact product of two operands, each registered, then the product registered.

    On ECP5 (``platform.family == "ecp5"``) with both operands at most 18 bits, this is one
    ``MULT18X18D`` whose input A, input B and output registers are all used (clock CLK0,
    enable CE0, no reset, no pipeline register). yosys's own mapping never uses those
    registers, so nextpnr then times the multiplier as combinational logic between fabric
    registers; with them, it times register to register inside the DSP block (nextpnr PR
    #435). Elsewhere (simulation, iCE40, wider operands) the same three registers are
    built in the fabric, and yosys infers the multiplier. Both forms load all three
    registers on the same enabled edges, so they give the same ``p`` on every cycle.

    Parameters
    ----------
    a_shape, b_shape : shape-like
        Operand shapes, signed or unsigned.

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    enable : In(1, init=1)
        The registers load on a clock edge only while this is high (the pipeline's advance).
    p : Out(shape of ``a * b``)
        Exact: ``a_width + b_width`` bits, signed when either operand is.

    Latency
    -------
    2 enabled edges: ``p`` holds the product of the ``a`` and ``b`` present two enabled
    edges before.
    """

    def __init__(self, *, a_shape, b_shape):
        shapes = {}
        for name, shape in (("a_shape", a_shape), ("b_shape", b_shape)):
            try:
                shapes[name] = Shape.cast(shape)
            except TypeError:
                raise TypeError(f"RegisteredProduct {name} must be a shape, not {shape!r}") from None
            if shapes[name].width < 1:
                raise ValueError(f"RegisteredProduct {name} must be at least 1 bit wide, "
                                 f"not {shape!r}")
        self.a_shape, self.b_shape = shapes["a_shape"], shapes["b_shape"]
        self.p_shape = product_shape(self.a_shape, self.b_shape)
        super().__init__({"a": In(self.a_shape), "b": In(self.b_shape),
                          "enable": In(1, init=1), "p": Out(self.p_shape)})

    @property
    def fits_mult18x18d(self) -> bool:
        """Whether both operands fit the ECP5 multiplier's 18-bit inputs."""
        return max(self.a_shape.width, self.b_shape.width) <= MULT18X18D_WIDTH

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "family", None) == "ecp5" and self.fits_mult18x18d:
            m.submodules.mult = self._mult18x18d()
            return m
        a_q = Signal(self.a_shape, name="a_q", reset_less=True)
        b_q = Signal(self.b_shape, name="b_q", reset_less=True)
        # keep: without it yosys 0.50's ice40_dsp packs this register and the one after
        # it into the SB_MAC16, then opt_dff ties those bits to 0 ("Driver-driver
        # conflict ... resolved using constant") when the enable is constant, as in the
        # engine: a silently wrong netlist (hw/synth.py refuses any such netlist).
        p_q = Signal(self.p_shape, name="p_q", reset_less=True, attrs={"keep": 1})
        with m.If(self.enable):
            m.d.sync += [a_q.eq(self.a), b_q.eq(self.b), p_q.eq(a_q * b_q)]
        m.d.comb += self.p.eq(p_q)
        return m

    def _mult18x18d(self) -> Module:
        """The ECP5 sysDSP multiplier with its A, B and output registers on CLK0/CE0.

        Each operand is extended to 18 bits by its own signedness, and SIGNEDA/SIGNEDB say
        which: the DSP then forms the exact 36-bit product, of which ``p`` is the low
        ``a_width + b_width`` bits (the whole product).
        """
        width = MULT18X18D_WIDTH
        a18 = Signal(width, name="a18")
        b18 = Signal(width, name="b18")
        p36 = Signal(2 * width, name="p36")
        ports = {}
        for name, value, wide, shape in (("A", self.a, a18, self.a_shape),
                                         ("B", self.b, b18, self.b_shape)):
            ports[f"SIGNED{name}"] = Const(int(shape.signed), 1)
            for k in range(width):
                ports[f"{name}{k}"] = wide[k]
        kwargs = {f"i_{k}": v for k, v in ports.items()}
        kwargs.update({f"i_C{k}": Const(0, 1) for k in range(width)})
        kwargs.update({f"o_P{k}": p36[k] for k in range(2 * width)})
        inst = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            p_RESETMODE="SYNC", p_GSR="ENABLED",
            i_CLK0=ClockSignal("sync"), i_CE0=self.enable, i_RST0=Const(0, 1),
            i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            **kwargs)
        m = Module()
        m.submodules.dsp = inst
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36[:self.p_shape.width])]
        return m
