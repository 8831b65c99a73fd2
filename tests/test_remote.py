"""Stores in fsspec file systems (`Config(dir="s3://...")`, `memory://`): the same layout and checks as a folder,
against `memory://` and a real S3 API, moto's server, which this module starts on 127.0.0.1 (no test reaches the
internet)."""

from __future__ import annotations

import importlib.util
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

import chkpt
from chkpt.store import LocalStore

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None
calls: list[str] = []


@chkpt.Stage.wrap()
def rows(n: int) -> list[int]:
    calls.append("rows")
    return list(range(n))


@chkpt.Stage.wrap(format="pickle")
def as_set(xs: list[int]) -> set[int]:
    calls.append("as_set")
    return set(xs)


@chkpt.Stage.wrap(format="bytes")
def as_bytes(xs: set[int]) -> bytes:
    calls.append("as_bytes")
    return bytes(sorted(xs))


def squares(n: int) -> Any:
    import numpy as np

    return np.arange(n, dtype=np.float64) ** 2


def lengths(*xs: list[int]) -> int:
    return sum(len(x) for x in xs)


def pipeline(n: int = 5) -> chkpt.Pipeline[bytes]:
    return rows.bind(n=n) >> as_set >> as_bytes


S3_CREDENTIALS = {"key": "testing", "secret": "testing"}


@pytest.fixture(params=["memory", "s3"])
def store_url(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """A fresh store's URL and its storage options."""
    name = uuid.uuid4().hex[:12]
    if request.param == "memory":
        return f"memory://chkpt-tests/{name}", {}
    import s3fs

    endpoint = request.getfixturevalue("s3_endpoint")
    options = {**S3_CREDENTIALS, "endpoint_url": endpoint}
    s3fs.S3FileSystem(**options).mkdir(f"bucket-{name}")
    return f"s3://bucket-{name}/runs/one", options


def config(url: str, options: dict[str, Any], **more: Any) -> chkpt.Config:
    return chkpt.Config(dir=url, storage_options=options, verbose=False, **more)


def file_system(url: str, options: dict[str, Any]) -> Any:
    import fsspec.core

    return fsspec.core.url_to_fs(url, **options)


def test_a_run_stores_in_the_same_layout_and_the_next_loads_it(store_url: tuple[str, dict[str, Any]]) -> None:
    url, options = store_url
    calls.clear()
    first = pipeline().run(config(url, options))
    assert first.value == bytes(range(5))
    assert [(r.name, r.outcome) for r in first.records] == [
        ("rows", "stored"),
        ("as_set", "stored"),
        ("as_bytes", "stored"),
    ]
    fs, root = file_system(url, options)
    keys = {r.name: r.key for r in first.records}
    names = {path.removeprefix(root.rstrip("/") + "/") for path in fs.find(root)}
    assert names == {
        f"rows/{keys['rows']}.json",
        f"as_set/{keys['as_set']}.pkl",
        f"as_set/{keys['as_set']}.meta.json",
        f"as_bytes/{keys['as_bytes']}.bin",
        f"as_bytes/{keys['as_bytes']}.meta.json",
    }
    calls.clear()
    second = pipeline().run(config(url, options, load=True))
    assert second.value == bytes(range(5))
    assert [r.outcome for r in second.records] == ["loaded"]  # the target loads; nothing above it is read
    assert calls == []
    middle = (rows.bind(n=5) >> as_set).run(config(url, options, load=True))
    assert middle.value == set(range(5)) and [r.outcome for r in middle.records] == ["loaded"]


def test_checkpoints_copied_to_a_folder_load_there(store_url: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    url, options = store_url
    pipeline().run(config(url, options))
    fs, root = file_system(url, options)
    fs.get(root.rstrip("/") + "/", str(tmp_path) + "/", recursive=True)
    calls.clear()
    local = pipeline().run(chkpt.Config(dir=tmp_path, load=True, verbose=False))
    assert local.value == bytes(range(5)) and calls == []
    assert [r.outcome for r in local.records] == ["loaded"]


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "drop the record"])
def test_a_damaged_object_is_never_loaded(store_url: tuple[str, dict[str, Any]], damage: str) -> None:
    url, options = store_url
    first = pipeline().run(config(url, options))
    key = first.records[-1].key
    fs, root = file_system(url, options)
    value = f"{root.rstrip('/')}/as_bytes/{key}.bin"
    data = fs.cat_file(value)
    if damage == "flip a byte":
        fs.pipe_file(value, bytes([data[0] ^ 1]) + data[1:])
    elif damage == "truncate":
        fs.pipe_file(value, data[:-1])
    else:
        fs.rm_file(value.removesuffix(".bin") + ".meta.json")
    calls.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = pipeline().run(config(url, options, load=True))
    assert again.value == bytes(range(5))
    assert calls == ["as_bytes"]  # its input loads; it is computed again and stored
    if damage != "drop the record":  # without its record there is no checkpoint at all, and nothing to warn of
        (warning,) = [w for w in caught if issubclass(w.category, chkpt.ChkptWarning)]
        assert f"{key}" in str(warning.message) and "as_bytes" in str(warning.message)
    assert fs.cat_file(value) == data  # stored again, whole


