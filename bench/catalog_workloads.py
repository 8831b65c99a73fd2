"""What the "Stores" benchmark's children run for big stores (the issue's target: "a store with 1,000,000
checkpoints stays usable, and listing 100,000 of them takes under a second locally"): filling a store with many
checkpoints, listing it (`chkpt.Store(dir).checkpoints()`, `gc(dry_run=True)`) next to walking its folder, and a
run's operations on a store of 1,000,000 checkpoints next to the same on a store of one.

bench/run.py starts each child as `python -c "...; import catalog_workloads; catalog_workloads.main()" NAME JSON`;
the child calls NAME(**args) and prints its result as one JSON line. Only the standard library is imported at the
top: chkpt is imported inside the functions, before any timer.

A store here holds one stage (STAGE) of JSON checkpoints: key i is sha256(str(i)) cut to 32 lowercase hex digits,
its value is i, and it is written as a run writes it, `LocalStore(root, durable=False).write(STAGE, key, "json",
codec, i, {"stage": STAGE, "created": <now, %Y-%m-%dT%H:%M:%SZ>})` (atomic; no fsync, which would only make filling
slower). `build` fills an empty folder with `workers` processes at once, each writing its share of the keys in
order; like any writer, each decides from the stage folder's index when new keys go to fan-out subfolders. The
store of 1,000,000 takes minutes to fill, so `big_store` keeps it between runs (see there).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workloads import serve  # the child entry point

BENCH = Path(__file__).resolve().parent
STAGE = "listed"  # the one stage of the stores made here (its folder has the same name)
FORMAT = "json"
BUILDER = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import catalog_workloads; catalog_workloads.builder()"
LAYOUT = 1  # what `build` writes; bump it when that changes, so that a kept store is filled again
BUILT = "built.json"  # in a kept store's root: its stamp, written once it is whole

clock = time.perf_counter


def main() -> None:
    serve(globals())


def key_of(i: int, kind: str = "") -> str:
    """The key of checkpoint i of a store (kind ""), or of a key of another kind (absent, new) that no store
    built here holds."""
    return hashlib.sha256(f"{kind}{i}".encode()).hexdigest()[:32]


def _record() -> dict[str, Any]:
    return {"stage": STAGE, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _layout(root: str) -> dict[str, int]:
    """How a store's stage folder is laid out: checkpoint files in it, fan-out subfolders, files in those."""
    flat = subfolders = fanned = 0
    with os.scandir(Path(root) / STAGE) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subfolders += 1
                fanned += sum(1 for _ in os.scandir(entry.path))
            elif not entry.name.startswith("."):
                flat += 1
    return {"flat": flat, "subfolders": subfolders, "fanned": fanned}


# --- filling a store ----------------------------------------------------------------------------------------------


def builder() -> None:
    """One writer of `build`: `python -c BUILDER ROOT START STOP` writes checkpoints START to STOP - 1."""
    root, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from chkpt import codecs
    from chkpt.store import LocalStore

    store, codec = LocalStore(root, durable=False), codecs.get(FORMAT)
    for i in range(start, stop):
        store.write(STAGE, key_of(i), FORMAT, codec, i, _record())


def build(root: str, count: int, workers: int, drop_index: bool = False) -> dict[str, Any]:
    """Fill the empty folder `root` with checkpoints 0 to count - 1, `workers` processes at once, each writing a
    contiguous share in order. With `drop_index`, the stage folder's index is deleted afterwards, as if an older
    chkpt had written the store. Returns the seconds it took and the folder's layout."""
    started = clock()
    bounds = [count * w // workers for w in range(workers + 1)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, root, str(start), str(stop)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start, stop in itertools.pairwise(bounds)
    ]
    failures = []
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            failures.append((stderr.strip().splitlines() or [f"exit status {process.returncode}"])[-1][:70])
    if failures:
        raise RuntimeError(f"a writer failed: {failures[0]}")
    seconds = clock() - started
    if drop_index:
        from chkpt import index

        (Path(root) / STAGE / index.NAME).unlink()
    return {"seconds": seconds, "layout": _layout(root)}


