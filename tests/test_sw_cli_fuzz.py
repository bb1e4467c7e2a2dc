"""Property-based fuzzing of the fxbp command with malformed inputs.

Random CSV, NPZ, TOML and checkpoint files and random option values go to every
subcommand that reads input (train, explain, profile, format, gen). Whatever comes
in, fxbp either succeeds with valid outputs (exit 0) or refuses it with one line
``fxbp: error: ...`` on stderr and exit status 2, with no traceback and no file
written. Runs in-process through :func:`fxbp.sw.cli.main`; CI-sized (a few hundred
examples, tiny datasets, one epoch).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from fxbp.sw.cli import main
from fxbp.sw.profile import load_profile, toml_string

def fuzz(examples: int) -> settings:
    """``examples`` examples with no deadline (training a step takes milliseconds to seconds)."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fxbp(argv) -> tuple[int, str, str]:
    """Run ``fxbp argv`` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def assert_refused_or_valid(code, out, err, out_dir: Path | None = None):
    """Exit 2 with one ``fxbp: error:`` line and nothing written, or exit 0."""
    assert "Traceback" not in out + err, err
    assert code in (0, 2), (code, err)
    event(f"exit {code}")
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fxbp: error: "), err
        if out_dir is not None:
            assert not any(out_dir.iterdir()), sorted(p.name for p in out_dir.iterdir())
    return code == 0


@contextlib.contextmanager
def workdir():
    """A fresh directory with an empty ``out`` folder for the outputs."""
    with tempfile.TemporaryDirectory(prefix="fxbp-fuzz-") as tmp:
        tmp = Path(tmp)
        (tmp / "out").mkdir()
        yield tmp


# -- option values -----------------------------------------------------------------------

def _num_text(draw_from):
    return draw_from.map(lambda v: repr(v) if isinstance(v, float) else str(v))


OPTIONS = {
    "--batch": st.one_of(_num_text(st.integers(-2, 12)), st.sampled_from(["x", "1.5", "", "1e3"])),
    "--lr": st.one_of(_num_text(st.floats(allow_nan=True, allow_infinity=True)),
                      st.sampled_from(["nan", "inf", "-1", "0", "1e-300", "1e300", "2", "x"])),
    "--seed": st.one_of(_num_text(st.integers(-3, 2**33)), st.sampled_from(["x", "1.0"])),
    "--test-fraction": st.one_of(_num_text(st.floats(-1, 2)), st.sampled_from(["nan", "0", "1"])),
    "--scale": st.sampled_from(["minmax", "none", "bogus"]),
    "--hidden": st.one_of(_num_text(st.integers(-1, 4)), st.just("x")),
    "--rounding": st.sampled_from(["truncate", "nearest-even", "stochastic", "up"]),
    "--loss": st.sampled_from(["mse", "xent", "hinge"]),
    "--sigmoid": st.sampled_from(["lut", "plan", "tanh"]),
    "--precision": st.sampled_from(["fx16", "fx12", "fx8", "fx13", "x.toml"]),
}


@st.composite
def options(draw, allowed=tuple(OPTIONS)):
    """A few random options with random values."""
    if draw(st.booleans()):
        return []
    names = draw(st.lists(st.sampled_from(allowed), max_size=3, unique=True))
    argv = []
    for name in names:
        argv += [name, draw(OPTIONS[name])]
    return argv


# -- CSV -----------------------------------------------------------------------------------

CELLS = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-inf", "1e308", "-1.5e308", "1.5e308", "1e30", "5e-324",
                     "x", " 3 ", "0x10", "1_0", '"a,b"', "é", "\ufeff1", "0.5", "-0"]),
    st.text(max_size=4),
)
LABELS = st.one_of(st.sampled_from(["0", "1", "a", "b", "1e30", "", "0.5", "1.0", "nan", "True"]),
                   st.text(max_size=3))


@st.composite
def csv_files(draw):
    """CSV text: mostly well-formed tiny tables with random damage, sometimes noise."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200)), "y"
    n_features = draw(st.integers(0, 3))
    header = [draw(st.sampled_from(["a", "b", "c", "y", "", "a "])) for _ in range(n_features)]
    header.append("y")
    if draw(st.booleans()):                        # a clean, trainable table
        rows = draw(st.integers(6, 12))
        n_features = max(1, n_features)
        body = [[str(draw(st.integers(-3, 3))) for _ in range(n_features)] + [str(r % 2)]
                for r in range(rows)]
        header = [f"f{i}" for i in range(n_features)] + ["y"]
        return ("\n".join(",".join(r) for r in [header, *body]) + "\n").encode(), "y"
    else:
        body = draw(st.lists(st.lists(CELLS, min_size=max(0, n_features - 1),
                                      max_size=n_features + 2), max_size=10))
        body = [row + [draw(LABELS)] for row in body]
    text = "\n".join(",".join(r) for r in [header, *body]) + draw(st.sampled_from(["", "\n", "\n\n"]))
    bom = "\ufeff" if draw(st.booleans()) else ""
    target = draw(st.sampled_from(["y", "y", "a", "z"]))
    return (bom + text).encode("utf-8"), target


