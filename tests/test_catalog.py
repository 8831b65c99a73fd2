"""Retention: `chkpt.Store(dir)` lists a folder's checkpoints and `gc` removes what is not wanted, on stores
written by real pipelines (and, for the property, by the store itself)."""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chkpt
from chkpt import codecs
from chkpt.store import LocalStore

HOUR = 3600.0
DAY = 86400.0

calls: dict[str, int] = {}


@chkpt.Stage.wrap()
def table(n: int) -> list[int]:
    calls["table"] = calls.get("table", 0) + 1
    return list(range(n))


@chkpt.Stage.wrap(format="pickle")
def blob(rows: list[int]) -> set[int]:
    calls["blob"] = calls.get("blob", 0) + 1
    return set(rows)


@chkpt.Stage.wrap(name="my stage")
def spaced() -> str:
    return "spaced"


def pipeline(n: int) -> chkpt.Pipeline[set[int]]:
    return table.bind(n=n) >> blob


def config(directory: Path, **options: Any) -> chkpt.Config:
    return chkpt.Config(dir=directory, verbose=False, **options)


def run_days_ago(
    monkeypatch: pytest.MonkeyPatch, days: float, built: chkpt.Pipeline[Any], directory: Path
) -> chkpt.Run[Any]:
    """Run a pipeline with the clock its records read ("created") set `days` back: its checkpoints are that old."""
    real = chkpt.compute.created_now
    shift = days * DAY

    def created_now() -> str:
        moment = chkpt.index.created_seconds(real())
        assert moment is not None
        return chkpt.compute.created_at(moment - shift)

    with monkeypatch.context() as patch:
        patch.setattr(chkpt.compute, "created_now", created_now)  # which records are dated with, for this run only
        return built.run(config(directory))


def key_of(run: chkpt.Run[Any], stage: str) -> str:
    (key,) = [r.key for r in run.records if r.name == stage]
    return key


