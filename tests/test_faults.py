"""Fault tests for the local folder store: what a checkpoint folder holds after the process writing it is killed at
random moments, after its files are damaged, when it is read-only, when stage names try to leave it, and when the
disk is full (a file size limit).

What they hold chkpt to (README, "Checkpoints on disk"): a kill never loses a checkpoint that was whole and never
leaves one that does not load or loads a wrong value; a damaged file is never loaded, is reported with a
`chkpt.ChkptWarning` naming its checkpoint, and its stage is computed and stored again; a store that cannot be
written is a `chkpt.StoreError` before any stage runs, and a write that fails is a `StoreError` naming the stage
that leaves no file behind; no stage name puts a file outside the store.

Runs that must be killed, run without the right to write to a read-only folder (which root has), or run under a
file size limit run in a subprocess: a script written to `tmp_path` and started with `sys.executable`. The kill
test's script imports chkpt once and forks a child for each run, which the test kills, so 200 kills cost no
interpreter start-ups.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chkpt
from chkpt import index
from chkpt.store import LocalStore

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None


# --- helpers ---------------------------------------------------------------------------------------------------------


def config(directory: Path, **options: Any) -> chkpt.Config:
    return chkpt.Config(dir=directory, verbose=False, **options)


def outcomes(run: chkpt.Run[Any]) -> list[tuple[str, str]]:
    return [(r.name, r.outcome) for r in run.records]


def same_value(found: Any, expected: Any) -> bool:
    """Equal, and for numpy arrays of the same dtype, shape and bytes (== on arrays compares elementwise)."""
    if type(expected).__module__ == "numpy" or type(found).__module__ == "numpy":
        return (
            type(found) is type(expected)
            and found.dtype == expected.dtype
            and found.shape == expected.shape
            and found.tobytes() == expected.tobytes()
        )
    return bool(type(found) is type(expected) and found == expected)


def files_under(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by relative path, with its content."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def write_script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@contextmanager
def imported(folder: Path, name: str) -> Iterator[ModuleType]:
    """Import the module `name` from `folder`, and forget it afterwards."""
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


def script_env() -> dict[str, str]:
    # One thread for numpy's BLAS (the kill test's script forks), and no bytecode files written by the scripts.
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def run_script(script: Path, *args: str, preexec_fn: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run a script that prints one JSON object on its last line of output, and return that object."""
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=script_env(),
        cwd=script.parent,
        timeout=120,
        preexec_fn=preexec_fn,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


# --- 1. kills at random moments ----------------------------------------------------------------------------------

# The pipeline the kill test runs, as a module of its own, so that the killed processes and this one compute the
# same keys. Its stages sleep SETTINGS["pause"] seconds each: a dict's value at run time is not part of any key, so
# the killed processes are slow (kills land while stages compute, while they write and between stages) and this
# process's checks are fast.
KILLED_PIPELINE = '''
"""Six stages, JSON and (with numpy) one numpy-format stage."""

import time

import chkpt

SETTINGS = {"pause": 0.0}


def pause():
    time.sleep(SETTINGS["pause"])


@chkpt.Stage.wrap()
def base():
    pause()
    return [i * i % 1009 for i in range(1500)]


@chkpt.Stage.wrap()
def shifted(values, variant):
    pause()
    return [v * 3 + variant for v in values]


GRID


@chkpt.Stage.wrap()
def stats(grid):
    pause()
    rows = [[float(x) for x in row] for row in grid]
    return {"total": sum(map(sum, rows)), "peaks": [max(row) for row in rows]}


@chkpt.Stage.wrap()
def words(values, summary):
    pause()
    return ["w%d.%d" % (v, len(summary["peaks"])) for v in values]


@chkpt.Stage.wrap()
def final(labels, summary, values):
    pause()
    return {"count": len(labels), "total": summary["total"], "head": labels[:5], "sum": sum(values)}


def pipeline(variant):
    numbers = base >> shifted.bind(variant=variant)
    summary = numbers >> grid >> stats
    return ((numbers, summary) >> words, summary, base) >> final


def plain(variant):
    """Every stage's value, by calling the functions: no chkpt run involved."""
    b = base()
    s = shifted(b, variant)
    g = grid(s)
    t = stats(g)
    w = words(s, t)
    return {"base": b, "shifted": s, "grid": g, "stats": t, "words": w, "final": final(w, t, b)}
'''

NUMPY_GRID = """
@chkpt.Stage.wrap(format="numpy")
def grid(values):
    import numpy

    pause()
    return numpy.array(values, dtype=numpy.float64).reshape(30, 50) / 7
"""

JSON_GRID = """
@chkpt.Stage.wrap()
def grid(values):
    pause()
    return [[v / 7 for v in values[r * 50 : (r + 1) * 50]] for r in range(30)]
"""

