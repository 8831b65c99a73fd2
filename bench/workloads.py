"""What the benchmark's child processes run: one measurement per function, timed inside the child.

bench/run.py starts each child as `python -c "...; import workloads; workloads.main()" NAME JSON-ARGS`; the
child calls NAME(**args) and prints its result as one JSON line. Only the standard library is imported at the top:
chkpt and the peers are imported inside the functions, before the timed part, so a child measures what it says.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

clock = time.perf_counter


def serve(functions: dict[str, Any]) -> None:
    """A child's entry point: call functions[NAME](**JSON) (from argv) and print its result as one JSON line.
    The run's folder of generated modules goes on sys.path, and on PYTHONPATH for processes the child starts
    (pools, Dask's nannies, runs at once), which import those modules too."""
    name, args = sys.argv[1], json.loads(sys.argv[2])
    workdir = args.pop("workdir")
    sys.path.insert(0, workdir)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workdir, os.environ.get("PYTHONPATH")]))
    print(json.dumps(functions[name](**args)))


def main() -> None:
    serve(globals())


# --- warm rerun of a 200-stage chain ----------------------------------------------------------------------------


def chain_of(mod: Any, mode: str) -> tuple[Any, list[str]]:
    """The chain of `mod.STAGES` (for modes "setup" and "all", with `mod.collect` taking every chain stage) and
    its stages' names."""
    stages = mod.STAGES
    pipeline = () >> stages[0]
    chain = [pipeline]
    for stage in stages[1:]:
        pipeline = pipeline >> stage
        chain.append(pipeline)
    if mode in ("setup", "all"):
        pipeline = tuple(chain) >> mod.collect
    return pipeline, [stage.name for stage in stages]


