"""A run's progress on stderr: stages done of those to do, the stage now running, the time so far.

Drawn by tqdm when it is installed, else as one line that rewrites itself (`\\r`), at most ten times a second
so that a pipeline of 100,000 small stages is not slowed by its own progress. `Config(progress=None)`, the
default, draws it only when stderr is a terminal and the CI variable is not set, so logs and CI output never get
carriage returns. The per-stage lines (`verbose`) are written above it, and it is cleared when the run ends.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

_INTERVAL = 0.1  # seconds between redraws of the plain line


def wanted(setting: bool | None, stream: TextIO) -> bool:
    """Whether to draw: as `Config(progress=...)` says, or, for None, when `stream` is a terminal outside CI."""
    if setting is not None:
        return setting
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("CI")


class Progress:
    """Tell it the number of stages to do, when one starts and when one is done; it draws."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self.current = ""
        self.started = time.perf_counter()
        self._drawn = 0.0
        self._width = 0
        self._bar: Any = _tqdm(self.stream)

    def plan(self, total: int) -> None:
        """The stages this run loads or computes (again after a replan: what is left, plus what is done)."""
        self.total = self.done + total
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()
        else:
            self._draw(force=True)

    def start(self, stage: str) -> None:
        self.current = stage
        if self._bar is not None:
            self._bar.set_postfix_str(stage, refresh=False)
        self._draw()

    def finish(self) -> None:
        """One more stage done."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        self._draw(force=self.done == self.total)

    def write(self, line: str) -> None:
        """A line above the bar (a stage's log line)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
            return
        self._clear()
        print(line, file=self.stream)
        self._draw(force=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            self._clear()

    def _draw(self, force: bool = False) -> None:
        if self._bar is not None:
            return
        now = time.perf_counter()
        if not force and now - self._drawn < _INTERVAL:
            return
        self._drawn = now
        elapsed = now - self.started
        text = f"chkpt: {self.done}/{self.total} stages  {elapsed:.1f} s  {self.current}"
        padding = " " * max(self._width - len(text), 0)  # over what a longer line left
        self.stream.write(f"\r{text}{padding}")
        self.stream.flush()
        self._width = len(text)

    def _clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _tqdm(stream: TextIO) -> Any:
    """A tqdm bar when tqdm is installed (an optional extra), else None."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=0, unit="stage", file=stream, leave=False, dynamic_ncols=True, desc="chkpt")
