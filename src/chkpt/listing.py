"""What a checkpoint store holds, file by file: its checkpoints (`Checkpoint`), and what crashed writes left
behind; and removing one of them safely. `catalog.Store` decides what to keep; this module finds and removes.

What counts as chkpt's, in `<dir>/<stage folder>/` and its fan-out subfolders `<2 hex>/` (the store's layout, see
store.py), besides the folder's index and use notes (index.py):

- a checkpoint: `<key>.meta.json` (its record, the marker) with its value file(s) `<key>.<ext>`; or, with no
  record beside it, `<key>.json`, the JSON layout whose first line is the record. `<key>` is 32 lowercase hex
  digits, as keys are. A damaged or foreign record still makes a checkpoint (dated by the marker's modification
  time): it can never load, and gc must be able to remove it.
- an orphan: `<key>.<ext>` with no marker, the value file of a two-file write that crashed before its record.
- a temporary file: `.<file name>.<pid>.<8 hex>.tmp`, left by a write that crashed (and `.probe.<pid>.<8 hex>` in
  `<dir>` itself, left by the writability check).

Lock files live apart, in `<dir>/.locks/` (not a stage folder), and are never listed. Everything else (a README, a
folder of your own, a file named otherwise, a file in the wrong fan-out subfolder) is not chkpt's and is never
touched, and only folders whose names chkpt could have made (`store.folder_name` leaves them as they are) are
stage folders.

In a local folder (`LocalListing`), a checkpoint that the folder's index describes (its marker is the file the
entry was written for, by inode) is listed from the index, with no file opened and none's status asked for; any
other, from its record and its files' status. For what chkpt writes the two agree (a property test holds them
equal), so the index only saves time (100,000 checkpoints listed in under a second); a file changed in place, by
hand, keeps its entry and is listed as it was stored (a load still checks it, and refuses it if damaged). `used`
comes from the use notes, and gc rewrites the index and the notes to what it keeps.

In object storage (`RemoteListing`) there is no index (an object cannot be appended to): the listing fetches
every record, as many at once as the file system does, and `used` is when a checkpoint was stored (loads leave no
trace there).

Removing a checkpoint takes its key's lock without waiting (a key whose lock a run holds, because it is computing
or storing that key, is skipped), so no run stores the key meanwhile, and keeps a key stored again since the
listing. It removes the marker first, then the value file: a crash in between leaves an orphan, never a record
that vouches for a missing value.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from . import index
from .collector import paused
from .errors import StoreError
from .store import LOCKS, META, Damaged, LocalStore, _fsync_folder, folder_name, parse_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .remote import LeaseLock, RemoteStore
    from .store import KeyLock

_KEY_LENGTH = 32
_HEX = frozenset("0123456789abcdef")
_RECORD_LIMIT = 16 * 1024 * 1024  # a first line longer than this is no record chkpt wrote


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
    a whole checkpoint) first (URLs in object storage), and `used` when it was last loaded, to the hour (unix
    seconds, from its folder's use notes; `created` if it was never loaded, or only within the hour after it was
    stored, and always in object storage, where loads leave no trace).
    """

    __slots__ = ()

    def __new__(
        cls, stage: str, key: str, created: float, bytes: int, files: Iterable[str], used: float | None = None
    ) -> Checkpoint:
        return tuple.__new__(cls, (stage, key, created, bytes, tuple(files), _later(created, used)))


def _later(created: float, used: float | None) -> float:
    """A checkpoint's `used`: its last noted load, unless it has none, or one from before it was stored again."""
    return created if used is None or used < created else used


class Leftover:
    """An orphan value file or a temporary file: removable once LEFTOVER_AGE old and not under a held lock."""

    __slots__ = ("key", "modified", "path", "size", "temporary")

    def __init__(self, path: str, size: int, modified: float, key: str | None, temporary: bool) -> None:
        self.path = path
        self.size = size
        self.modified = modified
        self.key = key
        self.temporary = temporary


