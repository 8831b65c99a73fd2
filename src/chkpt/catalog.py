"""Which checkpoints a store keeps, and removing the rest: `chkpt.Store(dir)`.

A run never deletes a checkpoint (an old key may become valid again when an edit is reverted), so a folder only
grows. `Store.checkpoints()` lists what it holds and `Store.gc()` removes all but the newest checkpoints of each
stage, or those older than an age, or both.

What counts as chkpt's, how a folder or a bucket is listed, and how a checkpoint is removed safely (under its
key's lock, record first) is listing.py's; this module decides what goes.

Orphans and temporary files are removed once their last write is an hour old (`LEFTOVER_AGE`): younger ones may
belong to a write in progress, in this process or on another machine sharing the folder.
"""

from __future__ import annotations

import operator
import os
import re
import time

from .collector import paused
from .config import is_url
from .errors import ChkptError, ConfigError
from .listing import Checkpoint, Folder, LocalListing, RemoteListing
from .stage import Stage
from .store import folder_name

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

_BY_KEY = operator.itemgetter(1)  # of a Checkpoint
_BY_CREATED = operator.itemgetter(2)
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


class Store:
    """A checkpoint store, the same one `Config(dir=...)` names: what it holds, and removing what is not wanted.

    `Store(dir)` takes a folder's path (str or os.PathLike), or an fsspec URL (`s3://bucket/prefix`,
    `memory://...`) with the `storage_options` to open it (as `Config(storage_options=...)`; needs `chkpt[s3]`);
    it reads nothing until asked, and a folder or prefix that does not exist holds no checkpoints. `root` is the
    folder's absolute path, or the URL.
    """

    __slots__ = ("_listing", "root")

    def __init__(self, dir: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
        if not isinstance(dir, (str, os.PathLike)) or isinstance(dir, bytes):
            raise ConfigError(f"Store(dir) takes a path (str or os.PathLike) or a URL, got {type(dir).__name__}")
        path = os.fspath(dir)
        if not isinstance(path, str) or not path:
            raise ConfigError(f"Store(dir) takes a non-empty str path, got {path!r}")
        if storage_options is not None and not isinstance(storage_options, dict):
            raise ConfigError(f"Store(storage_options=...) takes a dict, got {type(storage_options).__name__}")
        self._listing: LocalListing | RemoteListing
        if is_url(path):
            from .remote import RemoteStore

            self._listing = RemoteListing(RemoteStore(path, storage_options))
            self.root = path
            return
        if storage_options:
            raise ConfigError(f"Store({path!r}, storage_options=...): storage options are for an fsspec URL")
        if "://" in path:
            path = path.partition("://")[2]  # file:// or local://
        self.root = os.path.abspath(path)
        self._listing = LocalListing(self.root)

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    def checkpoints(self, stage: str | Stage[..., Any] | None = None) -> list[Checkpoint]:
        """Every whole checkpoint in the folder (of one stage if `stage` is given), grouped by stage in name
        order, newest first within a stage (ties by key).

        A stage name that has no folder here is a ConfigError naming the stages the folder holds: a typo would
        otherwise look like an empty stage.
        """
        folders = self._listing.scan()
        selected = None if stage is None else _selection([stage], folders, self.root, "checkpoints(stage=...)")
        return _ordered(folders, selected)[0]

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
        keep = _keep_last(keep_last) if keep_last is not None else (1 if reachable is None else 0)
        age = None if older_than is None else _seconds(older_than)
        scanned = time.time()  # before the listing: a marker written later was stored again meanwhile
        folders = self._listing.scan()
        selected = None if stages is None else _selection(stages, folders, self.root, "gc(stages=...)")
        now = time.time()
        doomed: set[tuple[str, str]] = set()
        # max_bytes alone removes only what makes room; with any other rule, those rules apply as without it
        if keep_last is not None or age is not None or reachable is not None or budget is None:
            doomed = {(cp.stage, cp.key) for cp, _ in _due(folders, selected, keep, age, now)}
        if reachable is not None:
            doomed -= reachable
        if budget is not None:
            doomed |= _over_budget(folders, selected, doomed, budget, keep if keep_last is not None else 0, reachable)
        return self._collect(folders, selected, doomed, dry_run, now, scanned, tidy=True, probes=stages is None)

    def remove(
        self, stage: str | Stage[..., Any], keys: Iterable[str] | None = None, dry_run: bool = False
    ) -> Collected:
        """Remove a stage's checkpoints: all of them, or those whose keys are given (whole keys, as listed), each
        under its key's lock as gc does (one a running pipeline holds is kept, in `skipped_locked`). A stage with
        no folder here, or a key it does not have, is a ConfigError, raised before anything is removed."""
        scanned = time.time()
        folders = self._listing.scan()
        selected = _selection([stage], folders, self.root, "remove(stage)")
        listed = {cp.key: cp for cp, _ in _ranked(folders, selected)}
        wanted = list(listed) if keys is None else list(keys)
        if isinstance(keys, str):
            raise ConfigError(f"remove(keys=...) takes a list of keys; wrap one key: [{keys!r}]")
        unknown = [key for key in wanted if key not in listed]
        if unknown:
            name = stage.name if isinstance(stage, Stage) else stage
            raise ConfigError(f"stage {name!r} has no checkpoint with key {unknown[0]!r} in {self.root!r}")
        doomed = {(listed[key].stage, key) for key in wanted}
        return self._collect(folders, selected, doomed, dry_run, time.time(), scanned, tidy=False, probes=False)

    def record(self, checkpoint: Checkpoint) -> dict[str, Any]:
        """A listed checkpoint's record (what stored it, when, its codec, size and checksum), read without
        loading or checking its value; StoreError if it cannot be read or is not chkpt's."""
        if not isinstance(checkpoint, Checkpoint):
            raise ConfigError(
                f"Store.record() takes a Checkpoint from Store.checkpoints(), not a {type(checkpoint).__name__}"
            )
        return self._listing.record(checkpoint)

    def _head(self, checkpoint: Checkpoint, size: int) -> bytes:
        """The first `size` bytes of a checkpoint's value file (for the JSON layout, its one file)."""
        return self._listing.head(checkpoint.files[-1], size)

    def _collect(
        self,
        folders: list[Folder],
        selected: dict[str, set[str]] | None,
        doomed: set[tuple[str, str]],
        dry_run: bool,
        now: float,
        scanned: float,
        tidy: bool,
        probes: bool,
    ) -> Collected:
        """Remove the `doomed` checkpoints (by stage and key) of the selected folders and, with `tidy`, what crashed
        writes left there an hour ago or more (with `probes`, in the store's root too). A checkpoint whose marker
        was written at `scanned` or later was stored again after the listing began, and is kept."""
        due: dict[str, list[Checkpoint]] = {}
        for cp, where in _ranked(folders, selected):
            if (cp.stage, cp.key) in doomed:
                due.setdefault(where, []).append(cp)
        removed: list[Checkpoint] = []
        skipped: list[Checkpoint] = []
        freed = 0
        temporaries = 0
        listing = self._listing
        for folder in folders:
            if selected is not None and folder.name not in selected:
                continue
            going = []
            for cp in due.get(folder.name, ()):
                if listing.held_elsewhere(folder.name, cp.key):
                    skipped.append(cp)
                else:
                    going.append(cp)
            leftovers = [
                leftover
                for leftover in (folder.leftovers if tidy else ())
                if now - leftover.modified > LEFTOVER_AGE
                and not (leftover.key and listing.held_elsewhere(folder.name, leftover.key))
            ]
            if dry_run:
                removed += going
                freed += sum(cp.bytes for cp in going) + sum(leftover.size for leftover in leftovers)
                temporaries += sum(leftover.temporary for leftover in leftovers)
                continue
            gone = set()
            for cp in going:
                outcome = listing.remove(folder, cp, scanned)
                if outcome == "removed":
                    removed.append(cp)
                    gone.add(cp.key)
                    freed += cp.bytes
                elif outcome == "locked":
                    skipped.append(cp)
            listing.removed(folder, gone)
            for leftover in leftovers:
                if listing.remove_file(leftover.path):
                    freed += leftover.size
                    temporaries += leftover.temporary
        if probes:
            for probe in listing.probes():
                if now - probe.modified > LEFTOVER_AGE and (dry_run or listing.remove_file(probe.path)):
                    freed += probe.size
                    temporaries += 1
        return Collected(tuple(removed), freed, temporaries, tuple(skipped))


def store_for(config: Config) -> Store:
    """The Store of the checkpoints a run with `config` uses."""
    return Store(config.directory(), storage_options=config.storage_options or None)


def newest_records(store: Store, stage: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The key and record of each checkpoint of `stage` (by the name in its record), newest first; those whose
    record cannot be read are left out, and a stage with no folder has none."""
    try:
        listed = store.checkpoints(stage)
    except ConfigError:  # no folder of this stage: nothing stored yet
        return
    for cp in listed:
        if cp.stage != stage:
            continue
        try:
            yield cp.key, store.record(cp)
        except ChkptError:
            continue  # damaged: the next newest may say as much


# --- choosing ---------------------------------------------------------------------------------------------------


def _ranked(folders: list[Folder], selected: dict[str, set[str]] | None) -> list[tuple[Checkpoint, str]]:
    """The selected checkpoints with their folder's name, by stage, newest first, ties by key."""
    with paused():
        ordered, where = _ordered(folders, selected)
        return [(cp, where[id(cp)]) for cp in ordered]


def _ordered(folders: list[Folder], selected: dict[str, set[str]] | None) -> tuple[list[Checkpoint], dict[int, str]]:
    """The selected checkpoints by stage, newest first, ties by key; and each one's folder, by its id.

    `selected` maps a folder to the stage names asked for in it (None: everything). A checkpoint is selected by
    its record's stage name; one whose record cannot be read, by its folder.
    """
    with paused():
        return _order(folders, selected)


def _order(folders: list[Folder], selected: dict[str, set[str]] | None) -> tuple[list[Checkpoint], dict[int, str]]:
    by_stage: dict[str, list[Checkpoint]] = {}
    where: dict[int, str] = {}
    for folder in folders:
        if selected is not None and folder.name not in selected:
            continue
        names = None if selected is None else selected[folder.name]
        for cp, named in folder.checkpoints:
            if names is None or not named or cp.stage in names:
                group = by_stage.get(cp.stage)
                if group is None:
                    group = by_stage[cp.stage] = []
                group.append(cp)
                where[id(cp)] = folder.name
    ordered: list[Checkpoint] = []
    for stage in sorted(by_stage):
        group = by_stage[stage]
        # Two stable sorts of one field each, the last the first in rank: faster than one on a tuple per item.
        group.sort(key=_BY_KEY)
        group.sort(key=_BY_CREATED, reverse=True)
        ordered += group
    return ordered, where


def _over_budget(
    folders: list[Folder],
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
    folders: list[Folder], selected: dict[str, set[str]] | None, keep: int, age: float | None, now: float
) -> list[tuple[Checkpoint, str]]:
    """The checkpoints to remove: past the `keep` newest of their stage and, with an age, older than it."""
    due = []
    position: dict[str, int] = {}
    for cp, folder in _ranked(folders, selected):
        rank = position[cp.stage] = position.get(cp.stage, -1) + 1
        if rank >= keep and (age is None or now - cp.created > age):
            due.append((cp, folder))
    return due


def _selection(names: Iterable[object], folders: list[Folder], root: str, call: str) -> dict[str, set[str]]:
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
