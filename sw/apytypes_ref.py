"""An independent implementation of one golden training step, written with apytypes.

apytypes (a test-only dependency) does exact fixed-point arithmetic and casts
in C++. This module rebuilds the datapath of ``docs/datapath.md`` from its
arrays, for two uses: a whole-step bit-exact cross-check of the golden model
(``tests/test_sw_golden.py``) and the speed comparison in
``benchmarks/golden_step.py``. Deterministic roundings and the LUT sigmoid only.
"""

from __future__ import annotations

import numpy as np

from .fixed import Overflow, QFormat, Rounding
from .profile import PrecisionProfile, Stage
from .sigmoid import lut_address, sigmoid_lut_table

__all__ = ["ApyMLP"]


def _modes(stage: Stage):
    import apytypes as apy
    q = {Rounding.TRUNCATE: apy.QuantizationMode.TRN,
         Rounding.TOWARD_ZERO: apy.QuantizationMode.TRN_ZERO,
         Rounding.HALF_UP: apy.QuantizationMode.RND,
         Rounding.NEAREST_EVEN: apy.QuantizationMode.RND_CONV}.get(stage.rounding)
    if q is None:
        raise ValueError(f"the apytypes reference has no {stage.rounding.value!r} rounding")
    o = apy.OverflowMode.SAT if stage.overflow is Overflow.SATURATE else apy.OverflowMode.WRAP
    return q, o


def _signed(fmt: QFormat) -> tuple[int, int]:
    """apytypes formats are two's complement: an unsigned format gets one more bit."""
    return (fmt.int_bits if fmt.signed else fmt.int_bits + 1), fmt.frac_bits


class ApyMLP:
    """The golden datapath on ``apytypes.APyFixedArray`` (see module docstring)."""

    def __init__(self, sizes, profile: PrecisionProfile, weights, biases, *, loss="mse"):
        import apytypes as apy
        self.apy = apy
        self.p = profile
        self.loss = loss
        self.sizes = tuple(sizes)
        self.weights = [self.array(w, profile.weight.fmt) for w in weights]
        self.biases = [self.array(b, profile.bias.fmt) for b in biases]
        self.table = sigmoid_lut_table(profile.sigmoid, profile.activation.fmt)
        fa = profile.activation.fmt.frac_bits
        self.one = apy.APyFixed(1 << fa, int_bits=2, frac_bits=fa)

    def array(self, raw, fmt: QFormat):
        ib, fb = _signed(fmt)
        # apytypes 0.5.1 reads a NumPy int64 array as signed raw values (it does not
        # wrap bit patterns given that way), which is exactly our representation.
        return self.apy.APyFixedArray(np.asarray(raw, dtype=np.int64), int_bits=ib, frac_bits=fb)

    @staticmethod
    def raw(arr) -> np.ndarray:
        """Raw two's-complement integers of an apytypes array."""
        n = arr.int_bits + arr.frac_bits
        u = np.asarray(arr.to_bits(numpy=True)).astype(np.int64)
        return np.where(u >= (1 << (n - 1)), u - (1 << n), u)

    def cast(self, x, stage: Stage):
        ib, fb = _signed(stage.fmt)
        q, o = _modes(stage)
        # Rebuilt from its bits: after a wrapping cast apytypes 0.5.1 can keep computing
        # with a value outside the format (-4.00195 in Q3.11) while its bits are the
        # wrapped ones; the bits are what the format holds.
        return self.array(self.raw(x.cast(int_bits=ib, frac_bits=fb, quantization=q,
                                          overflow=o)), stage.fmt)

    def sigmoid(self, z):
        p = self.p
        idx = lut_address(self.raw(z), p.preactivation.fmt, p.sigmoid)
        return self.array(self.table[idx], p.activation.fmt)

    def forward(self, x):
        acts = [x]
        for w, b in zip(self.weights, self.biases):
            acts.append(self.sigmoid(self.cast(acts[-1] @ w.T + b, self.p.preactivation)))
        return acts

    def train_step(self, x_raw, t_raw, eta: tuple[int, int]):
        p = self.p
        x = self.array(x_raw, p.input.fmt)
        t = self.array(t_raw, p.activation.fmt)
        acts = self.forward(x)
        n = len(self.weights)
        deltas = [None] * n
        for l in range(n - 1, -1, -1):
            a = acts[l + 1]
            if l == n - 1:
                err = self.cast(a - t, p.error)
            else:
                err = self.cast(deltas[l + 1] @ self.weights[l + 1], p.error)
            if l == n - 1 and self.loss == "xent":
                deltas[l] = self.cast(err, p.delta)
            else:
                d = self.cast(a * (self.one - a), p.derivative)
                deltas[l] = self.cast(err * d, p.delta)
        eta_raw, eta_frac = eta
        lr = self.apy.APyFixed(eta_raw, int_bits=max(1, eta_raw.bit_length() + 1 - eta_frac),
                               frac_bits=eta_frac)
        for l in range(n):
            g = self.cast(deltas[l].T @ acts[l], p.gradient)
            gb = self.cast(deltas[l].sum(axis=0), p.gradient)
            self.weights[l] = self.cast(self.weights[l] - lr * g, p.weight)
            self.biases[l] = self.cast(self.biases[l] - lr * gb, p.bias)
        return acts

    def layers(self):
        return [(self.raw(w), self.raw(b)) for w, b in zip(self.weights, self.biases)]
