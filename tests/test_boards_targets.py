"""The board targets (boards/targets.py) against the amaranth-boards platforms they name."""

import pytest

from fxbp.boards.build import make_platform
from fxbp.boards.targets import DIGITS_TRAIN_SAMPLES, TARGETS, target
from fxbp.hw.engine import EngineConfig
from fxbp.hw.commands import parse_net
from fxbp.sw.profile import load_profile

ISSUE_BOARDS = ["icebreaker", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f",
                "orangecrab-25f", "orangecrab-85f", "colorlight-5a-75b"]


def test_every_board_of_the_issue_and_no_other():
    assert list(TARGETS) == ISSUE_BOARDS


@pytest.mark.parametrize("name", ISSUE_BOARDS)
def test_target_matches_its_platform(name):
    t = TARGETS[name]
    cls = t.platform_class()
    assert cls.__module__.startswith("amaranth_boards.")
    assert (cls.device, cls.package) == (t.part.device, t.part.package)
    if t.family == "ecp5":
        assert cls.speed == t.part.speed
        from amaranth.vendor import LatticeECP5Platform as base
    else:
        from amaranth.vendor import SiliconBluePlatform as base
    assert issubclass(cls, base)
    platform = make_platform(t)
    res = platform.lookup(t.clock_resource, 0)
    assert res.clock.frequency == t.clock_hz
    uart = platform.lookup(*t.uart)
    names = {s.name for s in uart.ios}
    assert {"rx", "tx"} <= names


def test_added_uart_only_where_amaranth_boards_has_none():
    for t in TARGETS.values():
        plain = t.platform_class()()
        has = any(r.name == t.uart[0] and r.number == t.uart[1] for r in plain.resources.values())
        assert has == (t.uart_pins is None), t.name
    # OrangeCrab: the Feather pins 0 (RX) and 1 (TX), N17 and M18 on r0.2.
    p = make_platform(TARGETS["orangecrab-25f"])
    uart = p.lookup("uart", 0)
    mapping = p.connectors["io", 0].mapping
    pins = {s.name: [mapping[n.split(":")[1]] for n in s.ios[0].names]
            for s in uart.ios if hasattr(s, "ios")}
    assert pins == {"rx": ["N17"], "tx": ["M18"]}


@pytest.mark.parametrize("name", ISSUE_BOARDS)
def test_defaults_make_an_engine(name):
    t = TARGETS[name]
    config = EngineConfig(profile=load_profile("fx16").with_rounding("stochastic"),
                          sizes=parse_net(t.net), batch=t.max_batch, lanes=t.lanes,
                          dataset_buffer=t.dataset_buffer)
    assert config.sizes == (64, 32, 10)
    assert 1 <= t.baud <= t.max_baud
    assert t.bitstream == ("bin" if t.family == "ice40" else "bit")


def test_dataset_buffer_follows_block_ram():
    # The whole digits training set where the block RAM holds it (85F: 208 DP16KD), less
    # on smaller parts, none on the 12F (32 DP16KD, the engine takes 22).
    assert TARGETS["ulx3s-85f"].dataset_buffer == DIGITS_TRAIN_SAMPLES == 1438
    assert TARGETS["orangecrab-85f"].dataset_buffer == DIGITS_TRAIN_SAMPLES
    assert 0 < TARGETS["ulx3s-45f"].dataset_buffer < DIGITS_TRAIN_SAMPLES
    assert TARGETS["ulx3s-12f"].dataset_buffer == 0
    sizes = [TARGETS[n].part.bram for n in ("ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f")]
    buffers = [TARGETS[n].dataset_buffer for n in ("ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f")]
    assert sizes == sorted(sizes) and buffers == sorted(buffers)


def test_unknown_board_lists_them():
    with pytest.raises(KeyError, match="choose one of icebreaker, ulx3s-12f"):
        target("ulx3s-99f")
