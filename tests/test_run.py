"""Running semantics: each stage once per run, only what is needed, no recursion, errors that stop a run."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import chkpt


def config(directory: Path, **options: Any) -> chkpt.Config:
    return chkpt.Config(dir=directory, verbose=False, **options)


def checkpoint(directory: Path, stage: str, key: str) -> Path:
    return directory / stage / f"{key}.json"


def outcomes(run: chkpt.Run[Any]) -> list[tuple[str, str]]:
    return [(r.name, r.outcome) for r in run.records]


def counted(calls: Counter[str], name: str, func: Any) -> chkpt.Stage[..., Any]:
    """A Stage named `name` that counts its calls in `calls` and returns what `func` returns."""

    def stage(*args: Any) -> Any:
        calls[name] += 1
        return func(*args)

    return chkpt.Stage(stage, name=name)


# --- rule 3: a stage with the same inputs runs once per run --------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"store": False}, {"load": True}], ids=["store", "no-store", "load"])
def test_a_diamond_runs_the_shared_stage_once(tmp_path: Path, options: dict[str, Any]) -> None:
    calls: Counter[str] = Counter()
    top = counted(calls, "top", lambda: 10)
    left = counted(calls, "left", lambda x: x + 1)
    right = counted(calls, "right", lambda x: x * 2)
    join = counted(calls, "join", lambda a, b: [a, b])
    shared = () >> top
    pipeline = (shared >> left, shared >> right) >> join
    run = pipeline.run(config(tmp_path, **options))
    assert run.value == [11, 20]
    assert calls == {"top": 1, "left": 1, "right": 1, "join": 1}
    assert sorted(r.name for r in run.records) == ["join", "left", "right", "top"]


def test_separately_built_sub_pipelines_are_one_node(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    source = counted(calls, "source", lambda: [1, 2])
    double = counted(calls, "double", lambda xs: [2 * x for x in xs])
    add = counted(calls, "add", lambda xs, n: [x + n for x in xs])
    join = counted(calls, "join", lambda *parts: list(parts))
    # Each sub-pipeline is built on its own; none of these objects are shared.
    first = source >> double
    second = source >> double
    third = (source >> double, 5) >> add
    fourth = (source >> double, 5) >> add
    assert first is not second and first == second
    run = (first, second, third, fourth) >> join
    result = run.run(config(tmp_path))
    assert result.value == [[2, 4], [2, 4], [7, 9], [7, 9]]
    assert calls == {"source": 1, "double": 1, "add": 1, "join": 1}
    assert [r.name for r in result.records] == ["source", "double", "add", "join"]


def test_the_same_stage_with_different_inputs_runs_for_each(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    source = counted(calls, "source", lambda: 1)
    add = counted(calls, "add", lambda x, n: x + n)
    join = counted(calls, "join", lambda *parts: list(parts))
    pipeline = ((source, 1) >> add, (source, 2) >> add, (source, 1) >> add) >> join
    run = pipeline.run(config(tmp_path))
    assert run.value == [2, 3, 2]
    assert calls == {"source": 1, "add": 2, "join": 1}


def test_a_deep_lattice_runs_each_node_once(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    source = counted(calls, "source", lambda: 1)
    plus = counted(calls, "plus", lambda a, b: a + b)
    # Every layer reads the previous layer's node twice: a tree walk would run 2**40 calls.
    node = () >> source
    for _ in range(40):
        node = (node, node) >> plus
    run = node.run(config(tmp_path, store=False))
    assert run.value == 2**40
    assert calls == {"source": 1, "plus": 40}


def test_a_shared_stage_is_loaded_once(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    top = counted(calls, "top", lambda: 10)
    left = counted(calls, "left", lambda x: x + 1)
    right = counted(calls, "right", lambda x: x * 2)
    join = counted(calls, "join", lambda a, b: [a, b])
    pipeline = (top >> left, top >> right) >> join
    first = pipeline.run(config(tmp_path))
    keys = {r.name: r.key for r in first.records}
    for name in ("left", "right", "join"):
        checkpoint(tmp_path, name, keys[name]).unlink()
    run = pipeline.run(config(tmp_path, load=True))
    assert run.value == [11, 20]
    assert outcomes(run).count(("top", "loaded")) == 1
    assert sorted(outcomes(run)) == [("join", "stored"), ("left", "stored"), ("right", "stored"), ("top", "loaded")]
    assert calls == {"top": 1, "left": 2, "right": 2, "join": 2}


# --- rule 4: nothing upstream of a loaded checkpoint runs or is loaded ---------------------------------------


def _chain(calls: Counter[str]) -> chkpt.Pipeline[Any]:
    a = counted(calls, "a", lambda: [1])
    b = counted(calls, "b", lambda x: [*x, 2])
    c = counted(calls, "c", lambda x: [*x, 3])
    d = counted(calls, "d", lambda x: [*x, 4])
    return a >> b >> c >> d


def test_nothing_upstream_of_a_loaded_checkpoint_runs(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    first = _chain(calls).run(config(tmp_path))
    assert first.value == [1, 2, 3, 4]
    keys = {r.name: r.key for r in first.records}
    # Upstream checkpoints are gone; the target's checkpoint alone is enough.
    for name in ("a", "b", "c"):
        checkpoint(tmp_path, name, keys[name]).unlink()
    run = _chain(calls).run(config(tmp_path, load=True))
    assert run.value == [1, 2, 3, 4]
    assert outcomes(run) == [("d", "loaded")]
    assert calls == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_a_loaded_stage_in_the_middle_cuts_off_everything_above_it(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    first = _chain(calls).run(config(tmp_path))
    keys = {r.name: r.key for r in first.records}
    checkpoint(tmp_path, "d", keys["d"]).unlink()
    checkpoint(tmp_path, "a", keys["a"]).unlink()
    run = _chain(calls).run(config(tmp_path, load=True))
    assert outcomes(run) == [("c", "loaded"), ("d", "stored")]
    assert calls == {"a": 1, "b": 1, "c": 1, "d": 2}
    # With only `b` loadable by name, `a` is not needed, and c and d compute.
    run = _chain(calls).run(config(tmp_path, load=["b"]))
    assert run.value == [1, 2, 3, 4]
    assert outcomes(run) == [("b", "loaded"), ("c", "stored"), ("d", "stored")]
    assert calls == {"a": 1, "b": 1, "c": 2, "d": 3}


# --- rule 5: no recursion -------------------------------------------------------------------------------------


@chkpt.Stage.wrap()
def zero() -> int:
    return 0


@chkpt.Stage.wrap()
def increment(x: int) -> int:
    return x + 1


def test_a_chain_of_100000_stages_builds_and_runs(tmp_path: Path) -> None:
    pipeline: chkpt.Pipeline[int] = () >> zero
    for _ in range(100_000):
        pipeline = pipeline >> increment
    assert len(pipeline.nodes()) == 100_001
    run = pipeline.run(config(tmp_path / "unused", store=False))
    assert run.value == 100_000
    assert len(run.records) == 100_001
    assert {r.outcome for r in run.records} == {"computed"}
    assert len({r.key for r in run.records}) == 100_001
    assert not (tmp_path / "unused").exists()


def test_a_stored_chain_of_2000_stages_loads_only_the_last(tmp_path: Path) -> None:
    pipeline: chkpt.Pipeline[int] = () >> zero
    for _ in range(2000):
        pipeline = pipeline >> increment
    first = pipeline.run(config(tmp_path, load=True))
    assert first.value == 2000
    assert {r.outcome for r in first.records} == {"stored"} and len(first.records) == 2001
    # The 2000 checkpoints and the folder's index, which lists them in the order they were stored.
    stored = [r.key for r in first.records if r.name == "increment"]
    assert len(stored) == 2000
    assert {p.name for p in (tmp_path / "increment").iterdir()} == {".index"} | {f"{key}.json" for key in stored}
    index_lines = (tmp_path / "increment" / ".index").read_text(encoding="ascii").splitlines()
    assert [json.loads(line)[0] for line in index_lines] == stored
    second = pipeline.run(config(tmp_path, load=True))
    assert second.value == 2000
    assert [(r.outcome, r.key) for r in second.records] == [("loaded", first.records[-1].key)]
    checkpoint(tmp_path, "increment", first.records[-1].key).unlink()
    third = pipeline.run(config(tmp_path, load=True))
    assert third.value == 2000
    assert [(r.outcome, r.key) for r in third.records] == [
        ("loaded", first.records[-2].key),
        ("stored", first.records[-1].key),
    ]


# --- a result JSON cannot store -------------------------------------------------------------------------------


class Thing:
    pass


@pytest.mark.parametrize(
    ("bad_value", "type_name"),
    [({1, 2}, "set"), (Thing(), "Thing"), ({"rows": [{"seen": {1, 2}}]}, "set"), ({(1, 2): "pair"}, "tuple")],
    ids=["set", "object", "nested-set", "tuple-key"],
)
def test_a_value_json_cannot_store_stops_the_run(tmp_path: Path, bad_value: object, type_name: str) -> None:
    calls: Counter[str] = Counter()
    good = counted(calls, "good", lambda: 1)
    bad = counted(calls, "bad", lambda x: bad_value)
    after = counted(calls, "after", lambda x: 2)
    pipeline = good >> bad >> after
    with pytest.raises(chkpt.SerializationError) as info:
        pipeline.run(config(tmp_path))
    message = str(info.value)
    assert "'bad'" in message
    assert type_name in message
    assert "json" in message
    assert isinstance(info.value, chkpt.ChkptError)
    assert calls == {"good": 1, "bad": 1}
    bad_folder = tmp_path / "bad"
    assert not bad_folder.exists() or list(bad_folder.iterdir()) == []
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / "after").exists()
    # The stage stored before the failure keeps its checkpoint, and its folder's index lists it.
    good_names = {p.name for p in (tmp_path / "good").iterdir()}
    assert ".index" in good_names
    (good_name,) = good_names - {".index"}
    assert json.loads((tmp_path / "good" / good_name).read_bytes())["value"] == 1
    index_lines = (tmp_path / "good" / ".index").read_text(encoding="ascii").splitlines()
    assert [json.loads(line)[0] for line in index_lines] == [good_name.removesuffix(".json")]


def test_a_value_json_cannot_store_is_fine_when_it_is_not_stored(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    good = counted(calls, "good", lambda: 1)
    bad = counted(calls, "bad", lambda x: {x, 2})
    after = counted(calls, "after", lambda s: sorted(s))
    run = (good >> bad >> after).run(config(tmp_path, store=["good", "after"]))
    assert run.value == [1, 2]
    assert outcomes(run) == [("good", "stored"), ("bad", "computed"), ("after", "stored")]
    assert not (tmp_path / "bad").exists()


# --- an exception inside a stage -------------------------------------------------------------------------------


def test_an_exception_propagates_as_itself_with_a_note_and_the_run_resumes(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    broken = {"yes": True}

    def explode(x: list[int]) -> list[int]:
        if broken["yes"]:
            raise ValueError("bad row 7")
        return [*x, 3]

    a = counted(calls, "a", lambda: [1])
    b = counted(calls, "b", lambda x: [*x, 2])
    boom = counted(calls, "boom", explode)
    d = counted(calls, "d", lambda x: [*x, 4])
    pipeline = a >> b >> boom >> d

    caught = None
    try:
        pipeline.run(config(tmp_path, load=True))
    except ValueError as exc:  # the stage's own exception type, not a wrapper
        caught = exc
    assert type(caught) is ValueError
    assert str(caught) == "bad row 7"
    notes = getattr(caught, "__notes__", [])
    assert len(notes) == 1
    assert "'boom'" in notes[0]
    assert "step 3 of 4" in notes[0] and "'d'" in notes[0]
    assert calls == {"a": 1, "b": 1, "boom": 1}
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["a", "b"]
    assert not list(tmp_path.rglob("*.tmp"))

    broken["yes"] = False
    run = pipeline.run(config(tmp_path, load=True))
    assert run.value == [1, 2, 3, 4]
    assert outcomes(run) == [("b", "loaded"), ("boom", "stored"), ("d", "stored")]
    assert calls == {"a": 1, "b": 1, "boom": 2, "d": 1}


def test_an_exception_in_the_first_stage_keeps_its_type_and_traceback(tmp_path: Path) -> None:
    class CustomError(Exception):
        pass

    def fail() -> None:
        raise CustomError("from the stage")

    stage = chkpt.Stage(fail, name="fail")
    with pytest.raises(CustomError, match="from the stage") as info:
        (() >> stage).run(config(tmp_path))
    assert any("'fail'" in note for note in getattr(info.value, "__notes__", []))
    assert info.traceback[-1].name == "fail"
    assert not (tmp_path / "fail").exists()


def test_keyboard_interrupt_inside_a_stage_propagates_as_itself(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()

    def interrupt(x: int) -> int:
        raise KeyboardInterrupt

    first = counted(calls, "first", lambda: 1)
    stop = counted(calls, "stop", interrupt)
    later = counted(calls, "later", lambda x: x)
    with pytest.raises(KeyboardInterrupt) as info:
        (first >> stop >> later).run(config(tmp_path))
    assert type(info.value) is KeyboardInterrupt
    assert any("'stop'" in note for note in getattr(info.value, "__notes__", []))
    assert calls == {"first": 1, "stop": 1}
    assert (tmp_path / "first").is_dir() and not (tmp_path / "stop").exists()


# --- values that JSON changes ------------------------------------------------------------------------------------


def test_json_refuses_values_it_would_return_changed(tmp_path: Path) -> None:
    for value, problem in [
        ({"tuple": (1, (2, 3))}, "a tuple"),
        ({"int_keys": {1: "one"}}, "a dict key of type int"),
        ([{"a": [None, (True, 1.5)]}], "a tuple"),
    ]:

        @chkpt.Stage.wrap()
        def produce(value: Any = value) -> Any:
            return value

        with pytest.raises(chkpt.SerializationError, match=f"stage 'produce': json would return {problem}") as info:
            (() >> produce).run(config(tmp_path))
        assert "json-lossy" in str(info.value)
        assert not (tmp_path / "produce").exists()


def test_json_lossy_stores_values_as_json_does(tmp_path: Path) -> None:
    value = {
        "tuple": (1, (2, 3)),
        "int_keys": {1: "one", 2: "two"},
        "nested": [{"a": (None, True, 1.5)}],
        "text": "ünïcode ☃",
        "big": 2**80,
    }
    seen: list[Any] = []

    @chkpt.Stage.wrap(format="json-lossy")
    def produce() -> dict[Any, Any]:
        return value

    @chkpt.Stage.wrap()
    def consume(v: dict[Any, Any]) -> str:
        seen.append(v)
        return type(v["tuple"]).__name__

    first = (produce >> consume).run(config(tmp_path))
    # A computed value is passed on as it is...
    assert seen[0] is value
    assert first.value == "tuple"
    # ...a loaded one is its JSON form: tuples become lists and int keys strings.
    json_form = json.loads(json.dumps(value))
    assert json_form != value
    assert (() >> produce).run(config(tmp_path, load=True)).value == json_form
    checkpoint(tmp_path, "consume", first.records[-1].key).unlink()
    resumed = (produce >> consume).run(config(tmp_path, load=True))
    assert outcomes(resumed) == [("produce", "loaded"), ("consume", "stored")]
    assert seen[1] == json_form
    assert seen[1]["tuple"] == [1, [2, 3]]
    assert seen[1]["int_keys"] == {"1": "one", "2": "two"}
    assert seen[1]["big"] == 2**80
    assert resumed.value == "list"


def test_special_floats_round_trip(tmp_path: Path) -> None:
    @chkpt.Stage.wrap()
    def floats() -> list[float]:
        return [math.nan, math.inf, -math.inf, 0.1, -0.0]

    (() >> floats).run(config(tmp_path))
    loaded = (() >> floats).run(config(tmp_path, load=True))
    assert outcomes(loaded) == [("floats", "loaded")]
    nan, inf, minus_inf, tenth, minus_zero = loaded.value
    assert math.isnan(nan) and inf == math.inf and minus_inf == -math.inf and tenth == 0.1
    assert minus_zero == 0.0 and math.copysign(1.0, minus_zero) == -1.0


# --- run records ------------------------------------------------------------------------------------------------


def test_run_records_outcomes_bytes_seconds_and_summary(tmp_path: Path) -> None:
    @chkpt.Stage.wrap()
    def slow() -> list[int]:
        time.sleep(0.05)
        return list(range(10))

    @chkpt.Stage.wrap()
    def stored(x: list[int]) -> dict[str, int]:
        return {"total": sum(x)}

    @chkpt.Stage.wrap()
    def unstored(x: dict[str, int]) -> int:
        return x["total"]

    pipeline = slow >> stored >> unstored
    first = pipeline.run(config(tmp_path, store=["slow", "stored"]))
    assert first.value == 45
    assert outcomes(first) == [("slow", "stored"), ("stored", "stored"), ("unstored", "computed")]
    by_name = {r.name: r for r in first.records}
    assert by_name["slow"].seconds >= 0.05
    assert by_name["unstored"].bytes is None
    for name in ("slow", "stored"):
        path = checkpoint(tmp_path, name, by_name[name].key)
        assert by_name[name].bytes == json.loads(path.read_bytes().split(b"\n", 1)[0][len(b'{"chkpt": ') : -1])["bytes"]
        assert by_name[name].bytes == len(json.dumps(json.loads(path.read_bytes())["value"], indent=2))
    assert by_name["stored"].bytes == len(json.dumps({"total": 45}, indent=2))
    text = str(first)
    lines = text.splitlines()
    assert lines[0].split() == ["stage", "outcome", "seconds", "bytes", "key"]
    assert len(lines) == 5
    assert lines[1].split()[:2] == ["slow", "stored"]
    assert lines[1].split()[3] == str(by_name["slow"].bytes)
    assert lines[1].split()[4] == by_name["slow"].key[:12]
    assert lines[3].split()[:2] == ["unstored", "computed"] and lines[3].split()[3] == "-"
    assert lines[-1] == f"3 stages: 0 loaded, 3 computed (2 stored); stored {first.bytes_stored} B"
    assert first.bytes_stored == (by_name["slow"].bytes or 0) + (by_name["stored"].bytes or 0)

    second = pipeline.run(config(tmp_path, load=True, store=["slow", "stored"]))
    assert outcomes(second) == [("stored", "loaded"), ("unstored", "computed")]
    loaded = second.records[0]
    assert loaded.key == by_name["stored"].key
    assert loaded.bytes == by_name["stored"].bytes
    assert 0 <= loaded.seconds < 1
    assert loaded.saved == round(by_name["stored"].seconds, 6)  # what the record says its computing took
    assert second.seconds_saved == loaded.saved
    assert loaded.saved is not None and loaded.saved < 0.05  # a trivial stage: too little to mention
    assert str(second).splitlines()[-1] == f"2 stages: 1 loaded, 1 computed (0 stored), {second.skipped} skipped"
    assert second.skipped == 1  # slow, which only stored reads
    assert repr(second).startswith("<Run of 2 stages")


@pytest.mark.parametrize("wrong", [True, {"load": True}, "checkpoints", 0, {}], ids=repr)
def test_anything_but_a_config_is_a_config_error_that_says_what_to_pass(tmp_path: Path, wrong: Any) -> None:
    calls: Counter[str] = Counter()
    pipeline = () >> counted(calls, "only", lambda: 1)
    for call in (pipeline, pipeline.run, pipeline.explain, lambda c: pipeline.accept("only", c)):
        with pytest.raises(chkpt.ConfigError, match=r"takes a chkpt\.Config, not a .*chkpt\.Config\(load=True"):
            call(wrong)
    assert calls["only"] == 0
    with pytest.raises(chkpt.ConfigError, match="stage's name or the Stage, not a int"):
        pipeline.accept(5, config(tmp_path))  # type: ignore[arg-type]
