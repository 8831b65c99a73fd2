"""The local folder store: checkpoints that are whole or absent, and verified when read.

Layout: `<dir>/<stage folder>/<key>.<ext>`, where the stage folder is the stage's name made safe for a file
system. A checkpoint file holds its record on its first line and the value after it, as one JSON object
`{"chkpt": <record>, "value": <value>}`, so a load reads one file and a person or `jq .value` can read it too.
The record ends with the key, the value's length and its sha256, which every load checks: it computes what that
end must be and compares bytes, so a load parses no JSON but the value's.

A write goes to a temporary file in the same folder, is flushed and fsynced, and is renamed into place, and the
folder is fsynced: a reader sees the old state or the new one, and a crash leaves at most a temporary file that
is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from .errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_HEAD = b'{"chkpt": '
_VALUE = b'"value": '
_TAIL = b"\n}\n"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
MAX_FOLDER_NAME = 120


class Damaged(Exception):
    """A checkpoint file that exists but cannot be trusted; the message says why."""


def folder_name(stage_name: str) -> str:
    """A file-system-safe folder name for a stage: no separators, no leading dots, bounded length."""
    safe = _UNSAFE.sub("_", stage_name).lstrip(".")[:MAX_FOLDER_NAME]
    return safe or "_"


def checksum(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


class LocalStore:
    """Checkpoints in a folder on this machine."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._folders: dict[str, str] = {}

    def path(self, stage_name: str, key: str, extension: str) -> str:
        folder = self._folders.get(stage_name)
        if folder is None:
            folder = self._folders[stage_name] = os.path.join(self.root, folder_name(stage_name))
        return f"{folder}{os.sep}{key}.{extension}"

    def exists(self, stage_name: str, key: str, extension: str) -> bool:
        return os.path.isfile(self.path(stage_name, key, extension))

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

    def read(self, stage_name: str, key: str, extension: str) -> bytes:
        """The payload of a checkpoint, after checking it against its record.

        Raises FileNotFoundError when there is no checkpoint and Damaged when there is one that fails a check.
        """
        with open(self.path(stage_name, key, extension), "rb") as file:
            data = file.read()
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

    def read_record(self, stage_name: str, key: str, extension: str) -> dict[str, Any]:
        """The record of a checkpoint, without reading or checking its value."""
        with open(self.path(stage_name, key, extension), "rb") as file:
            head = file.readline()
        try:
            record = json.loads(head[len(_HEAD) :].rstrip().removesuffix(b","))
        except ValueError:
            raise Damaged("its record is not valid JSON") from None
        if not head.startswith(_HEAD) or not isinstance(record, dict):
            raise Damaged("its first line is not a chkpt record")
        return record

    def write(self, stage_name: str, key: str, extension: str, payload: bytes, record: dict[str, Any]) -> int:
        """Store a checkpoint atomically and durably; returns the payload's size.

        `record` is completed with the payload's length and checksum. On any failure no file is left behind.
        """
        fields = json.dumps({name: value for name, value in record.items() if name not in _CHECKED})
        opening = fields[:-1] + ", " if fields != "{}" else "{"
        head = _HEAD + opening.encode("ascii") + _record_end(key, payload) + b",\n" + _VALUE
        final = self.path(stage_name, key, extension)
        folder = os.path.dirname(final)
        temporary = os.path.join(folder, f".{key}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                with open(fd, "wb", closefd=True) as file:
                    file.write(head)
                    file.write(payload)
                    file.write(_TAIL)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, final)
            except BaseException:
                _remove(temporary)
                raise
            _fsync_folder(folder)
        except OSError as exc:
            raise StoreError(f"cannot write checkpoint {final!r}: {exc.strerror or exc}") from None
        return len(payload)


_CHECKED = ("key", "bytes", "checksum")


def _record_end(key: str, payload: bytes) -> bytes:
    """How a record ends: the fields a load checks, in this order, as json.dumps writes them."""
    return b'"key": "%s", "bytes": %d, "checksum": "%s"}' % (key.encode(), len(payload), checksum(payload).encode())


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
