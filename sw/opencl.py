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
from .golden import EVENT_SITES, _R, learning_rate_raw
from .profile import STAGES
from .runtime import Runtime, golden_model

__all__ = ["select_device", "opencl_device_kinds", "OpenCLRuntime", "OpenCLFloatRuntime", "opencl_available",
           "opencl_problem", "DEVICE_CHOICES"]

DEVICE_CHOICES = ("auto", "gpu", "cpu")
#: Side of the square work-groups of the tiled matrix-product kernels (``-DTILE``).
TILE = 16
#: Cast sites of fixed_train.cl, and the plan entries that hold their parameters.
CAST_SITES = ("PRE", "ACT", "ERR", "D", "DELTA", "G", "UPD", "GB", "UPDB")
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
    working = [(p, d) for p, d in found if compiler_problem(d) is None]
    if not working:
        p, d = found[0]
        raise FxbpError(f"the OpenCL device {d.name.strip()} ({p.name.strip()}) cannot compile "
                        f"kernels: {compiler_problem(d)}; use --backend golden, or install an "
                        f"OpenCL driver that supports this processor")
    return working


_COMPILER_PROBLEMS: dict = {}


def compiler_problem(device) -> str | None:
    """Why ``device`` cannot build a trivial kernel, or None when it can (cached).

    PoCL 3.0 (the PyPI build, LLVM 14) cannot compile for processors newer than
    LLVM 14 knows (AMD family 26, Zen 5, say): LLVM names the host ``generic`` and
    the build fails. Such a device is left out, never half used."""
    key = device.int_ptr
    if key not in _COMPILER_PROBLEMS:
        cl = _cl()
        try:
            ctx = cl.Context([device])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cl.Program(ctx, "__kernel void probe(__global int *a) { a[0] = 1; }").build()
            _COMPILER_PROBLEMS[key] = None
        except cl.Error as exc:
            log = " ".join(line.strip() for line in str(exc).splitlines() if "error" in line.lower())
            _COMPILER_PROBLEMS[key] = (log or str(exc).splitlines()[0])[:200]
    return _COMPILER_PROBLEMS[key]


def opencl_problem() -> str | None:
    """Why no OpenCL device loads and compiles kernels here, or ``None`` when one does."""
    try:
        _devices()
        return None
    except FxbpError as exc:
        return str(exc)


def opencl_available() -> bool:
    """True when some OpenCL device loads and compiles kernels."""
    return opencl_problem() is None


def opencl_device_kinds() -> list[str]:
    """``--device`` values with a device that compiles kernels here: ``cpu`` and/or ``gpu``
    (empty when none does)."""
    try:
        found = _devices()
    except FxbpError:
        return []
    cl = _cl()
    kinds = {"cpu": cl.device_type.CPU, "gpu": cl.device_type.GPU}
    return [k for k, t in kinds.items() if any(d.type & t for _, d in found)]


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


def _program(ctx, name: str, options: tuple[str, ...]):
    """Build ``kernels/<name>.cl`` once per (context, options)."""
    key = (ctx.int_ptr, name, options)
    if key not in _PROGRAMS:
        cl = _cl()
        folder = resources.files("fxbp.sw") / "kernels"
        src = (folder / f"{name}.cl").read_text()
        # The one shared header, inlined (no include path to pass to every compiler).
        src = src.replace('#include "matrix_sum.h"', (folder / "matrix_sum.h").read_text())
        with warnings.catch_warnings():
            # pyopencl warns when a build log is non-empty (PoCL prints notes).
            warnings.simplefilter("ignore")
            try:
                _PROGRAMS[key] = cl.Program(ctx, src).build(options=["-cl-kernel-arg-info", *options])
            except cl.RuntimeError as exc:
                raise FxbpError(f"the OpenCL compiler rejected {name}.cl on this device: "
                                f"{str(exc).splitlines()[0]}") from None
    return _PROGRAMS[key]


def _tiles(n: int) -> int:
    return max(TILE, math.ceil(n / TILE) * TILE)


