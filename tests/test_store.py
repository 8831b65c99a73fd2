"""The local folder store: layout, records, safe folder names, atomic writes, damage and store errors."""

from __future__ import annotations

import datetime
import errno
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import chkpt

RECORD_FIELDS = {"key", "stage", "inputs", "created", "seconds", "bytes", "checksum", "chkpt_version", "codec"}


def config(directory: Path, **options: Any) -> chkpt.Config:
    return chkpt.Config(dir=directory, verbose=False, **options)


def checkpoint(directory: Path, stage: str, key: str) -> Path:
    return directory / stage / f"{key}.json"


def key_of(run: chkpt.Run[Any], stage: str) -> str:
    (key,) = [r.key for r in run.records if r.name == stage]
    return key


def all_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


INDEX = ".index"


def checkpoint_files(directory: Path) -> list[Path]:
    """The files under `directory` but the stage folders' index files (`.index`, one in each folder a checkpoint
    was stored in)."""
    return [p for p in all_files(directory) if p.name != INDEX]


def index_files(directory: Path) -> list[Path]:
    return [p for p in all_files(directory) if p.name == INDEX]


def index_keys(folder: Path) -> list[str]:
    """The keys a stage folder's index lists, a line (a JSON array starting with the key) per checkpoint stored."""
    lines = (folder / INDEX).read_text(encoding="ascii").splitlines()
    return [json.loads(line)[0] for line in lines]


