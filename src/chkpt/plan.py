"""Planning: every node's key, and for each one whether a run loads it, computes it or does not need it.

Keys are computed bottom-up in one iterative walk, before any stage runs, so a source file edited during a long
run cannot have its new code recorded against a result of the old code. Nodes with equal keys are one step: a
stage given the same inputs in several places runs once. Decisions are made top-down from the target: a node
that can be loaded is loaded, and then nothing above it is needed.
"""

from __future__ import annotations

from . import codecs
from .collector import paused
from .errors import ChkptError
from .keys import Fingerprints, node_key
from .pipeline import Constant, Pipeline

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection
    from typing import Any

    from .config import Config
    from .stage import Stage
    from .store import CheckpointStore


NO_CHECKPOINT = "no checkpoint"


class Step:
    """One distinct node of the graph and what a run does with it.

    `number` is its place in the plan. `action` is "compute", "load", "reuse" (a value this run already holds)
    or "skip" (not needed, because everything that uses it is loaded). `inputs` are the numbers of the input
    steps, or Constants. `store` says whether a computed value is stored; `format` is the stage's format;
    `watched` what the stage's `watch` returned for its key (None for a stage without one). `anatomy` is what its
    key is made of (keys.Fingerprints.anatomy), for the record of a step that stores and for `explain`; None
    otherwise.
    """

    __slots__ = ("action", "anatomy", "format", "inputs", "key", "number", "reason", "stage", "store", "watched")

    def __init__(
        self,
        number: int,
        stage: Stage[..., Any],
        key: str,
        inputs: tuple[int | Constant, ...],
        action: str,
        reason: str,
        store: bool,
        format: str,
        watched: bytes | None = None,
        anatomy: dict[str, Any] | None = None,
    ) -> None:
        self.number = number
        self.stage = stage
        self.key = key
        self.inputs = inputs
        self.action = action
        self.reason = reason
        self.store = store
        self.format = format
        self.watched = watched
        self.anatomy = anatomy

    def __repr__(self) -> str:
        return f"Step({self.number}, {self.stage.name}, {self.action}: {self.reason})"

    @property
    def may_load(self) -> bool:
        """Whether this step, to compute, may load its checkpoint if another run stores it first: it is computed
        only because there was none (not because loading is off for it, or its checkpoint was damaged)."""
        return self.reason == NO_CHECKPOINT


class Replan(Exception):
    """A checkpoint the plan loads turned out to be unreadable when it was read: the run is planned again, with
    its key marked damaged, from the values it already holds."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class Plan:
    """The steps in an order where every step comes after its inputs; the last one is the target."""

    __slots__ = ("steps",)

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    @property
    def target(self) -> Step:
        return self.steps[-1]


class Reads:
    """Which values a run can let go of: for each step, how many of the steps to compute still read it, counted
    per input (a stage may read one value twice). The target's value is always kept."""

    __slots__ = ("_unread",)

    def __init__(self, plan: Plan) -> None:
        target = plan.target.number
        unread: dict[int, int] = {}
        for step in plan.steps:
            if step.action == "compute":
                for item in step.inputs:
                    if isinstance(item, int) and item != target:
                        unread[item] = unread.get(item, 0) + 1
        self._unread = unread

    def finished(self, step: Step) -> list[int]:
        """Count the reads of computed `step` as done; returns the numbers of its inputs that nothing still to
        run reads."""
        unread = self._unread
        done = []
        for item in step.inputs:
            if isinstance(item, int) and item in unread:
                unread[item] -= 1
                if not unread[item]:
                    del unread[item]
                    done.append(item)
        return done


def make_plan(
    pipeline: Pipeline[Any],
    config: Config,
    store: CheckpointStore | None,
    *,
    damaged: Collection[str] = (),
    available: Collection[str] = (),
    anatomies: bool = False,
) -> Plan:
    """Plan a run of `pipeline`. Keys in `damaged` are not loaded; keys in `available` are reused. Steps to
    compute that store get their key's anatomy, and with `anatomies` every step does."""
    # Planning allocates a few objects per node and runs none of the user's code: the cyclic garbage collector
    # would walk the growing graph again and again and find nothing, so it is paused meanwhile.
    with paused():
        return _make_plan(pipeline, config, store, damaged, available, anatomies)


