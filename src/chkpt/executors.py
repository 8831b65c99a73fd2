"""Executors: where the ready steps of a plan run.

The plan is the same whatever runs it. With no executor, run.py walks the plan in this process; with "threads",
threads.py runs it on threads that schedule themselves. Otherwise each step whose inputs are ready is submitted
to a `concurrent.futures.Executor` (processes from the standard library, or one the user gives), and results come
back to this process, which records them in the order they finish. A Dask client is not driven step by step:
cluster.py hands it the whole plan as one graph.
`concurrent.futures` is imported only when a run asks for it.
"""

from __future__ import annotations

from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Executor
    from typing import Any


def open_executor(spec: object, workers: int | None) -> tuple[Executor | None, bool]:
    """The executor `Config(executor=spec, workers=workers)` means, and whether the run owns it (and so shuts it
    down when it ends). None means: run in this process, one step at a time."""
    if spec is None or spec == "sync":
        return None, False
    if spec == "processes":
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=workers), True
    if callable(getattr(spec, "submit", None)):
        return spec, False  # type: ignore[return-value]
    raise ConfigError(f"unknown executor {spec!r}")


def is_dask_client(executor: object) -> bool:
    """Whether the executor is a dask.distributed Client (told without importing dask)."""
    return any(
        kind.__name__ == "Client" and kind.__module__.startswith("distributed.") for kind in type(executor).__mro__
    )


def pickles_its_work(executor: object) -> bool:
    """Whether the executor sends each task to another process, so that stages and values must pickle."""
    from concurrent.futures import ProcessPoolExecutor

    return isinstance(executor, ProcessPoolExecutor) or is_dask_client(executor)


def abandon(executor: Executor) -> None:
    """Shut down a pool chkpt made, at once, on Ctrl-C: tasks not started are cancelled, and worker processes are
    terminated, so that nothing running keeps the process from exiting (a checkpoint being written is left as a
    temporary file, never as a checkpoint)."""
    # ProcessPoolExecutor has no public way to stop its workers before Python 3.14 (terminate_workers), and
    # shutdown() forgets them: take them first.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def InlineExecutor() -> Executor:
    """An executor that runs each task at once, in this process, when it is submitted: for keep_going without a
    pool. concurrent.futures is imported only here."""
    import concurrent.futures

    class _Inline(concurrent.futures.Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except KeyboardInterrupt:
                raise  # Ctrl-C stops the run, as it does with the other executors
            except BaseException as exc:  # a SystemExit too, as a pool's worker would report it
                future.set_exception(exc)
            return future

    return _Inline()
