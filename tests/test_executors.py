"""Parallel execution (issue 4): threads, processes and a user's executor run the same plan as the sync executor,
each stage as soon as its inputs are ready, with the same values, records and checkpoints; and what happens on a
failure, with keep_going, on Ctrl-C, and with a stage that cannot be sent to another process.

The stages are module-level functions, so that a process pool's (forked) workers find them by reference. They
report what they do by appending a line to a file (a tally), since a counter in memory does not cross processes.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chkpt

EXECUTORS = ["threads", "processes"]


# --- stages that leave a trace -------------------------------------------------------------------------------------


class Event(NamedTuple):
    label: str
    what: str  # "start", "end" or "fail"
    at: float  # time.time(), one clock for every process
    pid: int
    thread: str


def note(log: str, label: str, what: str) -> None:
    line = f"{label} {what} {time.time():.6f} {os.getpid()} {threading.current_thread().name}\n"
    with open(log, "a") as file:  # one short write in append mode: lines from several processes do not mix
        file.write(line)


def events(log: Path) -> list[Event]:
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        label, what, at, pid, thread = line.split(" ", 4)
        found.append(Event(label, what, float(at), int(pid), thread))
    return found


def labels(log: Path, what: str) -> list[str]:
    return [event.label for event in events(log) if event.what == what]


def when(log: Path, label: str, what: str) -> float:
    (at,) = [event.at for event in events(log) if (event.label, event.what) == (label, what)]
    return at


def burn(iterations: int) -> int:
    x = 0
    for i in range(iterations):
        x ^= i
    return x


def spin_until_started(log: str, other: str) -> None:
    """Keep the CPU busy (holding the GIL) until `other` has started; a minute without it raises TimeoutError."""
    deadline = time.monotonic() + 60
    while other not in labels(Path(log), "start"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} did not start while this stage ran")
        burn(100_000)


def work(
    *inputs: object,
    label: str,
    log: str,
    seconds: float = 0.0,
    meet: str = "",
    fail: bool = False,
) -> list[object]:
    """Sleep `seconds`, spin the CPU until stage `meet` has started, then return [label, *inputs] or raise
    ValueError."""
    note(log, label, "start")
    time.sleep(seconds)
    if meet:
        spin_until_started(log, meet)
    if fail:
        note(log, label, "fail")
        raise ValueError(f"{label} failed")
    note(log, label, "end")
    return [label, *inputs]


def step(label: str, log: Path, **options: Any) -> chkpt.Stage[..., list[object]]:
    """A stage named `label` running `work` (a module-level function, so it pickles by reference)."""
    return chkpt.Stage(work, name=label).bind(label=label, log=str(log), **options)


def quiet(directory: Path, **options: Any) -> chkpt.Config:
    return chkpt.Config(dir=directory, verbose=False, **options)


def timed(pipeline: chkpt.Pipeline[Any], config: chkpt.Config) -> tuple[chkpt.Run[Any], float]:
    started = time.perf_counter()
    run = pipeline.run(config)
    return run, time.perf_counter() - started


def checkpoints(directory: Path, stage: str) -> list[Path]:
    return sorted((directory / stage).glob("*.json"))


def loads_alone(pipeline: chkpt.Pipeline[Any], directory: Path) -> Any:
    """The value of `pipeline`'s own checkpoint, loaded by a sync run that may not compute anything."""
    run = pipeline.run(quiet(directory, load=True, store=False))
    assert [(r.name, r.outcome) for r in run.records] == [(pipeline.stage.name, "loaded")]
    return run.value


def pool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("chkpt")]


@pytest.fixture(autouse=True)
def _pools_are_shut_down() -> Iterator[None]:
    """A pool that chkpt makes is shut down when the run ends, whether it returns or raises: no worker thread or
    process of it outlives a test."""
    assert pool_threads() == [] and multiprocessing.active_children() == []
    yield
    assert pool_threads() == []
    assert multiprocessing.active_children() == []


# --- 1. independent stages run side by side ------------------------------------------------------------------------


