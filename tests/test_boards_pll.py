"""PLL searches (boards/pll.py) against designed requests.

The expected dividers of the exact requests are what the reference tools print for
the same request (``yowasp-ecppll -i 25 -o 100`` ...; ``yowasp-icepll -i 12 -o 30``),
chosen where the tools' single-precision arithmetic has no tie to break."""

from fractions import Fraction

import pytest

from fxbp.boards.pll import ECP5_LIMITS, ICE40_LIMITS, ecp5_pll, ice40_pll, pll_for

MHZ = 1_000_000


@pytest.mark.parametrize("f_in, f_out, clki, fb, op", [
    (25, 100, 1, 4, 6),        # ULX3S / Colorlight 25 MHz -> 100 MHz, VCO 600
    (25, 125, 1, 5, 5),        # VCO 625
    (48, 100, 12, 25, 6),      # OrangeCrab 48 MHz -> 100 MHz, VCO 600
    (12, 30, 2, 5, 20),
])
def test_ecp5_exact_requests_match_ecppll(f_in, f_out, clki, fb, op):
    s = ecp5_pll(f_in * MHZ, f_out * MHZ)
    assert s.f_out_hz == f_out * MHZ
    assert (s.dividers["CLKI_DIV"], s.dividers["CLKFB_DIV"], s.dividers["CLKOP_DIV"]) == (clki, fb, op)
    assert s.f_vco_hz == f_out * MHZ * op
    assert s.error_ppm == 0
    assert s.dividers["CLKOP_CPHASE"] == (op - 1) // 2


@pytest.mark.parametrize("f_out, divr, divf, divq", [
    (30, 0, 79, 5), (48, 0, 63, 4), (Fraction(201, 2), 0, 66, 3)])
def test_ice40_exact_requests_match_icepll(f_out, divr, divf, divq):
    s = ice40_pll(12 * MHZ, f_out * MHZ)
    assert s.f_out_hz == f_out * MHZ
    assert (s.dividers["DIVR"], s.dividers["DIVF"], s.dividers["DIVQ"]) == (divr, divf, divq)
    assert s.dividers["FILTER_RANGE"] == 1          # 12 MHz at the phase detector


def test_ecp5_closest_when_not_exact():
    # 48 MHz -> 110 MHz: 48 / 7 * 16 = 109.714... is the closest in range.
    s = ecp5_pll(48 * MHZ, 110 * MHZ)
    assert s.f_out_hz == Fraction(48 * MHZ * 16, 7)
    assert abs(s.error_ppm - (-2597.4026)) < 1e-3


def test_at_most_never_exceeds_the_request():
    # 25 MHz cannot make 103 MHz; the closest is 103.125 (25/8*33), the highest below is 100.
    assert ecp5_pll(25 * MHZ, 103 * MHZ).f_out_hz == Fraction(825, 8) * MHZ
    assert ecp5_pll(25 * MHZ, 103 * MHZ, at_most=True).f_out_hz == 100 * MHZ
    # 48 MHz reaches 102.857 (48/7*15) exactly below 103.
    assert ecp5_pll(48 * MHZ, 103 * MHZ, at_most=True).f_out_hz == Fraction(48 * 15, 7) * MHZ
    s = ice40_pll(12 * MHZ, 31 * MHZ, at_most=True)
    assert s.f_out_hz <= 31 * MHZ and s.f_out_hz == Fraction(12 * 82, 32) * MHZ   # 30.75


def test_ecp5_output_limits_and_one_hertz_beyond():
    lo, hi = ECP5_LIMITS["out"]
    assert ecp5_pll(25 * MHZ, lo * MHZ).f_out_hz == lo * MHZ
    assert ecp5_pll(25 * MHZ, hi * MHZ).f_out_hz == hi * MHZ
    for bad in (lo * MHZ - 1, hi * MHZ + 1):
        with pytest.raises(ValueError, match=r"request .* outside 10-400 MHz"):
            ecp5_pll(25 * MHZ, bad)