def _stamp(count: int) -> dict[str, Any]:
    """What a kept store must match to be used again: this module's LAYOUT, chkpt's version and fan-out size,
    and the files, index entry and record that one checkpoint written now makes (names with the key left out,
    the entry's field types, the record's field names), so that a change of the store's layout fills it again."""
    import chkpt
    from chkpt import codecs, index
    from chkpt.store import FANOUT_AT, LocalStore, parse_record

    with tempfile.TemporaryDirectory() as probe:
        key = key_of(0)
        LocalStore(probe, durable=False).write(STAGE, key, FORMAT, codecs.get(FORMAT), 0, _record())
        files = sorted(path.relative_to(probe).as_posix().replace(key, "<key>") for path in Path(probe).rglob("*"))
        entry = json.loads((Path(probe) / STAGE / index.NAME).read_bytes())
        marker = Path(probe) / STAGE / f"{key}.json"
        record = parse_record(marker.read_bytes(), key, inline=True)
    return {
        "layout": LAYOUT,
        "chkpt": chkpt.__version__,
        "fanout_at": FANOUT_AT,
        "count": count,
        "files": files,
        "entry": [type(field).__name__ for field in entry],
        "record": sorted(record),
    }


def _index_sizes(root: str) -> list[int]:
    """The sizes of the stage folder's index and use notes (0 for one that does not exist)."""
    from chkpt import index

    folder = Path(root) / STAGE
    return [(folder / name).stat().st_size if (folder / name).exists() else 0 for name in (index.NAME, index.USED)]


def big_store(root: str, count: int, workers: int) -> dict[str, Any]:
    """The store of `count` checkpoints in `root`, kept between runs: used as it is if its stamp file (BUILT,
    written once it was whole) matches `_stamp` and its index and use notes have the sizes they had then (a
    measurement that changed it and did not finish putting it back shows there), else removed and filled again
    by `build`. Returns whether it was filled now, the seconds filling took (now, or when it was), its layout."""
    stamp = _stamp(count)
    marker = Path(root) / BUILT
    try:
        kept = json.loads(marker.read_text())
    except (OSError, ValueError):
        kept = None
    if kept is not None and kept["stamp"] == stamp and kept["sizes"] == _index_sizes(root):
        return {"built": False, "seconds": kept["seconds"], "layout": kept["layout"]}
    started = clock()
    shutil.rmtree(root, ignore_errors=True)
    removed = clock() - started
    Path(root).mkdir(parents=True)
    filled = build(root, count, workers)
    marker.write_text(json.dumps({"stamp": stamp, "sizes": _index_sizes(root), **filled}))
    return {"built": True, "removed": removed, **filled}


# --- listing ------------------------------------------------------------------------------------------------------


def _walk(path: str, stat: bool) -> int:
    """The floor of a listing: every file under `path`, by os.scandir (the type of each entry comes with it), and
    with `stat` an os.stat of each file too; returns how many files there are."""
    files = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                files += _walk(entry.path, stat)
            else:
                if stat:
                    entry.stat(follow_symlinks=False)
                files += 1
    return files


def _timed(task: Callable[[], Any]) -> tuple[float, Any]:
    """The seconds `task()` took and what it returned (freed by the caller, after the timer)."""
    started = clock()
    result = task()
    return clock() - started, result


