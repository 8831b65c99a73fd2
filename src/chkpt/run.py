"""Running a plan: compute or load each step once its inputs are ready, store what may be stored, and keep a
record of every step.

A stage's exception reaches the caller as itself, with a note naming the stage; whatever finished before it is
already stored, so a rerun with `load=True` resumes there. A checkpoint that turns out to be damaged when it is
read is reported, left out, and the run is planned again from what it already holds.
"""

from __future__ import annotations

import sys
import time
import warnings

from .compute import (
    compute_in_worker,
    compute_step,
    note_stage,
    rebuilt,
    record_fields,
    watched_inputs,
    watches_of,
)
from .config import Config, given, is_url
from .errors import ChkptWarning, ConfigError, PipelineError, StagesFailed, StoreError
from .executors import InlineExecutor, abandon, is_dask_client, open_executor, pickles_its_work
from .plan import Plan, Reads, Replan, Step, make_plan
from .progress import Progress, wanted
from .records import Run, StageRecord, size_text
from .store import Damaged, LocalStore
from .threads import execute_on_threads

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from concurrent.futures import Executor
    from typing import Any, TypeVar

    from .pipeline import Pipeline
    from .store import CheckpointStore

    R = TypeVar("R")


def run(pipeline: Pipeline[R], config: Config | None = None) -> Run[R]:
    """Run `pipeline` with `config` (default `Config()`) and return the value with a record of every stage.

    Everything that can be checked before a stage runs is: the config against the pipeline (when planning),
    then, if anything may be stored, that the folder can be written.
    """
    config = given(config, "pipeline.run(config)")
    store = _open_store(config) if config.load is not False or config.store is not False else None
    runner = _Runner(config, store)
    damaged: set[str] = set()
    pool, owned = None, False
    try:
        while True:
            plan = make_plan(pipeline, config, store, damaged=damaged, available=runner.values.keys())
            if runner.progress is not None:
                runner.progress.plan(sum(step.action in ("load", "compute") for step in plan.steps))
            if store is not None and config.store is not False and not damaged:
                store.ensure_writable()
            if pool is None and config.executor not in (None, "sync", "threads"):
                pool, owned = open_executor(config.executor, config.workers)
                if pool is not None and pickles_its_work(pool):
                    _check_picklable(plan)
                    if store is not None and not store.shared_between_processes:
                        raise ConfigError(
                            f"Config(dir={config.dir!r}) lives in this process only, and Config(executor="
                            f"{config.executor!r}) runs stages in others; use executor='threads', or a store they share"
                        )
            elif pool is None and config.keep_going:
                # keep_going needs the scheduler that tracks what a failure blocks; run it in this process.
                pool, owned = InlineExecutor(), False
            try:
                if config.executor == "threads":
                    value = execute_on_threads(runner, plan, config.workers)
                elif pool is None:
                    value = runner.execute(plan)
                elif is_dask_client(pool):
                    from .cluster import execute_on_dask

                    value = execute_on_dask(runner, plan, pool)
                else:
                    value = runner.execute_parallel(plan, pool)
            except Replan as replan:
                damaged.add(replan.key)
                continue
            return runner.finish(value, sum(step.action == "skip" for step in plan.steps))
    except KeyboardInterrupt:
        # Stop promptly: what has not started is cancelled, and nothing left running keeps the process alive.
        if owned and pool is not None:
            abandon(pool)
            owned = False
        raise
    finally:
        if owned and pool is not None:
            pool.shutdown(wait=True)
        if runner.progress is not None:
            runner.progress.close()


def _open_store(config: Config) -> CheckpointStore:
    """The store `config.dir` names: a folder, or for a URL (s3://, memory://...) an fsspec file system."""
    directory = config.directory()
    if "://" in directory:
        if is_url(directory):
            from .remote import RemoteStore

            return RemoteStore(directory, config.storage_options, on_error=config.on_store_error)
        directory = directory.partition("://")[2]  # file://
    return LocalStore(directory, durable=config.durable, on_error=config.on_store_error)


def _check_picklable(plan: Plan) -> None:
    """For an executor that runs stages in other processes, every stage to compute must pickle: say so now,
    naming the stage, rather than when the pool first fails to send it."""
    for step in plan.steps:
        problem = _pickling_error(step.stage) if step.action == "compute" else None
        if problem is None:
            continue
        if problem.startswith(f"stage '{step.stage.name}'"):
            raise PipelineError(problem)
        if step.stage.watch is not None and _pickling_error(step.stage.watch) is not None:
            raise PipelineError(
                f"stage '{step.stage.name}': its watch cannot be sent to another process ({problem}); make it a "
                "function defined at module level (functools.partial of one is fine), or run with "
                "Config(executor='threads')"
            )
        raise PipelineError(
            f"stage '{step.stage.name}' cannot be sent to another process ({problem}); define its function at "
            "module level, or run with Config(executor='threads')"
        )


def _pickling_error(thing: object) -> str | None:
    """Why `thing` cannot be pickled, or None if it can."""
    import pickle

    try:
        pickle.dumps(thing)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        return str(exc)
    return None