# Imports chkpt (and numpy) once; then for each variant read from stdin, forks a child that runs the pipeline with
# load=True and store=True, prints the child's pid, and reaps it only when told to, so that the pid the test kills
# is always its child's, never a reused one. Its fsyncs sleep first, so that writes take a while too and kills land
# in them: with a temporary file written but not renamed, or renamed but its folder not synced (for numpy, before
# the record is written).
FORK_SERVER = """
import os
import sys
import time
import traceback

sys.path.insert(0, {code!r})
import chkpt
import {module} as pipe

if {numpy!r}:
    chkpt.codecs.get("numpy")
pipe.SETTINGS["pause"] = {pause!r}
real_fsync = os.fsync


def slow_fsync(fd):
    time.sleep({pause!r} / 2)
    real_fsync(fd)


os.fsync = slow_fsync
config = chkpt.Config(dir={store!r}, load=True, store=True, verbose=False)
print("ready", flush=True)
while line := sys.stdin.readline():
    child = os.fork()
    if child == 0:
        try:
            pipe.pipeline(int(line)).run(config)
        except BaseException:
            traceback.print_exc()
            os._exit(3)
        os._exit(0)
    print(child, flush=True)
    sys.stdin.readline()
    print(os.waitpid(child, 0)[1], flush=True)
"""

KILLS = 200
LOOPS = 2  # kill loops side by side, each with its own fork server and checkpoint folder (they mostly sleep)
KILL_WINDOW = 0.3  # a kill lands at a random moment this many seconds after the fork at most
PAUSE = 0.03  # seconds each stage sleeps in the killed processes, and half that each fsync: a run from scratch
# (six stages, seven files, each written with two fsyncs) takes about 0.4 s


class KillServer:
    """The fork server: `start(variant)` forks a run, `kill()` kills it, `reap()` says how it ended."""

    def __init__(self, script: Path, errors: Path) -> None:
        self.errors = errors
        self.stderr = errors.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=script_env(),
            cwd=script.parent,
        )
        self.child: int | None = None
        assert self.readline() == "ready", self.errors.read_text()

    def readline(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the fork server ended: {self.errors.read_text()}"
        return line.strip()

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def start(self, variant: int) -> None:
        self.send(str(variant))
        self.child = int(self.readline())

    def kill(self) -> None:
        assert self.child is not None
        os.kill(self.child, signal.SIGKILL)  # our child's child, not reaped yet: a live process or a zombie

    def reap(self) -> int:
        """The run's exit code: -SIGKILL if the kill landed, 0 if the run had finished."""
        self.send("reap")
        self.child = None
        return os.waitstatus_to_exitcode(int(self.readline()))

    def close(self) -> None:
        if self.process.returncode is not None:
            return
        if self.child is not None:
            self.kill()
            self.reap()
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=30)
            self.process.stdout.close()
            self.stderr.close()


Marker = tuple[str, str, str]  # stage name, key, format
Signature = tuple[tuple[int, int, int], ...]


def whole_checkpoints(store: Path, formats: dict[str, str]) -> set[Marker]:
    """The checkpoints whose marker exists: `<key>.json` for JSON stages, `<key>.meta.json` for the others."""
    found: set[Marker] = set()
    for stage, format_name in formats.items():
        folder = store / stage
        if not folder.is_dir():
            continue
        suffix = ".json" if format_name == "json" else ".meta.json"
        for entry in os.scandir(folder):
            if entry.name.endswith(suffix) and not entry.name.startswith("."):
                found.add((stage, entry.name.removesuffix(suffix), format_name))
    return found


def temporary_files(store: Path) -> set[str]:
    return {p.name for p in store.rglob("*.tmp")}


def stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