AGES = {1: 40.0, 2: 10.0, 3: 2 / 24}  # n -> days: 40 days, 10 days, 2 hours


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Three checkpoints of `table` (JSON, one file each) and three of `blob` (pickle, two files each), 40 days,
    10 days and 2 hours old; returns the folder and the keys by stage and n."""
    calls.clear()
    keys: dict[tuple[str, int], str] = {}
    for n, days in AGES.items():
        run = run_days_ago(monkeypatch, days, pipeline(n), tmp_path)
        keys["table", n] = key_of(run, "table")
        keys["blob", n] = key_of(run, "blob")
    calls.clear()
    yield {"dir": tmp_path, "keys": keys}


def all_files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def names(checkpoints: tuple[chkpt.Checkpoint, ...] | list[chkpt.Checkpoint]) -> set[tuple[str, str]]:
    return {(cp.stage, cp.key) for cp in checkpoints}


def which(store: dict[str, Any], *wanted: tuple[str, int]) -> set[tuple[str, str]]:
    return {(stage, store["keys"][stage, n]) for stage, n in wanted}


def age_off(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


# --- listing ------------------------------------------------------------------------------------------------------


def test_checkpoints_lists_both_layouts_newest_first(store: dict[str, Any]) -> None:
    directory, keys = store["dir"], store["keys"]
    listed = chkpt.Store(directory).checkpoints()
    assert [(cp.stage, cp.key) for cp in listed] == [
        ("blob", keys["blob", 3]),
        ("blob", keys["blob", 2]),
        ("blob", keys["blob", 1]),
        ("table", keys["table", 3]),
        ("table", keys["table", 2]),
        ("table", keys["table", 1]),
    ]
    now = time.time()
    for cp in listed:
        n = next(n for (stage, n), key in keys.items() if key == cp.key)
        assert abs(now - cp.created - AGES[n] * DAY) < 5
        assert all(os.path.isabs(path) for path in cp.files)
        assert cp.bytes == sum(os.path.getsize(path) for path in cp.files)
        if cp.stage == "table":
            assert cp.files == (str(directory / "table" / f"{cp.key}.json"),)
        else:  # the record, whose presence means a whole checkpoint, first
            assert cp.files == (
                str(directory / "blob" / f"{cp.key}.meta.json"),
                str(directory / "blob" / f"{cp.key}.pkl"),
            )
    assert chkpt.Store(directory).checkpoints("blob") == listed[:3]
    assert chkpt.Store(directory).checkpoints(table) == listed[3:]
    assert chkpt.Store(str(directory)).checkpoints() == listed


def test_a_stage_name_made_safe_for_its_folder_is_found_by_its_name(tmp_path: Path) -> None:
    run = (() >> spaced).run(config(tmp_path))
    assert (tmp_path / "my_stage").is_dir()
    (listed,) = chkpt.Store(tmp_path).checkpoints("my stage")
    assert (listed.stage, listed.key) == ("my stage", key_of(run, "my stage"))
    assert chkpt.Store(tmp_path).gc(keep_last=0, stages=["my stage"]).removed == (listed,)
    assert chkpt.Store(tmp_path).checkpoints() == []


def test_a_folder_that_does_not_exist_holds_nothing(tmp_path: Path) -> None:
    missing = chkpt.Store(tmp_path / "nowhere")
    assert missing.checkpoints() == []
    assert missing.gc() == chkpt.Collected((), 0, 0, ())
    assert missing.gc(keep_last=0, stages=["table"], dry_run=True) == chkpt.Collected()
    assert not (tmp_path / "nowhere").exists()


def test_store_takes_a_path(tmp_path: Path) -> None:
    assert chkpt.Store(tmp_path).root == str(tmp_path)
    assert os.path.isabs(chkpt.Store("relative/dir").root)
    for bad in (3, None, b"dir", ""):
        with pytest.raises(chkpt.ConfigError, match="Store"):
            chkpt.Store(bad)  # type: ignore[arg-type]


def test_checkpoint_and_collected_are_frozen_values(store: dict[str, Any]) -> None:
    first, *_ = chkpt.Store(store["dir"]).checkpoints()
    with pytest.raises(AttributeError):
        first.key = "x"  # type: ignore[misc]
    collected = chkpt.Store(store["dir"]).gc(dry_run=True)
    with pytest.raises(AttributeError):
        collected.bytes_freed = 0
    assert collected == chkpt.Store(store["dir"]).gc(dry_run=True)
    assert len({first, chkpt.Store(store["dir"]).checkpoints()[0]}) == 1
    assert "Checkpoint(stage='blob'" in repr(first) and "bytes_freed=" in repr(collected)


# --- choosing what goes ---------------------------------------------------------------------------------------------


def test_gc_keeps_the_newest_of_each_stage_and_runs_load_what_it_kept(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every load notes its use here (by default, not one within the hour after storing, and these were just
    # stored, whatever their records' dates).
    monkeypatch.setattr(chkpt.store, "_USE_RESOLUTION_NS", 0)
    directory = store["dir"]
    before = chkpt.Store(directory).checkpoints()
    sizes = {cp.key: sum(os.path.getsize(path) for path in cp.files) for cp in before}
    collected = chkpt.Store(directory).gc()
    assert names(collected.removed) == which(store, ("table", 1), ("table", 2), ("blob", 1), ("blob", 2))
    assert collected.bytes_freed == sum(sizes[cp.key] for cp in collected.removed)
    assert (collected.temporaries, collected.skipped_locked) == (0, ())
    assert not any(os.path.exists(path) for cp in collected.removed for path in cp.files)
    assert names(chkpt.Store(directory).checkpoints()) == which(store, ("table", 3), ("blob", 3))

    assert pipeline(3)(config(directory, load=True)) == {0, 1, 2}
    assert calls == {}  # loaded
    assert pipeline(1)(config(directory, load=True)) == {0}
    assert calls == {"table": 1, "blob": 1}  # removed, so computed again
    again = chkpt.Store(directory).gc()
    # the n=3 checkpoints go now, as they were listed before, except that the run above loaded them since
    assert [(cp.stage, cp.key, cp.created, cp.bytes, cp.files) for cp in again.removed] == [
        (cp.stage, cp.key, cp.created, cp.bytes, cp.files)
        for cp in before
        if cp.key in {store["keys"]["table", 3], store["keys"]["blob", 3]}
    ]
    # that run loaded blob's; table's, which only blob reads, was not read, so not used
    assert {cp.stage: cp.used > cp.created for cp in again.removed} == {"blob": True, "table": False}
    assert again.bytes_freed == sum(sizes[store["keys"][stage, 3]] for stage in ("table", "blob"))


@pytest.mark.parametrize(
    ("keep_last", "older_than", "removed"),
    [
        (0, None, {1, 2, 3}),
        (1, None, {1, 2}),
        (3, None, set()),
        (5, None, set()),
        (0, "20d", {1}),
        (0, "5d", {1, 2}),
        (0, "1h", {1, 2, 3}),
        (0, "3h", {1, 2}),
        (2, "1h", {1}),  # the 10-day-old one is among the 2 newest
        (1, "20d", {1}),  # the 10-day-old one is young enough
        (0, "60d", set()),
    ],
)
def test_keep_last_and_older_than_both_have_to_let_a_checkpoint_go(
    store: dict[str, Any], keep_last: int, older_than: str | None, removed: set[int]
) -> None:
    collected = chkpt.Store(store["dir"]).gc(keep_last=keep_last, older_than=older_than)
    expected = {(stage, n) for stage in ("table", "blob") for n in removed}
    assert names(collected.removed) == which(store, *expected)
    assert names(chkpt.Store(store["dir"]).checkpoints()) == which(
        store, *{(stage, n) for stage in ("table", "blob") for n in AGES} - expected
    )


@pytest.mark.parametrize(
    "twenty_days",
    [
        "20d",
        " 20d ",
        "480h",
        "28800m",
        "1728000s",
        "20.0d",
        "2.5w",  # 17.5 days: still between 10 and 40
        1728000,
        1728000.0,
        datetime.timedelta(days=20),
    ],
)
def test_older_than_forms(store: dict[str, Any], twenty_days: object) -> None:
    collected = chkpt.Store(store["dir"]).gc(keep_last=0, older_than=twenty_days, dry_run=True)  # type: ignore[arg-type]
    assert names(collected.removed) == which(store, ("table", 1), ("blob", 1))


@pytest.mark.parametrize(
    "bad",
    [
        *("30", "d", "30 days", "1h30m", "-1d", "30D", "1.5.2h", "+2h", "\u0661d", ""),  # (U+0661: an Arabic one)
        *(-1, -0.5, float("nan"), float("inf"), True, [30], datetime.timedelta(seconds=-1), object()),
    ],
)
def test_a_bad_older_than_is_a_config_error_showing_it_and_the_forms(store: dict[str, Any], bad: object) -> None:
    before = all_files(store["dir"])
    with pytest.raises(chkpt.ConfigError) as raised:
        chkpt.Store(store["dir"]).gc(older_than=bad)  # type: ignore[arg-type]
    message = str(raised.value)
    assert repr(bad) in message and "'30d'" in message and "timedelta" in message
    assert all_files(store["dir"]) == before


@pytest.mark.parametrize("bad", [-1, True, 1.0, "1", [1]])
def test_keep_last_must_be_an_int_of_at_least_zero(store: dict[str, Any], bad: object) -> None:
    with pytest.raises(chkpt.ConfigError, match="keep_last") as raised:
        chkpt.Store(store["dir"]).gc(keep_last=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(raised.value)


def test_stages_selects_which_stages_gc_looks_at(store: dict[str, Any]) -> None:
    directory = store["dir"]
    collected = chkpt.Store(directory).gc(keep_last=0, stages=["table"])
    assert names(collected.removed) == which(store, ("table", 1), ("table", 2), ("table", 3))
    assert names(chkpt.Store(directory).checkpoints()) == which(store, ("blob", 1), ("blob", 2), ("blob", 3))
    collected = chkpt.Store(directory).gc(stages=(blob,))  # a Stage names its stage
    assert names(collected.removed) == which(store, ("blob", 1), ("blob", 2))
    # table's folder is still there, empty: naming it again is no error (a cron job may)
    assert chkpt.Store(directory).gc(keep_last=0, stages=["table"]) == chkpt.Collected()


def test_an_unknown_stage_is_a_config_error_naming_the_stages_there(store: dict[str, Any]) -> None:
    before = all_files(store["dir"])
    with pytest.raises(chkpt.ConfigError) as raised:
        chkpt.Store(store["dir"]).gc(keep_last=0, stages=["table", "tabel"])
    message = str(raised.value)
    assert "tabel" in message and "'blob'" in message and "'table'" in message
    with pytest.raises(chkpt.ConfigError, match="tabel"):
        chkpt.Store(store["dir"]).checkpoints("tabel")
    assert all_files(store["dir"]) == before  # nothing of the known stage went either


@pytest.mark.parametrize("bad", ["table", table, 3, [3], [None]])
def test_stages_must_be_a_list_of_names(store: dict[str, Any], bad: object) -> None:
    with pytest.raises(chkpt.ConfigError, match="stages"):
        chkpt.Store(store["dir"]).gc(stages=bad)  # type: ignore[arg-type]


def test_dry_run_removes_nothing_and_reports_the_same(store: dict[str, Any]) -> None:
    directory = store["dir"]
    leftover = directory / "blob" / f".{store['keys']['blob', 1]}.pkl.4321.0123abcd.tmp"
    leftover.write_bytes(b"x" * 100)
    age_off(leftover, 2 * HOUR)
    before = all_files(directory)
    dry = chkpt.Store(directory).gc(older_than="20d", dry_run=True)
    assert all_files(directory) == before
    assert dry.temporaries == 1 and names(dry.removed) == which(store, ("table", 1), ("blob", 1))
    assert chkpt.Store(directory).gc(older_than="20d") == dry
    assert not leftover.exists()


# --- what a crash or another run leaves ----------------------------------------------------------------------------

HOLD_LOCK = """
import sys
from chkpt.store import LocalStore

