"""Amaranth generators for the fxbp training datapath (see docs/datapath.md).

Each unit is a ``wiring.Component`` with valid/ready streams, checked keyword-only
parameters and a documented latency. ``fxbp gen`` emits Verilog for any of them.
"""

from .cast import Cast
from .mac import MAC, max_exact_fan_in
from .sigmoid import Sigmoid
from .sigmoid_derivative import SigmoidDerivative
from .stream_register import StreamRegister
from .weight_update import WeightUpdate

__all__ = ["MAC", "Cast", "Sigmoid", "SigmoidDerivative", "StreamRegister", "WeightUpdate",
           "max_exact_fan_in"]
