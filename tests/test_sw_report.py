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
