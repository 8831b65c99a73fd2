"""One step's work, wherever it runs: compute a stage from its inputs and store its checkpoint; and the facts
about a step that travel with it (its record's fields, the watched sources it was made from) or are added to its
error (which stage raised).

Everything here is module-level and takes plain arguments, so that a worker process or a Dask worker runs the
same code as this process.
"""

from __future__ import annotations

import time

from . import codecs
from ._version import __version__
from .errors import ChkptError, SerializationError, StoreError, add_note
from .modules import module_identity
from .store import Damaged

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .plan import Step
    from .stage import Stage
    from .store import CheckpointStore


def compute_step(
    stage: Stage[..., Any],
    args: tuple[Any, ...],
    store: CheckpointStore | None,
    format_name: str,
    key: str,
    record: dict[str, Any],
    watches: list[tuple[str, Callable[[], bytes], bytes | None]],
    may_load: bool = False,
) -> tuple[Any, float, int | None, str | None, bool]:
    """Compute one stage and store its value: the work of a step, wherever it runs (so it pickles).

    Returns the value, the seconds it took, the bytes stored (None if it was not stored), why a value that was
    to be stored was not (a sentence for a warning, or None), and whether the value was loaded instead. A value
    is not stored when a watched source (a file) changed since the run was planned (it may come from the new
    content, and its key is the old content's), or when the store's write failed and the store is told to warn
    (`on_error="warn"`; otherwise that is a StoreError). The stage's own exceptions propagate.

    A step that stores holds its key's lock while it computes, so that runs sharing the store take turns: one
    computes, the others wait. One that waited and `may_load` (the plan found no checkpoint, and loading is
    allowed) then loads the checkpoint that the other run stored, instead of computing it again.
    """
    if store is None:
        return _compute(stage, args)
    with store.lock(stage.name, key):
        if may_load:
            started = time.perf_counter()
            try:
                value, size, _ = store.read(stage.name, key, format_name, mmap=stage.mmap)
            except (OSError, Damaged, StoreError):
                pass  # still missing (the usual case), or unusable: compute it
            else:
                return value, time.perf_counter() - started, size, None, True
        value, seconds, _, _, _ = _compute(stage, args)
        for name, watch, planned in watches:
            try:
                unchanged = watch() == planned
            except OSError:
                unchanged = False
            if not unchanged:
                unstored = (
                    f"'{name}' changed while this run was going, so the result of stage '{stage.name}' is not "
                    "stored: it may come from the new content, and its key is the old content's. The next run "
                    "computes it again."
                )
                return value, seconds, None, unstored, False
        try:
            codec = codecs.for_value(value) if format_name == codecs.AUTO else codecs.get(format_name)
            size = store.write(stage.name, key, format_name, codec, value, {**record, "seconds": round(seconds, 6)})
        except SerializationError as exc:
            raise SerializationError(f"stage '{stage.name}': {exc}") from None
        except StoreError as exc:
            if store.on_error != "warn":
                raise StoreError(f"stage '{stage.name}': {exc}") from None
            unstored = (
                f"stage '{stage.name}' was computed but not stored ({exc}); the run goes on with its value, and the "
                "next run computes it again"
            )
            return value, seconds, None, unstored, False
        return value, seconds, size, None, False


def compute_in_worker(stage: Stage[..., Any], *args: Any) -> tuple[Any, float, int | None, str | None, bool]:
    """`compute_step` for a pool whose workers are other processes. A stage's exception travels back as a
    `Carried`, which `rebuilt` turns into the exception itself in the process that ran the pipeline: an exception
    whose class its pickle cannot rebuild there (an `__init__` with other arguments than the exception's `args`)
    would otherwise break the whole pool and be lost."""
    try:
        return compute_step(stage, *args)
    except Exception as exc:
        carried = _carried(stage.name, exc)
    # raised outside the handler, so that the stage's exception does not travel along as its __context__
    raise carried


