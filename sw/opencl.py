"""The OpenCL runtimes: integer kernels bit-exact with docs/datapath.md, and float32 kernels.

Device choice: ``auto`` prefers a GPU and falls back to the CPU (PoCL, from
``pocl-binary-distribution``); ``gpu`` and ``cpu`` insist. Kernel sources live
in ``sw/kernels/*.cl``; each program is built once per context and build
options, and its kernel objects are kept and reused.
"""

from __future__ import annotations

import math
import warnings
from importlib import resources

import numpy as np

from .errors import FxbpError
from .fixed import cast_spec, quantize
from .golden import EVENT_SITES, GoldenMLP, _R, learning_rate_raw
from .runtime import Runtime

__all__ = ["select_device", "OpenCLRuntime", "OpenCLFloatRuntime", "opencl_available",
           "DEVICE_CHOICES"]

DEVICE_CHOICES = ("auto", "gpu", "cpu")
WORK_GROUP = 64
_FIX = "pip install 'fxbp[opencl]' (PoCL runs the kernels on the CPU), or install your GPU's OpenCL driver"


def _cl():
    try:
        import pyopencl as cl
    except ImportError as exc:
        raise FxbpError(f"the OpenCL backends need pyopencl ({exc}): {_FIX}") from None
    return cl


def _devices():
    cl = _cl()
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        raise FxbpError(f"no OpenCL platform loads ({str(exc).strip()}): {_FIX}") from None
    found = []
    for p in platforms:
        try:
            found.extend((p, d) for d in p.get_devices())
        except cl.Error:
            continue
    if not found:
        raise FxbpError(f"OpenCL platforms load but offer no device: {_FIX}")
    return found


def opencl_available() -> bool:
    try:
        _devices()
        return True
    except FxbpError:
        return False


def select_device(preference: str = "auto"):
    """``(platform, device)`` for ``auto`` (GPU first, else CPU), ``gpu`` or ``cpu``."""
    if preference not in DEVICE_CHOICES:
        raise FxbpError(f"unknown device {preference!r}: choose auto, gpu or cpu")
    cl = _cl()
    found = _devices()
    gpus = [(p, d) for p, d in found if d.type & cl.device_type.GPU]
    cpus = [(p, d) for p, d in found if d.type & cl.device_type.CPU]
    if preference == "gpu":
        if not gpus:
            names = ", ".join(d.name.strip() for _, d in found)
            raise FxbpError(f"no OpenCL GPU found (devices: {names}): use --device auto or cpu, "
                            f"or install the GPU's OpenCL driver")
        return gpus[0]
    if preference == "cpu":
        if not cpus:
            raise FxbpError(f"no OpenCL CPU device found: {_FIX}")
        return cpus[0]
    return (gpus or cpus or found)[0]


_CONTEXTS: dict = {}
_PROGRAMS: dict = {}


def _context(device):
    """One context and in-order queue per device, shared by every runtime."""
    cl = _cl()
    key = device.int_ptr
    if key not in _CONTEXTS:
        ctx = cl.Context([device])
        _CONTEXTS[key] = (ctx, cl.CommandQueue(ctx))
    return _CONTEXTS[key]


def _kernels(ctx, name: str, options: tuple[str, ...], names: tuple[str, ...]) -> dict:
    """Build ``kernels/<name>.cl`` once per (context, options); return its kernel objects."""
    key = (ctx.int_ptr, name, options)
    if key not in _PROGRAMS:
        cl = _cl()
        src = (resources.files("fxbp.sw") / "kernels" / f"{name}.cl").read_text()
        with warnings.catch_warnings():
            # pyopencl warns when a build log is non-empty (PoCL prints notes).
            warnings.simplefilter("ignore")
            try:
                prg = cl.Program(ctx, src).build(options=list(options))
            except cl.RuntimeError as exc:
                raise FxbpError(f"the OpenCL compiler rejected {name}.cl on this device: "
                                f"{str(exc).splitlines()[0]}") from None
        _PROGRAMS[key] = {n: getattr(prg, n) for n in names}
    return _PROGRAMS[key]


