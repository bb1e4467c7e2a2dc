"""``--backend rtl``: the training engine simulated by Verilator, behind :class:`Runtime`.

The engine (``hw/engine``) is generated for the network, batch and profile, built once
into a native Verilator library (``sim/native.py``, cached by content) and driven through
its host interface (``sw/engine_host.py``): one C++ call per group of batches, never one
per cycle. The golden model serves as the static plan (fit and width checks) and
quantises the inputs on the host, as the OpenCL runtime does.
"""

from __future__ import annotations

import time

import numpy as np

from ..hw.engine.config import REG, Mem
from .engine_fmax import known_fmax, netlist_hash
from .engine_host import Layout, Program
from .errors import FxbpError
from .golden import EVENT_SITES, GoldenMLP, learning_rate_raw
from .runtime import Runtime, golden_model

__all__ = ["RtlRuntime", "engine_config", "VerifyMismatch"]


class VerifyMismatch(FxbpError):
    """``--verify-every-step`` found the engine and golden apart."""


def engine_config(sizes, profile, *, batch: int, loss: str, lanes: int, eta,
                  dataset_buffer: int = 0, shallow: bool = False,
                  event_counters: bool = True):
    from ..hw.engine import EngineConfig
    lr_shift = eta[1] if profile.lr_mode == "shift" else None
    try:
        return EngineConfig(profile=profile, sizes=tuple(sizes), batch=batch, lanes=lanes,
                            loss=loss, lr_shift=lr_shift, dataset_buffer=dataset_buffer,
                            shallow=shallow, event_counters=event_counters)
    except (TypeError, ValueError) as exc:
        raise FxbpError(f"cannot generate the engine: {exc}") from None


#: FPGA family -> the cell models (``sim/*.v``) its primitive instances simulate with.
CELL_MODELS = {"ecp5": ("mult18x18d.v", "dp16kd.v")}


def engine_verilog(config, family: str | None = None, *, poison_collisions: bool = True) -> str:
    """The engine's Verilog: generic, or with ``family``'s primitive instances (ECP5: the
    registered MULT18X18D of every RegisteredProduct, as synthesised) followed by their
    cell models, so the netlist that is synthesised can be the one simulated.
    ``poison_collisions`` (default on): a read of an address written in the same cycle
    returns its word inverted (:class:`~fxbp.hw.engine.Engine`): block RAM leaves it
    undefined, and every simulated run then checks that no result depends on one."""
    from ..hw.engine import Engine
    if family is not None and family not in CELL_MODELS:
        raise FxbpError(f"no cell models for family {family!r}: choose "
                        f"{', '.join(CELL_MODELS)} (or none: the generic engine)")
    try:
        engine = Engine(config, poison_collisions=poison_collisions)
    except (TypeError, ValueError) as exc:
        raise FxbpError(f"cannot generate the engine: {exc}") from None
    return netlist_verilog(engine, "fxbp_engine", family)


def netlist_verilog(component, name: str, family: str | None = None) -> str:
    """``component``'s Verilog: generic, or as synthesised for ``family`` (its primitive
    instances) followed by that family's cell models (``CELL_MODELS``)."""
    from importlib import resources
    from ..hw.generate import verilog
    from ..hw.registered_product import SynthTarget
    if family is None:
        return verilog(component, name)
    text = verilog(component, name, platform=SynthTarget(family))
    models = resources.files("fxbp.sim")
    return text + "".join((models / model).read_text() for model in CELL_MODELS[family])


def build_engine(config, progress=None, trace: bool = False, family: str | None = None,
                 poison_collisions: bool = True):
    """The native library of the engine for ``config`` (built once, then cached);
    ``family`` and ``poison_collisions``: :func:`engine_verilog`."""
    from ..sim.native import NativeLibrary
    text = engine_verilog(config, family, poison_collisions=poison_collisions)
    if family is None and poison_collisions:
        netlist_hash(config, text)        # the default form: its hash keys recorded Fmax
    return NativeLibrary.build(text, "fxbp_engine", progress=progress, trace=trace)


