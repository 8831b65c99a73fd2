"""chkpt: checkpointed pipelines of plain Python functions.

Every stage's result is stored under a key that covers its code, its parameters and its inputs, so a rerun
loads what is still valid and recomputes only what changed. See the README for the API.
"""

from . import codecs
from ._version import __version__
from .config import Config
from .errors import (
    ChkptError,
    ChkptWarning,
    ConfigError,
    PipelineError,
    SerializationError,
    StagesFailed,
    StoreError,
)
from .files import file
from .pipeline import Pipeline
from .records import Run, StageRecord
from .stage import Stage

# The run machinery (json, hashlib, graphlib, ast) is loaded with chkpt rather than on the first run, so that a
# run's time is the run's own; together it stays within chkpt's import budget (bench/run.py).
from . import run as _run  # noqa: F401  isort: skip

__all__ = [
    "ChkptError",
    "ChkptWarning",
    "Config",
    "ConfigError",
    "Pipeline",
    "PipelineError",
    "Run",
    "SerializationError",
    "Stage",
    "StageRecord",
    "StagesFailed",
    "StoreError",
    "__version__",
    "codecs",
    "file",
]
