"""Each stage folder's index (`.index`) and use notes (`.used`), and its fan-out subfolders: a listing that reads
no record gives what one that reads every record gives, and a folder past FANOUT_AT keys spreads new ones over
subfolders that every load, listing and gc finds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chkpt
from chkpt import codecs, index, listing
from chkpt import store as store_module
from chkpt.store import LocalStore


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()[:32]


def write(store: LocalStore, stage: str, i: int, fmt: str = "json", value: Any = None, created: float = 0.0) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created or time.time()))
    record = {"stage": stage, "created": stamp, "format": fmt, "codec": fmt}
    payload = value if value is not None else ([i] if fmt == "json" else {i})
    store.write(stage, key(i), fmt, codecs.get(fmt), payload, record)


def without_index(folder: Path) -> list[chkpt.Checkpoint]:
    """The listing of a copy of `folder` with no index: every checkpoint read from its record and files."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy"
        shutil.copytree(folder, copy)
        for path in copy.rglob(index.NAME):
            path.unlink()
        listed = chkpt.Store(copy).checkpoints()
    prefix = str(copy)
    return [cp._replace(files=tuple(str(folder) + f[len(prefix) :] for f in cp.files)) for cp in listed]


def listed_created(listed: list[chkpt.Checkpoint], wanted: str) -> float:
    (created,) = [cp.created for cp in listed if cp.key == wanted]
    return created


def no_record_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError(f"a record was read: {args}")

    monkeypatch.setattr(listing, "_read_record", refuse)


# --- the index ------------------------------------------------------------------------------------------------------


@chkpt.Stage.wrap()
def numbers(n: int) -> list[int]:
    return list(range(n))


@chkpt.Stage.wrap(format="pickle")
def total(values: list[int]) -> int:
    return sum(values)


def test_a_run_indexes_what_it_stores_and_a_listing_then_reads_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [(numbers.bind(n=n) >> total).run(chkpt.Config(dir=tmp_path, verbose=False)) for n in (1, 2, 3)]
    lines = (tmp_path / "numbers" / index.NAME).read_bytes().splitlines()
    assert [json.loads(line)[0] for line in lines] == [r.records[0].key for r in runs]  # oldest first
    expected = without_index(tmp_path)
    no_record_reads(monkeypatch)
    listed = chkpt.Store(tmp_path).checkpoints()
    assert listed == expected
    newest_first = sorted(runs, key=lambda r: (-listed_created(listed, r.records[0].key), r.records[0].key))
    assert [cp.key for cp in listed if cp.stage == "numbers"] == [r.records[0].key for r in newest_first]
    for cp in listed:
        assert cp.bytes == sum(os.path.getsize(path) for path in cp.files)
        assert os.path.basename(cp.files[0]).endswith(".json" if cp.stage == "numbers" else ".meta.json")


def test_a_checkpoint_stored_again_is_listed_as_stored_last_even_if_its_entry_was_lost(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path), durable=False)
    write(store, "s", 1, created=time.time() - 86400)
    write(store, "s", 2, fmt="pickle", created=time.time() - 86400)
    folder = tmp_path / "s"
    old_index = (folder / index.NAME).read_bytes()
    write(store, "s", 1, value=[10])  # stored again today: a new file, so a new inode
    write(store, "s", 2, fmt="pickle", value={10, 20})
    (folder / index.NAME).write_bytes(old_index)  # as if a crash had cut the appends
    listed = {cp.key: cp for cp in chkpt.Store(tmp_path).checkpoints()}
    assert listed[key(1)].created > time.time() - 3600
    assert listed[key(2)].created > time.time() - 3600
    assert list(listed.values()) == without_index(tmp_path)