class RtlRuntime(Runtime):
    """The engine in Verilator.

    ``lanes`` is the engine's ``P``; ``max_sizes``/``max_batch`` generate it for larger
    maxima than the network (default: the network and batch themselves);
    ``dataset_buffer`` holds that many samples on chip: a training set that fits is
    loaded once, and each epoch sends only its order (RUN); ``family`` (``"ecp5"``)
    simulates the engine as synthesised for that family, its primitive instances with
    their cell models (:func:`engine_verilog`); ``poison_collisions`` (on unless turned
    off) corrupts every read of an address written in the same cycle; ``verify`` steps a golden model beside the engine and
    compares after every step (``--verify-every-step``); ``batches_per_call`` trades the
    progress bar's rate against Python-to-C++ crossings.
    """

    name = "rtl"
    fixed_point = True

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 lanes: int = 8, verify: bool = False, progress=None, batches_per_call: int = 4,
                 trace: tuple | None = None, clock_mhz: float | None = None,
                 max_sizes=None, max_batch: int | None = None, dataset_buffer: int = 0,
                 family: str | None = None, poison_collisions: bool = True,
                 shallow: bool = False, event_counters: bool = True):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch)
        self.family = family
        self.poison_collisions = poison_collisions
        self.eta = learning_rate_raw(lr, batch, profile)
        self.model = golden_model(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                                  batch=batch, eta=self.eta)
        # The engine is generated for the network and batch, or for larger maxima: the
        # widths and the batch are run-time registers (one build trains many networks).
        self.config = engine_config(max_sizes or sizes, profile, batch=max_batch or batch,
                                    loss=loss, lanes=lanes, eta=self.eta,
                                    dataset_buffer=dataset_buffer, shallow=shallow,
                                    event_counters=event_counters)
        self._resident = None         # (id, length) of the training set in the buffer
        self.layout = Layout(self.config, sizes)
        self.lanes = lanes
        self.clock_mhz = clock_mhz
        self.wall_seconds = 0.0       # train_epoch and predict, Python included
        self.batches_per_call = batches_per_call
        self.counters = {}            # engine counters, summed on the host (64-bit)
        self.sim_cycles = 0
        self.sim_seconds = 0.0        # inside the C++ clock loop
        self.call_seconds = 0.0       # the whole transport calls
        t0 = time.perf_counter()
        self._open(progress, trace)
        self.build_seconds = time.perf_counter() - t0
        self.verify = verify
        self.reference = None
        prog = Program()
        ident = prog.ident()
        self.layout.configure(prog, batch)
        eta_raw, _ = self.eta
        prog.wreg(0x01, eta_raw if profile.lr_mode == "multiply" else 0)
        prog.wreg(0x02, seed & 0xFFFFFFFF)
        prog.wreg(0x03, 0)
        self.layout.write_parameters(prog, self.model.weights, self.model.biases)
        answers = self._run(prog)
        self.layout.check_id(answers[ident])
        if verify:
            self.reference = GoldenMLP(sizes, profile, self.model.weights, self.model.biases,
                                       loss=loss, seed=seed)

    # ---------------------------------------------------------------- transport
    def _open(self, progress, trace) -> None:
        """Build (or load) the engine's native model and reset it."""
        kind = False
        if trace is not None:
            from ..sim.native import fst_supported
            kind = "fst" if str(trace[0]).lower().endswith(".fst") else "vcd"
            if kind == "fst" and not fst_supported():
                raise FxbpError(f"--trace {trace[0]}: FST needs the zlib headers for the "
                                f"Verilator build here; write a .vcd instead")
        self.lib = build_engine(self.config, progress, trace=kind, family=self.family,
                                poison_collisions=self.poison_collisions)
        self.sim = self.lib.new()
        self.sim.reset(2)
        if trace is not None:
            path, start, cycles = trace
            self.sim.trace(path, start, cycles)

    def _run(self, prog: Program) -> list[np.ndarray]:
        words = prog.encode()
        n_out = prog.responses(self.layout.id_words)
        budget = 64 * (len(words) + n_out) + 10_000 + self._cycle_budget(prog)
        res = self.sim.stream(words, n_out, max_cycles=budget)
        self.sim_cycles += res.cycles
        self.sim_seconds += res.loop_seconds
        self.call_seconds += res.call_seconds
        if res.produced < n_out:
            raise FxbpError(f"the engine stopped answering after {res.produced} of {n_out} words "
                            f"({res.cycles} cycles): a hang in the engine")
        return prog.decode(res.outputs[:, 0], self.layout.id_words)

    def _cycle_budget(self, prog: Program) -> int:
        """A generous bound on the cycles of the program's TRAIN/EVAL commands."""
        n = self.sizes
        macs = sum(n[l] * (n[l - 1] + self.lanes + 1) for l in range(1, len(n)))
        per = 4 * (macs + 200 * len(n)) * (self.config.groups + 1) + 10_000
        runs = sum(c.op in (6, 7) for c in prog.commands)
        runs += sum(self.batches_per_call for c in prog.commands if c.op == 9)
        return per * runs

    def _collect_counters(self, prog: Program) -> list[int]:
        handles = prog.counters(len(self.config.counter_names))
        prog.clear()
        return handles

    def _add_counters(self, answers, handles) -> None:
        for name, h in zip(self.config.counter_names, handles):
            self.counters[name] = self.counters.get(name, 0) + (int(answers[h][0]) & 0xFFFFFFFF)
        if self.counters.get("chain_overruns"):
            raise FxbpError(f"internal engine error: {self.counters['chain_overruns']} element(s) "
                            f"refused by a chain (counter chain_overruns); please report it")

    # ---------------------------------------------------------------- Runtime
    def describe(self) -> dict:
        netlist = ("" if self.family is None else
                   f", {self.family} primitives with their cell models")
        return {"backend": "rtl", "platform": "verilator",
                "device": f"training engine, {self.lanes} MAC lanes (Verilator model{netlist})"}

    def prepare(self, x, t):
        return self.model.quantize_input(x), self.model.quantize_target(t)

    def train_batch(self, x, t) -> None:
        self._train([(x, t)])

    def _train(self, batches) -> None:
        prog = Program()
        for x, t in batches:
            self.layout.write_batch(prog, x, t)
            prog.train()
        handles = self._collect_counters(prog)
        answers = self._run(prog)
        self._add_counters(answers, handles)

    def train_epoch(self, x, t, order, batch, on_batch=None) -> None:
        t0 = time.perf_counter()
        try:
            self._train_epoch(x, t, order, batch, on_batch)
        finally:
            self.wall_seconds += time.perf_counter() - t0

    def progress_info(self) -> str:
        return f"{self.sim_cycles / 1e6:,.1f} M cycles simulated"

    def _load_resident(self, x, t) -> bool:
        """Put the training set in the dataset buffer (once); False when it does not fit."""
        c = self.config
        if not c.dataset_buffer or len(x) > c.dataset_buffer:
            return False
        key = (id(x), len(x))
        if self._resident != key:
            n0, nL = c.sizes[0], c.sizes[-1]
            xs = np.zeros((len(x), n0), dtype=np.int64)
            ts = np.zeros((len(t), nL), dtype=np.int64)
            xs[:, :x.shape[1]] = x
            ts[:, :t.shape[1]] = t
            prog = Program()
            prog.wmem(Mem.DSX, 0, xs)
            prog.wmem(Mem.DST, 0, ts)
            self._run(prog)
            self._resident = key
        return True

    def _train_epoch(self, x, t, order, batch, on_batch) -> None:
        if not self.verify and self._load_resident(x, t):
            steps = -(-len(order) // batch)
            prog = Program()
            prog.wmem(Mem.ORDER, 0, np.asarray(order, dtype=np.int64))
            for r, v in (("order_len", len(order)), ("position", 0), ("batch", batch)):
                prog.wreg(REG[r], v)
            self._run(prog)
            for s in range(0, steps, self.batches_per_call):
                n = min(self.batches_per_call, steps - s)
                prog = Program()
                prog.wreg(REG["run_steps"], n)
                prog.run()
                handles = self._collect_counters(prog)
                self._add_counters(self._run(prog), handles)
                if on_batch is not None:
                    for _ in range(n):
                        on_batch()
            return
        starts = list(range(0, len(order), batch))
        if self.verify:
            for s in starts:
                idx = order[s:s + batch]
                self._verified_step(x[idx], t[idx])
                if on_batch is not None:
                    on_batch()
            return
        for g in range(0, len(starts), self.batches_per_call):
            group = [(x[order[s:s + batch]], t[order[s:s + batch]])
                     for s in starts[g:g + self.batches_per_call]]
            self._train(group)
            if on_batch is not None:
                for _ in group:
                    on_batch()

    def predict(self, x) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self._predict(x)
        finally:
            self.wall_seconds += time.perf_counter() - t0

    def _predict(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        B, L = self.config.batch, len(self.sizes) - 1
        prog = Program()
        reads = []
        for s in range(0, len(x), B):
            chunk = x[s:s + B]
            self.layout.write_batch(prog, chunk)
            prog.evaluate()
            reads.append((len(chunk), self.layout.read_activations(prog, L, len(chunk))))
        handles = self._collect_counters(prog)
        answers = self._run(prog)
        self._add_counters(answers, handles)
        if self.reference is not None:
            self.reference.forward(x)         # its events stay in step with the engine's
        out = np.concatenate([self.layout.activations(answers[h], L, n) for n, h in reads])
        return self.profile.activation.fmt.to_real(out)

    def _parameters(self):
        prog = Program()
        handles = self.layout.read_parameters(prog)
        step = prog.rreg(0x03)
        answers = self._run(prog)
        ws, bs = self.layout.parameters(answers, handles)
        return int(answers[step][0]) & 0xFFFFFFFF, list(zip(ws, bs))

    def _set_parameters(self, weights, biases, step):
        prog = Program()
        self.layout.write_parameters(prog, weights, biases)
        prog.wreg(0x03, step)
        self._run(prog)
        if self.reference is not None:
            self.reference.set_parameters([np.asarray(w, dtype=np.int64) for w in weights],
                                          [np.asarray(b, dtype=np.int64) for b in biases], step)

    def event_counts(self) -> dict:
        """The engine's cast-event counts (and the host's input casts); empty, as for a
        float backend, when the engine was built without event counters."""
        from ..hw.engine.config import EVENT_CODES
        if not self.config.event_counters:
            return {}
        out = {}
        for name, (o, un, tot) in zip(EVENT_SITES, self.model.events):
            out[name] = {"overflow": int(o), "underflow": int(un), "total": int(tot)}
        base = getattr(self, "_event_offsets", {})
        for site in EVENT_CODES.values():
            prev = base.get(site, {"overflow": 0, "underflow": 0, "total": 0})
            out[site] = {k: prev[k] + self.counters.get(f"{site}.{k}", 0)
                         for k in ("overflow", "underflow", "total")}
        return out

    def load_event_counts(self, counts, by_layer=None) -> None:
        from ..hw.engine.config import EVENT_CODES
        if not self.config.event_counters:
            return
        self.model.set_event_counts({"input": counts["input"]})
        self._event_offsets = {s: dict(counts[s]) for s in EVENT_CODES.values()}
        for s in EVENT_CODES.values():
            for k in ("overflow", "underflow", "total"):
                self.counters.pop(f"{s}.{k}", None)
        if self.reference is not None:
            self.reference.set_event_counts(counts, by_layer)

    # ---------------------------------------------------------------- hardware figures
    def hardware(self) -> dict:
        """The record's ``hardware`` section (docs/results.md)."""
        c = self.counters
        n = self.sizes
        phases = {k: c.get(f"cycles_{k}", 0) for k in ("forward", "backward", "gradient",
                                                        "control")}
        train_cycles = sum(phases.values())
        samples, steps = c.get("samples_trained", 0), c.get("steps", 0)
        macs = (2 * sum(n[l] * n[l - 1] for l in range(1, len(n)))
                + sum(n[l] * n[l + 1] for l in range(1, len(n) - 1)))
        per_sample = train_cycles / samples if samples else None
        clock, source = self._clock()
        busy = c.get("lane_busy", 0)
        return {
            "engine": {**self.config.describe(), "profile": self.profile.name,
                       "gen_hash": f"{self.config.gen_hash:08x}",
                       "netlist_hash": netlist_hash(self.config)},
            "lanes": self.lanes,
            "primitives": self.family or "generic",
            "steps": steps,
            "samples_trained": samples,
            "training_cycles": train_cycles,
            "cycles_per_step": train_cycles / steps if steps else None,
            "cycles_per_sample": per_sample,
            "cycles_per_phase": phases,
            "cycles_per_phase_per_sample": {k: v / samples for k, v in phases.items()}
            if samples else None,
            "evaluation_cycles": c.get("cycles_eval", 0),
            "host_io_cycles": c.get("cycles_host", 0),
            "macs_per_sample": macs,
            "mac_lane_utilisation": (macs * samples / (self.lanes * train_cycles)
                                     if train_cycles else None),
            "lane_busy_cycles": busy,
            "target_cycles_per_sample": 1.25 * macs / self.lanes,
            "simulated_cycles": self.sim_cycles,
            "simulated_cycles_per_second": (self.sim_cycles / self.sim_seconds
                                            if self.sim_seconds else None),
            "harness_overhead": ((self.wall_seconds - self.sim_seconds) / self.wall_seconds
                                 if self.wall_seconds else None),
            "build_seconds": self.build_seconds,
            "clock_mhz": clock,
            "clock_source": source,
            "fpga_samples_per_second": (clock * 1e6 / per_sample
                                        if clock and per_sample else None),
        }

    def _clock(self) -> tuple[float | None, str]:
        if self.clock_mhz is not None:
            return float(self.clock_mhz), "--clock-mhz"
        found = known_fmax(self.config)
        if found is None:
            return None, ("unknown: run fxbp synth engine --pnr for this engine, or give "
                          "--clock-mhz")
        mhz, where = found
        return mhz, where

    def inject_fault(self, mem: int, addr: int, xor: int) -> None:
        """Flip bits of one word in an engine memory through the host interface (for the
        fault-injection test of ``--verify-every-step``)."""
        prog = Program()
        h = prog.rmem(mem, addr, 1)
        value = int(self._run(prog)[h][0])
        prog = Program()
        prog.wmem(mem, addr, [value ^ xor])
        self._run(prog)

    def _verified_step(self, x, t) -> None:
        """One step on the engine and on golden; the first difference in dataflow order
        (activations, deltas from the output layer down, weights, biases, events) stops
        the run with its step, layer, tensor, index and raw values."""
        ref, lay = self.reference, self.layout
        step = ref.step
        trace: dict = {}
        acts = ref.train_step(x, t, self.eta, trace=trace)
        self._train([(x, t)])
        prog = Program()
        L, B = len(self.sizes) - 1, len(x)
        ha = [lay.read_activations(prog, l, B) for l in range(1, L + 1)]
        hd = [lay.read_deltas(prog, l, B) for l in range(1, L + 1)]
        hp = lay.read_parameters(prog)
        answers = self._run(prog)
        ws, bs = lay.parameters(answers, hp)
        order = [(f"activation a_{l}", l, lay.activations(answers[ha[l - 1]], l, B), acts[l],
                  ("b", "j")) for l in range(1, L + 1)]
        order += [(f"delta d_{l}", l, lay.deltas(answers[hd[l - 1]], l, B),
                   trace["deltas"][l - 1], ("b", "j")) for l in range(L, 0, -1)]
        order += [(f"weights W_{l}", l, ws[l - 1], ref.weights[l - 1], ("o", "i"))
                  for l in range(1, L + 1)]
        order += [(f"bias b_{l}", l, bs[l - 1], ref.biases[l - 1], ("o",))
                  for l in range(1, L + 1)]
        for name, l, got, exp, axes in order:
            got, exp = np.asarray(got, dtype=np.int64), np.asarray(exp, dtype=np.int64)
            diff = np.flatnonzero(got.reshape(-1) != exp.reshape(-1))
            if diff.size:
                i = int(diff[0])
                idx = np.unravel_index(i, exp.shape)
                where = ", ".join(f"{a}={int(v)}" for a, v in zip(axes, idx))
                raise VerifyMismatch(
                    f"--verify-every-step: step {step}, layer {l}, tensor {name}, index "
                    f"[{where}] (flat {i}): expected raw {int(exp.reshape(-1)[i])}, actual "
                    f"{int(got.reshape(-1)[i])}")
        mine, theirs = self.event_counts(), ref.event_counts()
        for site, counts in theirs.items() if mine else ():
            if site != "input" and mine[site] != counts:
                raise VerifyMismatch(f"--verify-every-step: step {step}, cast events at site "
                                     f"{site}: expected {counts}, actual {mine[site]}")
