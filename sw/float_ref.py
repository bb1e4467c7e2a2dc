"""The float reference trainer (float64 or float32): the accuracy yardstick.

Same architecture, initial values, data order, loss and update rule as the
golden model (``docs/datapath.md`` sections 5-8) in ordinary floating point:
``eta = lr / batch`` times the gradient summed over the batch.
"""

from __future__ import annotations

import numpy as np

from .errors import FxbpError

__all__ = ["FloatMLP"]


class FloatMLP:
    """A sigmoid MLP trained with plain SGD in ``float64`` or ``float32``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first.
    weights, biases : sequence of float arrays
        Initial values; ``weights[l]`` is ``[out, in]``.
    loss : str
        ``"mse"`` or ``"xent"``.
    dtype : numpy dtype
        ``np.float64`` or ``np.float32``.
    """

    def __init__(self, sizes, weights, biases, *, loss: str = "mse", dtype=np.float64):
        if loss not in ("mse", "xent"):
            raise FxbpError(f"unknown loss {loss!r}: choose mse or xent")
        self.sizes = tuple(int(s) for s in sizes)
        self.dtype = np.dtype(dtype)
        self.loss = loss
        self.weights = [np.array(w, dtype=self.dtype) for w in weights]
        self.biases = [np.array(b, dtype=self.dtype) for b in biases]
        self.step = 0

    def forward(self, x) -> list[np.ndarray]:
        acts = [np.asarray(x, dtype=self.dtype)]
        one = self.dtype.type(1)
        for w, b in zip(self.weights, self.biases):
            z = acts[-1] @ w.T + b
            acts.append(one / (one + np.exp(-z)))
        return acts

    def predict(self, x) -> np.ndarray:
        return self.forward(x)[-1].astype(np.float64)

    def gradients(self, x, t):
        """Per-layer ``(dL/dW, dL/db)`` summed over the batch, and the activations."""
        acts = self.forward(x)
        t = np.asarray(t, dtype=self.dtype)
        one = self.dtype.type(1)
        grads = [None] * len(self.weights)
        delta = None
        for l in range(len(self.weights) - 1, -1, -1):
            a = acts[l + 1]
            if l == len(self.weights) - 1:
                err = a - t
                delta = err if self.loss == "xent" else err * a * (one - a)
            else:
                delta = (delta @ self.weights[l + 1]) * a * (one - a)
            grads[l] = (delta.T @ acts[l], delta.sum(axis=0))
        return grads, acts

    def train_step(self, x, t, eta: float):
        """One SGD step: ``w -= eta * sum_batch(dL/dw)``, with ``eta = lr / batch``."""
        grads, acts = self.gradients(x, t)
        eta = self.dtype.type(eta)
        for l, (gw, gb) in enumerate(grads):
            self.weights[l] -= eta * gw
            self.biases[l] -= eta * gb
        self.step += 1
        return acts