def _carried(stage: str, exc: Exception) -> Carried:
    import pickle
    import traceback

    try:
        pickled = pickle.dumps(exc)
    except Exception:  # the exception itself cannot be pickled: what it says still travels
        pickled = b""
    kind = type(exc)
    text = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
    return Carried(stage, f"{kind.__module__}.{kind.__qualname__}", str(exc), text, pickled)


class Carried(Exception):
    """A stage's exception on its way back from a worker process: (stage, type name, message, traceback text,
    pickle). Built with the plain exception constructor, so that it always pickles and unpickles."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, shown as the cause of the exception rebuilt."""

    def __str__(self) -> str:
        return f"\n{self.args[0]}"


def rebuilt(exc: BaseException) -> BaseException:
    """The exception a stage raised in a worker process, rebuilt from its `Carried` here, with the worker's
    traceback as its cause; a ChkptError that says what it was if it cannot be rebuilt here. Any other exception
    is returned as it is."""
    if not isinstance(exc, Carried):
        return exc
    import pickle

    stage, kind, message, text, pickled = exc.args
    original: object
    try:
        original = pickle.loads(pickled)
    except Exception:
        original = None
    if not isinstance(original, BaseException):
        original = ChkptError(
            f"stage '{stage}' raised {kind}: {message} (it comes back from its worker process as this ChkptError, "
            "since that exception cannot be pickled and rebuilt)"
        )
    original.__cause__ = RemoteTraceback(text)
    return original


def _compute(stage: Stage[..., Any], args: tuple[Any, ...]) -> tuple[Any, float, None, None, bool]:
    started = time.perf_counter()
    value = stage.call_with_inputs(args)
    return value, time.perf_counter() - started, None, None, False


def record_fields(step: Step, steps: list[Step]) -> dict[str, Any]:
    stage = step.stage
    return {
        "chkpt_version": __version__,
        "stage": stage.name,
        "module": module_identity(getattr(stage.func, "__module__", None) or "__main__"),
        "format": step.format,
        "codec": step.format,
        "inputs": input_keys(step, steps),
        "created": created_now(),
        "why": step.anatomy,
    }


def created_now() -> str:
    """A record's `created` for now (see `created_at`)."""
    return created_at(time.time())


def created_at(seconds: float) -> str:
    """A record's `created` for a moment in unix seconds: UTC to the microsecond, so that gc's "newest" is right
    for checkpoints of a stage stored within one second (a sweep, a quick rerun)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def input_keys(step: Step, steps: list[Step]) -> list[str]:
    """A step's inputs as its record lists them: an upstream step's key, or a constant's digest."""
    return [steps[i].key if isinstance(i, int) else "constant:" + i.digest.hex()[:32] for i in step.inputs]


def watched_inputs(steps: list[Step]) -> list[list[Step]]:
    """For each step (by number), the watched steps (files) whose content flows into it, through steps of any
    action. A source that changes during the run must not have a result made from its new content stored under
    its old content's key, also when the source's own step was loaded or skipped: a stage that reads the file
    itself would see the new content."""
    if all(step.watched is None for step in steps):
        return [[]] * len(steps)  # one empty list shared: a plan of 100,000 steps often watches nothing
    out_of: list[frozenset[int]] = []
    into: list[list[Step]] = []
    for step in steps:  # a plan lists each step after its inputs
        upstream: frozenset[int] = frozenset().union(*(out_of[i] for i in step.inputs if isinstance(i, int)))
        into.append([steps[i] for i in sorted(upstream)])
        out_of.append(upstream | {step.number} if step.watched is not None else upstream)
    return into


def watches_of(sources: list[Step]) -> list[tuple[str, Callable[[], bytes], bytes | None]]:
    """The watched sources a step's value was made from, with what their watch returned when planned."""
    return [(source.stage.name, source.stage.watch, source.watched) for source in sources if source.stage.watch]


def note_stage(exc: BaseException, step: Step, steps: list[Step], position: int) -> None:
    total = sum(s.action == "compute" for s in steps)
    add_note(
        exc,
        f"chkpt: raised by stage '{step.stage.name}' (step {position} of {total} to compute for "
        f"'{steps[-1].stage.name}', key {step.key[:12]})",
    )
