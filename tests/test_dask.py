"""Running on a Dask cluster (issue 4): a `distributed.LocalCluster` of two worker processes, started once for this
module. Each step runs on a worker, which stores its checkpoint; values stay on the workers and only the target's
value reaches this process; failures, keep_going, damage and records behave as with the other executors.

The stages are module-level functions of test_executors (workers import them by reference), which report what
they do by appending lines to a file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from test_executors import (
    NodeSpec,
    build_dag,
    calls,
    checkpoints,
    dags,
    evaluate_dag,
    events,
    labels,
    loads_alone,
    quiet,
    reachable,
    step,
    when,
)

import chkpt


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


def bytes_sent_by_workers(client: Any) -> int:
    """Bytes the workers have sent to anyone (each other, the scheduler, this process) since they started."""
    sent = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
    return int(sum(sent.values()))


# --- 1. the same values, records and checkpoints as the sync executor -------------------------------------------


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(specs=dags())
def test_random_graphs_give_the_values_and_checkpoints_of_the_sync_run(
    specs: list[NodeSpec], client: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("dag")
    log = base / "calls"
    target = build_dag(specs, log)[-1]
    _, distinct = reachable(specs)
    run = target.run(quiet(base / "dask", executor=client))
    assert run.value == evaluate_dag(specs)[-1]
    assert len(run.records) == distinct and {r.outcome for r in run.records} == {"stored"}
    assert sum(calls(log).values()) == distinct  # each step once, though a node may appear several times
    sync = target.run(quiet(base / "sync"))
    assert sorted((r.name, r.key) for r in run.records) == sorted((r.name, r.key) for r in sync.records)
    stored = sorted(p.relative_to(base / "dask") for p in (base / "dask").rglob("*.json"))
    assert stored == sorted(p.relative_to(base / "sync") for p in (base / "sync").rglob("*.json"))
    # a run that loads everything it can, on the cluster, computes nothing
    log.unlink()
    again = target.run(quiet(base / "dask", executor=client, load=True))
    assert again.value == run.value and [r.outcome for r in again.records] == ["loaded"] and not log.exists()


# --- 2. big values stay on the workers ------------------------------------------------------------------------------

ARRAY_BYTES = 50 * 2**20


@chkpt.Stage.wrap(format="numpy")
def big(size: int, log: str) -> Any:
    with open(log, "a") as file:
        file.write(f"big {os.getpid()}\n")
    return np.arange(size // 8, dtype=np.float64)


@chkpt.Stage.wrap()
def summary(array: Any, log: str) -> float:
    with open(log, "a") as file:
        file.write(f"summary {os.getpid()}\n")
    return float(array[-1])


def test_a_big_middle_value_stays_on_the_worker_that_made_it_and_its_checkpoint_loads_later(
    client: Any, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    middle = big.bind(size=ARRAY_BYTES, log=str(log))
    pipeline = () >> middle >> summary.bind(log=str(log))
    before = bytes_sent_by_workers(client)
    run = pipeline.run(quiet(tmp_path / "ck", executor=client))
    sent = bytes_sent_by_workers(client) - before
    assert run.value == ARRAY_BYTES // 8 - 1
    assert [(r.name, r.outcome) for r in run.records] == [("big", "stored"), ("summary", "stored")]
    assert run.records[0].bytes is not None and run.records[0].bytes >= ARRAY_BYTES
    # the array never left its worker: not to the other worker, not to the scheduler, not to this process
    assert sent < ARRAY_BYTES // 10, sent
    # both stages ran, and stored, in a worker process
    writers = {line.split()[0]: int(line.split()[1]) for line in log.read_text().splitlines()}
    assert set(writers) == {"big", "summary"}
    assert writers["big"] == writers["summary"] and writers["big"] in worker_pids(client)
    assert writers["big"] != os.getpid()
    # what the workers stored loads in a later run without any cluster, and verifies
    loaded = (() >> middle).run(quiet(tmp_path / "ck", load=True, store=False))
    assert [r.outcome for r in loaded.records] == ["loaded"]
    assert loaded.value.shape == (ARRAY_BYTES // 8,) and loaded.value[-1] == ARRAY_BYTES // 8 - 1
    assert loads_alone(pipeline, tmp_path / "ck") == run.value


# --- 3. failures ----------------------------------------------------------------------------------------------------


def test_a_failure_stops_new_stages_and_lets_running_ones_finish_and_store(client: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    slow = step("slow", log, seconds=1.0)
    bad = step("bad", log, seconds=0.2, fail=True)
    later = step("later", log)
    pipeline = (slow >> later, bad) >> step("join", log)
    with pytest.raises(ValueError, match="bad failed") as raised:
        pipeline.run(quiet(tmp_path / "ck", executor=client))
    assert any("stage 'bad'" in note for note in getattr(raised.value, "__notes__", []))
    started = labels(log, "start")
    assert sorted(started) == ["bad", "slow"]  # later and join never started
    assert labels(log, "end") == ["slow"] and when(log, "slow", "end") > when(log, "bad", "fail")
    assert len(checkpoints(tmp_path / "ck", "slow")) == 1 and not checkpoints(tmp_path / "ck", "bad")


def test_keep_going_runs_all_it_can_then_lists_every_failure(client: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = step("first", log, fail=True)
    second = step("second", log, seconds=0.3, fail=True)
    fine = step("fine", log, seconds=0.5) >> step("fine2", log)
    pipeline = (first >> step("after_first", log), second, fine) >> step("join", log)
    with pytest.raises(chkpt.StagesFailed) as raised:
        pipeline.run(quiet(tmp_path / "ck", executor=client, keep_going=True))
    assert sorted(name for name, _ in raised.value.failures) == ["first", "second"]
    assert all(isinstance(exc, ValueError) for _, exc in raised.value.failures)
    assert sorted(labels(log, "end")) == ["fine", "fine2"]
    assert "after_first" not in labels(log, "start") and "join" not in labels(log, "start")
    assert len(checkpoints(tmp_path / "ck", "fine2")) == 1


def test_an_unpicklable_stage_is_named_before_anything_runs(client: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    pipeline = step("first", log) >> chkpt.Stage(lambda x: x, name="anonymous")
    with pytest.raises(chkpt.PipelineError, match=r"'anonymous'.*threads"):
        pipeline.run(quiet(tmp_path / "ck", executor=client))
    assert not log.exists()


def counting_up(n: int = 3) -> Any:
    return (i for i in range(n))  # a generator: it cannot be sent back from a worker


def test_a_value_that_cannot_come_back_from_the_cluster_names_its_stage(client: Any, tmp_path: Path) -> None:
    pipeline = () >> chkpt.Stage(counting_up)
    with pytest.raises(TypeError, match=r"serialize|pickle") as info:
        pipeline.run(quiet(tmp_path / "ck", executor=client, store=False))
    assert any("stage 'counting_up' back from the Dask cluster" in n for n in getattr(info.value, "__notes__", []))


# --- 4. damage, records and log lines ---------------------------------------------------------------------------


def test_a_damaged_checkpoint_is_reported_and_recomputed_and_nothing_runs_twice(client: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    left, right = step("left", log), step("right", log, seconds=0.3)
    pipeline = (() >> left, () >> right) >> step("join", log)
    directory = tmp_path / "ck"
    pipeline.run(quiet(directory, executor=client))
    (path,) = checkpoints(directory, "left")
    path.write_bytes(path.read_bytes()[:-5])
    log.unlink()
    # right is not in the load list: it computes while left's checkpoint turns out to be damaged
    with pytest.warns(chkpt.ChkptWarning, match=r"left.*cannot be loaded"):
        run = pipeline.run(quiet(directory, executor=client, load=["left"]))
    assert run.value == ["join", ["left"], ["right"]]
    assert sorted(labels(log, "start")) == ["join", "left", "right"]  # each once: right's result was kept
    assert loads_alone(pipeline, directory) == run.value


def test_records_and_log_lines_come_here_in_the_order_stages_finish(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    pipeline = (step("slow", log, seconds=0.6), step("quick", log)) >> step("join", log)
    run = pipeline.run(chkpt.Config(dir=tmp_path / "ck", executor=client, verbose=True))
    assert [r.name for r in run.records] == ["quick", "slow", "join"]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("chkpt: ")]
    assert [line.split()[1] for line in lines] == ["quick", "slow", "join"]
    assert all(event.pid != os.getpid() for event in events(log))


# --- 5. Ctrl-C ------------------------------------------------------------------------------------------------------

INTERRUPTED = """
import sys
from distributed import Client, LocalCluster
import chkpt
from test_executors import step