def _global(n: int) -> tuple[int]:
    return (max(WORK_GROUP, math.ceil(n / WORK_GROUP) * WORK_GROUP),)


class _OpenCLBase(Runtime):
    """What both OpenCL runtimes share: device, context, buffers, batching."""

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 device="auto"):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch)
        self.cl = _cl()
        self.platform, self.device = select_device(device)
        self.ctx, self.queue = _context(self.device)
        self._buffers: dict = {}

    def describe(self) -> dict:
        kind = self.cl.device_type.to_string(self.device.type)
        return {"backend": self.name, "platform": self.platform.name.strip(),
                "device": f"{self.device.name.strip()} ({kind})"}

    def _buf(self, name: str, nbytes: int):
        """A device scratch buffer of at least ``nbytes``, reused across steps."""
        buf = self._buffers.get(name)
        if buf is None or buf.size < nbytes:
            buf = self._buffers[name] = self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE,
                                                        max(nbytes, 8))
        return buf

    def _upload(self, array: np.ndarray):
        mf = self.cl.mem_flags
        return self.cl.Buffer(self.ctx, mf.READ_WRITE | mf.COPY_HOST_PTR,
                              hostbuf=np.ascontiguousarray(array))

    def _read(self, buf, shape, dtype) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        self.cl.enqueue_copy(self.queue, out, buf)
        return out