class _Runner:
    """Executes plans: in this process in plan order, or on a pool step by step; keeps the values and records.
    (cluster.py runs a plan on Dask through its `record` and `report_*` methods.)"""

    def __init__(self, config: Config, store: CheckpointStore | None) -> None:
        self.config = config
        self.store = store
        self.values: dict[str, Any] = {}
        self.records: list[StageRecord] = []
        self.logger = _logger()
        self._reads: Reads | None = None  # of the plan execute_parallel runs
        self.progress = Progress() if wanted(config.progress, sys.stderr) else None

    def finish(self, value: Any, skipped: int) -> Run[Any]:
        """The run's result, and its summary line (on stderr unless quiet; to the `chkpt` logger)."""
        run = Run(value, self.records, skipped)
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        logs = self.logger is not None and self.logger.isEnabledFor(_INFO)
        if not (logs or self.config.verbose):
            return run
        summary = run.summary()
        if logs and self.logger is not None:
            self.logger.info(summary)
        if self.config.verbose:
            print(f"chkpt done: {summary}", file=sys.stderr)
        return run

    def execute(self, plan: Plan) -> Any:
        # A plan lists every step after its inputs, so running them in that order is running them as soon as
        # they are ready; sorting them again would only cost time.
        steps = plan.steps
        reads = Reads(plan)
        into = watched_inputs(steps)
        position = 0
        for step in steps:
            if self.progress is not None and step.action in ("compute", "load"):
                self.progress.start(step.stage.name)
            if step.action == "compute":
                position += 1
                self._compute(step, steps, position, into[step.number])
                for item in reads.finished(step):
                    # Let go of intermediate values as soon as the last stage that reads them ran.
                    self.values.pop(steps[item].key, None)
            elif step.action == "load":
                self._load(step)
        return self.values[plan.target.key]

    def _load(self, step: Step) -> None:
        assert self.store is not None
        name = step.stage.name
        started = time.perf_counter()
        try:
            value, size, saved = self.store.read(name, step.key, step.format, mmap=step.stage.mmap)
        except FileNotFoundError:
            reason = "it disappeared after the run was planned"
            self.report_damage(step, reason)
            raise Replan(step.key) from None
        except Damaged as exc:
            self.report_damage(step, str(exc))
            raise Replan(step.key) from None
        except OSError as exc:
            self.report_damage(step, f"it cannot be read: {exc.strerror or exc}")
            raise Replan(step.key) from None
        except StoreError as exc:
            path = self.store.marker(name, step.key, step.format)
            raise StoreError(f"stage '{name}': checkpoint {path}: {exc}") from None
        self.values[step.key] = value
        self.record(StageRecord(name, step.key, "loaded", time.perf_counter() - started, size, saved))

    def report_damage(self, step: Step, reason: str) -> None:
        assert self.store is not None
        path = self.store.marker(step.stage.name, step.key, step.format)
        message = f"checkpoint {path} of stage '{step.stage.name}' cannot be loaded: {reason}; recomputing it"
        # The warning is what a person sees; the log record is for programs that collect logs, and is skipped
        # where nobody configured a handler, which would print the same text a second time.
        if self.logger is not None and self.logger.hasHandlers():
            self.logger.warning(message)
        warnings.warn(message, ChkptWarning, stacklevel=_caller_stacklevel())

    def _compute(self, step: Step, steps: list[Step], position: int, sources: list[Step]) -> None:
        args = self.arguments(step, steps)
        store = self.store if step.store else None
        fields = record_fields(step, steps) if store is not None else {}
        try:
            watches = watches_of(sources) if sources else []
            outcome = compute_step(step.stage, args, store, step.format, step.key, fields, watches, step.may_load)
        except BaseException as exc:
            note_stage(exc, step, steps, position)
            raise
        self._finish(step, *outcome)

    def arguments(self, step: Step, steps: list[Step]) -> tuple[Any, ...]:
        return tuple(self.values[steps[i].key] if isinstance(i, int) else i.value for i in step.inputs)

    def _finish(
        self, step: Step, value: Any, seconds: float, size: int | None, unstored: str | None, loaded: bool
    ) -> None:
        """Take a computed step's value and report it, in this process whatever computed it."""
        self.values[step.key] = value
        self.report_computed(step, seconds, size, unstored, loaded)

    def report_computed(
        self, step: Step, seconds: float, size: int | None, unstored: str | None, loaded: bool = False
    ) -> None:
        """Record a computed step (stored if `size` is not None), and warn with `unstored` why a value that was to
        be stored was not; or a step that was `loaded` instead, from a checkpoint another run stored while this
        one waited for it."""
        if loaded:
            self.record(StageRecord(step.stage.name, step.key, "loaded", seconds, size))
            return
        if unstored is not None:
            warnings.warn(unstored, ChkptWarning, stacklevel=_caller_stacklevel())
        outcome = "computed" if size is None else "stored"
        self.record(StageRecord(step.stage.name, step.key, outcome, seconds, size))

    def _collect(
        self,
        finished: Any,
        running: dict[Any, tuple[Step, int]],
        steps: list[Step],
        failures: list[tuple[Step, BaseException]],
        blocked: set[int],
    ) -> list[int]:
        """Take the results of finished futures; returns their step numbers."""
        numbers = []
        for future in finished:
            step, place = running.pop(future)
            try:
                outcome = future.result()
            except BaseException as carried:
                exc = rebuilt(carried)
                note_stage(exc, step, steps, place)
                failures.append((step, exc))
                blocked.add(step.number)
            else:
                self._finish(step, *outcome)
                self._let_go(step, steps)
            numbers.append(step.number)
        return numbers

    def _let_go(self, step: Step, steps: list[Step]) -> None:
        """Drop the input values of a computed step that no step still to finish reads."""
        assert self._reads is not None  # set by execute_parallel, the only caller's caller
        for item in self._reads.finished(step):
            self.values.pop(steps[item].key, None)

    def _drain(
        self,
        running: dict[Any, tuple[Step, int]],
        steps: list[Step],
        failures: list[tuple[Step, BaseException]],
        blocked: set[int],
    ) -> None:
        import concurrent.futures

        self._collect(concurrent.futures.wait(running)[0], running, steps, failures, blocked)

    def execute_parallel(self, plan: Plan, pool: Executor) -> Any:
        """Run the plan's steps on `pool`, each as soon as its inputs are ready. Loads happen here; computing and
        storing happen where the pool runs them. After a failure nothing new starts (unless keep_going), what
        runs finishes and stores, and the first error is raised; with keep_going, every step that does not
        depend on a failed one runs, then StagesFailed lists the failures."""
        import concurrent.futures
        import graphlib

        steps = plan.steps
        elsewhere = pickles_its_work(pool)
        sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
        for step in steps:
            if step.action == "compute":
                sorter.add(step.number, *(i for i in step.inputs if isinstance(i, int)))
            elif step.action != "skip":
                sorter.add(step.number)
        sorter.prepare()
        self._reads = Reads(plan)
        into = watched_inputs(steps)
        running: dict[concurrent.futures.Future[Any], tuple[Step, int]] = {}
        failures: list[tuple[Step, BaseException]] = []
        blocked: set[int] = set()
        position = 0
        try:
            while sorter.is_active():
                for number in sorter.get_ready():
                    step = steps[number]
                    if step.action == "load":
                        if self.progress is not None:
                            self.progress.start(step.stage.name)
                        try:
                            self._load(step)
                        except Replan:
                            # Let what runs finish and keep its values, so the new plan reuses them.
                            self._drain(running, steps, failures, blocked)
                            raise
                    elif step.action == "compute":
                        inputs = [i for i in step.inputs if isinstance(i, int)]
                        if any(i in blocked for i in inputs) or (failures and not self.config.keep_going):
                            blocked.add(number)
                        else:
                            position += 1
                            if self.progress is not None:
                                self.progress.start(step.stage.name)  # (the last one handed to the pool)
                            future = pool.submit(
                                compute_in_worker if elsewhere else compute_step,
                                step.stage,
                                self.arguments(step, steps),
                                self.store if step.store else None,
                                step.format,
                                step.key,
                                record_fields(step, steps) if step.store and self.store is not None else {},
                                watches_of(into[number]),
                                step.may_load,
                            )
                            running[future] = (step, position)
                            continue
                    sorter.done(number)
                if not running:
                    continue
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for number in self._collect(finished, running, steps, failures, blocked):
                    sorter.done(number)
        except BaseException:
            for future in running:
                future.cancel()
            raise
        if failures:
            if self.config.keep_going:
                raise StagesFailed([(step.stage.name, exc) for step, exc in failures])
            raise failures[0][1]
        return self.values[plan.target.key]

    def record(self, record: StageRecord) -> None:
        self.records.append(record)
        progress = self.progress
        if progress is not None:
            progress.finish()
        logs = self.logger is not None and self.logger.isEnabledFor(_INFO)
        if logs or self.config.verbose:
            message = _describe(record)
            if logs and self.logger is not None:
                self.logger.info(message)
            if self.config.verbose and progress is not None:
                progress.write(f"chkpt: {message}")
            elif self.config.verbose:
                print(f"chkpt: {message}", file=sys.stderr)


_INFO = 20  # logging.INFO, without importing logging


def _caller_stacklevel() -> int:
    """The stacklevel that points a warning at the first frame outside chkpt: the user's call."""
    package = __file__.rpartition("/")[0] if "/" in __file__ else ""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _describe(record: StageRecord) -> str:
    if record.outcome == "loaded":
        return f"{record.name} loaded {size_text(record.bytes or 0)} in {record.seconds:.3f} s"
    if record.outcome == "stored":
        return f"{record.name} computed in {record.seconds:.3f} s, stored {size_text(record.bytes or 0)}"
    return f"{record.name} computed in {record.seconds:.3f} s (not stored)"


def _logger() -> logging.Logger | None:
    """The `chkpt` logger, if the program uses logging at all.

    Importing logging costs a few milliseconds, paid on every run of a short pipeline. A program that never
    imported it has no handler that could receive a record, so nothing is lost by not importing it for them.
    """
    logging = sys.modules.get("logging")
    return None if logging is None else logging.getLogger("chkpt")
