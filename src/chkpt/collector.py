"""Pausing Python's cycle collector while code builds many objects that make no cycles: decoding a big JSON value,
planning a big graph, listing a big store. Left running, the collector starts every few hundred new containers
and walks all the young ones each time, which costs more than the building itself.

A class rather than `contextlib.contextmanager`, which would import contextlib (and collections) at
`import chkpt`, which has a time budget.
"""

from __future__ import annotations

import gc


class paused:
    """`with paused(): ...` runs the block with the collector off, and turns it back on after only if it was on
    before (a caller that turned it off itself keeps it off)."""

    __slots__ = ("_was_on",)

    def __enter__(self) -> None:
        self._was_on = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if self._was_on:
            gc.enable()
