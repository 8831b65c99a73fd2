"""Big results: a 256 MiB array is stored and loaded as a stream, with no second full copy in memory.

Memory is measured in a fresh process per case, as the peak resident set size during one run
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) less the resident set size when the run started, so that nothing
else a test process holds counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import chkpt.checksums

N = 32 * 1024 * 1024  # float64 values: 256 MiB
NBYTES = N * 8
MiB = 1024 * 1024

SCRIPT = """
import json
import os
import resource
import sys
import time

import numpy as np

import chkpt

directory, format_name, mode = sys.argv[1], sys.argv[2], sys.argv[3]
N = int(sys.argv[4])
SCALE = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in KiB on Linux, in bytes on macOS


def peak() -> int:  # the peak resident set size since the last reset_peak()
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * SCALE


def reset_peak() -> None:  # Linux 4.0+: writing 5 to clear_refs resets VmHWM to the current resident size
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass


def resident() -> int:  # the resident set size now (the peak where /proc is missing)
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak()


# Every page of the array is written, so the whole array is resident before the run starts.
ARRAY = np.arange(N, dtype=np.float64) if mode == "store" else None


@chkpt.Stage.wrap(format=format_name, version=1, mmap=mode == "mmap")
def big() -> np.ndarray:
    assert ARRAY is not None, "a load run must not compute"
    return ARRAY


reset_peak()
before = peak()
resident_before = resident()
started = time.perf_counter()
run = (() >> big).run(chkpt.Config(dir=directory, load=mode != "store", verbose=False))
seconds = time.perf_counter() - started
after = peak()
resident_after = resident()
value = run.value
report = {
    "before": before,
    "after": after,
    "resident_before": resident_before,
    "resident_after": resident_after,
    "seconds": seconds,
    "outcome": run.records[-1].outcome,
    "key": run.records[-1].key,
    "bytes": run.records[-1].bytes,
    "type": type(value).__name__,
    "shape": list(value.shape),
    "dtype": str(value.dtype),
    "same_object": value is ARRAY,
    "writeable": bool(value.flags.writeable),
    "filename": getattr(value, "filename", None),
}
# Check every value, in slices, after the measurement: a whole comparison would make copies of its own.
step = 1 << 22
report["equal"] = all(np.array_equal(value[i : i + step], np.arange(i, min(i + step, N))) for i in range(0, N, step))
print(json.dumps(report))
"""


def run_script(directory: Path, format_name: str, mode: str) -> dict[str, Any]:
    script = directory.parent / "bigscript.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(directory), format_name, mode, str(N)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    # The peak during the run over what the process held when it started. The script resets the peak just before
    # the run where Linux allows it; elsewhere imports may have set an earlier, higher peak, which would hide part
    # of the run's growth from `after - before`.
    report["growth"] = report["after"] - min(report["before"], report["resident_before"])
    report["resident_growth"] = report["resident_after"] - report["resident_before"]
    print(
        f"{format_name} {mode}: peak RSS +{report['growth'] / MiB:.1f} MiB "
        f"({report['growth'] / NBYTES:.2f}x the array), resident +{report['resident_growth'] / MiB:.1f} MiB, "
        f"{report['seconds']:.3f} s"
    )
    return report


@pytest.fixture(scope="module")
def numpy_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A folder holding a 256 MiB numpy checkpoint, and the report of the run that stored it."""
    directory = tmp_path_factory.mktemp("big-numpy") / "ck"
    return directory, run_script(directory, "numpy", "store")


@pytest.fixture(scope="module")
def pickle_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("big-pickle") / "ck"
    return directory, run_script(directory, "pickle", "store")


def checkpoint_files(directory: Path, key: str, extension: str) -> tuple[Path, Path]:
    return directory / "big" / f"{key}.{extension}", directory / "big" / f"{key}.meta.json"


# --- numpy ----------------------------------------------------------------------------------------------------


def test_storing_an_array_makes_no_second_copy(numpy_store: tuple[Path, dict[str, Any]]) -> None:
    _, report = numpy_store
    assert report["outcome"] == "stored"
    assert report["same_object"]
    assert report["equal"]
    # The array is resident before the run; the bound is a peak under 1.3x the array while storing.
    assert report["growth"] < 0.3 * NBYTES, report


