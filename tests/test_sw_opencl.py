"""The OpenCL backends on whatever device is present (PoCL on the CPU in CI).

Integer kernels: digests, cast-event counts and histories equal the golden model's
across shapes, batch sizes (including ones that do not divide the tile of 16), both
forms of the matrix sums (tiled and straight), roundings, presets, losses and both
sigmoids. float32 kernels: agree with NumPy float32 within the tolerance derived below.
"""

import dataclasses
import json

import numpy as np
import pytest

from fxbp.sw.errors import FxbpError
from fxbp.sw.fixed import Overflow, quantize
from fxbp.sw.profile import load_profile
from fxbp.sw.runtime import FloatRuntime, GoldenRuntime, make_runtime
from fxbp.sw.train import TrainConfig, Trainer

cl = pytest.importorskip("pyopencl")
opencl = pytest.importorskip("fxbp.sw.opencl")
if opencl.opencl_problem() is not None:
    pytest.skip(f"no usable OpenCL device: {opencl.opencl_problem()}", allow_module_level=True)


def pair(sizes, profile, batch, lr, loss="mse", seed=0, backend="opencl", tiled=None):
    rng = np.random.default_rng(seed)
    w0, b0 = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        r = 4 * np.sqrt(6 / (n_in + n_out))
        w0.append(profile.weight.fmt.to_real(quantize(rng.uniform(-r, r, (n_out, n_in)), profile.weight.fmt)))
        b0.append(profile.bias.fmt.to_real(quantize(rng.uniform(-0.5, 0.5, n_out), profile.bias.fmt)))
    kw = dict(loss=loss, seed=seed, lr=lr, batch=batch)
    ref = GoldenRuntime(sizes, profile, w0, b0, **kw)
    extra = {} if tiled is None else {"tiled": tiled}
    dev = make_runtime(backend, sizes, profile, w0, b0, device="auto", **kw, **extra)
    return ref, dev


def data(sizes, n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, sizes[0]))
    t = (np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)] if sizes[-1] > 1
         else rng.integers(0, 2, (n, 1)).astype(float))
    return x, t


def train_both(ref, dev, sizes, n, batch, epochs=2):
    x, t = data(sizes, n)
    gx, gt = ref.prepare(x, t)
    dx, dt = dev.prepare(x, t)
    for e in range(epochs):
        order = np.random.default_rng([7, e]).permutation(n)
        ref.train_epoch(gx, gt, order, batch)
        dev.train_epoch(dx, dt, order, batch)
    return (gx, gt), (dx, dt)


SHAPES = {"digits": (64, 32, 10), "iris": (4, 8, 3), "single": (2, 1), "deep-odd": (5, 7, 6, 3)}


