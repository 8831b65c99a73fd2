"""Running a plan on threads of this process (`Config(executor="threads")`).

Each thread takes a ready step, runs it, and then itself marks what became ready, so a step passes from one thread
to the next without a round trip through the caller's thread (that round trip, two thread switches per step,
cost more than a trivial stage). The caller's thread only waits, and then raises or returns as the other
executors do. Records and log lines are made as steps finish, in that order; warnings (a damaged checkpoint, a
file that changed, a value not stored) are issued from the caller's thread, where warning filters and tests
expect them.

The threads are daemons: on Ctrl-C the caller returns at once, no new step starts, and the process can exit
without waiting for a running stage (stores are atomic, so that leaves no half checkpoint).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import deque

from .compute import compute_step, note_stage, record_fields, watched_inputs, watches_of
from .errors import StagesFailed, StoreError
from .plan import Reads, Replan
from .records import StageRecord
from .store import Damaged

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .plan import Plan, Step
    from .run import _Runner


def default_workers() -> int:
    """ThreadPoolExecutor's default size: threads mostly wait on I/O, so more than the cores."""
    return min(32, (os.cpu_count() or 1) + 4)


class _Schedule:
    """The state the threads share, guarded by `lock`."""

    def __init__(self, runner: _Runner, plan: Plan) -> None:
        steps = plan.steps
        self.runner = runner
        self.plan = plan
        self.lock = threading.Lock()
        self.work = threading.Condition(self.lock)  # a step became ready, or the run stops: for the threads
        self.idle = threading.Condition(self.lock)  # the run is finished: for the caller
        self.ready: deque[int] = deque()
        self.unfinished: dict[int, int] = {}  # per compute step: inputs not finished yet
        self.readers: dict[int, list[int]] = {}  # per step: the compute steps that read it
        self.reads = Reads(plan)
        for step in steps:
            if step.action == "compute":
                inputs = {i for i in step.inputs if isinstance(i, int)}
                for i in inputs:
                    self.readers.setdefault(i, []).append(step.number)
                self.unfinished[step.number] = sum(steps[i].action != "reuse" for i in inputs)
                if not self.unfinished[step.number]:
                    self.ready.append(step.number)
            elif step.action == "load":
                self.ready.append(step.number)
        self.running = 0
        self.position = 0
        self.stopping = False
        self.failures: list[tuple[Step, BaseException]] = []  # the stages' errors
        self.broken: BaseException | None = None  # an error of chkpt's own while running a step
        self.replan: str | None = None
        self.deferred: list[Callable[[], None]] = []  # warnings, for the caller's thread
        self.watched_inputs = watched_inputs(steps)

    @property
    def finished(self) -> bool:
        return self.running == 0 and (self.stopping or not self.ready)

    def stop(self) -> None:
        """No step starts from now on (with the lock held)."""
        self.stopping = True
        self.work.notify_all()


def execute_on_threads(runner: _Runner, plan: Plan, workers: int | None) -> Any:
    """Run `plan` on `workers` threads and return the target's value (see the module's docstring)."""
    schedule = _Schedule(runner, plan)
    threads = [
        threading.Thread(target=_serve, args=(schedule,), name=f"chkpt-{number}", daemon=True)
        for number in range(min(workers or default_workers(), max(1, len(schedule.ready) + len(schedule.unfinished))))
    ]
    for thread in threads:
        thread.start()
    try:
        with schedule.lock:
            while not schedule.finished:
                schedule.idle.wait()
    except BaseException:
        with schedule.lock:
            schedule.stop()
        raise
    for thread in threads:  # each is returning: nothing is left to do
        thread.join()
    for warn in schedule.deferred:
        warn()
    if schedule.broken is not None:
        raise schedule.broken
    if schedule.replan is not None:
        raise Replan(schedule.replan)
    if schedule.failures:
        if runner.config.keep_going:
            raise StagesFailed([(step.stage.name, exc) for step, exc in schedule.failures])
        raise schedule.failures[0][1]
    return runner.values[plan.target.key]


def _serve(schedule: _Schedule) -> None:
    """One thread: take ready steps and run them until nothing is left to do.

    A step's work runs without the lock; what it leaves to do with the lock held (its value, its record, what
    became ready) is done when the thread takes the lock again for its next step: one lock round per step.
    """
    steps = schedule.plan.steps
    lock = schedule.lock
    ending: Callable[[], None] | None = None
    while True:
        with lock:
            if ending is not None:
                try:
                    ending()
                except BaseException as exc:
                    _break(schedule, exc)
                ending = None
                schedule.running -= 1
                if schedule.finished:
                    schedule.work.notify_all()
                    schedule.idle.notify_all()
            while not schedule.ready and not schedule.finished and not schedule.stopping:
                schedule.work.wait()
            if schedule.stopping or not schedule.ready:
                return
            step = steps[schedule.ready.popleft()]
            schedule.running += 1
            if schedule.runner.progress is not None:
                schedule.runner.progress.start(step.stage.name)
            try:
                prepared = _prepare(schedule, step) if step.action == "compute" else None
            except BaseException as exc:
                _break(schedule, exc)
                ending = _nothing
                continue
        try:
            ending = _load(schedule, step) if prepared is None else _compute(schedule, step, *prepared)
        except BaseException as exc:
            ending = functools.partial(_break, schedule, exc)