class Folder:
    """What one stage folder holds: its checkpoints, each with whether its stage name is its record's (else its
        folder's: the record cannot be read), and its leftovers. In a local folder also: the index entry of each
        checkpoint whose record was read, its load notes, how many bytes of its index and notes were read, and whether
        its index differs from what was found. In object storage: each checkpoint's marker's stamp (what says whether
    it is the same object later)."""

    __slots__ = ("checkpoints", "entries", "leftovers", "name", "path", "seen", "stale", "stamps", "used")

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.checkpoints: list[tuple[Checkpoint, bool]] = []
        self.leftovers: list[Leftover] = []
        self.entries: dict[str, index.Entry] = {}
        self.used: dict[str, float] = {}
        self.seen = (0, 0)
        self.stale = False
        self.stamps: dict[str, tuple[object, ...]] = {}


class LocalListing:
    """A checkpoint folder on this machine, at the absolute path `root`."""

    __slots__ = ("_store", "root")

    def __init__(self, root: str) -> None:
        self.root = root
        self._store = LocalStore(root)

    def scan(self) -> list[Folder]:
        """Every stage folder, in name order, with its checkpoints and leftovers."""
        with paused():  # a listing makes an object or two per checkpoint, 100,000 at a time
            return self._scan()

    def _scan(self) -> list[Folder]:
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
            folder = Folder(entry.name, entry.path)
            _read_folder(folder)
            if _is_chkpts(folder):
                folders.append(folder)
        return folders

    def probes(self) -> list[Leftover]:
        """The files `LocalStore.ensure_writable` makes and removes at once (`.probe.<pid>.<8 hex>`), left by a
        crash."""
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return []
        probes = []
        for entry in entries:
            if _is_probe(entry.name) and entry.is_file(follow_symlinks=False):
                stat = _stat(entry)
                if stat is not None:
                    probes.append(Leftover(entry.path, stat.st_size, stat.st_mtime, None, True))
        return probes

    def held_elsewhere(self, folder: str, key: str) -> bool:
        """Whether a run holds the lock of a key of a stage folder now."""
        return self._store.lock(folder, key).held_elsewhere()

    def remove(self, folder: Folder, cp: Checkpoint, scanned: float) -> str:
        """Remove one checkpoint while holding its key's lock, so that no run stores that key meanwhile: its
        marker first, made durable, then its value files. Returns "removed", "locked" (a run holds the key), or
        "kept" (gone already, or stored again since the scan at `scanned`)."""
        return _remove(self, self._store.lock(folder.name, cp.key), cp, lambda: _unchanged(folder, cp, scanned))

    def record(self, cp: Checkpoint) -> dict[str, Any]:
        """A checkpoint's record, from its marker; StoreError if that is no record of chkpt's for its key."""
        marker = cp.files[0]
        record = _read_record(marker, cp.key, not marker.endswith(f".{META}"))
        if record is None:
            raise StoreError(f"{marker!r} holds no readable record of chkpt's for key {cp.key}")
        return record

    def head(self, path: str, size: int) -> bytes:
        """The first `size` bytes of a file."""
        try:
            with open(path, "rb") as file:
                return file.read(size)
        except OSError as exc:
            raise StoreError(f"cannot read {path!r}: {exc.strerror or exc}") from None

    def remove_file(self, path: str) -> bool:
        """Remove a file; False when it was already gone."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot remove {path!r}: {exc.strerror or exc}") from None
        return True

    def removed(self, folder: Folder, gone: set[str]) -> None:
        """After gc removed `gone` from `folder` (or found its index stale): rewrite its index and use notes to
        what it keeps, oldest first as a store appends them."""
        if not gone and not folder.stale:
            return
        kept = [cp for cp, _ in folder.checkpoints if cp.key in folder.entries and cp.key not in gone]
        kept.sort(key=lambda cp: (cp.created, cp.key))
        used = {cp.key: folder.used[cp.key] for cp in kept if cp.key in folder.used}
        index.rewrite(folder.path, (folder.entries[cp.key] for cp in kept), used, folder.seen)


def _remove(
    listing: LocalListing | RemoteListing, lock: KeyLock | LeaseLock, cp: Checkpoint, unchanged: Callable[[], bool]
) -> str:
    """Remove a checkpoint if `unchanged()` says its marker is still the one listed, holding its key's lock (taken
    without waiting), so that no run stores that key meanwhile: the marker first (made durable in a folder), then
    its value files; a crash leaves an orphan, never a record without its value. Returns "removed", "locked" (a
    run holds the key), or "kept" (gone already, or stored again since it was listed)."""
    if not lock.enter_if_free():
        return "locked"
    try:
        if not unchanged() or not listing.remove_file(cp.files[0]):
            return "kept"
        if isinstance(listing, LocalListing):
            _fsync_folder(os.path.dirname(cp.files[0]))
        for path in cp.files[1:]:
            listing.remove_file(path)
        return "removed"
    finally:
        lock.__exit__(None, None, None)


def _unchanged(folder: Folder, cp: Checkpoint, scanned: float) -> bool:
    """Whether a checkpoint's marker is still the file the listing saw: the same inode (a store writes a marker
    anew and renames it into place), or, where the listing has no inode for it, written before the listing began
    at `scanned`. Else a run stored the key again while gc looked: it is new, not old."""
    entry = folder.entries.get(cp.key)
    try:
        status = os.stat(cp.files[0])
    except FileNotFoundError:
        return False
    return status.st_ino == entry[1] if entry is not None else status.st_mtime < scanned


def _is_chkpts(folder: Folder) -> bool:
    """Whether a folder in the store is a stage folder: it has an index (every store since 0.1 writes one) or a
    checkpoint whose record is chkpt's. A folder of the user's own (downloads named by their md5, say) is
    neither, and nothing in it is listed or removed."""
    return any(named for _, named in folder.checkpoints) or os.path.isfile(os.path.join(folder.path, ".index"))


def _is_probe(name: str) -> bool:
    pid, _, rest = name.removeprefix(".probe.").partition(".")
    return name.startswith(".probe.") and pid.isdigit() and len(rest) == 8 and _HEX.issuperset(rest)


def _read_folder(folder: Folder) -> None:
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
        checkpoint = _indexed(entry, files, folder.used.get(key))
        if checkpoint is not None:
            folder.checkpoints.append((checkpoint, True))
            folder.entries[key] = entry
    indexed = len(folder.entries)
    _read_files(folder, files.values())
    folder.stale = indexed != len(known) or indexed != len(folder.entries)


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
        # A key's file in another key's subfolder is none that a store reads: not chkpt's, so not listed.
        prefix = os.path.basename(path)
        files.update({entry.name: entry for entry in entries if entry.name.startswith(prefix) or entry.name[0] == "."})
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


def _indexed(entry: index.Entry, files: dict[str, os.DirEntry[str]], used: float | None) -> Checkpoint | None:
    """The checkpoint an index entry describes, taking its files out of `files` (what `_list` found where a store
    looks), if its marker is the file the entry was written for; no file opened, none's status asked for."""
    key = entry[0]
    inline = len(entry) == 5
    name = f"{key}.json" if inline else f"{key}.{META}"
    marker = files.get(name)
    if marker is None or marker.inode() != entry[1] or not index.described(entry):
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


