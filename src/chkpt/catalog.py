"""What a checkpoint folder holds, and removing what is no longer wanted: `chkpt.Store(dir)`.

A run never deletes a checkpoint (an old key may become valid again when an edit is reverted), so a folder only
grows. `Store.checkpoints()` lists what it holds and `Store.gc()` removes all but the newest checkpoints of each
stage, or those older than an age, or both.

What counts as chkpt's, in `<dir>/<stage folder>/` and its fan-out subfolders `<2 hex>/` (the store's layout, see
store.py), besides the folder's index and use notes (index.py):

- a checkpoint: `<key>.meta.json` (its record, the marker) with its value file(s) `<key>.<ext>`; or, with no
  record beside it, `<key>.json`, the JSON layout whose first line is the record. `<key>` is 32 lowercase hex
  digits, as keys are. A damaged or foreign record still makes a checkpoint (dated by the marker's mtime): it can
  never load, and gc must be able to remove it.
- an orphan: `<key>.<ext>` with no marker, the value file of a two-file write that crashed before its record.
- a temporary file: `.<file name>.<pid>.<8 hex>.tmp`, left by a write that crashed (and `.probe.<pid>.<8 hex>` in
  `<dir>` itself, left by the writability check).

A checkpoint that the folder's index describes (its marker is the file the entry was written for, by inode) is
listed from the index, with no file opened and none's status asked for; any other, from its record and its files'
status. For what chkpt writes, the two agree (a property test holds them equal), so the index only saves time
(100,000 checkpoints listed in under a second); a file changed in place, by hand, keeps its entry and is listed
as it was stored (a load still checks it, and refuses it if damaged). `used` comes from the use notes. gc rewrites
the index and the notes to what it keeps.

Lock files live apart, in `<dir>/.locks/` (not a stage folder), and gc leaves them alone.

Everything else (a README, a folder of your own, a file named otherwise) is not chkpt's and is never touched, and
only folders whose names chkpt could have made (`store.folder_name` leaves them as they are) are stage folders.

Removing a checkpoint takes its key's lock (without waiting: a key whose lock a run holds, because it is
computing or storing that key, is skipped), so no run stores the key meanwhile; a key stored again since gc
looked is kept. It removes the marker first, then fsyncs the folder, then removes the value file: a crash in
between leaves an orphan, never a record that vouches for a missing value. A run that planned to load a
checkpoint that gc then removed finds it gone, warns and computes the stage again, as for any checkpoint that
disappears.

Orphans and temporary files are removed once their last write is an hour old (`LEFTOVER_AGE`): younger ones may
belong to a write in progress, in this process or on another machine sharing the folder.
"""

from __future__ import annotations

import contextlib
import gc
import operator
import os
import re
import time
from typing import NamedTuple

from . import index
from .errors import ConfigError, StoreError
from .stage import Stage
from .store import META, Damaged, LocalStore, _fsync_folder, folder_name, parse_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import timedelta
    from typing import Any, TypeAlias

    from .config import Config
    from .pipeline import Pipeline

    Reachable: TypeAlias = "Pipeline[Any] | tuple[Pipeline[Any], Config]"

LEFTOVER_AGE = 3600.0
"""Seconds after its last write before an orphan value file or a temporary file counts as left by a crash."""

_KEY_LENGTH = 32
_BY_KEY = operator.itemgetter(1)  # of a Checkpoint
_BY_CREATED = operator.itemgetter(2)
_HEX = frozenset("0123456789abcdef")
_RECORD_LIMIT = 16 * 1024 * 1024  # a first line longer than this is no record chkpt wrote
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE_FORMS = (
    "a datetime.timedelta, a number of seconds >= 0, or a string of one number and one unit: "
    "'45s', '90m', '12h', '30d', '2w', '1.5d'"
)