def cast_defines(site: str, spec) -> tuple[str, ...]:
    """``-D`` options that make ``site``'s cast parameters compile-time constants in the
    kernels (the 7 entries of a ``fixed.cast_spec`` array, in its order)."""
    if site not in CAST_SITES:
        raise ValueError(f"unknown cast site {site!r}: choose one of {', '.join(CAST_SITES)}")
    values = [int(v) for v in np.asarray(spec).reshape(-1)]
    if len(values) != 7:
        raise ValueError(f"a cast spec has 7 entries (shift, mode, saturate, lo, hi, bits, "
                         f"signed), not {len(values)}")

    def literal(v: int) -> str:
        if not -(1 << 63) <= v < (1 << 63):
            raise ValueError(f"cast parameter {v} of {site} does not fit a long")
        return f"({v + 1}L-1L)" if v == -(1 << 63) else f"({v}L)"

    names = ("SHIFT", "MODE", "SAT", "LO", "HI", "BITS", "SIGNED")
    return tuple(f"-D{site}_{n}={literal(v)}" for n, v in zip(names, values))


class _Launch:
    """One kernel object whose arguments persist between launches; only changed
    arguments are set again (pyopencl's per-call argument setting costs ~70 us)."""

    def __init__(self, cl, program, name: str, queue):
        self.cl, self.queue = cl, queue
        self.kernel = cl.Kernel(program, name)
        info = cl.kernel_arg_info.NAME
        self.index = {self.kernel.get_arg_info(i, info): i for i in range(self.kernel.num_args)}
        self.values: dict = {}

    def set(self, **args) -> _Launch:
        for name, value in args.items():
            old = self.values.get(name, self)
            if old is value or (isinstance(value, np.generic) and isinstance(old, np.generic)
                                and old == value and old.dtype == value.dtype):
                continue
            self.kernel.set_arg(self.index[name], value)
            self.values[name] = value
        return self

    def run_grid(self, cols: int, rows: int, tiled: bool) -> None:
        """A ``cols`` x ``rows`` matrix of items (dimension 0 the columns): TILE x TILE
        work-groups for the tiled kernels, rounded up to whole tiles; exactly the matrix
        for the straight ones, in work-groups the device picks (on PoCL this beat fixed
        rows of 16 items by 1.3-1.8x on digits)."""
        if tiled:
            self.cl.enqueue_nd_range_kernel(self.queue, self.kernel,
                                            (_tiles(cols), _tiles(rows)), (TILE, TILE))
        else:
            self.cl.enqueue_nd_range_kernel(self.queue, self.kernel, (cols, rows), None)


class DeviceData:
    """Prepared data resident on the device: inputs ``x`` and targets ``t`` (``prepare``
    returns the same object for both; kernels gather batch rows through an index buffer)."""

    def __init__(self, runtime, x: np.ndarray, t: np.ndarray):
        self.host_x, self.host_t = x, t
        self.x = runtime._upload(x)
        self.t = runtime._upload(t)
        self.n = len(x)

    def __len__(self) -> int:
        return self.n


