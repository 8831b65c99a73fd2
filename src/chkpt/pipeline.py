"""`Pipeline`: an immutable graph node, a stage and the inputs it is called with.

Composing never runs anything. It checks at once that the stage can take the inputs it is given, so a pipeline
that was built can be run. Nodes share their inputs, so a pipeline is a graph rather than a tree, and every walk
over it here is iterative: a chain of 100,000 stages is as easy to handle as a chain of ten.
"""

from __future__ import annotations

from . import canonical
from .errors import PipelineError
from .shown import short_repr
from .stage import Stage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Generic, TypeVar

    from .accept import Accepted
    from .config import Config
    from .explain import Explanation
    from .records import Run

    R = TypeVar("R")
    R2 = TypeVar("R2")
else:
    from ._generic import R2, Generic, R


class Constant:
    """A value given directly as an input, such as the 42 in `(load, 42) >> scale`.

    Its canonical digest stands for it in keys. It is computed when the pipeline is built, so a value that has
    none fails at once; a mutable value (a list, a dict) is digested again whenever a key is made, so a change
    to it after building still changes the key.
    """

    __slots__ = ("_digest", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        digest = canonical.digest(value)
        self._digest = digest if canonical.is_simple(value) else None

    @property
    def digest(self) -> bytes:
        return self._digest or canonical.digest(self.value)

    def __repr__(self) -> str:
        return f"Constant({_short_repr(self.value)})"


class Pipeline(Generic[R]):
    """A stage together with its inputs: the result of `>>`, `<<` or `(inputs) >> stage`.

    `pipeline()` or `pipeline(config)` runs it and returns the last stage's value; `pipeline.run(config)`
    returns a `Run` with the value and a record of every stage. Pipelines are immutable and compare equal when
    they are built from equal stages and inputs.
    """

    __slots__ = ("_hash", "inputs", "stage")

    stage: Stage[..., R]
    inputs: tuple[Pipeline[Any] | Constant, ...]
    _hash: int

    def __init__(self, stage: Stage[..., R], inputs: tuple[Pipeline[Any] | Constant, ...]) -> None:
        self.stage = stage
        self.inputs = inputs
        self._hash = hash((stage, tuple(node._hash if isinstance(node, Pipeline) else node.digest for node in inputs)))

    def __call__(self, config: Config | None = None) -> R:
        """Run the pipeline and return the last stage's value."""
        return self.run(config).value

    def run(self, config: Config | None = None) -> Run[R]:
        """Run the pipeline: load what may be loaded, compute the rest, store what may be stored."""
        # Running is the one thing a pipeline asks of the layers above it; importing them here keeps composing
        # free of the planner and the store.
        from .run import run

        return run(self, config)

    def explain(self, config: Config | None = None) -> Explanation:
        """What a run with `config` would do with each step, and why (a dry run: nothing runs or is stored):
        for a stage that would compute, what changed since its newest checkpoint."""
        from .explain import explain

        return explain(self, config)

    def accept(self, stage: str | Stage[..., Any], config: Config | None = None) -> list[Accepted]:
        """Declare an edit of `stage` harmless: its checkpoint made from its current inputs, and those downstream
        that only its key made new, are stored again under their new keys, without computing anything (see
        accept.py). `config` (default: load=True) names the store. Returns what was stored, in run order."""
        from .accept import accept

        return accept(self, stage, config)

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart (GitHub, GitLab and Jupyter draw it): each distinct node once, with
        its bound parameters, and constant inputs as nodes of their own."""
        from .graph import to_mermaid  # drawing, like running, lives above composing

        return to_mermaid(self)

    def to_dot(self) -> str:
        """The graph in Graphviz's dot language, drawn as `to_mermaid` draws it."""
        from .graph import to_dot

        return to_dot(self)

    def _repr_markdown_(self) -> str:
        """In a notebook: the graph, as a Mermaid block."""
        return f"```mermaid\n{self.to_mermaid()}```\n"

    def _repr_svg_(self) -> str | None:
        """In a notebook: the graph drawn by Graphviz, when it is installed (else None, and the notebook shows
        the Markdown)."""
        from .graph import svg_if_available

        return svg_if_available(self)

    def nodes(self) -> list[Pipeline[Any]]:
        """Every node of the graph once, each after all of its inputs (the last one is this pipeline)."""
        return list(_postorder(self))

    def stages(self) -> list[Stage[..., Any]]:
        """The distinct stages of the graph, in the order of their first node in `nodes()`."""
        seen: dict[Stage[..., Any], None] = {}
        for node in _postorder(self):
            seen.setdefault(node.stage)
        return list(seen)

    def __rshift__(self, other: Stage[..., R2]) -> Pipeline[R2]:
        return compose((self,), other)

    def __rrshift__(self, other: object) -> Pipeline[Any]:
        raise PipelineError(
            f"the pipeline ending in '{self.stage.name}' already has its inputs; "
            f"build from the leaves down: (inputs) >> {self.stage.name} >> next"
        )

    def __lshift__(self, other: object) -> Pipeline[Any]:
        raise PipelineError(
            f"the pipeline ending in '{self.stage.name}' already has its inputs, so `<<` cannot add more; "
            f"build from the leaves down, e.g. {self.stage.name} << (upstream << source)"
        )

    def __rlshift__(self, other: object) -> Pipeline[Any]:
        raise PipelineError(
            f"cannot write `{type(other).__name__} << pipeline`: the left side of << must be a Stage "
            f"that takes the output of '{self.stage.name}'"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pipeline):
            return NotImplemented
        pending: list[tuple[Pipeline[Any], Pipeline[Any]]] = [(self, other)]
        compared: set[tuple[int, int]] = set()
        while pending:
            a, b = pending.pop()
            if a is b or (id(a), id(b)) in compared:
                continue
            compared.add((id(a), id(b)))
            if a._hash != b._hash or a.stage != b.stage or len(a.inputs) != len(b.inputs):
                return False
            for x, y in zip(a.inputs, b.inputs, strict=False):
                if isinstance(x, Pipeline) and isinstance(y, Pipeline):
                    pending.append((x, y))
                elif not (isinstance(x, Constant) and isinstance(y, Constant) and x.digest == y.digest):
                    return False
        return True

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        names = ", ".join(_describe(node) for node in self.inputs)
        return f"Pipeline({self.stage.name} << ({names}))"


def _postorder(target: Pipeline[Any]) -> Iterator[Pipeline[Any]]:
    seen: set[int] = set()
    stack: list[tuple[Pipeline[Any], bool]] = [(target, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            yield node
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((item, False) for item in reversed(node.inputs) if isinstance(item, Pipeline))


def compose(inputs: object, target: object) -> Pipeline[Any]:
    """The node `inputs >> target`, after checking that `target` is a Stage that can take these inputs."""
    if isinstance(target, Pipeline):
        raise PipelineError(
            f"the pipeline ending in '{target.stage.name}' already has its inputs; only a Stage can be added after `>>`"
        )
    if not isinstance(target, Stage):
        raise PipelineError(f"cannot add {_kind(target)} to a pipeline: {_hint(target)}")
    if not isinstance(inputs, tuple) and callable(inputs):
        raise PipelineError(f"input of stage '{target.name}' is {_kind(inputs)}: {_hint(inputs)}")
    if not isinstance(inputs, tuple):
        raise PipelineError(
            f"inputs of stage '{target.name}' must be a Stage, a Pipeline or a tuple of them, got "
            f"{_kind(inputs)}; a constant input goes in a tuple: ({_short_repr(inputs)},) >> {target.name}"
        )
    nodes = tuple(item if isinstance(item, Pipeline) else _input_node(item, target) for item in inputs)
    missing = target.missing_keywords()
    if missing:
        raise PipelineError(
            f"stage '{target.name}' has required keyword-only parameters {list(missing)} that no input can fill; "
            f"bind them: {target.name}.bind({missing[0]}=...)"
        )
    least, most = target.input_range()
    if len(nodes) < least or (most is not None and len(nodes) > most):
        wanted = f"{least}" if least == most else f"{least} to {'any number' if most is None else most}"
        given = ", ".join(_describe(node) for node in nodes) or "no inputs"
        raise PipelineError(
            f"stage '{target.name}' takes {wanted} input{'s' if most != 1 else ''} "
            f"({target.describe_parameters()}) but is given {len(nodes)}: {given}"
        )
    return Pipeline(target, nodes)


def _input_node(item: object, consumer: Stage[..., Any]) -> Pipeline[Any] | Constant:
    if isinstance(item, Pipeline):
        return item
    if isinstance(item, Stage):
        return compose((), item)
    if callable(item):
        raise PipelineError(f"input of stage '{consumer.name}' is {_kind(item)}: {_hint(item)}")
    try:
        return Constant(item)
    except canonical.Unhashable as exc:
        raise PipelineError(
            f"constant input {_short_repr(item)} of stage '{consumer.name}' cannot be part of a key ({exc}); "
            "produce it in a stage of its own instead"
        ) from None


def _kind(value: object) -> str:
    if isinstance(value, Stage):
        return f"stage '{value.name}'"
    if isinstance(value, type):
        return f"the class '{value.__name__}'"
    name = getattr(value, "__name__", None)
    if callable(value) and name:
        return f"the plain function '{name}'"
    return f"a value of type {type(value).__name__} ({_short_repr(value)})"


def _hint(value: object) -> str:
    if isinstance(value, type):
        return "a class is not a stage; wrap a function that builds what you need with @chkpt.Stage.wrap()"
    if callable(value) and not isinstance(value, Stage):
        return "decorate it with @chkpt.Stage.wrap() to use it in a pipeline"
    return "only a Stage can follow `>>`"


def _describe(node: Pipeline[Any] | Constant) -> str:
    return node.stage.name if isinstance(node, Pipeline) else _short_repr(node.value)


def _short_repr(value: object) -> str:
    return short_repr(value, 40)