with LocalStore(sys.argv[1]).lock(sys.argv[2], sys.argv[3]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_key_a_running_pipeline_holds_is_skipped(store: dict[str, Any]) -> None:
    directory, key = store["dir"], store["keys"]["blob", 1]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(directory), "blob", key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        (locked,) = [cp for cp in chkpt.Store(directory).checkpoints() if cp.key == key]
        assert chkpt.Store(directory).gc(keep_last=0, dry_run=True).skipped_locked == (locked,)
        collected = chkpt.Store(directory).gc(keep_last=0)
        assert collected.skipped_locked == (locked,)
        assert key not in {cp.key for cp in collected.removed} and len(collected.removed) == 5
        assert all(os.path.exists(path) for path in locked.files)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    assert chkpt.Store(directory).gc(keep_last=0).removed == (locked,)  # let go: now it goes


def test_old_temporary_files_go_fresh_ones_and_lock_files_stay(store: dict[str, Any]) -> None:
    directory, key = store["dir"], store["keys"]["blob", 3]
    folder = directory / "blob"
    old = [
        folder / f".{key}.pkl.4321.0123abcd.tmp",
        folder / f".{key}.meta.json.4321.89abcdef.tmp",
        directory / "table" / f".{store['keys']['table', 1]}.json.77.00000000.tmp",
        directory / ".probe.4321.0123abcd",  # the writability check's file
    ]
    fresh = [folder / f".{key}.pkl.4321.fedcba98.tmp"]
    locks = [folder / f".{key}.lock", folder / f".{store['keys']['blob', 1]}.lock"]
    theirs = [folder / ".notes.tmp", folder / ".a.1.0123abcd.tmp.bak", directory / ".probe.mine"]
    for path in old + fresh + locks + theirs:
        path.write_bytes(b"t" * 10)
        age_off(path, 2 * HOUR)
    for path in fresh:
        age_off(path, HOUR / 2)

    dry = chkpt.Store(directory).gc(keep_last=3, dry_run=True)
    assert (dry.removed, dry.temporaries, dry.bytes_freed) == ((), len(old), 10 * len(old))
    assert all(path.exists() for path in old)
    collected = chkpt.Store(directory).gc(keep_last=3)
    assert collected == dry
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in fresh + locks + theirs)
    assert len(chkpt.Store(directory).checkpoints()) == 6


