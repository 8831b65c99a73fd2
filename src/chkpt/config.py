"""`Config`: what a run may load, what it may store, where, and how much it says."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import ConfigError
from .pipeline import Pipeline
from .stage import Stage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, TypeAlias

    StageSelection: TypeAlias = "bool | Iterable[Stage[..., Any] | str]"


class Config:
    """How to run a pipeline.

    `load` and `store` are each True (every stage), False (none), or a sequence of Stages and/or stage names.
    A stage is loaded only when `load` allows it and a valid checkpoint with its exact key exists. `dir` is the
    checkpoint folder; None means the `CHKPT_DIR` environment variable, else `.chkpt` in the current directory,
    looked up when the run starts. `verbose=False` silences the per-stage lines on stderr (they still go to the
    `chkpt` logger). `format` is the format of stages that name none ("json"; "auto" picks one by each value's
    type). `durable=False` skips fsync when writing, for scratch work: writes stay atomic, but a power cut may
    lose recent checkpoints. `executor` decides where stages run: None or "sync" (one at a time, here), "threads",
    "processes", or any `concurrent.futures.Executor`; `workers` sizes the pools chkpt makes. `keep_going=True`
    runs every stage that does not depend on a failed one before raising `StagesFailed`. `on_store_error` is
    what happens when storing a computed value fails (a full disk, a lost mount): "raise" (the default) raises a
    `StoreError` naming the stage, as for any failed stage; "warn" warns (`ChkptWarning`, naming the stage and
    the error) and goes on with the value, unstored. A store that cannot be written at all fails before any stage
    runs either way. `dir` may be an fsspec URL (`s3://bucket/path`, `memory://x`; the chkpt[s3] extra), opened
    with `storage_options` (credentials, `endpoint_url`...). `progress` draws a progress line on stderr (stages
    done of those to do, the one running, the time so far; through tqdm when the chkpt[progress] extra is
    installed): True, False, or None (the default) for on when stderr is a terminal and the CI variable is unset.
    A run that is not quiet (`verbose`) ends with a summary line on stderr: `chkpt done: ...` (`Run.summary()`).
    """

    __slots__ = (
        "dir",
        "durable",
        "executor",
        "format",
        "keep_going",
        "load",
        "on_store_error",
        "progress",
        "storage_options",
        "store",
        "verbose",
        "workers",
    )

    load: bool | frozenset[str]
    store: bool | frozenset[str]
    dir: str | os.PathLike[str] | None
    verbose: bool
    format: str
    durable: bool
    executor: object
    workers: int | None
    keep_going: bool
    on_store_error: str
    progress: bool | None
    storage_options: dict[str, Any]

    def __init__(
        self,
        load: StageSelection = False,
        store: StageSelection = True,
        dir: str | os.PathLike[str] | None = None,
        verbose: bool = True,
        format: str = "json",
        durable: bool = True,
        executor: object = None,
        workers: int | None = None,
        keep_going: bool = False,
        on_store_error: str = "raise",
        storage_options: Mapping[str, Any] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.load = _selection("load", load)
        self.store = _selection("store", store)
        if dir is not None and not isinstance(dir, (str, os.PathLike)):
            raise ConfigError(f"Config(dir=...) must be a path, got {type(dir).__name__}")
        if not isinstance(format, str) or not format:
            raise ConfigError(f"Config(format=...) must be a format's name, got {format!r}")
        self.dir = dir
        self.verbose = bool(verbose)
        self.format = format
        self.durable = bool(durable)
        if isinstance(executor, type):
            raise ConfigError(
                f"Config(executor=...) takes an executor, not its class: pass {executor.__name__}(), not "
                f"{executor.__name__}"
            )
        if not (executor in (None, "sync", "threads", "processes") or callable(getattr(executor, "submit", None))):
            raise ConfigError(
                f"Config(executor=...) takes 'sync', 'threads', 'processes' or a concurrent.futures.Executor, "
                f"got {executor!r}"
            )
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ConfigError(f"Config(workers=...) must be a positive int, got {workers!r}")
        self.executor = executor
        self.workers = workers
        self.keep_going = bool(keep_going)
        if on_store_error not in ("raise", "warn"):
            raise ConfigError(f"Config(on_store_error=...) takes 'raise' or 'warn', got {on_store_error!r}")
        self.on_store_error = on_store_error
        if storage_options is not None and not isinstance(storage_options, Mapping):
            raise ConfigError(f"Config(storage_options=...) must be a dict, got {type(storage_options).__name__}")
        if storage_options and dir is not None and not is_url(os.fspath(dir)):
            raise ConfigError(
                f"Config(dir={os.fspath(dir)!r}, storage_options=...): storage options are for an fsspec URL "
                "(s3://bucket/path, ...); a local folder takes none"
            )
        self.storage_options = dict(storage_options or {})
        if progress is not None and not isinstance(progress, bool):
            raise ConfigError(
                f"Config(progress=...) takes True, False or None (on when stderr is a terminal), got {progress!r}"
            )
        self.progress = progress

    def directory(self) -> str:
        """The checkpoint folder this config means now."""
        if self.dir is not None:
            return os.fspath(self.dir)
        return os.environ.get("CHKPT_DIR") or ".chkpt"

    def may_load(self, stage_name: str) -> bool:
        return self.load if isinstance(self.load, bool) else stage_name in self.load

    def may_store(self, stage_name: str) -> bool:
        return self.store if isinstance(self.store, bool) else stage_name in self.store

    def check_names(self, known: Iterable[str]) -> None:
        """Raise ConfigError if `load` or `store` names a stage that is not in the pipeline: a typo would
        otherwise silently recompute (or not store) that stage."""
        names = set(known)
        for field in ("load", "store"):
            selection = getattr(self, field)
            if isinstance(selection, frozenset):
                unknown = sorted(selection - names)
                if unknown:
                    raise ConfigError(
                        f"Config({field}=...) names {unknown}, which {'is' if len(unknown) == 1 else 'are'} not "
                        f"a stage of this pipeline; its stages are {sorted(names)}"
                    )

    def __repr__(self) -> str:
        def show(selection: bool | frozenset[str]) -> str:
            return repr(selection) if isinstance(selection, bool) else repr(sorted(selection))

        return (
            f"Config(load={show(self.load)}, store={show(self.store)}, dir={self.dir!r}, verbose={self.verbose}, "
            f"format={self.format!r}, durable={self.durable}, executor={self.executor!r}, workers={self.workers}, "
            f"keep_going={self.keep_going}, on_store_error={self.on_store_error!r}, progress={self.progress}"
            # the options' values may be credentials: only their names are shown
            + (f", storage_options={{{', '.join(repr(k) + ': ...' for k in self.storage_options)}}})")
            if self.storage_options
            else ")"
        )


def is_url(directory: str) -> bool:
    """Whether a `Config(dir=...)` names an fsspec file system rather than a local folder (`file://` is local)."""
    scheme, found, _ = directory.partition("://")
    return bool(found) and scheme not in ("", "file", "local") and "/" not in scheme


def given(config: object, call: str, default: Config | None = None) -> Config:
    """The config a call was given: `default` (or `Config()`) for None, a ConfigError naming the call for
    anything but a Config (a dict, True, a folder), which would otherwise fail later with an internal error."""
    if config is None:
        return default if default is not None else Config()
    if not isinstance(config, Config):
        raise ConfigError(
            f"{call} takes a chkpt.Config, not a {type(config).__name__} ({config!r:.60}); for example "
            "chkpt.Config(load=True, dir='checkpoints')"
        )
    return config


def _selection(field: str, value: object) -> bool | frozenset[str]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, bytes, Stage)):
        raise ConfigError(f"Config({field}=...) takes True, False or a list of stages; wrap one stage: [{value!r}]")
    try:
        items = iter(value)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigError(
            f"Config({field}=...) takes True, False or a list of stages, got {type(value).__name__}"
        ) from None
    names = set()
    for item in items:
        if isinstance(item, Stage):
            names.add(item.name)
        elif isinstance(item, str):
            names.add(item)
        else:
            hint = ""
            if isinstance(item, Pipeline):
                hint = " (a Pipeline: list its stages instead, e.g. pipeline.stages())"
            elif callable(item):
                hint = " (decorate it with @chkpt.Stage.wrap())"
            raise ConfigError(f"Config({field}=...) takes Stages or stage names, got {item!r}{hint}")
    return frozenset(names)