class _Frozen:
    """A value class whose fields, named in `_FIELDS` (in the order `repr` shows them), are set once by
    `_set` and compare, hash and print as a tuple of them."""

    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()

    def _set(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(self._FIELDS, self._fields(), strict=True))
        return f"{type(self).__name__}({shown})"


class _Fields(NamedTuple):
    stage: str
    key: str
    created: float
    bytes: int
    files: tuple[str, ...]
    used: float


class Checkpoint(_Fields):
    """One whole checkpoint in a store: a named tuple (frozen, compared and hashed by its fields), since a
    listing makes 100,000 of them at a time.

    `stage` is the stage's name from its record (the folder's name when the record cannot be read), `key` its key,
    `created` when it was stored (unix seconds: the record's `created`, else the marker's modification time),
    `bytes` the size of all its files, `files` their absolute paths, the marker (the file whose presence means
    a whole checkpoint) first, and `used` when it was last loaded, to the hour (unix seconds, from its folder's
    use notes; `created` if it was never loaded, or only within the hour after it was stored).
    """

    __slots__ = ()

    def __new__(
        cls, stage: str, key: str, created: float, bytes: int, files: Iterable[str], used: float | None = None
    ) -> Checkpoint:
        return tuple.__new__(cls, (stage, key, created, bytes, tuple(files), _later(created, used)))


def _later(created: float, used: float | None) -> float:
    """A checkpoint's `used`: its last noted load, unless it has none, or one from before it was stored again."""
    return created if used is None or used < created else used


class Collected(_Frozen):
    """What `Store.gc` removed, or with `dry_run=True` would remove (frozen).

    `removed`: the checkpoints removed. `bytes_freed`: the sizes of every file removed (those checkpoints' files,
    orphan value files and temporary files). `temporaries`: how many temporary files were removed.
    `skipped_locked`: checkpoints that were due to go but whose key a run holds, so they were kept.
    """

    __slots__ = ("bytes_freed", "removed", "skipped_locked", "temporaries")
    _FIELDS = ("removed", "bytes_freed", "temporaries", "skipped_locked")

    removed: tuple[Checkpoint, ...]
    bytes_freed: int
    temporaries: int
    skipped_locked: tuple[Checkpoint, ...]

    def __init__(
        self,
        removed: tuple[Checkpoint, ...] = (),
        bytes_freed: int = 0,
        temporaries: int = 0,
        skipped_locked: tuple[Checkpoint, ...] = (),
    ) -> None:
        self._set(
            removed=tuple(removed),
            bytes_freed=bytes_freed,
            temporaries=temporaries,
            skipped_locked=tuple(skipped_locked),
        )


class _Leftover:
    """An orphan value file or a temporary file: removable once LEFTOVER_AGE old and not under a held lock."""

    __slots__ = ("key", "modified", "path", "size", "temporary")

    def __init__(self, path: str, size: int, modified: float, key: str | None, temporary: bool) -> None:
        self.path = path
        self.size = size
        self.modified = modified
        self.key = key
        self.temporary = temporary