def test_stages_limits_the_cleaning_of_leftovers_too(store: dict[str, Any]) -> None:
    directory = store["dir"]
    leftovers = [directory / "blob" / ".x.pkl.1.0123abcd.tmp", directory / ".probe.1.0123abcd"]
    for path in leftovers:
        path.write_bytes(b"t")
        age_off(path, 2 * HOUR)
    assert chkpt.Store(directory).gc(keep_last=3, stages=["table"]).temporaries == 0
    assert all(path.exists() for path in leftovers)
    assert chkpt.Store(directory).gc(keep_last=3, stages=["blob"]).temporaries == 1
    assert chkpt.Store(directory).gc(keep_last=3).temporaries == 1
    assert not any(path.exists() for path in leftovers)


def test_a_value_file_without_its_record_is_an_orphan_removed_after_an_hour(store: dict[str, Any]) -> None:
    directory, keys = store["dir"], store["keys"]
    value = directory / "blob" / f"{keys['blob', 3]}.pkl"
    (directory / "blob" / f"{keys['blob', 3]}.meta.json").unlink()  # a crash between the value and its record
    assert keys["blob", 3] not in {cp.key for cp in chkpt.Store(directory).checkpoints()}

    assert chkpt.Store(directory).gc(keep_last=3) == chkpt.Collected()  # a write may still be on its way
    assert value.exists()
    age_off(value, 2 * HOUR)
    size = value.stat().st_size
    collected = chkpt.Store(directory).gc(keep_last=3)
    assert collected == chkpt.Collected(bytes_freed=size)
    assert not value.exists()
    assert len(chkpt.Store(directory).checkpoints()) == 5


