"""A store in any fsspec file system: object storage (`s3://`, `gs://`, `az://`) and `memory://`.

The layout, records and checks are the folder store's (store.py), so a checkpoint copied between the two loads in
either. What differs is how a checkpoint is made whole at once: on object storage each file is one object put,
which a reader sees entirely or not at all, so a value is encoded in memory and put in one call; a two-file
checkpoint puts its value first and its record after it, and replacing one removes its old record first. A read
fetches the object and verifies it before decoding, as a local read does.

Imported only for a `Config(dir=...)` URL, and fsspec only then; `pip install chkpt[s3]` brings fsspec and s3fs.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import uuid

from . import checksums, codecs
from .errors import ConfigError, StoreError
from .store import (
    LOCKS,
    META,
    Damaged,
    codec_for_record,
    folder_name,
    full_record,
    inline_file,
    inline_payload,
    inline_seconds,
    is_inline,
    parse_record,
    read_verified,
    record_seconds,
    write_value,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .codecs import Codec


class RemoteStore:
    """Checkpoints under `url` in an fsspec file system, opened with `storage_options` (credentials, an
    `endpoint_url`...). `on_error` is as for LocalStore."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, on_error: str = "raise") -> None:
        try:
            import fsspec.core
        except ImportError:
            raise ConfigError(
                f"Config(dir={url!r}) needs fsspec (and for s3:// s3fs): pip install 'chkpt[s3]'"
            ) from None
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.on_error = on_error
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"Config(dir={url!r}): {exc}") from None
        self.root = root.rstrip("/")

    def __reduce__(self) -> tuple[type[RemoteStore], tuple[str, dict[str, Any], str]]:
        # Sent with every step to a worker process, which opens the file system again.
        return RemoteStore, (self.url, self.storage_options, self.on_error)

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    @property
    def shared_between_processes(self) -> bool:
        """Whether another process sees what this one stores: not for `memory://`, which lives in one process."""
        return "memory" not in _protocols(self.fs)

    def for_workers(self) -> RemoteStore:
        return self

    def path(self, stage_name: str, key: str, extension: str) -> str:
        return f"{self.root}/{folder_name(stage_name)}/{key}.{extension}"

    def marker(self, stage_name: str, key: str, format_name: str) -> str:
        """The object whose presence means a whole checkpoint: the JSON object itself, or the record beside a
        value."""
        if is_inline(format_name):
            return self.path(stage_name, key, codecs.get(format_name).extension)
        return self.path(stage_name, key, META)

    def exists(self, stage_name: str, key: str, format_name: str) -> bool:
        try:
            return bool(self.fs.isfile(self.marker(stage_name, key, format_name)))
        except OSError as exc:
            raise StoreError(f"cannot look for checkpoints under {self.url!r}: {exc}") from None

    def lock(self, stage_name: str, key: str) -> LeaseLock:
        """The lock of one key (see LeaseLock): a run holds it while it computes and stores that key."""
        return LeaseLock(self.fs, f"{self.root}/{LOCKS}/{folder_name(stage_name)}.{key}.lock")

    def ensure_writable(self) -> None:
        """Prove an object can be put under the store's root, so a bad URL or missing rights fail before any stage
        runs."""
        probe = f"{self.root}/.probe.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except Exception as exc:  # fsspec back ends raise their own errors (botocore's, PermissionError...)
            raise StoreError(
                f"cannot write checkpoints to {self.url!r}: {exc}; check the URL, the bucket and its rights, or "
                "Config(storage_options=...)"
            ) from None

    # --- reading --------------------------------------------------------------------------------------------------

    def read(self, stage_name: str, key: str, format_name: str, mmap: bool = False) -> tuple[Any, int, float | None]:
        """As LocalStore.read, fetching each object once (`mmap` does not apply here).

        Raises FileNotFoundError when there is no checkpoint, Damaged when there is one that fails a check, and
        StoreError when it cannot be fetched or verified here.
        """
        if is_inline(format_name):
            codec = codecs.get(format_name)
            data = self._fetch(self.path(stage_name, key, codec.extension))
            payload = inline_payload(data, key)
            try:
                return codec.decode(payload), len(payload), inline_seconds(data)  # type: ignore[attr-defined]
            except ValueError as exc:
                raise Damaged(f"its value does not decode: {exc}") from None
            except RecursionError:
                raise Damaged("its value is nested too deep to decode here") from None
        record = self.read_record(stage_name, key, format_name)
        codec = codec_for_record(record, format_name)
        data = self._fetch(self.path(stage_name, key, codec.extension))
        value = read_verified(codec, io.BytesIO(data), len(data), record, False)
        return value, int(record["bytes"]), record_seconds(record)

    def read_record(self, stage_name: str, key: str, format_name: str) -> dict[str, Any]:
        return parse_record(self._fetch(self.marker(stage_name, key, format_name)), key, is_inline(format_name))

    def _fetch(self, path: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            raise
        except Exception as exc:  # as in ensure_writable: each back end has its own errors
            raise StoreError(f"cannot read {self.fs.unstrip_protocol(path)!r}: {exc}") from None

    # --- writing --------------------------------------------------------------------------------------------------

    def write(
        self, stage_name: str, key: str, format_name: str, codec: Codec, value: Any, record: dict[str, Any]
    ) -> int:
        """Store a checkpoint as LocalStore.write does, each file in one put; returns the value's size."""
        if is_inline(format_name):
            head, payload = inline_file(key, codec, value, record)
            self._put(self.path(stage_name, key, codec.extension), b"".join((head, payload, b"\n}\n")))
            return len(payload)
        algorithm = checksums.preferred()
        hasher = checksums.new(algorithm)
        buffer = io.BytesIO()
        write_value(codec, value, buffer, hasher)
        meta_path = self.path(stage_name, key, META)
        try:
            if self.fs.isfile(meta_path):
                self.fs.rm_file(meta_path)  # never an old record beside a new value
        except Exception as exc:  # as in ensure_writable
            raise StoreError(f"cannot replace checkpoint {meta_path!r}: {exc}") from None
        data = buffer.getvalue()
        del buffer
        self._put(self.path(stage_name, key, codec.extension), data)
        size = len(data)
        del data
        self._put(meta_path, full_record(record, codec, key, size, checksums.label(algorithm, hasher)))
        return size

    def _put(self, path: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(path, data)
        except Exception as exc:  # as in ensure_writable
            raise StoreError(f"cannot write checkpoint {self.fs.unstrip_protocol(path)!r}: {exc}") from None


LEASE_SECONDS = 60.0
"""How long a lock object holds without being renewed: a run that dies keeps a key locked at most this long."""


class LeaseLock:
    """An exclusive lock on one key of an object store, across processes and machines: an object created only if
    it is absent (S3's conditional put, `If-None-Match: *`; fsspec's `mode="create"`), holding its owner and when
    its lease ends.

    The holder renews the lease from a daemon thread every third of `LEASE_SECONDS`, so a long computation keeps
    it, and removes the object when done. A waiter polls; it takes over an object whose lease ended (its holder
    died), by removing it and creating its own. Two waiters taking over the same dead lease at the same moment
    can both win (object stores have no conditional delete through fsspec): then a stage is computed twice, and
    each put is still whole. A file system that cannot create only-if-absent gives no lock, as for LocalStore.
    """

    __slots__ = ("_fs", "_owner", "_path", "_renewing", "_stop")

    def __init__(self, fs: Any, path: str) -> None:
        self._fs = fs
        self._path = path
        self._owner = ""
        self._stop: threading.Event | None = None
        self._renewing: threading.Thread | None = None

    def __enter__(self) -> LeaseLock:
        pause = 0.05
        while self._attempt() is False:
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        return self

    def enter_if_free(self) -> bool:
        """Take the lock if no live holder has it, without waiting: True if taken (or if no lock can be made
        here), then leave it with `__exit__`; False if another holder has it."""
        return self._attempt() is not False

    def held_elsewhere(self) -> bool:
        """Whether a live holder has the lock now (a look, not a wait)."""
        return not _expired(self._fs, self._path)

    def _attempt(self) -> bool | None:
        """One try: True if taken, False if a live holder has it, None if no lock can be made here (no
        only-if-absent create, or no rights: then runs go without it)."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        for _ in range(2):  # once more after removing a dead holder's lock
            try:
                self._fs.pipe_file(self._path, _lease(owner), mode="create")
            except FileExistsError:
                if not _expired(self._fs, self._path):
                    return False
                _remove_quietly(self._fs, self._path)
                continue
            except Exception:  # each back end has its own errors
                return None
            self._owner = owner
            self._stop = threading.Event()
            self._renewing = threading.Thread(target=self._renew, name="chkpt-lease", daemon=True)
            self._renewing.start()
            return True
        return False

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is None:
            return
        self._stop.set()
        assert self._renewing is not None
        self._renewing.join()
        self._stop = self._renewing = None
        try:
            mine = _read_lease(self._fs, self._path).get("owner") == self._owner
        except Exception:  # gone, or unreadable: nothing of ours to remove
            return
        if mine:
            _remove_quietly(self._fs, self._path)

    def _renew(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                self._fs.pipe_file(self._path, _lease(self._owner))
            except Exception:  # a failed renewal is tried again; the lease lasts meanwhile
                continue


def _lease(owner: str) -> bytes:
    return json.dumps({"owner": owner, "expires": time.time() + LEASE_SECONDS}).encode()


def _read_lease(fs: Any, path: str) -> dict[str, Any]:
    lease = json.loads(fs.cat_file(path))
    return lease if isinstance(lease, dict) else {}


def _expired(fs: Any, path: str) -> bool:
    """Whether the lock object at `path` is gone or its lease ended (a lock object that is not one has none)."""
    try:
        expires = _read_lease(fs, path).get("expires")
    except FileNotFoundError:
        return True
    except ValueError:
        return True
    return not isinstance(expires, (int, float)) or expires < time.time()


def _remove_quietly(fs: Any, path: str) -> None:
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
