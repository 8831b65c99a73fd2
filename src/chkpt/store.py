"""The local folder store: checkpoints that are whole or absent, and verified when read.

Layout: `<dir>/<stage folder>/<key>.<ext>`, where the stage folder is the stage's name made safe for a file
system; once a stage folder has taken about FANOUT_AT checkpoints, new keys go one level down, in the subfolder of
their first two hex digits (`<stage folder>/<2 hex>/<key>.<ext>`), and a key is always read and stored again where
it is. Each stage folder also has an index, `.index`, and use notes, `.used` (index.py), which listing reads so as
to open no checkpoint. A checkpoint takes one of two forms:

- JSON (formats "json" and "json-lossy"): one file holds the record on its first line and the value after it,
  as one JSON object `{"chkpt": <record>, "value": <value>}`, so a load reads one file and `jq .value` reads it
  too. The record ends with the key, the value's length and its sha256, which every load checks by comparing
  bytes, so a load parses no JSON but the value's.
- Every other format: the value in `<key>.<ext>` exactly as the codec wrote it (a real .npy or .parquet file), and
  the record in `<key>.meta.json` beside it, written after the value: a record means a whole checkpoint. The
  record holds the value file's size and checksum (xxh3-128 with `chkpt[fast]`, else sha256), checked on load
  before the value is handed out, and, for pickle, before it is unpickled.

A write goes to a temporary file in the same folder, is flushed, fsynced (unless the store is not durable) and
renamed into place, and the folder is fsynced: a reader sees the old state or the new one, and a crash leaves at
most a temporary file (`.<key>.<pid>.<random>.tmp`) that is never loaded. Replacing a two-file checkpoint removes
its old record first, so a crash in between leaves no checkpoint rather than an old record beside a new value.

Runs that compute the same key at once (two processes, two machines on one shared folder) take turns through a
lock per key (`KeyLock`, an `flock` on `<dir>/.locks/<stage folder>.<key>.lock`, apart from the checkpoints so
that a stage folder holds only them), so the second finds the first one's checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time

try:
    import fcntl
except ImportError:  # Windows: runs sharing a folder there are not kept from computing a key twice
    fcntl = None  # type: ignore[assignment]

from . import checksums, codecs, index
from .errors import ChkptError, SerializationError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any, BinaryIO, Protocol

    from .checksums import Hasher
    from .codecs import Codec

    class CheckpointStore(Protocol):
        """What a run needs of a store: LocalStore (a folder) and remote.RemoteStore (fsspec) have it."""

        on_error: str

        @property
        def shared_between_processes(self) -> bool: ...
        def for_workers(self) -> CheckpointStore: ...
        def marker(self, stage_name: str, key: str, format_name: str) -> str: ...
        def exists(self, stage_name: str, key: str, format_name: str) -> bool: ...
        def read_record(self, stage_name: str, key: str, format_name: str) -> dict[str, Any]: ...
        def lock(self, stage_name: str, key: str) -> AbstractContextManager[object]: ...
        def ensure_writable(self) -> None: ...
        def read(
            self, stage_name: str, key: str, format_name: str, mmap: bool = False
        ) -> tuple[Any, int, float | None]: ...
        def write(
            self, stage_name: str, key: str, format_name: str, codec: Codec, value: Any, record: dict[str, Any]
        ) -> int: ...


_HEAD = b'{"chkpt": '
_VALUE = b'"value": '
_TAIL = b"\n}\n"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
MAX_FOLDER_NAME = 120
META = "meta.json"
LOCKS = ".locks"
_CHUNK = 16 * 1024 * 1024
FANOUT_AT = 10_000
"""About how many checkpoints a stage folder takes before new keys go to fan-out subfolders named by their
first two hex digits (`<stage folder>/<2 hex>/<key>.<ext>`), so that no folder grows past a size that file
systems and tools handle well. Judged from the size of the folder's index (index.py), at `_INDEX_LINE` bytes an
entry."""
_INDEX_LINE = 100


class Damaged(Exception):
    """A checkpoint file that exists but cannot be trusted; the message says why."""


def folder_name(stage_name: str) -> str:
    """A file-system-safe folder name for a stage: no separators, no leading dots, bounded length."""
    safe = _UNSAFE.sub("_", stage_name).lstrip(".")[:MAX_FOLDER_NAME]
    return safe or "_"


def checksum(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def _fanned_out(folder: str) -> bool:
    """Whether a stage folder has taken about FANOUT_AT checkpoints, judged from its index's size."""
    return index.size(folder) >= FANOUT_AT * _INDEX_LINE


