"""Formats: every codec's round trip through real runs, the format in the key, the layout of non-JSON
checkpoints, security against planted files, damage, mmap, missing extras, checksums, user codecs,
serialization errors and durable writes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pytest
import xxhash
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import chkpt
import chkpt.checksums
import chkpt.codecs

# --- helpers --------------------------------------------------------------------------------------------------


def config(directory: Path, **options: Any) -> chkpt.Config:
    return chkpt.Config(dir=directory, verbose=False, **options)


class Source:
    """A stage without inputs that returns `value` and counts its calls. Its version is pinned, so its key
    depends only on its module, name and format (not on the value it closes over)."""

    def __init__(self, value: Any, *, format: str | None = None, name: str = "value", mmap: bool = False) -> None:
        self.calls = 0
        self.value = value

        def produce() -> Any:
            self.calls += 1
            return self.value

        self.stage: chkpt.Stage[..., Any] = chkpt.Stage(produce, name=name, version=1, format=format, mmap=mmap)
        self.pipeline: chkpt.Pipeline[Any] = () >> self.stage

    def run(self, directory: Path, **options: Any) -> chkpt.Run[Any]:
        return self.pipeline.run(config(directory, **options))


def outcomes(run: chkpt.Run[Any]) -> list[tuple[str, str]]:
    return [(r.name, r.outcome) for r in run.records]


def key_of(run: chkpt.Run[Any], stage: str) -> str:
    (key,) = [r.key for r in run.records if r.name == stage]
    return key


def round_trip(directory: Path, value: Any, format: str | None, **options: Any) -> tuple[Source, Any]:
    """Store `value` in one run, load it in a second; return the source and the loaded value."""
    source = Source(value, format=format)
    first = source.run(directory, **options)
    assert outcomes(first) == [("value", "stored")]
    assert first.value is value
    second = source.run(directory, load=True, **options)
    assert outcomes(second) == [("value", "loaded")]
    assert source.calls == 1
    assert key_of(second, "value") == key_of(first, "value")
    return source, second.value


def stage_files(directory: Path, stage: str = "value") -> set[str]:
    """Every file in the stage's folder, hidden ones included."""
    folder = directory / stage
    return set(os.listdir(folder)) if folder.exists() else set()


INDEX = ".index"


def index_keys(directory: Path, stage: str = "value") -> list[str]:
    """The keys the stage folder's index lists: a line (a JSON array starting with the key) each time a checkpoint
    was stored there."""
    lines = (directory / stage / INDEX).read_text(encoding="ascii").splitlines()
    return [json.loads(line)[0] for line in lines]


def meta_path(directory: Path, key: str, stage: str = "value") -> Path:
    return directory / stage / f"{key}.meta.json"


def read_meta(path: Path) -> dict[str, Any]:
    record = json.loads(path.read_bytes())
    assert isinstance(record, dict)
    return record


def write_meta(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record), encoding="ascii")


def checksum_label(data: bytes, algorithm: str | None = None) -> str:
    algorithm = algorithm or chkpt.checksums.preferred()
    hasher = chkpt.checksums.new(algorithm)
    hasher.update(data)
    return chkpt.checksums.label(algorithm, hasher)


def warned_run(source: Source, directory: Path, **options: Any) -> tuple[chkpt.Run[Any], str]:
    """Run expecting exactly one ChkptWarning; return the run and the warning's text."""
    with pytest.warns(chkpt.ChkptWarning) as caught:
        run = source.run(directory, **options)
    messages = [str(w.message) for w in caught if issubclass(w.category, chkpt.ChkptWarning)]
    assert len(messages) == 1, messages
    return run, messages[0]


def same(a: Any, b: Any) -> bool:
    """Equality that also requires equal types (True is not 1), treats NaN as equal to NaN, tells -0.0 from 0.0
    and requires dicts to keep their key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


class Point:
    """A user's class, picklable by reference to this module."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


def plant_marker(path: str) -> None:
    Path(path).write_text("unpickled", encoding="ascii")


