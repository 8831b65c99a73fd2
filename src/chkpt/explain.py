"""Why a run would do what it does, before it does it: `pipeline.explain(config)` and `chkpt explain`.

A dry run: the pipeline is planned as `pipeline.run(config)` would plan it, and nothing runs or is stored. Each
step gets its action and the reason for it. When a stage computes because no checkpoint has its key, the reason
says what changed, by comparing what the key is made of now (keys.Fingerprints.anatomy) with what the newest
record of that stage says it was made of: the stage's own code, a helper it calls, a constant it reads, an
installed package's version, a bound parameter, its version, its format, a file it reads, or one of its inputs.
"""

from __future__ import annotations

from .compute import input_keys
from .config import Config, given
from .errors import ChkptError
from .plan import NO_CHECKPOINT, make_plan
from .store import Damaged

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from .catalog import Store
    from .pipeline import Pipeline
    from .plan import Step
    from .store import CheckpointStore


class Decision:
    """What a run would do with one step: `stage` (its name), `key`, `action` ("load", "compute", "skip" or
    "reuse") and `reason`, a sentence."""

    __slots__ = ("action", "key", "reason", "stage")

    def __init__(self, stage: str, key: str, action: str, reason: str) -> None:
        self.stage = stage
        self.key = key
        self.action = action
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.stage, self.key, self.action, self.reason) == (other.stage, other.key, other.action, other.reason)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Decision({self.stage!r}, {self.key[:12]!r}, {self.action!r}, {self.reason!r})"


class Explanation:
    """The decisions of a dry run, in the order a run takes the steps (each after its inputs; the last is the
    pipeline's target). `str()` is a table, as `chkpt explain` prints it."""

    __slots__ = ("decisions",)

    def __init__(self, decisions: list[Decision]) -> None:
        self.decisions = decisions

    def __iter__(self) -> Iterator[Decision]:
        return iter(self.decisions)

    def __len__(self) -> int:
        return len(self.decisions)

    def __getitem__(self, stage: str) -> Decision:
        """The decision for a stage, by name (the last one when the stage is used with several inputs)."""
        found = [decision for decision in self.decisions if decision.stage == stage]
        if not found:
            raise KeyError(stage)
        return found[-1]

    def __str__(self) -> str:
        rows = [("stage", "key", "action", "why")]
        rows += [(d.stage, d.key[:12], d.action, d.reason) for d in self.decisions]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(
            "  ".join([*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)), row[3]]).rstrip()
            for row in rows
        )

    def __repr__(self) -> str:
        return f"<Explanation of {len(self.decisions)} steps>"


def explain(pipeline: Pipeline[Any], config: Config | None = None) -> Explanation:
    """The decisions a run of `pipeline` with `config` would make, and why; nothing runs and nothing is
    stored."""
    from .run import _open_store  # the store a run would use, opened the same way

    config = given(config, "pipeline.explain(config)")
    store = _open_store(config) if config.load is not False else None
    plan = make_plan(pipeline, config, store, anatomies=True)
    steps = plan.steps
    newest = _Newest(config)
    decisions = []
    for step in steps:
        reason = step.reason
        if step.action == "compute":
            reason = _why_new(step, steps, newest, store) if step.reason == NO_CHECKPOINT else step.reason
        elif step.action == "skip":
            reason = "not needed: what uses it is loaded"
        elif step.action == "load" and store is not None:
            reason = _found(store, step)
        decisions.append(Decision(step.stage.name, step.key, step.action, reason))
    return Explanation(decisions)


class _Newest:
    """The newest records of each stage in the store (up to CANDIDATES), read when first asked for."""

    CANDIDATES = 50

    def __init__(self, config: Config) -> None:
        self._config = config
        self._store: Store | None = None
        self._records: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def records(self, stage: str) -> list[tuple[str, dict[str, Any]]]:
        """The key and record of the stage's newest checkpoints (those that can be read), newest first."""
        import itertools

        from .catalog import newest_records, store_for

        if stage not in self._records:
            if self._store is None:
                self._store = store_for(self._config)
            self._records[stage] = list(itertools.islice(newest_records(self._store, stage), self.CANDIDATES))
        return self._records[stage]


def _found(store: CheckpointStore, step: Step) -> str:
    """Why a step loads: its checkpoint is there, stored by a run, or by `accept` from an older key."""
    accepted = _accepted_from(store, step)
    return f"accepted edit (stored from {accepted[:12]})" if isinstance(accepted, str) else step.reason


