"""chkpt's speed next to its floors and peers, all measured in this run: `python bench/run.py`.

Prints four tables. "Core" (issue 2, "Speed"): import time, warm rerun of a 200-stage chain, graph overhead of a
layered graph, and building a long chain. "Formats" (issue 3, "Speed"): storing and loading a 256 MiB numpy array
(durable, scratch, with and without the chkpt[fast] extra), the key time of a stage taking a big array, and the
JSON codec on a 50 MB list of small dicts. "Parallel" (the parallel executors' issue): two ~1 s CPU-bound stages on
executor="processes", a 1,000-node graph on a Dask LocalCluster next to dask.delayed and a plain Dask graph, and the
per-node overhead of executor="threads" on a 10,000-node graph. "Stores" (runs that share a checkpoint folder): 4
runs of one 20-stage CPU-bound pipeline at once on one fresh folder next to one run alone, with chkpt and with
joblib.Memory, a warm load of the 200-stage chain from a local folder, memory:// and moto's S3 server (issue 5), and
listing a store of 100,000 checkpoints of one stage (`chkpt.Store(dir).checkpoints()`, target < 1 s) next to walking
its folder with and without a stat per file, without its index, and `gc(dry_run=True)` (a fresh store in the run's
folder; filling it takes about 20 s). `--only core`, `--only formats`, `--only parallel` or `--only stores` runs one
of them. `--big` adds to the Stores table a store of 1,000,000 checkpoints: its listing, and a run's operations on it
(exists, read, a durable write) next to the same on a store of one; it is kept in bench/out/big-store-1m/ between
runs, since filling it takes about 3 minutes (2 processes), and filled again when chkpt's layout has changed.

Every measurement runs in a child process started with this interpreter and is timed inside the child, so
interpreter start-up is not part of any figure (the Stores children start the processes they measure: the shared
runs are timed from when all of them have started and imported what they need, a warm load inside its own process
after its imports). Peers (joblib, dask, dask.distributed, Hamilton) are optional: a peer that is not installed shows
as 'not installed'. Generated modules, stores, caches and data files live in bench/out/run-<pid>/ and are removed at
the end (pass --keep to keep them), but for the kept store of --big. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import chains  # noqa: E402
import format_workloads  # noqa: E402
import store_workloads  # noqa: E402

OUT = BENCH / "out"
WORK = OUT / f"run-{os.getpid()}"
ENV = {**os.environ, "HAMILTON_TELEMETRY_ENABLED": "false"}

CHAIN = 200  # stages in the warm-rerun chain
WIDTH = 100  # nodes per layer of the layered graph
LAYERS = (10, 100, 400)  # 1,000 / 10,000 / 40,000 nodes
DASK_LAYERS = (10, 100)  # dask.delayed is ~50x slower: 40,000 nodes would take most of the time budget
HAMILTON_LAYERS = (10, 100)  # generating and building a 40,000-function module would too
BUILD_CHAIN = (10_000, 100_000)

IMPORT_REPEATS = 15
WARM_REPEATS = 9
GRAPH_REPEATS = {10: 9, 100: 5, 400: 5}
PEER_GRAPH_REPEATS = {10: 5, 100: 2, 400: 1}
BUILD_REPEATS = {10_000: 7, 100_000: 3}


class ChildError(Exception):
    """A child process failed; the message is the last line of its stderr."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def child(name: str, runner: str = "workloads", **args: Any) -> dict[str, Any]:
    """Run RUNNER.NAME(**args) (a function of bench/workloads.py, or of another module of bench/ given as
    `runner`) in a fresh interpreter and return what it measured."""
    return run_child(name, runner, args)