def _make_plan(
    pipeline: Pipeline[Any],
    config: Config,
    store: CheckpointStore | None,
    damaged: Collection[str],
    available: Collection[str],
    anatomies: bool,
) -> Plan:
    nodes = pipeline.nodes()
    config.check_names({node.stage.name for node in nodes})
    fingerprints = Fingerprints()
    formats = _formats({node.stage for node in nodes}, config)
    step_of_node: dict[int, int] = {}
    step_of_key: dict[str, int] = {}
    keys: list[str] = []
    key_parts: list[bytes] = []  # b"K" + key, as an input's part of its consumer's key
    stages: list[Stage[..., Any]] = []
    inputs: list[tuple[int | Constant, ...]] = []
    for node in nodes:
        node_inputs: list[int | Constant] = []
        parts: list[bytes] = []
        for item in node.inputs:
            if isinstance(item, Pipeline):
                number = step_of_node[id(item)]
                node_inputs.append(number)
                parts.append(key_parts[number])
            else:
                node_inputs.append(item)
                parts.append(b"C" + item.digest)
        key = node_key(fingerprints.stage_digest(node.stage, formats[node.stage]), parts)
        index = step_of_key.get(key)
        if index is None:
            index = step_of_key[key] = len(keys)
            keys.append(key)
            key_parts.append(b"K" + key.encode())
            stages.append(node.stage)
            inputs.append(tuple(node_inputs))
        step_of_node[id(node)] = index

    target = step_of_node[id(pipeline)]
    needed = [False] * len(keys)
    needed[target] = True
    decisions: list[tuple[str, str]] = [("skip", "not needed: everything that uses it is loaded")] * len(keys)
    for index in range(len(keys) - 1, -1, -1):
        if not needed[index]:
            continue
        stage = stages[index]
        action, reason = _decide(stage.name, keys[index], formats[stage], config, store, damaged, available)
        decisions[index] = (action, reason)
        if action == "compute":
            for source in inputs[index]:
                if isinstance(source, int):
                    needed[source] = True
    made: dict[int, dict[str, Any]] = {}

    def anatomy(stage: Stage[..., Any]) -> dict[str, Any]:
        found = made.get(id(stage))
        if found is None:
            found = made[id(stage)] = fingerprints.anatomy(stage, formats[stage])
        return found

    steps = []
    for i in range(len(keys)):
        stage = stages[i]
        stores = config.may_store(stage.name)
        wanted = anatomies or (stores and decisions[i][0] == "compute")
        steps.append(
            Step(
                i,
                stage,
                keys[i],
                inputs[i],
                *decisions[i],
                stores,
                formats[stage],
                fingerprints.watched.get(id(stage)),
                anatomy(stage) if wanted else None,
            )
        )
    return Plan(steps)


def _formats(stages: set[Stage[..., Any]], config: Config) -> dict[Stage[..., Any], str]:
    """Each stage's format, checked now: an unknown one or one whose package is missing fails before any stage
    runs, naming the stage."""
    formats = {}
    for stage in stages:
        name = stage.format or config.format
        if name != codecs.AUTO:
            try:
                codecs.get(name)
            except ChkptError as exc:
                raise type(exc)(f"stage '{stage.name}': {exc}") from None
        formats[stage] = name
    return formats


def _decide(
    name: str,
    key: str,
    format_name: str,
    config: Config,
    store: CheckpointStore | None,
    damaged: Collection[str],
    available: Collection[str],
) -> tuple[str, str]:
    if key in available:
        return "reuse", "computed earlier in this run"
    if not config.may_load(name):
        return "compute", "loading is off" if config.load is False else "not in the load list"
    if key in damaged:
        return "compute", "checkpoint damaged"
    if store is not None and store.exists(name, key, format_name):
        return "load", "checkpoint found"
    return "compute", NO_CHECKPOINT