def listing(root: str, count: int, rounds: int, bare: str | None = None, collect: bool = True) -> dict[str, Any]:
    """Listing the store of `count` checkpoints in `root`, in `rounds` rounds (each starting one task further on),
    the fastest of each task kept: "walk" and "stat" (the floors, `_walk`), "list" (`Store(root).checkpoints()`)
    and, with `collect`, "gc" (`Store(root).gc(dry_run=True)`: keep_last=1, so it plans to remove count - 1).
    Checked: the listing has `count` checkpoints, gc plans `count - 1` removals. With `bare`, the same listing of
    that store (one made the same way, without its index) is timed once, at the end: "bare"."""
    import chkpt

    store = chkpt.Store(root)
    tasks: dict[str, tuple[Callable[[], Any], Callable[[Any], int], int | None]] = {
        "walk": (lambda: _walk(root, stat=False), int, None),
        "stat": (lambda: _walk(root, stat=True), int, None),
        "list": (store.checkpoints, len, count),
    }
    if collect:
        tasks["gc"] = (lambda: store.gc(dry_run=True), lambda collected: len(collected.removed), count - 1)
    times: dict[str, list[float]] = {name: [] for name in tasks}
    found: dict[str, int] = {}
    names = list(tasks)
    for round in range(rounds):
        shift = round % len(names)
        for name in names[shift:] + names[:shift]:
            task, size, expected = tasks[name]
            seconds, result = _timed(task)
            found[name] = size(result)
            del result
            if expected is not None and found[name] != expected:
                raise RuntimeError(f"{name}: {found[name]} checkpoints, expected {expected}")
            times[name].append(seconds)
    measured: dict[str, Any] = {name: {"seconds": min(times[name]), "all": times[name]} for name in tasks}
    measured["files"] = found["walk"]
    import resource  # Unix only, as is this bench's fan-out of writers

    measured["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: in KiB
    measured["layout"] = _layout(root)
    if bare is not None:
        seconds, result = _timed(chkpt.Store(bare).checkpoints)
        if len(result) != count:
            raise RuntimeError(f"bare: {len(result)} checkpoints, expected {count}")
        del result
        measured["bare"] = {"seconds": seconds}
    return measured


# --- a run's operations on a big store and on a store of one -------------------------------------------------------

OPERATIONS = ("exists", "absent", "read", "write")


def _timed_each(task: Callable[[Any], Any], items: list[Any]) -> tuple[float, list[Any]]:
    """The seconds `task` took over every item, and what it returned for each."""
    started = clock()
    results = [task(item) for item in items]
    return clock() - started, results


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _touch(path: str) -> None:
    """Set a file's status-change time to now (and nothing else), so that a load notes no use of it."""
    status = os.stat(path)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


def operations(big: str, small: str, count: int, ops: int, rounds: int) -> dict[str, Any]:
    """A run's operations, per operation, on the store of `count` checkpoints in `big` (as `big_store` left it)
    and on a store of one checkpoint, made here in `small`, each next to a floor: the fastest of `rounds` rounds
    of `ops` operations on distinct keys (on the store of one, its one key wherever a present key is needed),
    both stores in each round, in turns (see `_round`). Also returns how many of the keys were in subfolders."""
    from chkpt import codecs
    from chkpt.store import LocalStore

    LocalStore(small, durable=False).write(STAGE, key_of(0), FORMAT, codecs.get(FORMAT), 0, _record())
    stores = {"big": (LocalStore(big), count), "small": (LocalStore(small), 1)}
    draw = random.Random(20240601)
    times: dict[str, list[float]] = {}
    fanned: dict[str, list[int]] = {}
    for round in range(rounds):
        for size in list(stores) if round % 2 == 0 else list(stores)[::-1]:
            store, held = stores[size]
            measured, found = _round(store, held, round, ops, draw)
            for name, seconds in measured.items():
                times.setdefault(f"{size}/{name}", []).append(seconds)
            for name, keys in found.items():
                fanned.setdefault(f"{size}/{name}", []).append(keys)
    result: dict[str, Any] = {
        name: {"per_op": min(seconds) / ops, "all": [s / ops for s in seconds]} for name, seconds in times.items()
    }
    result["fanned"] = {name: sum(counts) / len(counts) for name, counts in fanned.items()}
    return result


def _round(store: Any, held: int, round: int, ops: int, draw: random.Random) -> tuple[dict[str, float], dict[str, int]]:
    """One round of `operations` on one store of `held` checkpoints: the seconds each operation and floor took
    for `ops` keys, and how many of the keys of "exists" and "read" were in subfolders.

    Keys present on the big store are drawn at random, a new draw for each operation and floor in each round. The
    floors go to a file by its path, found untimed from a listing of the stage folder (a store of a folder that
    has fanned out looks in the key's fan-out subfolder first, then in the stage folder). "exists": store.exists of
    a present key; floor:
    os.path.isfile of its path. "absent": store.exists of a key that no store holds; floor: os.path.isfile of one
    absent path, in the stage folder. "read": store.read of a present key, its value checked; floor: open + read of
    its file. Before both, untimed, each file read is touched (its status-change time set to now), so that no
    read notes a use (a load of a checkpoint stored or noted more than an hour ago appends a line to the folder's
    use notes, on either store; the store of one is new, so it never would); checked. Each operation runs before
    its floor in even rounds, after it in odd ones. "write": store.write of a new key, durable (fsync, as a run
    stores); no floor. Afterwards the written checkpoints are removed, and the index and use notes cut back to
    their sizes before the round, so the big store is left as it was."""
    from chkpt import codecs, index

    codec = codecs.get(FORMAT)
    drawn = draw.sample(range(held), 4 * ops) if held >= 4 * ops else [0] * (4 * ops)
    exists, exists_floor, read, read_floor = (drawn[k * ops : (k + 1) * ops] for k in range(4))
    absent = [key_of(i, f"absent-{round}-") for i in range(2 * ops)]
    new = [key_of(i, f"new-{round}-") for i in range(ops)]
    folder = store.folder(STAGE)
    flat = {entry.name for entry in os.scandir(folder)}

    def path(i: int) -> str:
        name = f"{key_of(i)}.json"
        return os.path.join(folder, name) if name in flat else os.path.join(folder, name[:2], name)

    def found(key: str) -> bool:
        return bool(store.exists(STAGE, key, FORMAT))

    fanned = {
        name: sum(f"{key_of(i)}.json" not in flat for i in keys) for name, keys in (("exists", exists), ("read", read))
    }
    notes = Path(folder, index.USED)
    sizes = [Path(folder, index.NAME), notes]
    before = [file.stat().st_size if file.exists() else 0 for file in sizes]
    for i in read + read_floor:
        _touch(path(i))
    tasks: dict[str, tuple[Callable[[Any], Any], list[Any], Callable[[list[Any]], bool]]] = {
        "exists": (found, [key_of(i) for i in exists], all),
        "exists/floor": (os.path.isfile, [path(i) for i in exists_floor], all),
        "absent": (found, absent[:ops], lambda answers: not any(answers)),
        "absent/floor": (
            os.path.isfile,
            [os.path.join(folder, f"{key}.json") for key in absent[ops:]],
            lambda answers: not any(answers),
        ),
        "read": (lambda key: store.read(STAGE, key, FORMAT)[0], [key_of(i) for i in read], read.__eq__),
        "read/floor": (_read_bytes, [path(i) for i in read_floor], all),
    }
    times: dict[str, float] = {}
    for op in ("exists", "absent", "read"):
        for name in (op, f"{op}/floor") if round % 2 == 0 else (f"{op}/floor", op):
            task, items, right = tasks[name]
            times[name], results = _timed_each(task, items)
            if not right(results):
                raise RuntimeError(f"{name}: a wrong answer")
    if (notes.stat().st_size if notes.exists() else 0) != before[1]:
        raise RuntimeError("a read noted a use")
    written = 0
    try:
        times["write"], _ = _timed_each(lambda key: store.write(STAGE, key, FORMAT, codec, 0, _record()), new)
    finally:
        for key in new:
            marker = store.marker(STAGE, key, FORMAT)
            if os.path.exists(marker):
                written += 1
                os.unlink(marker)
        for file, length in zip(sizes, before, strict=True):
            if file.exists() and file.stat().st_size != length:
                if length:
                    os.truncate(file, length)
                else:
                    file.unlink()
    if written != ops:
        raise RuntimeError(f"{written} of {ops} written checkpoints found")
    return times, fanned


if __name__ == "__main__":
    main()
