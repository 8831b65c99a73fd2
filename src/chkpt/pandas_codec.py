"""The "pandas" format: a DataFrame as a Parquet file, through pyarrow.

Imported only when a stage uses the format (`pip install chkpt[pandas]` brings pandas and pyarrow). Parquet keeps
column types, the index and column names, and compresses; but not everything a DataFrame can hold, so each frame is
read back from its Parquet bytes before it is stored, and one that would load changed is refused (use
format="pickle").
"""

from __future__ import annotations

import pandas as pd
import pyarrow  # noqa: F401  (imported now so that a missing pyarrow is reported when the format is chosen)

from .errors import SerializationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO


class PandasCodec:
    """A pandas.DataFrame as .parquet."""

    name = "pandas"
    extension = "parquet"

    def can_store(self, value: Any) -> bool:
        return type(value) is pd.DataFrame

    def write(self, value: Any, file: BinaryIO) -> None:
        if not isinstance(value, pd.DataFrame):
            hint = " (use series.to_frame())" if isinstance(value, pd.Series) else ""
            raise SerializationError(f"format 'pandas' stores a pandas.DataFrame, not a {type(value).__name__}{hint}")
        if type(value) is not pd.DataFrame:
            raise SerializationError(
                f"format 'pandas' stores a plain pandas.DataFrame and would load this {type(value).__name__} as one; "
                "use format='pickle'"
            )
        data = _parquet(value)
        problem = _changed_by_parquet(value, data)
        if problem is not None:
            raise SerializationError(
                f"format 'pandas' would load this DataFrame changed ({problem}); convert what differs (for example "
                "object columns to one type, labels to str) or use format='pickle'"
            )
        file.write(data)

    def read(self, file: BinaryIO) -> Any:
        return pd.read_parquet(file, engine="pyarrow")


def _parquet(value: pd.DataFrame) -> bytes:
    import io
    import warnings

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # pandas warns where Parquet changes the frame (labels made str, ...); the check after says so
            warnings.simplefilter("ignore")
            value.to_parquet(buffer, engine="pyarrow")
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise SerializationError(f"format 'pandas' cannot store this DataFrame as Parquet: {exc}") from None
    except Exception as exc:
        # pyarrow's own errors (ArrowInvalid, ArrowTypeError, ...) derive from these or from ArrowException.
        if type(exc).__module__.startswith("pyarrow"):
            raise SerializationError(f"format 'pandas' cannot store this DataFrame as Parquet: {exc}") from None
        raise
    return buffer.getvalue()


def _changed_by_parquet(value: pd.DataFrame, data: bytes) -> str | None:
    """What a load of `data` would give back changed from `value`, or None if it is the same frame: Parquet keeps
    most of a frame but not all (object columns come back typed, non-str labels and categories as str, an index's
    freq, a datetime's unit), and a load must never return another value than the stage did."""
    import io

    try:
        loaded = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    except Exception as exc:  # pyarrow's errors have no common base with a message
        return f"Parquet cannot read it back: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    try:
        pd.testing.assert_frame_equal(loaded, value, check_exact=True, check_freq=True, check_flags=True)
    except AssertionError as exc:
        return " ".join(str(exc).split())[:200]
    if loaded.attrs != value.attrs:
        return "its attrs"
    return None
