"""Running a plan on a Dask cluster (dask.distributed), given a `Client` as the executor.

The plan goes to the scheduler as one graph, so that Dask decides when each step is ready, without a round trip
to this process per step. A step runs where Dask puts it: it loads or computes its value there and stores its
checkpoint there, and the value stays there as an input of the steps that need it. Only the target's value travels
to this process. What each step did (a few numbers) comes back as a Dask event, so records and log lines still
appear here, in the order steps finish. Workers must reach the checkpoint folder at the same path.

Imported only when a run is given a Dask client; dask itself is imported by the client's owner.
"""

from __future__ import annotations

import functools
import queue
import threading
import time

from .compute import compute_step, note_stage, record_fields, watched_inputs, watches_of
from .errors import ChkptError, ConfigError, StagesFailed, add_note
from .plan import Reads, Replan
from .records import StageRecord
from .store import Damaged

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .plan import Plan, Step
    from .run import _Runner
    from .stage import Stage
    from .store import CheckpointStore

# The runs whose remaining steps must not start on this worker (a step failed, a checkpoint was damaged, or
# the caller was interrupted). Steps check it when they start; a worker's tasks run in its own threads.
_stopped: set[str] = set()

# How long to wait for news from the cluster before looking at the futures themselves (a worker that died
# sends no event).
_POLL_SECONDS = 1.0

# A worker's reports of steps that went well wait this long to be sent together: one event per step cost a
# quarter of the run time of trivial steps, at the scheduler and in the caller. A failure is sent at once.
_BATCH_SECONDS = 0.01

# How long the caller waits, after a run stopped, for the reports of steps that finished meanwhile.
_SETTLE_SECONDS = 5.0

# Reports not sent yet, per run topic, on this worker; its tasks run in its own threads.
_unsent: dict[str, list[list[Any]]] = {}
_unsent_lock = threading.Lock()


class RemoteStep:
    """What a worker needs to run one step: the stage, its constant arguments with the places of the upstream
    values, where and how to store, and the topic its report goes to."""

    __slots__ = (
        "action",
        "arguments",
        "format",
        "key",
        "may_load",
        "record",
        "stage",
        "store",
        "topic",
        "upstream",
        "watches",
    )

    def __init__(
        self,
        action: str,
        stage: Stage[..., Any],
        arguments: tuple[Any, ...],
        upstream: tuple[int, ...],
        store: CheckpointStore | None,
        format: str,
        key: str,
        record: dict[str, Any],
        watches: list[tuple[str, Callable[[], bytes], bytes | None]],
        topic: str,
        may_load: bool = False,
    ) -> None:
        self.action = action
        self.may_load = may_load
        self.stage = stage
        self.arguments = arguments
        self.upstream = upstream
        self.store = store
        self.format = format
        self.key = key
        self.record = record
        self.watches = watches
        self.topic = topic

    def __dask_tokenize__(self) -> str:
        # Dask tokenizes a graph it is given, by default by pickling every object in it; a step is already named
        # by its key and its run.
        return f"{self.key}-{self.topic}"

    def __call__(self, *values: Any) -> Any:
        # The step is its own task's function: Dask tokenizes a task's function anew in every task (a module-level
        # function took 40 us a time), and this one says its token at once.
        return run_step(self, *values)


class _Stopped(ChkptError):
    """A step that did not start because its run was stopped."""


class _Unreadable(ChkptError):
    """A checkpoint that a worker could not load."""


def run_step(step: RemoteStep, *values: Any) -> Any:
    """The task of one step on a worker: load or compute (and store) its value, report what it did, and return
    the value, which stays on the worker for the steps that need it."""
    if step.topic in _stopped:
        raise _Stopped(f"stage '{step.stage.name}' was not started: the run stopped")
    if step.action == "load":
        return _load(step)
    arguments = list(step.arguments)
    for place, value in zip(step.upstream, values, strict=True):
        arguments[place] = value
    del values
    started = time.perf_counter()
    try:
        value, seconds, size, unstored, loaded = compute_step(
            step.stage, tuple(arguments), step.store, step.format, step.key, step.record, step.watches, step.may_load
        )
    except BaseException:
        _report(step.topic, [step.key, "failed", time.perf_counter() - started, None, None], at_once=True)
        raise
    _report(step.topic, [step.key, "loaded" if loaded else "computed", seconds, size, unstored])
    return value


def _load(step: RemoteStep) -> Any:
    assert step.store is not None
    started = time.perf_counter()
    try:
        value, size, saved = step.store.read(step.stage.name, step.key, step.format, mmap=step.stage.mmap)
    except FileNotFoundError:
        reason = "it is not there on the worker"
    except Damaged as exc:
        reason = str(exc)
    except OSError as exc:
        reason = f"it cannot be read: {exc.strerror or exc}"
    else:
        _report(step.topic, [step.key, "loaded", time.perf_counter() - started, size, saved])
        return value
    _report(step.topic, [step.key, "damaged", 0.0, None, reason], at_once=True)
    raise _Unreadable(f"checkpoint of stage '{step.stage.name}' cannot be loaded: {reason}")