def _read_files(folder: Folder, entries: Iterable[os.DirEntry[str]]) -> None:
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
                    folder.leftovers.append(Leftover(entry.path, stat.st_size, stat.st_mtime, key or None, True))
            continue
        stem, _, extension = name.partition(".")
        if len(stem) == _KEY_LENGTH and extension and _HEX.issuperset(stem):
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
                    folder.leftovers.append(Leftover(entry.path, stat.st_size, stat.st_mtime, key, False))
            continue
        _recorded(folder, key, marker, files, inline)


def _recorded(
    folder: Folder, key: str, marker: os.DirEntry[str], files: dict[str, os.DirEntry[str]], inline: bool
) -> None:
    """Add to `folder` a checkpoint as its record and its files' status describe it, with the index entry that
    would describe it (none when its record cannot be read: it is then listed under its folder's name, and dated by
    its marker); nothing if it was removed since the folder was listed."""
    status = _stat(marker)
    if status is None:
        return
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
    folder.checkpoints.append((checkpoint, named))
    if named:
        value = None if inline or not values else (values[0][0].name.partition(".")[2], values[0][1].st_size)
        entry = index.entry(key, status.st_ino, status.st_size, checkpoint.stage, checkpoint.created, value)
        folder.entries[key] = entry


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


class RemoteListing:
    """A store in an fsspec file system (remote.RemoteStore). Paths in what it lists are URLs
    (`s3://bucket/...`), which fsspec opens."""

    __slots__ = ("_probes", "_store")

    def __init__(self, store: RemoteStore) -> None:
        self._store = store
        self._probes: list[Leftover] = []

    @property
    def root(self) -> str:
        return self._store.url

    def scan(self) -> list[Folder]:
        """Every stage folder, in name order, with its checkpoints (their records fetched together) and
        leftovers."""
        fs, root = self._store.fs, self._store.root
        try:
            objects = fs.find(root, detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:  # each back end has its own errors
            raise StoreError(f"cannot list {self.root!r}: {exc}") from None
        by_folder: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
        self._probes = []
        for path, info in objects.items():
            parts = path[len(root) :].strip("/").split("/")
            if len(parts) == 1 and _is_probe(parts[0]):
                self._probes.append(Leftover(path, int(info.get("size") or 0), _modified(info) or 0.0, None, True))
            elif len(parts) == 2 and parts[0] != LOCKS and folder_name(parts[0]) == parts[0]:
                by_folder.setdefault(parts[0], {})[parts[1]] = (path, info)
        folders = []
        markers: list[tuple[Folder, str, str, bool, list[tuple[str, dict[str, Any]]]]] = []
        for name in sorted(by_folder):
            folder = Folder(name, f"{root}/{name}")
            folders.append(folder)
            by_key: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
            for file_name, found in by_folder[name].items():
                stem, _, extension = file_name.partition(".")
                if file_name.startswith("."):
                    key = _temporary_key(file_name)
                    if key is not None:
                        folder.leftovers.append(_leftover(found, key or None, True))
                elif len(stem) == _KEY_LENGTH and extension and _HEX.issuperset(stem):
                    by_key.setdefault(stem, {})[extension] = found
            for key, files in by_key.items():
                inline = META not in files and "json" in files
                if META not in files and not inline:
                    folder.leftovers += [_leftover(found, key, False) for found in files.values()]
                    continue
                marker = files.pop(META if not inline else "json")
                markers.append((folder, key, marker[0], inline, [marker, *(files[e] for e in sorted(files))]))
        records = self._records([(path, inline) for _, _, path, inline, _ in markers])
        for folder, key, path, inline, found_files in markers:
            record = records.get(path)
            try:
                parsed = None if record is None else parse_record(record, key, inline)
            except Damaged:
                parsed = None
            stage = parsed.get("stage") if parsed is not None else None
            named = isinstance(stage, str) and bool(stage)
            created = index.created_seconds(parsed.get("created")) if parsed is not None else None
            modified = _modified(found_files[0][1])
            checkpoint = Checkpoint(
                stage if isinstance(stage, str) and named else folder.name,
                key,
                created if created is not None else modified or 0.0,
                sum(int(info.get("size") or 0) for _, info in found_files),
                tuple(fs.unstrip_protocol(file) for file, _ in found_files),
            )
            folder.checkpoints.append((checkpoint, named))
            folder.stamps[key] = _stamp(found_files[0][1])
        return folders

    def _records(self, markers: list[tuple[str, bool]]) -> dict[str, bytes]:
        """The records of the markers at these paths (for the JSON layout, the start of the object, which holds
        its record), fetched together; a marker that cannot be fetched is left out."""
        fs = self._store.fs
        found: dict[str, bytes] = {}
        for inline in (False, True):
            paths = [path for path, is_inline in markers if is_inline == inline]
            if not paths:
                continue
            try:
                fetched = fs.cat(paths, on_error="return", start=0, end=_RECORD_LIMIT if inline else None)
            except Exception as exc:  # as in scan
                raise StoreError(f"cannot read the records under {self.root!r}: {exc}") from None
            if not isinstance(fetched, dict):  # one path: fsspec returns its bytes
                fetched = {paths[0]: fetched}
            found.update((fs._strip_protocol(path), data) for path, data in fetched.items() if isinstance(data, bytes))
        return found

    def probes(self) -> list[Leftover]:
        """The objects `RemoteStore.ensure_writable` puts and removes at once, left by a crash (as of the last
        scan)."""
        return list(self._probes)

    def held_elsewhere(self, folder: str, key: str) -> bool:
        return self._store.lock(folder, key).held_elsewhere()

    def remove(self, folder: Folder, cp: Checkpoint, scanned: float) -> str:
        """As LocalListing.remove, under the key's lease lock; "kept" if the marker is not the object listed
        (another run stored the key again since)."""
        return _remove(self, self._store.lock(folder.name, cp.key), cp, lambda: self._unchanged(folder, cp))

    def _unchanged(self, folder: Folder, cp: Checkpoint) -> bool:
        """Whether a checkpoint's marker is still the object the scan listed."""
        try:
            return _stamp(self._store.fs.info(cp.files[0])) == folder.stamps.get(cp.key)
        except FileNotFoundError:
            return False
        except Exception as exc:  # as in scan
            raise StoreError(f"cannot look at {cp.files[0]!r}: {exc}") from None

    def record(self, cp: Checkpoint) -> dict[str, Any]:
        """As LocalListing.record."""
        marker = cp.files[0]
        try:
            return parse_record(self.head(marker, _RECORD_LIMIT), cp.key, not marker.endswith(f".{META}"))
        except Damaged as exc:
            raise StoreError(f"{marker!r} holds no readable record of chkpt's for key {cp.key}: {exc}") from None

    def head(self, path: str, size: int) -> bytes:
        """The first `size` bytes of an object."""
        try:
            return bytes(self._store.fs.cat_file(path, start=0, end=size))
        except FileNotFoundError:
            raise StoreError(f"{path!r} is gone") from None
        except Exception as exc:  # as in scan
            raise StoreError(f"cannot read {path!r}: {exc}") from None

    def remove_file(self, path: str) -> bool:
        try:
            self._store.fs.rm_file(path)
        except FileNotFoundError:
            return False
        except Exception as exc:  # as in scan
            raise StoreError(f"cannot remove {path!r}: {exc}") from None
        return True

    def removed(self, folder: Folder, gone: set[str]) -> None:
        """Nothing to do: object storage keeps no index."""


def _leftover(found: tuple[str, dict[str, Any]], key: str | None, temporary: bool) -> Leftover:
    path, info = found
    return Leftover(path, int(info.get("size") or 0), _modified(info) or 0.0, key, temporary)


def _stamp(info: dict[str, Any]) -> tuple[object, ...]:
    """What tells an object from one put in its place later: its modification time (to the second on S3), its
    ETag where the back end has one, and its size."""
    return (_modified(info), info.get("ETag") or info.get("etag"), info.get("size"))


def _modified(info: dict[str, Any]) -> float | None:
    """An object's modification time in unix seconds, from an fsspec `info` (each back end names it its way)."""
    for name in ("LastModified", "mtime", "last_modified", "modified", "created"):
        moment = info.get(name)
        if isinstance(moment, (int, float)) and not isinstance(moment, bool):
            return float(moment)
        timestamp = getattr(moment, "timestamp", None)
        if callable(timestamp):
            return float(timestamp())
    return None