class Planted:
    """A pickle that creates a marker file when it is loaded: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return (plant_marker, (self.marker,))


def malicious(marker: Path) -> bytes:
    return pickle.dumps(Planted(marker), protocol=5)


def test_the_planted_pickle_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    # The security tests below assert that this marker is never created: prove that unpickling would create it.
    marker = tmp_path / "marker"
    pickle.loads(malicious(marker))
    assert marker.read_text(encoding="ascii") == "unpickled"


# --- 1. round trips -------------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=[]))
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(exclude_categories=[]), max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
@example(None)
@example(True)
@example(-(10**100))
@example(float("nan"))
@example([float("inf"), float("-inf"), -0.0, 5e-324, 1.7976931348623157e308])
@example({"ünï": {"\ud800": [1, [2, [3, {"": None}]]]}, "b": False, "i": 0})
def test_json_round_trips_json_able_values(value: Any) -> None:
    with tempfile.TemporaryDirectory() as directory:
        _, loaded = round_trip(Path(directory), value, "json")
    assert same(loaded, value), (loaded, value)


def test_json_is_the_default_format_and_round_trips_a_big_value(tmp_path: Path) -> None:
    value = {"rows": [{"id": i, "name": f"n{i}", "score": i / 7, "tags": ["a", "ü"]} for i in range(3000)]}
    _, loaded = round_trip(tmp_path, value, None)
    assert same(loaded, value)
    files = stage_files(tmp_path)
    assert INDEX in files
    (name,) = files - {INDEX}
    assert name.endswith(".json")
    assert index_keys(tmp_path) == [name.removesuffix(".json")]


def test_json_refuses_what_it_would_change_and_json_lossy_stores_it_as_json_does(tmp_path: Path) -> None:
    value = {"pair": (1, 2), 3: "three", "nested": [(4, (5,))]}
    with pytest.raises(chkpt.SerializationError, match="json-lossy") as info:
        Source(value, format="json").run(tmp_path / "strict")
    assert "'value'" in str(info.value)
    assert stage_files(tmp_path / "strict") == set()

    _, loaded = round_trip(tmp_path / "lossy", value, "json-lossy")
    assert same(loaded, {"pair": [1, 2], "3": "three", "nested": [[4, [5]]]})


@pytest.mark.parametrize("fmt", ["json", "json-lossy", "auto"])
def test_a_value_that_contains_itself_is_refused_not_walked_for_ever(tmp_path: Path, fmt: str) -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(chkpt.SerializationError, match=r"[Cc]ircular") as info:
        Source(looped, format=fmt).run(tmp_path / fmt)
    assert "'value'" in str(info.value)
    assert stage_files(tmp_path / fmt) == set()


@pytest.mark.parametrize("text", ["", "plain", "naïve ünïcode ✓ 🐍", "lone \ud800 surrogate", "a\r\nb\x00c"])
def test_text_round_trips(tmp_path: Path, text: str) -> None:
    _, loaded = round_trip(tmp_path, text, "text")
    assert type(loaded) is str
    assert loaded == text


@pytest.mark.parametrize(
    "value", [b"", b"\x00\xff binary \n\r", bytes(range(256)) * 100, bytearray(b"mutable"), memoryview(b"view")]
)
def test_bytes_round_trip_as_bytes(tmp_path: Path, value: bytes | bytearray | memoryview) -> None:
    _, loaded = round_trip(tmp_path, value, "bytes")
    assert type(loaded) is bytes
    assert loaded == bytes(value)


@pytest.mark.parametrize(
    "value",
    [{1, 2, 3}, Point(3, -4), {"points": [Point(1, 2)], "frozen": frozenset({"a"}), "tuple": (1, (2,))}],
    ids=["set", "class", "mixed"],
)
def test_pickle_round_trips(tmp_path: Path, value: Any) -> None:
    _, loaded = round_trip(tmp_path, value, "pickle")
    assert type(loaded) is type(value)
    assert loaded == value
    assert loaded is not value


def _structured() -> np.ndarray[Any, Any]:
    dtype = np.dtype([("id", "<i4"), ("score", "<f8"), ("name", "U5"), ("ok", "?")])
    return np.array([(1, 0.5, "ab", True), (2, -2.5, "ü", False)], dtype=dtype)


NUMPY_CASES: dict[str, Callable[[], np.ndarray[Any, Any]]] = {
    "c-order": lambda: np.arange(24, dtype=np.float64).reshape(2, 3, 4),
    "fortran-order": lambda: np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
    "non-contiguous": lambda: np.arange(100, dtype=np.int64).reshape(10, 10)[::2, 1::3],
    "reversed": lambda: np.arange(10, dtype=np.int16)[::-1],
    "0-d": lambda: np.array(3.25),
    "empty": lambda: np.empty((0, 3), dtype=np.float32),
    "datetime64": lambda: np.array(["2024-01-01T12:00", "NaT", "1970-01-01"], dtype="datetime64[ns]"),
    "timedelta64": lambda: np.array([1, -2, 3], dtype="timedelta64[s]"),
    "bool": lambda: np.array([[True, False], [False, True]]),
    "complex": lambda: np.array([1 + 2j, -0.5j, np.inf], dtype=np.complex128),
    "float-nan": lambda: np.array([np.nan, -0.0, np.inf, 1e-300]),
    "uint64": lambda: np.array([0, 2**64 - 1], dtype=np.uint64),
    "big-endian": lambda: np.arange(6, dtype=">i4").reshape(2, 3),
    "float16": lambda: np.linspace(0, 1, 7, dtype=np.float16),
    "unicode": lambda: np.array(["a", "ünï", "🐍"]),
    "structured": _structured,
}


def test_numpy_refuses_a_dtype_whose_header_np_load_would_refuse(tmp_path: Path) -> None:
    wide = np.zeros(2, dtype=[(f"field_{i:03d}", "<f8") for i in range(600)])
    with pytest.raises(chkpt.SerializationError, match=r"stage 'value'.*header.*10,000 bytes.*format='pickle'"):
        Source(wide, format="numpy").run(tmp_path)
    narrow = np.zeros(2, dtype=[(f"f{i}", "<f8") for i in range(50)])
    _, loaded = round_trip(tmp_path / "narrow", narrow, "numpy")
    assert loaded.dtype == narrow.dtype


def test_numpy_stores_a_slice_of_a_memory_mapped_input(tmp_path: Path) -> None:
    up = chkpt.Stage(lambda: np.arange(5.0), name="up", version=1, format="numpy", mmap=True)
    down = chkpt.Stage(lambda a: a[2:], name="down", version=1, format="numpy")
    pipeline = up >> down
    pipeline.run(config(tmp_path, store=["up"]))
    run = pipeline.run(config(tmp_path, load=True))  # up loads as a memmap; down returns a slice of it
    assert outcomes(run) == [("up", "loaded"), ("down", "stored")]
    loaded = pipeline.run(config(tmp_path, load=True)).value
    np.testing.assert_array_equal(loaded, [2.0, 3.0, 4.0])


def test_numpy_refuses_an_array_subclass_it_would_load_as_a_plain_array(tmp_path: Path) -> None:
    masked = np.ma.array([1.0, 2.0, 3.0], mask=[False, True, False])  # .npy would drop the mask
    with pytest.raises(chkpt.SerializationError, match=r"stage 'value'.*MaskedArray.*np\.asarray") as info:
        Source(masked, format="numpy").run(tmp_path)
    assert "format='pickle'" in str(info.value)
    assert stage_files(tmp_path) == set()


@pytest.mark.parametrize("case", sorted(NUMPY_CASES))
def test_numpy_round_trips(tmp_path: Path, case: str) -> None:
    array = NUMPY_CASES[case]()
    _, loaded = round_trip(tmp_path, array, "numpy")
    assert type(loaded) is np.ndarray
    assert loaded.dtype == array.dtype
    assert loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)
    assert loaded.tobytes() == np.ascontiguousarray(array).tobytes()
    if case == "fortran-order":
        assert loaded.flags.f_contiguous and not loaded.flags.c_contiguous


def _frame() -> Any:
    return pd.DataFrame(
        {
            "i": np.array([1, 2, 3], dtype=np.int64),
            "f": [0.5, np.nan, -1e300],
            "s": ["a", "ünï", "z"],
            "b": [True, False, True],
            "t": pd.to_datetime(["2024-01-01T00:00", "2024-06-30T12:00", "1999-12-31T23:59"]).tz_localize("UTC"),
            "c": pd.Categorical(["x", "y", "x"]),
            "n": pd.array([1, None, 3], dtype="Int64"),
            "u8": np.array([0, 255, 7], dtype=np.uint8),
        },
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    )


@pytest.mark.parametrize(
    "make",
    [
        _frame,
        lambda: pd.DataFrame({"x": [1.5, 2.5]}, index=pd.RangeIndex(10, 14, 2, name="step")),
        lambda: pd.DataFrame(
            {"v": [1, 2, 3, 4]},
            index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1), ("b", 2)], names=["k", "n"]),
        ),
    ],
    ids=["dtypes", "range-index", "multi-index"],
)
def test_pandas_round_trips(tmp_path: Path, make: Callable[[], Any]) -> None:
    frame = make()
    _, loaded = round_trip(tmp_path, frame, "pandas")
    assert type(loaded) is pd.DataFrame
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True)
    assert list(loaded.dtypes) == list(frame.dtypes)


class Tagged(pd.DataFrame):  # type: ignore[misc]
    """A DataFrame subclass (as libraries make): Parquet would load it as a plain DataFrame."""


PARQUET_CHANGES: dict[str, Callable[[], Any]] = {
    "bool column labels": lambda: pd.DataFrame({True: [1], False: [2]}),
    "int categories": lambda: pd.DataFrame({"c": pd.Categorical([3, 1], categories=[3, 2, 1], ordered=True)}),
    "ints in an object column": lambda: pd.DataFrame({"o": pd.Series([2**62, 1], dtype=object)}),
    "an index's freq": lambda: pd.DataFrame({"x": [1, 2]}, index=pd.date_range("2024-01-01", periods=2, freq="D")),
    "a datetime's unit": lambda: pd.DataFrame({"t": pd.to_datetime(["2024-01-01"]).astype("datetime64[s]")}),
    "a tuple in attrs": lambda: with_attrs(pd.DataFrame({"x": [1]}), pair=(1, 2)),
    "an int index name": lambda: pd.DataFrame({"x": [1]}, index=pd.Index(["a"], name=0)),
    "labels Parquet cannot read back": lambda: pd.DataFrame({1: [1], "1": [2]}),
    "a subclass": lambda: Tagged({"x": [1]}),
}


def with_attrs(frame: Any, **attrs: Any) -> Any:
    frame.attrs.update(attrs)
    return frame


@pytest.mark.parametrize("case", PARQUET_CHANGES, ids=list(PARQUET_CHANGES))
def test_pandas_refuses_a_frame_that_would_load_changed(tmp_path: Path, case: str) -> None:
    frame = PARQUET_CHANGES[case]()
    with pytest.raises(chkpt.SerializationError, match=r"stage 'value': format 'pandas'.*format='pickle'"):
        Source(frame, format="pandas").run(tmp_path)
    assert stage_files(tmp_path) <= {INDEX}
    _, loaded = round_trip(tmp_path / "pickled", frame, "pickle")
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True, check_freq=True)


AUTO_CASES: dict[str, tuple[Callable[[], Any], str, str]] = {
    "ndarray": (lambda: np.arange(5.0), "npy", "numpy"),
    "dataframe": (lambda: pd.DataFrame({"a": [1, 2]}), "parquet", "pandas"),
    "bytes": (lambda: b"\x00raw", "bin", "bytes"),
    "str": (lambda: "text ü", "txt", "text"),
    "dict": (lambda: {"a": [1, 2.5, None], "b": "c"}, "json", "json"),
    "list": (lambda: [1, "two", [3.0]], "json", "json"),
}


@pytest.mark.parametrize("case", sorted(AUTO_CASES))
def test_auto_picks_a_safe_codec_by_type_and_loads_it_back(tmp_path: Path, case: str) -> None:
    make, extension, codec = AUTO_CASES[case]
    value = make()
    source = Source(value, format="auto")
    first = source.run(tmp_path)
    key = key_of(first, "value")
    files = stage_files(tmp_path)
    assert f"{key}.{extension}" in files and INDEX in files
    assert index_keys(tmp_path) == [key]
    if codec != "json":
        assert files == {f"{key}.{extension}", f"{key}.meta.json", INDEX}
        assert read_meta(meta_path(tmp_path, key))["codec"] == codec
    second = source.run(tmp_path, load=True)
    assert outcomes(second) == [("value", "loaded")], f"auto did not load its own {codec} checkpoint"
    assert source.calls == 1
    loaded = second.value
    assert type(loaded) is type(value)
    if isinstance(value, np.ndarray):
        np.testing.assert_array_equal(loaded, value)
    elif isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, value)
    else:
        assert same(loaded, value)


@pytest.mark.parametrize("value", [{1, 2}, Point(1, 2), (1, 2), object()], ids=["set", "class", "tuple", "object"])
def test_auto_refuses_a_value_it_has_no_safe_codec_for_and_suggests_pickle(tmp_path: Path, value: Any) -> None:
    with pytest.raises(chkpt.SerializationError) as info:
        Source(value, format="auto").run(tmp_path)
    message = str(info.value)
    assert "stage 'value'" in message
    assert type(value).__name__ in message
    assert "format='pickle'" in message
    assert stage_files(tmp_path) == set()


# --- 2. the format in the key ---------------------------------------------------------------------------------


def planned_key(source: Source, directory: Path, **options: Any) -> str:
    return key_of(source.run(directory, store=False, **options), "value")


def test_the_format_is_part_of_the_key(tmp_path: Path) -> None:
    value = {"a": [1, 2]}
    default = planned_key(Source(value), tmp_path)
    as_json = planned_key(Source(value, format="json"), tmp_path)
    as_pickle = planned_key(Source(value, format="pickle"), tmp_path)
    as_lossy = planned_key(Source(value, format="json-lossy"), tmp_path)
    by_config = planned_key(Source(value), tmp_path, format="pickle")
    by_auto = planned_key(Source(value), tmp_path, format="auto")
    assert default == as_json
    assert len({as_json, as_pickle, as_lossy, by_auto}) == 4
    # A stage that names no format takes the config's, and its key is that format's.
    assert by_config == as_pickle
    # A stage's own format wins over the config's.
    assert planned_key(Source(value, format="json"), tmp_path, format="pickle") == as_json


def test_switching_a_stages_format_does_not_load_the_old_checkpoint(tmp_path: Path) -> None:
    value = {"a": [1, 2]}
    as_json = Source(value, format="json")
    first = as_json.run(tmp_path)
    as_pickle = Source(value, format="pickle")
    second = as_pickle.run(tmp_path, load=True)
    assert outcomes(second) == [("value", "stored")]
    assert as_pickle.calls == 1
    assert key_of(first, "value") != key_of(second, "value")
    # Both checkpoints are there, each loadable by its own format only.
    assert stage_files(tmp_path) == {
        f"{key_of(first, 'value')}.json",
        f"{key_of(second, 'value')}.pkl",
        f"{key_of(second, 'value')}.meta.json",
        INDEX,
    }
    assert index_keys(tmp_path) == [key_of(first, "value"), key_of(second, "value")]
    back = Source(value, format="json")
    assert outcomes(back.run(tmp_path, load=True)) == [("value", "loaded")]
    assert back.calls == 0


def test_switching_the_configs_format_does_not_load_the_old_checkpoint(tmp_path: Path) -> None:
    source = Source("some text")
    source.run(tmp_path, format="text")
    assert outcomes(source.run(tmp_path, load=True, format="text")) == [("value", "loaded")]
    assert outcomes(source.run(tmp_path, load=True, format="json")) == [("value", "stored")]
    assert source.calls == 2


def test_config_format_auto_applies_to_stages_that_name_none(tmp_path: Path) -> None:
    @chkpt.Stage.wrap()
    def array() -> np.ndarray[Any, Any]:
        return np.arange(4)

    @chkpt.Stage.wrap(format="pickle")
    def doubled(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return values * 2

    run = (array >> doubled).run(config(tmp_path, format="auto"))
    assert stage_files(tmp_path, "array") == {
        f"{key_of(run, 'array')}.npy",
        f"{key_of(run, 'array')}.meta.json",
        INDEX,
    }
    assert stage_files(tmp_path, "doubled") == {
        f"{key_of(run, 'doubled')}.pkl",
        f"{key_of(run, 'doubled')}.meta.json",
        INDEX,
    }
    assert index_keys(tmp_path, "array") == [key_of(run, "array")]
    assert index_keys(tmp_path, "doubled") == [key_of(run, "doubled")]
    assert read_meta(meta_path(tmp_path, key_of(run, "array"), "array"))["codec"] == "numpy"
    assert read_meta(meta_path(tmp_path, key_of(run, "doubled"), "doubled"))["codec"] == "pickle"
    again = (array >> doubled).run(config(tmp_path, format="auto", load=True))
    assert outcomes(again) == [("doubled", "loaded")]
    np.testing.assert_array_equal(again.value, np.arange(4) * 2)


# --- 3. layout ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "make", "extension"),
    [
        ("numpy", lambda: np.arange(12.0).reshape(3, 4), "npy"),
        ("pandas", lambda: pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "parquet"),
        ("pickle", lambda: {1, 2}, "pkl"),
        ("text", lambda: "hello ü", "txt"),
        ("bytes", lambda: b"\x00\x01", "bin"),
    ],
)
def test_non_json_checkpoints_are_a_value_file_and_a_meta_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str, make: Callable[[], Any], extension: str
) -> None:
    monkeypatch.setattr(chkpt.checksums, "_fast", [])  # detect xxhash afresh: it is installed here
    run = Source(make(), format=format).run(tmp_path)
    key = key_of(run, "value")
    # The value file, its record, and the folder's index, a line for the one checkpoint stored.
    assert stage_files(tmp_path) == {f"{key}.{extension}", f"{key}.meta.json", INDEX}
    assert index_keys(tmp_path) == [key]
    data = (tmp_path / "value" / f"{key}.{extension}").read_bytes()
    record = read_meta(meta_path(tmp_path, key))
    assert record["codec"] == format
    assert record["key"] == key
    assert record["stage"] == "value"
    assert record["bytes"] == len(data) == run.records[0].bytes
    assert record["checksum"] == "xxh3_128:" + xxhash.xxh3_128(data).hexdigest()


def test_the_npy_file_is_a_plain_npy_and_the_parquet_file_a_plain_parquet(tmp_path: Path) -> None:
    array = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    run = Source(array, format="numpy", name="array").run(tmp_path)
    plain = np.load(tmp_path / "array" / f"{key_of(run, 'array')}.npy", allow_pickle=False)
    np.testing.assert_array_equal(plain, array)
    assert plain.dtype == array.dtype

    frame = _frame()
    run = Source(frame, format="pandas", name="frame").run(tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "frame" / f"{key_of(run, 'frame')}.parquet"), frame)


# --- 4. security ----------------------------------------------------------------------------------------------


def test_a_planted_pickle_is_never_unpickled_for_a_json_stage(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    store = tmp_path / "store"
    source = Source({"safe": True}, format="json")
    key = planned_key(source, store)
    payload = malicious(marker)
    folder = store / "value"
    folder.mkdir(parents=True)
    (folder / f"{key}.pkl").write_bytes(payload)
    record = {"key": key, "stage": "value", "codec": "pickle", "bytes": len(payload)}
    write_meta(folder / f"{key}.meta.json", {**record, "checksum": checksum_label(payload)})

    run = source.run(store, load=True)
    assert outcomes(run) == [("value", "stored")]
    assert run.value == {"safe": True}
    assert not marker.exists()

    # The payload in the JSON stage's own file: damaged, recomputed, still never unpickled.
    (folder / f"{key}.json").write_bytes(payload)
    run, message = warned_run(source, store, load=True)
    assert outcomes(run) == [("value", "stored")]
    assert "stage 'value'" in message
    assert not marker.exists()
    assert source.calls == 3  # once to learn the key, once for each load=True run
    assert outcomes(source.run(store, load=True)) == [("value", "loaded")]
    assert source.calls == 3


def _replace_value(folder: Path, key: str, old_extension: str, new_extension: str, data: bytes, codec: str) -> None:
    """Put `data` in the checkpoint's place with a record that matches it (size and checksum), naming `codec`."""
    (folder / f"{key}.{old_extension}").unlink()
    (folder / f"{key}.{new_extension}").write_bytes(data)
    path = folder / f"{key}.meta.json"
    record = read_meta(path)
    record.update(codec=codec, bytes=len(data), checksum=checksum_label(data))
    write_meta(path, record)