def test_ecp5_input_limits():
    lo, hi = ECP5_LIMITS["in"]
    assert ecp5_pll(lo * MHZ, 100 * MHZ).f_out_hz == 100 * MHZ
    assert ecp5_pll(hi * MHZ, 100 * MHZ).f_out_hz == 100 * MHZ
    for bad in (lo * MHZ - 1, hi * MHZ + 1):
        with pytest.raises(ValueError, match=r"input .* outside 8-400 MHz"):
            ecp5_pll(bad, 100 * MHZ)


def test_ice40_limits():
    lo, hi = ICE40_LIMITS["out"]
    # 16 and 275 MHz are inside the range but not reachable from 12 MHz; the closest
    # settings inside the range are taken (icepll itself reports 15.938 and 276, outside).
    assert ice40_pll(12 * MHZ, lo * MHZ).f_out_hz == Fraction(12 * 86, 64) * MHZ   # 16.125
    assert ice40_pll(12 * MHZ, hi * MHZ).f_out_hz == 270 * MHZ
    for bad in (lo * MHZ - 1, hi * MHZ + 1):
        with pytest.raises(ValueError, match=r"request .* outside 16-275 MHz"):
            ice40_pll(12 * MHZ, bad)
    with pytest.raises(ValueError, match=r"input .* outside 10-133 MHz"):
        ice40_pll(10 * MHZ - 1, 30 * MHZ)
    with pytest.raises(ValueError, match=r"input .* outside 10-133 MHz"):
        ice40_pll(133 * MHZ + 1, 30 * MHZ)


def test_unreachable_at_most_names_the_limits():
    # From 12 MHz only 12 MHz * k / 2^q is reachable (the phase detector needs >= 10 MHz):
    # nothing lands in 16 MHz .. 16 MHz, so "16 MHz or below, inside the range" is empty.
    with pytest.raises(ValueError, match=r"no iCE40 PLL setting reaches 16 MHz or below .*"
                                         r"vco 533-1066 MHz"):
        ice40_pll(12 * MHZ, 16 * MHZ, at_most=True)


def test_every_result_is_inside_the_limits():
    for f_out in range(10, 401, 7):
        s = ecp5_pll(25 * MHZ, f_out * MHZ)
        assert ECP5_LIMITS["vco"][0] * MHZ <= s.f_vco_hz <= ECP5_LIMITS["vco"][1] * MHZ
        assert ECP5_LIMITS["pfd"][0] * MHZ <= s.f_pfd_hz
        assert s.f_out_hz == s.f_in_hz / s.dividers["CLKI_DIV"] * s.dividers["CLKFB_DIV"]
    for f_out in range(17, 275, 11):
        s = ice40_pll(12 * MHZ, f_out * MHZ)
        d = s.dividers
        assert s.f_out_hz == Fraction(12 * MHZ * (d["DIVF"] + 1), (d["DIVR"] + 1) * 2 ** d["DIVQ"])
        assert 16 * MHZ <= s.f_out_hz <= 275 * MHZ


def test_bad_arguments():
    with pytest.raises(TypeError, match="'100'"):
        ecp5_pll(25 * MHZ, "100")
    with pytest.raises(ValueError, match="-1"):
        ice40_pll(12 * MHZ, -1)
    with pytest.raises(ValueError, match="'gowin'"):
        pll_for("gowin", 12 * MHZ, 30 * MHZ)


def test_as_dict_reports_mhz_and_dividers():
    d = ecp5_pll(25 * MHZ, 100 * MHZ).as_dict()
    assert d == {"family": "ecp5", "primitive": "EHXPLLL", "f_in_mhz": 25.0,
                 "requested_mhz": 100.0, "f_out_mhz": 100.0, "f_vco_mhz": 600.0,
                 "f_pfd_mhz": 25.0, "error_ppm": 0.0,
                 "dividers": {"CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 6, "CLKOP_CPHASE": 2}}