def two_stages(log: Path, **options: Any) -> chkpt.Pipeline[list[object]]:
    return (step("left", log, **options), step("right", log, **options)) >> step("join", log)


def test_the_sync_executor_runs_one_stage_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "log"
    run, wall = timed(two_stages(log, seconds=1.0), quiet(tmp_path / "ck"))
    assert wall > 1.9
    assert run.value == ["join", ["left"], ["right"]]
    assert when(log, "left", "end") <= when(log, "right", "start")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_two_sleeping_stages_run_side_by_side(tmp_path: Path, executor: str) -> None:
    log = tmp_path / "log"
    pipeline = two_stages(log, seconds=1.0)
    run, wall = timed(pipeline, quiet(tmp_path / "ck", executor=executor, workers=2))
    assert wall < 1.6, wall
    assert run.value == ["join", ["left"], ["right"]]
    assert sorted(r.name for r in run.records[:2]) == ["left", "right"] and run.records[2].name == "join"
    assert {r.outcome for r in run.records} == {"stored"}
    # each started before the other ended
    assert max(when(log, s, "start") for s in ("left", "right")) < min(when(log, s, "end") for s in ("left", "right"))
    left, right = (next(e for e in events(log) if e.label == s) for s in ("left", "right"))
    if executor == "processes":
        assert len({left.pid, right.pid, os.getpid()}) == 3
    else:
        assert left.pid == right.pid == os.getpid()
        assert left.thread != right.thread and left.thread.startswith("chkpt") and right.thread.startswith("chkpt")
    # what a worker stored loads in a later sync run
    assert loads_alone(pipeline, tmp_path / "ck") == ["join", ["left"], ["right"]]


def test_two_cpu_bound_stages_run_side_by_side_in_processes(tmp_path: Path) -> None:
    """Each stage spins the CPU until the other has started, so the run ends only if both ran at once; each in a
    worker process of its own, so neither waits on the other's GIL. How much faster that is on two cores is a
    speed figure, measured in bench/run.py's Parallel table, not here."""
    log = tmp_path / "log"
    pipeline = (step("left", log, meet="right"), step("right", log, meet="left")) >> step("join", log)
    run = pipeline.run(quiet(tmp_path / "ck", store=False, executor="processes", workers=2))
    assert run.value == ["join", ["left"], ["right"]]
    assert max(when(log, s, "start") for s in ("left", "right")) < min(when(log, s, "end") for s in ("left", "right"))
    left, right = (next(e for e in events(log) if e.label == s) for s in ("left", "right"))
    assert len({left.pid, right.pid, os.getpid()}) == 3