@pytest.mark.parametrize("extension", ["npy", "pkl"])
def test_a_numpy_stage_whose_record_says_pickle_is_recomputed_not_unpickled(tmp_path: Path, extension: str) -> None:
    marker = tmp_path / "marker"
    store = tmp_path / "store"
    source = Source(np.arange(5), format="numpy")
    key = key_of(source.run(store), "value")
    _replace_value(store / "value", key, "npy", extension, malicious(marker), "pickle")
    run, message = warned_run(source, store, load=True)
    assert outcomes(run) == [("value", "stored")]
    assert "stage 'value'" in message and str(meta_path(store, key)) in message
    assert not marker.exists()
    np.testing.assert_array_equal(run.value, np.arange(5))
    assert outcomes(source.run(store, load=True)) == [("value", "loaded")]
    assert not marker.exists()


def test_a_pickle_in_a_numpy_stages_npy_with_a_matching_record_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    store = tmp_path / "store"
    source = Source(np.arange(5), format="numpy")
    key = key_of(source.run(store), "value")
    _replace_value(store / "value", key, "npy", "npy", malicious(marker), "numpy")
    run, message = warned_run(source, store, load=True)
    assert outcomes(run) == [("value", "stored")]
    assert "stage 'value'" in message
    assert not marker.exists()


