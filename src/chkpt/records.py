"""What a run reports: a record per stage and the run's value."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Generic, TypeVar

    R = TypeVar("R")
else:
    from ._generic import Generic, R


class StageRecord:
    """What happened to one stage in a run.

    `outcome` is "loaded", "computed" (and not stored) or "stored" (computed, then stored). `seconds` is the
    time to load or to compute; `bytes` the size of the stored or loaded value, None when nothing was written.
    `saved`, for a loaded stage, is how long it took to compute when it was stored (its record's seconds): the
    time this load saved; None otherwise, or when its record does not say.
    """

    __slots__ = ("bytes", "key", "name", "outcome", "saved", "seconds")

    def __init__(
        self, name: str, key: str, outcome: str, seconds: float, bytes: int | None, saved: float | None = None
    ) -> None:
        self.name = name
        self.key = key
        self.outcome = outcome
        self.seconds = seconds
        self.bytes = bytes
        self.saved = saved

    def _fields(self) -> tuple[str, str, str, float, int | None, float | None]:
        return (self.name, self.key, self.outcome, self.seconds, self.bytes, self.saved)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StageRecord):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"StageRecord(name={self.name!r}, key={self.key!r}, outcome={self.outcome!r}, "
            f"seconds={self.seconds!r}, bytes={self.bytes!r}, saved={self.saved!r})"
        )


class Run(Generic[R]):
    """The result of `pipeline.run(config)`: the value, a record per stage in the order they finished, and how
    many stages were `skipped` (not needed, since what uses them was loaded)."""

    __slots__ = ("records", "skipped", "value")

    def __init__(self, value: R, records: list[StageRecord], skipped: int = 0) -> None:
        self.value = value
        self.records = records
        self.skipped = skipped

    @property
    def seconds_saved(self) -> float:
        """How long the loaded stages took to compute when they were stored: the time loading saved (their load
        times are not taken off)."""
        return sum(r.saved or 0.0 for r in self.records if r.outcome == "loaded")

    @property
    def bytes_stored(self) -> int:
        """The bytes this run stored."""
        return sum(r.bytes or 0 for r in self.records if r.outcome == "stored")

    def summary(self) -> str:
        """One line: stages loaded, computed (stored) and skipped, the time loading saved (the loaded stages' own
        compute times, when a tenth of a second or more), the bytes stored."""
        counts = {
            outcome: sum(r.outcome == outcome for r in self.records) for outcome in ("loaded", "computed", "stored")
        }
        n = len(self.records)
        line = (
            f"{n} stage{'' if n == 1 else 's'}: {counts['loaded']} loaded, "
            f"{counts['computed'] + counts['stored']} computed ({counts['stored']} stored)"
        )
        if self.skipped:
            line += f", {self.skipped} skipped"
        if self.seconds_saved >= 0.05:  # (less would print as 0.0 s)
            line += f"; loading saved {_duration(self.seconds_saved)}"
        if counts["stored"]:
            line += f"; stored {size_text(self.bytes_stored)}"
        return line

    def _repr_html_(self) -> str:
        """In a notebook: the records as a table, and the summary."""
        from html import escape

        cells = "".join(
            f"<tr><td>{escape(r.name)}</td><td>{r.outcome}</td><td>{r.seconds:.3f}</td>"
            f"<td>{'-' if r.bytes is None else r.bytes}</td><td><code>{r.key[:12]}</code></td></tr>"
            for r in self.records
        )
        head = "<tr><th>stage</th><th>outcome</th><th>seconds</th><th>bytes</th><th>key</th></tr>"
        return f"<table>{head}{cells}</table><p>{escape(self.summary())}</p>"

    def __str__(self) -> str:
        rows = [("stage", "outcome", "seconds", "bytes", "key")]
        rows += [
            (r.name, r.outcome, f"{r.seconds:.3f}", "-" if r.bytes is None else str(r.bytes), r.key[:12])
            for r in self.records
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = [
            "  ".join(
                cell.ljust(w) if i in (0, 1, 4) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=False))
            ).rstrip()
            for row in rows
        ]
        lines.append(self.summary())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Run of {len(self.records)} stages, value={self.value!r:.60}>"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def size_text(n: int) -> str:
    """A size in bytes for people: 512 B, 3.4 KiB, 1.2 MiB (powers of 1024, as `chkpt gc --max-bytes 50G` reads
    them), so the run's lines and the command line print a size alike."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
