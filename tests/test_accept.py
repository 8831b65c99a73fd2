"""`pipeline.accept(stage)` and `chkpt accept`: a harmless edit's checkpoints stored again under the new keys,
down the pipeline as far as nothing else changed, without computing; and what cannot be accepted."""

from __future__ import annotations

import subprocess
import sys

import pytest
from edited_project import Project

import chkpt

REFACTOR = (
    "    return [clean(w) for w in text.split()]",
    "    pieces = text.split()\n    return [clean(p) for p in pieces]",
)


def computed(run: chkpt.Run[object]) -> list[str]:
    return [r.name for r in run.records if r.outcome != "loaded"]


def test_an_accepted_refactor_loads_down_the_pipeline_without_computing(project: Project) -> None:
    project.run()
    before = project.module.pipeline.run(project.config()).value
    project.edit(*REFACTOR)
    assert project.explain()["words"] == ("compute", "code of words changed")
    accepted = project.module.pipeline.accept("words", project.config())
    assert [a.stage for a in accepted] == ["words", "pinned", "counts"]
    assert all(a.old != a.new for a in accepted)
    explained = project.explain()
    assert explained["counts"][0] == "load" and explained["counts"][1].startswith("accepted edit (stored from ")
    run = project.module.pipeline.run(project.config())
    assert computed(run) == [] and run.value == before
    store = chkpt.Store(project.store)
    (newest,) = [cp for cp in store.checkpoints("words") if cp.key == accepted[0].new]
    record = store.record(newest)
    assert record["accepted_from"] == accepted[0].old and record["why"]["function"].endswith(".words")
    assert project.module.pipeline.accept("words", project.config()) == []  # nothing left to accept
    assert project.module.pipeline.accept("counts", project.config()) == []


def test_acceptance_stops_where_something_else_changed(project: Project) -> None:
    project.run()
    project.edit(*REFACTOR)
    project.edit("THRESHOLD = 2", "THRESHOLD = 3")
    accepted = project.module.pipeline.accept("words", project.config())
    assert [a.stage for a in accepted] == ["words", "pinned"]
    # its inputs' keys are new too, but their checkpoints were accepted from those it was made from
    assert project.explain()["counts"] == ("compute", "constant THRESHOLD changed")
    run = project.module.pipeline.run(project.config())
    assert computed(run) == ["counts"]


def test_a_stage_whose_inputs_changed_cannot_be_accepted(project: Project) -> None:
    project.run()
    project.edit("The cat sat.", "The cat sat down.")
    with pytest.raises(chkpt.ChkptError, match="inputs changed too"):
        project.module.pipeline.accept("words", project.config())
    with pytest.raises(chkpt.ConfigError, match="no such stage"):
        project.module.pipeline.accept("nope", project.config())
    with pytest.raises(chkpt.ChkptError, match="'counts'"):  # downstream, its inputs changed with the text
        project.module.pipeline.accept(project.module.counts, project.config())


def test_chkpt_accept_prints_what_it_stored(project: Project) -> None:
    project.run()
    project.edit(*REFACTOR)
    command = [
        sys.executable,
        "-m",
        "chkpt",
        "accept",
        f"{project.path}:pipeline",
        "words",
        "--dir",
        str(project.store),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [
        ["accepted", "words"],
        ["accepted", "pinned"],
        ["accepted", "counts"],
    ]
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.stdout.startswith("nothing to accept")