def test_loading_an_array_makes_no_second_copy(numpy_store: tuple[Path, dict[str, Any]]) -> None:
    directory, stored = numpy_store
    report = run_script(directory, "numpy", "load")
    assert report["outcome"] == "loaded"
    assert report["key"] == stored["key"]
    assert report["type"] == "ndarray"
    assert (report["shape"], report["dtype"]) == ([N], "float64")
    assert report["equal"]
    # The loaded array itself is 1x.
    assert report["growth"] <= 1.3 * NBYTES, report


def test_mmap_load_returns_a_read_only_map(numpy_store: tuple[Path, dict[str, Any]]) -> None:
    directory, stored = numpy_store
    report = run_script(directory, "numpy", "mmap")
    assert report["outcome"] == "loaded"
    assert report["key"] == stored["key"]  # mmap is how a checkpoint is read, not part of what it is
    assert report["type"] == "memmap"
    assert not report["writeable"]
    value_file, _ = checkpoint_files(directory, stored["key"], "npy")
    assert report["filename"] == os.path.abspath(value_file)
    assert (report["shape"], report["dtype"]) == ([N], "float64")
    assert report["equal"]


def test_mmap_load_does_not_bring_the_array_into_memory(numpy_store: tuple[Path, dict[str, Any]]) -> None:
    directory, _ = numpy_store
    report = run_script(directory, "numpy", "mmap")
    assert report["type"] == "memmap"
    # Before the data is touched, a memory map costs next to nothing.
    assert report["growth"] < 0.1 * NBYTES, report


def test_the_checkpoint_is_a_plain_npy_file(numpy_store: tuple[Path, dict[str, Any]]) -> None:
    directory, report = numpy_store
    value_file, meta_file = checkpoint_files(directory, report["key"], "npy")
    loaded = np.load(value_file, mmap_mode="r", allow_pickle=False)
    assert loaded.shape == (N,)
    assert loaded.dtype == np.float64
    assert loaded[0] == 0.0 and loaded[12345] == 12345.0 and loaded[-1] == float(N - 1)
    meta = json.loads(meta_file.read_text())
    assert meta["key"] == report["key"]
    assert meta["codec"] == "numpy"
    assert meta["bytes"] == value_file.stat().st_size == report["bytes"]
    assert value_file.stat().st_size == NBYTES + 128  # the .npy header of a 1-d float64 array
    # Beside them, only the folder's index, a line for the one checkpoint stored.
    assert sorted(p.name for p in (directory / "big").iterdir()) == sorted([".index", value_file.name, meta_file.name])
    lines = (directory / "big" / ".index").read_text(encoding="ascii").splitlines()
    assert [json.loads(line)[0] for line in lines] == [report["key"]]


def test_the_checkpoint_checksum_covers_the_file(numpy_store: tuple[Path, dict[str, Any]]) -> None:
    directory, report = numpy_store
    value_file, meta_file = checkpoint_files(directory, report["key"], "npy")
    algorithm, _, expected = json.loads(meta_file.read_text())["checksum"].partition(":")
    hasher = chkpt.checksums.new(algorithm)
    with open(value_file, "rb") as source:
        while chunk := source.read(16 * MiB):
            hasher.update(chunk)
    assert hasher.hexdigest() == expected


# --- pickle ---------------------------------------------------------------------------------------------------


def test_pickling_an_array_makes_no_second_copy(pickle_store: tuple[Path, dict[str, Any]]) -> None:
    _, report = pickle_store
    assert report["outcome"] == "stored"
    assert report["same_object"]
    # Protocol 5 writes the array's buffer to the file as it is.
    assert report["growth"] < 0.3 * NBYTES, report


def test_unpickling_an_array_makes_no_second_copy(pickle_store: tuple[Path, dict[str, Any]]) -> None:
    directory, stored = pickle_store
    report = run_script(directory, "pickle", "load")
    assert report["outcome"] == "loaded"
    assert report["key"] == stored["key"]
    assert report["type"] == "ndarray"
    assert report["equal"]
    assert report["growth"] <= 1.3 * NBYTES, report
