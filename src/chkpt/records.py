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
    """

    __slots__ = ("bytes", "key", "name", "outcome", "seconds")

    def __init__(self, name: str, key: str, outcome: str, seconds: float, bytes: int | None) -> None:
        self.name = name
        self.key = key
        self.outcome = outcome
        self.seconds = seconds
        self.bytes = bytes

    def _fields(self) -> tuple[str, str, str, float, int | None]:
        return (self.name, self.key, self.outcome, self.seconds, self.bytes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StageRecord):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"StageRecord(name={self.name!r}, key={self.key!r}, outcome={self.outcome!r}, "
            f"seconds={self.seconds!r}, bytes={self.bytes!r})"
        )


class Run(Generic[R]):
    """The result of `pipeline.run(config)`: the value and a record per stage, in the order they finished."""

    __slots__ = ("records", "value")

    def __init__(self, value: R, records: list[StageRecord]) -> None:
        self.value = value
        self.records = records

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
        counts = {
            outcome: sum(r.outcome == outcome for r in self.records) for outcome in ("loaded", "computed", "stored")
        }
        n = len(self.records)
        lines.append(
            f"{n} stage{'' if n == 1 else 's'}: {counts['loaded']} loaded, "
            f"{counts['computed'] + counts['stored']} computed ({counts['stored']} stored)"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Run of {len(self.records)} stages, value={self.value!r:.60}>"
