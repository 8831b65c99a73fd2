"""Run-time stand-ins for `typing.Generic` and type variables.

Importing `typing` costs about 7 ms, a third of chkpt's import budget, and chkpt needs it only for type checkers.
Modules import the real names under `TYPE_CHECKING` and these otherwise: a generic class is then a plain class at
run time that can still be subscripted, so `chkpt.Stage[..., int]` works in annotations that are evaluated.
"""

from __future__ import annotations


class Generic:
    """Base of chkpt's generic classes at run time; subscripting the class returns the class."""

    __slots__ = ()

    def __class_getitem__(cls, parameters: object) -> type:
        return cls


P = P2 = R = R2 = None
