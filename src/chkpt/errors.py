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


class StagesFailed(ChkptError):
    """With `Config(keep_going=True)`: the stages that raised, once every stage that did not depend on them has
    run. `failures` lists (stage name, exception) in the order they failed; the message names them all."""

    def __init__(self, failures: list[tuple[str, BaseException]]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} stage{'' if len(failures) == 1 else 's'} failed:"]
        lines += [f"  {name}: {type(exc).__name__}: {exc}" for name, exc in failures]
        super().__init__("\n".join(lines))


class ChkptWarning(UserWarning):
    """Something chkpt recovered from by itself, such as a damaged checkpoint that it recomputes."""


def add_note(exc: BaseException, note: str) -> None:
    """Add a note to an exception that is raised on as itself (a stage's, a watch's), saying where it came from."""
    add = getattr(exc, "add_note", None)
    if add is not None:
        add(note)
    else:
        # Python 3.10 has no add_note; the note is kept where 3.11's traceback printing would look for it.
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]
