"""The PyTorch float32 baseline: the network as a GPU user would train it.

``nn.Linear`` layers with sigmoids, autograd and ``torch.optim.SGD``, in float32 on
the CPU or on CUDA. It trains the float reference's problem (``fxbp.sw.float_ref``):
the same architecture, initial values, data order and loss, and the same update
``w -= (lr / batch) * sum over the batch of dL/dw``: the loss is summed over the batch
(mse ``1/2 (y - t)**2``; xent the binary cross-entropy of the sigmoid outputs, taken
from the logits as PyTorch users do) and SGD runs at ``lr / batch``.

An optional extra (``pip install fxbp[torch]``); without torch the runtime refuses to
start with a one-line error naming the extra.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .errors import FxbpError
from .runtime import Runtime

__all__ = ["TorchRuntime", "torch_missing", "torch_devices"]


def torch_missing() -> str | None:
    """Why the PyTorch baseline cannot run here, or ``None`` when torch is installed."""
    if importlib.util.find_spec("torch") is None:
        return ("torch is not installed (the optional PyTorch float32 baseline): "
                "pip install 'fxbp[torch]'")
    return None


def torch_devices() -> list[str]:
    """``--device`` values the baseline can use here: ``cpu``, and ``gpu`` with CUDA."""
    import torch
    return ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])


def _select(device: str):
    import torch
    if device not in ("auto", "cpu", "gpu"):
        raise FxbpError(f"unknown device {device!r} for the torch backend: choose auto, cpu "
                        f"or gpu")
    if device == "gpu" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise FxbpError("torch sees no CUDA device (torch.cuda.is_available() is False): "
                            "use --device cpu")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class TorchRuntime(Runtime):
    """PyTorch float32 training on ``device`` (``auto``: CUDA when present, else CPU).

    Its digest quantises the final weights into the profile's formats, as the float
    reference's does; it is not comparable bit for bit.
    """

    name = "torch"

    def __init__(self, sizes, profile, init_weights, init_biases, *, loss, seed, lr, batch,
                 device="auto"):
        super().__init__(sizes, profile, init_weights, init_biases, loss=loss, seed=seed,
                         lr=lr, batch=batch)
        why = torch_missing()
        if why is not None:
            raise FxbpError(why)
        if not (np.isfinite(lr) and lr > 0):
            raise FxbpError(f"the learning rate must be a positive number, not {lr!r}")
        import torch
        self.torch = torch
        self.device = _select(device)
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(n_in, n_out) for n_in, n_out in zip(self.sizes, self.sizes[1:]))
        self._set_parameters(init_weights, init_biases, 0)
        self.layers.to(self.device)
        self.optimizer = torch.optim.SGD(self.layers.parameters(), lr=lr / batch)

    def describe(self) -> dict:
        t = self.torch
        if self.device.type == "cuda":
            device = f"CUDA: {t.cuda.get_device_name(self.device)}"
        else:
            device = f"CPU ({t.get_num_threads()} threads)"
        return {"backend": self.name, "platform": f"PyTorch {t.__version__}", "device": device}

    def _forward(self, x):
        for layer in self.layers[:-1]:
            x = self.torch.sigmoid(layer(x))
        return self.layers[-1](x)                   # the output layer's pre-activations

    def prepare(self, x, t):
        f32 = self.torch.float32
        return (self.torch.as_tensor(np.asarray(x, dtype=np.float32), dtype=f32, device=self.device),
                self.torch.as_tensor(np.asarray(t, dtype=np.float32), dtype=f32, device=self.device))

    def train_batch(self, x, t) -> None:
        f = self.torch.nn.functional
        z = self._forward(x)
        if self.loss == "xent":
            loss = f.binary_cross_entropy_with_logits(z, t, reduction="sum")
        else:
            loss = 0.5 * ((self.torch.sigmoid(z) - t) ** 2).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1

    def train_epoch(self, x, t, order, batch, on_batch=None) -> None:
        idx = self.torch.as_tensor(np.asarray(order, dtype=np.int64), device=self.device)
        for s in range(0, len(order), batch):
            rows = idx[s:s + batch]
            self.train_batch(x[rows], t[rows])
            if on_batch is not None:
                on_batch()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def predict(self, x) -> np.ndarray:
        with self.torch.no_grad():
            return self.torch.sigmoid(self._forward(x)).cpu().numpy().astype(np.float64)

    def _parameters(self):
        return self.step, [(layer.weight.detach().cpu().numpy().copy(),
                            layer.bias.detach().cpu().numpy().copy()) for layer in self.layers]

    def _set_parameters(self, weights, biases, step):
        with self.torch.no_grad():
            for layer, w, b in zip(self.layers, weights, biases):
                layer.weight.copy_(self.torch.as_tensor(np.asarray(w, dtype=np.float32)))
                layer.bias.copy_(self.torch.as_tensor(np.asarray(b, dtype=np.float32)))
        self.step = step