@pytest.mark.parametrize("named", ["pickle", "json-lossy", None, 42])
def test_an_auto_stage_refuses_a_record_naming_a_codec_auto_never_writes(tmp_path: Path, named: object) -> None:
    marker = tmp_path / "marker"
    store = tmp_path / "store"
    source = Source(np.arange(5), format="auto")
    key = key_of(source.run(store), "value")
    folder = store / "value"
    _replace_value(folder, key, "npy", "pkl", malicious(marker), "pickle")
    if named != "pickle":
        record = read_meta(folder / f"{key}.meta.json")
        record["codec"] = named
        write_meta(folder / f"{key}.meta.json", record)
    run, message = warned_run(source, store, load=True)
    assert outcomes(run) == [("value", "stored")]
    assert "stage 'value'" in message
    assert not marker.exists()
    np.testing.assert_array_equal(run.value, np.arange(5))
    assert outcomes(source.run(store, load=True)) == [("value", "loaded")]


@pytest.mark.parametrize("update_size", [False, True], ids=["size-changed", "size-updated"])
def test_a_tampered_pickle_is_never_unpickled(tmp_path: Path, update_size: bool) -> None:
    marker = tmp_path / "marker"
    store = tmp_path / "store"
    source = Source(Point(1, 2), format="pickle")
    key = key_of(source.run(store), "value")
    path = store / "value" / f"{key}.pkl"
    original = read_meta(meta_path(store, key))
    payload = malicious(marker)
    path.write_bytes(payload)
    if update_size:
        write_meta(meta_path(store, key), {**original, "bytes": len(payload)})
    run, message = warned_run(source, store, load=True)
    assert outcomes(run) == [("value", "stored")]
    assert "stage 'value'" in message
    assert ("checksum" in message) if update_size else ("bytes" in message)
    assert not marker.exists()
    assert run.value == Point(1, 2)
    loaded = source.run(store, load=True)
    assert outcomes(loaded) == [("value", "loaded")]
    assert loaded.value == Point(1, 2)
    assert not marker.exists()