def split_checkpoint(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The record and the value's bytes of a checkpoint file, as the store's docstring describes the format."""
    head, _, rest = data.partition(b"\n")
    assert head.startswith(b'{"chkpt": ') and head.endswith(b",")
    assert rest.startswith(b'"value": ') and rest.endswith(b"\n}\n")
    return json.loads(head[len(b'{"chkpt": ') : -1]), rest[len(b'"value": ') : -len(b"\n}\n")]


def join_checkpoint(record: dict[str, Any], payload: bytes) -> bytes:
    return b'{"chkpt": ' + json.dumps(record).encode() + b',\n"value": ' + payload + b"\n}\n"


def sha256(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


# --- layout and records ---------------------------------------------------------------------------------------


@chkpt.Stage.wrap()
def numbers() -> list[int]:
    return [1, 2, 3]


@chkpt.Stage.wrap()
def summary(values: list[int], label: str) -> dict[str, Any]:
    return {"label": label, "total": sum(values), "values": values, "text": "naïve ünïcode"}


def test_layout_is_dir_stage_key_json_and_the_file_is_json(tmp_path: Path) -> None:
    run = ((numbers, "sum") >> summary).run(config(tmp_path))
    assert [(r.name, r.outcome) for r in run.records] == [("numbers", "stored"), ("summary", "stored")]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted(
        [
            "numbers",
            "numbers/.index",
            f"numbers/{key_of(run, 'numbers')}.json",
            "summary",
            "summary/.index",
            f"summary/{key_of(run, 'summary')}.json",
        ]
    )
    assert index_keys(tmp_path / "numbers") == [key_of(run, "numbers")]
    assert index_keys(tmp_path / "summary") == [key_of(run, "summary")]
    path = checkpoint(tmp_path, "summary", key_of(run, "summary"))
    whole = json.loads(path.read_text(encoding="utf-8"))
    assert set(whole) == {"chkpt", "value"}
    assert (
        whole["value"]
        == run.value
        == {
            "label": "sum",
            "total": 6,
            "values": [1, 2, 3],
            "text": "naïve ünïcode",
        }
    )


def test_record_fields(tmp_path: Path) -> None:
    saved_tz = os.environ.get("TZ")
    # A clock far from UTC (+05:45), so that a record written in local time would show.
    os.environ["TZ"] = "XXX-05:45"
    time.tzset()
    try:
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        run = ((numbers, "sum") >> summary).run(config(tmp_path))
        after = datetime.datetime.now(datetime.timezone.utc)
    finally:
        if saved_tz is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved_tz
        time.tzset()
    numbers_key, summary_key = key_of(run, "numbers"), key_of(run, "summary")
    data = checkpoint(tmp_path, "summary", summary_key).read_bytes()
    record, payload = split_checkpoint(data)
    assert set(record) >= RECORD_FIELDS
    assert json.loads(data)["chkpt"] == record
    assert record["key"] == summary_key
    assert record["stage"] == "summary"
    assert record["codec"] == "json"
    assert record["chkpt_version"] == chkpt.__version__
    assert len(record["inputs"]) == 2
    assert record["inputs"][0] == numbers_key
    assert record["inputs"][1].startswith("constant:")
    created = datetime.datetime.strptime(record["created"], "%Y-%m-%dT%H:%M:%S.%fZ")
    created = created.replace(tzinfo=datetime.timezone.utc)
    assert before <= created <= after
    assert isinstance(record["seconds"], (int, float)) and 0 <= record["seconds"] < 60
    assert record["bytes"] == len(payload) == run.records[-1].bytes
    assert record["checksum"] == sha256(payload)
    # The source stage has no inputs.
    source_record, _ = split_checkpoint(checkpoint(tmp_path, "numbers", numbers_key).read_bytes())
    assert source_record["inputs"] == []
    assert source_record["stage"] == "numbers"


def test_records_are_on_one_line_and_the_run_leaves_no_other_files(tmp_path: Path) -> None:
    run = ((numbers, "sum") >> summary).run(config(tmp_path))
    files = all_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "numbers/.index",
        f"numbers/{key_of(run, 'numbers')}.json",
        "summary/.index",
        f"summary/{key_of(run, 'summary')}.json",
    ]
    for path in files:
        if path.name == INDEX:
            assert index_keys(path.parent) == [key_of(run, path.parent.name)]
            continue
        first_line = path.read_bytes().split(b"\n", 1)[0]
        assert json.loads(first_line[len(b'{"chkpt": ') : -1])["stage"] == path.parent.name
    # The only dot files are the two indexes: no temporary file is left.
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob(".*")) == [
        "numbers/.index",
        "summary/.index",
    ]


@chkpt.Stage.wrap()
def sized(n: int) -> list[str]:
    return ["x" * n]


def test_small_values_are_indented_big_ones_compact(tmp_path: Path) -> None:
    limit = 16 * 1024
    # ["xxx..."] is n + 4 characters of compact JSON.
    for n, indented in [(10, True), (limit - 4, True), (limit - 3, False), (100_000, False)]:
        run = ((n,) >> sized).run(config(tmp_path))
        data = checkpoint(tmp_path, "sized", run.records[-1].key).read_bytes()
        _, payload = split_checkpoint(data)
        value = ["x" * n]
        expected = json.dumps(value, indent=2) if indented else json.dumps(value)
        assert payload == expected.encode(), n
        assert json.loads(data)["value"] == value
        assert data.count(b"\n") == (5 if indented else 3), n


def test_big_structured_values_are_compact(tmp_path: Path) -> None:
    @chkpt.Stage.wrap()
    def table() -> list[dict[str, int]]:
        return [{"row": i, "square": i * i} for i in range(2000)]

    run = (() >> table).run(config(tmp_path))
    data = checkpoint(tmp_path, "table", run.records[-1].key).read_bytes()
    _, payload = split_checkpoint(data)
    assert len(payload) > 16 * 1024
    assert b"\n" not in payload
    assert payload == json.dumps(run.value, separators=(",", ":")).encode()
    assert json.loads(data)["value"] == run.value


# --- stage names never escape the store ---------------------------------------------------------------------


def _constant_value() -> dict[str, int]:
    return {"ok": 1}


def _takes(value: dict[str, int]) -> dict[str, int]:
    return {**value, "next": 2}


NASTY_NAMES = [
    ".",
    "..",
    "...",
    "../escape",
    "../../../../../../etc/passwd",
    "/absolute/path",
    "a/../../b",
    "..\\..\\windows",
    "\\\\server\\share",
    "C:\\temp",
    "nul\x00byte",
    "\x00",
    ".hidden",
    "..hidden",
    "~",
    "$HOME",
    " ",
    "-rf",
    "line\nbreak",
    "é-ünïcødé-名前-🙂",
    "\ud800",
    "x" * 5000,
    "/.." * 200,
    ".a/" * 100,
]


def _inside(path: Path, root: Path) -> bool:
    return os.path.commonpath([str(path.resolve()), str(root.resolve())]) == str(root.resolve())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.one_of(
        st.sampled_from(NASTY_NAMES),
        st.text(min_size=1, max_size=40),
        st.text(alphabet=st.sampled_from("./\\\x00a_é"), min_size=1, max_size=40),
        st.text(min_size=200, max_size=2000),
    )
)
@example(name="..")
@example(name="../escape")
@example(name="nul\x00byte")
@example(name="x" * 5000)
@example(name="\ud800")
@example(name="line\nbreak")
def test_stage_names_never_escape_the_store(name: str) -> None:
    with tempfile.TemporaryDirectory() as base_name:
        base = Path(base_name)
        store = base / "store"
        first = chkpt.Stage(_constant_value, name="first")
        odd = chkpt.Stage(_takes, name=name)
        pipeline = first >> odd
        run = pipeline.run(config(store))
        assert run.value == {"ok": 1, "next": 2}
        created = list(base.rglob("*"))
        assert created
        for path in created:
            assert _inside(path, store), (name, path)
        files = checkpoint_files(base)
        assert len(files) == 2
        # An index beside each checkpoint (inside the store, as checked above), and nowhere else.
        assert {p.parent for p in index_files(base)} == {p.parent for p in files}
        assert len(index_files(base)) == len({p.parent for p in files})
        (path,) = [p for p in files if p.name == f"{run.records[-1].key}.json"]
        folder = path.parent
        assert folder.parent == store
        assert folder.name not in (".", "..") and not folder.name.startswith(".")
        assert len(folder.name.encode()) <= 255
        assert json.loads(path.read_text(encoding="utf-8"))["chkpt"]["stage"] == name
        again = pipeline.run(config(store, load=True))
        assert [(r.name, r.outcome) for r in again.records] == [(name, "loaded")]
        assert again.value == run.value


def test_distinct_names_that_share_a_folder_keep_distinct_checkpoints(tmp_path: Path) -> None:
    slash = chkpt.Stage(_constant_value, name="a/b")
    underscore = chkpt.Stage(_constant_value, name="a_b")
    first = (() >> slash).run(config(tmp_path))
    second = (() >> underscore).run(config(tmp_path))
    assert first.records[0].key != second.records[0].key
    # Both in the folder "a_b", with one index listing both.
    assert [p.relative_to(tmp_path).as_posix() for p in all_files(tmp_path)] == sorted(
        ["a_b/.index", f"a_b/{first.records[0].key}.json", f"a_b/{second.records[0].key}.json"]
    )
    assert index_keys(tmp_path / "a_b") == [first.records[0].key, second.records[0].key]
    for stage, run in [(slash, first), (underscore, second)]:
        again = (() >> stage).run(config(tmp_path, load=True))
        assert [(r.name, r.outcome, r.key) for r in again.records] == [(stage.name, "loaded", run.records[0].key)]


# --- atomic writes: a process killed mid-write --------------------------------------------------------------

KILL_MODULE = """
import chkpt

CALLS = []


@chkpt.Stage.wrap()
def small():
    CALLS.append("small")
    return {"size": 300_000}


@chkpt.Stage.wrap()
def big(spec):
    CALLS.append("big")
    return ["v%06d" % i for i in range(spec["size"] // 8)]


def pipeline():
    return small >> big
"""

KILL_SCRIPT = """
import os, sys, time
sys.path.insert(0, {folder!r})
import chkpt
import {module}

real_fsync = os.fsync


def fsync(fd):
    # The big value's temporary file is complete and flushed: stop here, as if the power went out now.
    if os.fstat(fd).st_size > 100_000:
        with open({marker!r}, "w") as file:
            file.write(str(os.getpid()))
        time.sleep(120)
    real_fsync(fd)


os.fsync = fsync
{module}.pipeline().run(chkpt.Config(dir={store!r}, verbose=False))
print("the run was not killed")
"""


def test_a_process_killed_mid_write_leaves_no_checkpoint_that_would_be_loaded(tmp_path: Path) -> None:
    module = f"chkpt_kill_{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{module}.py").write_text(KILL_MODULE, encoding="utf-8")
    store = tmp_path / "store"
    marker = tmp_path / "writing"
    script = tmp_path / "run_and_hang.py"
    script.write_text(
        KILL_SCRIPT.format(folder=str(folder), module=module, marker=str(marker), store=str(store)),
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if process.poll() is not None:
                out, err = process.communicate(timeout=10)
                pytest.fail(f"the run ended before the write was interrupted: {out!r} {err!r}")
            assert time.monotonic() < deadline, "the subprocess never reached the fsync of the big value"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]

    # The small stage finished; the big one left only a temporary file, which a run never takes for a checkpoint.
    small_files = {p.name for p in (store / "small").iterdir()}
    assert INDEX in small_files
    (small_name,) = small_files - {INDEX}
    assert small_name.endswith(".json") and not small_name.startswith(".")
    assert index_keys(store / "small") == [small_name.removesuffix(".json")]
    big_files = list((store / "big").iterdir())
    assert big_files, "the temporary file should be where the write stopped"
    assert all(p.name.endswith(".tmp") for p in big_files), big_files
    assert not list((store / "big").glob("[!.]*.json"))
    temporary = big_files[0]
    assert temporary.stat().st_size > 100_000

    sys.path.insert(0, str(folder))
    try:
        code = importlib.import_module(module)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            run = code.pipeline().run(config(store, load=True))
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module, None)
    assert [(r.name, r.outcome) for r in run.records] == [("small", "loaded"), ("big", "stored")]
    assert code.CALLS == ["big"]
    assert run.value == [f"v{i:06d}" for i in range(300_000 // 8)]
    final = checkpoint(store, "big", key_of(run, "big"))
    assert json.loads(final.read_bytes())["value"] == run.value
    assert temporary.name != final.name and not temporary.name.startswith(final.stem)


# --- damage (rule 7) ------------------------------------------------------------------------------------------


def _truncate_half(path: Path, other: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncate_tail(path: Path, other: Path) -> None:
    path.write_bytes(path.read_bytes()[:-2])


def _truncate_record(path: Path, other: Path) -> None:
    path.write_bytes(path.read_bytes()[:20])


def _empty(path: Path, other: Path) -> None:
    path.write_bytes(b"")


def _change_one_value_byte(path: Path, other: Path) -> None:
    data = path.read_bytes()
    assert data.count(b'"hello"') == 1
    damaged = data.replace(b'"hello"', b'"hellp"')
    assert json.loads(damaged)["value"]["word"] == "hellp"  # still valid JSON, only the checksum tells
    path.write_bytes(damaged)


def _change_one_number(path: Path, other: Path) -> None:
    data = path.read_bytes()
    record, payload = split_checkpoint(data)
    damaged = payload.replace(b"41", b"42")
    assert damaged != payload and len(damaged) == len(payload)
    path.write_bytes(join_checkpoint(record, damaged))
    assert json.loads(path.read_bytes())["value"]["numbers"][-1] == 42


def _invalid_json_value(path: Path, other: Path) -> None:
    record, _ = split_checkpoint(path.read_bytes())
    path.write_bytes(join_checkpoint(record, b'{"word": "hello", "numbers": [1, 2,'))


def _invalid_json_value_with_matching_checksum(path: Path, other: Path) -> None:
    record, _ = split_checkpoint(path.read_bytes())
    payload = b'{"word": "hello", "numbers": [1, 2,'
    path.write_bytes(join_checkpoint({**record, "bytes": len(payload), "checksum": sha256(payload)}, payload))


def _garbage_record(path: Path, other: Path) -> None:
    _, rest = path.read_bytes().split(b"\n", 1)
    path.write_bytes(b"garbage \xff\xfe not a record,\n" + rest)


def _record_not_an_object(path: Path, other: Path) -> None:
    _, rest = path.read_bytes().split(b"\n", 1)
    path.write_bytes(b'{"chkpt": [1, 2, 3],\n' + rest)


def _record_without_checksum(path: Path, other: Path) -> None:
    record, payload = split_checkpoint(path.read_bytes())
    del record["checksum"], record["bytes"]
    path.write_bytes(join_checkpoint(record, payload))


def _copied_from_another_key(path: Path, other: Path) -> None:
    shutil.copyfile(other, path)


def _binary_noise(path: Path, other: Path) -> None:
    path.write_bytes(bytes(range(256)) * 4)


DAMAGES: list[Callable[[Path, Path], None]] = [
    _truncate_half,
    _truncate_tail,
    _truncate_record,
    _empty,
    _change_one_value_byte,
    _change_one_number,
    _invalid_json_value,
    _invalid_json_value_with_matching_checksum,
    _garbage_record,
    _record_not_an_object,
    _record_without_checksum,
    _copied_from_another_key,
    _binary_noise,
]


def _damage_pipeline(calls: dict[str, int], offset: int = 0) -> tuple[chkpt.Pipeline[Any], chkpt.Pipeline[Any]]:
    """`source >> shape`, and the same with another bound offset (another key in the same folder)."""

    @chkpt.Stage.wrap()
    def source() -> list[int]:
        calls["source"] += 1
        return [1, 2, 3, 41]

    @chkpt.Stage.wrap()
    def shape(values: list[int], offset: int = 0) -> dict[str, Any]:
        calls["shape"] += 1
        return {"word": "hello", "numbers": [v + offset for v in values]}

    return source >> shape, source >> shape.bind(offset=100)


def _expect_one_damage_warning(caught: Any, path: Path, stage: str) -> str:
    messages = [str(w.message) for w in caught if issubclass(w.category, chkpt.ChkptWarning)]
    assert len(messages) == 1, messages
    assert str(path) in messages[0] and f"'{stage}'" in messages[0]
    return messages[0]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_checkpoint_is_reported_recomputed_and_rewritten(
    tmp_path: Path, damage: Callable[[Path, Path], None]
) -> None:
    calls = {"source": 0, "shape": 0}
    pipeline, other_pipeline = _damage_pipeline(calls)
    first = pipeline.run(config(tmp_path))
    expected = {"word": "hello", "numbers": [1, 2, 3, 41]}
    assert first.value == expected
    other = other_pipeline.run(config(tmp_path, load=True))
    assert other.value["numbers"] == [101, 102, 103, 141]
    assert calls == {"source": 1, "shape": 2}
    path = checkpoint(tmp_path, "shape", key_of(first, "shape"))
    other_path = checkpoint(tmp_path, "shape", key_of(other, "shape"))
    assert path.is_file() and other_path.is_file() and path != other_path

    damage(path, other_path)

    with pytest.warns(chkpt.ChkptWarning, match=re.escape(f"checkpoint {path} of stage 'shape'")) as caught:
        run = pipeline.run(config(tmp_path, load=True))
    _expect_one_damage_warning(caught, path, "shape")
    assert run.value == expected
    assert calls == {"source": 1, "shape": 3}  # shape ran again; its input came from source's checkpoint
    assert [(r.name, r.outcome) for r in run.records] == [("source", "loaded"), ("shape", "stored")]
    assert json.loads(path.read_bytes())["value"] == expected
    assert not list(tmp_path.rglob("*.tmp"))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = pipeline.run(config(tmp_path, load=True))
    assert again.value == expected
    assert [(r.name, r.outcome) for r in again.records] == [("shape", "loaded")]
    assert calls == {"source": 1, "shape": 3}


def test_every_truncation_of_a_checkpoint_is_caught(tmp_path: Path) -> None:
    calls = {"source": 0, "shape": 0}
    pipeline, _ = _damage_pipeline(calls)
    first = pipeline.run(config(tmp_path))
    path = checkpoint(tmp_path, "shape", key_of(first, "shape"))
    whole = path.read_bytes()
    for cut in range(len(whole)):
        path.write_bytes(whole[:cut])
        with pytest.warns(chkpt.ChkptWarning, match=re.escape(str(path))):
            value = pipeline(config(tmp_path, load=True))
        assert value == first.value, cut
        assert split_checkpoint(path.read_bytes())[1] == split_checkpoint(whole)[1]
    assert calls == {"source": 1, "shape": 1 + len(whole)}


def test_damage_in_the_middle_of_a_chain_recomputes_only_what_is_needed(tmp_path: Path) -> None:
    calls = dict.fromkeys("abcde", 0)

    def make(letter: str) -> chkpt.Stage[..., int]:
        def step(x: int) -> int:
            calls[letter] += 1
            return x * 10 + "abcde".index(letter)

        return chkpt.Stage(step, name=letter)

    @chkpt.Stage.wrap()
    def start() -> int:
        calls["start"] = calls.get("start", 0) + 1
        return 1

    pipeline = start >> make("a") >> make("b") >> make("c") >> make("d") >> make("e")
    first = pipeline.run(config(tmp_path))
    assert first.value == 101234
    keys = {r.name: r.key for r in first.records}
    # c is damaged, and d and e have no checkpoint: e and d must compute, c recomputes, b is loaded.
    checkpoint(tmp_path, "c", keys["c"]).write_bytes(b'{"chkpt": ')
    checkpoint(tmp_path, "d", keys["d"]).unlink()
    checkpoint(tmp_path, "e", keys["e"]).unlink()
    with pytest.warns(chkpt.ChkptWarning, match=re.escape("of stage 'c'")) as caught:
        run = pipeline.run(config(tmp_path, load=True))
    _expect_one_damage_warning(caught, checkpoint(tmp_path, "c", keys["c"]), "c")
    assert run.value == 101234
    assert [(r.name, r.outcome) for r in run.records] == [
        ("b", "loaded"),
        ("c", "stored"),
        ("d", "stored"),
        ("e", "stored"),
    ]
    assert calls == {"start": 1, "a": 1, "b": 1, "c": 2, "d": 2, "e": 2}
    assert {r.name: r.key for r in run.records} == {k: keys[k] for k in "bcde"}


def test_damage_found_mid_run_does_not_run_a_stage_twice(tmp_path: Path) -> None:
    calls = {"fresh": 0, "kept": 0, "join": 0}

    @chkpt.Stage.wrap()
    def fresh() -> int:
        calls["fresh"] += 1
        return 1

    @chkpt.Stage.wrap()
    def kept() -> int:
        calls["kept"] += 1
        return 2

    @chkpt.Stage.wrap()
    def join(a: int, b: int) -> list[int]:
        calls["join"] += 1
        return [a, b]

    pipeline = (fresh, kept) >> join
    first = pipeline.run(config(tmp_path))
    keys = {r.name: r.key for r in first.records}
    # fresh has no checkpoint, so it computes first; kept's checkpoint then turns out to be damaged.
    checkpoint(tmp_path, "fresh", keys["fresh"]).unlink()
    checkpoint(tmp_path, "join", keys["join"]).unlink()
    checkpoint(tmp_path, "kept", keys["kept"]).write_bytes(b"")
    with pytest.warns(chkpt.ChkptWarning, match="of stage 'kept'"):
        run = pipeline.run(config(tmp_path, load=True))
    assert run.value == [1, 2]
    assert calls == {"fresh": 2, "kept": 2, "join": 2}
    assert sorted(r.name for r in run.records) == ["fresh", "join", "kept"]
    assert {r.name: r.outcome for r in run.records} == {"fresh": "stored", "kept": "stored", "join": "stored"}


def test_damage_with_store_false_recomputes_and_leaves_the_file_alone(tmp_path: Path) -> None:
    calls = {"source": 0, "shape": 0}
    pipeline, _ = _damage_pipeline(calls)
    first = pipeline.run(config(tmp_path))
    path = checkpoint(tmp_path, "shape", key_of(first, "shape"))
    path.write_bytes(b"{}")
    with pytest.warns(chkpt.ChkptWarning, match=re.escape(str(path))):
        run = pipeline.run(config(tmp_path, load=True, store=False))
    assert run.value == first.value
    assert [(r.name, r.outcome) for r in run.records] == [("source", "loaded"), ("shape", "computed")]
    assert path.read_bytes() == b"{}"


def test_a_checkpoint_deleted_between_plan_and_load_is_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"source": 0, "shape": 0}
    pipeline, _ = _damage_pipeline(calls)
    first = pipeline.run(config(tmp_path))
    path = checkpoint(tmp_path, "shape", key_of(first, "shape"))
    real_isfile = os.path.isfile

    def isfile_then_delete(candidate: Any) -> bool:
        found = real_isfile(candidate)
        if found and os.fspath(candidate) == str(path):
            os.unlink(candidate)
        return found

    monkeypatch.setattr(os.path, "isfile", isfile_then_delete)
    with pytest.warns(chkpt.ChkptWarning, match=re.escape(str(path))):
        run = pipeline.run(config(tmp_path, load=True))
    monkeypatch.undo()
    assert run.value == first.value
    assert calls == {"source": 1, "shape": 2}
    assert json.loads(path.read_bytes())["value"] == first.value


# --- StoreError -----------------------------------------------------------------------------------------------


def _counted_chain(calls: list[str]) -> chkpt.Pipeline[int]:
    @chkpt.Stage.wrap()
    def first() -> int:
        calls.append("first")
        return 1

    @chkpt.Stage.wrap()
    def second(x: int) -> int:
        calls.append("second")
        return x + 1

    return first >> second


def test_a_dir_that_cannot_be_created_raises_store_error_before_any_stage_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    calls: list[str] = []
    for bad, store in [(blocker / "checkpoints", True), (blocker / "x" / "y", ["second"]), (blocker, True)]:
        with pytest.raises(chkpt.StoreError) as info:
            _counted_chain(calls).run(config(bad, store=store, load=True))
        message = str(info.value)
        assert repr(str(bad)) in message
        assert "Config(dir=...)" in message and "CHKPT_DIR" in message
        assert isinstance(info.value, chkpt.ChkptError)
    assert calls == []
    assert blocker.read_text() == "not a folder"
    assert list(tmp_path.iterdir()) == [blocker]


def test_a_bad_chkpt_dir_environment_variable_raises_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CHKPT_DIR", str(blocker / "sub"))
    calls: list[str] = []
    with pytest.raises(chkpt.StoreError, match=re.escape(str(blocker / "sub"))):
        _counted_chain(calls).run(chkpt.Config(verbose=False))
    assert calls == []


def test_store_false_and_load_false_never_touch_the_dir(tmp_path: Path) -> None:
    calls: list[str] = []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for directory in (blocker / "sub", tmp_path / "missing"):
        run = _counted_chain(calls).run(config(directory, store=False, load=False))
        assert run.value == 2
    assert calls == ["first", "second"] * 2
    assert sorted(tmp_path.iterdir()) == [blocker]


def test_load_without_store_and_a_missing_dir_just_computes(tmp_path: Path) -> None:
    calls: list[str] = []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for directory in (tmp_path / "missing", blocker / "sub"):
        run = _counted_chain(calls).run(config(directory, store=False, load=True))
        assert run.value == 2
        assert [(r.name, r.outcome) for r in run.records] == [("first", "computed"), ("second", "computed")]
    assert calls == ["first", "second"] * 2
    assert sorted(tmp_path.iterdir()) == [blocker]


def _second_file_fsync(fd: int, fsyncs: list[int]) -> bool:
    """Whether this fsync is of the second checkpoint file written (the first stage's is the first)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return False  # a folder's fsync, after a rename
    fsyncs.append(fd)
    return len(fsyncs) == 2


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_write_failure_raises_store_error_naming_the_stage_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    calls: list[str] = []
    pipeline = _counted_chain(calls)
    real = getattr(os, failing)
    fsyncs: list[int] = []

    def fail_on_second_stage(*args: Any) -> Any:
        # The first stage's checkpoint is written; the write of the second one fails.
        if failing == "fsync":
            second = _second_file_fsync(args[0], fsyncs)
        else:
            second = f"{os.sep}second{os.sep}" in os.fspath(args[1])
        if second:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args)

    monkeypatch.setattr(os, failing, fail_on_second_stage)
    with pytest.raises(chkpt.StoreError) as info:
        pipeline.run(config(tmp_path))
    monkeypatch.undo()
    message = str(info.value)
    assert "'second'" in message
    assert os.strerror(errno.ENOSPC) in message
    assert calls == ["first", "second"]
    assert not list(tmp_path.rglob("*.tmp"))
    assert [p.parent.name for p in checkpoint_files(tmp_path)] == ["first"]
    assert [p.parent.name for p in index_files(tmp_path)] == ["first"]
    # The first stage's checkpoint is whole, and a rerun resumes from it.
    run = pipeline.run(config(tmp_path, load=True))
    assert [(r.name, r.outcome) for r in run.records] == [("first", "loaded"), ("second", "stored")]
    assert calls == ["first", "second", "second"]


def test_a_checkpoint_path_taken_by_a_folder_is_a_store_error(tmp_path: Path) -> None:
    calls: list[str] = []
    pipeline = _counted_chain(calls)
    first = pipeline.run(config(tmp_path))
    path = checkpoint(tmp_path, "second", key_of(first, "second"))
    path.unlink()
    path.mkdir()
    with pytest.raises(chkpt.StoreError, match="'second'"):
        pipeline.run(config(tmp_path, load=True))
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_stage_folder_taken_by_a_file_is_a_store_error_naming_the_stage(tmp_path: Path) -> None:
    calls: list[str] = []
    (tmp_path / "second").write_text("in the way")
    with pytest.raises(chkpt.StoreError, match="'second'") as info:
        _counted_chain(calls).run(config(tmp_path))
    assert str(tmp_path / "second") in str(info.value)
    assert calls == ["first", "second"]
    assert (tmp_path / "second").read_text() == "in the way"
    assert not list(tmp_path.rglob("*.tmp"))
    assert [p.parent.name for p in checkpoint_files(tmp_path)] == ["first", tmp_path.name]
    assert [p.parent.name for p in index_files(tmp_path)] == ["first"]


def test_an_interrupt_during_a_write_propagates_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    pipeline = _counted_chain(calls)
    real_fsync = os.fsync
    fsyncs: list[int] = []

    def interrupted_fsync(fd: int) -> None:
        if _second_file_fsync(fd, fsyncs):
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config(tmp_path))
    monkeypatch.undo()
    assert calls == ["first", "second"]
    assert [p.parent.name for p in checkpoint_files(tmp_path)] == ["first"]
    assert [p.parent.name for p in index_files(tmp_path)] == ["first"]
    run = pipeline.run(config(tmp_path, load=True))
    assert [(r.name, r.outcome) for r in run.records] == [("first", "loaded"), ("second", "stored")]
