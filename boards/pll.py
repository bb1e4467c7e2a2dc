"""PLL settings that reach an engine clock from a board's oscillator.

Two searches, each the algorithm of the open tool that ships with the YoWASP nextpnr
packages, with the frequency limits of the device's data sheet:

- :func:`ecp5_pll`: ECP5 ``EHXPLLL``, the search of ``ecppll`` (prjtrellis
  ``libtrellis/tools/ecppll.cpp``, installed here as ``yowasp-ecppll``);
- :func:`ice40_pll`: iCE40 ``SB_PLL40_PAD`` / ``SB_PLL40_CORE`` in SIMPLE feedback, the
  search of ``icepll`` (icestorm ``icepll/icepll.cc``, ``yowasp-icepll``).

Both work on exact fractions of hertz (the tools use floating point), return the
achieved frequency, and refuse with a ``ValueError`` naming the limits a request that no
setting can reach. With ``at_most=True`` they return the highest reachable frequency not
above the request instead of the closest one (the build uses it to step below a
measured Fmax).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["PllSettings", "ECP5_LIMITS", "ICE40_LIMITS", "ecp5_pll", "ice40_pll", "pll_for",
           "pll_instance"]

MHZ = 1_000_000

#: ECP5 sysCLOCK PLL limits in MHz (Lattice FPGA-DS-02012, ECP5 and ECP5-5G Family Data
#: Sheet, "sysCLOCK PLL Timing": f_IN 8-400, f_PFD 3.125-400, f_VCO 400-800; f_OUT from
#: ecppll's OUTPUT_MIN 10 (the data sheet allows 3.125) to 400). The dividers are those
#: ecppll searches: CLKI_DIV 1-128, CLKFB_DIV 1-80, CLKOP_DIV 1-128.
ECP5_LIMITS = {"in": (8, 400), "pfd": (Fraction(3125, 1000), 400), "vco": (400, 800),
               "out": (10, 400)}

#: iCE40 PLL limits in MHz (Lattice FPGA-DS-02008, iCE40 UltraPlus Family Data Sheet,
#: "sysCLOCK PLL Timing", and the iCE40 sysCLOCK PLL Design and Usage Guide, TN1251):
#: f_IN 10-133, f_PFD 10-133, f_VCO 533-1066, f_OUT 16-275. DIVR 0-15, DIVF 0-127
#: (SIMPLE feedback), DIVQ 1-6.
ICE40_LIMITS = {"in": (10, 133), "pfd": (10, 133), "vco": (533, 1066), "out": (16, 275)}


@dataclass(frozen=True)
class PllSettings:
    """One PLL configuration.

    Parameters
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    f_in_hz, f_out_hz, f_vco_hz, f_pfd_hz : Fraction
        Input, achieved output, VCO and phase-detector frequencies, exact.
    requested_hz : Fraction
        What was asked for.
    dividers : dict
        The primitive's divider parameters (ECP5: ``CLKI_DIV``, ``CLKFB_DIV``,
        ``CLKOP_DIV``, ``CLKOP_CPHASE``; iCE40: ``DIVR``, ``DIVF``, ``DIVQ``,
        ``FILTER_RANGE``), as the primitive takes them.
    """

    family: str
    f_in_hz: Fraction
    requested_hz: Fraction
    f_out_hz: Fraction
    f_vco_hz: Fraction
    f_pfd_hz: Fraction
    dividers: dict = field(default_factory=dict)

    @property
    def f_out_mhz(self) -> float:
        return float(self.f_out_hz / MHZ)

    @property
    def error_ppm(self) -> float:
        """Achieved minus requested, in parts per million of the request."""
        return float((self.f_out_hz - self.requested_hz) / self.requested_hz * 1_000_000)

    def as_dict(self) -> dict:
        """JSON-ready: frequencies in MHz (rounded to 1 Hz) and the dividers."""
        def mhz(f):
            return round(float(f) / MHZ, 6)
        return {"family": self.family, "primitive": "EHXPLLL" if self.family == "ecp5"
                else "SB_PLL40", "f_in_mhz": mhz(self.f_in_hz),
                "requested_mhz": mhz(self.requested_hz), "f_out_mhz": mhz(self.f_out_hz),
                "f_vco_mhz": mhz(self.f_vco_hz), "f_pfd_mhz": mhz(self.f_pfd_hz),
                "error_ppm": round(self.error_ppm, 3), "dividers": dict(self.dividers)}


def _hz(value, what: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise TypeError(f"{what} must be a number of hertz, not {value!r}")
    f = Fraction(value)
    if f <= 0:
        raise ValueError(f"{what} must be positive, not {value!r}")
    return f


def _check_range(f: Fraction, limits, what: str, family: str) -> None:
    lo, hi = limits
    if not lo * MHZ <= f <= hi * MHZ:
        raise ValueError(f"{family} PLL {what} {float(f) / MHZ:g} MHz is outside "
                         f"{float(lo):g}-{float(hi):g} MHz")


def _better(cand: Fraction, best, target: Fraction, at_most: bool) -> bool:
    if at_most and cand > target:
        return False
    if best is None:
        return True
    return abs(cand - target) < abs(best - target)


def _limits_text(limits) -> str:
    return ", ".join(f"{k} {float(lo):g}-{float(hi):g} MHz" for k, (lo, hi) in limits.items())


def ecp5_pll(f_in_hz, f_out_hz, *, at_most: bool = False) -> PllSettings:
    """ECP5 ``EHXPLLL`` settings for ``f_out_hz`` from ``f_in_hz``, feedback from CLKOP.

    ecppll's search: for every ``CLKI_DIV`` with the phase-detector frequency in range,
    every ``CLKFB_DIV`` and every ``CLKOP_DIV`` with the VCO in range, the output is
    ``f_in / CLKI_DIV * CLKFB_DIV`` (the VCO runs at that times ``CLKOP_DIV``); keep the
    closest (ties: the VCO nearest 600 MHz, then the first found). The output must also
    lie within the output limits. ``CLKOP_CPHASE = (CLKOP_DIV - 1) // 2`` is ecppll's
    half-period shift as it writes it (it truncates ``CLKOP_DIV / 2`` computed in single
    precision).

    Raises
    ------
    ValueError
        The input or the request is outside the limits, or (``at_most``) no setting
        reaches the request or below; the message names the limits.
    """
    f_in = _hz(f_in_hz, "ECP5 PLL input")
    target = _hz(f_out_hz, "ECP5 PLL output")
    lim = ECP5_LIMITS
    _check_range(f_in, lim["in"], "input", "ECP5")
    _check_range(target, lim["out"], "request", "ECP5")
    best = None
    for clki in range(1, 129):
        pfd = f_in / clki
        if not lim["pfd"][0] * MHZ <= pfd <= lim["pfd"][1] * MHZ:
            continue
        for fb in range(1, 81):
            out = pfd * fb
            if not lim["out"][0] * MHZ <= out <= lim["out"][1] * MHZ:
                continue
            for op in range(1, 129):
                vco = out * op
                if vco < lim["vco"][0] * MHZ:
                    continue
                if vco > lim["vco"][1] * MHZ:
                    break
                better = _better(out, best and best[0], target, at_most)
                if (not better and best is not None and not (at_most and out > target)
                        and abs(out - target) == abs(best[0] - target)
                        and abs(vco - 600 * MHZ) < abs(best[4] - 600 * MHZ)):
                    better = True
                if better:
                    best = (out, clki, fb, op, vco, pfd)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting reaches {float(target) / MHZ:g} MHz or below "
                         f"from {float(f_in) / MHZ:g} MHz ({_limits_text(lim)})")
    out, clki, fb, op, vco, pfd = best
    return PllSettings("ecp5", f_in, target, out, vco, pfd,
                       {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op,
                        "CLKOP_CPHASE": (op - 1) // 2})


def _ice40_filter_range(pfd: Fraction) -> int:
    """icepll's loop-filter range from the phase-detector frequency (MHz thresholds)."""
    for rng, upper in enumerate((17, 26, 44, 66, 101), start=1):
        if pfd < upper * MHZ:
            return rng
    return 6


