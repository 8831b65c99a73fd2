"""Runs that share a store: a lock per key makes two runs of the same pipeline at once compute each stage once
(the other waits, then loads what the first stored), and replacing a checkpoint never leaves an old record
vouching for a new value.

Runs in other processes are scripts written to `tmp_path` and started with `sys.executable`; they count calls by
appending a line per call to one file (appends of a short line are atomic), which the test reads afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import chkpt
from chkpt.errors import StoreError
from chkpt.store import LocalStore

STAGES = 20

# 20 stages: four chains (of 5, 5, 4, 4 links) that start from one shared source, joined at the end, so the four
# processes meet on shared stages (the source, every chain) rather than only one after another.
PIPELINE_MODULE = """
import os
import time

import chkpt

CALLS = os.environ["CHKPT_TEST_CALLS"]


def note(name):
    with open(CALLS, "a") as file:
        file.write(f"{name} {os.getpid()}\\n")
    time.sleep(0.02)


@chkpt.Stage.wrap()
def source():
    note("source")
    return 1


@chkpt.Stage.wrap()
def link(x, chain, depth):
    note(f"link-{chain}-{depth}")
    return x * 3 + chain + depth


@chkpt.Stage.wrap()
def join(*xs):
    note("join")
    return sum(xs)


def build():
    start = () >> source
    ends = []
    for chain in range(4):
        node = start
        for depth in range(5 if chain < 2 else 4):
            node = (node,) >> link.bind(chain=chain, depth=depth)
        ends.append(node)
    return tuple(ends) >> join
"""

RUNNER = """
import json
import os
import sys
import time

import stages

go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
config = stages.chkpt.Config(dir=sys.argv[1], load=True, verbose=False, executor=sys.argv[3], workers=4)
run = stages.build().run(config)
print(json.dumps({"value": run.value, "outcomes": [[r.name, r.outcome] for r in run.records]}))
"""


def expected_value() -> int:
    ends = []
    for chain in range(4):
        x = 1
        for depth in range(5 if chain < 2 else 4):
            x = x * 3 + chain + depth
        ends.append(x)
    return sum(ends)


def start_runs(
    tmp_path: Path, executors: list[str], store: str | None = None, env: dict[str, str] | None = None
) -> tuple[list[subprocess.Popen[str]], Path, Path]:
    """Start a run of the 20-stage pipeline per executor, all on `store` (a folder in tmp_path unless given),
    released together."""
    (tmp_path / "stages.py").write_text(PIPELINE_MODULE)
    (tmp_path / "runner.py").write_text(RUNNER)
    calls, go, folder = tmp_path / "calls", tmp_path / "go", tmp_path / "store"
    env = {**os.environ, **(env or {}), "CHKPT_TEST_CALLS": str(calls), "PYTHONPATH": str(tmp_path)}
    runs = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "runner.py"), store or str(folder), str(go), executor],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for executor in executors
    ]
    time.sleep(1.0)  # let every interpreter start and wait at the line, so the runs begin together
    go.touch()
    return runs, calls, folder


def finish(runs: list[subprocess.Popen[str]], calls: Path) -> list[dict[str, Any]]:
    """Wait for the runs; check that every stage's function ran once in all of them together, and that each
    run got the pipeline's value; return what each run printed."""
    results = []
    for process in runs:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    counted = Counter(line.split()[0] for line in calls.read_text().splitlines())
    assert len(counted) == STAGES
    assert set(counted.values()) == {1}, counted
    assert [r["value"] for r in results] == [expected_value()] * len(runs)
    return results


def test_four_runs_at_once_compute_every_stage_once_and_get_the_same_value(tmp_path: Path) -> None:
    runs, calls, store = start_runs(tmp_path, ["sync", "sync", "threads", "threads"])
    results = finish(runs, calls)
    # every run either computed a stage or loaded it; each stage was stored by exactly one of them
    stored = Counter(name for r in results for name, outcome in r["outcomes"] if outcome == "stored")
    assert sum(stored.values()) == STAGES
    assert not (store / ".locks").exists()  # holders remove their lock files, the last one their folder


