"""The boards ``fxbp build`` targets, and the engine each one gets by default.

Every platform comes from ``amaranth-boards`` (0.0.21); nothing here redefines one.
A :class:`BoardTarget` names the platform class and records what the build and the
host need to know about the board: the part and its capacities, the oscillator, the
UART and the USB-UART behind it, the default engine parameters that fit the part, and
the engine clock to aim for. Options of ``fxbp build`` override the defaults.

Capacities are the data sheets' (Lattice FPGA-DS-02012 ECP5 family table; FPGA-DS-02008
iCE40 UltraPlus): LUT4 and flip-flops, hard multipliers (ECP5 MULT18X18D, iCE40
SB_MAC16), block RAMs (ECP5 DP16KD, 18 Kbit; iCE40 SB_RAM40_4K, 4 Kbit).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = ["BoardTarget", "Part", "TARGETS", "target", "DIGITS_TRAIN_SAMPLES"]

#: Samples in the digits training set (1,797 samples, 20 % held out): the dataset
#: buffer that holds a whole digits epoch on chip.
DIGITS_TRAIN_SAMPLES = 1438


@dataclass(frozen=True)
class Part:
    """An FPGA and what it holds.

    Parameters
    ----------
    family : str
        ``"ice40"`` or ``"ecp5"`` (the yosys/nextpnr family).
    device, package : str
        As the amaranth-boards platform names them (``"LFE5U-25F"``, ``"BG381"``).
    speed : str
        Speed grade (ECP5); ``""`` for iCE40.
    lut, ff, dsp, bram : int
        LUT4s, flip-flops, hard multipliers and block RAMs of the data sheet.
    """

    family: str
    device: str
    package: str
    speed: str
    lut: int
    ff: int
    dsp: int
    bram: int

    @property
    def name(self) -> str:
        return f"{self.device}-{self.speed}{self.package}" if self.speed else \
            f"{self.device}-{self.package}"


UP5K_SG48 = Part("ice40", "iCE40UP5K", "SG48", "", 5280, 5280, 8, 30)


def _ecp5(size: str, package: str, speed: str) -> Part:
    lut, dsp, bram = {"12F": (12000, 28, 32), "25F": (24288, 28, 56), "45F": (43848, 72, 108),
                      "85F": (83640, 156, 208)}[size]
    return Part("ecp5", f"LFE5U-{size}", package, speed, lut, lut, dsp, bram)


@dataclass(frozen=True)
class BoardTarget:
    """One board ``fxbp build --board NAME`` can build for.

    Parameters
    ----------
    name : str
        The ``--board`` name.
    title : str
        For people (``"ULX3S 25F"``).
    platform : str
        ``"module:Class"`` of the amaranth-boards platform.
    part : Part
        The FPGA.
    clock_resource : str
        The platform's oscillator resource.
    clock_hz : int
        Its frequency.
    pll_pad : bool
        iCE40: the oscillator is on the PLL's own pad (``SB_PLL40_PAD``).
    uart : tuple
        ``(name, number)`` of the UART resource the host link uses.
    uart_pins : tuple or None
        ``(rx, tx, connector)`` when amaranth-boards has no UART for the board and the
        build adds one on those connector pins (an external 3.3 V USB-UART adapter).
    usb_uart : str
        What carries the UART to the host.
    max_baud : int
        The top baud of that USB-UART.
    baud : int
        The default baud.
    lanes, net, max_batch, dataset_buffer : int, str, int, int
        Engine defaults that fit the part (``--lanes``, ``--net``, ``--max-batch``,
        ``--dataset-buffer``).
    clock_mhz : float
        The engine clock to aim for (``--clock-mhz``).
    rounding : str
        The training rounding a build takes by default (``--rounding``).
    shallow : bool
        Whether a build leaves out the units' registers that only a fast clock needs
        (``--shallow``), when its rounding is deterministic (:meth:`engine_options`).
    event_counters : bool
        Whether a build counts each site's cast events (``--event-counters``).
    loader_board : str
        openFPGALoader's ``-b`` name.
    loader_cable : str or None
        The cable ``fxbp flash`` passes (``-c``), when the board has no programmer
        of its own.
    bitstream : str
        The file ``fxbp flash`` loads (``.bit`` ECP5, ``.bin`` iCE40).
    notes : str
        What a user needs to know (adapters, known limits).
    """

    name: str
    title: str
    platform: str
    part: Part
    clock_resource: str
    clock_hz: int
    uart: tuple
    usb_uart: str
    max_baud: int
    baud: int
    lanes: int
    net: str
    max_batch: int
    dataset_buffer: int
    clock_mhz: float
    loader_board: str
    bitstream: str
    pll_pad: bool = False
    rounding: str = "stochastic"
    shallow: bool = False
    event_counters: bool = True
    uart_pins: tuple | None = None
    loader_cable: str | None = None
    notes: str = ""

    @property
    def family(self) -> str:
        return self.part.family

    def engine_options(self, profile, shallow: bool | None = None,
                       event_counters: bool | None = None) -> dict:
        """``shallow`` and ``event_counters`` for an ``EngineConfig``: each as given, else
        the target's choice (shallow only where ``profile``'s training rounding is
        deterministic: shallow units are for deterministic rounding)."""
        return {"shallow": (self.shallow and not profile.uses_stochastic
                            if shallow is None else shallow),
                "event_counters": (self.event_counters if event_counters is None
                                   else event_counters)}

    def platform_class(self):
        """The amaranth-boards platform class (imports amaranth-boards)."""
        module, cls = self.platform.split(":")
        return getattr(importlib.import_module(module), cls)

    def describe(self) -> dict:
        return {"board": self.name, "title": self.title, "platform": self.platform,
                "family": self.family, "device": self.part.device,
                "package": self.part.package, "speed": self.part.speed,
                "oscillator_mhz": self.clock_hz / 1e6, "uart": list(self.uart),
                "usb_uart": self.usb_uart, "max_baud": self.max_baud}


_ULX3S_NOTES = ("UART through the on-board FT231X (the USB port marked US1); "
                "openFPGALoader programs over the same port.")
_EXTERNAL = "an external 3.3 V USB-UART adapter (FT232R/CP2102N class, up to 3 Mbaud)"


def _ulx3s(size: str, lanes: int, dataset_buffer: int) -> BoardTarget:
    return BoardTarget(
        name=f"ulx3s-{size.lower()}", title=f"ULX3S {size}",
        platform=f"amaranth_boards.ulx3s:ULX3S_{size}_Platform", part=_ecp5(size, "BG381", "6"),
        clock_resource="clk25", clock_hz=25_000_000, uart=("uart", 0),
        usb_uart="FTDI FT231X on the board", max_baud=3_000_000, baud=3_000_000,
        lanes=lanes, net="64-32-10", max_batch=32, dataset_buffer=dataset_buffer,
        clock_mhz=100.0, loader_board="ulx3s", bitstream="bit", notes=_ULX3S_NOTES)


def _orangecrab(size: str, dataset_buffer: int) -> BoardTarget:
    return BoardTarget(
        name=f"orangecrab-{size.lower()}", title=f"OrangeCrab r0.2 {size}",
        platform=f"amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_{size}Platform",
        part=_ecp5(size, "MG285", "8"), clock_resource="clk", clock_hz=48_000_000,
        uart=("uart", 0), uart_pins=("0", "1", ("io", 0)), usb_uart=_EXTERNAL,
        max_baud=3_000_000, baud=1_000_000, lanes=8, net="64-32-10", max_batch=32,
        dataset_buffer=dataset_buffer, clock_mhz=100.0, loader_board="orangecrab",
        bitstream="bit",
        notes=("The board's USB goes to the FPGA (no USB-UART chip): connect "
               f"{_EXTERNAL} to the Feather pins 0 (FPGA RX) and 1 (FPGA TX). "
               "openFPGALoader loads over the DFU bootloader (hold the button while "
               "plugging in)."))


#: Every target, by ``--board`` name.
TARGETS: dict[str, BoardTarget] = {t.name: t for t in (
    BoardTarget(
        name="icebreaker", title="iCEBreaker",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform", part=UP5K_SG48,
        clock_resource="clk12", clock_hz=12_000_000, pll_pad=True, uart=("uart", 0),
        usb_uart="FTDI FT2232H channel B on the board", max_baud=12_000_000, baud=3_000_000,
        lanes=1, net="64-32-10", max_batch=8, dataset_buffer=0, clock_mhz=30.0,
        rounding="nearest-even", shallow=True, event_counters=False,
        loader_board="icebreaker", bitstream="bin",
        notes=("The training engine does not fit the UP5K (docs/engine.md section 6): "
               "the build stops after synthesis with what it needs against the part.")),
    _ulx3s("12F", lanes=1, dataset_buffer=0),
    _ulx3s("25F", lanes=8, dataset_buffer=256),
    _ulx3s("45F", lanes=8, dataset_buffer=1024),
    _ulx3s("85F", lanes=8, dataset_buffer=DIGITS_TRAIN_SAMPLES),
    _orangecrab("25F", dataset_buffer=256),
    _orangecrab("85F", dataset_buffer=DIGITS_TRAIN_SAMPLES),
    BoardTarget(
        name="colorlight-5a-75b", title="Colorlight 5A-75B r7.0",
        platform="amaranth_boards.colorlight_5a75b_r7_0:Colorlight_5A75B_R70Platform",
        part=_ecp5("25F", "BG256", "6"), clock_resource="clk25", clock_hz=25_000_000,
        uart=("uart", 0), usb_uart=_EXTERNAL, max_baud=3_000_000, baud=1_000_000, lanes=8,
        net="64-32-10", max_batch=32, dataset_buffer=256, clock_mhz=100.0,
        loader_board="colorlight", loader_cable="ft232", bitstream="bit",
        notes=("No USB on the board: the UART is amaranth-boards' uart 0 on J19 (TX on "
               f"the LED pin P11, RX on the button pin M13), through {_EXTERNAL}; "
               "programming needs a JTAG cable on J27 (fxbp flash --cable, default "
               "ft232).")),
)}


def target(name: str) -> BoardTarget:
    """The target called ``name``; ``KeyError`` names the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise KeyError(f"unknown board {name!r}: choose one of {', '.join(TARGETS)}") from None