def _saved(detail: object) -> float | None:
    """A load report's detail: the seconds its checkpoint's record says the stage took (a load step's), or None
    (a compute step that found its checkpoint stored by another run reports no such thing)."""
    return float(detail) if isinstance(detail, (int, float)) and not isinstance(detail, bool) else None


def _report(topic: str, report: list[Any], at_once: bool = False) -> None:
    """Send `report` to the caller of run `topic`: with the others of this worker in the next batch, or with
    `at_once`, now (after those waiting, which keeps them in the order steps finished)."""
    from distributed import get_worker

    worker = get_worker()
    with _unsent_lock:
        batch = _unsent.setdefault(topic, [])
        batch.append(report)
        first = len(batch) == 1
    if at_once:
        _send(worker, topic)
    elif first:
        # call_later must run on the worker's event loop; add_callback is the way there from a task's thread.
        worker.loop.add_callback(worker.loop.call_later, _BATCH_SECONDS, _send, worker, topic)


def _send(worker: Any, topic: str) -> None:
    with _unsent_lock:
        batch = _unsent.pop(topic, None)
    if batch:
        worker.log_event(topic, batch)


def stop(topic: str) -> None:
    """Run on every worker: steps of the run `topic` that have not started yet will not start."""
    _stopped.add(topic)


def execute_on_dask(runner: _Runner, plan: Plan, client: Any) -> Any:
    """Run `plan` on the cluster of `client` and return the target's value. Raises as the other executors do:
    the first failure (others running finish and store), StagesFailed with keep_going, or Replan on a damaged
    checkpoint, keeping the futures of what finished in `runner.values` for the next plan."""
    import uuid

    if client.asynchronous:
        raise ConfigError("Config(executor=...) takes a Dask Client made without asynchronous=True: a run waits for it")
    steps = plan.steps
    topic = f"chkpt-{uuid.uuid4().hex}"
    store = None if runner.store is None else runner.store.for_workers()
    graph, names = _graph(plan, runner, store, topic)
    by_name = {name: steps[number] for number, name in names.items()}
    news: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
    client.subscribe_topic(topic, functools.partial(_unpack, news))
    futures: dict[int, Any] = {}
    try:
        futures = dict(zip(names, client.get(graph, list(names.values()), sync=False), strict=True))
        del graph
        return _follow(runner, plan, client, topic, futures, by_name, news)
    except KeyboardInterrupt:
        # The scheduler drops what has not started; what runs on a worker cannot be stopped from here and
        # finishes there, writing only whole checkpoints.
        client.cancel(list(futures.values()))
        raise
    finally:
        client.unsubscribe_topic(topic)


def _unpack(news: queue.SimpleQueue[list[Any]], event: tuple[float, list[list[Any]]]) -> None:
    """Take a batch of reports (a Dask event: its time and message) apart into `news`."""
    for report in event[1]:
        news.put(report)


def _graph(
    plan: Plan, runner: _Runner, store: CheckpointStore | None, topic: str
) -> tuple[dict[str, tuple[Any, ...]], dict[int, str]]:
    """The plan as a Dask graph: a task per step to load or compute, keyed by stage name, step key and run (the
    run's part keeps two runs of one pipeline from sharing tasks, and so reports). Values this run already holds
    (futures from an earlier plan) are passed as they are."""
    steps = plan.steps
    run_tag = topic[-8:]
    graph: dict[str, tuple[Any, ...]] = {}
    names: dict[int, str] = {}
    into = watched_inputs(steps)
    for step in steps:
        if step.action not in ("load", "compute"):
            continue
        name = names[step.number] = f"{step.stage.name}-{step.key[:32]}-{run_tag}"
        if step.action == "load":
            task = RemoteStep("load", step.stage, (), (), store, step.format, step.key, {}, [], topic)
            graph[name] = (task,)
            continue
        arguments: list[Any] = []
        upstream: list[int] = []
        dependencies: list[Any] = []
        for item in step.inputs:
            if isinstance(item, int):
                upstream.append(len(arguments))
                arguments.append(None)
                held = steps[item].action == "reuse"
                dependencies.append(runner.values[steps[item].key] if held else names[item])
            else:
                arguments.append(item.value)
        sources = into[step.number]
        task = RemoteStep(
            "compute",
            step.stage,
            tuple(arguments),
            tuple(upstream),
            store if step.store else None,
            step.format,
            step.key,
            record_fields(step, steps) if step.store and store is not None else {},
            watches_of(sources),
            topic,
            step.may_load,
        )
        graph[name] = (task, *dependencies)
    return graph, names