def replace_file(path: Path, text: str) -> None:
    """Put another file in `path`'s place, as any program that writes atomically does."""
    other = path.with_name("other")
    other.write_text(text)
    os.replace(other, path)


def test_a_damaged_record_still_counts_so_it_can_be_removed(store: dict[str, Any]) -> None:
    directory, keys = store["dir"], store["keys"]
    record = directory / "blob" / f"{keys['blob', 3]}.meta.json"
    replace_file(record, "not json")
    inline = directory / "table" / f"{keys['table', 3]}.json"
    replace_file(inline, '{"chkpt": {"key": "someone else"},\n"value": 1\n}\n')
    for path in (record, inline):
        age_off(path, 50 * DAY)

    listed = {cp.key: cp for cp in chkpt.Store(directory).checkpoints()}
    for stage, path in (("blob", record), ("table", inline)):
        cp = listed[keys[stage, 3]]
        assert cp.stage == stage  # the folder's name, since the record cannot say
        assert abs(cp.created - path.stat().st_mtime) < 1e-3
    assert [cp.key for cp in chkpt.Store(directory).checkpoints("blob")][-1] == keys["blob", 3]  # oldest now

    collected = chkpt.Store(directory).gc(keep_last=0, older_than="45d")
    assert names(collected.removed) == which(store, ("blob", 3), ("table", 3))
    assert not record.exists() and not (directory / "blob" / f"{keys['blob', 3]}.pkl").exists()
    assert not inline.exists()


def test_a_checkpoint_damaged_in_place_is_listed_as_stored_and_a_load_still_refuses_it(
    store: dict[str, Any],
) -> None:
    # A file changed where it is (same inode) is still the file its index entry describes: the listing shows
    # what was stored, without opening it; the load's checks are what catch the damage.
    directory, keys = store["dir"], store["keys"]
    before = {cp.key: cp for cp in chkpt.Store(directory).checkpoints()}
    inline = directory / "table" / f"{keys['table', 3]}.json"
    inline.write_text("not a checkpoint")
    assert {cp.key: cp for cp in chkpt.Store(directory).checkpoints()} == before
    with pytest.warns(chkpt.ChkptWarning, match=keys["table", 3]):
        assert (() >> table.bind(n=3))(config(directory, load=True)) == [0, 1, 2]
    assert calls == {"table": 1}
    collected = chkpt.Store(directory).gc(keep_last=0, stages=["table"])
    assert names(collected.removed) == which(store, ("table", 1), ("table", 2), ("table", 3))