class _OpenCLBase(Runtime):
    """What both OpenCL runtimes share: device, context, buffers, epoch loop."""

    dtype = np.int64

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 device="auto", tiled=None):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch)
        if tiled is not None and not isinstance(tiled, bool):
            raise TypeError(f"tiled must be None (by device), True or False, not {tiled!r}")
        self.cl = _cl()
        self.platform, self.device = select_device(device)
        self.ctx, self.queue = _context(self.device)
        # Tiled matrix sums on GPUs; on CPUs the straight sums are faster (docs/opencl.md).
        self.tiled = bool(self.device.type & self.cl.device_type.GPU) if tiled is None else tiled
        self._forms = (f"-DTILE={TILE}", f"-DTILED={int(self.tiled)}")
        self.capacity = max(batch, EVAL_CHUNK)
        item = np.dtype(self.dtype).itemsize
        mf = self.cl.mem_flags
        def scratch(n):
            return self.cl.Buffer(self.ctx, mf.READ_WRITE, self.capacity * n * item)
        # Row-major [batch, width] and transposed [width, batch] copies (see the kernels).
        self.acts = [scratch(n) for n in self.sizes]
        self.acts_t = [scratch(n) for n in self.sizes]
        self.deltas = [scratch(n) for n in self.sizes[1:]]
        self.deltas_t = [scratch(n) for n in self.sizes[1:]]
        self.rows = self.cl.Buffer(self.ctx, mf.READ_WRITE, 4 * max(self.capacity, 1))
        self._rows_len = 0

    def describe(self) -> dict:
        kind = self.cl.device_type.to_string(self.device.type)
        return {"backend": self.name, "platform": self.platform.name.strip(),
                "device": f"{self.device.name.strip()} ({kind})",
                "kernels": "tiled" if self.tiled else "straight"}

    def _launches(self, programs, names) -> dict:
        """Kernel objects per (kernel, layer), created once and reused every step;
        ``programs`` holds each layer's program."""
        return {(n, l): _Launch(self.cl, programs[l], n, self.queue)
                for n in names for l in range(len(self.sizes) - 1)}

    def _upload_weights(self, weights) -> None:
        """Weights and their transposed copies onto the device."""
        self.w_buf = [self._upload(np.asarray(w, dtype=self.dtype)) for w in weights]
        self.w_t_buf = [self._upload(np.asarray(w, dtype=self.dtype).T) for w in weights]

    def _device_layers(self) -> list:
        """``[(weights, bias), ...]`` read back from the device in the storage type."""
        return [(self._read(w, (self.sizes[l + 1], self.sizes[l]), self.dtype),
                 self._read(b, (self.sizes[l + 1],), self.dtype))
                for l, (w, b) in enumerate(zip(self.w_buf, self.b_buf))]

    def _set_parameters(self, weights, biases, step) -> None:
        """Write weights (and their transposed copies) and biases to the device."""
        for l, (w, b) in enumerate(zip(weights, biases)):
            w = np.asarray(w, dtype=self.dtype)
            self.cl.enqueue_copy(self.queue, self.w_buf[l], np.ascontiguousarray(w))
            self.cl.enqueue_copy(self.queue, self.w_t_buf[l], np.ascontiguousarray(w.T))
            self.cl.enqueue_copy(self.queue, self.b_buf[l], np.ascontiguousarray(b, dtype=self.dtype))
        self.step = step

    def _upload(self, array: np.ndarray):
        mf = self.cl.mem_flags
        return self.cl.Buffer(self.ctx, mf.READ_WRITE | mf.COPY_HOST_PTR,
                              hostbuf=np.ascontiguousarray(array))

    def _read(self, buf, shape, dtype) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        self.cl.enqueue_copy(self.queue, out, buf)
        return out

    def _set_rows(self, rows: np.ndarray):
        """Upload the sample order (an epoch's, or 0..n-1); a new buffer when it grows."""
        rows = np.ascontiguousarray(rows, dtype=np.int32)
        if rows.nbytes > self.rows.size:
            self.rows = self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE, rows.nbytes)
        self.cl.enqueue_copy(self.queue, self.rows, rows)
        return self.rows

    def prepare(self, x, t):
        xh, th = self._host_prepare(x, t)
        data = DeviceData(self, xh, th)
        return data, data

    def train_batch(self, x, t) -> None:
        """One step on host arrays (uploads them; :meth:`train_epoch` avoids that)."""
        data = DeviceData(self, np.asarray(x, dtype=self.dtype), np.asarray(t, dtype=self.dtype))
        rows = self._set_rows(np.arange(len(x)))
        self._step(data, rows, 0, len(x))

    def train_epoch(self, x, t, order, batch, on_batch=None) -> None:
        data = x
        rows = self._set_rows(order)
        for s in range(0, len(order), batch):
            self._step(data, rows, s, min(batch, len(order) - s))
            if on_batch is not None:
                on_batch()

    def _predict_raw(self, data) -> np.ndarray:
        outs = []
        rows = self._set_rows(np.arange(data.n))
        for s in range(0, data.n, EVAL_CHUNK):
            n = min(EVAL_CHUNK, data.n - s)
            self._forward(data, rows, s, n)
            outs.append(self._read(self.acts[-1], (n * self.sizes[-1],), self.dtype)
                        .reshape(n, self.sizes[-1]))
        return np.concatenate(outs)

    def synchronize(self) -> None:
        self.queue.finish()


EVAL_CHUNK = 4096