class KilledPipeline:
    """The kill test's pipeline, imported in this process: the keys of its variants and their right values."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        module.SETTINGS["pause"] = 0.0
        self.formats = {name: "numpy" if name == "grid" and HAVE_NUMPY else "json" for name in module.plain(0)}
        self.expected: dict[str, Any] = {}  # key -> the value a checkpoint with that key must hold
        self.keys: dict[int, dict[str, str]] = {}  # variant -> stage name -> key

    def learn(self, variant: int) -> None:
        """The keys of every stage of a variant, from a run that neither loads nor stores."""
        if variant in self.keys:
            return
        run = self.module.pipeline(variant).run(chkpt.Config(load=False, store=False, verbose=False))
        values = self.module.plain(variant)
        assert sorted(r.name for r in run.records) == sorted(values)
        self.expected.update({r.key: values[r.name] for r in run.records})
        self.keys[variant] = {r.name: r.key for r in run.records}


class KillLoop:
    """A fork server and its checkpoint folder: `start` a run, `kill_and_check` it at its deadline.

    After each kill, every checkpoint that was whole before it must still be whole and load its right value, and
    every one written since must load its right value: each is loaded with chkpt's own `LocalStore.read` when it
    first appears, and again whenever its files change or the run that was killed had its key; the others are
    seen unchanged (same inode, size and mtime), and are all loaded again at the end.
    """

    def __init__(
        self, folder: Path, server: Callable[[Path], str], pipeline: KilledPipeline, seed: int, counts: Counter[str]
    ) -> None:
        self.store = folder / "store"
        script = write_script(folder / "fork_server.py", server(self.store))
        self.server = KillServer(script, folder / "fork_server.err")
        self.reader = LocalStore(str(self.store))
        self.pipeline = pipeline
        self.rng = random.Random(seed)
        self.counts = counts
        self.problems: list[str] = []
        self.loaded: dict[Marker, Signature] = {}  # checkpoints loaded right, and their files' stat then
        self.reported: set[str] = set()  # what is wrong with a checkpoint, reported once
        self.kills = self.attempts = self.variant = 0
        self.variants: list[int] = []
        self.temporaries: set[str] = set()
        self.deadline = 0.0

    def start(self) -> None:
        self.attempts += 1
        assert self.attempts <= 2 * KILLS, dict(self.counts)
        # Each variant runs twice: the second run resumes from what the first stored, and the stage all variants
        # share is loaded, so kills land while stages load, compute and write, and between stages.
        self.variant = self.attempts // 2
        if self.variant not in self.variants:
            self.pipeline.learn(self.variant)
            self.variants.append(self.variant)
        self.temporaries = temporary_files(self.store) if self.store.exists() else set()
        self.server.start(self.variant)
        self.deadline = time.monotonic() + self.rng.uniform(0, KILL_WINDOW)

    def kill_and_check(self) -> None:
        before = whole_checkpoints(self.store, self.pipeline.formats)
        self.server.kill()
        exit_code = self.server.reap()
        assert exit_code in (0, -signal.SIGKILL), self.server.errors.read_text()
        after = whole_checkpoints(self.store, self.pipeline.formats)
        problems = len(self.problems)
        if exit_code == 0:
            self.counts["runs that ended before their kill"] += 1
        else:
            self.kills += 1
            self.counts["kills"] += 1
            if temporary_files(self.store) - self.temporaries:
                self.counts["kills during a write (a temporary file left)"] += 1
        touched = set(self.pipeline.keys[self.variant].values())
        for marker in sorted(before - after):
            self.lost(f"{marker[0]}/{marker[1]} is gone")
        for marker in sorted(after):
            if marker[1] not in touched and self.loaded.get(marker) == self.signature(marker):
                self.counts["checkpoints seen unchanged since they loaded"] += 1
                continue
            reason = self.loads_right(marker)
            if reason is None or reason in self.reported:
                continue
            self.reported.add(reason)
            if marker in before:
                self.lost(reason)
            else:
                self.counts["damaged checkpoints"] += 1
                self.problems.append(f"attempt {self.attempts}: a checkpoint written before the kill: {reason}")
        if exit_code != 0 and self.kills % 10 == 0:
            self.check_run(self.variant)
            self.check_listing()
        if exit_code != 0 and len(self.problems) == problems:
            self.counts["crashes survived"] += 1

    def lost(self, reason: str) -> None:
        self.counts["values lost"] += 1
        self.problems.append(f"attempt {self.attempts}: a checkpoint whole before the kill: {reason}")

    def signature(self, marker: Marker) -> Signature:
        stage, key, format_name = marker
        paths = [self.reader.marker(stage, key, format_name)]
        if format_name == "numpy":
            paths.append(self.reader.path(stage, key, "npy"))
        return tuple(
            (s.st_ino, s.st_size, s.st_mtime_ns) if (s := stat_or_none(path)) is not None else (0, -1, 0)
            for path in paths
        )

    def loads_right(self, marker: Marker) -> str | None:
        """Why this checkpoint does not load its right value, or None if it does."""
        stage, key, format_name = marker
        self.counts["checkpoints loaded and compared"] += 1
        signature = self.signature(marker)
        try:
            value, _, _ = self.reader.read(stage, key, format_name)
        except Exception as exc:
            return f"{stage}/{key} ({format_name}) does not load: {type(exc).__name__}: {exc}"
        if key not in self.pipeline.expected:
            return f"{stage}/{key} has a key that no variant of the pipeline has"
        if not same_value(value, self.pipeline.expected[key]):
            return f"{stage}/{key} loads a wrong value"
        self.loaded[marker] = signature
        return None

    def check_run(self, variant: int) -> None:
        """A run in this process returns the right value, loads what it may, and warns of no damage."""
        final = ("final", self.pipeline.keys[variant]["final"], "json")
        final_is_whole = final in whole_checkpoints(self.store, self.pipeline.formats)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = self.pipeline.module.pipeline(variant).run(config(self.store, load=True, store=False))
        self.counts["runs checked"] += 1
        damage = [str(w.message) for w in caught if issubclass(w.category, chkpt.ChkptWarning)]
        if damage:
            self.problems.append(f"variant {variant}: {damage}")
        if run.value != self.pipeline.module.plain(variant)["final"]:
            self.problems.append(f"variant {variant}: the run returned {run.value!r}")
        if final_is_whole and outcomes(run) != [("final", "loaded")]:
            self.problems.append(f"variant {variant}: its final checkpoint is whole, but the run did {outcomes(run)}")

    def check_listing(self) -> None:
        """The store's listing, from its index, names exactly the whole checkpoints, and is the listing read
        from every record (what a crash between storing a checkpoint and indexing it can make them differ in)."""
        self.counts["listings compared"] += 1
        listed = chkpt.Store(self.store).checkpoints()
        whole = {(stage, key) for stage, key, _ in whole_checkpoints(self.store, self.pipeline.formats)}
        if {(cp.stage, cp.key) for cp in listed} != whole:
            self.problems.append(f"attempt {self.attempts}: the listing is not the whole checkpoints")
        with mock.patch.object(index, "read", lambda folder: ({}, 0)):
            from_records = chkpt.Store(self.store).checkpoints()
        if listed != from_records:
            self.problems.append(f"attempt {self.attempts}: the index listing differs from the records'")

    def finish(self) -> None:
        """After the last kill: every variant's run, a load of every checkpoint, and its listing."""
        self.check_listing()
        for variant in self.variants:
            self.check_run(variant)
        markers = whole_checkpoints(self.store, self.pipeline.formats)
        self.counts["checkpoints whole at the end"] += len(markers)
        for marker in sorted(markers):
            reason = self.loads_right(marker)
            if reason is not None:
                self.problems.append(f"at the end: {reason}")