def test_a_record_goes_before_its_value_so_a_crash_leaves_no_record_without_its_value(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, keys = store["dir"], store["keys"]
    order: list[str] = []
    real_unlink = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        order.append(os.path.basename(path))
        if str(path).endswith(".pkl"):
            raise PermissionError(13, "Permission denied")  # the process dies here, in effect
        real_unlink(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", unlink)
        with pytest.raises(chkpt.StoreError, match=r"\.pkl"):
            chkpt.Store(directory).gc(keep_last=0, stages=["blob"])
    # the first checkpoint's record went first (then gc "died" on its value file), the others were not reached
    files = [name for name in order if not name.endswith(".lock")]
    assert files[0].endswith(".meta.json") and files[1] == files[0].replace(".meta.json", ".pkl")
    first = files[0].removesuffix(".meta.json")
    left = {cp.key for cp in chkpt.Store(directory).checkpoints("blob")}
    assert first not in left and len(left) == 2  # no record vouches for a missing value
    assert pipeline(3)(config(directory, load=True)) == {0, 1, 2}
    # table loads; blob computes again over the orphan only if its checkpoint was the one gc began with
    assert calls == ({"blob": 1} if first == keys["blob", 3] else {})
    assert keys["blob", 3] in {cp.key for cp in chkpt.Store(directory).checkpoints("blob")}


def test_files_that_are_not_chkpts_are_never_touched(store: dict[str, Any]) -> None:
    directory = store["dir"]
    key = "0123456789abcdef0123456789abcdef"
    theirs = [
        directory / "README.md",
        directory / key,  # a key-named file, but not in a stage folder
        directory / "table" / "notes.json",
        directory / "table" / f"{key[:31]}.json",  # not a key: too short
        directory / "table" / f"{key.upper()}.json",
        directory / "table" / key,  # no extension
        directory / ".git" / f"{key}.json",  # a hidden folder is no stage folder
        directory / "My Data" / f"{key}.json",  # nor is one whose name chkpt would not make
        directory / "table" / "sub" / f"{key}.json",
    ]
    for path in theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
        age_off(path, 100 * DAY)
    link = directory / "blob" / f"{key}.json"
    link.symlink_to(directory / "README.md")

    collected = chkpt.Store(directory).gc(keep_last=0)
    assert len(collected.removed) == 6 and collected.temporaries == 0
    assert all(path.read_text() == "mine" for path in theirs)
    assert link.is_symlink()
    assert chkpt.Store(directory).checkpoints() == []


# --- the rule, for any ages ---------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ages=st.lists(st.integers(min_value=0, max_value=60), min_size=0, max_size=7),
    keep_last=st.integers(min_value=0, max_value=8),
    older_than=st.none() | st.integers(min_value=0, max_value=61),
    two_stages=st.booleans(),
)
def test_the_kept_set_is_the_newest_keep_last_plus_those_younger_than_older_than(
    ages: list[int], keep_last: int, older_than: int | None, two_stages: bool
) -> None:
    """Checkpoints `ages` days old (written by the store, so dated to the second); an age limit half a day past a
    whole number of days, so that seconds passing during the test cannot move a checkpoint across it."""
    now = time.time()
    limit = None if older_than is None else (older_than + 0.5) * DAY
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(folder, durable=False)
        checkpoints = []
        for i, age in enumerate(ages):
            stage = "even" if two_stages and i % 2 else "odd"
            key = hashlib.sha256(str(i).encode()).hexdigest()[:32]
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - age * DAY))
            fmt = "json" if i % 3 else "bytes"
            record = {"stage": stage, "created": created, "format": fmt, "codec": fmt}
            store.write(stage, key, fmt, codecs.get(fmt), b"v" * i if fmt == "bytes" else [i], record)
            checkpoints.append((stage, key, age))

        expected_kept = set()
        for stage in {stage for stage, _, _ in checkpoints}:
            ranked = sorted((c for c in checkpoints if c[0] == stage), key=lambda c: (c[2], c[1]))
            for rank, (_, key, age) in enumerate(ranked):
                if rank < keep_last or (limit is not None and age * DAY <= limit):
                    expected_kept.add((stage, key))

        collected = chkpt.Store(folder).gc(keep_last=keep_last, older_than=limit)
        kept = names(chkpt.Store(folder).checkpoints())
        assert kept == expected_kept
        assert names(collected.removed) == {(stage, key) for stage, key, _ in checkpoints} - expected_kept
        assert collected.bytes_freed == sum(cp.bytes for cp in collected.removed)
        on_disk = {p.name.partition(".")[0] for p in Path(folder).rglob("*") if p.is_file() and p.name != ".index"}
        assert on_disk == {key for _, key in kept}