class OpenCLRuntime(_OpenCLBase):
    """Integer kernels that implement docs/datapath.md bit for bit (``--backend opencl``)."""

    name = "opencl"
    fixed_point = True

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 device="auto"):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch, device=device)
        self.eta = learning_rate_raw(lr, batch, profile)
        # The golden model holds the static plan (formats, specs, keys, checks) and the
        # host-side quantisation; the device holds the parameters and does the work.
        self.plan = GoldenMLP(sizes, profile,
                              [quantize(w, profile.weight.fmt) for w in init_weights],
                              [quantize(b, profile.bias.fmt) for b in init_biases],
                              loss=loss, seed=seed)
        self.plan.check_fit(batch)
        acc = "double" if profile.accumulator_bits <= 53 else "long"
        if acc == "double" and "cl_khr_fp64" not in self.device.extensions:
            acc = "long"
        self.k = _kernels(self.ctx, "fixed_train", (f"-DACC_T={acc}",),
                          ("forward", "delta", "weight_update", "bias_update"))
        mf = self.cl.mem_flags
        self._const = {}
        self.w_buf = [self._upload(w) for w in self.plan.weights]
        self.b_buf = [self._upload(b) for b in self.plan.biases]
        self.table = self._upload(self.plan._table)
        self.ev_buf = self._upload(np.zeros((len(EVENT_SITES), 2), dtype=np.uint32))
        self.ev_host = np.zeros((len(EVENT_SITES), 2), dtype=np.int64)
        self.totals = np.zeros(len(EVENT_SITES), dtype=np.int64)
        self._mf = mf

    # -- parameters ------------------------------------------------------------------------
    def _spec(self, spec: np.ndarray):
        key = spec.tobytes()
        if key not in self._const:
            self._const[key] = self.cl.Buffer(self.ctx, self._mf.READ_ONLY | self._mf.COPY_HOST_PTR,
                                              hostbuf=np.ascontiguousarray(spec, dtype=np.int64))
        return self._const[key]

    def _key(self, frac, stage, site, layer) -> np.uint32:
        k = self.plan._key(frac, stage, site, layer)
        return np.uint32(k if k >= 0 else 0)

    # -- runtime interface -----------------------------------------------------------------
    def prepare(self, x, t):
        return self.plan.quantize_input(x), self.plan.quantize_target(t)

    def _forward(self, x: np.ndarray) -> list:
        """Enqueue the forward pass for raw inputs ``x``; device buffers of every layer."""
        p = self.profile
        n = len(x)
        acts = [self._buf("a0", x.nbytes)]
        self.cl.enqueue_copy(self.queue, acts[0], np.ascontiguousarray(x, dtype=np.int64))
        kind = 0 if p.sigmoid.kind == "lut" else 1
        r_raw, addr_shift = self.plan._lut
        for l, plan in enumerate(self.plan._plans):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            out = self._buf(f"a{l + 1}", n * n_out * 8)
            self.k["forward"](self.queue, _global(n * n_out), (WORK_GROUP,),
                              np.int32(n * n_out), np.int32(n_in), np.int32(n_out), acts[-1],
                              self.w_buf[l], self.b_buf[l], np.int32(plan["bias_shift"]),
                              self._spec(plan["pre"]), np.int32(kind), self.table,
                              np.int64(r_raw), np.int32(addr_shift),
                              np.int32(p.preactivation.fmt.frac_bits), self._spec(plan["act"]),
                              out, self.ev_buf, np.int32(_R["preactivation"]),
                              np.int32(_R["activation"]))
            self.totals[_R["preactivation"]] += n * n_out
            self.totals[_R["activation"]] += n * n_out
            acts.append(out)
        return acts

    def train_batch(self, x, t) -> None:
        p, model = self.profile, self.plan
        n = len(x)
        if n not in model._fits:
            model.check_fit(n)
            model._fits.add(n)
        acts = self._forward(x)
        t_buf = self._buf("t", t.nbytes)
        self.cl.enqueue_copy(self.queue, t_buf, np.ascontiguousarray(t, dtype=np.int64))
        one = np.int64(1 << p.activation.fmt.frac_bits)
        n_layers = len(model._plans)
        deltas = [None] * n_layers
        for l in range(n_layers - 1, -1, -1):
            plan, layer, n_cur = model._plans[l], l + 1, self.sizes[l + 1]
            last = l == n_layers - 1
            n_next = 0 if last else self.sizes[l + 2]
            out = self._buf(f"d{layer}", n * n_cur * 8)
            self.k["delta"](self.queue, _global(n * n_cur), (WORK_GROUP,), np.int32(n * n_cur),
                            np.int32(n_cur), np.int32(n_next), acts[layer], t_buf,
                            deltas[l + 1] if not last else t_buf,
                            self.w_buf[l + 1] if not last else t_buf,
                            self._spec(plan["err"]), self._key(plan["err_frac"], p.error, "error", layer),
                            np.int32(plan["derivative"]), one,
                            self._spec(plan["d"]), self._key(plan["d_frac"], p.derivative, "derivative", layer),
                            self._spec(plan["delta"]), self._key(plan["delta_frac"], p.delta, "delta", layer),
                            out, self.ev_buf, np.int32(_R["error"]), np.int32(_R["derivative"]),
                            np.int32(_R["delta"]))
            self.totals[_R["error"]] += n * n_cur
            self.totals[_R["delta"]] += n * n_cur
            if plan["derivative"]:
                self.totals[_R["derivative"]] += n * n_cur
            deltas[l] = out
        eta_raw, eta_frac = self.eta
        u_frac = eta_frac + p.gradient.fmt.frac_bits
        for l, plan in enumerate(model._plans):
            layer, n_in, n_out = l + 1, self.sizes[l], self.sizes[l + 1]
            w_frac = max(u_frac, p.weight.fmt.frac_bits)
            self.k["weight_update"](
                self.queue, _global(n_out * n_in), (WORK_GROUP,), np.int32(n_out * n_in),
                np.int32(n_in), np.int32(n_out), np.int32(n), deltas[l], acts[l], self.w_buf[l],
                np.int64(eta_raw), self._spec(plan["g"]),
                self._key(plan["g_frac"], p.gradient, "gradient", layer),
                np.int32(w_frac - p.weight.fmt.frac_bits), np.int32(w_frac - u_frac),
                self._spec(model._spec_update(w_frac, p.weight)),
                self._key(w_frac, p.weight, "weight_update", layer), self.ev_buf,
                np.int32(_R["gradient"]), np.int32(_R["weight_update"]))
            b_frac = max(u_frac, p.bias.fmt.frac_bits)
            self.k["bias_update"](
                self.queue, _global(n_out), (WORK_GROUP,), np.int32(n_out), np.int32(n),
                deltas[l], self.b_buf[l], np.int64(eta_raw), self._spec(plan["gb"]),
                self._key(plan["gb_frac"], p.gradient, "bias_gradient", layer),
                np.int32(b_frac - p.bias.fmt.frac_bits), np.int32(b_frac - u_frac),
                self._spec(model._spec_update(b_frac, p.bias)),
                self._key(b_frac, p.bias, "bias_update", layer), self.ev_buf,
                np.int32(_R["bias_gradient"]), np.int32(_R["bias_update"]))
            for site, size in (("gradient", n_out * n_in), ("weight_update", n_out * n_in),
                               ("bias_gradient", n_out), ("bias_update", n_out)):
                self.totals[_R[site]] += size
        model.step += 1

    def predict(self, x) -> np.ndarray:
        outs = []
        chunk = 4096
        for s in range(0, len(x), chunk):
            acts = self._forward(x[s:s + chunk])
            outs.append(self._read(acts[-1], (len(x[s:s + chunk]), self.sizes[-1]), np.int64))
        self._sync_events()
        return self.profile.activation.fmt.to_real(np.concatenate(outs))

    def raw_layers(self):
        return [(self._read(w, (self.sizes[l + 1], self.sizes[l]), np.int64),
                 self._read(b, (self.sizes[l + 1],), np.int64))
                for l, (w, b) in enumerate(zip(self.w_buf, self.b_buf))]

    def real_layers(self):
        p = self.profile
        return [{"weights": p.weight.fmt.to_real(w).tolist(), "bias": p.bias.fmt.to_real(b).tolist()}
                for w, b in self.raw_layers()]

    def state(self):
        out = {"step": np.array(self.plan.step)}
        for l, (w, b) in enumerate(self.raw_layers()):
            out[f"w{l}"], out[f"b{l}"] = w, b
        return out

    def load_state(self, state):
        n = len(self.w_buf)
        for l in range(n):
            self.cl.enqueue_copy(self.queue, self.w_buf[l], np.ascontiguousarray(state[f"w{l}"], dtype=np.int64))
            self.cl.enqueue_copy(self.queue, self.b_buf[l], np.ascontiguousarray(state[f"b{l}"], dtype=np.int64))
        self.plan.step = int(state["step"])

    def _sync_events(self) -> None:
        """Move the device's 32-bit counters into the host's 64-bit ones."""
        ev = self._read(self.ev_buf, (len(EVENT_SITES), 2), np.uint32)
        self.ev_host += ev.astype(np.int64)
        self.cl.enqueue_copy(self.queue, self.ev_buf, np.zeros_like(ev))

    def event_counts(self):
        self._sync_events()
        golden = self.plan.event_counts()           # the host quantised the inputs
        counts = {}
        for name in EVENT_SITES:
            r = _R[name]
            counts[name] = {"overflow": int(self.ev_host[r, 0]) + golden[name]["overflow"],
                            "underflow": int(self.ev_host[r, 1]) + golden[name]["underflow"],
                            "total": int(self.totals[r]) + golden[name]["total"]}
        return counts

    def load_event_counts(self, counts):
        self._sync_events()
        self.plan.set_event_counts({"input": counts["input"]})
        for name, c in counts.items():
            if name != "input":
                r = _R[name]
                self.ev_host[r] = (c["overflow"], c["underflow"])
                self.totals[r] = c["total"]

    @property
    def learning_rate_info(self):
        raw, frac = self.eta
        return {"lr": self.lr, "batch": self.batch, "eta": raw * 2.0 ** -frac, "eta_raw": raw,
                "eta_frac_bits": frac, "mode": self.profile.lr_mode}