def ice40_pll(f_in_hz, f_out_hz, *, at_most: bool = False) -> PllSettings:
    """iCE40 ``SB_PLL40_*`` settings (SIMPLE feedback) for ``f_out_hz`` from ``f_in_hz``.

    icepll's search: ``f_out = f_in / (DIVR + 1) * (DIVF + 1) / 2^DIVQ`` with the
    phase detector ``f_in / (DIVR + 1)`` and the VCO ``f_in / (DIVR + 1) * (DIVF + 1)``
    in range; keep the first closest. Unlike icepll, which reports an out-of-range
    output as achieved (12 -> 16 MHz gives 15.938), the output itself must be within
    the limits.

    Raises
    ------
    ValueError
        As :func:`ecp5_pll`.
    """
    f_in = _hz(f_in_hz, "iCE40 PLL input")
    target = _hz(f_out_hz, "iCE40 PLL output")
    lim = ICE40_LIMITS
    _check_range(f_in, lim["in"], "input", "iCE40")
    _check_range(target, lim["out"], "request", "iCE40")
    best = None
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not lim["pfd"][0] * MHZ <= pfd <= lim["pfd"][1] * MHZ:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not lim["vco"][0] * MHZ <= vco <= lim["vco"][1] * MHZ:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                if not lim["out"][0] * MHZ <= out <= lim["out"][1] * MHZ:
                    continue
                if _better(out, best and best[0], target, at_most):
                    best = (out, divr, divf, divq, vco, pfd)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting reaches {float(target) / MHZ:g} MHz or below "
                         f"from {float(f_in) / MHZ:g} MHz ({_limits_text(lim)})")
    out, divr, divf, divq, vco, pfd = best
    return PllSettings("ice40", f_in, target, out, vco, pfd,
                       {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                        "FILTER_RANGE": _ice40_filter_range(pfd)})