def test_workers_sizes_the_pool(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pipeline = two_stages(log, seconds=0.3)
    _, one = timed(pipeline, quiet(tmp_path / "one", store=False, executor="threads", workers=1))
    _, two = timed(pipeline, quiet(tmp_path / "two", store=False, executor="threads", workers=2))
    assert one > 0.55 and two < 0.5, (one, two)
    assert len({e.thread for e in events(log)[:6]}) == 1  # the first run: join, left and right on one thread


# --- 2. the same values, records and checkpoints as the sync executor (random graphs) ------------------------------

_MODULUS = 2**61 - 1


def _combine(kind: int, tag: int, xs: tuple[int, ...]) -> int:
    h = kind * 7 + tag
    for x in xs:
        h = (h * 1_000_003 + x) % _MODULUS
    return h


def tally(log: str, line: str) -> None:
    with open(log, "a") as file:
        file.write(line + "\n")
    with open(log + ".pids", "a") as file:
        file.write(f"{os.getpid()}\n")


def pids(log: Path) -> set[int]:
    pids = Path(f"{log}.pids")
    found = {int(line) for line in pids.read_text().split()} if pids.exists() else set()
    pids.unlink(missing_ok=True)
    return found


@chkpt.Stage.wrap()
def mix(*xs: int, tag: int, log: str) -> int:
    tally(log, f"mix {tag} {xs}")
    return _combine(1, tag, xs)


@chkpt.Stage.wrap()
def fold(a: int | None = None, b: int | None = None, c: int | None = None, *, tag: int, log: str) -> int:
    # The tally shows which inputs were given: fold() and fold(0) are two steps that would tally alike.
    tally(log, f"fold {tag} {(a, b, c)}")
    return _combine(2, tag, tuple(0 if x is None else x for x in (a, b, c)))


@dataclass(frozen=True)
class NodeSpec:
    kind: str  # "mix" or "fold"
    tag: int
    inputs: tuple[tuple[str, int], ...]  # ("node", index of an earlier node) or ("const", value)


@st.composite
def dags(draw: st.DrawFn) -> list[NodeSpec]:
    n = draw(st.integers(1, 10))
    specs: list[NodeSpec] = []
    for i in range(n):
        if i and draw(st.integers(0, 3)) == 0:
            specs.append(specs[draw(st.integers(0, i - 1))])  # the same node again: one step of the run
            continue
        constants = st.tuples(st.just("const"), st.integers(-1, 3))
        choice = st.one_of(st.tuples(st.just("node"), st.integers(0, i - 1)), constants) if i else constants
        inputs = tuple(draw(st.lists(choice, max_size=3)))
        specs.append(NodeSpec(draw(st.sampled_from(["mix", "fold"])), draw(st.integers(0, 2)), inputs))
    if draw(st.booleans()):
        # a wide final node that takes every node
        specs.append(NodeSpec("mix", 3, tuple(("node", j) for j in range(n))))
    return specs


def build_dag(specs: list[NodeSpec], log: Path) -> list[chkpt.Pipeline[int]]:
    built: list[chkpt.Pipeline[int]] = []
    for spec in specs:
        stage = (mix if spec.kind == "mix" else fold).bind(tag=spec.tag, log=str(log))
        args = tuple(built[v] if what == "node" else v for what, v in spec.inputs)
        built.append(args >> stage)
    return built


def evaluate_dag(specs: list[NodeSpec]) -> list[int]:
    values: list[int] = []
    for spec in specs:
        xs = tuple(values[v] if what == "node" else v for what, v in spec.inputs)
        values.append(
            _combine(1, spec.tag, xs) if spec.kind == "mix" else _combine(2, spec.tag, xs + (0,) * (3 - len(xs)))
        )
    return values


def reachable(specs: list[NodeSpec]) -> tuple[list[int], int]:
    """The nodes the last node needs (indices), and how many distinct steps they are."""
    identities: dict[tuple[object, ...], int] = {}
    ids: list[int] = []
    for spec in specs:
        inputs = tuple(("node", ids[v]) if what == "node" else ("const", v) for what, v in spec.inputs)
        ids.append(identities.setdefault((spec.kind, spec.tag, inputs), len(identities)))
    found: set[int] = set()
    pending = [len(specs) - 1]
    while pending:
        index = pending.pop()
        if index not in found:
            found.add(index)
            pending.extend(v for what, v in specs[index].inputs if what == "node")
    return sorted(found), len({ids[i] for i in found})


def calls(log: Path) -> Counter[str]:
    return Counter(log.read_text().splitlines() if log.exists() else [])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=dags(), drop=st.integers(0, 2**12 - 1))
