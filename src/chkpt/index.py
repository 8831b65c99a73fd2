"""A stage folder's index: a line per checkpoint stored, so that listing a folder of 100,000 checkpoints opens
and stats none of them (a file status costs microseconds, 100,000 of them most of a second).

The index is `<stage folder>/.index`, one JSON array per line, appended (one `write` of `O_APPEND`) by the store
after a checkpoint's marker is in place, so it lists checkpoints oldest first; a listing sorts them newest first.
It is a hint, never the truth: the files are. A listing trusts an entry only while the marker it describes is
still the same file, by its inode number, which listing a folder gives for free (a checkpoint stored again is a
new file, renamed into place); a checkpoint with no such entry (stored by an older chkpt, copied to another
folder, or by a writer that crashed before appending) is listed from its record and its file status, as if there
were no index. So a lost, truncated or damaged index costs time, never a missing checkpoint.

Beside it, `<stage folder>/.used` notes loads: a line `<key> <unix seconds>` when a checkpoint is loaded, at most
once an hour a key (see store._note_use), so that a listing knows when each was last used without a file status.
`Store.gc` rewrites both to what it keeps.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, TypeAlias

NAME = ".index"
USED = ".used"


Entry: TypeAlias = "list[Any]"
"""What the index says of one checkpoint, as its line's JSON array: `[key, inode, size, stage, created]` and,
for a two-file checkpoint, `value extension, value size` after them. `inode` and `size` are its marker's when it
was stored, `stage` its stage's name, `created` unix seconds from its record. A list as parsed, not an object
made from it: a listing reads 100,000 of them, and checks each (`described`) only when its marker is found."""


def entry(key: str, inode: int, size: int, stage: str, created: float, value: tuple[str, int] | None) -> Entry:
    return [key, inode, size, stage, created] if value is None else [key, inode, size, stage, created, *value]


def described(entry: Entry) -> bool:
    """Whether an entry's fields are of the types an index line has (its key and length were checked when read)."""
    return (
        type(entry[1]) is int
        and type(entry[2]) is int
        and type(entry[3]) is str
        and type(entry[4]) in (int, float)
        and (len(entry) == 5 or (type(entry[5]) is str and type(entry[6]) is int))
    )


def _line(entry: Entry) -> bytes:
    return json.dumps(entry, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def append(folder: str, entry: Entry) -> None:
    """Add an entry to a folder's index. A failure is ignored: the checkpoint is whole, and a listing that finds no
    entry for it reads its record instead."""
    _append(os.path.join(folder, NAME), _line(entry))


def note_use(folder: str, key: str, moment: float) -> None:
    """Note that a checkpoint was loaded at `moment` (unix seconds). A failure is ignored (a read-only store)."""
    _append(os.path.join(folder, USED), b"%s %d\n" % (key.encode("ascii"), moment))


def _append(path: str, line: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def size(folder: str) -> int:
    """The index's size in bytes (0 if there is none): how many checkpoints a folder has taken, roughly."""
    try:
        return os.stat(os.path.join(folder, NAME)).st_size
    except OSError:
        return 0


def read(folder: str) -> tuple[dict[str, Entry], int]:
    """The index of a folder, by key (for a key stored several times, its last entry), and how many bytes of it
    were read. Lines that are not entries (a write cut short by a crash, a hand edit) are skipped."""
    lines, seen = _lines(os.path.join(folder, NAME))
    try:
        rows = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:  # some line is not JSON: parse them one by one, without it
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    found = {row[0]: row for row in rows if type(row) is list and len(row) in (5, 7) and type(row[0]) is str}
    return found, seen


def uses(folder: str) -> tuple[dict[str, float], int]:
    """When each checkpoint of a folder was last loaded, as far as its notes say, and how many bytes of them were
    read."""
    lines, seen = _lines(os.path.join(folder, USED))
    last: dict[str, float] = {}
    for line in lines:
        key, _, moment = line.partition(b" ")
        try:
            seconds = float(moment)
        except ValueError:
            continue
        name = key.decode("ascii", "replace")
        if seconds > last.get(name, 0.0):
            last[name] = seconds
    return last, seen


def _lines(path: str) -> tuple[list[bytes], int]:
    """The whole lines of a file (none if it cannot be read; a last line without its newline is an append a crash
    cut short, or one under way), and how many bytes they take."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return [], 0
    whole = data.rfind(b"\n") + 1
    return [line for line in data[:whole].split(b"\n") if line], whole


def rewrite(folder: str, entries: Iterable[Entry], used: dict[str, float], seen: tuple[int, int]) -> None:
    """Replace a folder's index by `entries` and its use notes by `used`, each atomically (a reader sees the old
    file or the new one). `seen` is how many bytes of each were read to make those: what was appended after that
    (a store or a load meanwhile) is carried over, but for an append in the instant between that last look and
    the replacement, which only makes a listing read that checkpoint's record, or miss one load."""
    notes = b"".join(b"%s %d\n" % (key.encode("ascii"), moment) for key, moment in used.items())
    _replace(os.path.join(folder, NAME), b"".join(_line(entry) for entry in entries), seen[0])
    _replace(os.path.join(folder, USED), notes, seen[1])


def _replace(path: str, data: bytes, seen: int) -> None:
    try:
        with open(path, "rb") as old:
            old.seek(seen)
            tail = old.read()
    except FileNotFoundError:
        if not data:
            return  # nothing to keep, and no file to replace
        tail = b""
    except OSError:
        return  # cannot be read: leave it as it is
    temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        with open(temporary, "wb") as file:
            file.write(data + tail[: tail.rfind(b"\n") + 1])
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def created_seconds(text: object) -> float | None:
    """Unix seconds from a record's `created` ("%Y-%m-%dT%H:%M:%S.ffffffZ", UTC; older records are to the second),
    or None if it is not one."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    import datetime  # only when a checkpoint is stored or listed: `import chkpt` does not load it

    try:
        moment = datetime.datetime.fromisoformat(text[:-1])
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return None
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()