def check_train_outputs(out_dir: Path, code: int):
    if code == 0:
        result = json.loads((out_dir / "r.json").read_text())
        assert len(result["weights_digest"]) == 64 and result["epochs"] >= 1
        assert (out_dir / "ck" / "checkpoint.npz").is_file()
        assert not [p for p in out_dir.rglob("*.tmp")]


@fuzz(120)
@given(csv=csv_files(), extra=options(("--batch", "--lr", "--seed", "--test-fraction", "--scale",
                                       "--hidden", "--rounding", "--loss")))
def test_train_on_random_csv(csv, extra):
    data, target = csv
    with workdir() as tmp:
        path = tmp / "d.csv"
        path.write_bytes(data)
        out = tmp / "out"
        code, o, e = fxbp(["train", "--data", path, "--target", target, "--epochs", "1",
                           "--quiet", *extra, "--json", out / "r.json", "--checkpoint", out / "ck"])
        if assert_refused_or_valid(code, o, e, out):
            check_train_outputs(out, code)


# -- NPZ -----------------------------------------------------------------------------------

DTYPES = st.sampled_from(["f8", "f4", "f2", "i8", "u1", "?", "c16", "U3", "S2", "M8[s]", "O"])


@st.composite
def arrays_of(draw, rows):
    dtype = draw(DTYPES)
    shape = draw(st.sampled_from([(rows,), (rows, 1), (rows, 2), (rows, 0), (0, 2), (rows, 2, 1),
                                  (), (rows + 1, 2)]))
    values = draw(st.lists(st.one_of(st.integers(-3, 3), st.floats(allow_nan=True,
                                                                     allow_infinity=True)),
                           min_size=1, max_size=4))
    flat = np.resize(np.array(values, dtype=np.float64), max(1, math.prod(shape)))
    if dtype == "O":
        return np.array(flat.tolist(), dtype=object).reshape(-1)[:math.prod(shape)].reshape(shape)
    with np.errstate(all="ignore"):
        if dtype.startswith(("U", "S")):
            a = flat.astype("f8").astype(dtype)
        elif dtype.startswith("M8"):
            a = np.nan_to_num(flat, nan=0, posinf=0, neginf=0).astype("i8").astype(dtype)
        elif dtype[0] in "iu?":
            a = np.nan_to_num(flat, nan=0, posinf=1, neginf=-1).astype(dtype)
        else:
            a = flat.astype(dtype)
    return a[:math.prod(shape)].reshape(shape)


@st.composite
def damaged_copy(draw, data: bytes, kind: str, max_flips: int):
    """``data`` cut short (``truncated``) or with up to ``max_flips`` bytes changed (``flipped``)."""
    if kind == "truncated":
        return data[:draw(st.integers(0, len(data) - 1))]
    out = bytearray(data)
    for pos in draw(st.lists(st.integers(0, len(out) - 1), min_size=1, max_size=max_flips)):
        out[pos] ^= draw(st.integers(1, 255))
    return bytes(out)