def test_random_graphs_give_the_same_values_records_and_checkpoints_on_every_executor(
    specs: list[NodeSpec], drop: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("dag")
    log = base / "calls"
    built = build_dag(specs, log)
    target = built[-1]
    values = evaluate_dag(specs)
    needed, steps = reachable(specs)
    seen: dict[str | None, tuple[object, ...]] = {}
    for executor in (None, "threads", "processes"):
        directory = base / str(executor)
        log.unlink(missing_ok=True)
        pids(log)
        first = target.run(quiet(directory, executor=executor, workers=2))
        workers = pids(log)
        assert workers and (os.getpid() not in workers if executor == "processes" else workers == {os.getpid()})
        assert first.value == values[-1]
        assert len(first.records) == steps and {r.outcome for r in first.records} == {"stored"}
        assert first.records[-1].name == target.stage.name
        first_calls = calls(log)
        assert sum(first_calls.values()) == steps and set(first_calls.values()) == {1}, first_calls

        # every checkpoint it stored loads in a later sync run, without computing anything
        log.unlink(missing_ok=True)
        for i in needed:
            assert loads_alone(built[i], directory) == values[i]
        assert calls(log) == Counter()

        # drop some checkpoints (always the target's), then load what is left and compute the rest
        stored = sorted((r.name, r.key) for r in first.records)
        for j, (name, key) in enumerate(stored):
            if key == first.records[-1].key or drop >> j & 1:
                (directory / name / f"{key}.json").unlink()
        log.unlink(missing_ok=True)
        second = target.run(quiet(directory, load=True, executor=executor, workers=2))
        assert second.value == values[-1]
        second_calls = calls(log)
        assert set(second_calls.values()) <= {1}, second_calls
        assert sum(second_calls.values()) == sum(r.outcome == "stored" for r in second.records)
        assert second.records[-1].name == target.stage.name

        seen[executor] = (
            {(r.name, r.key, r.outcome) for r in first.records},
            first_calls,
            {(r.name, r.key, r.outcome) for r in second.records},
            second_calls,
            sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()),
        )
    assert seen["threads"] == seen[None]
    assert seen["processes"] == seen[None]


# --- 3. a stage starts as soon as its inputs are ready ---------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_stage_starts_when_its_inputs_are_ready_not_layer_by_layer(tmp_path: Path, executor: str) -> None:
    log = tmp_path / "log"
    chain = step("fast1", log, seconds=0.1) >> step("fast2", log, seconds=0.1) >> step("fast3", log, seconds=0.1)
    pipeline = (step("slow", log, seconds=1.0), chain) >> step("join", log)
    run, wall = timed(pipeline, quiet(tmp_path / "ck", executor=executor, workers=2))
    assert run.value == ["join", ["slow"], ["fast3", ["fast2", ["fast1"]]]]
    slow_end = when(log, "slow", "end")
    # layer by layer, fast2 would wait for slow (its layer-1 companion) to finish
    assert when(log, "fast2", "start") < slow_end
    assert when(log, "fast3", "end") < slow_end
    assert when(log, "join", "start") >= slow_end
    assert wall < 1.6, wall


# --- 4. records and log lines in the caller's process, in completion order -----------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_records_and_log_lines_come_in_the_order_stages_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], executor: str
) -> None:
    log = tmp_path / "log"

    def pipeline(slow: float, quick: float) -> chkpt.Pipeline[list[object]]:
        chain = step("quick1", log, seconds=quick) >> step("quick2", log, seconds=quick)
        return (step("slow", log, seconds=slow), chain) >> step("join", log)

    # the plan lists slow first (so a pool gets it first), as the sync executor shows
    in_plan_order = pipeline(0.0, 0.0).run(quiet(tmp_path / "plan", store=False)).records
    assert [r.name for r in in_plan_order] == ["slow", "quick1", "quick2", "join"]
    capsys.readouterr()

    # (a line printed in a worker process would not reach capsys: these are printed here)
    run = pipeline(1.0, 0.2).run(chkpt.Config(dir=tmp_path / "ck", executor=executor, workers=2))
    finished = ["quick1", "quick2", "slow", "join"]
    assert [r.name for r in run.records] == finished
    assert labels(log, "end")[-4:] == finished  # (the first four are the plan-order run's)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("chkpt: ")]
    assert [line.split()[1] for line in lines] == finished, err
    assert all(" computed in " in line and ", stored " in line for line in lines), err


# --- intermediate values are let go once their last reader has run ------------------------------------------------


class Bulky:
    """A value whose lifetime a test can watch through a weak reference."""


ALIVE: list[weakref.ref[Bulky]] = []


def make_bulky() -> Bulky:
    bulky = Bulky()
    ALIVE.append(weakref.ref(bulky))
    return bulky


def size_of(bulky: Bulky) -> int:
    return 1


def still_alive(n: int) -> bool:
    """Runs after size_of: is the Bulky that only size_of read still held by anyone?"""
    gc.collect()
    return any(ref() is not None for ref in ALIVE)


