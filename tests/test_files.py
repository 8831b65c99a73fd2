"""`chkpt.file(path)`: a file from outside the graph as a source stage whose key covers the file's content."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import chkpt
import chkpt.files


def config(directory: Path, **options: Any) -> chkpt.Config:
    return chkpt.Config(dir=directory, verbose=False, **options)


def counted(calls: Counter[str], name: str, func: Any) -> chkpt.Stage[..., Any]:
    """A Stage named `name` that counts its calls in `calls` and returns what `func` returns."""

    def stage(*args: Any) -> Any:
        calls[name] += 1
        return func(*args)

    return chkpt.Stage(stage, name=name)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as source:
        return source.read()


def parse_and_clean(calls: Counter[str]) -> tuple[chkpt.Stage[..., Any], chkpt.Stage[..., Any]]:
    parse = counted(calls, "parse", lambda path: read_text(path).split(","))
    clean = counted(calls, "clean", lambda fields: [f.strip() for f in fields])
    return parse, clean


def keys(run: chkpt.Run[Any]) -> dict[str, str]:
    return {r.name: r.key for r in run.records}


def outcomes(run: chkpt.Run[Any]) -> dict[str, str]:
    return {r.name: r.outcome for r in run.records}


class CountingOpen:
    """Stands in for `open` inside chkpt.files: counts the files it opens, by path."""

    def __init__(self) -> None:
        self.opened: Counter[str] = Counter()

    def __call__(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        self.opened[os.fspath(path)] += 1
        return open(path, *args, **kwargs)


class CountingSha256:
    """Stands in for hashlib inside chkpt.files: counts the sha256 objects made and the bytes fed to them."""

    def __init__(self) -> None:
        self.made = 0
        self.fed = 0

    def sha256(self, *args: Any) -> Any:
        self.made += 1
        real = hashlib.sha256(*args)
        counter = self

        class Wrapped:
            def update(self, data: bytes) -> None:
                counter.fed += len(data)
                real.update(data)

            def digest(self) -> bytes:
                return real.digest()

        return Wrapped()


# --- the value and the graph ---------------------------------------------------------------------------------


def test_file_is_a_source_stage_whose_value_is_the_path_as_given(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_text("a, b ,c")
    calls: Counter[str] = Counter()
    parse, clean = parse_and_clean(calls)
    seen: list[str] = []
    raw = chkpt.file(str(data))
    assert isinstance(raw, chkpt.Pipeline)
    assert raw.stage.name == "file:input.csv"

    def remember(path: str) -> str:
        seen.append(path)
        return path

    pipeline = (raw,) >> parse >> clean
    assert pipeline(config(tmp_path / "ck")) == ["a", "b", "c"]
    assert calls == {"parse": 1, "clean": 1}
    (chkpt.file(str(data)) >> chkpt.Stage(remember, name="remember"))(config(tmp_path / "ck"))
    assert seen == [str(data)]


def test_a_path_object_is_passed_on_as_its_string(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_text("x")
    value = chkpt.file(data)(config(tmp_path / "ck"))
    assert value == str(data)
    assert isinstance(value, str)


def test_a_relative_path_is_passed_on_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.csv").write_text("1,2")
    calls: Counter[str] = Counter()
    parse, clean = parse_and_clean(calls)
    run = ((chkpt.file("data/input.csv"),) >> parse >> clean).run(config(tmp_path / "ck"))
    assert run.value == ["1", "2"]
    assert chkpt.file("data/input.csv")(config(tmp_path / "ck")) == "data/input.csv"


def test_two_uses_of_the_same_file_are_one_node(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    calls: Counter[str] = Counter()
    parse, _ = parse_and_clean(calls)
    join = counted(calls, "join", lambda x, y: [x, y])
    pipeline = (chkpt.file(str(data)) >> parse, chkpt.file(str(data)) >> parse) >> join
    run = pipeline.run(config(tmp_path / "ck"))
    assert run.value == [["a", "b"], ["a", "b"]]
    assert calls == {"parse": 1, "join": 1}
    assert sorted(r.name for r in run.records) == ["file:input.csv", "join", "parse"]


# --- edits are seen -------------------------------------------------------------------------------------------


def test_an_unchanged_file_loads_and_an_edit_recomputes(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    calls: Counter[str] = Counter()
    parse, clean = parse_and_clean(calls)
    pipeline = (chkpt.file(str(data)),) >> parse >> clean
    first = pipeline.run(config(tmp_path / "ck", load=True))
    assert calls == {"parse": 1, "clean": 1}

    again = pipeline.run(config(tmp_path / "ck", load=True))
    assert calls == {"parse": 1, "clean": 1}
    assert outcomes(again) == {"clean": "loaded"}
    assert again.records[0].key == first.records[-1].key

    data.write_text("a,b,c")
    edited = pipeline.run(config(tmp_path / "ck", load=True))
    assert edited.value == ["a", "b", "c"]
    assert calls == {"parse": 2, "clean": 2}
    assert keys(edited)["clean"] != keys(first)["clean"]
    assert keys(edited)["file:input.csv"] != keys(first)["file:input.csv"]


def test_an_edit_that_keeps_size_and_mtime_is_seen(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    before = os.stat(data)
    calls: Counter[str] = Counter()
    parse, clean = parse_and_clean(calls)
    pipeline = (chkpt.file(str(data)),) >> parse >> clean
    assert pipeline(config(tmp_path / "ck", load=True)) == ["a", "b"]

    with open(data, "r+b") as target:
        target.write(b"x,y")
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(data)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    assert pipeline(config(tmp_path / "ck", load=True)) == ["x", "y"]
    assert calls == {"parse": 2, "clean": 2}


def test_a_same_size_edit_right_after_a_run_is_seen(tmp_path: Path) -> None:
    """No pause between the run that hashed the file and the edit: within one tick of a coarse file clock the
    edit may keep even the status-change time."""
    data = tmp_path / "input.csv"
    calls: Counter[str] = Counter()
    parse, _ = parse_and_clean(calls)
    pipeline = (chkpt.file(str(data)),) >> parse
    for i in range(20):
        content = f"{i:04d}"
        with open(data, "r+b" if data.exists() else "wb") as target:
            target.write(content.encode())
        assert pipeline(config(tmp_path / "ck", load=True)) == [content]
    assert calls == {"parse": 20}


def test_a_file_replaced_by_a_rename_is_seen(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    before = os.stat(data)
    calls: Counter[str] = Counter()
    parse, clean = parse_and_clean(calls)
    pipeline = (chkpt.file(str(data)),) >> parse >> clean
    assert pipeline(config(tmp_path / "ck", load=True)) == ["a", "b"]

    replacement = tmp_path / "input.csv.new"
    replacement.write_text("c,d")  # the same size
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, data)
    assert pipeline(config(tmp_path / "ck", load=True)) == ["c", "d"]
    assert calls == {"parse": 2, "clean": 2}


def test_reverting_the_content_loads_the_old_checkpoints(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    calls: Counter[str] = Counter()
    parse, clean = parse_and_clean(calls)
    pipeline = (chkpt.file(str(data)),) >> parse >> clean
    first = pipeline.run(config(tmp_path / "ck", load=True))
    data.write_text("a,b,c")
    second = pipeline.run(config(tmp_path / "ck", load=True))
    assert calls == {"parse": 2, "clean": 2}
    data.write_text("a,b")
    reverted = pipeline.run(config(tmp_path / "ck", load=True))
    assert calls == {"parse": 2, "clean": 2}
    assert outcomes(reverted) == {"clean": "loaded"}
    assert reverted.value == ["a", "b"]
    assert keys(reverted)["clean"] == keys(first)["clean"] != keys(second)["clean"]


def test_a_file_stage_runs_again_when_its_file_changes_without_load(tmp_path: Path) -> None:
    """With loading off nothing is loaded anyway, but the keys still follow the content."""
    data = tmp_path / "input.csv"
    data.write_text("1")
    raw = chkpt.file(str(data))
    first = raw.run(config(tmp_path / "ck"))
    data.write_text("2")
    second = raw.run(config(tmp_path / "ck"))
    assert first.records[0].key != second.records[0].key
    assert first.value == second.value == str(data)


# --- keys -----------------------------------------------------------------------------------------------------


def test_the_key_covers_the_sha256_of_the_content(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_bytes(b"\x00binary\xff" * 1000)
    assert chkpt.files.content_digest(str(data)) == hashlib.sha256(data.read_bytes()).digest()


KEY_SCRIPT = """
import json
import sys

