"""`chkpt.file(path)`: a file from outside the graph, as a source stage whose key covers the file's content.

A stage that reads a file by itself would keep its key when the file changes, and load a stale result. Passing
the file through `chkpt.file` puts the sha256 of its content into the key of every stage downstream of it.

Hashing is done when a run is planned, at most once per process for each version of the file: a version is the
file's size, modification time, status-change time (ctime), inode and device, which together change on any
write; ctime, unlike the modification time, cannot be set back by tools such as `touch` or `rsync -t`. So an
edit that keeps the size and the modification time is still seen. The digest is sha256 whatever is installed,
so that keys are the same on every machine.
"""

from __future__ import annotations

import hashlib
import os

from .pipeline import Pipeline, compose
from .stage import Stage

_CHUNK = 8 * 1024 * 1024
_digests: dict[str, tuple[tuple[int, int, int, int, int], bytes]] = {}


def file(path: str | os.PathLike[str]) -> Pipeline[str]:
    """A source stage whose value is `path` (as a str) and whose key covers the file's content.

    Use it as an input: `(chkpt.file("data/input.csv"),) >> parse`. A missing or unreadable file is reported,
    naming the stage, when a run is planned.
    """
    text = os.fspath(path)
    stage = Stage(
        _path,
        name=f"file:{os.path.basename(text) or text}",
        version=1,
        format="json",
        watch=_Content(text),
    ).bind(path=text)
    return compose((), stage)


def _path(path: str) -> str:
    return path


class _Content:
    """The watch of a file stage: the file's content digest. A class rather than a lambda so that the stage can
    be pickled for another process."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> bytes:
        return content_digest(self.path)


def content_digest(path: str) -> bytes:
    """The sha256 of the file's content, hashed again only when the file's version changed."""
    status = os.stat(path)
    version = (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino, status.st_dev)
    absolute = os.path.abspath(path)
    cached = _digests.get(absolute)
    if cached is not None and cached[0] == version:
        return cached[1]
    h = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            h.update(chunk)
    digest = h.digest()
    _digests[absolute] = (version, digest)
    return digest
