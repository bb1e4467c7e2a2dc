"""QFormat construction, parsing and representation."""

import pytest

from fxbp.sw.fixed import MAX_TOTAL_BITS, Overflow, QFormat, Rounding


@pytest.mark.parametrize("text, fmt", [
    ("Q4.12", QFormat(4, 12)),
    ("UQ0.16", QFormat(0, 16, signed=False)),
    ("q1.15", QFormat(1, 15)),
    (" Q8.0 ", QFormat(8, 0)),
    ("UQ8.8", QFormat(8, 8, signed=False)),
])
def test_parse(text, fmt):
    assert QFormat.parse(text) == fmt


@pytest.mark.parametrize("fmt", [QFormat(4, 12), QFormat(0, 16, signed=False), QFormat(1, 7),
                                 QFormat(20, 20), QFormat(3, 0, signed=False)])
def test_repr_and_str_read_back(fmt):
    assert eval(repr(fmt)) == fmt
    assert QFormat.parse(str(fmt)) == fmt


@pytest.mark.parametrize("fmt, lo, hi, res, bits", [
    (QFormat(4, 12), -8.0, 8 - 2**-12, 2**-12, 16),
    (QFormat(0, 16, signed=False), 0.0, 1 - 2**-16, 2**-16, 16),
    (QFormat(1, 7), -1.0, 1 - 2**-7, 2**-7, 8),
    (QFormat(2, 0, signed=False), 0.0, 3.0, 1.0, 2),
])
def test_range_and_resolution(fmt, lo, hi, res, bits):
    assert (fmt.min_real, fmt.max_real, fmt.resolution, fmt.total_bits) == (lo, hi, res, bits)


def test_immutable_and_hashable():
    f = QFormat(4, 12)
    with pytest.raises(AttributeError):
        f.int_bits = 3
    assert len({f, QFormat(4, 12), QFormat.parse("Q4.12")}) == 1


@pytest.mark.parametrize("text", ["Q4", "4.12", "Q4.-1", "QQ4.12", "", "Q4.12.1", "F4.12"])
def test_parse_rejects_bad_strings(text):
    with pytest.raises(ValueError, match="invalid fixed-point format"):
        QFormat.parse(text)


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((0, 8), {}, ValueError, "sign bit"),
    ((-1, 8), {"signed": False}, ValueError, "non-negative"),
    ((4, -1), {}, ValueError, "frac_bits must be non-negative"),
    ((0, 0), {"signed": False}, ValueError, "1 to"),
    ((40, 40), {}, ValueError, f"1 to {MAX_TOTAL_BITS}"),
    ((4.0, 12), {}, TypeError, "int_bits must be an integer, not 4.0"),
    ((True, 12), {}, TypeError, "int_bits must be an integer"),
    ((4, 12), {"signed": 1}, TypeError, "signed must be a bool"),
])
def test_constructor_checks(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        QFormat(*args, **kwargs)


def test_parse_rejects_non_strings():
    with pytest.raises(TypeError):
        QFormat.parse(4.12)


def test_mode_parsing():
    assert Rounding.parse("nearest-even") is Rounding.NEAREST_EVEN
    assert Overflow.parse("wrap") is Overflow.WRAP
    with pytest.raises(ValueError, match="unknown rounding mode 'round'"):
        Rounding.parse("round")
    with pytest.raises(ValueError, match="unknown overflow mode"):
        Overflow.parse("clip")
