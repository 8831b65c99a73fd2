"""What the parallel benchmark's child processes run (issue: parallel executors): one measurement per function,
timed inside the child.

bench/run.py starts each child as `python -c "...; import parallel_workloads; parallel_workloads.main()" NAME JSON`;
the child calls NAME(**args) and prints its result as one JSON line. Only the standard library is imported at the
top: chkpt and the peers are imported inside the functions, before the timed part. The stages' functions live in
generated modules (parallel_funcs, layer_funcs) in the run's folder, which `main` puts on sys.path and on
PYTHONPATH, so that worker processes (forked, spawned by loky or by a Dask nanny) import them too.

A child measures every variant of its row in rounds, one of each per round, so a slow spell of the machine hits
them alike, and keeps the minimum of each.
"""

from __future__ import annotations

import time
from typing import Any

from workloads import _best, serve  # the same best-of rule as the core graph rows; the child entry point

clock = time.perf_counter


def main() -> None:
    serve(globals())


# --- two independent ~1 s CPU-bound stages and a join ------------------------------------------------------------


def _calibrate(seconds: float, spin: Any = None) -> int:
    """The number of steps of `spin` (parallel_funcs.spin unless given) that take about `seconds` of one core here:
    estimated from a short spin, then corrected by the fastest of two spins of about `seconds` (a short spin's rate
    is not quite a long one's, and the figures below are minimums too)."""
    if spin is None:
        from parallel_funcs import spin

    n = 100_000
    while True:
        started = clock()
        spin(n)
        took = clock() - started
        if took > 0.2:
            break
        n *= 4
    n = int(n * seconds / took)
    fastest = float("inf")
    for _ in range(2):
        started = clock()
        spin(n)
        fastest = min(fastest, clock() - started)
    return int(n * seconds / fastest)


def spins(rounds: int, seconds: float) -> dict[str, Any]:
    """Two independent spins of `seconds` each, joined by a trivial third stage, timed end to end (build + run):

    "processes": chkpt, Config(executor="processes", workers=2), a pool the run starts and shuts down.
    "sync": chkpt, Config(executor="sync"), one stage after the other in this process.
    "joblib": joblib.Parallel(n_jobs=2) on the two spins, then join(a, b) here; loky keeps its workers between
    calls, so its first call (which starts them) is reported apart.
    "spin": one spin alone, called here (the floor: two spins on two cores take at least one spin).
    The speed of this machine drifts over minutes, so the floor is measured in the same rounds as the rest.
    """
    from parallel_funcs import join, spin

    import chkpt

    n = _calibrate(seconds)
    expected = 2 * n + 1

    def chkpt_run(executor: str) -> float:
        started = clock()
        a = () >> chkpt.Stage(spin, name="spin_a").bind(n=n, j=0)
        b = () >> chkpt.Stage(spin, name="spin_b").bind(n=n, j=1)
        pipeline = (a, b) >> chkpt.Stage(join, name="join")
        workers = 2 if executor == "processes" else None
        run = pipeline.run(chkpt.Config(executor=executor, workers=workers, load=False, store=False, verbose=False))
        took = clock() - started
        assert run.value == expected and len(run.records) == 3, (run.value, len(run.records))
        return took

    def one_spin() -> float:
        started = clock()
        spin(n)
        return clock() - started

    tools: dict[str, Any] = {
        "processes": lambda: chkpt_run("processes"),
        "sync": lambda: chkpt_run("sync"),
        "spin": one_spin,
    }
    result: dict[str, Any] = {"n": n}
    try:
        from joblib import Parallel, delayed

        def joblib_run() -> float:
            started = clock()
            a, b = Parallel(n_jobs=2)(delayed(spin)(n=n, j=j) for j in range(2))
            value = join(a, b)
            took = clock() - started
            assert value == expected, value
            return took

        tools["joblib"] = joblib_run
    except ImportError:
        result["joblib"] = "not installed"
    times: dict[str, list[float]] = {name: [] for name in tools}
    for round in range(rounds):
        names = list(tools)
        shift = round % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(tools[name]())
    for name, taken in times.items():
        result[name] = min(taken)
    if "joblib" in times:
        result["joblib_first"] = times["joblib"][0]
    return result