def pll_for(family: str, f_in_hz, f_out_hz, *, at_most: bool = False) -> PllSettings:
    """:func:`ecp5_pll` or :func:`ice40_pll` by ``family``."""
    if family == "ecp5":
        return ecp5_pll(f_in_hz, f_out_hz, at_most=at_most)
    if family == "ice40":
        return ice40_pll(f_in_hz, f_out_hz, at_most=at_most)
    raise ValueError(f"PLL family must be 'ecp5' or 'ice40', not {family!r}")


def pll_instance(settings: PllSettings, *, clk_in, clk_out, lock, pad: bool = False):
    """The Amaranth ``Instance`` of ``settings``.

    ``clk_in``: the oscillator (a signal; with ``pad``, iCE40 only, the raw pin's port,
    for ``SB_PLL40_PAD``); ``clk_out`` and ``lock`` are driven. The ECP5 instance carries
    ecppll's loop-filter attributes.
    """
    from amaranth.hdl import Instance
    d = settings.dividers
    if settings.family == "ecp5":
        if pad:
            raise ValueError("pad applies to iCE40 PLLs (SB_PLL40_PAD) only")
        return Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{float(settings.f_in_hz) / MHZ:g}",
            a_FREQUENCY_PIN_CLKOP=f"{float(settings.f_out_hz) / MHZ:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=d["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=d["CLKOP_DIV"],
            p_CLKOP_CPHASE=d["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=d["CLKFB_DIV"],
            i_RST=0, i_STDBY=0, i_CLKI=clk_in, i_CLKFB=clk_out, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clk_out, o_LOCK=lock)
    params = dict(p_FEEDBACK_PATH="SIMPLE", p_DIVR=d["DIVR"], p_DIVF=d["DIVF"],
                  p_DIVQ=d["DIVQ"], p_FILTER_RANGE=d["FILTER_RANGE"],
                  i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=clk_out, o_LOCK=lock)
    if pad:
        return Instance("SB_PLL40_PAD", io_PACKAGEPIN=clk_in, **params)
    return Instance("SB_PLL40_CORE", i_REFERENCECLK=clk_in, **params)