def _follow(
    runner: _Runner,
    plan: Plan,
    client: Any,
    topic: str,
    futures: dict[int, Any],
    by_name: dict[str, Step],
    news: queue.SimpleQueue[list[Any]],
) -> Any:
    """Record the steps' reports as they come; on a failure (unless keep_going) or a damaged checkpoint, stop the
    run's other steps, wait for those running, and raise. A future is let go (and Dask frees its value) once the
    last step that reads it has run."""
    steps = plan.steps
    by_key = {step.key: step for step in by_name.values()}
    consumers: dict[int, list[int]] = {}
    for step in by_name.values():
        if step.action == "compute":
            for item in step.inputs:
                if isinstance(item, int) and item in futures:
                    consumers.setdefault(item, []).append(step.number)
    reads = Reads(plan)
    target = plan.target
    waiting = set(futures)
    failed: list[Step] = []
    damaged: tuple[Step, str] | None = None
    order = {step.number: place for place, step in enumerate(s for s in steps if s.action == "compute")}
    while waiting:
        try:
            key, outcome, seconds, size, detail = news.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            lost = _lost(futures, waiting)
            if lost is None:
                continue
            step, error = steps[lost], futures[lost].exception()
            note_stage(error, step, steps, order.get(lost, 0) + 1)
            raise error from None
        step = by_key[key]
        waiting.discard(step.number)
        if outcome == "failed":
            failed.append(step)
            if not runner.config.keep_going:
                break
            waiting -= _downstream(step.number, consumers)
        elif outcome == "damaged":
            damaged = (step, detail)
            break
        else:
            if outcome == "loaded":
                runner.record(StageRecord(step.stage.name, step.key, "loaded", seconds, size, _saved(detail)))
            else:
                runner.report_computed(step, seconds, size, detail)
            if step.action == "compute":
                for item in reads.finished(step):
                    futures.pop(item, None)
    if waiting:
        _stop_and_settle(client, topic, futures, waiting, by_key, runner, news)
    if damaged is not None:
        step, reason = damaged
        runner.report_damage(step, reason)
        runner.values.update((steps[n].key, f) for n, f in futures.items() if f.status == "finished")
        raise Replan(step.key)
    if failed:
        errors = []
        for step in failed:
            error = futures[step.number].exception()
            note_stage(error, step, steps, order[step.number] + 1)
            errors.append((step.stage.name, error))
        if runner.config.keep_going:
            raise StagesFailed(errors)
        raise errors[0][1] from None
    try:
        return (futures[target.number] if target.number in futures else runner.values[target.key]).result()
    except Exception as exc:  # the value could not be sent back (it does not serialize), or a worker was lost
        add_note(exc, f"chkpt: getting the value of stage '{target.stage.name}' back from the Dask cluster")
        raise


def _downstream(number: int, consumers: dict[int, list[int]]) -> set[int]:
    """The steps that need step `number`, directly or not: they will not run once it failed."""
    found: set[int] = set()
    pending = list(consumers.get(number, ()))
    while pending:
        other = pending.pop()
        if other not in found:
            found.add(other)
            pending.extend(consumers.get(other, ()))
    return found


def _lost(futures: dict[int, Any], waiting: set[int]) -> int | None:
    """A step that ended without a report (its worker died, or someone cancelled it), if there is one."""
    for number in waiting:
        if futures[number].status in ("error", "cancelled"):
            return number
    return None


def _stop_and_settle(
    client: Any,
    topic: str,
    futures: dict[int, Any],
    waiting: set[int],
    by_key: dict[str, Step],
    runner: _Runner,
    news: queue.SimpleQueue[list[Any]],
) -> None:
    """Keep the run's steps that have not started from starting, wait for those running, and record those that
    finished meanwhile (their reports may come after the scheduler heard they finished: workers send them in
    batches)."""
    from distributed import wait

    client.run(stop, topic)
    wait([futures[n] for n in waiting])  # type: ignore[no-untyped-call]
    unreported = {n for n in waiting if futures[n].status == "finished"}
    deadline = time.monotonic() + _SETTLE_SECONDS
    while True:
        try:
            if unreported:
                key, outcome, seconds, size, detail = news.get(timeout=max(0.0, deadline - time.monotonic()))
            else:
                key, outcome, seconds, size, detail = news.get_nowait()
        except queue.Empty:
            return
        step = by_key[key]
        unreported.discard(step.number)
        if outcome == "loaded":
            runner.record(StageRecord(step.stage.name, step.key, "loaded", seconds, size, _saved(detail)))
        elif outcome == "computed":
            runner.report_computed(step, seconds, size, detail)