def chkpt_chain(module: str, store: str, mode: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a chain of chkpt stages with its checkpoints in `store` (a folder, or an fsspec URL opened with
    `storage_options`).

    mode "setup": compute and store every stage (a cold run that fills the store).
    mode "target": the chain with load=True; only its last stage is loaded, nothing upstream is needed.
    mode "all": a `collect(*xs)` stage takes all chain stages as inputs, with load=[every chain stage] and
    store=[every chain stage], so each chain checkpoint is read and verified and only `collect` computes.
    """
    import chkpt

    started = clock()
    mod = importlib.import_module(module)
    imported = clock()
    pipeline, names = chain_of(mod, mode)
    extra: dict[str, Any] = {"storage_options": storage_options} if storage_options else {}
    if mode == "setup":
        config = chkpt.Config(load=False, store=True, dir=store, verbose=False, **extra)
    elif mode == "target":
        config = chkpt.Config(load=True, dir=store, verbose=False, **extra)
    else:
        config = chkpt.Config(load=names, store=names, dir=store, verbose=False, **extra)
    built = clock()
    run = pipeline.run(config)
    ran = clock()
    outcomes = [record.outcome for record in run.records]
    return {
        "import": imported - started,
        "build": built - imported,
        "run": ran - built,
        "loaded": outcomes.count("loaded"),
        "computed": len(outcomes) - outcomes.count("loaded"),
        "value": run.value,
    }


def read_files(paths_file: str) -> dict[str, Any]:
    """The floor of a warm rerun: open + json.load of each file listed in `paths_file`."""
    with open(paths_file) as file:
        paths = json.load(file)
    started = clock()
    for path in paths:
        with open(path) as file:
            json.load(file)
    return {"run": clock() - started, "files": len(paths)}


def joblib_chain(module: str, cache: str) -> dict[str, Any]:
    """Call a chain of joblib.Memory-cached functions; warm when a previous child ran it with the same cache."""
    os.environ["BENCH_JOBLIB_DIR"] = cache
    import joblib  # noqa: F401

    started = clock()
    mod = importlib.import_module(module)
    imported = clock()
    value = mod.run_chain()
    return {"import": imported - started, "run": clock() - imported, "value": value}


def hamilton_chain(module: str, cache: str, final: str) -> dict[str, Any]:
    """Execute a Hamilton chain with `.with_cache()`; reports how many node results came from the cache."""
    os.environ["HAMILTON_TELEMETRY_ENABLED"] = "false"
    from hamilton import driver

    started = clock()
    mod = importlib.import_module(module)
    imported = clock()
    dr = driver.Builder().with_modules(mod).with_cache(path=cache).build()
    built = clock()
    dr.execute([final])
    ran = clock()
    assert dr.cache is not None
    logs = dr.cache.logs(dr.cache.last_run_id, level="debug")
    hits = sum(
        event.event_type.value == "get_result" and event.msg == "hit" for events in logs.values() for event in events
    )
    return {"import": imported - started, "build": built - imported, "run": ran - built, "loaded": hits}


# --- graph overhead: a layered graph with nothing stored or loaded ------------------------------------------------


def _best(samples: list[dict[str, float]]) -> dict[str, float]:
    """The fastest repeat end to end, and the fastest build and run on their own."""
    fastest = min(samples, key=lambda s: s["build"] + s["run"])
    return {
        "total": fastest["build"] + fastest["run"],
        "build": min(s["build"] for s in samples),
        "run": min(s["run"] for s in samples),
    }


def graph_chkpt(layers: int, width: int, repeats: int) -> dict[str, Any]:
    """chkpt with store=False, load=False. One Stage per column, reused in every layer (plus `width` bound
    source stages and one sink that takes the last layer), so the graph has layers * width + 1 nodes."""
    from layer_funcs import add, collect, source

    import chkpt

    sources = [chkpt.Stage(source, name=f"src{j}").bind(j=j) for j in range(width)]
    columns = [chkpt.Stage(add, name=f"c{j}") for j in range(width)]
    sink = chkpt.Stage(collect)
    config = chkpt.Config(load=False, store=False, verbose=False)
    samples = []
    for _ in range(repeats):
        started = clock()
        prev = [() >> stage for stage in sources]
        for _layer in range(1, layers):
            prev = [(prev[j], prev[(j + 1) % width]) >> columns[j] for j in range(width)]
        pipeline = tuple(prev) >> sink
        built = clock()
        run = pipeline.run(config)
        ran = clock()
        assert run.value == width and len(run.records) == layers * width + 1, (run.value, len(run.records))
        samples.append({"build": built - started, "run": ran - built})
        del prev, pipeline, run
    return _best(samples)


def graph_floor(layers: int, width: int, repeats: int) -> dict[str, Any]:
    """Plain Python: a dict graph of int nodes, graphlib.TopologicalSorter.static_order, and a loop that calls
    each node's function with its inputs' values."""
    import graphlib

    from layer_funcs import add, collect, source

    samples = []
    for _ in range(repeats):
        started = clock()
        deps: dict[int, tuple[int, ...]] = {}
        calls: dict[int, tuple[Any, tuple[int, ...] | None]] = {}
        for j in range(width):
            deps[j] = ()
            calls[j] = (source, (j,))
        for layer in range(1, layers):
            base = layer * width
            below = base - width
            for j in range(width):
                deps[base + j] = (below + j, below + (j + 1) % width)
                calls[base + j] = (add, None)
        sink = layers * width
        deps[sink] = tuple(range(sink - width, sink))
        calls[sink] = (collect, None)
        built = clock()
        values: dict[int, Any] = {}
        for node in graphlib.TopologicalSorter(deps).static_order():
            func, constants = calls[node]
            values[node] = func(*constants) if constants is not None else func(*[values[i] for i in deps[node]])
        ran = clock()
        assert values[sink] == width
        samples.append({"build": built - started, "run": ran - built})
        del deps, calls, values
    return _best(samples)


def graph_dask(layers: int, width: int, repeats: int) -> dict[str, Any]:
    """dask.delayed: build the same graph of delayed calls, then dask.compute(last layer, scheduler='sync')."""
    import dask
    from dask import delayed
    from layer_funcs import add, source

    dsource, dadd = delayed(source), delayed(add)
    samples = []
    for _ in range(repeats):
        started = clock()
        prev = [dsource(j) for j in range(width)]
        for _layer in range(1, layers):
            prev = [dadd(prev[j], prev[(j + 1) % width]) for j in range(width)]
        built = clock()
        values = dask.compute(*prev, scheduler="sync")
        ran = clock()
        assert len(values) == width
        samples.append({"build": built - started, "run": ran - built})
        del prev, values
    return _best(samples)


def graph_hamilton(module: str, layers: int, width: int, repeats: int) -> dict[str, Any]:
    """Hamilton: build a driver from a generated module (one function per node), then execute the last layer."""
    os.environ["HAMILTON_TELEMETRY_ENABLED"] = "false"
    from hamilton import driver

    mod = importlib.import_module(module)
    final = [f"n{layers - 1}_{j}" for j in range(width)]
    samples = []
    for _ in range(repeats):
        started = clock()
        dr = driver.Builder().with_modules(mod).build()
        built = clock()
        values = dr.execute(final)
        ran = clock()
        assert len(values) == width
        samples.append({"build": built - started, "run": ran - built})
        del dr, values
    return _best(samples)


# --- building a long chain ----------------------------------------------------------------------------------------


def chain_build(n: int, repeats: int) -> dict[str, Any]:
    """`p = () >> first; for s in stages: p = p >> s` over `n` distinct Stage objects (made before timing), and
    its floor: the same chain as nested plain tuples `(stage, (previous,))`, which allocates as many objects."""
    from layer_funcs import source, step

    import chkpt

    first = chkpt.Stage(source, name="first")
    stages = [chkpt.Stage(step, name=f"s{i}") for i in range(n)]
    best = floor = float("inf")
    for _ in range(repeats):
        started = clock()
        p = () >> first
        for s in stages:
            p = p >> s
        best = min(best, clock() - started)
        del p
        started = clock()
        t: tuple[Any, ...] = (first, ())
        for s in stages:
            t = (s, (t,))
        floor = min(floor, clock() - started)
        del t
    return {"build": best, "floor": floor}


if __name__ == "__main__":
    main()