class OpenCLRuntime(_OpenCLBase):
    """Integer kernels that implement docs/datapath.md bit for bit (``--backend opencl``)."""

    name = "opencl"
    fixed_point = True
    dtype = np.int64

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 device="auto", tiled=None):
        # Raw values travel as int32 when every stage format fits (arithmetic stays 64-bit).
        narrow = all(profile.stage(s).fmt.total_bits <= 32 for s in STAGES)
        self.dtype = np.int32 if narrow else np.int64
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch, device=device, tiled=tiled)
        self.eta = learning_rate_raw(lr, batch, profile)
        # The golden model holds the static plan (formats, cast specs, random keys, fit
        # checks) and quantises host data; the device holds the parameters and does the work.
        self.plan = golden_model(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                                 batch=batch, eta=self.eta)
        raw_t = "int" if self.dtype == np.int32 else "long"
        programs = [_program(self.ctx, "fixed_train",
                             (f"-DRAW_T={raw_t}", *self._forms, *self._layer_defines(l)))
                    for l in range(len(sizes) - 1)]
        self.k = self._launches(programs, ("forward", "delta", "update"))
        self._upload_weights(self.plan.weights)
        self.b_buf = [self._upload(b.astype(self.dtype)) for b in self.plan.biases]
        self.ev_buf = self._upload(np.zeros((len(EVENT_SITES), 2), dtype=np.uint32))
        self.ev_host = np.zeros((len(EVENT_SITES), 2), dtype=np.int64)
        self.totals = np.zeros(len(EVENT_SITES), dtype=np.int64)
        self._setup_kernels()

    def _layer_defines(self, l: int) -> tuple[str, ...]:
        """Layer ``l``'s cast parameters as ``-D`` constants: one program per layer."""
        p, model = self.profile, self.plan
        plan = model._plans[l]
        u_frac = self.eta[1] + p.gradient.fmt.frac_bits
        specs = {"PRE": plan["pre"], "ACT": plan["act"], "ERR": plan["err"], "D": plan["d"],
                 "DELTA": plan["delta"], "G": plan["g"],
                 "UPD": model._spec_update(max(u_frac, p.weight.fmt.frac_bits), p.weight),
                 "GB": plan["gb"],
                 "UPDB": model._spec_update(max(u_frac, p.bias.fmt.frac_bits), p.bias)}
        return tuple(d for site in CAST_SITES for d in cast_defines(site, specs[site]))

    def _setup_kernels(self) -> None:
        """Set every argument that stays fixed for the whole run, once."""
        p, model = self.profile, self.plan
        r_raw, addr_shift = model._lut
        table = self._upload(model._table.astype(self.dtype))
        eta_raw, eta_frac = self.eta
        u_frac = eta_frac + p.gradient.fmt.frac_bits
        n_layers = len(model._plans)
        i32 = np.int32
        for l, plan in enumerate(model._plans):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            last = l == n_layers - 1
            self.k["forward", l].set(
                n_in=i32(n_in), n_out=i32(n_out), rows=self.rows, gather=i32(l == 0),
                x=self.acts[l], x_t=self.acts_t[l], w=self.w_buf[l], bias=self.b_buf[l],
                bias_shift=i32(plan["bias_shift"]),
                kind=i32(0 if p.sigmoid.kind == "lut" else 1), table=table,
                r_raw=np.int64(r_raw), addr_shift=i32(addr_shift),
                plan_f=i32(p.preactivation.fmt.frac_bits),
                a_out=self.acts[l + 1], a_t=self.acts_t[l + 1], ev=self.ev_buf,
                r_pre=i32(_R["preactivation"]),
                r_act=i32(_R["activation"]))
            self.k["delta", l].set(
                n_cur=i32(n_out), n_next=i32(0 if last else self.sizes[l + 2]),
                act=self.acts[l + 1], target=self.acts[l + 1], rows=self.rows,
                delta_next=self.deltas[l + 1] if not last else self.deltas[l],
                w_next_t=self.w_t_buf[l + 1] if not last else self.w_t_buf[l],
                use_derivative=i32(plan["derivative"]),
                one=np.int64(1 << p.activation.fmt.frac_bits), delta_out=self.deltas[l],
                delta_t=self.deltas_t[l], ev=self.ev_buf,
                r_err=i32(_R["error"]), r_d=i32(_R["derivative"]), r_delta=i32(_R["delta"]))
            w_frac = max(u_frac, p.weight.fmt.frac_bits)
            b_frac = max(u_frac, p.bias.fmt.frac_bits)
            self.k["update", l].set(
                n_in=i32(n_in), n_out=i32(n_out),
                delta_t=self.deltas_t[l], a_prev_t=self.acts_t[l], w=self.w_buf[l],
                w_t=self.w_t_buf[l], bias=self.b_buf[l], eta=np.int64(eta_raw),
                w_shift=i32(w_frac - p.weight.fmt.frac_bits), u_shift=i32(w_frac - u_frac),
                b_w_shift=i32(b_frac - p.bias.fmt.frac_bits), b_u_shift=i32(b_frac - u_frac),
                ev=self.ev_buf, r_g=i32(_R["gradient"]), r_upd=i32(_R["weight_update"]),
                r_gb=i32(_R["bias_gradient"]), r_updb=i32(_R["bias_update"]))
        self._w_frac = max(u_frac, p.weight.fmt.frac_bits)
        self._b_frac = max(u_frac, p.bias.fmt.frac_bits)

    def _key(self, frac, stage, site, layer) -> np.uint32:
        k = self.plan._key(frac, stage, site, layer)
        return np.uint32(k if k >= 0 else 0)

    # -- runtime interface -----------------------------------------------------------------
    def _host_prepare(self, x, t):
        return (self.plan.quantize_input(x).astype(self.dtype),
                self.plan.quantize_target(t).astype(self.dtype))

    def _forward(self, data: DeviceData, rows, offset: int, n: int) -> None:
        i32 = np.int32
        self.k["forward", 0].set(x=data.x)
        for l in range(len(self.sizes) - 1):
            n_out = self.sizes[l + 1]
            self.k["forward", l].set(n=i32(n), rows=rows, offset=i32(offset)).run_grid(
                n_out, n, self.tiled)
            self.totals[_R["preactivation"]] += n * n_out
            self.totals[_R["activation"]] += n * n_out

    def _step(self, data: DeviceData, rows, offset: int, n: int) -> None:
        p, model = self.profile, self.plan
        model.ensure_fits(n, self.eta)
        self._forward(data, rows, offset, n)
        i32 = np.int32
        n_layers = len(model._plans)
        for l in range(n_layers - 1, -1, -1):
            plan, layer, n_cur = model._plans[l], l + 1, self.sizes[l + 1]
            k = self.k["delta", l]
            if l == n_layers - 1:
                k.set(target=data.t)
            k.set(n=i32(n), rows=rows, offset=i32(offset),
                  e_key=self._key(plan["err_frac"], p.error, "error", layer),
                  d_key=self._key(plan["d_frac"], p.derivative, "derivative", layer),
                  delta_key=self._key(plan["delta_frac"], p.delta, "delta", layer)
                  ).run_grid(n_cur, n, self.tiled)
            self.totals[_R["error"]] += n * n_cur
            self.totals[_R["delta"]] += n * n_cur
            if plan["derivative"]:
                self.totals[_R["derivative"]] += n * n_cur
        for l, plan in enumerate(model._plans):
            layer, n_in, n_out = l + 1, self.sizes[l], self.sizes[l + 1]
            self.k["update", l].set(
                batch=i32(n), g_key=self._key(plan["g_frac"], p.gradient, "gradient", layer),
                upd_key=self._key(self._w_frac, p.weight, "weight_update", layer),
                gb_key=self._key(plan["gb_frac"], p.gradient, "bias_gradient", layer),
                updb_key=self._key(self._b_frac, p.bias, "bias_update", layer)
            ).run_grid(n_in + 1, n_out, self.tiled)
            for site, size in (("gradient", n_out * n_in), ("weight_update", n_out * n_in),
                               ("bias_gradient", n_out), ("bias_update", n_out)):
                self.totals[_R[site]] += size
        model.step += 1

    def predict(self, x) -> np.ndarray:
        out = self._predict_raw(x).astype(np.int64)
        self._sync_events()
        return self.profile.activation.fmt.to_real(out)

    @property
    def step(self) -> int:
        return self.plan.step

    @step.setter
    def step(self, value: int) -> None:
        self.plan.step = value

    def _parameters(self):
        return self.step, self._device_layers()

    def _sync_events(self) -> None:
        """Move the device's 32-bit counters into the host's 64-bit ones."""
        ev = self._read(self.ev_buf, (len(EVENT_SITES), 2), np.uint32)
        self.ev_host += ev.astype(np.int64)
        self.cl.enqueue_copy(self.queue, self.ev_buf, np.zeros_like(ev))

    def event_counts(self):
        self._sync_events()
        host = self.plan.event_counts()           # the host quantised the inputs
        counts = {}
        for name in EVENT_SITES:
            r = _R[name]
            counts[name] = {"overflow": int(self.ev_host[r, 0]) + host[name]["overflow"],
                            "underflow": int(self.ev_host[r, 1]) + host[name]["underflow"],
                            "total": int(self.totals[r]) + host[name]["total"]}
        return counts

    def load_event_counts(self, counts, by_layer=None):
        self._sync_events()
        self.plan.set_event_counts({"input": counts["input"]})
        for name, c in counts.items():
            if name != "input":
                r = _R[name]
                self.ev_host[r] = (c["overflow"], c["underflow"])
                self.totals[r] = c["total"]



