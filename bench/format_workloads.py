"""What the formats benchmark's child processes run (issue 3): one measurement per function, timed inside the child.

bench/run.py starts each child as `python -c "...; import format_workloads; format_workloads.main()" NAME JSON`;
the child calls NAME(**args) and prints its result as one JSON line. Only the standard library is imported at the
top: numpy, chkpt and the peers are imported inside the functions, before the timed part. A child given
`fast=False` hides xxhash (sys.modules["xxhash"] = None) before it imports chkpt, so chkpt writes and verifies
its checkpoints with sha256, as it does where the `chkpt[fast]` extra is not installed.

Every value is made before the clock starts, and every file a timed write made is deleted after it stops. Before
the clock starts, a child that handles big data also writes and frees a block of memory (see `_prime`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any

from workloads import serve  # the child entry point

clock = time.perf_counter

MIB_FLOATS = 1024 * 1024 // 8  # float64 values in 1 MiB
STAGE = "big"  # the stage name (folder) of the checkpoints written here
JSON_PRIME_MIB = 256  # memory primed before a JSON store or load (see _prime)


def main() -> None:
    serve(globals())


def _hide_xxhash(fast: bool) -> None:
    """Make `import xxhash` fail, as if the chkpt[fast] extra were not installed. Call before importing chkpt."""
    if not fast:
        sys.modules["xxhash"] = None  # type: ignore[assignment]


def _array(mib: int) -> Any:
    """A float64 array of `mib` MiB, every page written (so none is first touched while timed)."""
    import numpy as np

    return np.arange(mib * MIB_FLOATS, dtype=np.float64) * 0.5


def _prime(mib: int, like_numpy: bool = True) -> None:
    """Write and free `mib` MiB before the clock starts, so that the measured call gets memory this machine
    has touched lately: on this VM a process's first touch of memory the guest has not used for a while is slow
    and erratic (one load of the same file took 47 to 170 ms cold, 47 to 53 ms primed), for chkpt and its floors
    alike. `like_numpy`: allocate the block as numpy allocates a big array (it asks for huge pages), for the
    numpy rows; else as a bytes object, for the JSON rows."""
    if like_numpy:
        import numpy as np

        block: Any = np.ones(mib * MIB_FLOATS)
    else:
        block = b"\x01" * (mib * 1024 * 1024)  # every byte written: a zeroed block might never be touched
    del block


def _key() -> str:
    return os.urandom(16).hex()


def _record() -> dict[str, Any]:
    """The record fields a run passes to LocalStore.write (see chkpt/run.py), less the ones write adds."""
    return {
        "chkpt_version": "bench",
        "stage": STAGE,
        "module": "bench",
        "format": "numpy",
        "inputs": [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": 0.0,
    }


def _writer(store: Any, format_name: str, codec: Any) -> Any:
    """`write(key, value, record)`: store.write for this format and codec."""
    return lambda key, value, record: store.write(STAGE, key, format_name, codec, value, record)


def _algorithm(store: Any, key: str, format_name: str) -> str:
    """The checksum algorithm a checkpoint was written with, from its record."""
    return str(store.read_record(STAGE, key, format_name)["checksum"]).partition(":")[0]


# --- numpy: store -------------------------------------------------------------------------------------------------


def numpy_store(tool: str, root: str, mib: int, fast: bool = True) -> dict[str, Any]:
    """Store a `mib` MiB float64 array once, timed, into a fresh folder under `root` that is removed afterwards.

    tool "chkpt" / "chkpt_scratch": LocalStore(dir).write / LocalStore(dir, durable=False).write with the numpy
    codec (value file, its fsync, rename, folder fsync, then the record the same way). "save_fsync": np.save into
    an open file + flush + os.fsync. "save": np.save into an open file, no fsync. "joblib": joblib.dump(array,
    path), no fsync.
    """
    _hide_xxhash(fast)
    import numpy as np

    array = _array(mib)
    folder = os.path.join(root, f"{tool}-{os.getpid()}")
    os.makedirs(folder)
    path = os.path.join(folder, "array.npy")
    _prime(mib + 64)
    result: dict[str, Any] = {}
    try:
        if tool in ("chkpt", "chkpt_scratch"):
            from chkpt import checksums, codecs
            from chkpt.store import LocalStore

            codec = codecs.get("numpy")
            checksums.new(checksums.preferred())  # imports xxhash, if it is there, before the clock starts
            store = LocalStore(folder, durable=tool == "chkpt")
            write = _writer(store, "numpy", codec)
            key, record = _key(), _record()
            started = clock()
            size = write(key, array, record)
            result["seconds"] = clock() - started
            result["bytes"] = size
            result["checksum"] = _algorithm(store, key, "numpy")
        elif tool in ("save_fsync", "save"):
            started = clock()
            with open(path, "wb") as file:
                np.save(file, array, allow_pickle=False)
                file.flush()
                if tool == "save_fsync":
                    os.fsync(file.fileno())
            result["seconds"] = clock() - started
            result["bytes"] = os.path.getsize(path)
        elif tool == "joblib":
            import joblib

            started = clock()
            joblib.dump(array, path)
            result["seconds"] = clock() - started
            result["bytes"] = os.path.getsize(path)
        else:
            raise ValueError(f"unknown tool {tool!r}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return result


# --- numpy: load --------------------------------------------------------------------------------------------------


def numpy_setup(root: str, mib: int, fast: bool = True) -> dict[str, Any]:
    """Write the checkpoint (and joblib's file) that the load children read: a durable LocalStore write, then
    joblib.dump of the same array. Returns the key, the .npy file's path and the checksum algorithm used."""
    _hide_xxhash(fast)
    from chkpt import codecs
    from chkpt.store import LocalStore

    array = _array(mib)
    store = LocalStore(root)
    key = _key()
    _writer(store, "numpy", codecs.get("numpy"))(key, array, _record())
    result = {"key": key, "path": store.path(STAGE, key, "npy"), "checksum": _algorithm(store, key, "numpy")}
    if fast:
        import joblib

        result["joblib_path"] = os.path.join(root, "array.joblib")
        joblib.dump(array, result["joblib_path"])
    return result


def numpy_load(tool: str, root: str, key: str, path: str, mib: int, fast: bool = True) -> dict[str, Any]:
    """Load the array once, timed, from a file in the page cache.

    tool "chkpt": LocalStore(root).read(stage, key, "numpy"), which reads the record, loads the .npy and checks its
    checksum. "chkpt_mmap": the same with mmap=True (a read-only memory map, returned after the file's checksum
    is checked). "np_load": np.load(path) of the same .npy file. "np_load_mmap": np.load(path, mmap_mode="r"),
    which reads nothing but the header. "joblib": joblib.load(path) of joblib.dump's file.
    """
    _hide_xxhash(fast)
    import numpy as np

    _prime(mib + 64)
    if tool in ("chkpt", "chkpt_mmap"):
        from chkpt import checksums, codecs
        from chkpt.store import LocalStore

        codecs.get("numpy")
        store = LocalStore(root)
        algorithm = _algorithm(store, key, "numpy")
        checksums.new(algorithm)  # imports xxhash, if the checkpoint needs it, before the clock starts
        started = clock()
        array = store.read(STAGE, key, "numpy", mmap=tool == "chkpt_mmap")[0]
        seconds = clock() - started
    elif tool in ("np_load", "np_load_mmap"):
        algorithm = "-"
        started = clock()
        array = np.load(path, mmap_mode="r" if tool == "np_load_mmap" else None, allow_pickle=False)
        seconds = clock() - started
    elif tool == "joblib":
        import joblib

        algorithm = "-"
        started = clock()
        array = joblib.load(path)
        seconds = clock() - started
    else:
        raise ValueError(f"unknown tool {tool!r}")
    n = mib * MIB_FLOATS
    assert array.shape == (n,) and array.dtype == np.float64 and float(array[-1]) == (n - 1) * 0.5, tool
    return {"seconds": seconds, "checksum": algorithm, "memmap": isinstance(array, np.memmap)}


# --- key time of a stage whose input is a big array ---------------------------------------------------------------


def key_time(tool: str, mib: int, repeats: int) -> dict[str, Any]:
    """The time to key a stage whose input is a `mib` MiB array, `repeats` times in this process.

    tool "chkpt": make_plan of `(big_source.bind(mib=mib),) >> consumer` (both stages of the generated module
    big_stages, format "numpy") with Config(store=False, load=False) and no store: every key of the plan,
    computed from code, bound parameters and upstream keys; big_source is not run. "joblib": joblib.hash(array),
    which joblib.Memory computes on every call of a cached function taking the array.
    The array is made first either way, so both processes hold it in memory.
    """
    array = _array(mib)
    times = []
    if tool == "chkpt":
        import big_stages  # type: ignore[import-not-found]

        import chkpt
        from chkpt.plan import make_plan

        pipeline = (big_stages.big_source.bind(mib=mib),) >> big_stages.consumer
        config = chkpt.Config(store=False, load=False, verbose=False)
        for _ in range(repeats):
            started = clock()
            plan = make_plan(pipeline, config, None)
            times.append(clock() - started)
        assert [step.action for step in plan.steps] == ["compute", "compute"], plan.steps
    elif tool == "joblib":
        import joblib

        joblib.hash(b"")  # joblib's hashing machinery set up before the clock starts
        for _ in range(repeats):
            started = clock()
            joblib.hash(array)
            times.append(clock() - started)
    else:
        raise ValueError(f"unknown tool {tool!r}")
    return {"first": times[0], "best": min(times), "nbytes": int(array.nbytes)}


# --- JSON ---------------------------------------------------------------------------------------------------------


def _records(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"item{i}", "value": i * 0.5, "tags": ["a", "b"], "ok": True} for i in range(n)]


