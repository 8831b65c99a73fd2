"""Finding the pipeline a command names: `module:attr`, imported as Python would import it (the current folder
first), or `path/to/file.py:attr`, imported under the name an import of that file gives (its stem, inside the
packages that contain it), so that its stages have the keys they have when the file is run or imported.

Importing runs the module's top-level code, as `python -c "import module"` would: a file that runs its pipeline
when imported should do so under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import importlib
import os
import sys

from .errors import ChkptError
from .modules import module_name_for_file
from .pipeline import Pipeline, compose
from .stage import Stage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any


def load_pipeline(reference: str) -> Pipeline[Any]:
    """The Pipeline (or input-less Stage, as a pipeline of it) that `reference` names; ChkptError if it names
    nothing, or something else."""
    target, found, attribute = reference.rpartition(":")
    if not found or not target or not attribute:
        raise ChkptError(f"{reference!r} names no pipeline: write module:attr or path/to/file.py:attr")
    module = _import(target)
    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            names = sorted(name for name, item in vars(module).items() if isinstance(item, (Pipeline, Stage)))
            raise ChkptError(
                f"{target} has no {attribute!r}; its pipelines and stages: {', '.join(names) or 'none'}"
            ) from None
    if isinstance(value, Stage):
        value = compose((), value)  # a stage that takes no inputs is a pipeline of one
    if not isinstance(value, Pipeline):
        raise ChkptError(f"{reference} is a {type(value).__name__}, not a chkpt Pipeline")
    return value


def _import(target: str) -> ModuleType:
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise ChkptError(f"no file {target!r}")
        name = module_name_for_file(path)
        root = os.path.dirname(os.path.realpath(path))
        for _ in range(name.count(".")):
            root = os.path.dirname(root)
    else:
        name, root = target, os.getcwd()
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(name)
    except ChkptError:
        raise
    except Exception as exc:  # the user's module may raise anything while it is imported
        raise ChkptError(f"cannot import {name} ({target}): {type(exc).__name__}: {exc}") from exc