@st.composite
def npz_files(draw, valid_bytes):
    kind = draw(st.sampled_from(["arrays", "arrays", "bytes", "truncated", "flipped", "zip-junk"]))
    if kind == "zip-junk":                      # members that are not .npy data
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name in draw(st.lists(st.sampled_from(["x.npy", "y.npy", "x", "y"]), max_size=3,
                                      unique=True)):
                zf.writestr(zipfile.ZipInfo(name), draw(st.binary(max_size=60)))
        return buf.getvalue()
    if kind == "bytes":
        return draw(st.one_of(st.binary(max_size=300),
                              st.binary(max_size=100).map(lambda b: b"PK\x03\x04" + b)))
    if kind in ("truncated", "flipped"):
        return draw(damaged_copy(valid_bytes, kind, max_flips=4))
    if draw(st.booleans()):                      # a clean file, maybe with a surprise or two
        rows = draw(st.integers(6, 12))
        arrays = {"x": np.array(draw(st.lists(st.floats(-10, 10), min_size=2 * rows,
                                               max_size=2 * rows))).reshape(rows, 2),
                  "y": np.arange(rows) % 2}
        if draw(st.booleans()):
            arrays[draw(st.sampled_from(["x", "y", "labels"]))] = draw(arrays_of(rows))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()
    rows = draw(st.integers(1, 10))
    names = draw(st.lists(st.sampled_from(["x", "y", "labels", "z"]), max_size=3, unique=True))
    buf = io.BytesIO()
    np.savez(buf, **{n: draw(arrays_of(rows)) for n in names})
    return buf.getvalue()


def _valid_npz() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x=rng.normal(size=(10, 2)), y=np.arange(10) % 2)
    return buf.getvalue()


@fuzz(80)
@given(data=st.data(), target=st.sampled_from([None, "y", "labels", "x", "z"]))
def test_train_on_random_npz(data, target):
    blob = data.draw(npz_files(_valid_npz()))
    extra = data.draw(options(("--batch", "--seed", "--scale", "--hidden")))
    with workdir() as tmp:
        path = tmp / "d.npz"
        path.write_bytes(blob)
        out = tmp / "out"
        argv = ["train", "--data", path, "--epochs", "1", "--quiet", *extra,
                "--json", out / "r.json", "--checkpoint", out / "ck"]
        if target is not None:
            argv += ["--target", target]
        code, o, e = fxbp(argv)
        if assert_refused_or_valid(code, o, e, out):
            check_train_outputs(out, code)


# -- TOML profiles -------------------------------------------------------------------------

FORMATS = st.sampled_from(["Q4.12", "Q2.14", "Q6.10", "UQ0.16", "UQ0.8", "Q1.15", "Q0.8",
                           "Q4.x", "Q40.40", "UQ0.0", "Q3.5", "q4.12"])
MODES = st.sampled_from(["truncate", "toward-zero", "half-up", "nearest-even", "stochastic",
                         "saturate", "wrap", "up"])
SCALARS = st.one_of(st.integers(-2**65, 2**65), st.floats(allow_nan=True, allow_infinity=True),
                    st.booleans(), st.text(max_size=6), FORMATS, MODES,
                    st.sampled_from(["fx16", "fx8", "lut", "plan", "multiply", "shift"]))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else
                                            "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + " }"


STAGE_VALUES = st.one_of(
    FORMATS, SCALARS,
    st.dictionaries(st.sampled_from(["format", "rounding", "overflow", "formt"]),
                    st.one_of(FORMATS, MODES, SCALARS), max_size=3),
)
STAGE_NAMES = st.sampled_from(["input", "weight", "bias", "preactivation", "activation",
                               "derivative", "error", "delta", "gradient", "learning_rate",
                               "bogus"])
SIGMOID = st.dictionaries(
    st.sampled_from(["kind", "entries", "input_range", "entreis"]),
    st.one_of(SCALARS, st.sampled_from([0.5, 0.25, 2**-12, 3, 16, 2**21, 0.3, -8])), max_size=3)


