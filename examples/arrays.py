"""chkpt with real data: a file read through `chkpt.file`, numpy arrays stored as .npy, and a memory-mapped load.

1. The first run reads a measurements file, builds a matrix, standardizes it and computes its covariance: every
   stage computes, and the arrays are stored as .npy files (written straight from memory, no second copy).
2. The second run loads the summary from its checkpoint: nothing computes.
3. A new stage that counts outliers in the standardized matrix loads that matrix as a read-only memory map.
4. Then the measurements file is edited. Its content is part of the key of every stage downstream of it, so the
   last run recomputes all of them.

Needs numpy: pip install "chkpt[numpy]". Run it from anywhere: python examples/arrays.py
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile

import numpy as np

import chkpt


@chkpt.Stage.wrap(format="numpy")
def read_measurements(path: str) -> np.ndarray:
    """One row per line of the file, one column per comma-separated number."""
    return np.loadtxt(path, delimiter=",", ndmin=2)


@chkpt.Stage.wrap(format="numpy", mmap=True)
def standardize(matrix: np.ndarray) -> np.ndarray:
    return np.asarray((matrix - matrix.mean(axis=0)) / matrix.std(axis=0))


@chkpt.Stage.wrap(format="numpy")
def covariance(standard: np.ndarray) -> np.ndarray:
    return np.asarray(standard.T @ standard / len(standard))


@chkpt.Stage.wrap()
def outliers(standard: np.ndarray, limit: float = 3.0) -> dict[str, object]:
    return {"outliers": int((np.abs(standard) > limit).any(axis=1).sum()), "loaded as": type(standard).__name__}


@chkpt.Stage.wrap()
def summary(matrix: np.ndarray, cov: np.ndarray) -> dict[str, object]:
    return {
        "rows": int(matrix.shape[0]),
        "columns": int(matrix.shape[1]),
        "strongest correlation": round(float(np.abs(cov - np.eye(len(cov))).max()), 3),
    }


def write_measurements(path: str, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w") as file:
        for _ in range(rows):
            x = rng.gauss(0, 1)
            file.write(f"{x:.4f},{2 * x + rng.gauss(0, 0.5):.4f},{rng.gauss(5, 2):.4f}\n")


def main() -> None:
    # Everything lives in a folder of its own under the temp dir, emptied first so that the first run computes.
    folder = os.path.join(tempfile.gettempdir(), "chkpt-arrays")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    data = os.path.join(folder, "measurements.csv")
    write_measurements(data, rows=20_000, seed=1)

    matrix = (chkpt.file(data),) >> read_measurements
    standard = matrix >> standardize
    pipeline = (matrix, standard >> covariance) >> summary
    config = chkpt.Config(load=True, dir=os.path.join(folder, "checkpoints"), verbose=False)

    for title, target in [
        ("first run: computes every stage", pipeline),
        ("second run: loads the summary", pipeline),
        ("a new stage: loads standardize's array as a memory map", standard >> outliers),
        ("after editing the file: everything downstream of it recomputes", pipeline),
    ]:
        if title.startswith("after"):
            write_measurements(data, rows=20_000, seed=2)
        run = target.run(config)
        print(f"== {title} ==")
        print(run)
        print(f"computed: {', '.join(r.name for r in run.records if r.outcome != 'loaded') or '-'}")
        print(f"loaded:   {', '.join(r.name for r in run.records if r.outcome == 'loaded') or '-'}")
        print(f"value:    {run.value}\n")

    files = sorted(os.listdir(os.path.join(folder, "checkpoints", "standardize")))
    print("standardize's checkpoints:", ", ".join(files))


if __name__ == "__main__":
    main()