def test_a_value_is_let_go_when_the_last_stage_that_reads_it_has_run(tmp_path: Path) -> None:
    ALIVE.clear()
    pipeline = () >> chkpt.Stage(make_bulky) >> chkpt.Stage(size_of) >> chkpt.Stage(still_alive)
    for executor in ("threads", None):
        assert pipeline(quiet(tmp_path / "ck", store=False, executor=executor)) is False, executor
    assert len(ALIVE) == 2


def pair(a: int, b: int) -> int:
    return a * 10 + b


def plus_one(a: int) -> int:
    return a + 1


@pytest.mark.parametrize("executor", [None, *EXECUTORS])
def test_a_value_read_twice_by_one_stage_is_kept_for_its_other_readers(tmp_path: Path, executor: str | None) -> None:
    one = () >> chkpt.Stage(plus_one).bind(a=0)
    twice = (one, one) >> chkpt.Stage(pair)
    pipeline = (twice, (one,) >> chkpt.Stage(plus_one)) >> chkpt.Stage(pair)
    # one worker runs the readers of `one` in plan order: `twice` first, which must count as one of three reads
    assert pipeline(quiet(tmp_path / str(executor), store=False, executor=executor, workers=1)) == 11 * 10 + 2


def test_an_error_of_chkpt_itself_on_a_thread_is_raised_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bookkeeping failed")

    monkeypatch.setattr(chkpt.run._Runner, "report_computed", broken)
    pipeline = () >> chkpt.Stage(plus_one).bind(a=0) >> chkpt.Stage(plus_one)
    with pytest.raises(RuntimeError, match="bookkeeping failed"):
        pipeline(quiet(tmp_path, store=False, executor="threads", workers=2))


# --- a damaged checkpoint found during a parallel run ----------------------------------------------------------------


@pytest.mark.parametrize("executor", [None, *EXECUTORS])
def test_a_damaged_checkpoint_found_mid_run_does_not_run_a_running_stage_twice(
    tmp_path: Path, executor: str | None
) -> None:
    log = tmp_path / "log"
    directory = tmp_path / "ck"
    slow = () >> step("slow", log, seconds=0.5)
    damaged = () >> step("damaged", log)
    pipeline = (slow, damaged) >> step("join", log)
    damaged.run(quiet(directory))
    (path,) = checkpoints(directory, "damaged")
    text = path.read_text()
    assert text.endswith('"damaged"\n]\n}\n')
    path.write_text(text.replace('"damaged"\n]', '"DAMAGED"\n]'))  # the value: same length, wrong checksum
    log.unlink()
    # slow is submitted first; the load of damaged then fails while slow runs, and the run is planned again
    with pytest.warns(chkpt.ChkptWarning, match="recomputing"):
        run = pipeline.run(quiet(directory, load=True, executor=executor, workers=2))
    assert run.value == ["join", ["slow"], ["damaged"]]
    assert labels(log, "start").count("slow") == 1, events(log)
    assert sorted((r.name, r.outcome) for r in run.records) == [
        ("damaged", "stored"),
        ("join", "stored"),
        ("slow", "stored"),
    ]


# --- 5. a failure: nothing new starts, what runs finishes and stores, the first error is raised as itself ---------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_failure_stops_new_stages_and_lets_running_ones_finish_and_store(tmp_path: Path, executor: str) -> None:
    log = tmp_path / "log"
    directory = tmp_path / "ck"
    slow = () >> step("slow", log, seconds=0.5)
    bad = () >> step("bad", log, seconds=0.1, fail=True)
    pipeline = (slow >> step("after_slow", log), bad >> step("after_bad", log)) >> step("join", log)
    with pytest.raises(ValueError) as info:
        pipeline.run(quiet(directory, executor=executor, workers=2))
    assert type(info.value) is ValueError and str(info.value) == "bad failed"
    notes = getattr(info.value, "__notes__", [])
    assert any("stage 'bad'" in note for note in notes), notes

    # slow was running when bad failed; it finished, and its checkpoint is whole and loads
    assert when(log, "slow", "start") < when(log, "bad", "fail") < when(log, "slow", "end")
    assert len(checkpoints(directory, "slow")) == 1
    assert loads_alone(slow, directory) == ["slow"]
    assert checkpoints(directory, "bad") == []
    assert not list(directory.rglob("*.tmp"))
    # what had not started when the failure was seen never started
    assert sorted(labels(log, "start")) == ["bad", "slow"]