def test_a_key_stored_again_after_gc_looked_is_kept(store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # gc looks, then removes each checkpoint under its key's lock; one whose marker is no longer the file gc saw
    # was stored again by a run meanwhile, so it is new and stays. Here a run stores n=3 again right after the
    # listing.
    directory = store["dir"]
    again = which(store, ("table", 3), ("blob", 3))
    before = names(chkpt.Store(directory).checkpoints())
    listed = chkpt.listing.LocalListing.scan

    def scan_then_a_run_stores(self: Any) -> Any:
        folders = listed(self)
        pipeline(3)(config(directory, load=False))
        return folders

    monkeypatch.setattr(chkpt.listing.LocalListing, "scan", scan_then_a_run_stores)
    collected = chkpt.Store(directory).gc(keep_last=0)
    monkeypatch.undo()
    assert names(collected.removed) == before - again
    assert names(chkpt.Store(directory).checkpoints()) == again
    calls.clear()
    assert pipeline(3)(config(directory, load=True)) == {0, 1, 2} and calls == {}


def test_keep_reachable_keeps_exactly_what_the_pipelines_would_load_today(store: dict[str, Any]) -> None:
    directory = store["dir"]
    # the 40-day-old checkpoints (n=1) are what pipeline(1) loads; the others go, young or not
    kept = which(store, ("table", 1), ("blob", 1))
    every = names(chkpt.Store(directory).checkpoints())
    planned = chkpt.Store(directory).gc(keep_reachable=pipeline(1), dry_run=True)
    assert names(planned.removed) == every - kept
    collected = chkpt.Store(directory).gc(keep_reachable=[pipeline(1)])
    assert names(collected.removed) == every - kept
    assert names(chkpt.Store(directory).checkpoints()) == kept
    assert pipeline(1)(config(directory, load=True)) == {0} and calls == {}


def test_keep_reachable_with_several_pipelines_a_config_and_keep_last(store: dict[str, Any]) -> None:
    directory = store["dir"]
    every = names(chkpt.Store(directory).checkpoints())
    # two pipelines keep theirs; keep_last=1 keeps each stage's newest (n=3) besides
    collected = chkpt.Store(directory).gc(
        keep_reachable=[(pipeline(1), chkpt.Config()), pipeline(2)], keep_last=1, dry_run=True
    )
    assert names(collected.removed) == set()
    assert every == which(store, *((stage, n) for stage in ("table", "blob") for n in (1, 2, 3)))
    # under another default format, table's key differs (its format is part of it), and so blob's (its input's
    # key is part of it): nothing is reachable
    other = chkpt.Store(directory).gc(keep_reachable=(pipeline(1), chkpt.Config(format="json-lossy")), dry_run=True)
    assert names(other.removed) == every
    with pytest.raises(chkpt.ConfigError, match="keep_reachable"):
        chkpt.Store(directory).gc(keep_reachable=["not a pipeline"])  # type: ignore[list-item]


def test_max_bytes_evicts_the_least_recently_loaded_first(
    store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A load notes its use to the hour (a use noted within the hour is left alone); every load notes it here, so
    # the test does not hang on the mount's own atime updates.
    monkeypatch.setattr(chkpt.store, "_USE_RESOLUTION_NS", 0)
    directory = store["dir"]
    listed = chkpt.Store(directory).checkpoints()
    assert chkpt.Store(directory).checkpoints() == listed  # listing is no use: it leaves the times alone
    # n=1 was stored first (and its record dated 40 days back): unused, it would go first; a load makes it the
    # most recently used
    used = {cp.key: cp.used for cp in listed}
    assert pipeline(1)(config(directory, load=True)) == {0}
    after = {cp.key: cp.used for cp in chkpt.Store(directory).checkpoints()}
    assert {key for key in used if after[key] != used[key]} == {store["keys"]["blob", 1]}  # only the target loads
    assert (() >> table.bind(n=1))(config(directory, load=True)) == [0]
    sizes = {cp.key: cp.bytes for cp in listed}
    keys = store["keys"]
    budget = sum(sizes[keys[stage, n]] for stage in ("table", "blob") for n in (1, 3))
    collected = chkpt.Store(directory).gc(max_bytes=budget)
    # over budget by the n=2 checkpoints, the least recently used (created 10 days ago, never loaded)
    assert names(collected.removed) == which(store, ("table", 2), ("blob", 2))
    assert sum(cp.bytes for cp in chkpt.Store(directory).checkpoints()) == budget
    # a budget of nothing keeps what keep_reachable protects, and with keep_last the newest of each stage
    rest = chkpt.Store(directory).gc(max_bytes=0, keep_reachable=pipeline(3), dry_run=True)
    assert names(rest.removed) == which(store, ("table", 1), ("blob", 1))
    newest = chkpt.Store(directory).gc(max_bytes=0, keep_last=1, dry_run=True)
    assert names(newest.removed) == which(store, ("table", 1), ("blob", 1))
    with pytest.raises(chkpt.ConfigError, match="max_bytes"):
        chkpt.Store(directory).gc(max_bytes=-1)


def test_a_load_notes_its_use_to_the_hour_and_keeps_the_modification_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(str(tmp_path))
    key = "a" * 32
    store.write("stage", key, "json", codecs.get("json"), {"x": 1}, {"stage": "stage"})
    marker = tmp_path / "stage" / f"{key}.json"
    modified = marker.stat().st_mtime_ns
    notes = tmp_path / "stage" / ".used"

    def listed_use() -> float:
        (cp,) = chkpt.Store(tmp_path).checkpoints()
        return cp.used

    created = listed_use()
    assert store.read("stage", key, "json")[0] == {"x": 1}
    assert not notes.exists() and listed_use() == created  # stored within the hour: not noted
    later = time.time_ns() + 2 * 3600 * 10**9
    monkeypatch.setattr(time, "time_ns", lambda: later)  # two hours on
    assert store.read("stage", key, "json")[0] == {"x": 1}
    assert notes.read_text() == f"{key} {later // 10**9}\n"
    assert listed_use() == later // 10**9
    assert marker.stat().st_mtime_ns == modified  # a note is no change of the checkpoint
    monkeypatch.undo()
    assert store.read("stage", key, "json")[0] == {"x": 1}
    assert notes.read_text().count("\n") == 1  # noted within the hour: a load costs no second write


# --- removing by name, and reading a record -------------------------------------------------------------------------


def test_remove_takes_a_stage_or_some_of_its_keys_under_their_locks(store: dict[str, Any]) -> None:
    directory, keys = store["dir"], store["keys"]
    catalog = chkpt.Store(directory)
    assert catalog.remove("table", [keys["table", 1]], dry_run=True).removed[0].key == keys["table", 1]
    assert len(catalog.checkpoints("table")) == 3
    with LocalStore(str(directory)).lock("table", keys["table", 2]):
        collected = catalog.remove("table", [keys["table", 1], keys["table", 2]])
    assert [cp.key for cp in collected.removed] == [keys["table", 1]]
    assert [cp.key for cp in collected.skipped_locked] == [keys["table", 2]]
    assert collected.bytes_freed == collected.removed[0].bytes
    assert {cp.key for cp in catalog.remove(blob).removed} == {keys["blob", n] for n in (1, 2, 3)}
    assert catalog.checkpoints("blob") == []
    with pytest.raises(chkpt.ConfigError, match=r"no checkpoint with key 'f+'"):
        catalog.remove("table", ["f" * 32])
    with pytest.raises(chkpt.ConfigError, match="list of keys"):
        catalog.remove("table", keys["table", 2])
    with pytest.raises(chkpt.ConfigError, match="nope"):
        catalog.remove("nope")
    assert len(catalog.checkpoints("table")) == 2  # nothing removed by the calls that failed


def test_record_reads_a_checkpoints_record_without_its_value(store: dict[str, Any]) -> None:
    directory, keys = store["dir"], store["keys"]
    catalog = chkpt.Store(directory)
    for cp in catalog.checkpoints():
        record = catalog.record(cp)
        assert record["key"] == cp.key and record["stage"] == cp.stage
        assert record["codec"] == ("json" if cp.stage == "table" else "pickle")
    (newest,) = [cp for cp in catalog.checkpoints("blob") if cp.key == keys["blob", 3]]
    Path(newest.files[0]).write_text("not json")
    with pytest.raises(chkpt.StoreError, match="no readable record"):
        catalog.record(newest)


def test_record_takes_a_listed_checkpoint_not_a_key(store: dict[str, Any]) -> None:
    catalog = chkpt.Store(store["dir"])
    (newest, *_) = catalog.checkpoints("table")
    assert catalog.record(newest)["stage"] == "table"
    with pytest.raises(chkpt.ConfigError, match=r"takes a Checkpoint from Store\.checkpoints\(\), not a str"):
        catalog.record(newest.key)  # type: ignore[arg-type]


def test_max_bytes_leaves_what_the_other_rules_remove_as_it_is(store: dict[str, Any]) -> None:
    directory = store["dir"]
    plenty = 2**40  # room for everything: max_bytes itself removes nothing
    for rules in ({"older_than": "1d"}, {"keep_reachable": pipeline(1)}, {"keep_last": 2}):
        alone = chkpt.Store(directory).gc(dry_run=True, **rules)
        with_budget = chkpt.Store(directory).gc(dry_run=True, max_bytes=plenty, **rules)
        assert names(with_budget.removed) == names(alone.removed) != set(), rules
    assert chkpt.Store(directory).gc(max_bytes=plenty, dry_run=True).removed == ()


def test_the_newest_is_told_apart_within_one_second(tmp_path: Path) -> None:
    # records are dated to the microsecond: two runs a moment apart have a newest, not a tie broken by key
    for trial in range(5):
        directory = tmp_path / str(trial)
        for n in (trial, trial + 1):
            pipeline(n)(config(directory))
        assert len(chkpt.Store(directory).checkpoints()) == 4
        collected = chkpt.Store(directory).gc(keep_last=1)
        assert len(collected.removed) == 2
        newest = pipeline(trial + 1).run(config(directory, load=True))
        assert {r.outcome for r in newest.records} == {"loaded"}


def test_a_folder_of_the_users_own_in_the_store_is_never_touched(store: dict[str, Any]) -> None:
    directory = store["dir"]
    own = directory / "downloads"
    own.mkdir()
    files = [own / f"{'ab' * 16}.csv", own / f"{'cd' * 16}.json", own / "README"]
    for path in files:
        path.write_text('{"not": "chkpt\'s"}')
        age_off(path, 2 * 3600)  # older than gc's hour for leftovers
    before = names(chkpt.Store(directory).checkpoints())
    assert all(stage != "downloads" for stage, _ in before)
    chkpt.Store(directory).gc(keep_last=0)
    assert all(path.exists() for path in files)
