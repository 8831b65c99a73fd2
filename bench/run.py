"""chkpt's speed next to its floors and peers, all measured in this run: `python bench/run.py`.

Prints one table (issue 2, "Speed"): import time, warm rerun of a 200-stage chain, graph overhead of a layered
graph, and building a long chain. Every measurement runs in a child process started with this interpreter and is
timed inside the child, so interpreter start-up is not part of any figure. Peers (joblib, dask, Hamilton) are
optional: a peer that is not installed shows as 'not installed'. Generated modules, stores and caches live in
bench/out/run-<pid>/ and are removed at the end (pass --keep to keep them). Progress goes to stderr.
"""

from __future__ import annotations

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


def child(name: str, **args: Any) -> dict[str, Any]:
    """Run workloads.NAME(**args) in a fresh interpreter and return what it measured."""
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import workloads; workloads.main()"
    args["workdir"] = str(WORK)
    proc = subprocess.run(
        [sys.executable, "-c", code, name, json.dumps(args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
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


def write_modules() -> None:
    """Generate the benchmark's modules in WORK and compile them, and compile chkpt itself."""
    WORK.mkdir(parents=True)
    modules = {
        "chain_distinct": chains.chkpt_chain_distinct(CHAIN),
        "chain_bound": chains.chkpt_chain_bound(CHAIN),
        "jl_chain_distinct": chains.joblib_chain_distinct(CHAIN),
        "jl_chain_bound": chains.joblib_chain_bound(CHAIN),
        "ham_chain": chains.hamilton_chain(CHAIN),
        "layer_funcs": chains.layer_functions(),
    }
    for layers in HAMILTON_LAYERS:
        modules[f"ham_layers_{layers}"] = chains.hamilton_layers(layers, WIDTH)
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


def versions() -> str:
    found = []
    for module, dist in (("chkpt", "chkpt"), ("joblib", "joblib"), ("dask", "dask"), ("hamilton", "apache-hamilton")):
        if installed(module):
            from importlib import metadata

            try:
                found.append(f"{module} {metadata.version(dist)}")
            except metadata.PackageNotFoundError:
                found.append(f"{module} (version unknown)")
        else:
            found.append(f"{module} not installed")
    return ", ".join(found)


def main() -> None:
    keep = "--keep" in sys.argv[1:]
    started = time.perf_counter()
    try:
        write_modules()
        rows: list[Row] = []
        sections = (
            ("import time", measure_imports),
            ("warm rerun", measure_warm),
            ("graph overhead", measure_graph),
            ("chain build", measure_chain_build),
        )
        for title, measure in sections:
            try:
                rows += measure()
            except (ChildError, AssertionError, KeyError, StopIteration, subprocess.TimeoutExpired) as exc:
                # Keep the rest of the table: a broken section shows what failed instead of its figures.
                log(f"{title} failed: {exc!r}")
                rows.append([title, f"failed: {exc!r}"[:70], "", "", "", "NO"])
    finally:
        if not keep:
            shutil.rmtree(WORK, ignore_errors=True)
            if OUT.is_dir() and not any(OUT.iterdir()):
                OUT.rmdir()
    elapsed = time.perf_counter() - started
    print(f"chkpt benchmark: Python {platform.python_version()} ({platform.python_implementation()}), ", end="")
    print(f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}")
    print(f"versions: {versions()}")
    print()
    print_table(["measure", "chkpt", "floor", "peers", "target", "ok?"], rows)
    print()
    notes = [
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
        f"Whole benchmark took {elapsed:.0f} s.",
    ]
    for i, note in enumerate(notes, 1):
        print(f"[{i}] {note}")


if __name__ == "__main__":
    main()