def test_threads_share_one_store(store_url: tuple[str, dict[str, Any]]) -> None:
    url, options = store_url
    wide = tuple(rows.bind(n=n) for n in range(1, 7))
    total = wide >> chkpt.Stage(lengths)
    assert total(config(url, options, executor="threads", workers=4)) == 21
    calls.clear()
    assert total(config(url, options, executor="threads", workers=4, load=True)) == 21
    assert calls == []


@pytest.mark.skipif(not HAVE_NUMPY, reason="the numpy extra is not installed")
def test_an_array_round_trips(store_url: tuple[str, dict[str, Any]]) -> None:
    url, options = store_url
    stage = chkpt.Stage(squares, format="numpy").bind(n=1000)
    first = (() >> stage).run(config(url, options))
    again = (() >> stage).run(config(url, options, load=True))
    assert [r.outcome for r in again.records] == ["loaded"]
    assert again.value.tobytes() == first.value.tobytes() and again.value.dtype == first.value.dtype


def test_a_bucket_that_is_not_there_fails_before_any_stage_runs(s3_endpoint: str) -> None:
    calls.clear()
    options = {**S3_CREDENTIALS, "endpoint_url": s3_endpoint}
    with pytest.raises(chkpt.StoreError, match="cannot write checkpoints to 's3://no-such-bucket/x'"):
        pipeline().run(config("s3://no-such-bucket/x", options))
    assert calls == []


def test_memory_is_one_processs_store_and_processes_are_refused(tmp_path: Path) -> None:
    calls.clear()
    with pytest.raises(chkpt.ConfigError, match="lives in this process only"):
        pipeline().run(config("memory://one-process", {}, executor="processes"))
    assert calls == []


def test_without_fsspec_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    with pytest.raises(chkpt.ConfigError, match=r"pip install 'chkpt\[s3\]'"):
        pipeline().run(config("s3://bucket/x", {}))


def test_a_file_url_is_a_local_folder(tmp_path: Path) -> None:
    run = pipeline().run(chkpt.Config(dir=f"file://{tmp_path}", verbose=False))
    key = run.records[0].key
    assert (tmp_path / "rows" / f"{key}.json").is_file()
    assert LocalStore(str(tmp_path)).read("rows", key, "json")[0] == list(range(5))


