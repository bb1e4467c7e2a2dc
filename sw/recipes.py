"""Training recipes: the defaults of each built-in dataset.

A recipe gives what a first run needs to learn well with no options but
``--dataset``: epochs, batch, learning rate, hidden widths, loss and the rounding
of the training casts. Every option the user gives overrides its part; the result
record says which values came from where (``docs/results.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Recipe", "RECIPES", "FILE_RECIPE", "recipe_for"]


@dataclass(frozen=True)
class Recipe:
    """Defaults of a training run.

    Parameters
    ----------
    epochs, batch : int
        Passes over the training set, samples per step.
    lr : float
        Learning rate; ``eta = lr / batch`` per summed sample gradient.
    hidden : tuple of int or None
        Hidden widths; ``None`` takes the dataset's own default (user files).
    loss : str
        ``"mse"`` or ``"xent"``.
    rounding : str or None
        Rounding of the training casts for the preset profiles; ``None`` keeps the
        profile's own roundings. A TOML profile always keeps its own.
    """

    epochs: int
    batch: int
    lr: float
    hidden: tuple[int, ...] | None
    loss: str = "mse"
    rounding: str | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden) if self.hidden is not None else None
        return d


#: Recipes of the built-in datasets, measured on golden fx16 with seed 0
#: (README "Numbers": digits >= 95 %, iris >= 93 %, xor 100 % test accuracy).
RECIPES: dict[str, Recipe] = {
    "seed-neuron": Recipe(epochs=1, batch=1, lr=0.01, hidden=(), loss="mse"),
    "xor": Recipe(epochs=500, batch=4, lr=2.0, hidden=(4,), loss="mse"),
    "iris": Recipe(epochs=100, batch=8, lr=2.0, hidden=(8,), loss="mse"),
    "digits": Recipe(epochs=30, batch=32, lr=2.0, hidden=(32,), loss="mse", rounding="stochastic"),
}

#: Defaults for user data (``--data``); the batch is capped at the training-set size.
FILE_RECIPE = Recipe(epochs=30, batch=32, lr=2.0, hidden=None, loss="mse")


def recipe_for(dataset: str | None) -> tuple[str, Recipe]:
    """``(name, recipe)`` for a built-in dataset name, or the file recipe for ``None``."""
    if dataset in RECIPES:
        return dataset, RECIPES[dataset]
    return "file", FILE_RECIPE