@st.composite
def toml_texts(draw, base_path: str):
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.binary(max_size=100), st.text(max_size=60).map(str.encode)))
    if draw(st.integers(0, 2)) == 0:             # a valid profile with awkward values
        doc = {"base": draw(st.sampled_from(["fx16", "fx12", "fx8"])),
               "name": draw(st.text(max_size=8)), "description": draw(st.text(max_size=8)),
               "sigmoid": {"input_range": draw(st.sampled_from([0.5, 1, 2, 4, 8])),
                           "entries": draw(st.sampled_from([2, 16, 64]))},
               "stages": {"learning_rate": {"format": "UQ0.16", "rounding": draw(
                   st.sampled_from(["truncate", "half-up", "nearest-even", "toward-zero"]))}}}
        return "\n".join(f"{k} = {toml_value(v)}" for k, v in doc.items()).encode()
    doc = {}
    if draw(st.integers(0, 4)):
        doc["base"] = draw(st.one_of(st.sampled_from(["fx16", "fx12", "fx8", "fx99", base_path,
                                                      "self.toml", "missing.toml"]), SCALARS))
    for key in draw(st.lists(st.sampled_from(["name", "description", "accumulator_bits",
                                              "lr_mode", "colour"]), max_size=3, unique=True)):
        doc[key] = draw(SCALARS)
    if draw(st.booleans()):
        doc["sigmoid"] = draw(st.one_of(SIGMOID, SCALARS))
    if draw(st.booleans()):
        doc["stages"] = draw(st.one_of(st.dictionaries(STAGE_NAMES, STAGE_VALUES, max_size=4),
                                       SCALARS, st.lists(st.integers(), max_size=2)))
    return "\n".join(f"{k} = {toml_value(v)}" for k, v in doc.items()).encode()


@fuzz(150)
@given(data=st.data())
def test_profile_on_random_toml(data):
    with workdir() as tmp:
        (tmp / "other.toml").write_text('base = "fx8"\nname = "other"\n')
        text = data.draw(toml_texts("other.toml"))
        path = tmp / "self.toml"
        path.write_bytes(text)
        code, o, e = fxbp(["profile", path])
        assert_refused_or_valid(code, o, e)
        code2, o2, e2 = fxbp(["profile", path, "--toml"])
        if assert_refused_or_valid(code2, o2, e2):
            again = tmp / "again.toml"
            again.write_text(o2, encoding="utf-8")
            assert load_profile(str(again)) == load_profile(str(path))
        assert (code == 0) == (code2 == 0)


@fuzz(40)
@given(data=st.data())
def test_train_with_a_random_profile(data):
    with workdir() as tmp:
        path = tmp / "p.toml"
        path.write_bytes(data.draw(toml_texts("fx16")))
        out = tmp / "out"
        code, o, e = fxbp(["train", "--dataset", "xor", "--precision", path, "--epochs", "1",
                           "--quiet", "--json", out / "r.json", "--checkpoint", out / "ck"])
        if assert_refused_or_valid(code, o, e, out):
            check_train_outputs(out, code)


@fuzz(60)
@given(texts=st.lists(st.one_of(FORMATS, st.text(max_size=8)), min_size=1, max_size=3))
def test_format_on_random_text(texts):
    code, o, e = fxbp(["format", *texts])
    if assert_refused_or_valid(code, o, e) and not any(t in ("-h", "--help") for t in texts):
        assert "fixed-point formats" in o


@fuzz(15)
@given(data=st.data())
def test_gen_with_random_inputs(data):
    pytest.importorskip("amaranth")
    with workdir() as tmp:
        path = tmp / "p.toml"
        path.write_bytes(data.draw(toml_texts("fx16")))
        unit = data.draw(st.sampled_from(["cast", "mac", "sigmoid", "weight-update", "nope"]))
        stage = data.draw(st.sampled_from([None, "error", "delta", "bogus"]))
        out = tmp / "out"
        argv = ["gen", unit, "--precision", data.draw(st.sampled_from([path, "fx8", "fx13"])),
                "--out", out / data.draw(st.sampled_from(["u.v", "u.txt"]))]
        if stage:
            argv += ["--stage", stage]
        code, o, e = fxbp(argv)
        if assert_refused_or_valid(code, o, e, out):
            (verilog,) = out.iterdir()
            assert "module" in verilog.read_text()


# -- explain -------------------------------------------------------------------------------

