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
    # min-max scaling that would overflow: no NaN may reach a cast
    ("a,b,label\n1.5e308,1,x\n-1.5e308,2,y\n0,3,x\n", "label",
     r"column 'a' spans \[-1.5e\+308, 1.5e\+308\] \(lines 3 and 2\), which is too wide"),
    ("a,b,label\n1,0,x\n2,5e-324,y\n3,0,x\n", "label",
     r"column 'b' spans \[0, 4.94066e-324\] \(lines 2 and 3\), which is too narrow"),
    # labels: floats beyond exact integers, empty cells
    ("a,label\n1,1e30\n2,0\n3,1e30\n", "label", "label 1e\\+30 on line 2 is beyond the integers"),
    ("a,label\n1,0\n2,\n3,1\n", "label", "line 3 has an empty label in column 'label'"),
    ("a,label\n1,0\n2,1\n3,0.5\n", "label", "non-integer numbers \\(0.5 on line 4\\)"),
    # columns: only the target, duplicate names
    ("label\n0\n1\n0\n", "label", "the only column is the target 'label'"),
    ("a,b,a,label\n1,2,3,0\n3,4,5,1\n", "label", "names column 'a' twice \\(columns 1 and 3\\)"),
    ("a,label\n" + "1" * 200_000 + ",0\n", "label", "not a readable CSV file"),
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


def test_csv_with_a_byte_order_mark_and_blank_lines(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffa,b,label\n1,2,x\n\n3,4,y\n5,6,x\n7,8,y\n".encode())
    d = load_file(path, "label", test_fraction=0.25)
    assert d.classes == ["x", "y"] and d.n_features == 2
    assert d.scaling["method"] == "minmax" and len(d.scaling["offset"]) == 2
    with pytest.raises(FxbpError, match="column 'a' spans"):      # the BOM is not part of the name
        path.write_bytes("\ufeffa,label\n1e308,x\n-1e308,y\n0,x\n".encode())
        load_file(path, "label")


def test_csv_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("caf\xe9,label\n1,x\n2,y\n".encode("latin-1"))
    with pytest.raises(FxbpError, match="not UTF-8 text"):
        load_file(path, "label")


def test_many_classes_are_refused_without_allocating(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((100_000, 1)), y=np.arange(100_000))
    with pytest.raises(FxbpError, match="100000 classes, more than 4096"):
        load_file(tmp_path / "d.npz", None)


def test_bool_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(12.0).reshape(6, 2), y=np.arange(6) % 2 == 0)
    d = load_file(tmp_path / "d.npz", None, test_fraction=0.5)
    assert d.classes == [False, True] and d.n_outputs == 1


def _npy_bytes():
    import io
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    return buf.getvalue()


def _truncated_npz(tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.zeros((5, 2)), y=np.arange(5) % 2)
    return (tmp_path / "ok.npz").read_bytes()[:-40]


def _zip_with_raw_members(tmp_path):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", b"not an array")
        zf.writestr("y.npy", b"nor this")
    return buf.getvalue()


@pytest.mark.parametrize("arrays, match", [
    (_zip_with_raw_members, "member 'x' is not a NumPy array"),
    (lambda t: b"not a zip", "not a readable .npz file \\(not a zip archive\\)"),
    (lambda t: _npy_bytes(), "not a zip archive"),              # a .npy renamed .npz
    (_truncated_npz, "not a readable .npz"),
    ({"x": np.array([[1, 2]] * 4, dtype=object), "y": np.arange(4) % 2}, "not a readable .npz"),
    ({"x": np.zeros(4), "y": np.arange(4) % 2}, "must be 2-D"),
    ({"x": np.zeros((0, 3)), "y": np.zeros(0)}, "'x' has no rows"),
    ({"x": np.zeros((4, 0)), "y": np.arange(4) % 2}, "'x' has no feature columns"),
    ({"x": np.ones((4, 2)) + 1j, "y": np.arange(4) % 2}, "must be numeric .* not complex128"),
    ({"x": np.ones((4, 2), dtype=bool), "y": np.arange(4) % 2}, "must be numeric .* not bool"),
    ({"x": np.ones((4, 2)), "y": np.arange(4) % 2 + 1j}, "labels must be integers, booleans or strings"),
    ({"x": np.ones((4, 2)), "y": np.array([1e30, 0, 1e30, 0])}, "beyond the integers"),
    ({"x": np.ones((4, 2)), "y": np.zeros((4, 2))}, "must be 1-D"),
    ({"x": np.full((4, 1), 1e300, dtype=np.longdouble) * 1e10, "y": np.arange(4) % 2}, "NaN or infinite"),
])
def test_bad_npz(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    if callable(arrays):
        path.write_bytes(arrays(tmp_path))
    else:
        np.savez(path, **arrays)
    with pytest.raises(FxbpError, match=match):
        load_file(path, None)


def test_npz_target_must_not_be_the_features(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2)), y=np.arange(4) % 2)
    with pytest.raises(FxbpError, match="names the features 'x'"):
        load_file(tmp_path / "d.npz", "x")
