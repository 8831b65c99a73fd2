"""Accepting an edit: `pipeline.accept(stage)` and `chkpt accept`. The user says an edit of a stage changed
nothing its results depend on (a refactor, a log line, a comment the fingerprint still sees), so its checkpoints
are valid under its new key, and so are those downstream that only its key made new.

For each step of the stage whose key has no checkpoint, the newest checkpoint of that stage that was made from
the same inputs (same input keys) is loaded, verified, and stored again under the new key, its record saying
`accepted_from` the old key. Then, in run order, each step downstream that has no checkpoint takes the newest one
of its stage whose record matches it in everything (code, helpers, constants, parameters, version, format) but
input keys that were just accepted: stored again likewise, so that acceptance runs down the pipeline as far as
nothing else changed. Nothing is computed. A stage whose inputs changed too cannot be accepted (its old results
were made from other data): accept the upstream edit first.
"""

from __future__ import annotations

from . import codecs
from .compute import input_keys, record_fields
from .config import Config
from .errors import ChkptError, ConfigError
from .plan import make_plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .catalog import Store
    from .pipeline import Pipeline
    from .plan import Step
    from .stage import Stage
    from .store import CheckpointStore


class Accepted:
    """One checkpoint stored again under a new key by `accept`: its `stage` (name), the `old` key and the `new`."""

    __slots__ = ("new", "old", "stage")

    def __init__(self, stage: str, old: str, new: str) -> None:
        self.stage = stage
        self.old = old
        self.new = new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Accepted):
            return NotImplemented
        return (self.stage, self.old, self.new) == (other.stage, other.old, other.new)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Accepted({self.stage!r}, {self.old[:12]!r} -> {self.new[:12]!r})"


def accept(pipeline: Pipeline[Any], stage: str | Stage[..., Any], config: Config | None = None) -> list[Accepted]:
    """Store the checkpoints of `stage`, and of the stages downstream that only its key changed, under their new
    keys (see the module's doc); returns what was stored, in run order. A ConfigError if the pipeline has no such
    stage; a ChkptError, before anything is stored, if the stage has no checkpoint made from its current inputs."""
    from .catalog import store_for
    from .run import _open_store

    config = config or Config(load=True)
    name = stage if isinstance(stage, str) else stage.name
    store = _open_store(config)
    plan = make_plan(pipeline, config, store, anatomies=True)
    steps = plan.steps
    names = sorted({step.stage.name for step in steps})
    if name not in names:
        raise ConfigError(f"accept({name!r}): the pipeline has no such stage; its stages are {names}")
    catalog = store_for(config)
    renamed: dict[str, str] = {}  # old key -> new key, of what was accepted
    done: list[Accepted] = []
    edited = [step for step in steps if step.stage.name == name and not store.exists(name, step.key, step.format)]
    for step in edited:
        old = _newest(catalog, step, lambda why, inputs, step=step: inputs == input_keys(step, steps))
        if old is None:
            raise ChkptError(
                f"accept({name!r}): no checkpoint of stage '{name}' was made from its current inputs, so there is "
                "nothing to accept (its inputs changed too: `chkpt explain` says which; accept that edit first)"
            )
        done.append(_store_again(store, step, steps, old))
        renamed[old[0]] = step.key
    if not done:
        return done
    for step in steps:
        if step.stage.name == name or store.exists(step.stage.name, step.key, step.format):
            continue
        current = input_keys(step, steps)
        if not any(key in renamed.values() for key in current):
            continue

        def matches(why: object, inputs: object, step: Step = step, current: list[str] = current) -> bool:
            return (
                why == step.anatomy
                and isinstance(inputs, list)
                and [renamed.get(key, key) for key in inputs] == current
                and inputs != current
            )

        old = _newest(catalog, step, matches)
        if old is not None:
            done.append(_store_again(store, step, steps, old))
            renamed[old[0]] = step.key
    return done


def _newest(catalog: Store, step: Step, wanted: Any) -> tuple[str, dict[str, Any]] | None:
    """The key and record of the newest checkpoint of the step's stage for which `wanted(why, inputs)` holds."""
    from .catalog import newest_records

    for key, record in newest_records(catalog, step.stage.name):
        if wanted(record.get("why"), record.get("inputs")):
            return key, record
    return None


def _store_again(store: CheckpointStore, step: Step, steps: list[Step], old: tuple[str, dict[str, Any]]) -> Accepted:
    """Load the old checkpoint (verified) and store its value under the step's key, holding that key's lock."""
    old_key, record = old
    name = step.stage.name
    with store.lock(name, step.key):
        value, _, seconds = store.read(name, old_key, step.format)
        codec_name = record.get("codec") if step.format == codecs.AUTO else step.format
        codec = codecs.get(str(codec_name))
        fields = {**record_fields(step, steps), "seconds": seconds or 0.0, "accepted_from": old_key}
        store.write(name, step.key, step.format, codec, value, fields)
    return Accepted(name, old_key, step.key)