@fuzz(30)
@given(csv=csv_files(), extra=options(("--batch", "--lr", "--seed", "--rounding", "--sigmoid")))
def test_explain_on_random_csv(csv, extra):
    from fxbp.sw import cli
    if "explain" not in cli.cli.commands:
        pytest.skip("no explain command")
    data, target = csv
    with workdir() as tmp:
        path = tmp / "d.csv"
        path.write_bytes(data)
        out = tmp / "out"
        code, o, e = fxbp(["explain", "--data", path, "--target", target, *extra,
                           "--json", out / "e.json"])
        if assert_refused_or_valid(code, o, e, out):
            json.loads((out / "e.json").read_text())


# -- checkpoints ---------------------------------------------------------------------------

RESUME = ["train", "--dataset", "xor", "--batch", "4", "--lr", "2", "--quiet"]


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory) -> bytes:
    ck = tmp_path_factory.mktemp("ck") / "ck"
    code, _, err = fxbp([*RESUME, "--epochs", "2", "--checkpoint", ck])
    assert code == 0, err
    return (ck / "checkpoint.npz").read_bytes()


def _npz_members(blob: bytes) -> dict:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                                     st.floats(allow_nan=False), st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner,
                                                                   max_size=3)),
                           max_leaves=6)


DAMAGE = ("bytes", "truncated", "flipped", "meta", "arrays", "zip-junk")


@st.composite
def damaged_checkpoints(draw, blob: bytes, kind: str):
    """A checkpoint damaged in the way ``kind`` names (see ``DAMAGE``)."""
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind in ("truncated", "flipped"):
        return draw(damaged_copy(blob, kind, max_flips=6))
    if kind == "zip-junk":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(zipfile.ZipInfo("meta.npy"), draw(st.binary(max_size=80)))
        return buf.getvalue()
    arrays = _npz_members(blob)
    if kind == "meta":
        meta = json.loads(str(arrays["meta"]))
        path = draw(st.sampled_from([("schema",), ("config",), ("epoch",), ("history",),
                                     ("events",), ("samples_trained",), ("train_seconds",),
                                     ("profile_toml",), ("sizes",), ("generator",),
                                     ("config", "seed"), ("config", "hidden"),
                                     ("config", "batch"), ("generator", "step")]))
        target = meta
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else {}
        if draw(st.booleans()):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = draw(JSON_VALUES)
        choice = draw(st.sampled_from(["json", "json", "garbage", "int", "missing"]))
        if choice == "json":
            arrays["meta"] = np.array(json.dumps(meta))
        elif choice == "garbage":
            arrays["meta"] = np.array(draw(st.text(max_size=20)))
        elif choice == "int":
            arrays["meta"] = np.arange(3)
        else:
            del arrays["meta"]
    else:
        names = [k for k in arrays if k != "meta"]
        victim = draw(st.sampled_from(names))
        change = draw(st.sampled_from(["drop", "float", "shape", "string", "extra", "huge"]))
        a = arrays[victim]
        if change == "drop":
            del arrays[victim]
        elif change == "float":
            arrays[victim] = a.astype(np.float64) + 0.5
        elif change == "shape":
            arrays[victim] = np.zeros(a.size + 1, dtype=a.dtype)
        elif change == "string":
            arrays[victim] = np.array(["x"] * max(1, a.size))
        elif change == "huge":
            arrays[victim] = np.full(a.shape, 2**62, dtype=np.int64)
        else:
            arrays["surprise"] = np.zeros(2)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("kind", DAMAGE)
@fuzz(20)
@given(data=st.data())
def test_resume_from_a_damaged_checkpoint(data, kind, real_checkpoint):
    blob = data.draw(damaged_checkpoints(real_checkpoint, kind))
    assume(blob != real_checkpoint)
    with workdir() as tmp:
        ck = tmp / "ck"
        ck.mkdir()
        (ck / "checkpoint.npz").write_bytes(blob)
        out = tmp / "out"
        code, o, e = fxbp([*RESUME, "--epochs", "3", "--resume", ck, "--json", out / "r.json"])
        if assert_refused_or_valid(code, o, e, out):
            result = json.loads((out / "r.json").read_text())
            assert result["epochs"] == 3
        else:
            assert [p.name for p in ck.iterdir()] == ["checkpoint.npz"]
            assert (ck / "checkpoint.npz").read_bytes() == blob