def test_a_damaged_index_costs_reads_never_a_wrong_or_missing_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(str(tmp_path), durable=False)
    for i in range(6):
        write(store, "s", i, fmt="json" if i % 2 else "pickle")
    expected = without_index(tmp_path)
    path = tmp_path / "s" / index.NAME
    lines = path.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[0])
    entry[1] += 1  # another inode
    damaged = [
        json.dumps(entry).encode() + b"\n",
        b"not json\n",
        b'["%s", "inode", 1, "s", 0]\n' % key(1).encode(),  # wrong types
        b"[1, 2, 3]\n",
        *lines[2:],
        lines[1][:20],  # an append cut short
    ]
    path.write_bytes(b"".join(damaged))
    assert chkpt.Store(tmp_path).checkpoints() == expected
    path.write_bytes(b"\x00\xff" * 100)
    assert chkpt.Store(tmp_path).checkpoints() == expected
    path.unlink()
    assert chkpt.Store(tmp_path).checkpoints() == expected
    chkpt.Store(tmp_path).gc(keep_last=6)  # gc writes the index again from what it found
    no_record_reads(monkeypatch)
    assert chkpt.Store(tmp_path).checkpoints() == expected


def test_gc_leaves_the_index_and_the_use_notes_to_what_it_keeps(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path), durable=False)
    for i in range(5):
        write(store, "s", i, created=time.time() - 86400 * (5 - i))
    folder = tmp_path / "s"
    notes = "".join(f"{key(i)} {int(time.time()) - 60 * i}\n" for i in range(5))
    (folder / index.USED).write_text(notes)
    before = {cp.key: cp.used for cp in chkpt.Store(tmp_path).checkpoints()}
    collected = chkpt.Store(tmp_path).gc(keep_last=2)
    assert {cp.key for cp in collected.removed} == {key(0), key(1), key(2)}
    assert [json.loads(line)[0] for line in (folder / index.NAME).read_text().splitlines()] == [key(3), key(4)]
    assert sorted((folder / index.USED).read_text().splitlines()) == sorted(notes.splitlines()[3:])
    assert {cp.key: cp.used for cp in chkpt.Store(tmp_path).checkpoints()} == {k: before[k] for k in (key(3), key(4))}


def test_what_is_appended_while_gc_rewrites_the_index_is_kept(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path), durable=False)
    write(store, "s", 1)
    folder = str(tmp_path / "s")
    entries, seen = index.read(folder)
    used, used_seen = index.uses(folder)
    write(store, "s", 2)  # a run stores, and one loads, after gc read the files
    index.note_use(folder, key(1), 1234.0)
    index.rewrite(folder, entries.values(), used, (seen, used_seen))
    assert set(index.read(folder)[0]) == {key(1), key(2)}
    assert index.uses(folder)[0] == {key(1): 1234.0}


def test_the_index_is_kept_out_of_a_read_only_store_without_failing_it(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path), durable=False)
    write(store, "s", 1)
    (tmp_path / "s" / index.NAME).unlink()
    (tmp_path / "s" / index.NAME).mkdir()  # an index that cannot be appended to
    write(store, "s", 2)
    assert store.read("s", key(2), "json")[0] == [2]
    assert {cp.key for cp in chkpt.Store(tmp_path).checkpoints()} == {key(1), key(2)}


# --- fan-out --------------------------------------------------------------------------------------------------------


@pytest.fixture
def small_fanout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "FANOUT_AT", 3)  # fan out after about 3 entries of the index


def where(tmp_path: Path, stage: str, i: int) -> str:
    (path,) = [p for p in (tmp_path / stage).rglob(f"{key(i)}.*") if not p.name.endswith(".pkl")]
    return path.parent.name