# --- 6. keep_going: everything that does not depend on a failure runs, then all failures are listed ---------------


@pytest.mark.parametrize("executor", [None, *EXECUTORS])
def test_keep_going_runs_all_it_can_then_lists_every_failure(tmp_path: Path, executor: str | None) -> None:
    log = tmp_path / "log"
    directory = tmp_path / "ck"
    bad1 = () >> step("bad1", log, seconds=0.05, fail=True)
    bad2 = () >> step("bad2", log, seconds=0.3, fail=True)
    ok2 = step("ok1", log, seconds=0.2) >> step("ok2", log)  # ok2 starts after bad1 failed
    pipeline = (bad1 >> step("dep1", log), (bad2, ok2) >> step("dep2", log), ok2) >> step("join", log)
    with pytest.raises(chkpt.StagesFailed) as info:
        pipeline.run(quiet(directory, executor=executor, workers=4, keep_going=True))
    failed = info.value
    assert isinstance(failed, chkpt.ChkptError)
    names = [name for name, _ in failed.failures]
    # In parallel, bad1 (shorter) fails first; in this process, stages run one by one in the scheduler's order.
    assert names == ["bad1", "bad2"] if executor else sorted(names) == ["bad1", "bad2"]
    for name, exc in failed.failures:
        assert type(exc) is ValueError and str(exc) == f"{name} failed"
        assert any(f"stage '{name}'" in note for note in getattr(exc, "__notes__", []))
    message = str(failed)
    assert "2 stages failed" in message
    assert "bad1: ValueError: bad1 failed" in message and "bad2: ValueError: bad2 failed" in message

    assert sorted(labels(log, "start")) == ["bad1", "bad2", "ok1", "ok2"]
    assert sorted(labels(log, "end")) == ["ok1", "ok2"]
    assert loads_alone(ok2, directory) == ["ok2", ["ok1"]]
    assert sorted(p.parent.name for p in directory.rglob("*.json")) == ["ok1", "ok2"]


# --- 7. a stage that cannot be sent to another process ---------------------------------------------------------------


def unpicklable(kind: str, log: Path) -> chkpt.Stage[..., list[object]]:
    if kind == "lambda":
        return chkpt.Stage(lambda x: work(x, label="odd", log=str(log)), name="odd")

    def odd(x: object) -> list[object]:
        return work(x, label="odd", log=str(log))

    return chkpt.Stage(odd)


@pytest.mark.parametrize("pool", ["processes", "own ProcessPoolExecutor"])
@pytest.mark.parametrize("kind", ["lambda", "local function"])
def test_an_unpicklable_stage_is_named_before_anything_runs(tmp_path: Path, kind: str, pool: str) -> None:
    log = tmp_path / "log"
    directory = tmp_path / "ck"
    pipeline = step("first", log) >> unpicklable(kind, log) >> step("last", log)
    executor: object = "processes" if pool == "processes" else ProcessPoolExecutor(max_workers=1)
    try:
        with pytest.raises(chkpt.PipelineError) as info:
            pipeline.run(quiet(directory, executor=executor))
        message = str(info.value)
        assert "stage 'odd'" in message and "executor='threads'" in message, message
        assert "'first'" not in message and "'last'" not in message
        assert not log.exists()  # nothing ran, not even the stage before it
        assert not list(directory.rglob("*.json"))
        if isinstance(executor, ProcessPoolExecutor):
            assert executor.submit(pow, 2, 5).result() == 32  # the user's pool is theirs, still open
    finally:
        if isinstance(executor, ProcessPoolExecutor):
            executor.shutdown()

    run = pipeline.run(quiet(directory, executor="threads"))
    assert run.value == ["last", ["odd", ["first"]]]
    assert labels(log, "end") == ["first", "odd", "last"]
    # only stages to compute need to travel: with everything stored, a process run loads and sends nothing
    loaded = pipeline.run(quiet(directory, executor="processes", load=True))
    assert loaded.value == run.value and [r.outcome for r in loaded.records] == ["loaded"]


