"""Plots are written in the type their name asks for."""

import pytest

from fxbp.sw.report import save_plot
from fxbp.sw.train import TrainConfig, Trainer

MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".svg": b"<?xml", ".pdf": b"%PDF-"}


@pytest.fixture(scope="module")
def result():
    return Trainer(TrainConfig(dataset="xor", epochs=3)).run()


@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_plot_bytes_match_the_suffix(tmp_path, result, suffix):
    path = tmp_path / f"curves{suffix.upper() if suffix == '.pdf' else suffix}"
    save_plot([result], path)
    assert path.read_bytes().startswith(MAGIC[suffix])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]      # no temporary left


def _rows(table):
    cols = [[str(c) for c in col.cells] for col in table.columns]
    return [list(r) for r in zip(*cols)], [str(col.header) for col in table.columns]


def test_events_table_has_each_layer_s_underflow():
    from fxbp.sw.report import events_table
    res = Trainer(TrainConfig(dataset="iris", epochs=2)).run()
    rows, header = _rows(events_table(res))
    assert header[-1] == "underflow by layer (share of its values)"
    by = {r[0]: r for r in rows}
    g = res["cast_events_by_layer"]
    for site in ("delta", "gradient"):
        u1, t1 = g["1"][site]["underflow"], g["1"][site]["total"]
        u2, t2 = g["2"][site]["underflow"], g["2"][site]["total"]
        assert by[site][-1] == f"1: {u1:,} ({u1 / t1:.2%})  2: {u2:,} ({u2 / t2:.2%})"
    assert by["input"][-1] == "-"                          # no layer's
    # backends that count per site only: no per-layer column
    res["cast_events_by_layer"] = None
    assert _rows(events_table(res))[1][-1] == "underflow"