def test_kills_at_random_moments_never_lose_or_damage_a_checkpoint(tmp_path: Path) -> None:
    code = tmp_path / "code"
    module = f"chkpt_faults_killed_{uuid.uuid4().hex[:12]}"
    write_script(code / f"{module}.py", KILLED_PIPELINE.replace("GRID", NUMPY_GRID if HAVE_NUMPY else JSON_GRID))

    def server(store: Path) -> str:
        return FORK_SERVER.format(code=str(code), module=module, numpy=HAVE_NUMPY, pause=PAUSE, store=str(store))

    rng = random.Random(1234)
    counts: Counter[str] = Counter()
    with imported(code, module) as imported_module:
        pipeline = KilledPipeline(imported_module)
        loops: list[KillLoop] = []
        try:
            for number in range(LOOPS):
                loops.append(KillLoop(tmp_path / f"loop{number}", server, pipeline, rng.randrange(2**32), counts))
            for loop in loops:
                loop.start()
            # Each loop kills its run at its deadline, checks its folder and starts the next run; while one loop
            # checks, the other's run goes on.
            while running := [loop for loop in loops if loop.kills < KILLS // LOOPS]:
                loop = min(running, key=lambda loop: loop.deadline)
                time.sleep(max(0.0, loop.deadline - time.monotonic()))
                loop.kill_and_check()
                if loop.kills < KILLS // LOOPS:
                    loop.start()
        finally:
            for loop in loops:
                loop.server.close()
        for loop in loops:
            loop.finish()
        counts["variants run"] = len(pipeline.keys)
    counts["values lost"] += 0  # shown even when it is zero
    print(f"\nkill test: {dict(counts)}")
    assert [problem for loop in loops for problem in loop.problems] == []
    assert counts["kills"] == counts["crashes survived"] == KILLS
    assert counts["values lost"] == 0


# --- 2. damaged files --------------------------------------------------------------------------------------------

DAMAGE_CALLS: Counter[str] = Counter()


@chkpt.Stage.wrap()
def source() -> list[int]:
    DAMAGE_CALLS["source"] += 1
    return [(i * 37) % 101 for i in range(500)]


@chkpt.Stage.wrap(format="bytes")
def packed(values: list[int]) -> bytes:
    DAMAGE_CALLS["packed"] += 1
    return bytes(values)


@chkpt.Stage.wrap(format="numpy")
def table(values: list[int]) -> Any:
    import numpy

    DAMAGE_CALLS["table"] += 1
    return numpy.array(values, dtype=numpy.float32).reshape(25, 20) * 1.5


@chkpt.Stage.wrap()
def summary(*parts: Any) -> dict[str, Any]:
    DAMAGE_CALLS["summary"] += 1
    columns = [float(x) for x in parts[1].sum(axis=0)] if len(parts) > 1 else None
    return {"bytes": sum(parts[0]), "columns": columns}


def damage_pipelines() -> dict[str, chkpt.Pipeline[Any]]:
    """For each stage, the pipeline that ends in it: source (json), packed (bytes, a value file and a record),
    table (numpy, likewise; with numpy only) and summary (json) of both."""
    pipelines: dict[str, chkpt.Pipeline[Any]] = {"source": () >> source, "packed": source >> packed}
    if HAVE_NUMPY:
        pipelines["table"] = source >> table
    pipelines["summary"] = tuple(pipelines[name] for name in ("packed", "table") if name in pipelines) >> summary
    return pipelines


def plain_damage_values() -> dict[str, Any]:
    values: dict[str, Any] = {"source": source.func()}
    values["packed"] = packed.func(values["source"])
    parts = [values["packed"]]
    if HAVE_NUMPY:
        values["table"] = table.func(values["source"])
        parts.append(values["table"])
    values["summary"] = summary.func(*parts)
    return values


RECORD_HEAD = b'{"chkpt": '
CHECKED_FIELDS = ("key", "codec", "bytes", "checksum")


def flip_is_noticed(path: Path, original: bytes, position: int, damaged: bytes) -> bool:
    """Whether a load must notice this flipped bit, by what the README says a load verifies.

    A JSON checkpoint: its value, and the end of its record's line (key, length, checksum), compared as bytes; the
    record's other fields (stage, module, inputs, created, seconds...) are not read. Any other: the value file
    entire, and the record's key, codec, size and checksum; its other fields are not used.
    """
    if path.name.endswith(".meta.json"):
        try:
            record = json.loads(damaged)
        except ValueError:
            return True
        expected = json.loads(original)
        return not isinstance(record, dict) or any(record.get(f) != expected[f] for f in CHECKED_FIELDS)
    if path.suffix != ".json":
        return True  # a value file
    head = original[: original.index(b"\n")]
    descriptive = range(len(RECORD_HEAD), head.index(b'"key": '))
    return position not in descriptive or damaged[position] == ord("\n")


def test_damaged_files_are_never_loaded_and_their_stage_is_recomputed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    pipelines = damage_pipelines()
    expected = plain_damage_values()
    first = pipelines["summary"].run(config(store))
    assert same_value(first.value, expected["summary"])
    keys = {r.name: r.key for r in first.records}
    assert sorted(keys) == sorted(pipelines)
    formats = {"source": "json", "packed": "bytes", "table": "numpy", "summary": "json"}
    extensions = {"json": "json", "bytes": "bin", "numpy": "npy"}
    reader = LocalStore(str(store))
    rng = random.Random(1234)
    # Every kind of damage to every file of every stage, three times, in a random order. (The order is drawn
    # first: how much randomness a cut or a flip then draws depends on the file's length, which varies with the
    # record's timestamp.)
    kinds = ["truncate", "flip", "empty", "record"]

    def parts(kind: str, stage: str) -> list[str]:
        if formats[stage] == "json":
            return ["file"]  # the record is its first line
        return ["record"] if kind == "record" else ["record", "value file"]

    schedule = [(kind, stage, part) for kind in kinds for stage in sorted(pipelines) for part in parts(kind, stage)]
    schedule *= 3
    rng.shuffle(schedule)
    tried: Counter[str] = Counter()

    for trial, (kind, stage, part) in enumerate(schedule):
        key, format_name = keys[stage], formats[stage]
        layout = "json" if format_name == "json" else format_name + " (value file and record)"
        marker = Path(reader.marker(stage, key, format_name))
        damaged = Path(reader.path(stage, key, extensions[format_name])) if part == "value file" else marker
        data = damaged.read_bytes()
        # What the next run must do: warn and recompute, recompute without a warning (there is no checkpoint), or
        # load (a flipped bit in a record's field that no load reads: the value is still verified).
        expect = "warn"
        if kind == "truncate":
            damaged.write_bytes(data[: rng.randrange(len(data))])
        elif kind == "flip":
            position = rng.randrange(len(data))
            flipped = bytearray(data)
            flipped[position] ^= 1 << rng.randrange(8)
            damaged.write_bytes(flipped)
            if not flip_is_noticed(damaged, data, position, bytes(flipped)):
                expect = "load"
        elif kind == "empty":
            damaged.write_bytes(b"")
        elif format_name == "json":
            # The record is the first line of a JSON checkpoint: garble it, keeping the file's length.
            head, _, rest = data.partition(b"\n")
            marker.write_bytes(rng.randbytes(len(head)).replace(b"\n", b" ") + b"\n" + rest)
        else:
            # The record of any other checkpoint is its own file: without it the value file is no checkpoint.
            marker.unlink()
            expect = "recompute"
        tried[f"{kind}, {layout}, {part}" + (", in a field no load reads" if expect == "load" else "")] += 1

        calls_before = DAMAGE_CALLS.copy()
        if expect == "warn":
            # The warning names the checkpoint by its record, the file whose presence means a checkpoint: the damaged
            # file itself, or the record beside the damaged value file.
            with pytest.warns(chkpt.ChkptWarning, match=re.escape(f"checkpoint {marker} of stage '{stage}'")) as got:
                run = pipelines[stage].run(config(store, load=True))
            messages = [str(w.message) for w in got if issubclass(w.category, chkpt.ChkptWarning)]
            assert len(messages) == 1, messages
            if part == "value file":
                assert "value" in messages[0], messages[0]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", chkpt.ChkptWarning)
                run = pipelines[stage].run(config(store, load=True))
        assert same_value(run.value, expected[stage]), (trial, kind, stage)
        if expect == "load":
            assert outcomes(run) == [(stage, "loaded")], (trial, kind, stage, outcomes(run))
            assert calls_before == DAMAGE_CALLS
        else:
            assert outcomes(run)[-1] == (stage, "stored"), (trial, kind, stage, outcomes(run))
            assert DAMAGE_CALLS - calls_before == Counter({stage: 1}), (trial, kind, stage)
        assert not list(store.rglob("*.tmp"))

        # The rewritten checkpoint is whole: the next run loads it, with no warning.
        with warnings.catch_warnings():
            warnings.simplefilter("error", chkpt.ChkptWarning)
            again = pipelines[stage].run(config(store, load=True))
        assert outcomes(again) == [(stage, "loaded")] and same_value(again.value, expected[stage])

    with warnings.catch_warnings():
        warnings.simplefilter("error", chkpt.ChkptWarning)
        last = pipelines["summary"].run(config(store, load=True))
    assert same_value(last.value, expected["summary"])
    print(f"\ndamaged files tried: {sum(tried.values())}: {dict(sorted(tried.items()))}")
    assert sum(tried.values()) == (66 if HAVE_NUMPY else 45)


# --- 3. a read-only store ----------------------------------------------------------------------------------------

READ_ONLY_SCRIPT = """
import json
import os
import sys

import chkpt


def note(name):
    # Where the stage functions say that they ran: a file outside the store.
    with open(os.environ["CHKPT_FAULTS_LOG"], "a") as file:
        file.write(name + "\\n")


@chkpt.Stage.wrap()
def first():
    note("first")
    return [1, 2, 3]


@chkpt.Stage.wrap()
def second(values, scale):
    note("second")
    return [v * scale for v in values]


def attempt(scale, **options):
    try:
        run = (first >> second.bind(scale=scale)).run(chkpt.Config(dir=store, verbose=False, **options))
    except Exception as exc:
        return {"error": type(exc).__name__, "store_error": isinstance(exc, chkpt.StoreError), "message": str(exc)}
    return {"value": run.value, "records": [[r.name, r.outcome] for r in run.records]}


def writable(folder):
    try:
        open(os.path.join(folder, "probe"), "x").close()
    except OSError:
        return False
    os.unlink(os.path.join(folder, "probe"))
    return True


store = sys.argv[2]
if sys.argv[1] == "fill":
    print(json.dumps({"fill": attempt(2, store=True)}))
else:
    results = {"writable": [writable(store), writable(os.path.join(store, "second"))]}
    results["load"] = attempt(2, load=True, store=False)
    results["store"] = attempt(2, load=False, store=True)
    results["store and load a new key"] = attempt(3, load=True, store=True)
    print(json.dumps(results))
"""

PR_CAPBSET_DROP = 24
# The capabilities that let root write, read and search where file permissions forbid it.
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3


def drop_permission_overrides() -> None:
    """A `preexec_fn` for a subprocess of root: take the capabilities that override file permissions out of the
    bounding set, so that the program it executes runs as root without them, an owner bound by a folder's mode
    like any other. (Changing to another user is no help here: the interpreter itself is under /root.) Where this
    fails, the subprocess finds the store writable and says so."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)


def set_modes(folder: Path, folders: int, files: int) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(folders if path.is_dir() else files)


def test_a_read_only_store_loads_and_refuses_to_store_before_any_stage_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = write_script(tmp_path / "read_only.py", READ_ONLY_SCRIPT)
    store = tmp_path / "store"
    log = tmp_path / "ran"
    monkeypatch.setenv("CHKPT_FAULTS_LOG", str(log))
    filled = run_script(script, "fill", str(store))
    assert filled["fill"] == {"value": [2, 4, 6], "records": [["first", "stored"], ["second", "stored"]]}
    assert log.read_text().split() == ["first", "second"]
    log.unlink()
    files = files_under(store)
    set_modes(store, 0o555, 0o444)
    try:
        results = run_script(
            script, "read-only", str(store), preexec_fn=drop_permission_overrides if os.geteuid() == 0 else None
        )
    finally:
        set_modes(store, 0o755, 0o644)
    if os.geteuid() == 0 and any(results["writable"]):
        pytest.skip("running as root, and the capabilities that let root write anywhere cannot be dropped here")
    assert results["writable"] == [False, False]

    assert results["load"] == {"value": [2, 4, 6], "records": [["second", "loaded"]]}
    for name in ("store", "store and load a new key"):
        outcome = results[name]
        assert outcome["store_error"], outcome
        assert repr(str(store)) in outcome["message"], outcome
        assert os.strerror(errno.EACCES) in outcome["message"], outcome
    assert not log.exists(), f"a stage ran: {log.read_text()}"
    assert files_under(store) == files


# --- 4. stage names never put a file outside the store ---------------------------------------------------------


def one_value() -> dict[str, str]:
    return {"one": "value"}


NAMES = [
    "",
    ".",
    "..",
    "...",
    "../escape",
    "../../../../../../outside",
    "/absolute/path",
    "a/../../b",
    "..\\..\\windows",
    "\\\\server\\share",
    "\x00",
    "nul\x00byte",
    ".hidden",
    "..hidden",
    " ",
    "\t",
    "\u200b",
    "\ufeff",
    "é-ünïcødé-名前-🙂",
    "\ud800",
    "x" * 1000,
    "../" * 300,
    "/" * 1000,
    ".a/" * 333,
]
PIECES = ["..", ".", "/", "\\", "\x00", " ", "a", "é", "名", "🙂", "\n", "~", "\u202e"]


def existing_ancestor(path: str) -> str:
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def remove_escaped(naive: str, ancestor: str, key: str) -> None:
    """Remove what a run that failed this test left where a naive join of store and name leads: the checkpoint,
    and the folders down to it that did not exist before."""
    try:
        os.unlink(os.path.join(naive, f"{key}.json"))
        while naive != ancestor:
            os.rmdir(naive)
            naive = os.path.dirname(naive)
    except (OSError, ValueError):
        pass


def check_name_stays_inside_the_store(name: str) -> None:
    """A one-stage pipeline of that name stores only inside its store, and loads from there; or chkpt refuses the
    name with a ChkptError and writes nothing."""
    with tempfile.TemporaryDirectory() as outer_name:
        # The store two folders down, so that a name that climbs out of it a folder or two lands where this test
        # looks; a name that climbs further, or is absolute, is caught by the path it would reach.
        outer = Path(outer_name)
        store = outer / "a" / "b" / "store"
        store.parent.mkdir(parents=True)
        (outer / "a" / "b" / "beside").write_text("")
        before = set(outer.rglob("*"))
        naive = os.path.normpath(os.path.join(store, name))
        ancestor = existing_ancestor(naive)
        naive_existed = os.path.lexists(naive)
        try:
            pipeline = () >> chkpt.Stage(one_value, name=name)
            run = pipeline.run(config(store))
        except chkpt.ChkptError:
            assert set(outer.rglob("*")) - before <= {store}
            return
        try:
            assert run.value == {"one": "value"}
            created = set(outer.rglob("*")) - before
            outside = [path for path in created if store not in (path, *path.parents)]
            assert outside == [], (name, outside)
            inside_store = os.path.commonpath([naive, str(store)]) == str(store)
            escaped = os.path.lexists(os.path.join(naive, f"{run.records[0].key}.json"))
            assert inside_store or not escaped, (name, naive)
            assert inside_store or naive_existed or not os.path.lexists(naive), (name, naive)
        except AssertionError:
            if not naive.startswith(outer_name):
                remove_escaped(naive, ancestor, run.records[0].key)
            raise
        files = [path for path in created if path.is_file()]
        (checkpoint,) = [path for path in files if path.name != ".index"]
        assert checkpoint.name == f"{run.records[0].key}.json" and checkpoint.parent.parent == store
        # The stage folder's index, beside the checkpoint (so inside the store), is the only other file.
        assert [path for path in files if path.name == ".index"] == [checkpoint.parent / ".index"]
        assert LocalStore(str(store)).read_record(name, run.records[0].key, "json")["stage"] == name
        again = pipeline.run(config(store, load=True))
        assert outcomes(again) == [(name, "loaded")]
        assert again.value == run.value


@pytest.mark.parametrize("name", NAMES, ids=[f"{i}:{name!r:.24}" for i, name in enumerate(NAMES)])
def test_awkward_stage_names_put_no_file_outside_the_store(name: str) -> None:
    check_name_stays_inside_the_store(name)


def test_an_empty_stage_name_is_refused_with_a_chkpt_error() -> None:
    with pytest.raises(chkpt.PipelineError, match="non-empty"):
        chkpt.Stage(one_value, name="")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.one_of(
        st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
        st.text(max_size=40),
        st.text(min_size=1, max_size=8).map(lambda piece: (piece * 1000)[:1000]),
    )
)
def test_no_stage_name_puts_a_file_outside_the_store(name: str) -> None:
    check_name_stays_inside_the_store(name)


# --- 5. a full disk ----------------------------------------------------------------------------------------------

FILE_SIZE_LIMIT = 64 * 1024

FULL_DISK_SCRIPT = """
import json
import resource
import signal
import sys
import warnings

import chkpt


@chkpt.Stage.wrap()
def size():
    return {"n": 40_000}


@chkpt.Stage.wrap()
def big_list(spec):
    return ["item %06d" % i for i in range(spec["n"])]


@chkpt.Stage.wrap(format="numpy")
def big_array(spec):
    import numpy

    return numpy.arange(spec["n"], dtype=numpy.float64)


store, limit, numpy, on_store_error = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "True", sys.argv[4]
pipelines = {"big_list": size >> big_list}
if numpy:
    chkpt.codecs.get("numpy")
    pipelines["big_array"] = size >> big_array
# A file written past the limit fails with EFBIG, rather than the process being killed by SIGXFSZ.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
results = {}
for name, pipeline in pipelines.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run = pipeline.run(chkpt.Config(dir=store, verbose=False, on_store_error=on_store_error))
        except BaseException as exc:
            store_error = isinstance(exc, chkpt.StoreError)
            results[name] = {"error": type(exc).__name__, "store_error": store_error, "message": str(exc)}
        else:
            results[name] = {
                "error": None,
                "length": len(run.value),
                "outcomes": [[r.name, r.outcome] for r in run.records],
            }
    results[name]["warnings"] = [str(w.message) for w in caught if issubclass(w.category, chkpt.ChkptWarning)]
print(json.dumps(results))
"""


def test_a_full_disk_is_a_store_error_naming_the_stage_and_leaves_no_partial_file(tmp_path: Path) -> None:
    script = write_script(tmp_path / "full_disk.py", FULL_DISK_SCRIPT)
    store = tmp_path / "store"
    results = run_script(script, str(store), str(FILE_SIZE_LIMIT), str(HAVE_NUMPY), "raise")
    assert sorted(results) == (["big_array", "big_list"] if HAVE_NUMPY else ["big_list"])
    for stage, outcome in results.items():
        assert outcome["store_error"], (stage, outcome)
        assert f"stage '{stage}'" in outcome["message"], outcome
        assert not (store / stage).exists() or list((store / stage).iterdir()) == [], stage
    assert not list(store.rglob("*.tmp"))
    # The small stage before it was stored whole, and its folder's index lists it, a line each time it was stored:
    # once by each pipeline (they do not load).
    size_names = {p.name for p in (store / "size").iterdir()}
    assert ".index" in size_names
    (small,) = size_names - {".index"}
    key = small.removesuffix(".json")
    value, _, _ = LocalStore(str(store)).read("size", key, "json")
    assert value == {"n": 40_000}
    index_lines = (store / "size" / ".index").read_text(encoding="ascii").splitlines()
    assert [json.loads(line)[0] for line in index_lines] == [key] * len(results)
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()) == [
        "size/.index",
        f"size/{small}",
    ]


def test_with_on_store_error_warn_a_full_disk_warns_and_the_run_goes_on_with_the_value(tmp_path: Path) -> None:
    script = write_script(tmp_path / "full_disk.py", FULL_DISK_SCRIPT)
    store = tmp_path / "store"
    results = run_script(script, str(store), str(FILE_SIZE_LIMIT), str(HAVE_NUMPY), "warn")
    assert sorted(results) == (["big_array", "big_list"] if HAVE_NUMPY else ["big_list"])
    for stage, outcome in results.items():
        assert outcome["error"] is None, outcome
        assert outcome["length"] == 40_000  # the value the stage computed, not dropped
        assert outcome["outcomes"][-1] == [stage, "computed"]  # computed, not stored
        (warning,) = outcome["warnings"]
        assert f"stage '{stage}' was computed but not stored" in warning, warning
        assert not (store / stage).exists() or list((store / stage).iterdir()) == [], stage
    assert not list(store.rglob("*.tmp"))


def test_on_store_error_takes_raise_or_warn() -> None:
    with pytest.raises(chkpt.ConfigError, match="on_store_error"):
        chkpt.Config(on_store_error="ignore")
