"""A parameter sweep with chkpt: one shared data stage, a model per learning rate, and the best one.

    prepare --> train.bind(lr=...) --> evaluate --+
    prepare ------------------------------^       +--> best
    (one train and one evaluate per lr) ----------+

`bind` fixes a stage's keyword parameters, and their values are part of its key, so each learning rate has a
checkpoint of its own. `prepare` is used by every branch but has one key, so a run prepares the data once. A
second sweep with one more learning rate loads the results it already has and trains only the new model.

Run it from anywhere: python examples/sweep.py
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections import Counter
from typing import Any

import chkpt

Result = dict[str, Any]


@chkpt.Stage.wrap()
def prepare() -> dict[str, list[list[float]]]:
    """Noisy points on the line y = 3x + 2, split into training and test points."""
    rng = random.Random(0)
    points = [[x, 3 * x + 2 + rng.gauss(0, 0.3)] for x in (rng.uniform(-2, 2) for _ in range(80))]
    return {"train": points[:60], "test": points[60:]}


@chkpt.Stage.wrap()
def train(data: dict[str, list[list[float]]], lr: float, epochs: int) -> Result:
    """Fit y = w x + b by full-batch gradient descent on the mean squared error."""
    print(f"  training lr={lr} epochs={epochs}")
    w = b = 0.0
    points = data["train"]
    for _ in range(epochs):
        grad_w = sum(2 * (w * x + b - y) * x for x, y in points) / len(points)
        grad_b = sum(2 * (w * x + b - y) for x, y in points) / len(points)
        w, b = w - lr * grad_w, b - lr * grad_b
    return {"lr": lr, "epochs": epochs, "w": w, "b": b}


@chkpt.Stage.wrap()
def evaluate(model: Result, data: dict[str, list[list[float]]]) -> Result:
    """The model with its mean squared error on the test points."""
    points = data["test"]
    mse = sum((model["w"] * x + model["b"] - y) ** 2 for x, y in points) / len(points)
    return {**model, "test_mse": mse}


@chkpt.Stage.wrap()
def best(*results: Result) -> Result:
    """The result with the lowest test error: it takes any number of inputs."""
    return min(results, key=lambda result: result["test_mse"])


def sweep(rates: list[float], epochs: int = 20) -> chkpt.Pipeline[Result]:
    evaluated = [(prepare >> train.bind(lr=lr, epochs=epochs), prepare) >> evaluate for lr in rates]
    return tuple(evaluated) >> best


def show(run: chkpt.Run[Result]) -> None:
    def counted(outcome: str) -> str:
        names = Counter(r.name for r in run.records if (r.outcome == "loaded") == (outcome == "loaded"))
        return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in names.items()) or "-"

    print(run)
    print(f"computed: {counted('computed')}")
    print(f"loaded:   {counted('loaded')}")
    value = run.value
    print(f"best: lr={value['lr']} w={value['w']:.3f} b={value['b']:.3f} test_mse={value['test_mse']:.4f}\n")


def main() -> None:
    # A folder of its own under the system temp dir, emptied first so that the first sweep really computes.
    directory = os.path.join(tempfile.gettempdir(), "chkpt-sweep")
    shutil.rmtree(directory, ignore_errors=True)
    config = chkpt.Config(load=True, dir=directory)

    # prepare is an input of 6 stages here, but computed once: equal stages with equal inputs are one step.
    print("== first sweep: lr in 0.01, 0.03, 0.1 ==")
    show(sweep([0.01, 0.03, 0.1]).run(config))

    # One more rate: its train and evaluate are new keys. The other evaluations are loaded from their checkpoints
    # (so their train stages are not needed), prepare is loaded for the new branch, and best is computed again
    # because it has a new input.
    print("== second sweep: lr in 0.01, 0.03, 0.1, 0.3 ==")
    show(sweep([0.01, 0.03, 0.1, 0.3]).run(config))


if __name__ == "__main__":
    main()