# --- 5. damage ------------------------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_last(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_first(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _delete(path: Path) -> None:
    path.unlink()


def _garbage_meta(path: Path) -> None:
    path.with_name(path.name.split(".")[0] + ".meta.json").write_bytes(b"\x00not json{")


def _meta_not_a_record(path: Path) -> None:
    path.with_name(path.name.split(".")[0] + ".meta.json").write_text("[1, 2]", encoding="ascii")


def _meta_bytes_off(path: Path) -> None:
    meta = path.with_name(path.name.split(".")[0] + ".meta.json")
    record = read_meta(meta)
    record["bytes"] += 1
    write_meta(meta, record)


def _meta_checksum_off(path: Path) -> None:
    meta = path.with_name(path.name.split(".")[0] + ".meta.json")
    record = read_meta(meta)
    algorithm, _, digest = record["checksum"].partition(":")
    record["checksum"] = f"{algorithm}:{'0' * len(digest)}"
    write_meta(meta, record)


DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "flipped-last-byte": _flip_last,
    "flipped-first-byte": _flip_first,
    "flipped-middle-byte": _flip_middle,
    "empty": _empty,
    "value-file-deleted": _delete,
    "meta-garbage": _garbage_meta,
    "meta-not-a-record": _meta_not_a_record,
    "meta-bytes-mismatch": _meta_bytes_off,
    "meta-checksum-mismatch": _meta_checksum_off,
}

DAMAGE_FORMATS: dict[str, tuple[Callable[[], Any], str]] = {
    "numpy": (lambda: np.arange(1000, dtype=np.float64).reshape(10, 100), "npy"),
    "pandas": (lambda: pd.DataFrame({"a": np.arange(100), "b": [f"s{i}" for i in range(100)]}), "parquet"),
    "pickle": (lambda: {"points": [Point(i, -i) for i in range(50)]}, "pkl"),
    "text": (lambda: "line ü\n" * 100, "txt"),
}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, pd.DataFrame):
        return bool(a.equals(b))
    return bool(a == b)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("format", sorted(DAMAGE_FORMATS))
def test_a_damaged_checkpoint_is_reported_and_recomputed(tmp_path: Path, format: str, damage: str) -> None:
    make, extension = DAMAGE_FORMATS[format]
    source = Source(make(), format=format, name="damaged stage")
    key = key_of(source.run(tmp_path), "damaged stage")
    folder = tmp_path / "damaged_stage"
    DAMAGES[damage](folder / f"{key}.{extension}")

    run, message = warned_run(source, tmp_path, load=True)
    assert outcomes(run) == [("damaged stage", "stored")]
    assert source.calls == 2
    assert "stage 'damaged stage'" in message
    assert str(folder / f"{key}.meta.json") in message
    assert _equal(run.value, make())

    again = source.run(tmp_path, load=True)  # no warning: pytest makes one an error
    assert outcomes(again) == [("damaged stage", "loaded")]
    assert source.calls == 2
    assert _equal(again.value, make())
    assert set(os.listdir(folder)) == {
        f"{key}.{extension}",
        f"{key}.meta.json",
        INDEX,
    }
    assert index_keys(tmp_path, "damaged_stage") == [key, key]  # stored, then stored again after the damage


