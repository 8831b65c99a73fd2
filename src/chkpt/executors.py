"""Executors: where the ready steps of a plan run.

The plan is the same whatever runs it. With no executor, run.py walks the plan in this process. Otherwise each
step whose inputs are ready is submitted to a `concurrent.futures.Executor` (threads or processes from the
standard library, or one the user gives), and results come back to this process, which records them in the order
they finish. A Dask client is not driven step by step: cluster.py hands it the whole plan as one graph.
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
    if spec == "threads":
        return ThreadPool(workers), True
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
    """Shut down a pool chkpt made, at once, on Ctrl-C: tasks not started are cancelled, and nothing running keeps
    the process from exiting. Worker processes are terminated (a checkpoint being written is left as a temporary
    file, never as a checkpoint); a thread cannot be stopped, but ThreadPool's are daemons, so exiting does not
    wait for them."""
    # ProcessPoolExecutor has no public way to stop its workers before Python 3.14 (terminate_workers), and
    # shutdown() forgets them: take them first.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def ThreadPool(workers: int | None) -> Executor:
    """A thread pool like `ThreadPoolExecutor`, whose threads are daemons.

    The interpreter waits at exit for every non-daemon thread, and ThreadPoolExecutor's threads are not daemons:
    after Ctrl-C the process would live on until the running stage returned (and then store it). A stage left
    running by Ctrl-C dies with the process instead; stores are atomic, so that never leaves half a checkpoint.
    """
    import concurrent.futures
    import os
    import queue
    import threading

    size = workers or min(32, (os.cpu_count() or 1) + 4)

    class _ThreadPool(concurrent.futures.Executor):
        def __init__(self) -> None:
            self._work: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Any, Any, Any] | None] = (
                queue.SimpleQueue()
            )
            self._threads: list[threading.Thread] = []
            self._idle = threading.Semaphore(0)
            self._closed = False
            self._lock = threading.Lock()

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            with self._lock:
                if self._closed:
                    raise RuntimeError("cannot schedule new futures after shutdown")
                future: concurrent.futures.Future[Any] = concurrent.futures.Future()
                self._work.put((future, fn, args, kwargs))
                if not self._idle.acquire(blocking=False) and len(self._threads) < size:
                    thread = threading.Thread(target=self._serve, name=f"chkpt-{len(self._threads)}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            return future

        def _serve(self) -> None:
            while True:
                item = self._work.get()
                if item is None:
                    return
                future, fn, args, kwargs = item
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
                    del future, fn, args, kwargs, item
                self._idle.release()

        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            with self._lock:
                self._closed = True
                if cancel_futures:
                    while True:
                        try:
                            item = self._work.get_nowait()
                        except queue.Empty:
                            break
                        if item is not None:
                            item[0].cancel()
                for _ in self._threads:
                    self._work.put(None)
            if wait:
                for thread in self._threads:
                    thread.join()

    return _ThreadPool()


def InlineExecutor() -> Executor:
    """An executor that runs each task at once, in this process, when it is submitted: for keep_going without a
    pool. concurrent.futures is imported only here."""
    import concurrent.futures

    class _Inline(concurrent.futures.Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as exc:
                future.set_exception(exc)
            return future

    return _Inline()