def test_storage_options_values_are_not_shown() -> None:
    shown = repr(chkpt.Config(dir="s3://b/x", storage_options={"secret": "hunter2", "key": "AKIA"}))
    assert "hunter2" not in shown and "AKIA" not in shown and "'secret': ..." in shown
    with pytest.raises(chkpt.ConfigError, match="storage_options"):
        chkpt.Config(storage_options=["key"])  # type: ignore[arg-type]
    with pytest.raises(chkpt.ConfigError, match="storage options are for an fsspec URL"):
        chkpt.Config(dir="checkpoints", storage_options={"anon": True})
    chkpt.Config(storage_options={"anon": True})  # the folder may come from CHKPT_DIR, a URL


# --- listing and gc on object storage ------------------------------------------------------------------------


def stored(url: str, options: dict[str, Any]) -> dict[tuple[str, int], str]:
    """Runs of the pipeline with n = 1, 2, 3 (in that order, a second apart so that "newest" is plain): the keys
    by (stage, n)."""
    import time

    keys = {}
    for n in (1, 2, 3):
        if n > 1:
            time.sleep(1.0)  # records are dated to the second
        run = pipeline(n).run(config(url, options))
        keys.update({(r.name, n): r.key for r in run.records})
    return keys


def test_a_store_in_object_storage_lists_what_runs_stored(store_url: tuple[str, dict[str, Any]]) -> None:
    url, options = store_url
    keys = stored(url, options)
    listed = chkpt.Store(url, storage_options=options).checkpoints()
    assert [(cp.stage, cp.key) for cp in listed] == [
        (stage, keys[stage, n]) for stage in ("as_bytes", "as_set", "rows") for n in (3, 2, 1)
    ]
    fs, _ = file_system(url, options)
    for cp in listed:
        assert cp.files[0].startswith(url.partition("://")[0] + "://")
        assert cp.files[0].endswith(".json" if cp.stage == "rows" else ".meta.json")
        assert cp.bytes == sum(fs.size(path) for path in cp.files)
        assert cp.used == cp.created  # loads leave no trace in object storage
    assert [cp.key for cp in chkpt.Store(url, storage_options=options).checkpoints("as_set")] == [
        keys["as_set", n] for n in (3, 2, 1)
    ]


def test_gc_in_object_storage_keeps_the_newest_and_runs_load_them(store_url: tuple[str, dict[str, Any]]) -> None:
    url, options = store_url
    keys = stored(url, options)
    store = chkpt.Store(url, storage_options=options)
    planned = store.gc(dry_run=True)
    collected = store.gc()
    assert collected == planned
    assert {(cp.stage, cp.key) for cp in collected.removed} == {
        (stage, keys[stage, n]) for stage in ("rows", "as_set", "as_bytes") for n in (1, 2)
    }
    assert collected.bytes_freed == sum(cp.bytes for cp in collected.removed)
    fs, _ = file_system(url, options)
    assert not any(fs.exists(path) for cp in collected.removed for path in cp.files)
    assert len(store.checkpoints()) == 3
    calls.clear()
    run = pipeline(3).run(config(url, options, load=True))
    assert [r.outcome for r in run.records] == ["loaded"] and calls == []
    assert store.gc(keep_reachable=pipeline(3)) == chkpt.Collected()
    assert len(store.gc(keep_last=0).removed) == 3


def filled(store_url: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any], dict[tuple[str, int], str], Any, Any]:
    """The store's URL and options after `stored`, its keys, the RemoteStore and its file system."""
    from chkpt.remote import RemoteStore

    url, options = store_url
    keys = stored(url, options)
    return url, options, keys, RemoteStore(url, options), file_system(url, options)[0]


