"""`pipeline.explain(config)` and `chkpt explain`: a dry run that says, for each stage, what a run would do and
why; for a stage that computes, what changed since its newest checkpoint. Each kind of change is made to a real
module file, which is imported again, as a user edits and reruns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from edited_project import Project

import chkpt
from chkpt import keys


def test_nothing_stored_yet_then_everything_loads_or_is_skipped(project: Project) -> None:
    assert project.explain() == {
        "words": ("compute", "no checkpoint of this stage yet"),
        "pinned": ("compute", "no checkpoint of this stage yet"),
        "counts": ("compute", "no checkpoint of this stage yet"),
    }
    project.run()
    assert project.explain() == {
        "words": ("skip", "not needed: what uses it is loaded"),
        "pinned": ("skip", "not needed: what uses it is loaded"),
        "counts": ("load", "checkpoint found"),
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("if k >= THRESHOLD", "if k > THRESHOLD - 1", {"counts": "code of counts changed"}),
        (
            'strip(".,")',
            'strip(".,!")',
            {
                "words": "helper clean changed",
                "pinned": "input words changed",
                "counts": "input words changed; input pinned changed",
            },
        ),
        ("THRESHOLD = 2", "THRESHOLD = 3", {"counts": "constant THRESHOLD changed"}),
        ("bind(top=2)", "bind(top=5)", {"counts": "param top changed (2 -> 5)"}),
        (
            "The cat sat.",
            "The cat sat down.",
            {
                "words": "input 1 changed",
                "pinned": "input words changed",
                "counts": "input words changed; input pinned changed",
            },
        ),
        ('version="1"', 'version="2"', {"pinned": "version changed ('1' -> '2')", "counts": "input pinned changed"}),
        (
            "@chkpt.Stage.wrap()\ndef counts",
            '@chkpt.Stage.wrap(format="pickle")\ndef counts',
            {"counts": "format changed (json -> pickle)"},
        ),
        (
            "return [clean(w)",
            "THRESHOLD\n    return [clean(w)",
            {
                "words": "code of words changed; now uses constant THRESHOLD",
                "pinned": "input words changed",
                "counts": "input words changed; input pinned changed",
            },
        ),
    ],
)
def test_each_kind_of_change_is_named(project: Project, old: str, new: str, expected: dict[str, str]) -> None:
    project.run()
    project.edit(old, new)
    explained = project.explain()
    computed = {stage: reason for stage, (action, reason) in explained.items() if action == "compute"}
    assert computed == expected
    for stage, (action, reason) in explained.items():
        if stage not in expected:
            assert (action, reason) in {("load", "checkpoint found"), ("skip", "not needed: what uses it is loaded")}


def test_several_changes_are_named_together(project: Project) -> None:
    project.run()
    project.edit("THRESHOLD = 2", "THRESHOLD = 3")
    project.edit("bind(top=2)", "bind(top=4)")
    assert project.explain()["counts"] == ("compute", "constant THRESHOLD changed; param top changed (2 -> 4)")


def test_a_package_version_is_named(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.edit("import chkpt\n", "import chkpt\nimport hypothesis\n")
    project.edit("    return len(ws)", "    return len(ws) + 0 * len(hypothesis.__name__)")
    project.edit('version="1"', "")
    project.run()
    real = keys.package_version  # type: ignore[attr-defined]
    monkeypatch.setattr(keys, "package_version", lambda name: b"99.0" if name == "hypothesis" else real(name))
    assert project.explain()["pinned"] == ("compute", "package hypothesis changed")


def test_load_lists_and_loading_off_are_the_reasons_given(project: Project) -> None:
    project.run()
    project.edit("bind(top=2)", "bind(top=5)")
    assert project.explain(load=["counts"]) == {
        "words": ("compute", "not in the load list"),
        "pinned": ("compute", "not in the load list"),
        "counts": ("compute", "param top changed (2 -> 5)"),
    }
    assert {action for action, _ in project.explain(load=False).values()} == {"compute"}
    assert project.explain(load=False)["words"] == ("compute", "loading is off")


def test_a_file_the_stage_reads_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("one")

    @chkpt.Stage.wrap()
    def size(text: str) -> int:
        return len(text)

    def pipeline() -> chkpt.Pipeline[int]:
        return (chkpt.file(data),) >> size

    config = chkpt.Config(dir=tmp_path / "store", verbose=False, load=True)
    pipeline().run(config)
    data.write_text("three")
    explained = {d.stage: d.reason for d in pipeline().explain(config)}
    assert explained == {f"file:{data.name}": "the file it reads changed", "size": f"input file:{data.name} changed"}


def test_explain_stores_and_runs_nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a stage ran")

    monkeypatch.setattr(project.module.clean, "__code__", refuse.__code__)  # words calls clean
    explained = project.module.pipeline.explain(project.config())
    assert not project.store.exists()
    monkeypatch.undo()
    project.run()
    before = {p: p.stat().st_mtime_ns for p in project.store.rglob("*")}
    project.edit("THRESHOLD = 2", "THRESHOLD = 3")
    project.module.pipeline.explain(project.config())
    assert {p: p.stat().st_mtime_ns for p in project.store.rglob("*")} == before
    assert len(explained) == 3 and str(explained).splitlines()[0].split() == ["stage", "key", "action", "why"]
    assert explained["counts"].action == "compute"
    with pytest.raises(KeyError):
        explained["nope"]


def test_the_record_says_what_the_key_was_made_of(project: Project) -> None:
    project.run()
    (cp,) = chkpt.Store(project.store).checkpoints("counts")
    why = chkpt.Store(project.store).record(cp)["why"]
    assert why["function"] == f"{project.name}.counts" and why["format"] == "json" and why["version"] is None
    assert why["params"]["top"][1] == "2"
    assert set(why["code"]) == {f"function {project.name}.counts", f"value {project.name}.THRESHOLD"}


def test_chkpt_explain_prints_the_table(project: Project) -> None:
    project.run()
    project.edit("THRESHOLD = 2", "THRESHOLD = 3")
    done = subprocess.run(
        [sys.executable, "-m", "chkpt", "explain", f"{project.path}:pipeline", "--dir", str(project.store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split(None, 3) for line in done.stdout.splitlines()[1:]}
    assert rows["counts"][2:] == ["compute", "constant THRESHOLD changed"]
    assert rows["words"][2:] == ["load", "checkpoint found"]  # counts, computing, needs it
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chkpt",
            "explain",
            f"{project.path}:pipeline",
            "--dir",
            str(project.store),
            "--load",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert {line.split(None, 3)[3] for line in done.stdout.splitlines()[1:]} == {"loading is off"}


@chkpt.Stage.wrap()
def scale(x: int, factor: int = 1) -> int:
    return x * factor


@chkpt.Stage.wrap()
def pair(a: int, b: int) -> list[int]:
    return [a, b]


def swept(x: int) -> chkpt.Pipeline[list[int]]:
    return (scale.bind(factor=2) << (x,), scale.bind(factor=3) << (x,)) >> pair


def test_each_binding_is_compared_with_its_own_checkpoint(tmp_path: Path) -> None:
    config = chkpt.Config(dir=tmp_path, load=True, verbose=False)
    swept(1).run(config)
    reasons = [(d.stage, d.action, d.reason) for d in swept(5).explain(config)]
    assert reasons[:2] == [("scale", "compute", "input 1 changed")] * 2  # not "param factor changed (2 -> 3)"