class OpenCLFloatRuntime(_OpenCLBase):
    """float32 kernels, the GPU baseline (``--backend opencl-float32``); its digest rounds
    the final weights into the profile's formats like the other float backends."""

    name = "opencl-float32"

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 device="auto"):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch, device=device)
        if not (np.isfinite(lr) and lr > 0):
            raise FxbpError(f"the learning rate must be a positive number, not {lr!r}")
        self.k = _kernels(self.ctx, "float_train", ("-cl-fp32-correctly-rounded-divide-sqrt",),
                          ("forward", "delta", "weight_update", "bias_update"))
        self.w_buf = [self._upload(np.asarray(w, dtype=np.float32)) for w in init_weights]
        self.b_buf = [self._upload(np.asarray(b, dtype=np.float32)) for b in init_biases]
        self.step = 0

    def prepare(self, x, t):
        return np.asarray(x, dtype=np.float32), np.asarray(t, dtype=np.float32)

    def _forward(self, x):
        n = len(x)
        acts = [self._buf("a0", x.nbytes)]
        self.cl.enqueue_copy(self.queue, acts[0], np.ascontiguousarray(x, dtype=np.float32))
        for l in range(len(self.w_buf)):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            out = self._buf(f"a{l + 1}", n * n_out * 4)
            self.k["forward"](self.queue, _global(n * n_out), (WORK_GROUP,), np.int32(n * n_out),
                              np.int32(n_in), np.int32(n_out), acts[-1], self.w_buf[l],
                              self.b_buf[l], out)
            acts.append(out)
        return acts

    def train_batch(self, x, t) -> None:
        n = len(x)
        acts = self._forward(x)
        t_buf = self._buf("t", t.nbytes)
        self.cl.enqueue_copy(self.queue, t_buf, np.ascontiguousarray(t, dtype=np.float32))
        n_layers = len(self.w_buf)
        deltas = [None] * n_layers
        for l in range(n_layers - 1, -1, -1):
            last = l == n_layers - 1
            n_cur = self.sizes[l + 1]
            out = self._buf(f"d{l + 1}", n * n_cur * 4)
            self.k["delta"](self.queue, _global(n * n_cur), (WORK_GROUP,), np.int32(n * n_cur),
                            np.int32(n_cur), np.int32(0 if last else self.sizes[l + 2]),
                            acts[l + 1], t_buf, t_buf if last else deltas[l + 1],
                            t_buf if last else self.w_buf[l + 1],
                            np.int32(not (last and self.loss == "xent")), out)
            deltas[l] = out
        eta = np.float32(self.lr / self.batch)
        for l in range(n_layers):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            self.k["weight_update"](self.queue, _global(n_out * n_in), (WORK_GROUP,),
                                    np.int32(n_out * n_in), np.int32(n_in), np.int32(n_out),
                                    np.int32(n), deltas[l], acts[l], self.w_buf[l], eta)
            self.k["bias_update"](self.queue, _global(n_out), (WORK_GROUP,), np.int32(n_out),
                                  np.int32(n), deltas[l], self.b_buf[l], eta)
        self.step += 1

    def predict(self, x):
        outs = []
        for s in range(0, len(x), 4096):
            acts = self._forward(x[s:s + 4096])
            outs.append(self._read(acts[-1], (len(x[s:s + 4096]), self.sizes[-1]), np.float32))
        return np.concatenate(outs).astype(np.float64)

    def float_layers(self):
        return [(self._read(w, (self.sizes[l + 1], self.sizes[l]), np.float32),
                 self._read(b, (self.sizes[l + 1],), np.float32))
                for l, (w, b) in enumerate(zip(self.w_buf, self.b_buf))]

    def raw_layers(self):
        p = self.profile
        return [(quantize(w.astype(np.float64), p.weight.fmt), quantize(b.astype(np.float64), p.bias.fmt))
                for w, b in self.float_layers()]

    def real_layers(self):
        return [{"weights": w.astype(np.float64).tolist(), "bias": b.astype(np.float64).tolist()}
                for w, b in self.float_layers()]

    def state(self):
        out = {"step": np.array(self.step)}
        for l, (w, b) in enumerate(self.float_layers()):
            out[f"w{l}"], out[f"b{l}"] = w, b
        return out

    def load_state(self, state):
        for l in range(len(self.w_buf)):
            self.cl.enqueue_copy(self.queue, self.w_buf[l], np.ascontiguousarray(state[f"w{l}"], dtype=np.float32))
            self.cl.enqueue_copy(self.queue, self.b_buf[l], np.ascontiguousarray(state[f"b{l}"], dtype=np.float32))
        self.step = int(state["step"])
