"""Stages pickle by reference, so that other processes (and Dask workers) run the same code: DESIGN.md's rule
that a decorated function's module attribute is the Stage, found again through its module and name."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import chkpt


@chkpt.Stage.wrap(version=2, format="json-lossy")
def scaled(x: int, factor: int = 1) -> int:
    return x * factor


def plain(x: int) -> int:
    return x + 1


def test_a_decorated_stage_pickles_by_reference_with_its_settings() -> None:
    bound = scaled.bind(factor=3)
    data = pickle.dumps(bound)
    assert b"return x * factor" not in data  # the code is not in the pickle, only where to find it
    copy = pickle.loads(data)
    assert copy == bound
    assert copy.func is scaled.func
    assert (copy.name, copy.version, copy.format, copy.mmap, dict(copy.params)) == (
        "scaled",
        2,
        "json-lossy",
        False,
        {"factor": 3},
    )
    assert copy(2) == 6


def test_stages_unpickled_alike_are_shared_and_different_parameters_stay_apart() -> None:
    # A worker unpickles one stage for each of thousands of tasks, so equal ones are built once; a parameter
    # equal as a dict key but not as a value (1, 1.0, True; 0.0, -0.0) must still give its own stage.
    values: list[object] = [1, 1.0, True, 0.0, -0.0, "1", b"1", None]
    copies = [pickle.loads(pickle.dumps(scaled.bind(factor=value))) for value in values]
    for value, copy in zip(values, copies, strict=True):
        factor = copy.params["factor"]
        assert type(factor) is type(value) and repr(factor) == repr(value)
    assert len({id(copy) for copy in copies}) == len(values)
    again = pickle.loads(pickle.dumps(scaled.bind(factor=1)))
    assert again is copies[0]
    unshared = [pickle.loads(pickle.dumps(scaled.bind(factor=[1]))) for _ in range(2)]
    assert unshared[0] is not unshared[1] and unshared[0] == unshared[1]


def test_a_stage_made_from_a_plain_module_function_pickles() -> None:
    stage = chkpt.Stage(plain, name="plus_one").bind()
    copy = pickle.loads(pickle.dumps(stage))
    assert copy == stage and copy.func is plain and copy.name == "plus_one"


def test_a_file_stage_pickles_with_its_watch(tmp_path: Path) -> None:
    path = tmp_path / "input.csv"
    path.write_text("a")
    stage = chkpt.file(path).stage
    copy = pickle.loads(pickle.dumps(stage))
    assert copy.name == stage.name and copy.params == stage.params
    assert copy.watch is not None and stage.watch is not None and copy.watch() == stage.watch()


def test_lambdas_and_local_functions_cannot_pickle_and_say_why() -> None:
    def local(x: int) -> int:
        return x

    lam: chkpt.Stage[[], int] = chkpt.Stage(lambda: 1, name="lam")
    cases: list[tuple[chkpt.Stage[..., int], str]] = [(lam, "<lambda>"), (chkpt.Stage(local), "local")]
    for stage, what in cases:
        with pytest.raises(pickle.PicklingError, match=f"stage '{stage.name}' wraps .*{what}") as info:
            pickle.dumps(stage)
        assert "executor='threads'" in str(info.value)


def test_a_pickled_stage_runs_in_another_process(tmp_path: Path) -> None:
    # The other process imports this test module by name, as a pool's worker would.
    data = pickle.dumps(scaled.bind(factor=5))
    code = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())(7))"
    tests = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {tests!r}); {code}"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "35"