class _Folder:
    """What one stage folder holds: its checkpoints, each with the index entry that describes it (None when its
    record cannot be read, so its stage name is its folder's), and whether its index differs from that."""

    __slots__ = ("checkpoints", "indexed", "leftovers", "name", "path", "seen", "stale", "used")

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.checkpoints: list[tuple[Checkpoint, index.Entry | None]] = []
        self.leftovers: list[_Leftover] = []
        self.used: dict[str, float] = {}
        self.seen = (0, 0)  # bytes read of its index and of its use notes
        self.indexed = 0
        self.stale = False


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a listing builds its objects, which make none: it would otherwise
    run every few hundred of them, over all made so far, and take a third of the time of 100,000 checkpoints."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class Store:
    """A checkpoint folder, the same one `Config(dir=...)` names: what it holds, and removing what is not wanted.

    `Store(dir)` takes a path (str or os.PathLike) and reads nothing until asked; a folder that does not exist
    holds no checkpoints. `root` is its absolute path.
    """

    __slots__ = ("root",)

    def __init__(self, dir: str | os.PathLike[str]) -> None:
        if not isinstance(dir, (str, os.PathLike)) or isinstance(dir, bytes):
            raise ConfigError(f"Store(dir) takes a path (str or os.PathLike), got {type(dir).__name__}")
        path = os.fspath(dir)
        if not isinstance(path, str) or not path:
            raise ConfigError(f"Store(dir) takes a non-empty str path, got {path!r}")
        if "://" in path:
            scheme, _, rest = path.partition("://")
            if scheme not in ("file", "local"):
                raise ConfigError(
                    f"Store({path!r}): listing and gc work on a local folder for now, not on an fsspec URL; for "
                    "object storage, use the bucket's lifecycle rules meanwhile"
                )
            path = rest
        self.root = os.path.abspath(path)

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    def checkpoints(self, stage: str | Stage[..., Any] | None = None) -> list[Checkpoint]:
        """Every whole checkpoint in the folder (of one stage if `stage` is given), grouped by stage in name
        order, newest first within a stage (ties by key).

        A stage name that has no folder here is a ConfigError naming the stages the folder holds: a typo would
        otherwise look like an empty stage.
        """
        folders = self._scan()
        selected = None if stage is None else _selection([stage], folders, self.root, "checkpoints(stage=...)")
        return [cp for cp, _ in _ranked(folders, selected)]

    def gc(
        self,
        keep_last: int | None = None,
        older_than: timedelta | float | str | None = None,
        stages: Iterable[str | Stage[..., Any]] | None = None,
        dry_run: bool = False,
        keep_reachable: Reachable | Iterable[Reachable] | None = None,
        max_bytes: int | None = None,
    ) -> Collected:
        """Remove the checkpoints that are not wanted any more, and what crashed writes left behind.

        `keep_reachable`: a Pipeline, a (Pipeline, Config) pair (the config's `format` is part of keys), or a list
        of them: the checkpoints of every stage of those pipelines as their code and inputs are today (what a run
        with `load=True` may load, at any stage) are kept, whatever their age, and others go. With it,
        `keep_last` defaults to 0 (keep exactly those); given, it keeps that many newest of each stage besides.
        Without it, `keep_last` defaults to 1.

        `max_bytes`: once the rules above have removed what they remove, if the selected stages' checkpoints
        still hold more than this many bytes, the least recently used go first (by `Checkpoint.used`: the last
        load, else the creation), until they fit; those that `keep_reachable` or a given `keep_last` protects stay,
        even if that leaves them over. Given alone, it removes only what makes room (no `keep_last` default).

        In each stage, a checkpoint is removed when it is not among the `keep_last` newest of that stage and, if
        `older_than` is given, it was created longer than `older_than` ago. So `gc()` keeps the newest checkpoint
        of every stage, `gc(keep_last=0, older_than="30d")` removes whatever is older than 30 days, and
        `gc(keep_last=0)` empties the selected stages. "Newest" is per stage, not per parameter: a stage bound
        with ten parameter sets has ten checkpoints, and `keep_last=1` keeps one of them.

        `older_than`: a `datetime.timedelta`, seconds (a number >= 0), or a string of one number and one unit,
        s, m, h, d or w (`"45s"`, `"90m"`, `"12h"`, `"30d"`, `"2w"`, `"1.5d"`). `stages`: the names (or
        Stages) whose checkpoints to consider, None for all; a name with no folder here is a ConfigError that
        lists the stages the folder holds, since a typo would otherwise silently keep everything (a store with
        no stage folder at all, or none at all, has nothing to keep, and returns an empty Collected). Orphan value
        files and temporary files at least an hour old are removed in the selected stages' folders too (and the
        folder's own leftover probe files when `stages` is None). Lock files and files that are not chkpt's
        are never touched.

        A checkpoint whose key a running pipeline holds the lock of is kept and listed in `skipped_locked`.
        `dry_run=True` removes nothing and returns what would be removed. A file that cannot be removed raises
        StoreError naming it; what was removed before it stays removed.
        """
        reachable = None if keep_reachable is None else _reachable(keep_reachable)
        budget = None if max_bytes is None else _max_bytes(max_bytes)
        defaults = reachable is None and budget is None
        keep = _keep_last(keep_last) if keep_last is not None else (1 if defaults else 0)
        age = None if older_than is None else _seconds(older_than)
        folders = self._scan()
        selected = None if stages is None else _selection(stages, folders, self.root, "gc(stages=...)")
        now = time.time()
        doomed: set[tuple[str, str]] = set()
        if keep_last is not None or age is not None or budget is None:  # a budget alone removes only for room
            doomed = {(cp.stage, cp.key) for cp, _ in _due(folders, selected, keep, age, now)}
        if reachable is not None:
            doomed -= reachable
        if budget is not None:
            doomed |= _over_budget(folders, selected, doomed, budget, keep if keep_last is not None else 0, reachable)
        due: dict[str, list[Checkpoint]] = {}
        for cp, where in _ranked(folders, selected):
            if (cp.stage, cp.key) in doomed:
                due.setdefault(where, []).append(cp)
        removed: list[Checkpoint] = []
        skipped: list[Checkpoint] = []
        freed = 0
        temporaries = 0
        store = LocalStore(self.root)
        for folder in folders:
            if selected is not None and folder.name not in selected:
                continue
            going = []
            for cp in due.get(folder.name, ()):
                if store.lock(folder.name, cp.key).held_elsewhere():
                    skipped.append(cp)
                else:
                    going.append(cp)
            leftovers = [
                leftover
                for leftover in folder.leftovers
                if now - leftover.modified > LEFTOVER_AGE
                and not (leftover.key and store.lock(folder.name, leftover.key).held_elsewhere())
            ]
            if dry_run:
                removed += going
                freed += sum(cp.bytes for cp in going) + sum(leftover.size for leftover in leftovers)
                temporaries += sum(leftover.temporary for leftover in leftovers)
                continue
            gone = set()
            for cp in going:
                outcome = _remove_checkpoint(store, folder, cp, now)
                if outcome == "removed":
                    removed.append(cp)
                    gone.add(cp.key)
                    freed += cp.bytes
                elif outcome == "locked":
                    skipped.append(cp)
            if gone or folder.stale:
                _reindex(folder, gone)
            for leftover in leftovers:
                if _unlink(leftover.path):
                    freed += leftover.size
                    temporaries += leftover.temporary
        if stages is None:
            for probe in _probes(self.root):
                if now - probe.modified > LEFTOVER_AGE and (dry_run or _unlink(probe.path)):
                    freed += probe.size
                    temporaries += 1
        return Collected(tuple(removed), freed, temporaries, tuple(skipped))

    # --- reading the folder ---------------------------------------------------------------------------------------

    @_no_collection()
    def _scan(self) -> list[_Folder]:
        """Every stage folder, in name order, with its checkpoints and leftovers."""
        try:
            entries = sorted(os.scandir(self.root), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StoreError(f"cannot read checkpoint folder {self.root!r}: {exc.strerror or exc}") from None
        folders = []
        for entry in entries:
            if entry.name.startswith(".") or folder_name(entry.name) != entry.name or not entry.is_dir():
                continue
            folder = _Folder(entry.name, entry.path)
            _read_folder(folder)
            folders.append(folder)
        return folders


def _read_folder(folder: _Folder) -> None:
    """Fill `folder` with what its files are: each checkpoint from the folder's index where an entry describes its
    marker as it is, else from its record and file status."""
    known, index_seen = index.read(folder.path)
    folder.used, used_seen = index.uses(folder.path)
    folder.seen = (index_seen, used_seen)
    files: dict[str, os.DirEntry[str]] = {}
    listed = _list(folder.path, files)
    if listed != len(files):  # one name in two places (by hand, or a crash): no shortcut, so none is missed
        known = {}
    for key, entry in known.items():
        checkpoint = _indexed(entry, files, folder.path, folder.used.get(key))
        if checkpoint is not None:
            folder.checkpoints.append((checkpoint, entry))
    folder.indexed = len(folder.checkpoints)
    _read_files(folder, files.values())
    indexable = sum(entry is not None for _, entry in folder.checkpoints)
    folder.stale = folder.indexed != len(known) or folder.indexed != indexable


def _list(path: str, files: dict[str, os.DirEntry[str]], fanned: bool = False) -> int:
    """Put what a stage folder holds (and, unless `fanned`, what its fan-out subfolders hold) in `files` by name;
    returns how many entries there were."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return 0  # removed meanwhile
    except OSError as exc:
        raise StoreError(f"cannot read checkpoint folder {path!r}: {exc.strerror or exc}") from None
    if fanned:
        files.update({entry.name: entry for entry in entries})
        return len(entries)
    count = 0
    for entry in entries:
        name = entry.name
        if len(name) == 2 and _HEX.issuperset(name) and entry.is_dir(follow_symlinks=False):
            count += _list(entry.path, files, fanned=True)
        else:
            files[name] = entry
            count += 1
    return count


def _indexed(
    entry: index.Entry, files: dict[str, os.DirEntry[str]], folder: str, used: float | None
) -> Checkpoint | None:
    """The checkpoint an index entry describes, taking its files out of `files`, if its marker is the file the
    entry was written for, where a store looks for it (in `folder` or the subfolder of its key's first two
    digits); no file opened, none's status asked for."""
    key = entry[0]
    inline = len(entry) == 5
    name = f"{key}.json" if inline else f"{key}.{META}"
    marker = files.get(name)
    if (
        marker is None
        or marker.inode() != entry[1]
        or not index.described(entry)
        or (marker.path != f"{folder}{os.sep}{name}" and marker.path != f"{folder}{os.sep}{key[:2]}{os.sep}{name}")
    ):
        return None
    del files[name]
    created = float(entry[4])
    used = created if used is None or used < created else used
    value = None if inline else files.get(f"{key}.{entry[5]}")
    if value is not None and os.path.dirname(value.path) == os.path.dirname(marker.path):
        del files[value.name]
    else:
        value = None
    # Made as a tuple (Checkpoint.__new__ is Python code): a listing makes 100,000 of them.
    if value is None:
        return tuple.__new__(Checkpoint, (entry[3], key, created, entry[2], (marker.path,), used))
    return tuple.__new__(Checkpoint, (entry[3], key, created, entry[2] + entry[6], (marker.path, value.path), used))


def _read_files(folder: _Folder, entries: Iterable[os.DirEntry[str]]) -> None:
    """Add to `folder` what the files `entries` are: checkpoints read from their records, orphan value files,
    temporary files; what is none of these is not chkpt's and is left out."""
    by_key: dict[str, dict[str, os.DirEntry[str]]] = {}
    for entry in entries:
        name = entry.name
        if not entry.is_file(follow_symlinks=False):
            continue
        if name[0] == ".":
            key = _temporary_key(name)
            if key is not None:
                stat = _stat(entry)
                if stat is not None:
                    folder.leftovers.append(_Leftover(entry.path, stat.st_size, stat.st_mtime, key or None, True))
            continue
        stem, _, extension = name.partition(".")
        if len(stem) == _KEY_LENGTH and extension and _HEX.issuperset(stem) and _in_place(entry, stem, folder.path):
            by_key.setdefault(stem, {})[extension] = entry
    for key, files in by_key.items():
        if META in files:  # a two-file checkpoint: its record, then its value file
            marker, inline = files.pop(META), False
        elif "json" in files:  # the JSON layout, one file
            marker, inline = files.pop("json"), True
        else:  # a value file whose record was never written: an orphan
            for entry in files.values():
                stat = _stat(entry)
                if stat is not None:
                    folder.leftovers.append(_Leftover(entry.path, stat.st_size, stat.st_mtime, key, False))
            continue
        found = _recorded(folder, key, marker, files, inline)
        if found is not None:
            folder.checkpoints.append(found)


def _in_place(entry: os.DirEntry[str], key: str, folder: str) -> bool:
    """Whether a file of a key is where a store looks for it: in its stage folder, or in the fan-out subfolder of
    its key's first two digits (a file in another subfolder is not chkpt's)."""
    parent = os.path.dirname(entry.path)
    return parent == folder or os.path.basename(parent) == key[:2]


def _recorded(
    folder: _Folder, key: str, marker: os.DirEntry[str], files: dict[str, os.DirEntry[str]], inline: bool
) -> tuple[Checkpoint, index.Entry | None] | None:
    """A checkpoint as its record and its files' status describe it, with the index entry that would describe it
    (None when its record cannot be read: it is then listed under its folder's name, and dated by its marker);
    None if it was removed since the folder was listed."""
    status = _stat(marker)
    if status is None:
        return None
    values = [(entry, found) for _, entry in sorted(files.items()) if (found := _stat(entry)) is not None]
    record = _read_record(marker.path, key, inline)
    stage = record.get("stage") if record is not None else None
    created = index.created_seconds(record.get("created")) if record is not None else None
    named = isinstance(stage, str) and bool(stage)
    checkpoint = Checkpoint(
        stage if isinstance(stage, str) and stage else folder.name,
        key,
        status.st_mtime if created is None else created,
        status.st_size + sum(value_status.st_size for _, value_status in values),
        (marker.path, *(entry.path for entry, _ in values)),
        folder.used.get(key),
    )
    if not named:
        return checkpoint, None
    value = None if inline or not values else (values[0][0].name.partition(".")[2], values[0][1].st_size)
    return checkpoint, index.entry(key, status.st_ino, status.st_size, checkpoint.stage, checkpoint.created, value)


def _temporary_key(name: str) -> str | None:
    """For a temporary file's name (`.<file>.<pid>.<8 hex>.tmp`), the key of the file it was to become, or ""
    when that file is not a key's; None when the name is no temporary file of chkpt's."""
    if not name.endswith(".tmp"):
        return None
    final, _, rest = name[1:-4].rpartition(".")
    final, _, pid = final.rpartition(".")
    if not (final and pid.isdigit() and len(rest) == 8 and _HEX.issuperset(rest)):
        return None
    stem = final.partition(".")[0]
    return stem if len(stem) == _KEY_LENGTH and _HEX.issuperset(stem) else ""


def _probes(root: str) -> list[_Leftover]:
    """The files `LocalStore.ensure_writable` makes and removes at once (`.probe.<pid>.<8 hex>`), left by a crash."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    probes = []
    for entry in entries:
        pid, _, rest = entry.name.removeprefix(".probe.").partition(".")
        if (
            entry.name.startswith(".probe.")
            and pid.isdigit()
            and len(rest) == 8
            and _HEX.issuperset(rest)
            and entry.is_file(follow_symlinks=False)
        ):
            stat = _stat(entry)
            if stat is not None:
                probes.append(_Leftover(entry.path, stat.st_size, stat.st_mtime, None, True))
    return probes


def _stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    """A file's status, or None for a file removed since the folder was listed."""
    try:
        return entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {entry.path!r}: {exc.strerror or exc}") from None


def _read_record(path: str, key: str, inline: bool) -> dict[str, Any] | None:
    """A checkpoint's record, or None when it is not one chkpt wrote for this key (damaged, or foreign)."""
    try:
        with open(path, "rb") as file:
            data = file.readline(_RECORD_LIMIT) if inline else file.read(_RECORD_LIMIT)
    except OSError:
        return None
    try:
        return parse_record(data, key, inline)
    except Damaged:
        return None


# --- choosing ---------------------------------------------------------------------------------------------------


@_no_collection()
def _ranked(folders: list[_Folder], selected: dict[str, set[str]] | None) -> list[tuple[Checkpoint, str]]:
    """The selected checkpoints with their folder's name, by stage, newest first, ties by key.

    `selected` maps a folder to the stage names asked for in it (None: everything). A checkpoint is selected by
    its record's stage name; one whose record cannot be read, by its folder.
    """
    by_stage: dict[str, list[Checkpoint]] = {}
    where: dict[int, str] = {}
    for folder in folders:
        if selected is not None and folder.name not in selected:
            continue
        for cp, entry in folder.checkpoints:
            if selected is None or entry is None or cp.stage in selected[folder.name]:
                group = by_stage.get(cp.stage)
                if group is None:
                    group = by_stage[cp.stage] = []
                group.append(cp)
                where[id(cp)] = folder.name
    ranked: list[tuple[Checkpoint, str]] = []
    for stage in sorted(by_stage):
        group = by_stage[stage]
        # Two stable sorts of one field each, the last the first in rank: faster than one on a tuple per item.
        group.sort(key=_BY_KEY)
        group.sort(key=_BY_CREATED, reverse=True)
        ranked += [(cp, where[id(cp)]) for cp in group]
    return ranked


def _over_budget(
    folders: list[_Folder],
    selected: dict[str, set[str]] | None,
    going: set[tuple[str, str]],
    budget: int,
    keep: int,
    reachable: set[tuple[str, str]] | None,
) -> set[tuple[str, str]]:
    """What else must go, least recently used first, for what stays to fit in `budget` bytes; never the `keep`
    newest of a stage nor a reachable checkpoint."""
    staying: list[Checkpoint] = []
    protected: set[tuple[str, str]] = set(reachable or ())
    rank: dict[str, int] = {}
    for cp, _ in _ranked(folders, selected):
        if (cp.stage, cp.key) in going:
            continue
        staying.append(cp)
        rank[cp.stage] = rank.get(cp.stage, -1) + 1
        if rank[cp.stage] < keep:
            protected.add((cp.stage, cp.key))
    total = sum(cp.bytes for cp in staying)
    more: set[tuple[str, str]] = set()
    for cp in sorted(staying, key=lambda cp: (cp.used, cp.created, cp.key)):
        if total <= budget:
            break
        if (cp.stage, cp.key) not in protected:
            more.add((cp.stage, cp.key))
            total -= cp.bytes
    return more


def _max_bytes(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"gc(max_bytes=...) takes a number of bytes, an int >= 0; got {value!r}")
    return value


def _reachable(given: object) -> set[tuple[str, str]]:
    """The (stage name, key) of every node of the pipelines given, planned as a run would plan them today."""
    from .config import Config
    from .pipeline import Pipeline
    from .plan import make_plan

    items: list[object] = [given]
    if not isinstance(given, (Pipeline, tuple)):
        try:
            items = list(given)  # type: ignore[call-overload]
        except TypeError:
            pass
    found: set[tuple[str, str]] = set()
    for item in items:
        pipeline, config = item if isinstance(item, tuple) and len(item) == 2 else (item, Config())
        if not isinstance(pipeline, Pipeline) or not isinstance(config, Config):
            raise ConfigError(
                "gc(keep_reachable=...) takes a Pipeline, a (Pipeline, Config) pair, or a list of them; got "
                f"{item!r:.80}"
            )
        plan = make_plan(pipeline, Config(load=False, store=False, format=config.format), None)
        found.update((step.stage.name, step.key) for step in plan.steps)
    return found


def _due(
    folders: list[_Folder], selected: dict[str, set[str]] | None, keep: int, age: float | None, now: float
) -> list[tuple[Checkpoint, str]]:
    """The checkpoints to remove: past the `keep` newest of their stage and, with an age, older than it."""
    due = []
    position: dict[str, int] = {}
    for cp, folder in _ranked(folders, selected):
        rank = position[cp.stage] = position.get(cp.stage, -1) + 1
        if rank >= keep and (age is None or now - cp.created > age):
            due.append((cp, folder))
    return due


def _selection(names: Iterable[object], folders: list[_Folder], root: str, call: str) -> dict[str, set[str]]:
    """The folders of the stages named, each with the names asked for in it; every name must have a folder here
    (unless the store holds no stage folder at all, so has nothing a typo could keep)."""
    if isinstance(names, (str, bytes, Stage)):
        raise ConfigError(f"{call} takes a list of stage names or Stages; wrap one stage: [{names!r}]")
    try:
        items = list(names)
    except TypeError:
        raise ConfigError(f"{call} takes a list of stage names or Stages, got {type(names).__name__}") from None
    present = {folder.name for folder in folders}
    selected: dict[str, set[str]] = {}
    unknown = []
    for item in items:
        name = item.name if isinstance(item, Stage) else item
        if not isinstance(name, str):
            raise ConfigError(f"{call} takes stage names (str) or Stages, got {type(item).__name__}: {item!r}")
        if folder_name(name) in present:
            selected.setdefault(folder_name(name), set()).add(name)
        else:
            unknown.append(name)
    if unknown and folders:
        held = sorted({cp.stage for folder in folders for cp, _ in folder.checkpoints} | present)
        raise ConfigError(
            f"{call} names {sorted(unknown)}, which {'has' if len(unknown) == 1 else 'have'} no checkpoints in "
            f"{root!r}; the stages there are {held}"
        )
    return selected


def _keep_last(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"gc(keep_last=...) takes an int >= 0 (how many checkpoints to keep per stage), got {value!r}"
        )
    return value


def _seconds(value: object) -> float:
    """`older_than` in seconds (see Store.gc), or a ConfigError that shows the value and the accepted forms."""
    import datetime  # only when gc is asked for an age: `import chkpt` does not load it
    import math

    seconds: float | None = None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhdw])", value.strip(), re.ASCII)
        if match is not None:
            seconds = float(match[1]) * _UNITS[match[2]]
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"gc(older_than=...) takes {_AGE_FORMS}; got {value!r}")
    return seconds