def _why_new(step: Step, steps: list[Step], newest: _Newest, store: CheckpointStore | None) -> str:
    """Why no checkpoint has this step's key: what differs from the stage's closest checkpoint, the newest of
    those with the fewest differences (in a sweep, the one of the same binding rather than the newest of all)."""
    candidates = newest.records(step.stage.name)
    if not candidates:
        return "no checkpoint of this stage yet"
    now = step.anatomy
    closest: tuple[str, list[str]] | None = None
    for key, record in candidates:
        before = record.get("why")
        if not isinstance(before, dict) or now is None:
            continue
        reasons = _code_changes(step.stage.name, before, now)
        reasons += _input_changes(step, steps, record.get("inputs"), store)
        if closest is None or len(reasons) < len(closest[1]):
            closest = (key, reasons)
    if closest is None:
        newest_key = candidates[0][0]
        return f"no checkpoint with this key; the newest ({newest_key[:12]}) has no record of what its key was made of"
    key, reasons = closest
    if not reasons:
        return f"no checkpoint with this key; {key[:12]} was made of the same code, parameters and inputs"
    return "; ".join(reasons)


def _code_changes(stage: str, before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    reasons = []
    for field, what in (("module", "module"), ("function", "function"), ("version", "version"), ("format", "format")):
        if before.get(field) != now.get(field):
            reasons.append(f"{what} changed ({before.get(field)} -> {now.get(field)})")
    old_code, new_code = before.get("code") or {}, now.get("code") or {}
    for label in sorted(set(old_code) | set(new_code)):
        if old_code.get(label) == new_code.get(label):
            continue
        kind, _, name = label.partition(" ")
        if label not in old_code:
            reasons.append(f"now uses {_noun(kind)} {_short_name(name)}")
        elif label not in new_code:
            reasons.append(f"no longer uses {_noun(kind)} {_short_name(name)}")
        elif kind == "function" and name == now.get("function"):
            reasons.append(f"code of {stage} changed")
        else:
            reasons.append(f"{_noun(kind)} {_short_name(name)} changed")
    old_params, new_params = before.get("params") or {}, now.get("params") or {}
    for name in sorted(set(old_params) | set(new_params)):
        old, new = old_params.get(name), new_params.get(name)
        if old is None and new is not None:
            reasons.append(f"param {name} is now bound ({new[1]})")
        elif new is None and old is not None:
            reasons.append(f"param {name} is no longer bound (was {old[1]})")
        elif old is not None and new is not None and old[0] != new[0]:
            reasons.append(f"param {name} changed ({old[1]} -> {new[1]})")
    if before.get("watch") != now.get("watch"):
        reasons.append("the file it reads changed")
    return reasons


def _input_changes(step: Step, steps: list[Step], before: object, store: CheckpointStore | None) -> list[str]:
    """Which inputs' keys differ from those the record lists; not one whose checkpoint was accepted from the
    record's (`accept`: the same data under a new key)."""
    now = input_keys(step, steps)
    if not isinstance(before, list) or len(before) != len(now):
        return ["its inputs changed"] if before != now else []
    reasons = []
    for position, (old, new) in enumerate(zip(before, now, strict=True)):
        if old == new:
            continue
        source = step.inputs[position]
        if not isinstance(source, int):
            reasons.append(f"input {position + 1} changed")
        elif _accepted_from(store, steps[source]) != old:
            reasons.append(f"input {steps[source].stage.name} changed")
    return reasons


def _accepted_from(store: CheckpointStore | None, step: Step) -> object:
    """The key a step's checkpoint was accepted from, if it has one stored by `accept`."""
    if store is None or step.action not in ("load", "skip"):
        return None
    try:
        return store.read_record(step.stage.name, step.key, step.format).get("accepted_from")
    except (OSError, ChkptError, Damaged):
        return None


def _noun(kind: str) -> str:
    return {
        "function": "helper",
        "class": "class",
        "value": "constant",
        "package": "package",
        "module": "module",
        "code": "the code named",
    }.get(kind, "the object")


def _short_name(name: str) -> str:
    """A label's name without its module (`pipeline.THRESHOLD` -> `THRESHOLD`), but for a closure's."""
    return name.rpartition(".")[2] if ":" not in name else name
