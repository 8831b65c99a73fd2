"""The exceptions and warnings chkpt raises itself.

Every error chkpt raises derives from `ChkptError`, so one `except chkpt.ChkptError` catches all of them; an
exception raised inside a stage is not wrapped and reaches the caller as itself.
"""

from __future__ import annotations


class ChkptError(Exception):
    """Base class of every error chkpt raises itself."""


class PipelineError(ChkptError, TypeError):
    """A pipeline cannot be composed as written: wrong number of inputs, a plain function where a Stage belongs,
    or a value that cannot be part of a key. Raised when the pipeline is built, before anything runs."""


class ConfigError(ChkptError, ValueError):
    """A `Config` asks for something impossible, such as loading a stage that is not in the pipeline."""


class SerializationError(ChkptError):
    """A stage's result cannot be stored in the stage's format. Nothing is written for that stage."""


class StoreError(ChkptError):
    """The checkpoint store cannot be used: the folder cannot be created or written, or a write failed."""


class ChkptWarning(UserWarning):
    """Something chkpt recovered from by itself, such as a damaged checkpoint that it recomputes."""