def test_gc_in_object_storage_skips_locked_keys_and_keys_stored_again(
    store_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chkpt import listing

    url, options, keys, remote, fs = filled(store_url)
    real_scan = listing.RemoteListing.scan

    def scan_then_store_again(self: listing.RemoteListing) -> list[listing.Folder]:
        folders = real_scan(self)
        path = remote.marker("as_set", keys["as_set", 1], "pickle")
        fs.pipe_file(path, fs.cat_file(path) + b" ")  # a run stores the key again after gc looked
        return folders

    monkeypatch.setattr(listing.RemoteListing, "scan", scan_then_store_again)
    with remote.lock("rows", keys["rows", 1]):
        collected = chkpt.Store(url, storage_options=options).gc(keep_last=0, stages=["rows", "as_set"])
    assert [(cp.stage, cp.key) for cp in collected.skipped_locked] == [("rows", keys["rows", 1])]
    assert {(cp.stage, cp.key) for cp in collected.removed} == {
        ("rows", keys["rows", 2]),
        ("rows", keys["rows", 3]),
        ("as_set", keys["as_set", 2]),
        ("as_set", keys["as_set", 3]),
    }
    monkeypatch.undo()
    assert {cp.key for cp in chkpt.Store(url, storage_options=options).checkpoints("as_set")} == {keys["as_set", 1]}


def test_damaged_records_and_orphans_in_object_storage(
    store_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chkpt import catalog

    url, options, keys, remote, fs = filled(store_url)
    fs.pipe_file(remote.marker("as_set", keys["as_set", 3], "pickle"), b"not json")
    orphan = remote.path("as_bytes", "ab" * 16, "bin")
    fs.pipe_file(orphan, b"a value whose record was never put")
    listed = {cp.key: cp for cp in chkpt.Store(url, storage_options=options).checkpoints()}
    assert listed[keys["as_set", 3]].stage == "as_set"  # its folder's name: the record cannot say
    assert "ab" * 16 not in listed
    store = chkpt.Store(url, storage_options=options)
    assert store.gc(keep_last=3) == chkpt.Collected()  # the orphan is younger than an hour: maybe a write
    monkeypatch.setattr(catalog, "LEFTOVER_AGE", -1.0)
    collected = store.gc(keep_last=3)
    assert collected.removed == () and collected.bytes_freed == len(b"a value whose record was never put")
    assert not fs.exists(orphan)
    assert {cp.key for cp in store.gc(keep_last=0, stages=["as_set"]).removed} == {keys["as_set", n] for n in (1, 2, 3)}


def test_a_store_url_needs_its_options_and_a_folder_takes_none(tmp_path: Path) -> None:
    with pytest.raises(chkpt.ConfigError, match="storage_options"):
        chkpt.Store(tmp_path, storage_options={"key": "x"})
    with pytest.raises(chkpt.ConfigError, match="storage_options"):
        chkpt.Store("memory://x", storage_options=["key"])  # type: ignore[arg-type]
    assert chkpt.Store("memory://chkpt-tests/nothing-here").checkpoints() == []
    assert chkpt.Store(f"file://{tmp_path}").root == str(tmp_path)


def test_a_dead_holders_lease_is_taken_over_and_a_live_one_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import threading
    import time

    from chkpt import remote

    store = remote.RemoteStore(f"memory://chkpt-tests/{uuid.uuid4().hex[:12]}")
    path = f"{store.root}/.locks/stage.{'k' * 32}.lock"
    # a holder that died: its lease ended a second ago
    store.fs.pipe_file(path, json.dumps({"owner": "dead", "expires": time.time() - 1}).encode())
    started = time.monotonic()
    with store.lock("stage", "k" * 32):
        assert time.monotonic() - started < 1.0
        assert json.loads(store.fs.cat_file(path))["owner"] != "dead"
    assert not store.fs.exists(path)  # the holder removed its lease

    # a live holder renews its lease (every third of it) while it works longer than the lease: others wait
    monkeypatch.setattr(remote, "LEASE_SECONDS", 0.3)
    times: dict[str, float] = {}
    held = threading.Event()

    def hold() -> None:
        with store.lock("stage", "k" * 32):
            held.set()
            time.sleep(1.0)
            times["released"] = time.monotonic()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    with store.lock("stage", "k" * 32):
        times["entered"] = time.monotonic()
    holder.join()
    assert times["entered"] >= times["released"]
