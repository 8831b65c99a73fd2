"""Accepting an edit: `pipeline.accept(stage)` and `chkpt accept`. The user says an edit of a stage changed
nothing its results depend on (a refactor, a log line, a comment the fingerprint still sees), so its checkpoints
are valid under its new key, and so are those downstream that only its key made new.

For each step of the stage whose key has no checkpoint, the newest checkpoint of that stage that was made by the
same function of the same module from the same inputs (same input keys), with the same parameters, version, format
and watched file, so that only code differs, is loaded, verified, and stored again under the new key, its record
saying `accepted_from` the old key. Then, in run order, each step downstream that has no checkpoint takes the newest
one of its stage whose record matches it in everything (code, helpers, constants, parameters, version, format) but
input keys that were just accepted: stored again likewise, so that acceptance runs down the pipeline as far as
nothing else changed. Nothing is computed. A stage whose inputs changed too cannot be accepted (its old results were
made from other data): accept the upstream edit first.
"""

from __future__ import annotations

from . import codecs
from .compute import input_keys, record_fields
from .config import Config, given
from .errors import ChkptError, ConfigError, StoreError
from .plan import make_plan
from .stage import Stage
from .store import Damaged

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .catalog import Store
    from .pipeline import Pipeline
    from .plan import Step
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

    config = given(config, "pipeline.accept(stage, config)", Config(load=True))
    if not isinstance(stage, (str, Stage)):
        raise ConfigError(f"accept(stage) takes a stage's name or the Stage, not a {type(stage).__name__}")
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
    # every step of the stage has its old checkpoint before any is stored, so a refusal stores nothing
    chosen = [(step, _edited_from(catalog, step, steps, config)) for step in edited]
    for step, candidates in chosen:
        old = _store_again(store, step, steps, candidates)
        done.append(old)
        renamed[old.old] = step.key
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

        candidates = _matching(catalog, step, matches)
        if candidates:
            try:
                accepted = _store_again(store, step, steps, candidates)
            except ChkptError:
                continue  # its old checkpoints are damaged: this stage computes when the pipeline runs
            done.append(accepted)
            renamed[accepted.old] = step.key
    return done


_BUT_CODE = ("module", "function", "version", "format", "params", "watch")


def _edited_from(catalog: Store, step: Step, steps: list[Step], config: Config) -> list[tuple[str, dict[str, Any]]]:
    """The checkpoints, newest first, that an edit of the step's stage may take: made by the same function of
    the same module from the same inputs, with the same parameters, version, format and watched file: all that
    differs is code. A ChkptError saying what differs if there are none."""
    from .catalog import newest_records

    name = step.stage.name
    inputs = input_keys(step, steps)
    anatomy = step.anatomy or {}
    records = list(newest_records(catalog, name))
    same_inputs = [(key, record) for key, record in records if record.get("inputs") == inputs]
    found = [
        (key, record)
        for key, record in same_inputs
        if isinstance(record.get("why"), dict) and all(record["why"].get(p) == anatomy.get(p) for p in _BUT_CODE)
    ]
    if found:
        return found
    if not records:
        raise ChkptError(
            f"accept({name!r}): stage '{name}' has no checkpoint in {config.directory()}, so there is nothing to "
            "accept (is that the store its runs used? Config(dir=...) or --dir names another)"
        )
    whys = [record.get("why") for _, record in same_inputs]  # the closest says what differs
    if not same_inputs:
        raise ChkptError(
            f"accept({name!r}): no checkpoint of stage '{name}' was made from its current inputs, so there is "
            "nothing to accept (its inputs changed too: `chkpt explain` says which; accept that edit first)"
        )
    differ = min(
        ([p for p in _BUT_CODE if not isinstance(why, dict) or why.get(p) != anatomy.get(p)] for why in whys),
        key=len,
    )
    raise ChkptError(
        f"accept({name!r}): the checkpoints of stage '{name}' made from its current inputs differ in more than "
        f"its code ({', '.join(differ) or 'what made them is not recorded'}); accept takes only code edits: run "
        "the pipeline to recompute it"
    )


def _matching(catalog: Store, step: Step, wanted: Any) -> list[tuple[str, dict[str, Any]]]:
    """The key and record of each checkpoint of the step's stage for which `wanted(why, inputs)` holds, newest
    first."""
    from .catalog import newest_records

    return [(k, r) for k, r in newest_records(catalog, step.stage.name) if wanted(r.get("why"), r.get("inputs"))]


def _store_again(
    store: CheckpointStore, step: Step, steps: list[Step], candidates: list[tuple[str, dict[str, Any]]]
) -> Accepted:
    """Load the newest of the old checkpoints that is whole (verified) and store its value under the step's key,
    holding that key's lock. A ChkptError naming the stage if every one is damaged."""
    name = step.stage.name
    problems = []
    with store.lock(name, step.key):
        for old_key, record in candidates:
            try:
                value, _, seconds = store.read(name, old_key, step.format)
            except (OSError, Damaged, StoreError) as exc:
                problems.append(f"{old_key[:12]}: {exc}")
                continue
            codec_name = record.get("codec") if step.format == codecs.AUTO else step.format
            codec = codecs.get(str(codec_name))
            fields = {**record_fields(step, steps), "seconds": seconds or 0.0, "accepted_from": old_key}
            store.write(name, step.key, step.format, codec, value, fields)
            return Accepted(name, old_key, step.key)
    raise ChkptError(
        f"accept({name!r}): the checkpoints of stage '{name}' it could take cannot be read ({'; '.join(problems)}): "
        "run the pipeline to recompute it"
    )