# --- a layered graph: chkpt, dask.delayed and a low-level dask graph -----------------------------------------------


def _chkpt_graph(layers: int, width: int) -> Any:
    """The layered graph of bench/workloads.py's graph_chkpt: `width` bound sources, then node j of each next
    layer is add(node j, node (j+1) % width) of the layer below, one Stage per column, and a collect(*xs) sink."""
    from layer_funcs import add, collect, source

    import chkpt

    sources = [chkpt.Stage(source, name=f"src{j}").bind(j=j) for j in range(width)]
    columns = [chkpt.Stage(add, name=f"c{j}") for j in range(width)]
    sink = chkpt.Stage(collect)

    def build() -> Any:
        prev = [() >> stage for stage in sources]
        for _layer in range(1, layers):
            prev = [(prev[j], prev[(j + 1) % width]) >> columns[j] for j in range(width)]
        return tuple(prev) >> sink

    return build


def _delayed_graph(layers: int, width: int) -> Any:
    """The same graph as dask.delayed calls, with the same sink."""
    from dask.delayed import delayed
    from layer_funcs import add, collect, source

    dsource, dadd, dcollect = delayed(source), delayed(add), delayed(collect)

    def build() -> Any:
        prev = [dsource(j) for j in range(width)]
        for _layer in range(1, layers):
            prev = [dadd(prev[j], prev[(j + 1) % width]) for j in range(width)]
        return dcollect(*prev)

    return build


def _dict_graph(layers: int, width: int, tag: str) -> tuple[dict[str, Any], str]:
    """The same graph as one low-level Dask graph (a dict of task tuples), its keys ending in `tag`."""
    from layer_funcs import add, collect, source

    graph: dict[str, Any] = {f"n0-{j}-{tag}": (source, j) for j in range(width)}
    for layer in range(1, layers):
        for j in range(width):
            graph[f"n{layer}-{j}-{tag}"] = (add, f"n{layer - 1}-{j}-{tag}", f"n{layer - 1}-{(j + 1) % width}-{tag}")
    sink = f"sink-{tag}"
    graph[sink] = (collect, *[f"n{layers - 1}-{j}-{tag}" for j in range(width)])
    return graph, sink


def dask_cluster(layers: int, width: int, rounds: int) -> dict[str, Any]:
    """On one LocalCluster(n_workers=2, processes=True, threads_per_worker=1) and one Client, in this process:

    "chkpt": the layered graph with Config(executor=client, load=False, store=False).
    "delayed": the same graph of dask.delayed calls, dask.compute(sink, scheduler=client).
    "get": the same graph as one dict, client.get(graph, sink).
    Each is run once to warm up (workers import the stage functions), then `rounds` rounds of one of each.
    Times are end to end: build (composing, making delayed calls, filling the dict) + run.
    """
    import itertools

    import dask
    from distributed import Client, LocalCluster

    import chkpt

    started = clock()
    # distributed's API is untyped: hold its objects as Any.
    cluster: Any = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    client: Any = Client(cluster)  # type: ignore[no-untyped-call]
    start = clock() - started
    nodes = layers * width
    try:
        chkpt_build = _chkpt_graph(layers, width)
        config = chkpt.Config(executor=client, load=False, store=False, verbose=False)

        def with_chkpt() -> dict[str, float]:
            started = clock()
            pipeline = chkpt_build()
            built = clock()
            run = pipeline.run(config)
            ran = clock()
            assert run.value == width and len(run.records) == nodes + 1, (run.value, len(run.records))
            return {"build": built - started, "run": ran - built}

        delayed_build = _delayed_graph(layers, width)

        def with_delayed() -> dict[str, float]:
            started = clock()
            sink = delayed_build()
            built = clock()
            (value,) = dask.compute(sink, scheduler=client)  # type: ignore[attr-defined,no-untyped-call]
            ran = clock()
            assert value == width, value
            return {"build": built - started, "run": ran - built}

        calls = itertools.count()

        def with_get() -> dict[str, float]:
            started = clock()
            graph, sink = _dict_graph(layers, width, f"r{next(calls)}")
            built = clock()
            value = client.get(graph, sink)
            ran = clock()
            assert value == width, value
            return {"build": built - started, "run": ran - built}

        tools = {"chkpt": with_chkpt, "delayed": with_delayed, "get": with_get}
        warm = {name: tool() for name, tool in tools.items()}
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in tools}
        for round in range(rounds):
            names = list(tools)
            shift = round % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(tools[name]())
    finally:
        client.close()
        cluster.close()
    result: dict[str, Any] = {name: _best(taken) for name, taken in samples.items()}
    result["warm"] = {name: sample["build"] + sample["run"] for name, sample in warm.items()}
    result["start"] = start
    return result