import chkpt


@chkpt.Stage.wrap()
def parse(path: str) -> list[str]:
    with open(path) as source:
        return source.read().split(",")


run = ((chkpt.file(sys.argv[1]),) >> parse).run(chkpt.Config(dir=sys.argv[2], verbose=False))
print(json.dumps({r.name: r.key for r in run.records}))
"""


def keys_in_a_fresh_process(script: Path, path: str, directory: Path, cwd: Path) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, str(script), path, str(directory)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_keys_are_the_same_in_fresh_processes(tmp_path: Path) -> None:
    script = tmp_path / "keyscript.py"
    script.write_text(KEY_SCRIPT)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.csv").write_text("a,b")
    absolute = str(tmp_path / "data" / "input.csv")

    one = keys_in_a_fresh_process(script, absolute, tmp_path / "ck1", tmp_path)
    two = keys_in_a_fresh_process(script, absolute, tmp_path / "ck2", tmp_path)
    assert one == two
    assert sorted(one) == ["file:input.csv", "parse"]

    relative_one = keys_in_a_fresh_process(script, "data/input.csv", tmp_path / "ck1", tmp_path)
    relative_two = keys_in_a_fresh_process(script, "data/input.csv", tmp_path / "ck2", tmp_path)
    assert relative_one == relative_two
    # The path, as given, is the stage's bound parameter and the value downstream stages receive: another
    # spelling of the same file is another key.
    assert relative_one["file:input.csv"] != one["file:input.csv"]

    (tmp_path / "data" / "input.csv").write_text("a,c")
    edited = keys_in_a_fresh_process(script, absolute, tmp_path / "ck1", tmp_path)
    assert edited["file:input.csv"] != one["file:input.csv"]
    assert edited["parse"] != one["parse"]


def test_keys_in_this_process_match_a_fresh_process(tmp_path: Path) -> None:
    """The digest cache must give the key a fresh process computes from the file."""
    script = tmp_path / "keyscript.py"
    script.write_text(KEY_SCRIPT)
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    here = chkpt.file(str(data)).run(config(tmp_path / "ck"))
    data.write_text("a,c")
    chkpt.file(str(data)).run(config(tmp_path / "ck"))
    data.write_text("a,b")
    back = chkpt.file(str(data)).run(config(tmp_path / "ck"))
    fresh = keys_in_a_fresh_process(script, str(data), tmp_path / "ck2", tmp_path)
    assert here.records[0].key == back.records[0].key == fresh["file:input.csv"]


def test_the_same_content_at_two_paths_gives_two_keys(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = tmp_path / "one" / "input.csv", tmp_path / "two" / "input.csv"
    first.write_text("a,b")
    second.write_text("a,b")
    calls: Counter[str] = Counter()
    parse, _ = parse_and_clean(calls)
    run_one = ((chkpt.file(str(first)),) >> parse).run(config(tmp_path / "ck", load=True))
    run_two = ((chkpt.file(str(second)),) >> parse).run(config(tmp_path / "ck", load=True))
    # The path is part of the key (it is the value passed on), so each file has checkpoints of its own.
    assert keys(run_one)["file:input.csv"] != keys(run_two)["file:input.csv"]
    assert keys(run_one)["parse"] != keys(run_two)["parse"]
    assert calls == {"parse": 2}


def test_the_same_relative_path_in_two_folders_follows_the_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path names a different file from another folder: its key follows that file's content."""
    for folder, content in [("one", "a,b"), ("two", "a,b"), ("three", "x,y")]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "input.csv").write_text(content)
    found: dict[str, str] = {}
    for folder in ("one", "two", "three"):
        monkeypatch.chdir(tmp_path / folder)
        found[folder] = chkpt.file("input.csv").run(config(tmp_path / "ck")).records[0].key
    assert found["one"] == found["two"] != found["three"]