def test_a_damaged_memory_mapped_checkpoint_is_reported_and_recomputed(tmp_path: Path) -> None:
    array = np.arange(1000, dtype=np.float64)
    source = Source(array, format="numpy", mmap=True)
    key = key_of(source.run(tmp_path), "value")
    _flip_middle(tmp_path / "value" / f"{key}.npy")
    run, message = warned_run(source, tmp_path, load=True)
    assert "checksum" in message
    assert outcomes(run) == [("value", "stored")]
    assert run.value is array
    loaded = source.run(tmp_path, load=True)
    assert isinstance(loaded.value, np.memmap)
    np.testing.assert_array_equal(loaded.value, array)


# --- 6. mmap --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(1000, dtype=np.float64).reshape(10, 100),
        lambda: np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        lambda: np.empty((0, 3)),
    ],
    ids=["c-order", "fortran-order", "empty"],
)
def test_mmap_loads_a_read_only_memory_map(tmp_path: Path, make: Callable[[], np.ndarray[Any, Any]]) -> None:
    array = make()
    source = Source(array, format="numpy", mmap=True)
    first = source.run(tmp_path)
    assert first.value is array
    loaded = source.run(tmp_path, load=True)
    assert outcomes(loaded) == [("value", "loaded")]
    value = loaded.value
    assert isinstance(value, np.memmap)
    assert not value.flags.writeable
    np.testing.assert_array_equal(value, array)
    assert value.dtype == array.dtype
    if value.size:
        with pytest.raises(ValueError, match="read-only"):
            value[(0,) * value.ndim] = 1
    np.testing.assert_array_equal(np.load(tmp_path / "value" / f"{key_of(first, 'value')}.npy"), array)


@pytest.mark.parametrize("format", [None, "json", "pickle", "pandas", "auto"])
def test_mmap_needs_the_numpy_format(format: str | None) -> None:
    with pytest.raises(chkpt.PipelineError, match="numpy"):
        chkpt.Stage.wrap(format=format, mmap=True)(lambda: 1)


# --- 7. missing extras and unknown formats --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "hidden", "codec_module", "extra"),
    [
        ("numpy", "numpy", "chkpt.numpy_codec", "chkpt[numpy]"),
        ("pandas", "pandas", "chkpt.pandas_codec", "chkpt[pandas]"),
        ("pandas", "pyarrow", "chkpt.pandas_codec", "chkpt[pandas]"),
    ],
)
def test_a_missing_extra_is_reported_when_the_run_is_planned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str, hidden: str, codec_module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)
    monkeypatch.delitem(sys.modules, codec_module, raising=False)
    monkeypatch.delitem(chkpt.codecs._registry, format, raising=False)
    calls: list[int] = []

    @chkpt.Stage.wrap()
    def upstream() -> list[int]:
        calls.append(1)
        return [1, 2]

    @chkpt.Stage.wrap(format=format)
    def converted(values: list[int]) -> Any:
        calls.append(2)
        return values

    with pytest.raises(chkpt.ChkptError) as info:
        (upstream >> converted).run(config(tmp_path))
    message = str(info.value)
    assert "stage 'converted'" in message
    assert f"pip install {extra}" in message
    assert hidden in message
    assert calls == []
    assert not tmp_path.exists() or os.listdir(tmp_path) == []

    # Once the package is back, the same pipeline runs: the failure was not remembered.
    monkeypatch.undo()
    with pytest.raises(chkpt.SerializationError, match=f"format '{format}'"):
        (upstream >> converted).run(config(tmp_path))
    assert calls == [1, 2]


def test_an_unknown_format_is_a_config_error_naming_the_stage_and_the_formats(tmp_path: Path) -> None:
    @chkpt.Stage.wrap(format="yaml")
    def odd() -> int:
        return 1

    with pytest.raises(chkpt.ConfigError) as info:
        (() >> odd).run(config(tmp_path))
    message = str(info.value)
    assert "stage 'odd'" in message and "'yaml'" in message
    for name in ("json", "json-lossy", "text", "bytes", "pickle", "numpy", "pandas", "auto"):
        assert f"'{name}'" in message

    source = Source(1)
    with pytest.raises(chkpt.ConfigError, match=r"stage 'value'.*'toml'"):
        source.run(tmp_path, format="toml")
    assert source.calls == 0


@pytest.mark.parametrize("bad", ["", None, 3])
def test_config_format_must_be_a_name(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(chkpt.ConfigError):
        config(tmp_path, format=bad)


# --- 8. checksums ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hide", ["cache", "module"])
@pytest.mark.parametrize(
    ("format", "make", "extension"),
    [("numpy", lambda: np.arange(50), "npy"), ("pickle", lambda: {3}, "pkl")],
    ids=["numpy", "pickle"],
)
def test_without_xxhash_checkpoints_use_sha256(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hide: str,
    format: str,
    make: Callable[[], Any],
    extension: str,
) -> None:
    if hide == "cache":
        monkeypatch.setattr(chkpt.checksums, "_fast", [False])
    else:
        monkeypatch.setitem(sys.modules, "xxhash", None)
        monkeypatch.setattr(chkpt.checksums, "_fast", [])
    assert chkpt.checksums.preferred() == "sha256"
    source = Source(make(), format=format)
    key = key_of(source.run(tmp_path), "value")
    data = (tmp_path / "value" / f"{key}.{extension}").read_bytes()
    assert read_meta(meta_path(tmp_path, key))["checksum"] == "sha256:" + hashlib.sha256(data).hexdigest()
    loaded = source.run(tmp_path, load=True)
    assert outcomes(loaded) == [("value", "loaded")]
    assert _equal(loaded.value, make())

    # A flipped byte is still caught with sha256.
    _flip_last(tmp_path / "value" / f"{key}.{extension}")
    run, message = warned_run(source, tmp_path, load=True)
    assert "checksum" in message
    assert outcomes(run) == [("value", "stored")]


def test_a_sha256_checkpoint_loads_where_xxhash_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chkpt.checksums, "_fast", [False])
    source = Source(np.arange(7), format="numpy")
    source.run(tmp_path)
    monkeypatch.setattr(chkpt.checksums, "_fast", [True])
    loaded = source.run(tmp_path, load=True)
    assert outcomes(loaded) == [("value", "loaded")]
    np.testing.assert_array_equal(loaded.value, np.arange(7))


def test_an_xxh3_checkpoint_where_xxhash_is_missing_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chkpt.checksums, "_fast", [])
    source = Source(np.arange(7), format="numpy")
    key = key_of(source.run(tmp_path), "value")
    assert read_meta(meta_path(tmp_path, key))["checksum"].startswith("xxh3_128:")
    monkeypatch.setitem(sys.modules, "xxhash", None)
    monkeypatch.setattr(chkpt.checksums, "_fast", [])
    with pytest.raises(chkpt.StoreError, match=re.escape("chkpt[fast]")):
        source.run(tmp_path, load=True)
    assert source.calls == 1