def threaded_graph(tool: str, layers: int, width: int, repeats: int) -> dict[str, Any]:
    """The layered graph with trivial stages, end to end (build + run), `repeats` times.

    tool "threads": chkpt, Config(executor="threads", workers=2, load=False, store=False). "sync": the same with
    executor="sync". "pool": a floor for a thread pool: the graph as a dict of int nodes, and a loop over
    graphlib.TopologicalSorter that submits every ready node to a concurrent.futures.ThreadPoolExecutor(2) and
    waits for the first to finish (FIRST_COMPLETED); no keys, plan or records. "floor": bench/workloads.py's
    graph_floor (graphlib and a plain loop, no pool). "dask": dask.delayed calls, built once (it takes most of a
    minute at 10,000 nodes: see the notes), then dask.compute(sink, scheduler="threads", num_workers=2)
    `repeats` times; its total is the build plus the fastest compute.
    """
    if tool == "floor":
        from workloads import graph_floor

        result: dict[str, Any] = graph_floor(layers, width, repeats)
        return result
    samples = []
    if tool in ("threads", "sync"):
        import chkpt

        build = _chkpt_graph(layers, width)
        workers = 2 if tool == "threads" else None
        config = chkpt.Config(executor=tool, workers=workers, load=False, store=False, verbose=False)
        for _ in range(repeats):
            started = clock()
            pipeline = build()
            built = clock()
            run = pipeline.run(config)
            ran = clock()
            assert run.value == width and len(run.records) == layers * width + 1, (run.value, len(run.records))
            samples.append({"build": built - started, "run": ran - built})
            del pipeline, run
    elif tool == "pool":
        for _ in range(repeats):
            samples.append(_pool_floor(layers, width))
    elif tool == "dask":
        import dask

        started = clock()
        sink = _delayed_graph(layers, width)()
        build = clock() - started
        for _ in range(repeats):
            started = clock()
            (value,) = dask.compute(sink, scheduler="threads", num_workers=2)  # type: ignore[attr-defined,no-untyped-call]
            ran = clock()
            assert value == width, value
            samples.append({"build": build, "run": ran - started})
    else:
        raise ValueError(f"unknown tool {tool!r}")
    return _best(samples)


def _pool_floor(layers: int, width: int) -> dict[str, float]:
    import graphlib
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    from layer_funcs import add, collect, source

    started = clock()
    deps: dict[int, tuple[int, ...]] = {j: () for j in range(width)}
    for layer in range(1, layers):
        base = layer * width
        for j in range(width):
            deps[base + j] = (base - width + j, base - width + (j + 1) % width)
    sink = layers * width
    deps[sink] = tuple(range(sink - width, sink))
    built = clock()
    values: dict[int, Any] = {}
    pending: dict[Future[Any], int] = {}
    order = graphlib.TopologicalSorter(deps)
    order.prepare()
    with ThreadPoolExecutor(2) as pool:
        while order.is_active():
            for node in order.get_ready():
                inputs = [values[i] for i in deps[node]]
                func = source if node < width else collect if node == sink else add
                future = pool.submit(func, node) if node < width else pool.submit(func, *inputs)
                pending[future] = node
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                node = pending.pop(future)
                values[node] = future.result()
                order.done(node)
    ran = clock()
    assert values[sink] == width, values[sink]
    return {"build": built - started, "run": ran - built}


if __name__ == "__main__":
    main()