def test_a_folder_past_fanout_at_puts_new_keys_in_subfolders_by_prefix(tmp_path: Path, small_fanout: None) -> None:
    store = LocalStore(str(tmp_path), durable=False)
    for i in range(12):
        write(store, "s", i, fmt="json" if i % 2 else "pickle")
    places = [where(tmp_path, "s", i) for i in range(12)]
    first_fanned = next(i for i, place in enumerate(places) if place != "s")
    assert 2 <= first_fanned <= 5
    assert all(places[i] == key(i)[:2] for i in range(first_fanned, 12))  # and every one after it
    for i in range(12):
        fmt = "json" if i % 2 else "pickle"
        assert store.exists("s", key(i), fmt)
        assert store.read("s", key(i), fmt)[0] == ([i] if fmt == "json" else {i})
        assert os.path.dirname(store.marker("s", key(i), fmt)).endswith(places[i])
    write(store, "s", 0, fmt="pickle", value={100})  # stored again where it is
    assert where(tmp_path, "s", 0) == "s" and store.read("s", key(0), "pickle")[0] == {100}
    assert not store.exists("s", key(99), "json")
    assert len(chkpt.Store(tmp_path).checkpoints()) == 12
    assert chkpt.Store(tmp_path).checkpoints() == without_index(tmp_path)


@chkpt.Stage.wrap()
def square(x: int) -> int:
    return x * x


def test_runs_load_from_fanned_out_folders_and_gc_removes_there(tmp_path: Path, small_fanout: None) -> None:
    config = chkpt.Config(dir=tmp_path, verbose=False)
    keys = [(() >> square.bind(x=x)).run(config).records[0].key for x in range(10)]
    assert len({p.parent for p in (tmp_path / "square").rglob("*.json")}) > 2  # spread over subfolders
    for x in range(10):
        run = (() >> square.bind(x=x)).run(chkpt.Config(dir=tmp_path, verbose=False, load=True))
        assert (run.value, run.records[0].outcome) == (x * x, "loaded")
    collected = chkpt.Store(tmp_path).gc(keep_last=3)
    assert len(collected.removed) == 7
    assert {cp.key for cp in chkpt.Store(tmp_path).checkpoints()} == set(keys) - {cp.key for cp in collected.removed}
    assert not any(os.path.exists(path) for cp in collected.removed for path in cp.files)
    assert chkpt.Store(tmp_path).checkpoints() == without_index(tmp_path)


def test_a_file_in_the_wrong_subfolder_is_not_chkpts(tmp_path: Path, small_fanout: None) -> None:
    store = LocalStore(str(tmp_path), durable=False)
    for i in range(8):
        write(store, "s", i)
    fanned = next(i for i in range(8) if where(tmp_path, "s", i) != "s")
    path = tmp_path / "s" / key(fanned)[:2] / f"{key(fanned)}.json"
    wrong = tmp_path / "s" / ("00" if key(fanned)[:2] != "00" else "01")
    wrong.mkdir(exist_ok=True)
    os.replace(path, wrong / path.name)
    assert not store.exists("s", key(fanned), "json")
    assert key(fanned) not in {cp.key for cp in chkpt.Store(tmp_path).checkpoints()}
    chkpt.Store(tmp_path).gc(keep_last=0)
    assert (wrong / path.name).exists()  # not chkpt's to remove


# --- the property: with or without the index, the same listing --------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["write", "write", "damage", "gc"]), st.integers(0, 7), st.sampled_from(["json", "pickle"])
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, fanout=st.sampled_from([2, 10_000]))
def test_the_listing_with_the_index_is_the_listing_without_it(
    operations: list[tuple[str, int, str]], fanout: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "FANOUT_AT", fanout)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        store = LocalStore(scratch, durable=False)
        for operation, i, fmt in operations:
            n = i if fmt == "json" else i + 8  # keys differ by format, as a stage's do
            if operation == "write":
                write(store, f"stage{i % 2}", n, fmt=fmt, created=time.time() - 100 * i)
            elif operation == "damage":
                files = sorted(p for p in root.rglob(f"{key(n)}.*"))
                if files:
                    files[0].unlink()  # a marker or a value file goes missing
            else:
                chkpt.Store(scratch).gc(keep_last=i % 3)
            assert chkpt.Store(scratch).checkpoints() == without_index(root)
