"""chkpt quickstart: a small pipeline, run three times.

1. The first run computes every stage (one of them is slow) and stores each result as a checkpoint.
2. The second run, same pipeline and same config, loads the final result from its checkpoint: fast, nothing
   computed. A loaded stage needs nothing upstream of it, so nothing upstream is run or even loaded.
3. The third run changes a parameter of the last stage: only that stage is computed, from its input's checkpoint.

Run it from anywhere: python examples/quickstart.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import chkpt


@chkpt.Stage.wrap()
def download() -> str:
    """Pretend to fetch a document over a slow network."""
    time.sleep(1.0)
    return "the cat sat on the mat and the dog sat on the cat and the bird sat on the dog"


@chkpt.Stage.wrap()
def stopwords() -> list[str]:
    return ["the", "on", "and", "a"]


@chkpt.Stage.wrap()
def count_words(text: str, ignore: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.split():
        if word not in ignore:
            counts[word] = counts.get(word, 0) + 1
    return counts


@chkpt.Stage.wrap()
def top_words(counts: dict[str, int], n: int = 2) -> list[str]:
    return sorted(counts, key=lambda word: (-counts[word], word))[:n]


# Composing runs nothing yet. A tuple feeds several stages' outputs to one stage, in order: count_words gets
# download's output as `text` and stopwords' output as `ignore`. `>>` chains a stage after a pipeline.
counts = (download, stopwords) >> count_words
pipeline = counts >> top_words
# bind() fixes a parameter; its value is part of the stage's key, so this is a different result to store.
top_three = counts >> top_words.bind(n=3)


def show(title: str, run: chkpt.Run[list[str]], seconds: float) -> None:
    computed = [r.name for r in run.records if r.outcome != "loaded"]
    loaded = [r.name for r in run.records if r.outcome == "loaded"]
    print(f"== {title} ==")
    print(run)  # a table: one row per stage that was loaded or computed
    print(f"computed: {', '.join(computed) or '-'}")
    print(f"loaded:   {', '.join(loaded) or '-'}")
    print(f"value:    {run.value}")
    print(f"time:     {seconds:.3f} s\n")


def main() -> None:
    # Checkpoints go to a folder of their own under the system temp dir, so that this example leaves nothing in
    # your working copy. It is emptied first so that the first run really computes. (Config() without `dir`
    # uses $CHKPT_DIR, else .chkpt in the current directory.)
    directory = os.path.join(tempfile.gettempdir(), "chkpt-quickstart")
    shutil.rmtree(directory, ignore_errors=True)
    # load=True: use a stored result when its key matches. Results are stored by default.
    config = chkpt.Config(load=True, dir=directory)

    for title, target in [
        ("first run: computes and stores every stage", pipeline),
        ("second run: loads the result, computes nothing", pipeline),
        ("third run: n=3 is a new key, so top_words computes from count_words' checkpoint", top_three),
    ]:
        started = time.perf_counter()
        run = target.run(config)
        show(title, run, time.perf_counter() - started)


if __name__ == "__main__":
    main()
