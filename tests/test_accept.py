"""`pipeline.accept(stage)` and `chkpt accept`: a harmless edit's checkpoints stored again under the new keys,
down the pipeline as far as nothing else changed, without computing; and what cannot be accepted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


SWEEP = """
import chkpt


@chkpt.Stage.wrap()
def data():
    return [1, 2, 3]


@chkpt.Stage.wrap(format="FORMAT")
def train(xs, lr):
    return {"lr": lr, "weight": sum(x * lr for x in xs)}


@chkpt.Stage.wrap()
def collect(*models):
    return [m["weight"] for m in models]


source = () >> data
pipeline = tuple(source >> train.bind(lr=lr) for lr in (0.1, 0.01)) >> collect
"""

HARMLESS = ("    return {", "    rate = lr\n    return {")


def sweep_project(project: Project, fmt: str = "json") -> None:
    project.text = SWEEP.replace("FORMAT", fmt)
    project.path.write_text(project.text)
    project.edit("import chkpt", "import chkpt  # a sweep")


def test_each_binding_of_a_stage_takes_its_own_checkpoint(project: Project) -> None:
    sweep_project(project)
    before = project.module.pipeline.run(project.config()).value
    assert before[0] != before[1]
    project.edit(*HARMLESS)
    accepted = project.module.pipeline.accept("train", project.config())
    assert [a.stage for a in accepted] == ["train", "train", "collect"]
    run = project.module.pipeline.run(project.config())
    assert computed(run) == [] and run.value == before


def test_a_stage_of_another_module_with_the_same_name_is_never_taken(project: Project, tmp_path: Path) -> None:
    other = tmp_path / f"other_{project.name}.py"
    other.write_text(SWEEP.replace("FORMAT", "json").replace("[1, 2, 3]", "[5, 5, 5]"))
    done = subprocess.run(
        [sys.executable, "-c", f"import chkpt, runpy; runpy.run_path({str(other)!r})['pipeline'].run("
         f"chkpt.Config(dir={str(project.store)!r}, verbose=False))"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sweep_project(project)
    project.edit("[1, 2, 3]", "[1, 2, 3][:]")  # an edit of data, which the other module's data never had
    # the other module's data checkpoint is newer and has the same (no) inputs, but it is not this stage's
    with pytest.raises(chkpt.ChkptError, match=r"'data' has no checkpoint|differ in more than its code"):
        project.module.pipeline.accept("data", project.config())
    run = project.module.pipeline.run(project.config())
    assert run.value == [0.6000000000000001, 0.06]


def test_what_cannot_be_accepted_says_why_and_stores_nothing(project: Project, tmp_path: Path) -> None:
    sweep_project(project)
    with pytest.raises(chkpt.ChkptError, match=r"has no checkpoint in .*is that the store"):
        project.module.pipeline.accept("train", project.config())
    project.module.pipeline.run(project.config())
    project.edit('format="json"', 'format="pickle"')
    with pytest.raises(chkpt.ChkptError, match=r"differ in more than its code \(format\)"):
        project.module.pipeline.accept("train", project.config())
    project.edit('format="pickle"', 'format="json"')
    project.edit(*HARMLESS)
    for path in (project.store / "train").iterdir():
        if path.name.endswith(".json") and not path.name.startswith("."):
            path.write_bytes(path.read_bytes()[:-5])  # every train checkpoint damaged
    stored = {cp.key for cp in chkpt.Store(project.store).checkpoints()}
    with pytest.raises(chkpt.ChkptError, match=r"'train' it could take cannot be read"):
        project.module.pipeline.accept("train", project.config())
    assert {cp.key for cp in chkpt.Store(project.store).checkpoints()} == stored
    assert project.explain()["train"][0] == "compute"