directory, log = sys.argv[1], sys.argv[2]
if __name__ == "__main__":
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            long = step("long", log, seconds=3.0)
            pipeline = (long, step("queued", log)) >> step("after", log)
            print("ready", flush=True)
            try:
                pipeline(chkpt.Config(dir=directory, verbose=False, executor=client))
            except KeyboardInterrupt:
                print("interrupted", flush=True)
"""


def test_ctrl_c_returns_at_once_and_leaves_only_whole_checkpoints(tmp_path: Path) -> None:
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(INTERRUPTED))
    directory, log = tmp_path / "ck", tmp_path / "log"
    tests = str(Path(__file__).parent)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, str(script), str(directory), str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    watchdog = threading.Timer(90, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        deadline = time.time() + 60
        while "long" not in labels(log, "start") and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        sent = time.time()
        assert process.stdout.readline() == "interrupted\n"
        interrupted = time.time() - sent
        process.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert interrupted < 2, interrupted  # the caller got control back before the 3 s stage could end
    assert "after" not in labels(log, "start")
    # what is in the folder is whole: no temporary file, and a checkpoint that is there loads
    assert not list(directory.rglob("*.tmp"))
    for name, options in (("long", {"seconds": 3.0}), ("queued", {})):
        if checkpoints(directory, name):
            assert loads_alone(() >> step(name, log, **options), directory) == [name]


def test_an_asynchronous_client_is_a_config_error_before_anything_runs(client: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"

    async def run_with_an_asynchronous_client() -> None:
        async with distributed.Client(client.scheduler.address, asynchronous=True) as asynchronous:  # type: ignore[no-untyped-call]
            with pytest.raises(chkpt.ConfigError, match="asynchronous"):
                (() >> step("first", log)).run(quiet(tmp_path / "ck", executor=asynchronous))

    asyncio.run(run_with_an_asynchronous_client())
    assert not log.exists()