def _remove_checkpoint(store: LocalStore, folder: _Folder, cp: Checkpoint, scanned: float) -> str:
    """Remove one checkpoint while holding its key's lock, so that no run stores that key meanwhile: its marker
    first, made durable, then its value files (a crash leaves an orphan, never a record without its value).
    Returns "removed", "locked" (a run holds the key), or "kept" (gone already, or stored again since the scan).
    """
    lock = store.lock(folder.name, cp.key)
    if not lock.enter_if_free():
        return "locked"
    try:
        try:
            if os.stat(cp.files[0]).st_mtime >= scanned:
                return "kept"  # a run stored this key again after gc looked: it is new, not old
        except FileNotFoundError:
            return "kept"
        if not _unlink(cp.files[0]):
            return "kept"
        _fsync_folder(os.path.dirname(cp.files[0]))
        for path in cp.files[1:]:
            _unlink(path)
        return "removed"
    finally:
        lock.__exit__(None, None, None)


def _reindex(folder: _Folder, gone: set[str]) -> None:
    """Rewrite a folder's index to the checkpoints it keeps, oldest first as a store appends them."""
    kept = [(cp, entry) for cp, entry in folder.checkpoints if entry is not None and cp.key not in gone]
    kept.sort(key=lambda item: (item[0].created, item[0].key))
    used = {cp.key: folder.used[cp.key] for cp, _ in kept if cp.key in folder.used}
    index.rewrite(folder.path, (entry for _, entry in kept), used, folder.seen)


def _unlink(path: str) -> bool:
    """Remove a file; False when it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot remove {path!r}: {exc.strerror or exc}") from None
    return True