@pytest.mark.parametrize("tiled", [False, True], ids=["straight", "tiled"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("batch", [1, 13, 64, 100])
def test_digest_equals_golden_across_shapes_and_batches(shape, batch, tiled):
    """Both kernel forms (matrix_sum.h), whatever the device would pick."""
    sizes = SHAPES[shape]
    profile = load_profile("fx16").with_rounding("stochastic")
    ref, dev = pair(sizes, profile, batch, lr=0.5 if batch < 4 else 2.0, tiled=tiled)
    assert dev.describe()["kernels"] == ("tiled" if tiled else "straight")
    (gx, _), (dx, _) = train_both(ref, dev, sizes, n=150, batch=batch)
    assert dev.digest() == ref.digest()
    assert dev.event_counts() == ref.event_counts()
    np.testing.assert_array_equal(dev.predict(dx), ref.predict(gx))


@pytest.mark.parametrize("rounding", ["truncate", "toward-zero", "half-up", "nearest-even",
                                      "stochastic"])
@pytest.mark.parametrize("preset", ["fx16", "fx12", "fx8"])
@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_digest_equals_golden_across_roundings_and_presets(rounding, preset, loss):
    sizes = (64, 32, 10)
    profile = load_profile(preset).with_rounding(rounding)
    ref, dev = pair(sizes, profile, 50, lr=2.0 if preset != "fx8" else 4.0, loss=loss)
    train_both(ref, dev, sizes, n=120, batch=50)
    assert dev.digest() == ref.digest()
    assert dev.event_counts() == ref.event_counts()


@pytest.mark.parametrize("variant", ["plan", "wide-accumulator", "shift", "wrap"])
def test_digest_equals_golden_for_profile_variants(variant):
    p = load_profile("fx16").with_rounding("stochastic")
    p = {"plan": dataclasses.replace(p, sigmoid=dataclasses.replace(p.sigmoid, kind="plan")),
         # > 53 bits: the kernels accumulate in long instead of double
         "wide-accumulator": dataclasses.replace(p, accumulator_bits=60),
         "shift": dataclasses.replace(p, lr_mode="shift"),
         "wrap": dataclasses.replace(p, gradient=dataclasses.replace(p.gradient,
                                                                     overflow=Overflow.WRAP)),
         }[variant]
    ref, dev = pair((4, 8, 3), p, 16, lr=4.0)
    train_both(ref, dev, (4, 8, 3), n=64, batch=16, epochs=3)
    assert dev.digest() == ref.digest()
    assert dev.event_counts() == ref.event_counts()


def test_trainer_runs_and_resumes_bit_exactly(tmp_path):
    cfg = dict(dataset="iris", hidden=(8,), batch=16, lr=2.0, rounding="stochastic", seed=5)
    golden = Trainer(TrainConfig(backend="golden", epochs=4, **cfg)).run()
    Trainer(TrainConfig(backend="opencl", epochs=2, **cfg)).run(checkpoint_dir=tmp_path)
    resumed = Trainer(TrainConfig(backend="opencl", epochs=4, **cfg))
    resumed.load_checkpoint(tmp_path)
    res = resumed.run(checkpoint_dir=tmp_path)
    for key in ("weights_digest", "history", "cast_events"):
        assert res[key] == golden[key]
    assert res["runtime"]["backend"] == "opencl" and res["runtime"]["platform"]


@pytest.mark.parametrize("tiled", [False, True], ids=["straight", "tiled"])
def test_float32_kernels_agree_with_numpy_float32(tiled):
    sizes = (64, 32, 10)
    p = load_profile("fx16")
    _, dev = pair(sizes, p, 32, lr=2.0, backend="opencl-float32", tiled=tiled)
    # Start both float32 trainers from the same values.
    w0 = [w.astype(np.float64) for w, _ in dev.float_layers()]
    b0 = [b.astype(np.float64) for _, b in dev.float_layers()]
    ref = FloatRuntime(sizes, p, w0, b0, loss="mse", seed=0, lr=2.0, batch=32, dtype=np.float32)
    x, t = data(sizes, 96)
    rx, rt_ = ref.prepare(x, t)
    dx, dt = dev.prepare(x, t)
    # One forward pass. Both sum n = 65 terms (64 products and the bias) in float32, in
    # different orders; each result is within gamma_n * sum|terms| of the exact sum
    # (gamma_n = n u / (1 - n u), u = 2^-24, Higham 2002, eq. 3.5), so the two differ by at most
    # twice that. sigma has slope <= 1/4; exp and the division add a few ulps of a <= 1:
    # OpenCL allows exp 3 ulp and division 2.5 ulp, NumPy is within 1 ulp, so 8 * 2^-24 covers it.
    u = 2.0 ** -24
    gamma = 65 * u / (1 - 65 * u)
    xs = rx.astype(np.float64)
    terms = np.abs(xs) @ np.abs(w0[0]).T + np.abs(b0[0])
    bound = 0.25 * 2 * gamma * terms + 8 * u
    a_dev = dev._predict_raw(dx)
    hidden = dev._read(dev.acts[1], (96, 32), np.float32)
    a_ref = ref.model.forward(rx)
    assert np.all(np.abs(hidden - a_ref[1]) <= bound)
    assert np.max(np.abs(a_dev - a_ref[2])) < 1e-5          # one more layer of the same kind
    # Training: per-step differences are of the size above (~1e-6 relative) and, for this
    # smooth, contracting SGD, add up at most linearly: 3 epochs x 3 steps stay below 1e-4.
    order = np.arange(96)
    for _ in range(3):
        ref.train_epoch(rx, rt_, order, 32)
        dev.train_epoch(dx, dt, order, 32)
    for (wd, bd), (wr, br) in zip(dev.float_layers(), zip(ref.model.weights, ref.model.biases)):
        assert np.max(np.abs(wd - wr)) < 1e-4 and np.max(np.abs(bd - br)) < 1e-4


def test_float32_trainer_accuracy_tracks_numpy():
    cfg = dict(dataset="digits", hidden=(32,), epochs=5, batch=32, lr=2.0, seed=0)
    a = Trainer(TrainConfig(backend="float32", **cfg)).run()
    b = Trainer(TrainConfig(backend="opencl-float32", **cfg)).run()
    assert abs(a["final_test_accuracy"] - b["final_test_accuracy"]) <= 2 / 359   # <= 2 samples


def test_cast_parameters_become_constants():
    """fixed.cast_spec's 7 entries as -D constants of one site (a long literal each; the
    most negative long written so that no literal overflows)."""
    from fxbp.sw.fixed import cast_spec
    p = load_profile("fx16")
    spec = cast_spec(26, p.preactivation.fmt, p.preactivation.rounding, p.preactivation.overflow)
    defines = opencl.cast_defines("PRE", spec)
    assert [d.split("=")[0] for d in defines] == [
        "-DPRE_SHIFT", "-DPRE_MODE", "-DPRE_SAT", "-DPRE_LO", "-DPRE_HI", "-DPRE_BITS",
        "-DPRE_SIGNED"]
    assert defines[0] == f"-DPRE_SHIFT=({26 - p.preactivation.fmt.frac_bits}L)"
    lowest = opencl.cast_defines("G", [0, 0, 1, -(1 << 63), (1 << 63) - 1, 64, 1])
    assert lowest[3] == "-DG_LO=(-9223372036854775807L-1L)"
    with pytest.raises(ValueError, match="unknown cast site 'X'"):
        opencl.cast_defines("X", spec)
    with pytest.raises(ValueError, match="7 entries"):
        opencl.cast_defines("PRE", spec[:6])
    with pytest.raises(TypeError, match="tiled must be None"):
        pair((4, 8, 3), p, 8, 1.0, tiled=1)


def test_device_selection():
    platform, device = opencl.select_device("auto")
    gpus = [d for p in cl.get_platforms() for d in p.get_devices() if d.type & cl.device_type.GPU]
    if gpus:
        assert device.type & cl.device_type.GPU
    else:
        assert device.type & cl.device_type.CPU
        with pytest.raises(FxbpError, match="no OpenCL GPU found"):
            opencl.select_device("gpu")
    with pytest.raises(FxbpError, match="unknown device 'tpu'"):
        opencl.select_device("tpu")


def test_no_platform_says_why_and_how(monkeypatch):
    def fail():
        raise cl.LogicError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")
    monkeypatch.setattr(cl, "get_platforms", fail)
    with pytest.raises(FxbpError, match=r"no OpenCL platform loads \(.*PLATFORM_NOT_FOUND_KHR.*\): "
                                        r"pip install 'fxbp\[opencl\]'"):
        opencl.select_device("auto")


def test_programs_are_built_once_per_context():
    sizes = (4, 8, 3)
    p = load_profile("fx16")
    pair(sizes, p, 8, 1.0)
    n = len(opencl._PROGRAMS)
    _, dev = pair(sizes, p, 8, 1.0)
    assert len(opencl._PROGRAMS) == n
    launch = dev.k["forward", 0]
    kernel = launch.kernel
    x, t = dev.prepare(*data(sizes, 20))
    dev.train_epoch(x, t, np.arange(20), 8)
    assert dev.k["forward", 0] is launch and launch.kernel is kernel


def test_best_backend_reports_what_ran(tmp_path, capsys):
    from fxbp.sw.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "xor", "--backend", "best", "--epochs", "2", "--batch", "4",
              "--json", str(tmp_path / "r.json")])
    assert exc.value.code == 0
    res = json.loads((tmp_path / "r.json").read_text())
    has_gpu = any(d.type & cl.device_type.GPU for p in cl.get_platforms() for d in p.get_devices())
    assert res["requested_backend"] == "best"
    assert res["backend"] == ("opencl" if has_gpu else "golden")
    out, err = capsys.readouterr()
    assert f"on {res['backend']} ({res['runtime']['platform']}" in err


def test_cli_opencl_backend(tmp_path, capsys):
    from fxbp.sw.cli import main
    outs = {}
    for backend in ("golden", "opencl"):
        with pytest.raises(SystemExit) as exc:
            device = ["--device", "cpu"] if backend == "opencl" else []
            main(["train", "--dataset", "digits", "--backend", backend, *device,
                  "--epochs", "1", "--batch", "64", "--lr", "2", "--rounding", "stochastic",
                  "--quiet", "--json", str(tmp_path / f"{backend}.json")])
        assert exc.value.code == 0
        outs[backend] = json.loads((tmp_path / f"{backend}.json").read_text())
    assert outs["opencl"]["weights_digest"] == outs["golden"]["weights_digest"]
    assert outs["opencl"]["runtime"]["device"].endswith("(CPU)") or "CPU" in outs["opencl"]["runtime"]["device"]