def test_the_store_error_for_a_missing_xxhash_says_which_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The error tells the user to delete the checkpoint: it must say which one (its stage, or its file).
    monkeypatch.setattr(chkpt.checksums, "_fast", [True])
    source = Source(np.arange(7), format="numpy", name="needs fast")
    key = key_of(source.run(tmp_path), "needs fast")
    monkeypatch.setitem(sys.modules, "xxhash", None)
    with pytest.raises(chkpt.StoreError) as info:
        source.run(tmp_path, load=True)
    message = str(info.value)
    assert "stage 'needs fast'" in message or str(meta_path(tmp_path, key, "needs_fast")) in message, message


_MISSING = object()


@pytest.mark.parametrize("checksum", [_MISSING, None, "", "none:", 42], ids=["missing", "null", "empty", "none", "int"])
def test_a_record_without_a_usable_checksum_is_damage_not_a_dead_end(tmp_path: Path, checksum: object) -> None:
    # Like a record whose JSON or size is broken, a record whose checksum field is broken is reported and the
    # stage recomputed: the run does not stop, and the unverifiable value is never returned.
    source = Source(np.arange(7), format="numpy")
    key = key_of(source.run(tmp_path), "value")
    record = read_meta(meta_path(tmp_path, key))
    del record["checksum"]
    if checksum is not _MISSING:
        record["checksum"] = checksum
    write_meta(meta_path(tmp_path, key), record)
    run, message = warned_run(source, tmp_path, load=True)
    assert "stage 'value'" in message
    assert outcomes(run) == [("value", "stored")]
    assert source.calls == 2
    assert outcomes(source.run(tmp_path, load=True)) == [("value", "loaded")]


def test_a_deleted_record_means_no_checkpoint(tmp_path: Path) -> None:
    source = Source(np.arange(7), format="numpy")
    key = key_of(source.run(tmp_path), "value")
    meta_path(tmp_path, key).unlink()
    run = source.run(tmp_path, load=True)  # silently: a value file without its record is not a checkpoint
    assert outcomes(run) == [("value", "stored")]
    assert stage_files(tmp_path) == {f"{key}.npy", f"{key}.meta.json", INDEX}
    assert index_keys(tmp_path) == [key, key]  # stored, then stored again without its record
    assert outcomes(source.run(tmp_path, load=True)) == [("value", "loaded")]


# --- 9. user codecs -------------------------------------------------------------------------------------------


