"""A user's module file that tests edit and import again, as a person edits and reruns: a small pipeline with a
helper, a constant, a pinned version and a bound parameter (test_explain, test_accept)."""

from __future__ import annotations

import importlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import chkpt

BASE = """
import chkpt

THRESHOLD = 2


def clean(word):
    return word.strip(".,").lower()


@chkpt.Stage.wrap()
def words(text):
    return [clean(w) for w in text.split()]


@chkpt.Stage.wrap(version="1")
def pinned(ws):
    return len(ws)


@chkpt.Stage.wrap()
def counts(ws, n, top=3):
    found = {}
    for w in ws:
        found[w] = found.get(w, 0) + 1
    return sorted(w for w, k in found.items() if k >= THRESHOLD)[:top] + [n]


source = words << "The cat sat. The cat ran, the dog sat."
pipeline = (source, source >> pinned) >> counts.bind(top=2)
"""


class Project:
    """A module file in a folder on sys.path, its store, and edits to it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"explained_{uuid.uuid4().hex[:10]}"
        self.path = folder / f"{self.name}.py"
        self.store = folder / "store"
        self.text = BASE
        self.path.write_text(self.text)
        self.module: ModuleType = importlib.import_module(self.name)

    def config(self, **options: Any) -> chkpt.Config:
        return chkpt.Config(**{"dir": self.store, "verbose": False, "load": True, **options})

    def run(self) -> None:
        self.module.pipeline.run(self.config())

    def edit(self, old: str, new: str) -> None:
        assert old in self.text, old
        self.text = self.text.replace(old, new)
        self.path.write_text(self.text)
        later = time.time() + 10  # a new version of the file, whatever the clock's resolution
        os.utime(self.path, (later, later))
        self.module = importlib.reload(self.module)

    def explain(self, **options: Any) -> dict[str, tuple[str, str]]:
        explained = self.module.pipeline.explain(self.config(**options))
        return {d.stage: (d.action, d.reason) for d in explained}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A Project in `tmp_path`, importable while the test runs."""
    sys.path.insert(0, str(tmp_path))
    try:
        made = Project(tmp_path)
        yield made
        sys.modules.pop(made.name, None)
    finally:
        sys.path.remove(str(tmp_path))