def _marker_extension(format_name: str) -> str:
    """The extension of a checkpoint's marker: the JSON file's own for the one-file layout, else its record's."""
    return codecs.get(format_name).extension if is_inline(format_name) else META


def is_inline(format_name: str) -> bool:
    """Whether checkpoints of this format keep their record inside the value's file."""
    codec = codecs.get(format_name) if format_name != codecs.AUTO else None
    return bool(getattr(codec, "inline", False))


class KeyLock:
    """An exclusive lock on one key of a store, across threads and processes (and machines, where the file
    system carries `flock`): `with store.lock(stage, key): ...`.

    The lock is an `flock` on a file of the store's `.locks` folder. Its holder removes the file before letting
    go, so the folder does not fill with lock files; whoever was waiting on the removed file finds, once it has
    the lock, that the path no longer names its file, and tries again with the new one. A holder that dies lets
    go with its process. Where no lock can be made (no `fcntl` on this platform, a read-only folder), entering
    does nothing: such a store cannot be written, or runs are not shared.
    """

    __slots__ = ("_fd", "_path")

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> KeyLock:
        self._fd = _acquire(self._path, blocking=True)
        return self

    def enter_if_free(self) -> bool:
        """Take the lock if nobody holds it, without waiting: True if taken (or if no lock can be made here),
        then leave it with `__exit__`; False if another holder has it."""
        try:
            self._fd = _acquire(self._path, blocking=False)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            _remove(self._path)
            try:
                os.rmdir(os.path.dirname(self._path))  # the last one out leaves the store as it found it
            except OSError:
                pass  # other keys are locked
            os.close(self._fd)  # closing lets go of the flock
            self._fd = None

    def held_elsewhere(self) -> bool:
        """Whether another holder has the lock now (a look, not a wait)."""
        if fcntl is None:
            return False
        try:
            fd = os.open(self._path, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # (an flock taken here goes with it)
        return False


def _acquire(path: str, blocking: bool) -> int | None:
    """An open file descriptor holding the flock of `path`; None where no lock can be made. Without
    `blocking`, BlockingIOError when another holder has it."""
    if fcntl is None:
        return None
    while True:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue  # the folder was removed by the holder of the last other lock, just now
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass  # its holder removed it while we waited: take the new one
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


class LocalStore:
    """Checkpoints in a folder on this machine. `durable=False` skips the fsyncs (writes stay atomic).
    `on_error` is what a run does when storing a computed value fails (see `Config.on_store_error`)."""

    def __init__(self, root: str, durable: bool = True, on_error: str = "raise") -> None:
        self.root = root
        self.durable = durable
        self.on_error = on_error
        self._folders: dict[str, str] = {}
        self._fanned: dict[str, bool] = {}  # by stage: whether its folder had fanned out when first looked at

    def __reduce__(self) -> tuple[type[LocalStore], tuple[str, bool, str]]:
        # Sent with every step to a worker process: the folder cache stays here.
        return LocalStore, (self.root, self.durable, self.on_error)

    @property
    def shared_between_processes(self) -> bool:
        """Whether another process sees what this one stores (a folder: always)."""
        return True

    def for_workers(self) -> LocalStore:
        """This store as other processes must name it: by its absolute path (a worker's current folder may be
        another)."""
        return LocalStore(os.path.abspath(self.root), self.durable, self.on_error)

    def folder(self, stage_name: str) -> str:
        """The stage's folder in this store."""
        folder = self._folders.get(stage_name)
        if folder is None:
            folder = self._folders[stage_name] = os.path.join(self.root, folder_name(stage_name))
        return folder

    def path(self, stage_name: str, key: str, extension: str) -> str:
        """Where the file `<key>.<extension>` of a stage is: in the stage's folder, or in its fan-out subfolder
        (see FANOUT_AT); where it would be written, in the stage's folder, if it is in neither."""
        first, second = self._places(stage_name, key)
        for where in (first, second):
            path = f"{where}{os.sep}{key}.{extension}"
            if os.path.exists(path):
                return path
        return f"{self.folder(stage_name)}{os.sep}{key}.{extension}"

    def _places(self, stage_name: str, key: str) -> tuple[str, str]:
        """The two folders a key's files may be in, the likelier first: a folder that has fanned out holds most
        of its keys in subfolders, so looking there first saves a failed look per read."""
        folder = self.folder(stage_name)
        fanned = f"{folder}{os.sep}{key[:2]}"
        fans_out = self._fanned.get(stage_name)
        if fans_out is None:
            fans_out = self._fanned[stage_name] = _fanned_out(folder)
        return (fanned, folder) if fans_out else (folder, fanned)

    def marker(self, stage_name: str, key: str, format_name: str) -> str:
        """The file whose presence means a whole checkpoint: the JSON file itself, or the record beside a value."""
        return self.path(stage_name, key, _marker_extension(format_name))

    def lock(self, stage_name: str, key: str) -> KeyLock:
        """The lock of one key (see KeyLock): a run holds it while it computes and stores that key."""
        return KeyLock(os.path.join(self.root, LOCKS, f"{folder_name(stage_name)}.{key}.lock"))

    def exists(self, stage_name: str, key: str, format_name: str) -> bool:
        first, second = self._places(stage_name, key)
        name = f"{key}.{_marker_extension(format_name)}"
        return os.path.isfile(f"{first}{os.sep}{name}") or os.path.isfile(f"{second}{os.sep}{name}")

    def ensure_writable(self) -> None:
        """Create the folder and prove a file can be written in it, so a bad `dir` fails before any stage runs."""
        probe = os.path.join(self.root, f".probe.{os.getpid()}.{os.urandom(4).hex()}")
        try:
            os.makedirs(self.root, exist_ok=True)
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            raise StoreError(
                f"cannot write checkpoints to {self.root!r}: {exc.strerror or exc}; "
                "choose another folder with Config(dir=...) or the CHKPT_DIR environment variable"
            ) from None

    # --- reading ------------------------------------------------------------------------------------------------

    def read(self, stage_name: str, key: str, format_name: str, mmap: bool = False) -> tuple[Any, int, float | None]:
        """The value of a checkpoint, its size in bytes, and the seconds its stage took to compute (as its record
        says; None if it does not), after verifying it.

        Raises FileNotFoundError when there is no checkpoint, Damaged when there is one that fails a check, and
        StoreError when it cannot be verified here (its checksum needs a package this machine lacks).
        """
        if is_inline(format_name):
            codec = codecs.get(format_name)
            with self._open_marker(stage_name, key, format_name)[0] as file:
                data = file.read()
                payload = inline_payload(data, key)
                try:
                    value = codec.decode(payload)  # type: ignore[attr-defined]
                except ValueError as exc:
                    raise Damaged(f"its value does not decode: {exc}") from None
                except RecursionError:
                    # stored from a shallower stack than this load's: it cannot be loaded here, so it is computed
                    raise Damaged("its value is nested too deep to decode here") from None
                _note_use(file.fileno(), self.folder(stage_name), key)
            return value, len(payload), inline_seconds(data)
        record, where = self._read_record(stage_name, key, format_name)
        codec = codec_for_record(record, format_name)
        with open(f"{where}{os.sep}{key}.{codec.extension}", "rb") as file:
            value = read_verified(codec, file, os.fstat(file.fileno()).st_size, record, mmap)
        _note_use(f"{where}{os.sep}{key}.{META}", self.folder(stage_name), key)
        return value, int(record["bytes"]), record_seconds(record)

    def read_record(self, stage_name: str, key: str, format_name: str) -> dict[str, Any]:
        """The record of a checkpoint, without reading or checking its value."""
        return self._read_record(stage_name, key, format_name)[0]

    def _read_record(self, stage_name: str, key: str, format_name: str) -> tuple[dict[str, Any], str]:
        """The record of a checkpoint and the folder it is in."""
        file, where = self._open_marker(stage_name, key, format_name)
        inline = is_inline(format_name)
        with file:
            return parse_record(file.readline() if inline else file.read(), key, inline), where

    def _open_marker(self, stage_name: str, key: str, format_name: str) -> tuple[BinaryIO, str]:
        """A checkpoint's marker open for reading, and the folder it is in: the stage's folder or its fan-out
        subfolder (the likelier first). FileNotFoundError if it is in neither."""
        first, second = self._places(stage_name, key)
        name = f"{key}.{_marker_extension(format_name)}"
        try:
            return open(f"{first}{os.sep}{name}", "rb"), first
        except FileNotFoundError:
            return open(f"{second}{os.sep}{name}", "rb"), second

    # --- writing ------------------------------------------------------------------------------------------------

    def write(
        self, stage_name: str, key: str, format_name: str, codec: Codec, value: Any, record: dict[str, Any]
    ) -> int:
        """Store a checkpoint of a stage of format `format_name`, written by `codec` (for "auto", the one it
        chose); returns the value's size in bytes.

        `record` is completed with the codec, size and checksum. A value the codec cannot write raises
        SerializationError, a failed write StoreError; either way no file is left behind. Once the checkpoint
        is whole, it is added to its folder's index.
        """
        folder = self.folder(stage_name)
        where = self._destination(folder, key, _marker_extension(format_name))
        if is_inline(format_name):
            head, payload = inline_file(key, codec, value, record)
            marker = f"{where}{os.sep}{key}.{codec.extension}"
            self._atomic(marker, lambda file: _write_all(file, head, payload))
            self._add_to_index(folder, key, marker, stage_name, record, None)
            return len(payload)
        algorithm = checksums.preferred()
        hasher = checksums.new(algorithm)
        marker = f"{where}{os.sep}{key}.{META}"
        value_path = f"{where}{os.sep}{key}.{codec.extension}"
        self._forget_record(marker)
        self._atomic(value_path, lambda file: write_value(codec, value, file, hasher))
        size = os.path.getsize(value_path)
        meta = full_record(record, codec, key, size, checksums.label(algorithm, hasher))
        self._atomic(marker, lambda file: file.write(meta))
        self._add_to_index(folder, key, marker, stage_name, record, (codec.extension, size))
        return size

    def _destination(self, folder: str, key: str, marker_extension: str) -> str:
        """The folder to write a key's checkpoint in: where it is already, else the stage's folder until that
        has taken about FANOUT_AT checkpoints, then the fan-out subfolder of the key's first two hex digits."""
        name = f"{key}.{marker_extension}"
        fanned = f"{folder}{os.sep}{key[:2]}"
        if os.path.exists(f"{folder}{os.sep}{name}"):
            return folder
        if os.path.exists(f"{fanned}{os.sep}{name}") or _fanned_out(folder):
            return fanned
        return folder

    def _add_to_index(
        self,
        folder: str,
        key: str,
        marker: str,
        stage_name: str,
        record: dict[str, Any],
        value: tuple[str, int] | None,
    ) -> None:
        try:
            status = os.stat(marker)
        except OSError:
            return  # removed at once by another: there is nothing to index
        created = index.created_seconds(record.get("created"))
        moment = status.st_mtime if created is None else created
        index.append(folder, index.entry(key, status.st_ino, status.st_size, stage_name, moment, value))

    def _forget_record(self, record: str) -> None:
        """Remove the record of a checkpoint about to be replaced, so that its value file is never replaced
        while that record vouches for it (a crash then leaves no checkpoint, never a mismatched one)."""
        try:
            os.unlink(record)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot replace checkpoint {record!r}: {exc.strerror or exc}") from None
        if self.durable:
            _fsync_folder(os.path.dirname(record))

    def _atomic(self, final: str, fill: Any) -> None:
        folder = os.path.dirname(final)
        temporary = os.path.join(folder, f".{os.path.basename(final)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                with open(fd, "w+b", closefd=True) as file:
                    fill(file)
                    file.flush()
                    if self.durable:
                        os.fsync(file.fileno())
                os.replace(temporary, final)
            except BaseException:
                _remove(temporary)
                raise
            if self.durable:
                _fsync_folder(folder)
        except OSError as exc:
            raise StoreError(f"cannot write checkpoint {final!r}: {exc.strerror or exc}") from None


_CHECKED = ("key", "bytes", "checksum")


def inline_payload(data: bytes, key: str) -> bytes:
    """The value's bytes of a one-file JSON checkpoint `data`, after checking its framing and its record's key,
    length and checksum; Damaged if any is wrong."""
    end = data.find(b"\n")
    head, rest = data[:end], data[end + 1 :]
    if end < 0 or not head.startswith(_HEAD):
        raise Damaged("its first line is not a chkpt record")
    if not rest.startswith(_VALUE) or not rest.endswith(_TAIL):
        raise Damaged("it is truncated or its value is not framed as chkpt wrote it")
    payload = rest[len(_VALUE) : -len(_TAIL)]
    if not head.endswith(_record_end(key, payload) + b","):
        raise Damaged("its record does not match its key, or its value's length and checksum")
    return payload


def inline_seconds(data: bytes) -> float | None:
    """The `seconds` of a one-file JSON checkpoint's record (how long its stage took), read from its first line
    without parsing it; None if it has none."""
    end = data.find(b"\n")
    start = data.find(b'"seconds": ', 0, end)
    if start < 0:
        return None
    start += len(b'"seconds": ')
    stop = start
    while stop < end and data[stop] not in b",}":
        stop += 1
    try:
        return float(data[start:stop])
    except ValueError:
        return None


def record_seconds(record: dict[str, Any]) -> float | None:
    """The `seconds` of a record, if it is a number."""
    seconds = record.get("seconds")
    return float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else None


def inline_file(key: str, codec: Codec, value: Any, record: dict[str, Any]) -> tuple[bytes, bytes]:
    """A one-file JSON checkpoint's head (its record, up to the value) and its value's bytes."""
    payload = codec.encode(value)  # type: ignore[attr-defined]
    fields = json.dumps({name: v for name, v in record.items() if name not in _CHECKED})
    opening = fields[:-1] + ", " if fields != "{}" else "{"
    return _HEAD + opening.encode("ascii") + _record_end(key, payload) + b",\n" + _VALUE, payload


def full_record(record: dict[str, Any], codec: Codec, key: str, size: int, checksum: str) -> bytes:
    """The record file of a two-file checkpoint."""
    full = {**record, "codec": codec.name, "key": key, "bytes": size, "checksum": checksum}
    return json.dumps(full, indent=1).encode("ascii")


def parse_record(data: bytes, key: str, inline: bool) -> dict[str, Any]:
    """The record in `data`: a record file's content, or with `inline` a JSON checkpoint (its first line, at
    least); Damaged if it is not chkpt's record for `key`."""
    if inline:
        head = data.partition(b"\n")[0]
        if not head.startswith(_HEAD):
            raise Damaged("its first line is not a chkpt record")
        data = head[len(_HEAD) :].rstrip().removesuffix(b",")
    try:
        record = json.loads(data)
    except ValueError:
        raise Damaged("its record is not valid JSON") from None
    if not isinstance(record, dict) or record.get("key") != key:
        raise Damaged("its record is not a chkpt record for this key")
    return record


def _record_end(key: str, payload: bytes) -> bytes:
    """How an inline record ends: the fields a load checks, in this order, as json.dumps writes them."""
    return b'"key": "%s", "bytes": %d, "checksum": "%s"}' % (key.encode(), len(payload), checksum(payload).encode())


def _write_all(file: BinaryIO, head: bytes, payload: bytes) -> None:
    file.write(head)
    file.write(payload)
    file.write(_TAIL)


class _HashingWriter(io.RawIOBase):
    """A write-only file to hand a codec: what it writes goes to the real file and through the hasher, with no
    copy. Closing it leaves the real file open for the store to finish."""

    def __init__(self, file: BinaryIO, hasher: Hasher) -> None:
        super().__init__()
        self.file = file
        self.hasher = hasher
        self.name = getattr(file, "name", "")  # an in-memory buffer (object storage) has none

    def write(self, data: Any) -> int:
        self.hasher.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        # Closing a file flushes it, and this wrapper may be closed (or collected) after the real file.
        if not self.file.closed:
            self.file.flush()

    def tell(self) -> int:
        return self.file.tell()

    def writable(self) -> bool:
        return True


def write_value(codec: Codec, value: Any, file: BinaryIO, hasher: Hasher) -> None:
    """Write `value` with `codec` into `file` (open for reading too), feeding `hasher` the bytes written."""
    try:
        write_hashed = getattr(codec, "write_hashed", None)
        if write_hashed is not None:
            write_hashed(value, file, hasher)
        else:
            writer = _HashingWriter(file, hasher)
            try:
                codec.write(value, writer)  # type: ignore[arg-type]
            finally:
                writer.close()
    except (SerializationError, OSError, MemoryError):
        raise
    except Exception as exc:
        raise SerializationError(f"format '{codec.name}' cannot store a {type(value).__name__}: {exc}") from exc


def codec_for_record(record: dict[str, Any], format_name: str) -> Codec:
    """The codec to read a checkpoint with: the stage's own, or for "auto" the safe one its record names."""
    if format_name != codecs.AUTO:
        if record.get("codec") != format_name:
            raise Damaged(f"its record says format {record.get('codec')!r}, not the stage's {format_name!r}")
        return codecs.get(format_name)
    named = record.get("codec")
    if not isinstance(named, str) or named not in codecs.AUTO_SAFE:
        raise Damaged(f"its record names format {named!r}, which 'auto' never writes")
    try:
        return codecs.get(named)
    except ChkptError as exc:
        raise StoreError(str(exc)) from None


def read_verified(codec: Codec, file: BinaryIO, size: int, record: dict[str, Any], mmap: bool) -> Any:
    """The value in `file` (of `size` bytes), decoded by `codec` only after its size and checksum match its
    record's; Damaged if they do not, or if it does not decode."""
    algorithm, _, expected = str(record.get("checksum", "")).partition(":")
    if algorithm not in checksums.ALGORITHMS:
        raise Damaged(f"its record names no checksum chkpt knows ({record.get('checksum')!r})")
    hasher = checksums.new(algorithm)
    if size != record.get("bytes"):
        raise Damaged(f"its value file has {size} bytes, its record says {record.get('bytes')}")
    read_hashed = getattr(codec, "read_hashed", None)
    try:
        if read_hashed is not None:
            value = read_hashed(file, hasher, mmap) if mmap else read_hashed(file, hasher)
        else:
            # Verify before decoding: a damaged (or planted) file is never handed to the codec.
            while chunk := file.read(_CHUNK):
                hasher.update(chunk)
            file.seek(0)
            value = None
    except MemoryError:
        raise
    except Exception as exc:
        raise Damaged(f"its value does not load: {exc}") from None
    if hasher.hexdigest() != expected:
        raise Damaged("its value does not match the checksum in its record")
    if read_hashed is not None:
        return value
    try:
        return codec.read(file)
    except MemoryError:
        raise
    except Exception as exc:
        raise Damaged(f"its value does not load: {exc}") from None


_USE_RESOLUTION_NS = 3600 * 10**9


def _note_use(marker: int | str, folder: str, key: str) -> None:
    """Note that a checkpoint was loaded now, in its folder's use notes (index.note_use), which
    `Store.gc(max_bytes=...)` evicts by (least recently used first). To the hour, since a note costs more than a
    small load: its marker's status-change time says when it was stored or last noted (each note sets the
    marker's access time, which changes that, and reading it does not), and a key is noted again only once that
    is an hour old. A store this process may not change (read-only) keeps no notes."""
    try:
        now = time.time_ns()
        status = os.stat(marker)
        if now - status.st_ctime_ns > _USE_RESOLUTION_NS:
            os.utime(marker, ns=(now, status.st_mtime_ns))
            index.note_use(folder, key, now / 1e9)
    except OSError:
        pass


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable; some file systems cannot open a folder for this, which is no error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