def json_store(tool: str, root: str, n: int, durable: bool) -> dict[str, Any]:
    """Store a list of `n` small dicts once, timed, into a fresh folder under `root` that is removed afterwards.

    tool "json" / "json-lossy": LocalStore(dir, durable=durable).write with that codec (the strict one first walks
    the value for tuples and non-str keys; both json.dumps it, checksum it with sha256 and write record and value
    into one file, then rename it into place). "floor": json.dumps(value, separators=(",", ":")) and write the
    text into an open file, + flush + os.fsync when durable.
    """
    value = _records(n)
    folder = os.path.join(root, f"{tool}-{os.getpid()}")
    os.makedirs(folder)
    _prime(JSON_PRIME_MIB, like_numpy=False)
    result: dict[str, Any] = {}
    try:
        if tool in ("json", "json-lossy"):
            from chkpt import codecs
            from chkpt.store import LocalStore

            codec = codecs.get(tool)
            store = LocalStore(folder, durable=durable)
            write = _writer(store, tool, codec)
            key, record = _key(), {**_record(), "format": tool}
            started = clock()
            write(key, value, record)
            result["seconds"] = clock() - started
            result["bytes"] = os.path.getsize(store.path(STAGE, key, "json"))
        elif tool == "floor":
            path = os.path.join(folder, "value.json")
            started = clock()
            with open(path, "w", encoding="utf-8") as file:
                file.write(json.dumps(value, separators=(",", ":")))
                file.flush()
                if durable:
                    os.fsync(file.fileno())
            result["seconds"] = clock() - started
            result["bytes"] = os.path.getsize(path)
        else:
            raise ValueError(f"unknown tool {tool!r}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def json_setup(root: str, n: int) -> dict[str, Any]:
    """Write the files the JSON load children read: a chkpt "json" checkpoint and the floor's compact file."""
    from chkpt import codecs
    from chkpt.store import LocalStore

    value = _records(n)
    key = _key()
    store = LocalStore(root)
    _writer(store, "json", codecs.get("json"))(key, value, {**_record(), "format": "json"})
    path = os.path.join(root, "floor.json")
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(value, separators=(",", ":")))
    return {
        "key": key,
        "path": path,
        "chkpt_bytes": os.path.getsize(store.path(STAGE, key, "json")),
        "floor_bytes": os.path.getsize(path),
    }


def json_load(tool: str, root: str, key: str, path: str, n: int) -> dict[str, Any]:
    """Load the list once, timed, from a file in the page cache.

    tool "chkpt": LocalStore(root).read(stage, key, "json") (reads the file, checks its record's key, length and
    sha256 by comparing bytes, then json.loads the value with the cyclic GC paused). "floor": json.load(open
    file) of the compact file. "floor_nogc": the same with gc.disable() around it.
    """
    import gc

    _prime(JSON_PRIME_MIB, like_numpy=False)
    if tool == "chkpt":
        from chkpt import codecs
        from chkpt.store import LocalStore

        codecs.get("json")
        store = LocalStore(root)
        started = clock()
        value = store.read(STAGE, key, "json")[0]
        seconds = clock() - started
    elif tool in ("floor", "floor_nogc"):
        started = clock()
        if tool == "floor_nogc":
            gc.disable()
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
        gc.enable()
        seconds = clock() - started
    else:
        raise ValueError(f"unknown tool {tool!r}")
    assert len(value) == n and value[-1]["id"] == n - 1, tool
    return {"seconds": seconds}


if __name__ == "__main__":
    main()
