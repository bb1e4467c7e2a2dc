"""Datasets: built-ins, user CSV/NPZ, scaling and splits, and bad data."""

import numpy as np
import pytest

from fxbp.sw.data import load_dataset, load_file
from fxbp.sw.errors import FxbpError


def test_builtins():
    d = load_dataset("digits", seed=0)
    assert d.n_features == 64 and d.n_outputs == 10
    assert len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.min() >= 0 and d.x_train.max() <= 1
    iris = load_dataset("iris")
    assert iris.n_outputs == 3 and len(iris.x_test) == 30
    xor = load_dataset("xor")
    assert xor.t_train.ravel().tolist() == [0, 1, 1, 0]
    seed = load_dataset("seed-neuron")
    assert seed.x_train.tolist() == [[0.1, 0.3]] and seed.t_train.tolist() == [[0.03]]


def test_split_is_seeded():
    a, b, c = load_dataset("iris", seed=1), load_dataset("iris", seed=1), load_dataset("iris", seed=2)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)


def test_scaling_is_fitted_on_train_and_clips_test():
    d = load_dataset("iris", seed=0, x_max=0.5)
    assert d.x_train.min(axis=0).tolist() == [0.0] * 4
    assert np.allclose(d.x_train.max(axis=0), 0.5)
    assert d.x_test.min() >= 0 and d.x_test.max() <= 0.5
    assert d.scaling["method"] == "minmax" and len(d.scaling["offset"]) == 4


def test_unknown_dataset():
    with pytest.raises(FxbpError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def write_csv(path, text):
    path.write_text(text)
    return path


def test_csv(tmp_path):
    rows = ["a,b,label"] + [f"{i},{i % 3},{'cat' if i % 2 else 'dog'}" for i in range(20)]
    d = load_file(write_csv(tmp_path / "d.csv", "\n".join(rows)), "label", test_fraction=0.25)
    assert d.classes == ["cat", "dog"] and d.n_features == 2 and d.n_outputs == 1
    assert len(d.x_test) == 5


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(30, 3)), y=rng.integers(0, 3, 30))
    d = load_file(tmp_path / "d.npz", None)
    assert d.n_features == 3 and d.n_outputs == 3


@pytest.mark.parametrize("text, target, match", [
    ("a,b,label\n1,2,x\n3,nan,y\n", "label", "NaN or infinite"),
    ("a,b,label\n1,2,x\n3,inf,y\n", "label", "NaN or infinite"),
    ("a,b,label\n1,2,x\n3,oops,y\n", "label", "non-numeric feature 'oops'"),
    ("a,b,label\n1,2,x\n3,4\n", "label", "line 3 has 2 fields"),
    ("a,b,label\n1,2,x\n3,4,y\n", "class", "no column named 'class'"),
    ("a,b,label\n1,2,x\n3,4,x\n", "label", "single class"),
    ("a,b,label\n1,2,0.5\n3,4,1\n", "label", "non-integer"),
    ("a,b,label\n", "label", "no data rows"),
    ("", "label", "empty"),
    ("a,b,label\n1,2,x\n3,4,y\n", None, "--target"),
])
def test_bad_csv(tmp_path, text, target, match):
    with pytest.raises(FxbpError, match=match):
        load_file(write_csv(tmp_path / "bad.csv", text), target)


def test_bad_files(tmp_path):
    with pytest.raises(FxbpError, match="does not exist"):
        load_file(tmp_path / "none.csv", "y")
    with pytest.raises(FxbpError, match="must end in .csv or .npz"):
        load_file(write_csv(tmp_path / "d.txt", "a"), "y")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(FxbpError, match="not a readable .npz"):
        load_file(tmp_path / "bad.npz", None)
    np.savez(tmp_path / "shapes.npz", x=np.zeros((5, 2)), y=np.zeros(4))
    with pytest.raises(FxbpError, match="do not match"):
        load_file(tmp_path / "shapes.npz", None)
    np.savez(tmp_path / "keys.npz", features=np.zeros((5, 2)))
    with pytest.raises(FxbpError, match="needs arrays 'x'"):
        load_file(tmp_path / "keys.npz", None)


def test_unscaled_values_outside_the_input_format(tmp_path):
    path = write_csv(tmp_path / "d.csv", "a,label\n0.5,0\n3.0,1\n0.1,0\n0.2,1\n")
    with pytest.raises(FxbpError, match="outside the input format's range"):
        load_file(path, "label", scale="none", input_range=(-2.0, 1.99))
    d = load_file(path, "label", scale="none", input_range=(-4.0, 3.99), test_fraction=0.25)
    assert sorted(np.concatenate([d.x_train, d.x_test]).ravel().tolist()) == [0.1, 0.2, 0.5, 3.0]