# --- 8. an executor the user gives is used, and left open ----------------------------------------------------------


def test_a_users_executor_runs_the_stages_and_stays_open(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mine")
    try:
        run, wall = timed(two_stages(log, seconds=0.5), quiet(tmp_path / "ck", executor=pool))
        assert run.value == ["join", ["left"], ["right"]]
        assert wall < 0.9, wall
        assert {e.thread.split("_")[0] for e in events(log)} == {"mine"}
        assert pool.submit(pow, 2, 5).result() == 32  # not shut down by chkpt
        assert pool_threads() == []
    finally:
        pool.shutdown()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_pool_chkpt_makes_is_shut_down_after_the_run(tmp_path: Path, executor: str) -> None:
    log = tmp_path / "log"
    two_stages(log).run(quiet(tmp_path / "ck", executor=executor, workers=2))
    assert pool_threads() == []
    assert multiprocessing.active_children() == []
    with pytest.raises(ValueError):
        (() >> step("bad", log, fail=True)).run(quiet(tmp_path / "ck", executor=executor, workers=2))
    assert pool_threads() == []
    assert multiprocessing.active_children() == []


# --- 9. Config validation -------------------------------------------------------------------------------------------


class NoSubmit:
    submit = 42  # not callable


@pytest.mark.parametrize("executor", ["bogus", "Threads", "", 4, object(), NoSubmit()])
def test_an_executor_that_is_not_one_is_a_config_error(executor: object) -> None:
    with pytest.raises(chkpt.ConfigError, match="executor") as info:
        chkpt.Config(executor=executor)
    assert isinstance(info.value, ValueError) and repr(executor) in str(info.value)


def test_an_executor_class_instead_of_an_instance_is_a_config_error() -> None:
    # The class has a callable `submit` too (an unbound method); run would call it with compute_step as `self`.
    with pytest.raises(chkpt.ConfigError, match="executor"):
        chkpt.Config(executor=ThreadPoolExecutor)


@pytest.mark.parametrize("workers", [0, -1, True, False, 1.5, "2"])
def test_workers_must_be_a_positive_int(workers: object) -> None:
    with pytest.raises(chkpt.ConfigError, match="workers"):
        chkpt.Config(workers=workers)  # type: ignore[arg-type]


def test_the_executors_and_workers_that_are_accepted() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        for executor in (None, "sync", "threads", "processes", pool):
            for workers in (None, 1, 7):
                config = chkpt.Config(executor=executor, workers=workers)
                assert config.executor is executor and config.workers == workers
    finally:
        pool.shutdown()


# --- 10. Ctrl-C ------------------------------------------------------------------------------------------------------

INTERRUPTED = """
import os, sys, time
import chkpt

directory, log = sys.argv[1], sys.argv[2]

def note(label, what):
    with open(log, "a") as file:
        file.write(f"{label} {what} {time.time():.6f} {os.getpid()}\\n")

def long():
    note("long", "start")
    print("started", flush=True)
    time.sleep(30)
    note("long", "end")
    return 1

def queued():
    note("queued", "start")
    return 2

def after(x, y):
    note("after", "start")
    return x + y

pipeline = (chkpt.Stage(long), chkpt.Stage(queued)) >> chkpt.Stage(after)
try:
    pipeline(chkpt.Config(dir=directory, verbose=False, executor=sys.argv[3], workers=1))
except KeyboardInterrupt:
    note("main", "interrupted")
    raise
"""


@pytest.mark.parametrize("executor", EXECUTORS)
def test_ctrl_c_stops_the_run_and_the_process_exits_at_once_storing_nothing_half_done(
    tmp_path: Path, executor: str
) -> None:
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(INTERRUPTED))
    directory, log = tmp_path / "ck", tmp_path / "log"
    process = subprocess.Popen(
        [sys.executable, str(script), str(directory), str(log), executor],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)  # whatever happens, the test ends
    watchdog.start()
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "started\n"
        sent = time.time()
        process.send_signal(signal.SIGINT)  # to this process alone, not to its workers: as `kill -INT` would
        _, err = process.communicate(timeout=10)
        exited = time.time() - sent
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    # the process ended without waiting for the running stage (30 s): a thread pool's threads are daemons, a
    # process pool's workers are terminated
    assert exited < 5, exited
    assert process.returncode != 0
    assert "KeyboardInterrupt" in err, err
    trace = [line.split() for line in log.read_text().splitlines()]
    # the interrupt reached the caller at once, not when the stage it waited for returned
    interrupted = [float(at) for label, what, at, _ in trace if label == "main"]
    assert len(interrupted) == 1 and interrupted[0] - sent < 3, (trace, sent)
    started = [label for label, what, _, _ in trace if what == "start"]
    # workers=1: queued may have run before long, but never after; after never started
    assert "after" not in started and "long" in started
    assert "queued" not in started[started.index("long") :]
    assert ("long", "end") not in [(label, what) for label, what, _, _ in trace]
    assert not list(directory.rglob("*.json")) and not list(directory.rglob("*.tmp"))
    # nothing of the run lives on: the process that ran the long stage is gone (a thread died with its process)
    (runner,) = [int(pid) for label, what, _, pid in trace if (label, what) == ("long", "start")]
    time.sleep(0.5)  # an orphaned process is reaped by init
    with pytest.raises(ProcessLookupError):
        os.kill(runner, 0)