def test_four_runs_at_once_on_s3_compute_every_stage_once(tmp_path: Path, s3_endpoint: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3_endpoint)
    fs.mkdir("shared-runs")
    # The runs find the endpoint and credentials where boto finds them, in the environment.
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    runs, calls, _ = start_runs(tmp_path, ["sync", "sync", "threads", "threads"], "s3://shared-runs/one", env)
    results = finish(runs, calls)
    stored = Counter(name for r in results for name, outcome in r["outcomes"] if outcome == "stored")
    assert sum(stored.values()) == STAGES
    assert not fs.find("shared-runs/one/.locks")  # every lease object was removed by its holder


class Shared:
    """A value for a stage to return that counts how often it was computed, across the threads of this test."""

    calls = 0
    lock = threading.Lock()


@chkpt.Stage.wrap()
def slow_count(tag: int) -> int:
    with Shared.lock:
        Shared.calls += 1
    time.sleep(0.3)
    return tag * 2


def test_two_runs_in_threads_of_one_process_take_turns_too(tmp_path: Path) -> None:
    Shared.calls = 0
    pipeline = () >> slow_count.bind(tag=21)
    results: list[chkpt.Run[int]] = []

    def run() -> None:
        results.append(pipeline.run(chkpt.Config(dir=tmp_path, load=True, verbose=False)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Shared.calls == 1
    assert [r.value for r in results] == [42, 42]
    assert sorted(r.records[0].outcome for r in results) == ["loaded", "stored"]


def test_a_run_that_may_not_load_computes_even_after_waiting(tmp_path: Path) -> None:
    Shared.calls = 0
    pipeline = () >> slow_count.bind(tag=5)
    pipeline.run(chkpt.Config(dir=tmp_path, verbose=False))
    again = pipeline.run(chkpt.Config(dir=tmp_path, load=False, verbose=False))
    assert Shared.calls == 2 and again.records[0].outcome == "stored"


HOLDER = """
import sys
import time

from chkpt.store import LocalStore

with LocalStore(sys.argv[1]).lock("stage", "k" * 32):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_in_subprocess(tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    holder = subprocess.Popen([sys.executable, str(script), str(tmp_path / "store")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_lock_is_seen_held_and_a_killed_holder_lets_go(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "store"))
    holder = hold_in_subprocess(tmp_path)
    try:
        assert store.lock("stage", "k" * 32).held_elsewhere()
        entered = threading.Event()

        def wait_for_it() -> None:
            with store.lock("stage", "k" * 32):
                entered.set()

        waiter = threading.Thread(target=wait_for_it, daemon=True)
        waiter.start()
        assert not entered.wait(0.5)  # it waits while the other process holds the key
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert entered.wait(10)  # the kernel let go with the process; its lock file is taken over
        waiter.join()
    finally:
        holder.kill()
        holder.wait()
    assert not store.lock("stage", "k" * 32).held_elsewhere()
    assert not (tmp_path / "store" / ".locks").exists()


def test_replacing_a_two_file_checkpoint_removes_its_record_before_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chkpt.codecs

    store = LocalStore(str(tmp_path))
    codec = chkpt.codecs.get("pickle")
    store.write("stage", "k" * 32, "pickle", codec, [1, 2, 3], {})
    assert store.read("stage", "k" * 32, "pickle")[0] == [1, 2, 3]

    def crash(*args: Any) -> None:
        raise StoreError("the disk went away")

    monkeypatch.setattr(LocalStore, "_atomic", crash)
    with pytest.raises(StoreError):
        store.write("stage", "k" * 32, "pickle", codec, [4, 5, 6], {})
    monkeypatch.undo()
    # the old record is gone with the failed replacement: no checkpoint, rather than one whose value may be either
    assert not store.exists("stage", "k" * 32, "pickle")
    with pytest.raises(FileNotFoundError):
        store.read("stage", "k" * 32, "pickle")


def test_lock_files_stay_out_of_the_stage_folders_and_inside_the_store(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path))
    with store.lock("a/../stage", "k" * 32):
        (lock_file,) = tmp_path.rglob("*.lock")
        assert lock_file.parent == tmp_path / ".locks"
        assert lock_file.name == "a_.._stage." + "k" * 32 + ".lock"
    assert not lock_file.parent.exists()
