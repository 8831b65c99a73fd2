"""What the "Stores" benchmark's child processes run (issue: runs that share a checkpoint folder): several runs of
one pipeline at once on one folder, timed from one "go" to the last run's result.

bench/run.py starts one child as `python -c "...; import store_workloads; store_workloads.main()" NAME JSON`; the
child calls NAME(**args) and prints its result as one JSON line. That child starts the runs themselves, each a
process of this interpreter running `store_workloads.runner()`: a run imports its tool and the stages' module,
says it is ready, and waits for a "go" file; the child creates it once every run is ready and takes the time until
the last run has printed its result, so interpreter start-up and imports are never timed. Only the standard library
is imported at the top. The stages' functions live in a generated module (`store_funcs`, from chains.store_functions) in
the run's folder, which `main` puts on sys.path and on PYTHONPATH, so that the runs import it too.

The child measures every variant of its row in rounds, one of each per round (each round on fresh folders), so a
slow spell of the machine hits them alike, and keeps the minimum of each.

The table's warm loads by store (`warm_loads`) are another child: it starts moto's S3 server in a thread, fills the
stores, then runs each measurement in a fresh process (`loader`), in rounds as above.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from parallel_workloads import _calibrate  # the parallel rows' calibration, for their spin and this one's
from workloads import chkpt_chain, serve  # the Core table's chain run, so the local row compares with its row

BENCH = Path(__file__).resolve().parent
CALLS = "BENCH_STORE_CALLS"  # the environment variable naming the file that counts stage calls
RUN_LIMIT = 300  # seconds a run may live before it gives up (SIGALRM), so no run outlives a broken bench
RUNNER = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import store_workloads; store_workloads.runner()"

clock = time.perf_counter


def main() -> None:
    serve(globals())


def expected_value(stages: int, n: int) -> int:
    """The chain's value: s0 gives n, and each s_i adds n + i."""
    return stages * n + stages * (stages - 1) // 2


# --- a run, in its own process -----------------------------------------------------------------------------------


def runner() -> None:
    """One run of the chain: `python -c RUNNER TOOL FOLDER GO N`. Imports first, then prints "ready" and waits
    for the file GO; then runs the chain with the tool and prints {"value", "outcomes"} as one JSON line.

    TOOL "chkpt": a Stage per function, bound to n, chained with >>, run with Config(dir=FOLDER, load=True,
    verbose=False) (executor "sync", durable). "joblib": joblib.Memory(FOLDER, verbose=0), memory.cache of each
    function, called as a chain. "loop": the functions called as a chain, nothing cached.
    """
    if hasattr(signal, "alarm"):
        signal.alarm(RUN_LIMIT)  # its default action ends the process
    tool, folder, go, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    from store_funcs import STAGES

    if tool == "chkpt":
        import chkpt
    elif tool == "joblib":
        import joblib
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    outcomes: dict[str, int] = {}
    if tool == "chkpt":
        pipeline = () >> chkpt.Stage(STAGES[0]).bind(n=n)
        for func in STAGES[1:]:
            pipeline = pipeline >> chkpt.Stage(func).bind(n=n)
        run = pipeline.run(chkpt.Config(dir=folder, load=True, verbose=False))
        value = run.value
        outcomes = dict(Counter(record.outcome for record in run.records))
    elif tool == "joblib":
        memory = joblib.Memory(folder, verbose=0)
        cached = [memory.cache(func) for func in STAGES]
        value = cached[0](n=n)
        for func in cached[1:]:
            value = func(value, n=n)
    elif tool == "loop":
        value = STAGES[0](n=n)
        for func in STAGES[1:]:
            value = func(value, n=n)
    else:
        raise ValueError(f"unknown tool {tool!r}")
    print(json.dumps({"value": value, "outcomes": outcomes}), flush=True)


# --- the row: runs at once on one folder -------------------------------------------------------------------------


