"""The "pandas" format: a DataFrame as a Parquet file, through pyarrow.

Imported only when a stage uses the format (`pip install chkpt[pandas]` brings pandas and pyarrow). Parquet keeps
column types, the index and column names, and compresses; a DataFrame whose columns hold arbitrary Python objects
cannot be stored this way (use format="pickle").
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
        return isinstance(value, pd.DataFrame)

    def write(self, value: Any, file: BinaryIO) -> None:
        if not isinstance(value, pd.DataFrame):
            hint = " (use series.to_frame())" if isinstance(value, pd.Series) else ""
            raise SerializationError(f"format 'pandas' stores a pandas.DataFrame, not a {type(value).__name__}{hint}")
        try:
            value.to_parquet(file, engine="pyarrow")
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise SerializationError(f"format 'pandas' cannot store this DataFrame as Parquet: {exc}") from None
        except Exception as exc:
            # pyarrow's own errors (ArrowInvalid, ArrowTypeError, ...) derive from these or from ArrowException.
            if type(exc).__module__.startswith("pyarrow"):
                raise SerializationError(f"format 'pandas' cannot store this DataFrame as Parquet: {exc}") from None
            raise

    def read(self, file: BinaryIO) -> Any:
        return pd.read_parquet(file, engine="pyarrow")