def run_child(name: str, runner: str, args: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """`child`, with a time limit: subprocess.TimeoutExpired when the child takes more than `timeout` seconds."""
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import {runner}; {runner}.main()"
    args["workdir"] = str(WORK)
    proc = subprocess.run(
        [sys.executable, "-c", code, name, json.dumps(args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise ChildError(lines[-1][:70])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def import_time(statement: str) -> float:
    """Seconds to run `statement` (an import) in a fresh interpreter, timed inside it."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=False)
    if proc.returncode != 0:
        raise ChildError((proc.stderr.strip().splitlines() or ["failed"])[-1][:70])
    return float(proc.stdout.strip().splitlines()[-1])


# --- formatting -----------------------------------------------------------------------------------------------


def us(seconds: float, per: int, unit: str) -> str:
    return f"{seconds / per * 1e6:.1f} us/{unit}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


Cell = str | list[str]
Row = list[Cell]


def print_table(header: list[str], rows: list[Row]) -> None:
    """A plain-text table; a cell that is a list takes several lines, and a row of None is a separator."""
    expanded: list[list[str]] = []
    for row in rows:
        cells = [cell if isinstance(cell, list) else [cell] for cell in row]
        height = max(len(cell) for cell in cells)
        for i in range(height):
            expanded.append([cell[i] if i < len(cell) else "" for cell in cells])
        expanded.append([])
    widths = [max([len(h)] + [len(line[c]) for line in expanded if line]) for c, h in enumerate(header)]

    def show(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    print(show(header))
    print(rule)
    for line in expanded[:-1]:
        print(show(line) if line else rule)


# --- set-up ---------------------------------------------------------------------------------------------------


def write_modules(core: bool, formats: bool, parallel: bool, stores: bool) -> None:
    """Generate the modules the chosen tables need in WORK and compile them, and compile chkpt itself."""
    WORK.mkdir(parents=True)
    modules: dict[str, str] = {}
    if core:
        modules.update(
            {
                "chain_distinct": chains.chkpt_chain_distinct(CHAIN),
                "chain_bound": chains.chkpt_chain_bound(CHAIN),
                "jl_chain_distinct": chains.joblib_chain_distinct(CHAIN),
                "jl_chain_bound": chains.joblib_chain_bound(CHAIN),
                "ham_chain": chains.hamilton_chain(CHAIN),
                "layer_funcs": chains.layer_functions(),
            }
        )
        for layers in HAMILTON_LAYERS:
            modules[f"ham_layers_{layers}"] = chains.hamilton_layers(layers, WIDTH)
    if formats:
        modules["big_stages"] = chains.big_stages()
    if parallel:
        modules["layer_funcs"] = chains.layer_functions()
        modules["parallel_funcs"] = chains.parallel_functions()
    if stores:
        modules["store_funcs"] = chains.store_functions(STORE_STAGES, store_workloads.CALLS)
        modules["chain_bound"] = chains.chkpt_chain_bound(CHAIN)  # the Core table's bound chain, for warm loads
    # Date the files an hour back: a warm rerun is a run of code that was not just edited (chkpt double-checks
    # source files modified around its process's start, which a file written a second ago would be).
    an_hour_ago = time.time() - 3600
    for name, source in modules.items():
        path = WORK / f"{name}.py"
        path.write_text(source)
        os.utime(path, (an_hour_ago, an_hour_ago))
    # PYTHONDONTWRITEBYTECODE=1 keeps Python from writing bytecode, so each import would compile the source
    # again; it still reads bytecode that exists. Compile chkpt and the generated modules, as an install would.
    spec = importlib.util.find_spec("chkpt")
    if spec is None or spec.origin is None:
        raise SystemExit("chkpt is not importable by this interpreter; install it first (pip install -e .)")
    compileall.compile_dir(os.path.dirname(spec.origin), quiet=1)
    compileall.compile_dir(str(WORK), quiet=1, workers=2)


# --- the measurements -----------------------------------------------------------------------------------------


def measure_imports() -> list[Row]:
    log(f"import times, {IMPORT_REPEATS} fresh interpreters each")
    statements = {"chkpt": "import chkpt", "floor": "import json, hashlib, graphlib", "joblib": "import joblib"}
    if not installed("joblib"):
        del statements["joblib"]
    best = dict.fromkeys(statements, float("inf"))
    for _ in range(IMPORT_REPEATS):
        for name, statement in statements.items():
            best[name] = min(best[name], import_time(statement))
    joblib = f"joblib: {ms(best['joblib'])}" if "joblib" in best else "joblib: not installed"
    return [
        [
            "import chkpt (fresh interpreter)",
            ms(best["chkpt"]),
            [ms(best["floor"]), "(json, hashlib, graphlib)"],
            joblib,
            "< 20 ms",
            verdict(best["chkpt"] < 0.020),
        ]
    ]


def measure_warm() -> list[Row]:
    log(f"warm rerun of a {CHAIN}-stage chain, {WARM_REPEATS} fresh processes each")
    variants = ("distinct", "bound")
    stores = {v: str(WORK / f"store_{v}") for v in variants}
    for v in variants:
        setup = child("chkpt_chain", module=f"chain_{v}", store=stores[v], mode="setup")
        assert setup["computed"] == CHAIN + 1, setup
    paths = [str(next((Path(stores["distinct"]) / f"s{i}").glob("*.json"))) for i in range(CHAIN)]
    paths_file = WORK / "floor_paths.json"
    paths_file.write_text(json.dumps(paths))

    tasks: dict[str, tuple[str, dict[str, Any]]] = {
        "floor": ("read_files", {"paths_file": str(paths_file)}),
    }
    for v in variants:
        tasks[f"all_{v}"] = ("chkpt_chain", {"module": f"chain_{v}", "store": stores[v], "mode": "all"})
        tasks[f"target_{v}"] = ("chkpt_chain", {"module": f"chain_{v}", "store": stores[v], "mode": "target"})
    peers: dict[str, str] = {}
    if installed("joblib"):
        for v in variants:
            cache = str(WORK / f"joblib_{v}")
            try:
                child("joblib_chain", module=f"jl_chain_{v}", cache=cache)  # cold run: fills the cache
                tasks[f"joblib_{v}"] = ("joblib_chain", {"module": f"jl_chain_{v}", "cache": cache})
            except ChildError as exc:
                peers[f"joblib_{v}"] = f"failed: {exc}"
    else:
        peers["joblib_distinct"] = peers["joblib_bound"] = "not installed"
    if installed("hamilton"):
        ham = {"module": "ham_chain", "cache": str(WORK / "hamilton_cache"), "final": f"s{CHAIN - 1}"}
        try:
            child("hamilton_chain", **ham)  # cold run: fills the cache
            tasks["hamilton"] = ("hamilton_chain", ham)
        except ChildError as exc:
            peers["hamilton"] = f"failed: {exc}"
    else:
        peers["hamilton"] = "not installed"

    best: dict[str, dict[str, float]] = {}
    failed: dict[str, str] = {}
    for _ in range(WARM_REPEATS):
        for name, (function, args) in tasks.items():
            if name in failed:
                continue
            try:
                result = child(function, **args)
            except ChildError as exc:
                failed[name] = f"failed: {exc}"
                continue
            expected = {"all": CHAIN, "target": 1, "hamilton": CHAIN}.get(name.partition("_")[0])
            if expected is not None and result["loaded"] != expected:
                failed[name] = f"loaded {result['loaded']}, expected {expected}"
                continue
            previous = best.get(name)
            if previous is None or result["run"] < previous["run"]:
                best[name] = result
    peers.update(failed)

    def run_us(name: str) -> str:
        return peers.get(name) or us(best[name]["run"], CHAIN, "stage")

    def chk(name: str) -> tuple[str, str]:
        if name in failed:
            return failed[name], "NO"
        return us(best[name]["run"], CHAIN, "stage"), verdict(best[name]["run"] / CHAIN <= 20e-6)

    floor = [us(best["floor"]["run"], CHAIN, "file"), "(open + json.load)"] if "floor" in best else failed["floor"]
    rows: list[Row] = []
    label = {
        "all_distinct": ["warm rerun, every stage loaded:", f"{CHAIN} distinct functions"],
        "all_bound": ["warm rerun, every stage loaded:", f"1 function bound {CHAIN} times"],
        "target_distinct": ["warm rerun, load=True (only the last", f"stage loads): {CHAIN} distinct functions"],
        "target_bound": ["warm rerun, load=True (only the last", f"stage loads): 1 function bound {CHAIN}x"],
    }
    peer_cells = {
        "all_distinct": [
            f"joblib.Memory, {CHAIN} fns: " + run_us("joblib_distinct"),
            "Hamilton with_cache: " + run_us("hamilton"),
        ],
        "all_bound": [f"joblib.Memory, 1 fn x{CHAIN}: " + run_us("joblib_bound")],
    }
    for name, text in label.items():
        figure, ok = chk(name)
        rows.append(
            [text, figure, floor if name.startswith("all") else "", peer_cells.get(name, ""), "<= 20 us/stage", ok]
        )
    builds = [
        f"{v}: " + (us(best[f"all_{v}"]["build"], CHAIN, "stage") if f"all_{v}" in best else "-") for v in variants
    ]
    hamilton_build = "Hamilton driver: " + (
        us(best["hamilton"]["build"], CHAIN, "stage") if "hamilton" in best else peers.get("hamilton", "-")
    )
    rows.append(["  pipeline build before the run", builds, "", hamilton_build, "-", "-"])
    return rows


def measure_graph() -> list[Row]:
    log("layered graph, store=False, load=False")
    results: dict[str, dict[int, dict[str, float] | str]] = {"chkpt": {}, "floor": {}, "dask": {}, "hamilton": {}}
    for layers in LAYERS:
        for tool, function in (("chkpt", "graph_chkpt"), ("floor", "graph_floor")):
            results[tool][layers] = child(function, layers=layers, width=WIDTH, repeats=GRAPH_REPEATS[layers])
        log(f"  {layers * WIDTH:,} nodes: chkpt and floor done")
    for layers in DASK_LAYERS:
        try:
            results["dask"][layers] = (
                child("graph_dask", layers=layers, width=WIDTH, repeats=PEER_GRAPH_REPEATS[layers])
                if installed("dask")
                else "not installed"
            )
        except ChildError as exc:
            results["dask"][layers] = f"failed: {exc}"
    for layers in HAMILTON_LAYERS:
        try:
            results["hamilton"][layers] = (
                child(
                    "graph_hamilton",
                    module=f"ham_layers_{layers}",
                    layers=layers,
                    width=WIDTH,
                    repeats=PEER_GRAPH_REPEATS[layers],
                )
                if installed("hamilton")
                else "not installed"
            )
        except ChildError as exc:
            results["hamilton"][layers] = f"failed: {exc}"
    log("  peers done")

    def split(result: dict[str, float], layers: int) -> str:
        n = layers * WIDTH
        return f"(build {result['build'] / n * 1e6:.1f} + run {result['run'] / n * 1e6:.1f})"

    def per_node(result: dict[str, float] | str, layers: int) -> str:
        if isinstance(result, str):
            return result
        return f"{us(result['total'], layers * WIDTH, 'node')} {split(result, layers)}"

    rows: list[Row] = []
    for layers in LAYERS:
        chkpt_result = results["chkpt"][layers]
        assert isinstance(chkpt_result, dict)
        peers = []
        for tool, name in (("dask", "dask"), ("hamilton", "Hamilton")):
            result = results[tool].get(layers, "not measured at this size (time)")
            peers.append(f"{name}: {per_node(result, layers)}")
        rows.append(
            [
                [f"graph overhead, {layers * WIDTH:,} nodes", "(100 wide, 2 inputs each), end to end"],
                [us(chkpt_result["total"], layers * WIDTH, "node"), split(chkpt_result, layers)],
                per_node(results["floor"][layers], layers),
                peers,
                "<= 10 us/node",
                verdict(chkpt_result["total"] / (layers * WIDTH) <= 10e-6),
            ]
        )
    small, large = LAYERS[0], LAYERS[-1]

    def ratio(tool: str) -> float:
        a, b = results[tool][small], results[tool][large]
        assert isinstance(a, dict) and isinstance(b, dict)
        return (b["total"] / large) / (a["total"] / small)

    rows.append(
        [
            [f"  linearity: us/node at {large * WIDTH:,}", f"  / us/node at {small * WIDTH:,} nodes"],
            f"{ratio('chkpt'):.2f}x",
            f"{ratio('floor'):.2f}x",
            "",
            "linear (<= 1.5x)",
            verdict(ratio("chkpt") <= 1.5),
        ]
    )
    return rows


def measure_chain_build() -> list[Row]:
    log("building long chains")
    results = {n: child("chain_build", n=n, repeats=BUILD_REPEATS[n]) for n in BUILD_CHAIN}
    rows: list[Row] = []
    for n in BUILD_CHAIN:
        chkpt, floor = results[n]["build"], results[n]["floor"]
        rows.append(
            [
                f"build a {n:,}-stage chain",
                [ms(chkpt), f"({us(chkpt, n, 'stage')})"],
                [ms(floor), f"({us(floor, n, 'stage')}, nested tuples)"],
                "",
                "-",
                "-",
            ]
        )
    small, large = BUILD_CHAIN

    def growth(field: str) -> float:
        return (results[large][field] / large) / (results[small][field] / small)

    rows.append(
        [
            [f"  linearity: us/stage at {large:,}", f"  / us/stage at {small:,}"],
            f"{growth('build'):.2f}x",
            f"{growth('floor'):.2f}x",
            "",
            "linear (<= 1.5x or the floor's)",
            verdict(growth("build") <= max(1.5, growth("floor"))),
        ]
    )
    return rows


# --- formats (issue 3) ------------------------------------------------------------------------------------------

ARRAY_MIB = 256  # the big array: 256 MiB of float64
SMALL_MIB = 1  # the small input of the key-time row
JSON_ITEMS = 640_000  # small dicts: ~49.5 MB as compact JSON, ~56.5 MB with json.dumps's default separators
NUMPY_STORE_REPEATS = 6
NUMPY_LOAD_REPEATS = 6
KEY_CHILDREN = 5  # fresh processes per tool and size ...
KEY_CALLS = 5  # ... each timing this many calls
JSON_STORE_REPEATS = 4
JSON_LOAD_REPEATS = 5
Result = dict[str, Any] | str  # what a child measured, or why it failed


def formats_child(name: str, **args: Any) -> dict[str, Any]:
    return child(name, runner="format_workloads", **args)


def best_of(
    tasks: dict[str, tuple[str, dict[str, Any]]], repeats: int, runner: str = "format_workloads"
) -> dict[str, Result]:
    """Run every task `repeats` times, each in a fresh child (a function of bench/<runner>.py), in rounds (so a
    slow spell of the machine hits every task alike) whose order rotates, and keep for each task the minimum of
    each timing it reports, or why it failed."""
    best: dict[str, Result] = {}
    names = list(tasks)
    for round in range(repeats):
        # Each round starts one task further on, so that no task always follows the same one.
        shift = round % len(names)
        for name in names[shift:] + names[:shift]:
            function, args = tasks[name]
            previous = best.get(name)
            if isinstance(previous, str):
                continue
            try:
                result = child(function, runner=runner, **args)
            except (ChildError, subprocess.TimeoutExpired) as exc:
                best[name] = f"failed: {exc}"
                continue
            if previous is not None:
                for field, value in result.items():
                    if isinstance(value, float):
                        result[field] = min(value, previous[field])
            best[name] = result
    return best


def seconds_of(result: Result | None, field: str = "seconds") -> float | None:
    return result[field] if isinstance(result, dict) else None


def duration(seconds: float) -> str:
    """Three significant digits: us below 1 ms, ms below 1 s, else s."""
    if seconds < 0.9995e-3:
        return f"{seconds * 1e6:.3g} us"
    return f"{seconds * 1e3:.3g} ms" if seconds < 0.9995 else f"{seconds:.3g} s"


def shown(result: Result | None, field: str = "seconds") -> str:
    if result is None:
        return "not measured"
    return result if isinstance(result, str) else duration(result[field])


def versus(result: Result | None, floor: Result | None, label: str = "floor") -> tuple[str, float | None]:
    """The figure with its ratio to the floor's, and the ratio (None when either failed)."""
    mine, theirs = seconds_of(result), seconds_of(floor)
    if mine is None or theirs is None:
        return shown(result), None
    return f"{duration(mine)} ({mine / theirs:.2f}x {label})", mine / theirs


def judged(ratio: float | None, limit: float) -> str:
    return "NO" if ratio is None else verdict(ratio <= limit)


def measure_numpy_store() -> list[Row]:
    log(f"numpy store of a {ARRAY_MIB} MiB array, {NUMPY_STORE_REPEATS} fresh processes each")
    root = str(WORK / "numpy_store")
    base = {"root": root, "mib": ARRAY_MIB}
    tasks: dict[str, tuple[str, dict[str, Any]]] = {
        "chkpt": ("numpy_store", {**base, "tool": "chkpt"}),
        "chkpt_sha": ("numpy_store", {**base, "tool": "chkpt", "fast": False}),
        "save_fsync": ("numpy_store", {**base, "tool": "save_fsync"}),
        "scratch": ("numpy_store", {**base, "tool": "chkpt_scratch"}),
        "scratch_sha": ("numpy_store", {**base, "tool": "chkpt_scratch", "fast": False}),
        "save": ("numpy_store", {**base, "tool": "save"}),
    }
    if installed("joblib"):
        tasks["joblib"] = ("numpy_store", {**base, "tool": "joblib"})
    best = best_of(tasks, NUMPY_STORE_REPEATS)
    best.setdefault("joblib", "joblib not installed")
    for name, expected in (("chkpt", "xxh3_128"), ("chkpt_sha", "sha256")):
        result = best[name]
        assert not isinstance(result, dict) or result["checksum"] == expected, (name, result)
    durable, durable_ratio = versus(best["chkpt"], best["save_fsync"])
    durable_sha, _ = versus(best["chkpt_sha"], best["save_fsync"])
    scratch, scratch_ratio = versus(best["scratch"], best["joblib"], "joblib")
    scratch_sha, _ = versus(best["scratch_sha"], best["joblib"], "joblib")
    save_fsync = [shown(best["save_fsync"]), "(np.save into an open file", " + flush + os.fsync)"]
    return [
        [
            [f"numpy store, durable: {ARRAY_MIB} MiB", "float64, chkpt[fast] (xxh3-128)"],
            durable,
            save_fsync,
            "",
            "<= 1.25x floor",
            judged(durable_ratio, 1.25),
        ],
        [
            ["  the same without xxhash", "  (sha256, stdlib only)"],
            durable_sha,
            "(the same floor)",
            "",
            "- (info: no chkpt[fast])",
            "-",
        ],
        [
            ["Config(durable=False) store: no fsync,", f"still atomic; {ARRAY_MIB} MiB, chkpt[fast]"],
            scratch,
            [shown(best["save"]), "(np.save into an open file)"],
            f"joblib.dump: {shown(best['joblib'])}",
            "<= 1.2x joblib.dump",
            judged(scratch_ratio, 1.2),
        ],
        [
            ["  the same without xxhash", "  (sha256, stdlib only)"],
            scratch_sha,
            "(the same floor)",
            "(the same)",
            "- (info: no chkpt[fast])",
            "-",
        ],
    ]


def measure_numpy_load() -> list[Row]:
    log(f"numpy load of a {ARRAY_MIB} MiB array from the page cache, {NUMPY_LOAD_REPEATS} fresh processes each")
    stores = {"fast": str(WORK / "numpy_fast"), "sha": str(WORK / "numpy_sha")}
    setups = {
        variant: formats_child("numpy_setup", root=root, mib=ARRAY_MIB, fast=variant == "fast")
        for variant, root in stores.items()
    }
    assert setups["fast"]["checksum"] == "xxh3_128" and setups["sha"]["checksum"] == "sha256", setups
    tasks: dict[str, tuple[str, dict[str, Any]]] = {}
    for variant, root in stores.items():
        args = {"root": root, "key": setups[variant]["key"], "mib": ARRAY_MIB, "fast": variant == "fast"}
        tasks[f"chkpt_{variant}"] = ("numpy_load", {**args, "tool": "chkpt", "path": setups[variant]["path"]})
        tasks[f"mmap_{variant}"] = ("numpy_load", {**args, "tool": "chkpt_mmap", "path": setups[variant]["path"]})
    plain = {"root": stores["fast"], "key": setups["fast"]["key"], "mib": ARRAY_MIB}
    tasks["np_load"] = ("numpy_load", {**plain, "tool": "np_load", "path": setups["fast"]["path"]})
    tasks["np_load_mmap"] = ("numpy_load", {**plain, "tool": "np_load_mmap", "path": setups["fast"]["path"]})
    if "joblib_path" in setups["fast"] and installed("joblib"):
        tasks["joblib"] = ("numpy_load", {**plain, "tool": "joblib", "path": setups["fast"]["joblib_path"]})
    best = best_of(tasks, NUMPY_LOAD_REPEATS)
    best.setdefault("joblib", "joblib not installed")
    for name in ("mmap_fast", "mmap_sha"):
        result = best[name]
        assert not isinstance(result, dict) or result["memmap"], (name, result)
    load, ratio = versus(best["chkpt_fast"], best["np_load"])
    load_sha, _ = versus(best["chkpt_sha"], best["np_load"])
    return [
        [
            ["numpy load, verified, page cache:", f"{ARRAY_MIB} MiB, chkpt[fast] (xxh3-128)"],
            load,
            [shown(best["np_load"]), "(np.load(path) of the", "same .npy file)"],
            f"joblib.load: {shown(best['joblib'])}",
            "<= 1.25x floor",
            judged(ratio, 1.25),
        ],
        [
            ["  the same without xxhash", "  (sha256, stdlib only)"],
            load_sha,
            "(the same floor)",
            "(the same)",
            "- (info: no chkpt[fast])",
            "-",
        ],
        [
            ["  mmap=True: read-only memory map,", "  after a checksum of the whole file"],
            [f"xxh3: {shown(best['mmap_fast'])}", f"sha256: {shown(best['mmap_sha'])}"],
            [shown(best["np_load_mmap"]), "(np.load(mmap_mode='r'),", "reads only the header)"],
            "",
            "- (info)",
            "-",
        ],
    ]


def measure_key_time() -> list[Row]:
    log(f"key time of a stage taking a {SMALL_MIB} MiB / {ARRAY_MIB} MiB array, {KEY_CHILDREN} fresh processes each")
    tasks: dict[str, tuple[str, dict[str, Any]]] = {}
    for mib in (SMALL_MIB, ARRAY_MIB):
        tasks[f"chkpt_{mib}"] = ("key_time", {"tool": "chkpt", "mib": mib, "repeats": KEY_CALLS})
        if installed("joblib"):
            tasks[f"joblib_{mib}"] = ("key_time", {"tool": "joblib", "mib": mib, "repeats": KEY_CALLS})
    best = best_of(tasks, KEY_CHILDREN)
    small, large = seconds_of(best[f"chkpt_{SMALL_MIB}"], "best"), seconds_of(best[f"chkpt_{ARRAY_MIB}"], "best")
    ratio = large / small if small is not None and large is not None else None
    chkpt_cells = [
        f"{SMALL_MIB} MiB: {shown(best[f'chkpt_{SMALL_MIB}'], 'best')}",
        f"{ARRAY_MIB} MiB: {shown(best[f'chkpt_{ARRAY_MIB}'], 'best')}",
        f"ratio: {ratio:.2f}x" if ratio is not None else "ratio: -",
        f"(first plan in a process: {shown(best[f'chkpt_{SMALL_MIB}'], 'first')}",
        f" / {shown(best[f'chkpt_{ARRAY_MIB}'], 'first')})",
    ]
    if installed("joblib"):
        joblib_cells = [
            "joblib.hash(array), on every call:",
            f"{SMALL_MIB} MiB: {shown(best[f'joblib_{SMALL_MIB}'], 'best')}",
            f"{ARRAY_MIB} MiB: {shown(best[f'joblib_{ARRAY_MIB}'], 'best')}",
        ]
    else:
        joblib_cells = ["joblib not installed"]
    return [
        [
            ["key time of a 2nd stage taking a", f"{SMALL_MIB} MiB vs a {ARRAY_MIB} MiB array as input", "(make_plan)"],
            chkpt_cells,
            "-",
            joblib_cells,
            [f"no growth: {ARRAY_MIB}/{SMALL_MIB} MiB", "< 1.5x"],
            "NO" if ratio is None else verdict(ratio < 1.5),
        ]
    ]


def measure_json() -> list[Row]:
    log(f"json codec on {JSON_ITEMS:,} small dicts: store, {JSON_STORE_REPEATS} fresh processes each")
    root = str(WORK / "json_store")
    tasks: dict[str, tuple[str, dict[str, Any]]] = {}
    for durable in (True, False):
        mode = "durable" if durable else "scratch"
        for tool in ("json", "json-lossy", "floor"):
            tasks[f"{tool}_{mode}"] = ("json_store", {"tool": tool, "root": root, "n": JSON_ITEMS, "durable": durable})
    best = best_of(tasks, JSON_STORE_REPEATS)
    log(f"json codec: load, {JSON_LOAD_REPEATS} fresh processes each")
    load_root = str(WORK / "json_load")
    setup = formats_child("json_setup", root=load_root, n=JSON_ITEMS)
    args = {"root": load_root, "key": setup["key"], "path": setup["path"], "n": JSON_ITEMS}
    loads = best_of(
        {tool: ("json_load", {**args, "tool": tool}) for tool in ("chkpt", "floor", "floor_nogc")}, JSON_LOAD_REPEATS
    )
    megabytes = setup["floor_bytes"] / 1e6
    rows: list[Row] = []
    for durable in (True, False):
        mode = "durable" if durable else "scratch"
        floor = best[f"floor_{mode}"]
        for tool in ("json", "json-lossy"):
            figure, ratio = versus(best[f"{tool}_{mode}"], floor)
            what = "durable (fsync)" if durable else "Config(durable=False)"
            floor_cell: Cell = (
                [shown(floor), "(compact json.dumps", "+ write" + (" + fsync)" if durable else ")")]
                if tool == "json"
                else "(the same floor)"
            )
            rows.append(
                [
                    [f"json store, format={tool!r}:", f"{megabytes:.1f} MB of small dicts, {what}"],
                    figure,
                    floor_cell,
                    "",
                    "<= 1.2x floor",
                    judged(ratio, 1.2),
                ]
            )
    figure, ratio = versus(loads["chkpt"], loads["floor"])
    rows.append(
        [
            ["json load, verified, page cache:", f"{megabytes:.1f} MB of small dicts"],
            figure,
            [shown(loads["floor"]), "(json.load(open file))"],
            ["json.load with the cyclic", f"GC paused: {shown(loads['floor_nogc'])}"],
            "<= 1.0x json.load",
            judged(ratio, 1.0),
        ]
    )
    return rows


def formats_notes() -> list[str]:
    return [
        f"Every figure is the best (minimum) of several repeats, because timings on this machine are noisy, and "
        f"every repeat is a fresh child process of this interpreter that makes its data first and times only the "
        f"measured call with time.perf_counter (imports, and making the array or list, are never timed): numpy "
        f"stores {NUMPY_STORE_REPEATS} processes each; numpy loads {NUMPY_LOAD_REPEATS} each; JSON stores "
        f"{JSON_STORE_REPEATS} each; JSON loads {JSON_LOAD_REPEATS} each; key times {KEY_CHILDREN} processes x "
        f"{KEY_CALLS} calls each. The tasks of a row group run in rounds, one of each per round, so a slow spell "
        f"of the machine hits them alike, and each round starts one task further on. Before its clock starts, "
        f"a child that stores or loads a big value writes and frees a block of memory (the array's size + 64 "
        f"MiB; {format_workloads.JSON_PRIME_MIB} MiB for JSON): on this VM a process's first touch of memory "
        f"the guest has not used lately is slow and erratic (the same verified load took 47-170 ms unprimed, "
        f"47-53 ms primed), and priming gives chkpt and its floors the same warm memory. 'x floor' is chkpt's "
        "best over the floor's best.",
        f"The array: np.arange({ARRAY_MIB} MiB of float64) * 0.5, made in the child before timing. "
        f"'chkpt[fast]' rows use xxhash (installed here) and record xxh3_128 in the checkpoint's record; "
        f"'without xxhash' rows run in children that set sys.modules['xxhash'] = None before importing chkpt, so "
        f"chkpt falls back to sha256, as without the extra (the algorithm in each record is checked).",
        "numpy store: chkpt.store.LocalStore(dir).write(stage, key, 'numpy', codecs.get('numpy'), array, "
        "record) called directly (what a run does for a stage with format='numpy' after computing it): np.save into a "
        "temporary file, the checksum computed from the array in memory, flush, fsync, rename, fsync of the "
        "folder, then the record (<key>.meta.json) written the same way. Floor: np.save into a file opened "
        "'wb' + flush + os.fsync, no rename and no record. Each write goes to a new file in a new folder, "
        "deleted after timing.",
        "Config(durable=False) store: the same call on LocalStore(dir, durable=False): no fsyncs, still a "
        "temporary file renamed into place and a record. Target peer: joblib.dump(array, path) (no fsync). "
        "Floor: np.save into an open file, no fsync.",
        "numpy load: one child writes the checkpoint (durable), then each fresh child loads it once from the "
        "page cache: LocalStore(dir).read(stage, key, 'numpy'), which reads the record, checks the file's size, "
        "reads the .npy header, then reads the data into a new array piece by piece, hashing each piece as it "
        "arrives, and compares the checksum. Floor: np.load(path) of the same .npy file, unverified. joblib.load: of a "
        "joblib.dump of the same array. mmap=True: read(..., mmap=True) returns a read-only np.memmap, after "
        "checking the checksum of the whole file (read through one reused 8 MiB buffer, so no page of the "
        "map is touched); np.load(mmap_mode='r') reads only the header and is shown for information.",
        f"Key time: chkpt.plan.make_plan(pipeline, Config(store=False, load=False), None) for "
        f"pipeline = (big_source.bind(mib=M),) >> consumer, two format='numpy' stages of a generated module; "
        f"big_source is not run (a key depends on code, bound parameters and upstream keys, never on a value), "
        f"so the whole plan, both keys with their code fingerprints, is what is timed; the child holds an array "
        f"of M MiB all the same. Best of {KEY_CALLS} calls per process; the first call of a process also "
        f"fingerprints the module's code (shown apart). joblib: joblib.hash(array), which joblib.Memory "
        f"computes for a cached function's array argument on every call.",
        f"JSON: a list of {JSON_ITEMS:,} dicts like {{'id': i, 'name': f'item{{i}}', 'value': i * 0.5, "
        f"'tags': ['a', 'b'], 'ok': True}}. Store: LocalStore(dir, durable=...).write with codecs.get('json') "
        f"(strict: first walks the value for tuples and non-str dict keys) or codecs.get('json-lossy'); both "
        f"json.dumps with compact separators, take the sha256 of the text, and write record and value into "
        f"one file, renamed into place (plus fsyncs when durable). Floor: json.dumps(value, separators=(',', "
        f"':')) written to a file opened 'w' (+ flush + os.fsync for the durable rows). Load: "
        f"LocalStore(dir).read(stage, key, 'json') (reads the file, checks key, length and sha256 of the value by "
        f"comparing bytes, json.loads with the cyclic GC paused) vs json.load(open file) of the compact file, GC "
        f"on, as Python runs by default.",
    ]


# --- parallel executors -----------------------------------------------------------------------------------------

SPIN_SECONDS = 1.0  # each of the two CPU-bound stages: this long on one core, calibrated in the child
SPIN_ROUNDS = 3
CLUSTER_LAYERS, CLUSTER_WIDTH = 100, 10  # 1,000 nodes on the Dask cluster
CLUSTER_ROUNDS = 5  # after one warm-up run of each variant
CLUSTER_TIMEOUT = 300  # seconds for the whole cluster child (it takes about a minute)
THREADS_LAYERS, THREADS_WIDTH = 1_000, 10  # 10,000 nodes on executor="threads"
THREADS_REPEATS = 3


def parallel_child(name: str, timeout: float = 600, **args: Any) -> dict[str, Any]:
    return run_child(name, "parallel_workloads", args, timeout)


def measure_spins() -> list[Row]:
    log(f"two ~{SPIN_SECONDS:.0f} s CPU-bound stages + a join: processes, sync, joblib; best of {SPIN_ROUNDS} rounds")
    result = parallel_child("spins", rounds=SPIN_ROUNDS, seconds=SPIN_SECONDS)
    one = result["spin"]
    processes, sync = result["processes"], result["sync"]
    if isinstance(result["joblib"], str):
        joblib_cell: Cell = f"joblib: {result['joblib']}"
    else:
        joblib_cell = [
            f"joblib.Parallel(n_jobs=2): {duration(result['joblib'])}",
            f"({result['joblib'] / one:.2f}x one spin; its first",
            f"call, starting loky's workers: {duration(result['joblib_first'])})",
        ]
    return [
        [
            ["2 independent ~1 s CPU-bound stages", "+ a trivial join, no caching:", "executor='processes', workers=2"],
            [duration(processes), f"({processes / one:.2f}x one spin)"],
            [f"one spin alone: {duration(one)}", f"(n = {result['n']:,} steps);", "on 2 cores, ideal: 1 spin"],
            joblib_cell,
            "<= 1.3 s",
            verdict(processes <= 1.3),
        ],
        [
            ["  the same, executor='sync'", "  (one stage after the other)"],
            [duration(sync), f"({sync / one:.2f}x one spin)"],
            "(the same floor)",
            "",
            "- (info: ~2 spins)",
            "-",
        ],
    ]


def measure_cluster() -> list[Row]:
    nodes = CLUSTER_LAYERS * CLUSTER_WIDTH
    label = [
        f"{nodes:,}-node layered graph ({CLUSTER_LAYERS} x",
        f"{CLUSTER_WIDTH}) + sink, no caching, on a",
        "LocalCluster (2 worker processes x",
        "1 thread): Config(executor=client)",
    ]
    target = ["<= dask.delayed", "(chkpt / delayed <= 1.0)"]
    if not installed("distributed"):
        return [[label, "dask.distributed not installed", "", "", target, "NO"]]
    log(f"{nodes:,}-node graph on a Dask LocalCluster: chkpt, dask.delayed, client.get; {CLUSTER_ROUNDS} rounds")
    result = parallel_child(
        "dask_cluster", timeout=CLUSTER_TIMEOUT, layers=CLUSTER_LAYERS, width=CLUSTER_WIDTH, rounds=CLUSTER_ROUNDS
    )
    chkpt, delayed, get = result["chkpt"], result["delayed"], result["get"]
    ratio = chkpt["total"] / delayed["total"]

    def split(timed: dict[str, float]) -> str:
        return f"(build {duration(timed['build'])} + run {duration(timed['run'])})"

    return [
        [
            label,
            [
                duration(chkpt["total"]),
                split(chkpt),
                f"{ratio:.2f}x dask.delayed",
                f"(run alone: {chkpt['run'] / delayed['run']:.2f}x)",
            ],
            ["client.get(one dict graph):", duration(get["total"]), split(get)],
            ["dask.delayed + dask.compute on", f"the same client: {duration(delayed['total'])}", split(delayed)],
            target,
            verdict(ratio <= 1.0),
        ],
        [
            ["  cluster start; first (warm-up)", "  run of each variant"],
            [f"start: {duration(result['start'])}", f"first run: {duration(result['warm']['chkpt'])}"],
            f"first run: {duration(result['warm']['get'])}",
            f"first run: {duration(result['warm']['delayed'])}",
            "- (info)",
            "-",
        ],
    ]


def measure_threads() -> list[Row]:
    nodes = THREADS_LAYERS * THREADS_WIDTH
    log(f"{nodes:,}-node graph: executor='threads', sync, floors; {THREADS_REPEATS} rounds of fresh processes")
    args: dict[str, Any] = {"layers": THREADS_LAYERS, "width": THREADS_WIDTH, "repeats": 1}
    tasks = {tool: ("threaded_graph", {**args, "tool": tool}) for tool in ("threads", "sync", "pool", "floor")}
    results = best_of(tasks, THREADS_REPEATS, runner="parallel_workloads")
    if installed("dask"):
        log(f"  dask.delayed, threaded scheduler: built once (slow), computed {THREADS_REPEATS} times")
        try:
            results["dask"] = parallel_child("threaded_graph", tool="dask", **{**args, "repeats": THREADS_REPEATS})
        except (ChildError, subprocess.TimeoutExpired) as exc:
            results["dask"] = f"failed: {exc}"
    else:
        results["dask"] = "not installed"

    def per_node(result: Result) -> str:
        if isinstance(result, str):
            return result
        return us(result["total"], nodes, "node")

    def split(result: Result) -> str:
        if isinstance(result, str):
            return ""
        return f"(build {result['build'] / nodes * 1e6:.1f} + run {result['run'] / nodes * 1e6:.1f})"

    threads = results["threads"]
    if isinstance(threads, str):
        raise ChildError(threads)
    return [
        [
            [
                f"{nodes:,}-node layered graph",
                f"({THREADS_LAYERS:,} x {THREADS_WIDTH}) + sink, trivial stages:",
                "executor='threads', workers=2",
            ],
            [per_node(threads), split(threads)],
            [
                per_node(results["floor"]),
                split(results["floor"]),
                "(graphlib + a loop)",
                f"thread pool: {per_node(results['pool'])}",
                split(results["pool"]),
                "(graphlib + ThreadPoolExecutor(2))",
            ],
            [
                f"chkpt, executor='sync': {per_node(results['sync'])}",
                f"  {split(results['sync'])}",
                "dask.delayed, scheduler='threads'",
                f"(2 workers): {per_node(results['dask'])}",
                f"  {split(results['dask'])}",
            ],
            "< 30 us/node",
            verdict(threads["total"] / nodes < 30e-6),
        ]
    ]


def parallel_notes() -> list[str]:
    return [
        "Every figure is the best (minimum) of several repeats, because timings on this machine (2 cores) are noisy, "
        "and its speed drifts over minutes (the same figure can differ by 1.5x between two runs of this script), "
        "so compare figures of one row, measured side by side, rather than across runs. Every repeat is timed "
        "inside a child process of this interpreter with time.perf_counter, from before building the pipeline "
        "(or the peer's graph) to after its value is back, so interpreter start-up and imports are never "
        "included. A row's variants run in rounds, one of each per round, each round starting one variant further "
        "on, so a slow spell hits them alike: rows 1 and 2 in one child each, row 3 in a fresh child per variant "
        "and round.",
        f"CPU-bound stages: spin(n, j) of a generated module, a pure-Python loop of n steps (it holds one core and "
        f"the GIL); the child first calibrates n to ~{SPIN_SECONDS:.0f} s of one core, then times one spin alone "
        f"(the floor) in the same rounds as the rest. Pipeline: (() >> spin_a, () >> spin_b) >> join, spin_a and "
        f"spin_b the same function bound to (n, j=0) and (n, j=1), Config(executor='processes', workers=2, "
        f"load=False, store=False): "
        f"the run starts a ProcessPoolExecutor (fork) and shuts it down, both inside the timing. 'sync': the same "
        f"with executor='sync'. joblib: Parallel(n_jobs=2)(delayed(spin)(n=n, j=j) for j in (0, 1)), then join "
        f"here; loky keeps its workers between calls, so its best is warm and its first call is shown apart. "
        f"Best of {SPIN_ROUNDS} rounds.",
        f"Dask cluster: one child starts LocalCluster(n_workers=2, processes=True, threads_per_worker=1, "
        f"dashboard_address=None) and Client(cluster) once, then runs the {CLUSTER_LAYERS * CLUSTER_WIDTH:,}-node "
        f"layered graph of the Core table's graph rows ({CLUSTER_WIDTH} wide, node j takes nodes j and (j+1)%"
        f"{CLUSTER_WIDTH} of the layer below, add(a, b); {CLUSTER_WIDTH} bound sources; collect(*xs) sink) three "
        f"ways: chkpt with Config(executor=client, load=False, store=False) (chkpt hands the plan to the scheduler "
        f"as one graph); dask.delayed calls with dask.compute(sink, scheduler=client); one dict of task tuples with "
        f"client.get(graph, sink). Each variant runs once to warm up (workers import the stage functions), then "
        f"{CLUSTER_ROUNDS} rounds; the minimum end to end is shown, with the minimum build and run apart. The "
        f"scheduler, both workers and the client share the machine's 2 cores.",
        f"Threads: the same layered graph, {THREADS_LAYERS:,} layers x {THREADS_WIDTH}, Config(executor='threads', "
        f"workers=2, load=False, store=False) (a pool the run starts), end to end; us/node = total / "
        f"{THREADS_LAYERS * THREADS_WIDTH:,}. Peers: the same with executor='sync'; dask.delayed calls with "
        f"dask.compute(sink, scheduler='threads', num_workers=2). Building the delayed calls is most of dask's time "
        f"here and grows with depth (each call merges the graphs of its inputs, and in this graph a node's graph "
        f"holds nearly every layer below it: ~0.5 ms/node at 100 layers, ~2.7 ms/node at 800), so dask builds "
        f"once and computes {THREADS_REPEATS} times in one child; its total is that build + its fastest compute. "
        f"Floors: the Core table's graph floor (a dict graph, graphlib.TopologicalSorter.static_order and a loop "
        f"calling each function), and 'thread pool': the same dict graph run by a loop that submits each ready node "
        f"to a concurrent.futures.ThreadPoolExecutor(2) and waits for the first to finish (no keys, plan or "
        f"records), about the least a ready-queue over stdlib futures costs here. chkpt 'threads', 'sync' and both "
        f"floors: {THREADS_REPEATS} rounds of one fresh child each.",
    ]


# --- stores: runs that share a checkpoint folder -------------------------------------------------------------------

STORE_STAGES = 20  # stages in the chain
STORE_RUNS = 4  # runs at once on one folder
STORE_SPIN = 0.1  # seconds of one core per stage, calibrated in the child
STORE_ROUNDS = 3
STORE_TIMEOUT = 300  # seconds for the whole child (it takes about a minute)
LOAD_ROUNDS = 5  # rounds of the warm loads by store (a fresh process per store, task and round)
LOAD_TIMEOUT = 900  # seconds for the warm loads' child (it takes about 70 s, most of it moto's S3)
LOAD_STORES = {"local": "local folder", "memory": "memory://", "s3": "moto S3"}


def measure_stores() -> list[Row]:
    log(
        f"{STORE_RUNS} runs of a {STORE_STAGES}-stage chain at once on one folder, and one alone: chkpt, joblib, "
        f"a plain loop; best of {STORE_ROUNDS} rounds"
    )
    result = run_child(
        "shared_runs",
        "store_workloads",
        {
            "root": str(WORK / "shared_runs"),
            "stages": STORE_STAGES,
            "runs": STORE_RUNS,
            "rounds": STORE_ROUNDS,
            "seconds": STORE_SPIN,
        },
        STORE_TIMEOUT,
    )
    many = f"chkpt_{STORE_RUNS}"
    for name in ("chkpt_1", many, "loop"):
        if isinstance(result[name], str):
            raise ChildError(f"{name}: {result[name]}")
    one, together, loop = result["chkpt_1"]["wall"], result[many]["wall"], result["loop"]["wall"]
    ratio = together / one
    rounds = result[many]["rounds"]
    shared = all(check["once"] and check["values"] for check in rounds)
    calls = "/".join(str(check["calls"]) for check in rounds)
    outcomes = rounds[0]["outcomes"]
    chkpt_cells = [
        duration(together),
        f"({ratio:.2f}x one run)",
        f"{calls} stage calls in all",
        f"(rounds 1-{len(rounds)}; each stage once: {verdict(shared)})",
        f"{outcomes.get('stored', 0)} stored + {outcomes.get('loaded', 0)} loaded,",
        f"all {STORE_RUNS} values equal: {verdict(all(check['values'] for check in rounds))}",
    ]
    joblib_one, joblib_many = result["joblib_1"], result[f"joblib_{STORE_RUNS}"]
    if isinstance(joblib_many, str) or isinstance(joblib_one, str):
        text = joblib_many if isinstance(joblib_many, str) else joblib_one
        peer_cells: Cell = f"joblib.Memory: {text}"
        peer_one: Cell = f"joblib.Memory: {text}"
    else:
        joblib_calls = "/".join(str(check["calls"]) for check in joblib_many["rounds"])
        peer_cells = [
            f"joblib.Memory, {STORE_RUNS} at once:",
            f"{duration(joblib_many['wall'])} ({joblib_many['wall'] / joblib_one['wall']:.2f}x its one run);",
            f"{joblib_calls} stage calls in all",
            f"joblib one run alone: {duration(joblib_one['wall'])}",
        ]
        peer_one = f"joblib.Memory: {duration(joblib_one['wall'])}"
    return [
        [
            [
                f"{STORE_RUNS} runs of one {STORE_STAGES}-stage pipeline",
                "at once on one folder, load=True,",
                f"fresh store (a chain, ~{STORE_SPIN * 1e3:.0f} ms of",
                "CPU per stage)",
            ],
            chkpt_cells,
            [f"one run alone: {duration(one)}", f"(ideal: {STORE_RUNS} runs take", "as long as 1)"],
            peer_cells,
            "<= 1.3x one run",
            verdict(ratio <= 1.3 and shared),
        ],
        [
            ["  one run alone, for scale", f"  ({STORE_STAGES} stages computed and stored)"],
            [duration(one), f"({one / loop:.2f}x the loop)"],
            [
                f"plain loop: {duration(loop)}",
                f"({duration(loop / STORE_STAGES)}/stage: the {STORE_STAGES}",
                "functions called in a chain,",
                "no caching)",
            ],
            peer_one,
            "- (info)",
            "-",
        ],
    ]


def measure_store_loads() -> list[Row]:
    log(
        f"warm loads of the {CHAIN}-stage chain from a local folder, memory:// and moto's S3; a fresh process per "
        f"measurement, best of {LOAD_ROUNDS} rounds"
    )
    result = run_child(
        "warm_loads",
        "store_workloads",
        {"root": str(WORK / "warm_loads"), "module": "chain_bound", "stages": CHAIN, "rounds": LOAD_ROUNDS},
        LOAD_TIMEOUT,
    )

    def cell(store: str, task: str) -> str:
        """One store's figure: us per stage (and for 'all' its ratio to the store's floor), or us per read for the
        floor; or why it is missing."""
        name, measured, floor = LOAD_STORES[store], result[f"{store}/{task}"], result[f"{store}/floor"]
        if isinstance(measured, str):
            return f"{name}: {measured}"
        if task == "floor":
            return f"{name}: {us(measured['run'], CHAIN, 'file' if store == 'local' else 'object')}"
        text = f"{name}: {us(measured['run'], CHAIN, 'stage')}"
        if task == "all" and not isinstance(floor, str):
            text += f" ({measured['run'] / floor['run']:.1f}x floor)"
        return text

    connects = []
    for store in ("memory", "s3"):
        timed = [result[f"{store}/{task}"] for task in store_workloads.TASKS]
        seconds = [measured["connect"] for measured in timed if not isinstance(measured, str)]
        connects.append(f"{LOAD_STORES[store]}: " + (ms(min(seconds)) if seconds else "-"))
    target = ["- (info; issue 5", "asks for the figures)"]
    return [
        [
            [
                f"warm load, {CHAIN}-stage chain, each",
                "stage loaded and verified (one",
                f"function bound {CHAIN} times, as the",
                "Core table's row)",
            ],
            [cell(store, "all") for store in LOAD_STORES],
            [cell(store, "floor") for store in LOAD_STORES]
            + [f"(reads each ~{result['bytes']}-byte", "checkpoint once)"],
            "",
            target,
            "-",
        ],
        [
            ["warm rerun, load=True, only the last", "stage loads (same chain and stores)"],
            [cell(store, "target") for store in LOAD_STORES],
            "",
            "",
            target,
            "-",
        ],
        [
            ["  opening the file system: client set-", "  up + first request (not in the above)"],
            connects,
            "",
            "",
            "- (info)",
            "-",
        ],
    ]


# --- stores: listing many checkpoints, and a store of 1,000,000 ----------------------------------------------------

LIST_COUNT = 100_000  # checkpoints of the listed store
LIST_ROUNDS = 3
FILL_WORKERS = 2  # processes filling a store at once (this machine has 2 cores)
FILL_TIMEOUT = 600  # seconds to fill a store of LIST_COUNT (it takes about 20 s)
BIG_COUNT = 1_000_000  # checkpoints of the big store (--big)
BIG_STORE = OUT / "big-store-1m"  # kept between runs: filling it takes about 3 minutes
BIG_TIMEOUT = 3600  # seconds to fill it, or to list it LIST_ROUNDS times
BIG_OPS = 1_000  # operations of each kind per round, on distinct keys
BIG_ROUNDS = 3
OPERATION_ROWS = {  # the measure's lines, and the floor's name
    "exists": (["store.exists(), a present key", "(a run checks for a checkpoint)"], "isfile(its path)"),
    "absent": (["store.exists(), an absent key", "(a run finds none)"], "isfile(one absent path)"),
    "read": (["store.read() of a present key: read,", "verified, decoded (a run loads it)"], "open + read its path"),
    "write": (["store.write() of a new key, durable", "(fsync; a run stores a checkpoint)"], None),
}


def _fill(name: str, drop_index: bool = False) -> str:
    """Fill a store of LIST_COUNT checkpoints in WORK/<name> (catalog_workloads.build) and return its path."""
    root = WORK / name
    root.mkdir()
    filled = run_child(
        "build",
        "catalog_workloads",
        {"root": str(root), "count": LIST_COUNT, "workers": FILL_WORKERS, "drop_index": drop_index},
        FILL_TIMEOUT,
    )
    log(f"  filled {name} in {filled['seconds']:.0f} s")
    return str(root)


def layout(result: dict[str, Any]) -> list[str]:
    shape = result["layout"]
    return [f"({shape['flat']:,} in the stage folder,", f"{shape['fanned']:,} in {shape['subfolders']} subfolders)"]


def listing_rows(result: dict[str, Any], count: int, target: bool) -> list[Row]:
    """The rows of a listing of `count` checkpoints (catalog_workloads.listing): the listing next to its floors,
    with its target (< 1 s) or as info; gc's dry run; the listing without an index, if it was measured."""
    seconds = result["list"]["seconds"]
    floors = [
        f"scandir walk: {duration(result['walk']['seconds'])}",
        f"walk + os.stat of each file: {duration(result['stat']['seconds'])}",
        f"({result['files']:,} files, index included)",
    ]
    rows: list[Row] = [
        [
            [f"list {count:,} checkpoints of one stage", "(JSON): Store(dir).checkpoints()", *layout(result)],
            [
                duration(seconds),
                f"({us(seconds, count, 'checkpoint')})",
                f"(child's peak RSS: {result['peak_mib']:,.0f} MiB)",
            ],
            floors,
            "",
            "< 1 s" if target else "- (info)",
            verdict(seconds < 1) if target else "-",
        ]
    ]
    if "bare" in result:
        bare = result["bare"]["seconds"]
        rows.append(
            [
                ["  the same listing without the index", "  (.index deleted: every record read;", "  timed once)"],
                [duration(bare), f"({bare / seconds:.1f}x with the index)"],
                "",
                "",
                "- (info)",
                "-",
            ]
        )
    if "gc" in result:
        rows.append(
            [
                ["  Store(dir).gc(dry_run=True): keep_last", f"  =1, so it plans {count - 1:,} removals"],
                duration(result["gc"]["seconds"]),
                "",
                "",
                "- (info)",
                "-",
            ]
        )
    return rows


def measure_listing() -> list[Row]:
    log(
        f"listing {LIST_COUNT:,} checkpoints of one stage: filling two stores ({FILL_WORKERS} writers each; one "
        f"then loses its index), then best of {LIST_ROUNDS} rounds"
    )
    indexed, bare = _fill("listed"), _fill("listed_bare", drop_index=True)
    result = run_child(
        "listing",
        "catalog_workloads",
        {"root": indexed, "count": LIST_COUNT, "rounds": LIST_ROUNDS, "bare": bare},
        FILL_TIMEOUT,
    )
    return listing_rows(result, LIST_COUNT, target=True)


def measure_big_store() -> list[Row]:
    log(f"a store of {BIG_COUNT:,} checkpoints, kept in {BIG_STORE}: filled now unless kept (about 3 minutes)")
    kept = run_child(
        "big_store",
        "catalog_workloads",
        {"root": str(BIG_STORE), "count": BIG_COUNT, "workers": FILL_WORKERS},
        BIG_TIMEOUT,
    )
    log(f"  {'filled' if kept['built'] else 'kept from an earlier run; it was filled'} in {kept['seconds']:.0f} s")
    log(f"  listing it, best of {LIST_ROUNDS} rounds")
    listed = run_child(
        "listing", "catalog_workloads", {"root": str(BIG_STORE), "count": BIG_COUNT, "rounds": LIST_ROUNDS}, BIG_TIMEOUT
    )
    log(f"  a run's operations on it and on a store of one, {BIG_OPS:,} of each, best of {BIG_ROUNDS} rounds")
    ops = run_child(
        "operations",
        "catalog_workloads",
        {
            "big": str(BIG_STORE),
            "small": str(WORK / "store_of_one"),
            "count": BIG_COUNT,
            "ops": BIG_OPS,
            "rounds": BIG_ROUNDS,
        },
        FILL_TIMEOUT,
    )
    rows = listing_rows(listed, BIG_COUNT, target=False)
    for op, (label, floor) in OPERATION_ROWS.items():
        big, small = ops[f"big/{op}"]["per_op"], ops[f"small/{op}"]["per_op"]
        figure = [f"{duration(big)}/op", f"({big / small:.2f}x the store of 1)"]
        if op in ("exists", "read"):
            figure.append(f"({ops['fanned'][f'big/{op}']:.0f} of {BIG_OPS:,} keys in subfolders)")
        floors = [f"same op, store of 1: {duration(small)}/op"]
        if floor is not None:
            big_floor, small_floor = ops[f"big/{op}/floor"]["per_op"], ops[f"small/{op}/floor"]["per_op"]
            floors += [f"{floor}: {duration(big_floor)}/op,", f"on the store of 1: {duration(small_floor)}/op"]
        rows.append([[f"store of {BIG_COUNT:,}: " + label[0], *label[1:]], figure, floors, "", "- (info)", "-"])
    return rows


def stores_notes(big: bool) -> list[str]:
    notes = [
        f"Every figure is the best (minimum) of {STORE_ROUNDS} rounds, because timings on this machine (2 cores) "
        f"are noisy and drift; the ratios are of those minimums. One child of this interpreter runs the first "
        f"two rows: it calibrates the spin, then in each round runs every variant once (chkpt one run, chkpt "
        f"{STORE_RUNS} runs, plain loop, joblib one run, joblib {STORE_RUNS} runs; each round starts one variant "
        f"further on), each on a fresh, empty folder.",
        f"A variant's runs are processes of this interpreter that the child starts together; each imports its "
        f"tool (chkpt or joblib) and the stages' module, prints 'ready' and polls (every 1 ms) for a 'go' file. "
        f"Once every run is ready the child creates the go file, and the figure is the wall time (time.perf_counter "
        f"in the child) from just before creating it to when the last run's result line has arrived, so "
        f"interpreter start-up and imports are not timed, and one run alone is timed the same way as "
        f"{STORE_RUNS}.",
        f"Pipeline: a chain of {STORE_STAGES} distinct plain functions of a generated module, s0(n), then "
        f"s_i(x, n) taking the one before; each appends a line to a calls file (an append of a short line is "
        f"atomic, so the runs share it) and spins: a pure-Python loop of n steps, which holds one core; the child "
        f"calibrates n to ~{STORE_SPIN * 1e3:.0f} ms of one core first. chkpt: a Stage of each function bound to "
        f"n, chained with >>, pipeline.run(Config(dir=<folder>, load=True, verbose=False)) (executor 'sync', "
        f"durable stores: fsync). joblib: joblib.Memory(<folder>, verbose=0), memory.cache of each function, "
        f"called as the same chain. Plain loop: the functions called as the chain, nothing cached, in one "
        f"process; its time per stage shows what a stage took in the runs (this machine's speed drifts, so it "
        f"need not be the calibrated figure).",
        f"Checks, in every round: the calls file of chkpt's {STORE_RUNS} runs names each of the {STORE_STAGES} "
        f"stages exactly once (every stage computed once in all the runs together), and every run's value is the "
        f"chain's. 'N stage calls in all' lists the count of each round; 'stored + loaded' counts the record "
        f"outcomes of the {STORE_RUNS} runs of the first round. joblib.Memory has no per-key lock: its runs compute "
        f"a stage whenever its result is not on disk yet when they reach it, so its count shows the duplicated "
        f"work. 'ok?' needs the ratio <= 1.3 and the checks of every round.",
        f"Warm loads by store (issue 5: memory:// and S3 next to the folder store): the Core table's bound chain "
        f"(one function step(prev, i) as {CHAIN} Stages bound to i = 0..{CHAIN - 1}, and collect(*xs)), its "
        f"checkpoints (small JSON files) in a local folder, in memory://chkpt-bench/chain and in "
        f"s3://chkpt-bench/chain on moto's S3 server (ThreadedMotoServer, started by this rows' child in a "
        f"thread on 127.0.0.1, its request log off; it serves on the same 2 cores as the measured process, and "
        f"its speed is the emulator's, not S3's), with Config(storage_options={{endpoint_url, key, secret}}). "
        f"One child measures the three rows: the local and S3 stores are filled once by a cold chkpt run; "
        f"memory:// lives in one process, so each process that measures it first copies the local store's "
        f"files into it (same layout), untimed. Then {LOAD_ROUNDS} rounds, each running every store x (each "
        f"loaded, load=True, floor) once, one further on each round; every figure is the best of its "
        f"{LOAD_ROUNDS}.",
        f"Each measurement is one fresh process of this interpreter, timed as the Core table's warm rerun: "
        f"pipeline.run(config) alone, after chkpt and the stages' module are imported and the pipeline built, "
        f"so chkpt's per-process caches (code fingerprints, the one ast parse of the stages' module) are cold "
        f"as there. 'Each stage loaded and verified': the {CHAIN} chain stages plus collect, with "
        f"Config(load=<the {CHAIN} chain stages>, store=<the same>, dir=<store>), so each checkpoint is found "
        f"(a stat; on S3 a HEAD), read (on S3 a GET), verified and decoded, and collect computes; since the "
        f"run may store, it first probes that the store is writable (on S3 a put and a delete). Checked: "
        f"{CHAIN} loaded and collect's value {CHAIN}. 'load=True': the chain alone with Config(load=True); "
        f"only its last stage loads (checked: 1 loaded, the chain's value), and its total is still divided "
        f"by {CHAIN}. 'x floor': the store's time over its floor, what chkpt adds to fetching the bytes.",
        f"Floor per store: the bytes of the same {CHAIN} checkpoint files/objects, each read once in a fresh "
        f"process: open + read (local; no json.load, unlike the Core table's floor) or fs.cat_file (memory://, "
        f"S3), the file system taken from fsspec.core.url_to_fs(url, **storage_options) inside the timer, as "
        f"chkpt's run does. Before its timer, every memory:// and S3 process opens the file system and reads "
        f"one small object outside the store, so the client's set-up (for S3: botocore's client, the aiohttp "
        f"session, the first connection) is in no figure (chkpt's run then gets fsspec's cached instance); "
        f"the last row shows that opening (best over the store's processes), which a warm rerun in a fresh "
        f"process pays once.",
        f"Listing (the issue: 'listing 100,000 of them takes under a second locally'): a store of {LIST_COUNT:,} "
        f"JSON checkpoints of one stage, made fresh in this run's folder by {FILL_WORKERS} processes at once "
        f"(bench/catalog_workloads.py; about 20 s): key i is sha256(str(i)) cut to 32 hex digits, value i, "
        f"written by LocalStore(root, durable=False).write(stage, key, 'json', ...) with a record {{stage, "
        f"created}}, as a run writes it but without fsync. As it fills, the store moves new keys to fan-out "
        f"subfolders (<stage>/<2 hex>/) once the stage folder's index is big enough (FANOUT_AT), as the row's "
        f"layout shows. One child then times, in {LIST_ROUNDS} rounds (one task further on each round), the best "
        f"of each: chkpt.Store(root).checkpoints(), checked to list {LIST_COUNT:,}, which reads the stage "
        f"folder's .index and matches each entry to its marker by inode, so it opens and stats no checkpoint; "
        f"and two floors: a walk of the folder by os.scandir, subfolders included, doing nothing else (the "
        f"type of a file comes with its entry), and the same walk with an os.stat of each file, what a listing "
        f"that asks every checkpoint's status would pay. Every round reads the same folders (and index), so the "
        f"best is of a store the OS has cached, as for a listing run twice; 'locally' is this machine's disk "
        f"(ext4 on a VM), no network share. 'Child's peak RSS': the most memory the child held (ru_maxrss), "
        f"over all it ran, gc dry runs included.",
        "Without the index: a second store filled the same way, whose .index is deleted once it is full (as a "
        "store written by an older chkpt, or copied without it), listed once at the end of the same child "
        "(checked count): each checkpoint's record (its first line) is read and its file stat'ed. "
        "gc(dry_run=True): keep_last=1 by default, so it plans to remove all but the newest (checked count); it "
        "lists as above and asks, for each of those, whether a run holds its key's lock (an open of a lock file "
        "that is not there); best of the same rounds.",
    ]
    if not big:
        return [*notes, f"--big adds rows of a store of {BIG_COUNT:,} checkpoints (see bench/run.py's docstring)."]
    return [
        *notes,
        f"A store of {BIG_COUNT:,} checkpoints, "
        f"filled the same way and kept in {BIG_STORE.relative_to(BENCH.parent)}/ between runs: a file built.json, "
        f"written once it is whole, holds a stamp (this bench's layout number, chkpt's version and FANOUT_AT, and "
        f"the files, index entry and record that one checkpoint makes now) and the sizes of the index and use "
        f"notes; a run uses the store if both still match, else removes it and fills it again (about 3 minutes "
        f"with {FILL_WORKERS} processes, plus removing the old one). Its listing and gc dry run are timed as "
        f"above (info: the issue asks that such a store 'stays usable').",
        f"A run's operations on it, next to the same on a store of 1 checkpoint made in this run's folder: one "
        f"child, each figure the best of {BIG_ROUNDS} rounds of {BIG_OPS:,} operations on distinct keys (the "
        f"store of 1: its one key wherever a present key is needed), both stores in each round, in turns, "
        f"through LocalStore(root) (durable, as a run makes it). Present keys are drawn at random, a new draw "
        f"for each figure and round; most are in fan-out subfolders, where a store of a folder that has fanned "
        f"out looks first (then in the stage folder). exists of a present key; exists of a key no store "
        f"holds; read (value checked); "
        f"write of a new key (fsync of the file and of its folder). Floors, in the same rounds on other keys "
        f"(before the operation in one round, after it in the next): os.path.isfile of a checkpoint's path, of "
        f"one absent path, and open + read of a checkpoint's file, each path known beforehand (from a listing "
        f"of the stage folder, untimed), so one lookup where the store may make two. Before the reads, untimed, "
        f"each file read (by the store or the floor) is touched (status-change time set to now), so that no "
        f"read notes a use (checked): a load of a checkpoint stored or noted more than an hour ago does, a "
        f"stat, a utime and an append to the folder's .used, the same on any store, and the store of 1 is too "
        f"new to. The store of 1's file is in the OS's cache; on this VM a file not read for some minutes "
        f"often is not (its page cache keeps little file data), so a read of a random checkpoint of the big "
        f"store mostly waits for the disk, as its floor shows. After each round the written checkpoints are "
        f"removed and the index and use notes cut back to their sizes, so the kept store stays as it was. Per "
        f"op: a round's time / {BIG_OPS:,}; 'x the store of 1': the ratio of the two.",
    ]


def versions() -> str:
    found = []
    for module, dist in (
        ("chkpt", "chkpt"),
        ("numpy", "numpy"),
        ("xxhash", "xxhash"),
        ("joblib", "joblib"),
        ("dask", "dask"),
        ("distributed", "distributed"),
        ("hamilton", "apache-hamilton"),
    ):
        if installed(module):
            from importlib import metadata

            try:
                found.append(f"{module} {metadata.version(dist)}")
            except metadata.PackageNotFoundError:
                found.append(f"{module} (version unknown)")
        else:
            found.append(f"{module} not installed")
    return ", ".join(found)


def core_notes() -> list[str]:
    return [
        "Every figure is the best (minimum) of several repeats, because timings on this machine are noisy: "
        f"imports {IMPORT_REPEATS} fresh interpreters each; warm reruns {WARM_REPEATS} fresh processes each; "
        "graphs and chain builds the best of 3-9 repeats in one child per size (dask and Hamilton: 5 at 1,000 "
        "nodes, 2 at 10,000). Each measurement "
        "runs in a child process of this interpreter and is timed inside it with time.perf_counter around "
        "the measured part, so interpreter start-up is never included.",
        "PYTHONDONTWRITEBYTECODE=1 stops Python from writing bytecode, so every import would recompile source; "
        "compileall was run on the chkpt package and on the generated modules first (Python still reads "
        "existing .pyc files), as an installed wheel would have them.",
        f"Warm rerun: each stage's value is a small int. Timed from just before pipeline.run(config) to after it, "
        f"in a fresh process with chkpt and the stages' module imported and the pipeline built (build shown "
        f"apart). 'Every stage loaded': the {CHAIN} chain stages plus collect(*xs) taking all of them, with "
        f"Config(load=<the {CHAIN} chain stages>, store=<the same>), so {CHAIN} checkpoints are read, "
        f"verified and decoded and collect computes. 'load=True': the chain alone, where only its last "
        f"stage loads; its total is still divided by {CHAIN}. Figures include planning, keys and code "
        f"fingerprints (one ast parse of the stages' module file). Floor: open + json.load of the same "
        f"{CHAIN} checkpoint files in a fresh process. joblib: warm joblib.Memory, {CHAIN} cached calls in a "
        f"chain. Hamilton: a driver .with_cache(), dr.execute(['s{CHAIN - 1}']), all {CHAIN} results "
        f"retrieved from its cache (checked).",
        f"Graph overhead: layers of {WIDTH} nodes; node j of layer l takes nodes j and (j+1)%{WIDTH} of layer "
        f"l-1; layer 0 is {WIDTH} source stages. chkpt: {WIDTH} bound source Stages and {WIDTH} column Stages "
        f"(add(a, b)), each column Stage reused in every layer, plus one collect(*xs) sink over the last layer; "
        f"Config(load=False, store=False); build = composing with >>, run = pipeline.run (plan with keys, then "
        f"execute). us/node = total / (layers x {WIDTH}). Floor: a dict graph of ints, "
        f"graphlib.TopologicalSorter.static_order and a loop calling each function. dask: dask.delayed calls, "
        f"then dask.compute(last layer, scheduler='sync'). Hamilton: Builder().with_modules(<generated module, "
        f"one function per node>).build(), then execute(last layer); the module's import is not timed. dask "
        f"and Hamilton are measured up to {max(DASK_LAYERS) * WIDTH:,} nodes only, to keep the run short.",
        "Chain build: `p = () >> first; for s in stages: p = p >> s` over distinct Stage objects made "
        "beforehand; nothing runs. Floor: the same chain as nested tuples `t = (s, (t,))`, as many allocations "
        "with no checks; its own growth from 10k to 100k is the interpreter's (memory and the cyclic GC over a "
        "larger heap), so chkpt's build counts as linear when it grows no more than 1.5x or than the floor.",
    ]


SectionList = tuple[tuple[str, Any], ...]
CORE: SectionList = (
    ("import time", measure_imports),
    ("warm rerun", measure_warm),
    ("graph overhead", measure_graph),
    ("chain build", measure_chain_build),
)
FORMATS: SectionList = (
    ("numpy store", measure_numpy_store),
    ("numpy load", measure_numpy_load),
    ("key time", measure_key_time),
    ("json", measure_json),
)
PARALLEL: SectionList = (
    ("two CPU-bound stages", measure_spins),
    ("Dask cluster", measure_cluster),
    ("threads", measure_threads),
)
STORES: SectionList = (
    ("runs sharing a folder", measure_stores),
    ("warm loads by store", measure_store_loads),
    ("listing 100,000 checkpoints", measure_listing),
)
BIG: SectionList = (("a store of 1,000,000 checkpoints", measure_big_store),)


def run_sections(sections: SectionList) -> tuple[list[Row], float]:
    """The rows of one table, and the seconds it took."""
    started = time.perf_counter()
    rows: list[Row] = []
    for title, measure in sections:
        section_started = time.perf_counter()
        try:
            rows += measure()
            log(f"  {title}: {time.perf_counter() - section_started:.0f} s")
        except (ChildError, AssertionError, KeyError, StopIteration, subprocess.TimeoutExpired) as exc:
            # Keep the rest of the table: a broken section shows what failed instead of its figures.
            log(f"{title} failed: {exc!r}")
            rows.append([title, f"failed: {exc!r}"[:70], "", "", "", "NO"])
    return rows, time.perf_counter() - started


def print_notes(notes: list[str]) -> None:
    for i, note in enumerate(notes, 1):
        print(f"[{i}] {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", choices=("core", "formats", "parallel", "stores"), help="run one table only (default: all)"
    )
    parser.add_argument("--keep", action="store_true", help="keep bench/out/run-<pid>/ for inspection")
    parser.add_argument(
        "--big",
        action="store_true",
        help=f"add the Stores rows of a store of 1,000,000 checkpoints (kept in {BIG_STORE.relative_to(BENCH.parent)}; "
        "filling it the first time takes about 3 minutes)",
    )
    options = parser.parse_args()
    if options.big and options.only not in (None, "stores"):
        parser.error("--big adds rows to the Stores table: use it with --only stores, or without --only")
    core, formats = options.only in (None, "core"), options.only in (None, "formats")
    parallel, stores = options.only in (None, "parallel"), options.only in (None, "stores")
    started = time.perf_counter()
    tables: list[tuple[str, list[Row], float, list[str]]] = []
    try:
        write_modules(core, formats, parallel, stores)
        if core:
            rows, seconds = run_sections(CORE)
            tables.append(("Core (issue 2): runs, graphs, imports", rows, seconds, core_notes()))
        if formats:
            rows, seconds = run_sections(FORMATS)
            tables.append(("Formats (issue 3): big results and codecs", rows, seconds, formats_notes()))
        if parallel:
            rows, seconds = run_sections(PARALLEL)
            tables.append(("Parallel executors: processes, a Dask cluster, threads", rows, seconds, parallel_notes()))
        if stores:
            rows, seconds = run_sections(STORES + BIG if options.big else STORES)
            title = "Stores: runs sharing a folder; warm loads by store; listing a big store"
            tables.append((title, rows, seconds, stores_notes(options.big)))
    finally:
        if not options.keep:
            shutil.rmtree(WORK, ignore_errors=True)
            if OUT.is_dir() and not any(OUT.iterdir()):
                OUT.rmdir()
    elapsed = time.perf_counter() - started
    print(f"chkpt benchmark: Python {platform.python_version()} ({platform.python_implementation()}), ", end="")
    print(f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}")
    print(f"versions: {versions()}")
    for title, rows, seconds, notes in tables:
        print()
        print(f"{title}, measured in {seconds:.0f} s")
        print()
        print_table(["measure", "chkpt", "floor", "peers", "target", "ok?"], rows)
        print()
        print_notes(notes)
    print()
    print(f"Whole benchmark took {elapsed:.0f} s.")


if __name__ == "__main__":
    main()
