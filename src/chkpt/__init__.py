"""chkpt: checkpointed pipelines of plain Python functions.

Every stage's result is stored under a key that covers its code, its parameters and its inputs, so a rerun
loads what is still valid and recomputes only what changed. See the README for the API.
"""

from . import codecs
from ._version import __version__
from .accept import Accepted
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
from .explain import Decision, Explanation
from .files import file
from .pipeline import Pipeline
from .records import Run, StageRecord
from .stage import Stage

# The run machinery (json, hashlib, graphlib, ast) is loaded with chkpt rather than on the first run, so that a
# run's time is the run's own; together it stays within chkpt's import budget (bench/run.py).
from . import run as _run  # noqa: F401  isort: skip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .catalog import Collected, Store
    from .listing import Checkpoint
else:
    # Retention (catalog.py, listing.py) is no part of a run, so it is loaded the first time one of its names is
    # used and `import chkpt` does not pay for it. (Hidden from type checkers, which see the import above: a module
    # `__getattr__` would make every misspelt `chkpt.` name type-check.)
    _LAZY = ("Checkpoint", "Collected", "Store")

    def __getattr__(name: str) -> object:
        if name in _LAZY:
            from . import catalog, listing

            value = globals()[name] = getattr(listing if name == "Checkpoint" else catalog, name)
            return value
        raise AttributeError(f"module 'chkpt' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


__all__ = [
    "Accepted",
    "Checkpoint",
    "ChkptError",
    "ChkptWarning",
    "Collected",
    "Config",
    "ConfigError",
    "Decision",
    "Explanation",
    "Pipeline",
    "PipelineError",
    "Run",
    "SerializationError",
    "Stage",
    "StageRecord",
    "StagesFailed",
    "Store",
    "StoreError",
    "__version__",
    "codecs",
    "file",
]