class OpenCLFloatRuntime(_OpenCLBase):
    """float32 kernels, the GPU baseline (``--backend opencl-float32``); its digest rounds
    the final weights into the profile's formats like the other float backends."""

    name = "opencl-float32"
    dtype = np.float32

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 device="auto", tiled=None):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch, device=device, tiled=tiled)
        if not (np.isfinite(lr) and lr > 0):
            raise FxbpError(f"the learning rate must be a positive number, not {lr!r}")
        program = _program(self.ctx, "float_train", self._forms)
        self.k = self._launches([program] * (len(sizes) - 1), ("forward", "delta", "update"))
        self._upload_weights(init_weights)
        self.b_buf = [self._upload(np.asarray(b, dtype=np.float32)) for b in init_biases]
        self.step = 0
        i32 = np.int32
        eta = np.float32(lr / batch)
        n_layers = len(self.w_buf)
        for l in range(n_layers):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            last = l == n_layers - 1
            self.k["forward", l].set(n_in=i32(n_in), n_out=i32(n_out), x=self.acts[l],
                                     rows=self.rows, gather=i32(l == 0), x_t=self.acts_t[l],
                                     w=self.w_buf[l], bias=self.b_buf[l], a_out=self.acts[l + 1],
                                     a_t=self.acts_t[l + 1])
            self.k["delta", l].set(
                n_cur=i32(n_out), n_next=i32(0 if last else self.sizes[l + 2]),
                act=self.acts[l + 1], target=self.acts[l + 1], rows=self.rows,
                delta_next=self.deltas[l + 1] if not last else self.deltas[l],
                w_next_t=self.w_t_buf[l + 1] if not last else self.w_t_buf[l],
                use_derivative=i32(not (last and loss == "xent")), delta_out=self.deltas[l],
                delta_t=self.deltas_t[l])
            self.k["update", l].set(
                n_in=i32(n_in), n_out=i32(n_out),
                delta_t=self.deltas_t[l], a_prev_t=self.acts_t[l], w=self.w_buf[l],
                w_t=self.w_t_buf[l], bias=self.b_buf[l], eta=eta)

    def _host_prepare(self, x, t):
        return np.asarray(x, dtype=np.float32), np.asarray(t, dtype=np.float32)

    def _forward(self, data, rows, offset, n):
        i32 = np.int32
        self.k["forward", 0].set(x=data.x)
        for l in range(len(self.sizes) - 1):
            n_out = self.sizes[l + 1]
            self.k["forward", l].set(n=i32(n), rows=rows, offset=i32(offset)).run_grid(
                n_out, n, self.tiled)

    def _step(self, data, rows, offset, n):
        i32 = np.int32
        self._forward(data, rows, offset, n)
        n_layers = len(self.w_buf)
        for l in range(n_layers - 1, -1, -1):
            k = self.k["delta", l]
            if l == n_layers - 1:
                k.set(target=data.t)
            n_cur = self.sizes[l + 1]
            k.set(n=i32(n), rows=rows, offset=i32(offset)).run_grid(n_cur, n, self.tiled)
        for l in range(n_layers):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            self.k["update", l].set(batch=i32(n)).run_grid(n_in + 1, n_out, self.tiled)
        self.step += 1

    def predict(self, x):
        return self._predict_raw(x).astype(np.float64)

    def float_layers(self):
        """The float32 weights and biases, read from the device."""
        return self._device_layers()

    def _parameters(self):
        return self.step, self._device_layers()