def _runs_at_once(tool: str, runs: int, folder: Path, n: int) -> dict[str, Any]:
    """Start `runs` runs of TOOL on `folder`, wait until each is ready, create the go file and take the time until
    the last run's result line has arrived. Returns the wall time, the runs' values and record outcomes, and the
    stage calls counted in all runs together."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    go, calls = folder.with_name(folder.name + ".go"), folder.with_name(folder.name + ".calls")
    calls.touch()
    env = {**os.environ, CALLS: str(calls)}
    errors = [folder.with_name(f"{folder.name}.{i}.err") for i in range(runs)]
    processes: list[subprocess.Popen[str]] = []
    try:
        for error in errors:
            with open(error, "w") as stderr:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-c", RUNNER, tool, str(folder), str(go), str(n)],
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        text=True,
                        env=env,
                    )
                )
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline() != "ready\n":
                raise RuntimeError(_failure(process, errors[processes.index(process)]))
        started = clock()
        go.touch()
        lines = []
        for process in processes:
            assert process.stdout is not None
            lines.append(process.stdout.readline())
        wall = clock() - started
        for process, line, error in zip(processes, lines, errors, strict=True):
            if process.wait(timeout=60) != 0 or not line:
                raise RuntimeError(_failure(process, error))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
    results = [json.loads(line) for line in lines]
    counted = Counter(line.split()[0] for line in calls.read_text().splitlines())
    outcomes: Counter[str] = Counter()
    for result in results:
        outcomes.update(result["outcomes"])
    return {
        "wall": wall,
        "values": [result["value"] for result in results],
        "outcomes": dict(outcomes),
        "calls": sum(counted.values()),
        "counted": dict(counted),
    }


def _failure(process: subprocess.Popen[str], error: Path) -> str:
    process.wait(timeout=60)
    lines = error.read_text().strip().splitlines() or [f"exit status {process.returncode}"]
    return lines[-1][:70]


def shared_runs(root: str, stages: int, runs: int, rounds: int, seconds: float) -> dict[str, Any]:
    """`runs` runs of the `stages`-stage chain at once on one folder, and one run alone, for chkpt and joblib,
    plus a plain loop of the functions (one run, nothing cached), in `rounds` rounds of fresh folders.

    Variants "chkpt_1", "chkpt_N", "joblib_1", "joblib_N", "loop": the fastest wall time of each, and for every
    round its stage calls in all runs together, whether each stage ran exactly once, and whether every run's value
    was the chain's. A variant that fails reports why instead ("not installed" for a missing joblib).
    """
    import importlib.util

    from store_funcs import spin

    n = _calibrate(seconds, spin)
    expected = expected_value(stages, n)
    variants = {"chkpt_1": ("chkpt", 1), f"chkpt_{runs}": ("chkpt", runs), "loop": ("loop", 1)}
    result: dict[str, Any] = {"n": n, "expected": expected}
    if importlib.util.find_spec("joblib") is not None:
        variants.update({"joblib_1": ("joblib", 1), f"joblib_{runs}": ("joblib", runs)})
    else:
        result["joblib_1"] = result[f"joblib_{runs}"] = "not installed"
    walls: dict[str, list[float]] = {name: [] for name in variants}
    checks: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    failed: dict[str, str] = {}
    for round in range(rounds):
        names = list(variants)
        shift = round % len(names)
        for name in names[shift:] + names[:shift]:
            if name in failed:
                continue
            tool, count = variants[name]
            try:
                measured = _runs_at_once(tool, count, Path(root) / f"round{round}" / name, n)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                failed[name] = f"failed: {exc}"
                continue
            walls[name].append(measured["wall"])
            checks[name].append(
                {
                    "calls": measured["calls"],
                    "stages": len(measured["counted"]),
                    "once": len(measured["counted"]) == stages and set(measured["counted"].values()) == {1},
                    "values": all(value == expected for value in measured["values"]),
                    "outcomes": measured["outcomes"],
                }
            )
    for name in variants:
        result[name] = failed.get(name) or {"wall": min(walls[name]), "walls": walls[name], "rounds": checks[name]}
    return result


# --- warm loads of a 200-stage chain from a folder, memory:// and moto's S3 ---------------------------------------

LOADER = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import store_workloads; store_workloads.loader()"
BUCKET = "chkpt-bench"
STORES = ("local", "memory", "s3")
TASKS = ("all", "target", "floor")


def loader() -> None:
    """One measurement of `warm_loads` in a fresh process: `python -c LOADER JSON`; prints `load_once(**JSON)` as
    one JSON line. A fresh process per measurement, as the Core table's warm rerun, so chkpt's per-process caches
    (code fingerprints, the parse of the stages' module) are cold each time."""
    if hasattr(signal, "alarm"):
        signal.alarm(RUN_LIMIT)
    print(json.dumps(load_once(**json.loads(sys.argv[1]))))


def load_once(
    task: str, store: str, url: str, options: dict[str, Any], module: str, source: str, paths: list[str]
) -> dict[str, Any]:
    """TASK on the chain of `module` (the Core table's bound chain) with its checkpoints at `url`.

    task "setup": compute and store every stage (the cold run that fills a store). "all": the chain's stages plus
    `collect(*xs)` taking all of them, with Config(load=<chain stages>, store=<the same>), so every chain checkpoint
    is read and verified and only collect computes (the Core table's "every stage loaded"). "target": the chain
    with Config(load=True), where only its last stage loads. "floor": read the bytes of each checkpoint named in
    `paths` (relative to the store's root) once: open + read of the file, or the file system's cat_file.

    Before the timer: for store "memory", the files of the local store `source` are copied into memory://
    (same layout; a memory store lives in its process); for "memory" and "s3", the file system is opened and one
    small object outside the store is read (`connect`: the client's set-up and first request, reported apart).
    chkpt's run opens the file system again, getting fsspec's cached instance, inside the timer. Timed as
    bench/workloads.py's chkpt_chain: import of the stages' module, build, then pipeline.run alone ("run").
    """

    connect = 0.0
    if store != "local":
        import fsspec.core

        fs, root = fsspec.core.url_to_fs(url, **options)
        warmup = fs._strip_protocol(f"{BUCKET}/warmup" if store == "s3" else "/warmup")
        if store == "memory":
            fs.pipe_file(warmup, b"warm-up")
            for path in sorted(Path(source).rglob("*")):
                if path.is_file():
                    fs.pipe_file(f"{root}/{path.relative_to(source).as_posix()}", path.read_bytes())
        del fs
        started = clock()
        fs, root = fsspec.core.url_to_fs(url, **options)
        fs.cat_file(warmup)
        connect = clock() - started
    if task == "floor":
        started = clock()
        if store == "local":
            for rel in paths:
                with open(os.path.join(url, rel), "rb") as file:
                    file.read()
        else:
            fs, root = fsspec.core.url_to_fs(url, **options)
            for rel in paths:
                fs.cat_file(f"{root}/{rel}")
        return {"run": clock() - started, "connect": connect, "files": len(paths)}
    return {**chkpt_chain(module, url, task, options), "connect": connect}


def _load_child(**args: Any) -> dict[str, Any]:
    """`load_once(**args)` in a fresh process of this interpreter; RuntimeError with its last stderr line if it
    fails."""
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(args)], capture_output=True, text=True, timeout=RUN_LIMIT
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise RuntimeError(lines[-1][:70])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def warm_loads(root: str, module: str, stages: int, rounds: int) -> dict[str, Any]:
    """Warm loads of the `stages`-stage chain of `module` from three stores: a local folder, memory:// and
    s3:// on moto's S3 server (started here, in a thread, on 127.0.0.1, so it shares this machine's cores with the
    measured process). The local and S3 stores are filled once by a setup run of chkpt; the memory store is a copy
    of the local one, made by each measuring process before its timer.

    In each of `rounds` rounds, every (store, task) of STORES x TASKS runs once in a fresh process (`load_once`),
    each round starting one further on. Returns for each "store/task" the fastest result and its run times, or why
    it failed; for the chkpt tasks, the loaded count is checked (all: `stages`, target: 1) and the value
    (all: `stages`, target: the chain's sum)."""
    import importlib.util
    import socket

    local = str(Path(root) / "local")
    urls: dict[str, tuple[str, dict[str, Any]]] = {"local": (local, {})}
    result: dict[str, Any] = {"stages": stages}
    if importlib.util.find_spec("fsspec") is None:
        result.update({f"{store}/{task}": "fsspec not installed" for store in ("memory", "s3") for task in TASKS})
    else:
        urls["memory"] = (f"memory://{BUCKET}/chain", {})
    server = None
    if "memory" in urls and all(importlib.util.find_spec(name) for name in ("s3fs", "moto")):
        import logging

        import s3fs
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line on stderr per request

        with socket.socket() as probe:  # a free port; moto's server takes a fixed one
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
        s3 = s3fs.S3FileSystem(**options)
        s3.mkdir(BUCKET)
        s3.pipe_file(f"{BUCKET}/warmup", b"warm-up")
        urls["s3"] = (f"s3://{BUCKET}/chain", options)
    elif "memory" in urls:
        result.update({f"s3/{task}": "s3fs or moto not installed" for task in TASKS})
    try:
        common = {"module": module, "source": local, "paths": []}
        for store in ("local", "s3"):
            if store in urls:
                url, options = urls[store]
                setup = _load_child(task="setup", store=store, url=url, options=options, **common)
                if setup["computed"] != stages + 1:
                    raise RuntimeError(f"setup of {store}: {setup}")
        paths = sorted(path.relative_to(local).as_posix() for path in Path(local).glob("s*/*.json"))
        if len(paths) != stages:
            raise RuntimeError(f"{len(paths)} checkpoint files in the local store, expected {stages}")
        if "s3" in urls:
            found = {f.removeprefix(f"{BUCKET}/chain/") for f in s3.find(f"{BUCKET}/chain")}
            if not set(paths) <= found:
                raise RuntimeError("the S3 store's layout differs from the local store's")
        common["paths"] = paths
        result["bytes"] = sum((Path(local) / path).stat().st_size for path in paths) // len(paths)
        expected = {"all": stages, "target": stages * (stages - 1) // 2}
        names = [f"{store}/{task}" for store in urls for task in TASKS]
        runs: dict[str, list[float]] = {name: [] for name in names}
        best: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        for round in range(rounds):
            shift = round % len(names)
            for name in names[shift:] + names[:shift]:
                if name in failed:
                    continue
                store, task = name.split("/")
                url, options = urls[store]
                try:
                    measured = _load_child(task=task, store=store, url=url, options=options, **common)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    failed[name] = f"failed: {exc}"
                    continue
                if task != "floor":
                    loaded = stages if task == "all" else 1
                    if measured["loaded"] != loaded or measured["value"] != expected[task]:
                        failed[name] = f"loaded {measured['loaded']} (expected {loaded}), value {measured['value']}"
                        continue
                runs[name].append(measured["run"])
                if name not in best or measured["run"] < best[name]["run"]:
                    best[name] = measured
        for name in names:
            result[name] = failed.get(name) or {**best[name], "runs": runs[name]}
        return result
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