class RowError(Exception):
    """An exception whose __init__ takes other arguments than its `args`, so that a plain pickle cannot rebuild
    it, and which holds a lock, so that no pickler can (tblib, which dask.distributed installs, rebuilds the
    first kind)."""

    def __init__(self, row: int, problem: str) -> None:
        super().__init__(f"row {row}: {problem}")
        self.row = row
        self.guard = threading.Lock()


def bad_row(*inputs: object) -> None:
    raise RowError(7, "bad value")


def test_an_exception_that_cannot_travel_back_from_a_worker_process_says_what_it_was(tmp_path: Path) -> None:
    pipeline = () >> chkpt.Stage(bad_row)
    with pytest.raises(RowError, match="row 7: bad value"):
        pipeline.run(quiet(tmp_path / "sync"))
    with pytest.raises(
        chkpt.ChkptError, match=r"stage 'bad_row' raised test_executors\.RowError: row 7: bad va"
    ) as info:
        pipeline.run(quiet(tmp_path / "processes", executor="processes", workers=1))
    assert 'raise RowError(7, "bad value")' in str(info.value.__cause__)  # its traceback, from the worker


def exits(*inputs: object) -> None:
    raise SystemExit(3)


@pytest.mark.parametrize("executor", ["sync", *EXECUTORS])
def test_keep_going_reports_a_stage_that_exits_like_any_other_failure(tmp_path: Path, executor: str) -> None:
    log = tmp_path / "log"
    pipeline = (() >> chkpt.Stage(exits), () >> step("fine", log)) >> step("join", log)
    with pytest.raises(chkpt.StagesFailed) as info:
        pipeline.run(quiet(tmp_path / "ck", executor=executor, workers=2, keep_going=True))
    ((name, error),) = info.value.failures
    assert name == "exits" and isinstance(error, SystemExit)
    assert labels(log, "end") == ["fine"]


def test_a_watch_that_cannot_be_sent_to_a_worker_process_is_named(tmp_path: Path) -> None:
    stage = chkpt.Stage(bad_row, watch=lambda: b"v1")
    with pytest.raises(chkpt.PipelineError, match="stage 'bad_row': its watch cannot be sent to another process"):
        (() >> stage).run(quiet(tmp_path, executor="processes", workers=1))