class CsvCodec:
    """A user's codec for list[list[str]] as comma-separated lines (no quoting)."""

    extension = "csv"

    def __init__(self, name: str = "csvish") -> None:
        self.name = name
        self.read_from: list[str] = []

    def can_store(self, value: Any) -> bool:
        return isinstance(value, list) and all(
            isinstance(row, list) and all(isinstance(cell, str) for cell in row) for row in value
        )

    def write(self, value: Any, file: BinaryIO) -> None:
        if not self.can_store(value):
            raise chkpt.SerializationError(f"{self.name} stores list[list[str]], not {type(value).__name__}")
        file.write("\n".join(",".join(row) for row in value).encode("utf-8"))

    def read(self, file: BinaryIO) -> Any:
        self.read_from.append(file.name)
        text = file.read().decode("utf-8")
        return [line.split(",") for line in text.split("\n")] if text else []


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A copy of the codec registry for the test, so that codecs it registers do not outlive it."""
    copy = dict(chkpt.codecs._registry)
    monkeypatch.setattr(chkpt.codecs, "_registry", copy)
    return copy


def test_a_registered_codec_works_end_to_end(tmp_path: Path, registry: dict[str, Any]) -> None:
    codec = CsvCodec()
    chkpt.codecs.register(codec)
    assert chkpt.codecs.get("csvish") is codec
    assert "csvish" in chkpt.codecs.names()
    table = [["a", "b"], ["ü", "2"], ["", "x"]]
    source, loaded = round_trip(tmp_path, table, "csvish")
    assert loaded == table
    key = key_of(source.run(tmp_path, store=False), "value")
    path = tmp_path / "value" / f"{key}.csv"
    assert stage_files(tmp_path) == {f"{key}.csv", f"{key}.meta.json", INDEX}
    assert index_keys(tmp_path) == [key]
    assert path.read_bytes() == "a,b\nü,2\n,x".encode()
    record = read_meta(meta_path(tmp_path, key))
    assert record["codec"] == "csvish"
    assert record["bytes"] == path.stat().st_size
    assert codec.read_from == [str(path)]

    # The codec's name is in the key: the same codec under another name, or json, makes other keys.
    chkpt.codecs.register(CsvCodec("csvish2"))
    other = planned_key(Source(table, format="csvish2"), tmp_path)
    as_json = planned_key(Source(table, format="json"), tmp_path)
    assert len({key, other, as_json}) == 3

    # "auto" never picks a user's codec.
    auto = Source(table, format="auto", name="auto")
    auto_key = key_of(auto.run(tmp_path), "auto")
    assert stage_files(tmp_path, "auto") == {f"{auto_key}.json", f"{auto_key}.meta.json", INDEX}
    assert index_keys(tmp_path, "auto") == [auto_key]

    # A damaged user checkpoint is reported and recomputed, and never read.
    _flip_middle(path)
    run, message = warned_run(source, tmp_path, load=True)
    assert "checksum" in message
    assert outcomes(run) == [("value", "stored")]
    assert codec.read_from == [str(path)]


class _NoName:
    extension = "x"

    def can_store(self, value: Any) -> bool:
        return True

    def write(self, value: Any, file: BinaryIO) -> None:
        pass

    def read(self, file: BinaryIO) -> Any:
        return None


class _NoRead:
    name = "noread"
    extension = "x"

    def can_store(self, value: Any) -> bool:
        return True

    def write(self, value: Any, file: BinaryIO) -> None:
        pass


def _with(name: Any = "okname", extension: Any = "ok") -> CsvCodec:
    codec = CsvCodec(name)
    codec.extension = extension
    return codec


@pytest.mark.parametrize(
    "codec",
    [
        _NoName(),
        _NoRead(),
        _with(name=""),
        _with(name=None),
        _with(name=3),
        _with(name="auto"),
        _with(extension="a/b"),
        _with(extension=""),
        _with(extension=".csv"),
        _with(extension="meta"),
        _with(extension="../x"),
        _with(extension=None),
    ],
    ids=[
        "no-name",
        "no-read",
        "empty-name",
        "none-name",
        "int-name",
        "auto",
        "slash-extension",
        "empty-extension",
        "dot-extension",
        "meta-extension",
        "parent-extension",
        "none-extension",
    ],
)
def test_registering_a_bad_codec_is_a_config_error(registry: dict[str, Any], codec: Any) -> None:
    before = dict(registry)
    with pytest.raises(chkpt.ConfigError):
        chkpt.codecs.register(codec)
    assert registry == before


def test_registering_a_codec_class_instead_of_an_instance_says_so(registry: dict[str, Any]) -> None:
    class Csv:
        name = "csv"
        extension = "csv"

        def can_store(self, value: Any) -> bool:
            return True

        def write(self, value: Any, file: Any) -> None:
            file.write(b"")

        def read(self, file: Any) -> Any:
            return None

    with pytest.raises(chkpt.ConfigError, match=r"not its class: pass Csv\(\), not Csv"):
        chkpt.codecs.register(Csv)  # type: ignore[arg-type]
    assert "csv" not in registry


def test_registering_the_same_codec_twice_is_fine_but_a_taken_name_is_an_error(registry: dict[str, Any]) -> None:
    codec = CsvCodec()
    chkpt.codecs.register(codec)
    chkpt.codecs.register(codec)
    assert registry["csvish"] is codec
    with pytest.raises(chkpt.ConfigError, match="csvish"):
        chkpt.codecs.register(CsvCodec())
    assert registry["csvish"] is codec
    for taken in ("json", "json-lossy", "pickle", "text", "bytes", "numpy", "pandas"):
        with pytest.raises(chkpt.ConfigError, match=re.escape(taken)):
            chkpt.codecs.register(CsvCodec(taken))
        assert not isinstance(registry.get(taken), CsvCodec)


# --- 10. serialization errors ---------------------------------------------------------------------------------


SERIALIZATION_CASES: dict[str, tuple[str, Callable[[], Any], tuple[str, ...]]] = {
    "numpy-list": ("numpy", lambda: [1, 2, 3], ("numpy", "list")),
    "numpy-object-array": ("numpy", lambda: np.array([1, "a", None], dtype=object), ("numpy", "object")),
    "numpy-scalar": ("numpy", lambda: np.float64(1.5), ("numpy", "float64")),
    "pandas-series": ("pandas", lambda: pd.Series([1, 2]), ("pandas", "Series")),
    "pandas-ndarray": ("pandas", lambda: np.arange(3), ("pandas", "ndarray")),
    "pandas-mixed-column": ("pandas", lambda: pd.DataFrame({"a": [1, "x"]}), ("Parquet", "DataFrame")),
    "pandas-object-column": ("pandas", lambda: pd.DataFrame({"a": [object(), object()]}), ("Parquet", "DataFrame")),
    "text-bytes": ("text", lambda: b"bytes", ("text", "bytes")),
    "bytes-str": ("bytes", lambda: "str", ("bytes", "str")),
    "pickle-lambda": ("pickle", lambda: lambda: 1, ("pickle", "function")),
    "json-tuple": ("json", lambda: (1, 2), ("json", "tuple")),
    "json-int-key": ("json", lambda: {1: "a"}, ("json", "int")),
    "json-set": ("json", lambda: {1, 2}, ("json", "set")),
    "json-lossy-object": ("json-lossy", lambda: object(), ("json", "object")),
}


@pytest.mark.parametrize("case", sorted(SERIALIZATION_CASES))
def test_a_serialization_error_names_the_stage_the_type_and_the_format_and_leaves_no_file(
    tmp_path: Path, case: str
) -> None:
    format, make, fragments = SERIALIZATION_CASES[case]

    @chkpt.Stage.wrap()
    def before() -> int:
        return 1

    calls: list[int] = []

    def produce(_: int) -> Any:
        calls.append(1)
        return make()

    stage = chkpt.Stage(produce, name="bad stage", version=1, format=format)
    with pytest.raises(chkpt.SerializationError) as info:
        (before >> stage).run(config(tmp_path))
    message = str(info.value)
    assert "stage 'bad stage'" in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert calls == [1]
    assert stage_files(tmp_path, "bad_stage") == set()
    # The stage before it was stored, so a rerun resumes after it; its folder's index lists it.
    before_files = stage_files(tmp_path, "before")
    assert INDEX in before_files
    (before_file,) = before_files - {INDEX}
    assert index_keys(tmp_path, "before") == [before_file.removesuffix(".json")]


# --- 11. durable writes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["numpy", "json", "pickle"])
@pytest.mark.parametrize("durable", [True, False])
def test_durable_false_writes_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str, durable: bool
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    value: Any = np.arange(10) if format == "numpy" else [1, 2, 3]
    source = Source(value, format=format)
    first = source.run(tmp_path, durable=durable)
    key = key_of(first, "value")
    files = stage_files(tmp_path)
    assert INDEX in files and files - {INDEX}
    # No temporary file (`.<name>.<pid>.<random>.tmp`) is left: the only dot file is the index.
    assert all(not name.startswith(".") for name in files - {INDEX})
    if durable:
        # The value, the record (if separate) and the folder are each made durable.
        assert len(fsyncs) >= (2 if format == "json" else 4)
    else:
        assert fsyncs == []
    loaded = source.run(tmp_path, load=True, durable=durable)
    assert outcomes(loaded) == [("value", "loaded")]
    assert key_of(loaded, "value") == key
    assert _equal(loaded.value, value)
    assert source.calls == 1
    assert chkpt.Config(durable=False).durable is False
    assert chkpt.Config().durable is True


def test_a_json_value_too_deep_to_decode_here_is_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a value stored from a shallow stack may be too deep to decode from a deeper one (a notebook, a test runner)
    source = Source([[[1]]], format="json")
    source.run(tmp_path)

    def too_deep(self: Any, data: bytes) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(chkpt.codecs.JsonCodec, "decode", too_deep)
    with pytest.warns(chkpt.ChkptWarning, match="nested too deep to decode here"):
        run = source.run(tmp_path, load=True)
    assert run.value == [[[1]]] and source.calls == 2