def _break(schedule: _Schedule, error: BaseException) -> None:
    """An error of chkpt's own (not a stage's, which _compute keeps): stop, and raise it in the caller rather
    than leave the caller waiting for a step that will never finish (with the lock held)."""
    schedule.broken = schedule.broken or error
    schedule.stop()


def _prepare(schedule: _Schedule, step: Step) -> tuple[int, tuple[Any, ...], list[Step]]:
    """What a compute step needs from the shared state (with the lock held): its place in the run (for a
    failure's note), its arguments, and the watched sources to check again before storing."""
    steps = schedule.plan.steps
    schedule.position += 1
    sources = schedule.watched_inputs[step.number]
    return schedule.position, schedule.runner.arguments(step, steps), sources


def _load(schedule: _Schedule, step: Step) -> Callable[[], None]:
    """Load `step`'s checkpoint; return what is left to do with the lock held."""
    runner = schedule.runner
    assert runner.store is not None
    if schedule.stopping:  # the run stopped after this step was taken
        return _nothing
    started = time.perf_counter()
    try:
        value, size, saved = runner.store.read(step.stage.name, step.key, step.format, mmap=step.stage.mmap)
    except StoreError as exc:
        path = runner.store.marker(step.stage.name, step.key, step.format)
        error = StoreError(f"stage '{step.stage.name}': checkpoint {path}: {exc}")
        return functools.partial(_fail, schedule, step, error, True)
    except (FileNotFoundError, Damaged, OSError) as exc:
        reason = (
            "it disappeared after the run was planned"
            if isinstance(exc, FileNotFoundError)
            else str(exc)
            if isinstance(exc, Damaged)
            else f"it cannot be read: {getattr(exc, 'strerror', None) or exc}"
        )

        def damaged() -> None:
            schedule.deferred.append(lambda: runner.report_damage(step, reason))
            if schedule.replan is None:
                schedule.replan = step.key
            schedule.stop()

        return damaged
    seconds = time.perf_counter() - started

    def loaded() -> None:
        runner.values[step.key] = value
        runner.record(StageRecord(step.stage.name, step.key, "loaded", seconds, size, saved))
        _done(schedule, step)

    return loaded


def _compute(
    schedule: _Schedule, step: Step, position: int, arguments: tuple[Any, ...], sources: list[Step]
) -> Callable[[], None]:
    """Compute `step` (and store it); return what is left to do with the lock held."""
    runner = schedule.runner
    steps = schedule.plan.steps
    if schedule.stopping:
        return _nothing
    store = runner.store if step.store else None
    fields = record_fields(step, steps) if store is not None else {}
    try:
        value, seconds, size, unstored, loaded = compute_step(
            step.stage,
            arguments,
            store,
            step.format,
            step.key,
            fields,
            watches_of(sources) if sources else [],
            step.may_load,
        )
    except BaseException as exc:
        note_stage(exc, step, steps, position)
        return functools.partial(_fail, schedule, step, exc, not runner.config.keep_going)
    del arguments

    def computed() -> None:
        runner.values[step.key] = value
        if unstored is None:
            runner.report_computed(step, seconds, size, None, loaded)
        else:
            schedule.deferred.append(lambda: runner.report_computed(step, seconds, size, unstored))
        _done(schedule, step)
        for item in schedule.reads.finished(step):
            runner.values.pop(steps[item].key, None)

    return computed


def _nothing() -> None:
    pass


def _fail(schedule: _Schedule, step: Step, error: BaseException, stop: bool) -> None:
    schedule.failures.append((step, error))
    if stop:
        schedule.stop()


def _done(schedule: _Schedule, step: Step) -> None:
    """Mark `step` finished (with the lock held): the steps whose last input it was become ready."""
    ready = schedule.ready
    for reader in schedule.readers.get(step.number, ()):
        schedule.unfinished[reader] -= 1
        if schedule.unfinished[reader] == 0:
            ready.append(reader)
            # The thread that finished `step` takes the next step itself: wake another only for one more.
            if len(ready) > 1:
                schedule.work.notify()
