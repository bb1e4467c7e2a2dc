"""The smallest use of the Python API: build a network, train it bit-accurately, read the digest.

    python examples/api_example.py [--epochs 5]
"""

import argparse

from fxbp.sw import TrainConfig, Trainer

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=5)
args = ap.parse_args()

config = TrainConfig(dataset="digits", backend="golden", precision="fx16", rounding="stochastic",
                     hidden=(32,), epochs=args.epochs, batch=32, lr=2.0, seed=0)
trainer = Trainer(config)                 # validates everything, builds the 64-32-10 network
result = trainer.run()                    # trains; result is the JSON record (docs/results.md)

print(f"test accuracy {result['final_test_accuracy']:.4f}")
print(f"weights digest {result['weights_digest']}")
layer1 = trainer.runtime.raw_layers()[0][0]          # raw Q4.12 integers, [32, 64]
print(f"layer 1 weights: {layer1.shape} raw int64, first row starts {layer1[0, :4].tolist()}")