# --- errors ---------------------------------------------------------------------------------------------------


def test_a_missing_file_fails_when_planned_before_any_stage_runs(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "input.csv"
    calls: Counter[str] = Counter()
    parse, clean = parse_and_clean(calls)
    first = counted(calls, "first", lambda: "runs first")
    join = counted(calls, "join", lambda a, b: [a, b])
    pipeline = (() >> first, (chkpt.file(str(missing)),) >> parse >> clean) >> join
    with pytest.raises(chkpt.ChkptError) as raised:
        pipeline.run(config(tmp_path / "ck", load=True))
    message = str(raised.value)
    assert "file:input.csv" in message
    assert str(missing) in message
    assert calls == {}
    assert not (tmp_path / "ck" / "first").exists()


def test_a_folder_instead_of_a_file_fails_naming_the_stage(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    calls: Counter[str] = Counter()
    parse, _ = parse_and_clean(calls)
    with pytest.raises(chkpt.ChkptError) as raised:
        ((chkpt.file(str(folder)),) >> parse).run(config(tmp_path / "ck"))
    assert "file:data" in str(raised.value)
    assert str(folder) in str(raised.value)
    assert calls == {}


def test_a_file_deleted_after_a_run_fails_the_next_one(tmp_path: Path) -> None:
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    calls: Counter[str] = Counter()
    parse, _ = parse_and_clean(calls)
    pipeline = (chkpt.file(str(data)),) >> parse
    pipeline(config(tmp_path / "ck", load=True))
    data.unlink()
    # The cached digest of the old version is not used for a file that is gone, even though `parse` is stored.
    with pytest.raises(chkpt.ChkptError, match=r"file:input\.csv"):
        pipeline(config(tmp_path / "ck", load=True))
    assert calls == {"parse": 1}


# --- cost: the content is hashed once per version per process ------------------------------------------------


def test_an_unchanged_file_is_read_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opener = CountingOpen()
    monkeypatch.setattr(chkpt.files, "open", opener, raising=False)
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    calls: Counter[str] = Counter()
    parse, clean = parse_and_clean(calls)
    pipeline = (chkpt.file(str(data)),) >> parse >> clean
    for _ in range(3):
        pipeline(config(tmp_path / "ck", load=True))
    # A new Pipeline object for the same path shares the cache.
    ((chkpt.file(str(data)),) >> parse)(config(tmp_path / "ck", load=True))
    assert opener.opened == {str(data): 1}

    data.write_text("a,b,c")
    pipeline(config(tmp_path / "ck", load=True))
    pipeline(config(tmp_path / "ck", load=True))
    assert opener.opened == {str(data): 2}
    assert calls == {"parse": 2, "clean": 2}


def test_a_large_file_is_hashed_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingSha256()
    monkeypatch.setattr(chkpt.files, "hashlib", types.SimpleNamespace(sha256=counting.sha256))
    size = 50 * 1024 * 1024
    data = tmp_path / "big.bin"
    with open(data, "wb") as target:
        block = os.urandom(1024 * 1024)
        for _ in range(size // len(block)):
            target.write(block)
    length = counted(Counter(), "length", lambda path: os.path.getsize(path))
    pipeline = (chkpt.file(str(data)),) >> length

    started = time.perf_counter()
    assert pipeline(config(tmp_path / "ck", store=False)) == size
    first = time.perf_counter() - started
    assert (counting.made, counting.fed) == (1, size)

    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        assert pipeline(config(tmp_path / "ck", store=False)) == size
        seconds.append(time.perf_counter() - started)
    assert (counting.made, counting.fed) == (1, size)
    # Hashing 50 MB takes tens of milliseconds; a plan that only looks at the file's status takes far less.
    assert min(seconds) < first / 5, (first, seconds)


def test_a_large_file_is_hashed_again_after_an_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingSha256()
    monkeypatch.setattr(chkpt.files, "hashlib", types.SimpleNamespace(sha256=counting.sha256))
    size = 20 * 1024 * 1024
    data = tmp_path / "big.bin"
    data.write_bytes(bytes(size))
    raw = chkpt.file(str(data))
    key = raw.run(config(tmp_path / "ck", store=False)).records[0].key
    with open(data, "r+b") as target:
        target.seek(size // 2)
        target.write(b"\x01")
    edited = raw.run(config(tmp_path / "ck", store=False)).records[0].key
    assert key != edited
    assert (counting.made, counting.fed) == (2, 2 * size)


@pytest.mark.parametrize("executor", ["sync", "threads"])
def test_an_edit_during_a_run_is_caught_when_the_file_stage_itself_loads(tmp_path: Path, executor: str) -> None:
    """A file stage whose content was seen before loads; a stage that reads the file while it runs must still
    have its result checked against the planned content before it is stored."""
    data = tmp_path / "input.csv"
    data.write_text("a,b")
    calls: Counter[str] = Counter()
    parse, _ = parse_and_clean(calls)
    other = counted(calls, "other", lambda path: "x")
    (chkpt.file(str(data)) >> other).run(config(tmp_path / "ck", load=True))  # stores the file stage

    def edit_then_read(path: str) -> list[str]:
        data.write_text("x,y,z")  # another program, while this stage runs
        return read_text(path).split(",")

    reading = counted(calls, "reading", edit_then_read)
    with pytest.warns(chkpt.ChkptWarning, match="'file:input.csv' changed while this run was going"):
        during = (chkpt.file(str(data)) >> reading).run(config(tmp_path / "ck", load=True, executor=executor))
    assert outcomes(during) == {"file:input.csv": "loaded", "reading": "computed"}  # computed, not stored

    data.write_text("a,b")
    after = (chkpt.file(str(data)) >> parse).run(config(tmp_path / "ck", load=True))
    assert after.value == ["a", "b"]
    with pytest.warns(chkpt.ChkptWarning, match="changed while this run was going"):  # nothing of it was stored
        again = (chkpt.file(str(data)) >> reading).run(config(tmp_path / "ck", load=True))
    assert outcomes(again)["reading"] == "computed"


def test_an_edit_during_a_run_is_not_stored_under_the_old_content(tmp_path: Path) -> None:
    """The file is hashed when the run is planned and read when `parse` runs: an edit in between (here by a stage
    that runs first; in life by a person or a `git checkout` during a long run) must not leave a checkpoint of the
    new content under the old content's key, which a later run, with the old content back, would load."""
    data = str(tmp_path / "input.csv")
    with open(data, "w") as target:
        target.write("a,b")
    calls: Counter[str] = Counter()
    parse, _ = parse_and_clean(calls)

    def overwrite(text: str) -> str:
        with open(data, "w") as target:
            target.write(text)
        return text

    edit = counted(calls, "edit", lambda: overwrite("x,y"))
    join = counted(calls, "join", lambda a, b: b)
    with pytest.warns(chkpt.ChkptWarning, match="'file:input.csv' changed while this run was going") as caught:
        during = ((() >> edit, (chkpt.file(data),) >> parse) >> join).run(config(tmp_path / "ck", load=True))
    assert "stage 'parse' is not stored" in str(caught[0].message)
    assert [r.name for r in during.records][:2] == ["edit", "file:input.csv"]  # the edit came before the read
    assert during.value == ["x", "y"]
    # The value is handed on, but neither parse's nor join's result is stored under the planned keys.
    assert {r.name: r.outcome for r in during.records}["parse"] == "computed"

    overwrite("a,b")
    after = ((chkpt.file(data),) >> parse).run(config(tmp_path / "ck", load=True))
    assert after.value == ["a", "b"]
