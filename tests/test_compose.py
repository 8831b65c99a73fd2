"""The composition layer: Stage, the operators that build a Pipeline, arity checks, structural equality, and Config.

Everything here is checked when a pipeline is built or a Config is made, before any stage runs; the runs in this
file only confirm that what was built computes what plain Python would.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chkpt

# Every module-level stage records its calls here, so a test can show that nothing ran.
CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@chkpt.Stage.wrap()
def source() -> int:
    CALLS.append("source")
    return 2


@chkpt.Stage.wrap()
def other_source() -> int:
    CALLS.append("other_source")
    return 3


@chkpt.Stage.wrap()
def double(x: int) -> int:
    CALLS.append("double")
    return 2 * x


@chkpt.Stage.wrap()
def add(a: int, b: int) -> int:
    CALLS.append("add")
    return a + b


@chkpt.Stage.wrap()
def scaled(x: int, *, factor: int) -> int:
    CALLS.append("scaled")
    return x * factor


@chkpt.Stage.wrap()
def tagged(x: int, *, tag: object) -> list[object]:
    CALLS.append("tagged")
    return [x, repr(tag)]


@chkpt.Stage.wrap()
def seed(*, value: int) -> int:
    CALLS.append("seed")
    return value


@chkpt.Stage.wrap()
def inc(x: int) -> int:
    return x + 1


@chkpt.Stage.wrap()
def three(a: object, b: object, c: object) -> list[object]:
    CALLS.append("three")
    return [a, b, c]


@chkpt.Stage.wrap()
def with_defaults(a: object, b: object = 10, c: object = 100) -> list[object]:
    CALLS.append("with_defaults")
    return [a, b, c]


@chkpt.Stage.wrap()
def all_defaults(a: int = 1, b: int = 2) -> list[int]:
    CALLS.append("all_defaults")
    return [a, b]


@chkpt.Stage.wrap()
def gather(*xs: object) -> list[object]:
    CALLS.append("gather")
    return list(xs)


@chkpt.Stage.wrap()
def head_rest(first: object, *rest: object) -> list[object]:
    CALLS.append("head_rest")
    return [first, list(rest)]


@chkpt.Stage.wrap()
def joined(*parts: object, sep: str) -> str:
    CALLS.append("joined")
    return sep.join(str(p) for p in parts)


@chkpt.Stage.wrap()
def posonly(a: object, b: object, /, c: object) -> list[object]:
    CALLS.append("posonly")
    return [a, b, c]


@chkpt.Stage.wrap()
def kw_defaults(x: int, *, scale: int = 2, shift: int = 0) -> int:
    CALLS.append("kw_defaults")
    return x * scale + shift


@chkpt.Stage.wrap()
def total(xs: list[int]) -> int:
    CALLS.append("total")
    return sum(xs)


def plain_double(x: int) -> int:
    CALLS.append("plain_double")
    return 2 * x


def _logged(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


@chkpt.Stage.wrap()
@_logged
def wrapped_one(x: int) -> int:
    CALLS.append("wrapped_one")
    return x


class Multiply:
    """A callable object: its state is part of what it computes."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> int:
        CALLS.append("multiply")
        return x * self.factor


def raw_three(a: object, b: object, c: object) -> list[object]:
    CALLS.append("raw_three")
    return [a, b, c]


def config_with(field: str, value: Any) -> chkpt.Config:
    return chkpt.Config(**{field: value})


def quiet(tmp_path: Path, **options: Any) -> chkpt.Config:
    return chkpt.Config(dir=tmp_path, verbose=False, **options)


def computed(pipeline: chkpt.Pipeline[Any], tmp_path: Path) -> Any:
    """Run without a store: the value that the graph as built computes."""
    return pipeline(quiet(tmp_path, store=False))


def pipeline_error(build: Callable[[], object], *fragments: str) -> str:
    """Assert that `build` raises a PipelineError whose message has every fragment, and that no stage ran."""
    with pytest.raises(chkpt.PipelineError) as info:
        build()
    assert isinstance(info.value, chkpt.ChkptError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert CALLS == []
    return message


# --- 1. bad input: a PipelineError when the pipeline is built, naming what is wrong ------------------------------


def test_too_many_inputs_names_the_stage_its_parameters_and_the_inputs() -> None:
    pipeline_error(
        lambda: (source, other_source) >> double, "'double'", "1 input", "(x)", "given 2", "source, other_source"
    )
    pipeline_error(lambda: double << (source, 7), "'double'", "(x)", "given 2: source, 7")
    pipeline_error(
        lambda: (1, 2, 3, 4) >> with_defaults, "'with_defaults'", "1 to 3", "(a, b, c)", "given 4: 1, 2, 3, 4"
    )


def test_too_few_inputs_names_the_stage_its_parameters_and_the_inputs() -> None:
    pipeline_error(lambda: (source,) >> add, "'add'", "2 inputs", "(a, b)", "given 1: source")
    pipeline_error(lambda: add << source, "'add'", "(a, b)", "given 1: source")


@pytest.mark.parametrize(
    "build",
    [
        lambda: () >> double,
        lambda: double << (),
        lambda: double >> add,
        lambda: (double,) >> inc,
        lambda: (double, source) >> add,
        lambda: add << (source, double),
        lambda: () >> double >> inc,
    ],
    ids=["empty-tuple", "lshift-empty", "stage-rshift", "in-tuple", "first-of-two", "lshift-tuple", "chain"],
)
def test_a_stage_with_required_parameters_used_without_inputs(build: Callable[[], object]) -> None:
    pipeline_error(build, "stage 'double'", "(x)", "given 0: no inputs")


@pytest.mark.parametrize(
    "build",
    [
        lambda: (source, plain_double) >> add,
        lambda: add << (plain_double, source),
        lambda: (plain_double,) >> double,
        lambda: double << plain_double,
    ],
    ids=["tuple-rshift", "lshift-tuple", "alone-in-tuple", "lshift-bare"],
)
def test_a_plain_function_as_input_hints_to_decorate_it(build: Callable[[], object]) -> None:
    pipeline_error(build, "'plain_double'", "decorate it with @chkpt.Stage.wrap()")


def test_a_plain_function_before_rshift_hints_to_decorate_it() -> None:
    # `load >> clean` where `load` lost its decorator: the hint must be to decorate it, not to put the function
    # in a tuple as a constant (which fails in turn).
    message = pipeline_error(lambda: plain_double >> double, "'plain_double'", "'double'")
    assert "@chkpt.Stage.wrap()" in message


@pytest.mark.parametrize(
    "build",
    [
        lambda: (source >> double) << source,
        lambda: (source >> double) << (source,),
        lambda: (source >> double) << (1,),
        lambda: (source >> double) << (),
        lambda: ((source,) >> double) << other_source,
    ],
    ids=["stage", "tuple", "constant", "empty", "tuple-built"],
)
def test_lshift_onto_a_pipeline_that_already_has_its_inputs(build: Callable[[], object]) -> None:
    pipeline_error(build, "pipeline ending in 'double'", "already has its inputs")


def test_rshift_onto_a_non_stage() -> None:
    pipeline_error(lambda: source >> 5, "cannot add", "int", "only a Stage can follow `>>`")  # type: ignore[operator]
    pipeline_error(lambda: (source >> double) >> 5, "cannot add", "int")  # type: ignore[operator]
    pipeline_error(lambda: source >> "double", "cannot add", "str")  # type: ignore[operator]
    pipeline_error(lambda: source >> plain_double, "'plain_double'", "decorate it with @chkpt.Stage.wrap()")  # type: ignore[operator]


@pytest.mark.parametrize(
    "build",
    [
        lambda: source >> (other_source >> double),
        lambda: (source >> double) >> (other_source >> double),  # type: ignore[operator]
        lambda: (source,) >> (other_source >> double),
        lambda: () >> (other_source >> double),
        lambda: 5 >> (other_source >> double),
    ],
    ids=["stage", "pipeline", "tuple", "empty-tuple", "constant"],
)
def test_rshift_onto_a_pipeline(build: Callable[[], object]) -> None:
    pipeline_error(build, "pipeline ending in 'double'", "already has its inputs")


def test_a_constant_not_in_a_tuple() -> None:
    pipeline_error(lambda: 5 >> double, "inputs of stage 'double'", "int", "(5,) >> double")
    pipeline_error(lambda: [1, 2] >> total, "inputs of stage 'total'", "list", "([1, 2],) >> total")


def test_lshift_with_a_non_stage_on_the_left() -> None:
    pipeline_error(lambda: 3 << double, "int << double", "must be a Stage")
    pipeline_error(lambda: 3 << (source >> double), "must be a Stage", "'double'")


def test_a_required_keyword_only_parameter_that_is_not_bound() -> None:
    pipeline_error(lambda: (source,) >> scaled, "'scaled'", "keyword-only", "['factor']", "scaled.bind(factor=...)")
    pipeline_error(lambda: scaled << source, "'scaled'", "['factor']")
    pipeline_error(lambda: source >> scaled, "['factor']")
    pipeline_error(lambda: () >> seed, "'seed'", "['value']", "seed.bind(value=...)")
    pipeline_error(lambda: (seed,) >> double, "'seed'", "['value']")
    pipeline_error(lambda: (1, 2) >> joined, "'joined'", "['sep']")


def test_bind_of_an_unknown_parameter_lists_the_parameters() -> None:
    pipeline_error(lambda: double.bind(y=1), "stage 'double'", "no parameter 'y'", "(x)")
    pipeline_error(lambda: scaled.bind(factr=2), "'factr'", "(x, factor)")
    pipeline_error(lambda: three.bind(b=1).bind(d=2), "'d'", "(a, b=<bound>, c)")


def test_bind_rejects_what_cannot_be_bound() -> None:
    pipeline_error(lambda: posonly.bind(a=1), "'posonly'", "'a'", "positional-only")
    pipeline_error(lambda: head_rest.bind(rest=1), "'rest'", "var-positional")
    pipeline_error(lambda: head_rest.bind(first=1), "'head_rest'", "*args", "'first'")


@pytest.mark.parametrize("value", [object(), lambda: 1, [object()], {"k": plain_double}, source])
def test_bind_of_a_value_that_cannot_be_part_of_a_key(value: object) -> None:
    pipeline_error(lambda: scaled.bind(factor=value), "stage 'scaled'", "factor=", "cannot be part of a key")


@pytest.mark.parametrize("value", [object(), [1, object()], {"f": plain_double}, (source,)])
def test_a_constant_input_that_cannot_be_part_of_a_key(value: object) -> None:
    pipeline_error(lambda: (value,) >> total, "constant input", "stage 'total'", "cannot be part of a key")
    pipeline_error(lambda: (source, value) >> add, "stage 'add'", "cannot be part of a key")


@pytest.mark.parametrize("value", [int, Multiply, len])
def test_a_callable_constant_in_the_tuple(value: object) -> None:
    name = getattr(value, "__name__", "")
    pipeline_error(lambda: (value,) >> total, "stage 'total'", f"'{name}'")
    pipeline_error(lambda: (source, value) >> add, "stage 'add'", f"'{name}'")


def test_a_stage_needs_a_callable_and_a_name() -> None:
    pipeline_error(lambda: chkpt.Stage(5), "needs a function")  # type: ignore[arg-type]
    pipeline_error(lambda: chkpt.Stage(Multiply(2)), "name", "Stage.wrap(name=...)")
    pipeline_error(lambda: chkpt.Stage(functools.partial(raw_three, 1)), "name")
    pipeline_error(lambda: chkpt.Stage.wrap(name="")(raw_three), "name")
    pipeline_error(lambda: chkpt.Stage.wrap(version=1.5)(raw_three), "version", "float")  # type: ignore[arg-type]


def test_pipeline_errors_are_type_errors_too() -> None:
    # A user's `except TypeError` around a bad composition keeps working.
    with pytest.raises(TypeError):
        _ = (source, other_source) >> double


# --- 2. arity: defaults, *args, bound parameters, positional-only and keyword-only, other callables ----------------


def test_defaults_make_inputs_optional(tmp_path: Path) -> None:
    assert computed((1,) >> with_defaults, tmp_path) == [1, 10, 100]
    assert computed((1, 2) >> with_defaults, tmp_path) == [1, 2, 100]
    assert computed(with_defaults << (1, 2, 3), tmp_path) == [1, 2, 3]
    assert computed(source >> with_defaults, tmp_path) == [2, 10, 100]
    assert computed(() >> all_defaults, tmp_path) == [1, 2]
    assert computed(all_defaults << (), tmp_path) == [1, 2]
    assert computed(all_defaults << 5, tmp_path) == [5, 2]
    assert computed((all_defaults, 0) >> gather, tmp_path) == [[1, 2], 0]


def test_varargs_accept_any_number_of_inputs(tmp_path: Path) -> None:
    assert computed(() >> gather, tmp_path) == []
    assert computed((1,) >> gather, tmp_path) == [1]
    assert computed((source, 7, other_source, "x", None) >> gather, tmp_path) == [2, 7, 3, "x", None]
    assert computed(tuple(range(50)) >> gather, tmp_path) == list(range(50))
    assert computed((1,) >> head_rest, tmp_path) == [1, []]
    assert computed((1, 2, 3) >> head_rest, tmp_path) == [1, [2, 3]]
    CALLS.clear()
    pipeline_error(lambda: () >> head_rest, "'head_rest'", "1 to any number", "(first, *rest)", "no inputs")
    CALLS.clear()
    assert computed((1, "a", 2.5) >> joined.bind(sep="-"), tmp_path) == "1-a-2.5"


def test_binding_a_middle_parameter_leaves_the_others_as_inputs_in_order(tmp_path: Path) -> None:
    middle = three.bind(b="B")
    assert middle.params == {"b": "B"}
    assert three.params == {}
    assert computed((1, 2) >> middle, tmp_path) == [1, "B", 2]
    assert computed((source, other_source) >> middle, tmp_path) == [2, "B", 3]
    assert computed((1, 2, 3) >> three, tmp_path) == [1, 2, 3]
    assert computed((1, 2) >> three.bind(a="A"), tmp_path) == ["A", 1, 2]
    assert computed((1, 2) >> three.bind(c="C"), tmp_path) == [1, 2, "C"]
    assert computed((1,) >> three.bind(a="A", c="C"), tmp_path) == ["A", 1, "C"]
    assert computed(() >> three.bind(a=1, b=2, c=3), tmp_path) == [1, 2, 3]
    # rebinding replaces the value
    assert computed((0, 0) >> middle.bind(b="again"), tmp_path) == [0, "again", 0]
    CALLS.clear()
    pipeline_error(lambda: (1, 2, 3) >> middle, "'three'", "2 inputs", "(a, b=<bound>, c)", "given 3")
    pipeline_error(lambda: (1,) >> middle, "(a, b=<bound>, c)", "given 1")


def test_a_bound_stage_called_directly_passes_the_bound_values() -> None:
    assert three.bind(b="B")(1, c=3) == [1, "B", 3]
    assert scaled.bind(factor=3)(4) == 12
    assert kw_defaults.bind(shift=1)(3) == 7


def test_positional_only_parameters(tmp_path: Path) -> None:
    assert computed((1, 2, 3) >> posonly, tmp_path) == [1, 2, 3]
    assert computed((1, 2) >> posonly.bind(c="C"), tmp_path) == [1, 2, "C"]
    assert computed((source, other_source) >> posonly.bind(c=0), tmp_path) == [2, 3, 0]
    CALLS.clear()
    pipeline_error(lambda: (1, 2) >> posonly, "'posonly'", "(a, b, c)", "given 2")


def test_keyword_only_parameters_with_defaults(tmp_path: Path) -> None:
    assert computed((3,) >> kw_defaults, tmp_path) == 6
    assert computed((3,) >> kw_defaults.bind(shift=1), tmp_path) == 7
    assert computed((3,) >> kw_defaults.bind(scale=10, shift=1), tmp_path) == 31
    assert computed(source >> scaled.bind(factor=5), tmp_path) == 10
    assert computed(() >> seed.bind(value=9), tmp_path) == 9
    CALLS.clear()
    pipeline_error(lambda: (3, 4) >> kw_defaults, "'kw_defaults'", "1 input", "(x, scale, shift)", "given 2")


def test_var_keyword_parameters_can_bind_any_name(tmp_path: Path) -> None:
    @chkpt.Stage.wrap()
    def options(x: int, **extra: int) -> dict[str, int]:
        return {"x": x, **extra}

    assert computed((1,) >> options.bind(alpha=2, beta=3), tmp_path) == {"x": 1, "alpha": 2, "beta": 3}
    pipeline_error(lambda: options.bind(extra=1), "'extra'", "var-keyword")


def test_a_callable_object_as_a_stage(tmp_path: Path) -> None:
    times3 = chkpt.Stage(Multiply(3), name="times3")
    assert times3(5) == 15
    CALLS.clear()
    assert computed((5,) >> times3, tmp_path) == 15
    assert computed(source >> times3, tmp_path) == 6
    CALLS.clear()
    pipeline_error(lambda: (5, 6) >> times3, "'times3'", "(x)", "given 2")
    pipeline_error(lambda: () >> times3, "'times3'", "no inputs")


def test_a_partial_as_a_stage(tmp_path: Path) -> None:
    first_fixed = chkpt.Stage(functools.partial(raw_three, "A"), name="first_fixed")
    assert computed((1, 2) >> first_fixed, tmp_path) == ["A", 1, 2]
    last_fixed = chkpt.Stage(functools.partial(raw_three, c="C"), name="last_fixed")
    assert computed((1, 2) >> last_fixed, tmp_path) == [1, 2, "C"]
    CALLS.clear()
    pipeline_error(lambda: (1,) >> first_fixed, "'first_fixed'", "(b, c)", "given 1")
    pipeline_error(lambda: (1, 2, 3) >> last_fixed, "'last_fixed'", "given 3")


def test_partials_of_different_arguments_do_not_share_a_checkpoint(tmp_path: Path) -> None:
    # The partial's arguments are part of what it computes, so they must be part of the key: loading the
    # result of partial(raw_three, 1) for partial(raw_three, 10) is a stale result.
    config = quiet(tmp_path, load=True)
    one = chkpt.Stage(functools.partial(raw_three, 1), name="partial_three")
    assert ((2, 3) >> one)(config) == [1, 2, 3]
    ten = chkpt.Stage(functools.partial(raw_three, 10), name="partial_three")
    assert ((2, 3) >> ten)(config) == [10, 2, 3]


def test_callable_objects_with_different_state_do_not_share_a_checkpoint(tmp_path: Path) -> None:
    config = quiet(tmp_path, load=True)
    assert ((5,) >> chkpt.Stage(Multiply(3), name="multiply"))(config) == 15
    assert ((5,) >> chkpt.Stage(Multiply(4), name="multiply"))(config) == 20


def test_arity_is_checked_through_functools_wraps(tmp_path: Path) -> None:
    # A stage under a @functools.wraps decorator has the wrapped function's parameters (inspect.signature
    # follows __wrapped__), so a wrong number of inputs is caught when the pipeline is built, not when it runs.
    assert computed((4,) >> wrapped_one, tmp_path) == 4
    CALLS.clear()
    pipeline_error(lambda: (1, 2) >> wrapped_one, "'wrapped_one'", "(x)", "given 2")


def test_composing_never_runs_anything() -> None:
    pipeline = (((source, other_source) >> add, source >> double) >> add) >> scaled.bind(factor=2)
    _ = (pipeline, 4) >> gather
    _ = total << ([1, 2],)
    assert CALLS == []


# --- 3. equality and hashing --------------------------------------------------------------------------------------


def test_the_five_spellings_are_equal_with_equal_hashes() -> None:
    spellings = [
        source >> double,
        double << source,
        double << (source,),
        (source,) >> double,
        () >> source >> double,
    ]
    for pipeline in spellings:
        assert pipeline == spellings[0]
        assert hash(pipeline) == hash(spellings[0])
        assert pipeline.stage is double
        assert [node.stage for node in pipeline.nodes()] == [source, double]
    assert len(set(spellings)) == 1


def test_separately_built_graphs_are_equal() -> None:
    def build() -> chkpt.Pipeline[Any]:
        left = (source, 5) >> add
        right = source >> scaled.bind(factor=[1, 2])
        return ((left, right, {"k": (1, 2.5)}) >> gather) >> total

    first, second = build(), build()
    assert first is not second
    assert first == second
    assert hash(first) == hash(second)
    assert {first: "x"}[second] == "x"


def test_pipelines_differ_when_anything_differs() -> None:
    base = (source, 1) >> add
    assert base != (source, 2) >> add
    assert base != (source, 1.0) >> add
    assert base != (source, True) >> add
    assert base != (other_source, 1) >> add
    assert base != (1, source) >> add
    assert (source >> scaled.bind(factor=2)) != (source >> scaled.bind(factor=3))
    assert (source >> scaled.bind(factor=2)) != (other_source >> scaled.bind(factor=2))
    assert ((1, 2) >> three.bind(b=1)) != ((1, 2) >> three.bind(c=1))
    assert (source >> double) != (source >> inc)
    assert (source >> double >> double) != (source >> double)
    assert ((1,) >> gather) != ((1, 1) >> gather)
    versioned = chkpt.Stage(raw_three, name="raw", version=1)
    assert ((1, 2, 3) >> versioned) != ((1, 2, 3) >> chkpt.Stage(raw_three, name="raw", version=2))
    assert ((1, 2, 3) >> versioned) == ((1, 2, 3) >> chkpt.Stage(raw_three, name="raw", version=1))
    assert ((1, 2, 3) >> versioned) != ((1, 2, 3) >> chkpt.Stage(raw_three, name="renamed", version=1))
    assert len({base, (source, 2) >> add, (source, 1) >> add}) == 2


def test_a_constant_changed_after_building_leaves_no_stale_checkpoint(tmp_path: Path) -> None:
    # A mutable constant changed after the pipeline was built: whichever value the run uses, its result must not
    # be stored under the key of the other value, or a later pipeline built with that value loads a wrong result.
    config = quiet(tmp_path, load=True)
    data = [1, 2]
    pipeline = (data,) >> total
    data.append(3)
    assert pipeline(config) in (3, 6)
    assert (([1, 2],) >> total)(config) == 3
    assert (([1, 2, 3],) >> total)(config) == 6


def test_a_pipeline_is_not_equal_to_other_things() -> None:
    pipeline = source >> double
    assert pipeline != double
    assert pipeline != "double"
    assert pipeline != 4
    assert pipeline != (source,)


def test_bound_values_that_make_different_keys_make_different_pipelines(tmp_path: Path) -> None:
    # 1 == True == 1.0 in Python, but they are different bound values: the stage receives a different value and the
    # keys differ, so the pipelines (and their stages) must not compare equal.
    with_int = (5,) >> tagged.bind(tag=1)
    with_bool = (5,) >> tagged.bind(tag=True)
    config = quiet(tmp_path, store=False)
    first, second = with_int.run(config), with_bool.run(config)
    assert first.value != second.value
    assert first.records[-1].key != second.records[-1].key
    assert with_int != with_bool
    both = (with_int, with_bool) >> gather
    assert len(both.stages()) == 3


def chain(bottom: chkpt.Pipeline[int], length: int) -> chkpt.Pipeline[int]:
    pipeline = bottom
    for _ in range(length):
        pipeline = pipeline >> inc
    return pipeline


def test_a_100000_stage_chain_compares_hashes_and_prints_without_recursion() -> None:
    assert sys.getrecursionlimit() < 100_000
    n = 100_000
    first = chain(() >> seed.bind(value=1), n)
    second = chain(() >> seed.bind(value=1), n)
    # The bound value differs only at the bottom, so telling these apart means walking the whole chain.
    different = chain(() >> seed.bind(value=2), n)
    assert first == second
    assert hash(first) == hash(second)
    assert first != different
    assert different != first
    assert repr(first) == "Pipeline(inc << (inc))"
    nodes = first.nodes()
    assert len(nodes) == n + 1
    assert nodes[0].stage == seed.bind(value=1)
    assert nodes[-1] is first
    assert first.stages() == [seed.bind(value=1), inc]


def test_repr_names_the_stage_and_its_inputs() -> None:
    assert repr((source, 42) >> add) == "Pipeline(add << (source, 42))"
    assert repr(() >> source) == "Pipeline(source << ())"
    assert "..." in repr(("x" * 100,) >> total)


# --- 4. random graphs: built with the operators, they order, deduplicate and compute like plain Python ------------

DAG_CALLS: list[tuple[str, int]] = []
_MODULUS = 2**61 - 1


def _combine(kind: int, tag: int, xs: tuple[int, ...]) -> int:
    h = kind * 7 + tag
    for x in xs:
        h = (h * 1_000_003 + x) % _MODULUS
    return h


@chkpt.Stage.wrap()
def mix(*xs: int, tag: int) -> int:
    DAG_CALLS.append(("mix", tag))
    return _combine(1, tag, xs)


@chkpt.Stage.wrap()
def fold(a: int = 0, b: int = 0, c: int = 0, *, tag: int) -> int:
    DAG_CALLS.append(("fold", tag))
    return _combine(2, tag, (a, b, c))


@dataclass(frozen=True)
class NodeSpec:
    kind: str  # "mix" or "fold"
    tag: int
    inputs: tuple[tuple[str, int], ...]  # ("node", index of an earlier node) or ("const", value)
    spelling: int


@st.composite
def dags(draw: st.DrawFn) -> list[NodeSpec]:
    n = draw(st.integers(1, 10))
    specs: list[NodeSpec] = []
    for i in range(n):
        if i and draw(st.integers(0, 3)) == 0:
            # the same node again, built anew: it must be one step of the run
            copied = specs[draw(st.integers(0, i - 1))]
            specs.append(NodeSpec(copied.kind, copied.tag, copied.inputs, draw(st.integers(0, 3))))
            continue
        constants = st.tuples(st.just("const"), st.integers(-1, 3))
        choice = st.one_of(st.tuples(st.just("node"), st.integers(0, i - 1)), constants) if i else constants
        inputs = tuple(draw(st.lists(choice, max_size=3)))
        specs.append(
            NodeSpec(draw(st.sampled_from(["mix", "fold"])), draw(st.integers(0, 2)), inputs, draw(st.integers(0, 3)))
        )
    if draw(st.booleans()):
        # a final node that takes every node, so that all of them are reachable
        specs.append(NodeSpec("mix", 3, tuple(("node", j) for j in range(n)), draw(st.integers(0, 3))))
    return specs


def build_dag(specs: list[NodeSpec]) -> list[chkpt.Pipeline[int]]:
    built: list[chkpt.Pipeline[int]] = []
    for spec in specs:
        stage = (mix if spec.kind == "mix" else fold).bind(tag=spec.tag)
        args: list[object] = []
        for what, value in spec.inputs:
            if what == "const":
                args.append(value)
            elif not specs[value].inputs and (value + spec.tag + spec.spelling) % 2:
                args.append(built[value].stage)  # a stage without inputs can stand for its pipeline
            else:
                args.append(built[value])
        if spec.spelling == 0:
            node = tuple(args) >> stage
        elif spec.spelling == 1:
            node = stage << tuple(args)
        elif spec.spelling == 2 and len(args) == 1 and isinstance(args[0], (chkpt.Stage, chkpt.Pipeline)):
            node = args[0] >> stage
        elif spec.spelling == 3 and len(args) == 1:
            node = stage << args[0]
        else:
            node = tuple(args) >> stage
        built.append(node)
    return built


def evaluate_dag(specs: list[NodeSpec]) -> list[int]:
    values: list[int] = []
    for spec in specs:
        xs = tuple(values[v] if what == "node" else v for what, v in spec.inputs)
        if spec.kind == "mix":
            values.append(_combine(1, spec.tag, xs))
        else:
            values.append(_combine(2, spec.tag, xs + (0,) * (3 - len(xs))))
    return values


def distinct_reachable(specs: list[NodeSpec], target: int) -> tuple[int, set[tuple[str, int]]]:
    """How many distinct nodes (same stage, same inputs) the target needs, and their (kind, tag) stages."""
    identities: dict[tuple[object, ...], int] = {}
    ids: list[int] = []
    for spec in specs:
        inputs = tuple(("node", ids[v]) if what == "node" else ("const", v) for what, v in spec.inputs)
        ids.append(identities.setdefault((spec.kind, spec.tag, inputs), len(identities)))
    reachable: set[int] = set()
    pending = [target]
    while pending:
        index = pending.pop()
        if index not in reachable:
            reachable.add(index)
            pending.extend(v for what, v in specs[index].inputs if what == "node")
    return len({ids[i] for i in reachable}), {(specs[i].kind, specs[i].tag) for i in reachable}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=dags())
def test_random_graphs_order_deduplicate_and_compute_like_plain_python(
    specs: list[NodeSpec], tmp_path_factory: pytest.TempPathFactory
) -> None:
    DAG_CALLS.clear()
    built = build_dag(specs)
    pipeline = built[-1]
    assert DAG_CALLS == []

    nodes = pipeline.nodes()
    position = {id(node): i for i, node in enumerate(nodes)}
    assert len(position) == len(nodes)
    assert nodes[-1] is pipeline
    for i, node in enumerate(nodes):
        for item in node.inputs:
            if isinstance(item, chkpt.Pipeline):
                assert id(item) in position
                assert position[id(item)] < i

    expected_calls, expected_stages = distinct_reachable(specs, len(specs) - 1)
    stages = pipeline.stages()
    assert len(set(stages)) == len(stages)
    assert sorted((s.name, s.params["tag"]) for s in stages) == sorted(expected_stages)

    assert pipeline == build_dag(specs)[-1]
    assert hash(pipeline) == hash(build_dag(specs)[-1])

    config = chkpt.Config(store=False, verbose=False, dir=tmp_path_factory.mktemp("dag"))
    run = pipeline.run(config)
    assert run.value == evaluate_dag(specs)[-1]
    assert len(DAG_CALLS) == expected_calls
    assert len(run.records) == expected_calls
    assert {r.outcome for r in run.records} == {"computed"}


def test_a_node_reached_by_several_paths_runs_once(tmp_path: Path) -> None:
    left = source >> double
    right = double << source  # equal to left, built apart
    diamond = (left, right, source >> double) >> gather
    assert computed(diamond, tmp_path) == [4, 4, 4]
    assert sorted(CALLS) == ["double", "gather", "source"]
    CALLS.clear()
    assert computed(diamond, tmp_path) == [4, 4, 4]  # once per run, not once ever
    assert sorted(CALLS) == ["double", "gather", "source"]


def test_the_same_stage_with_different_inputs_runs_for_each(tmp_path: Path) -> None:
    pipeline = (source >> double, other_source >> double, (5,) >> double) >> gather
    assert computed(pipeline, tmp_path) == [4, 6, 10]
    assert CALLS.count("double") == 3


# --- 5. Config ----------------------------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = chkpt.Config()
    assert config.load is False
    assert config.store is True
    assert config.dir is None
    assert config.verbose is True


@pytest.mark.parametrize("field", ["load", "store"])
def test_load_and_store_take_bools_and_lists_of_stages_or_names(field: str) -> None:
    def selection(value: object) -> object:
        return getattr(config_with(field, value), field)

    assert selection(True) is True
    assert selection(False) is False
    assert selection([source, "double"]) == frozenset({"source", "double"})
    assert selection((source, double)) == frozenset({"source", "double"})
    assert selection({"add"}) == frozenset({"add"})
    assert selection(s for s in [source, other_source]) == frozenset({"source", "other_source"})
    assert selection([scaled.bind(factor=2)]) == frozenset({"scaled"})
    assert selection([]) == frozenset()


@pytest.mark.parametrize("field", ["load", "store"])
@pytest.mark.parametrize("value", ["double", source])
def test_a_single_stage_or_name_must_be_in_a_list(field: str, value: object) -> None:
    with pytest.raises(chkpt.ConfigError) as info:
        config_with(field, value)
    assert isinstance(info.value, chkpt.ChkptError)
    message = str(info.value)
    assert f"Config({field}=...)" in message
    assert f"[{value!r}]" in message


@pytest.mark.parametrize("field", ["load", "store"])
@pytest.mark.parametrize("value", [3, None, 1.5])
def test_a_non_iterable_selection(field: str, value: object) -> None:
    with pytest.raises(chkpt.ConfigError, match=rf"Config\({field}=\.\.\.\) takes True, False or a list") as info:
        config_with(field, value)
    assert type(value).__name__ in str(info.value)


@pytest.mark.parametrize("field", ["load", "store"])
def test_a_plain_function_in_a_selection_hints_to_decorate(field: str) -> None:
    with pytest.raises(chkpt.ConfigError) as info:
        config_with(field, [source, plain_double])
    assert "plain_double" in str(info.value)
    assert "decorate it with @chkpt.Stage.wrap()" in str(info.value)
    with pytest.raises(chkpt.ConfigError, match="Stages or stage names"):
        config_with(field, ["double", 3])


def test_dir_must_be_a_path(tmp_path: Path) -> None:
    for bad in (3, b"dir", ["a"]):
        with pytest.raises(chkpt.ConfigError, match="must be a path"):
            chkpt.Config(dir=bad)  # type: ignore[arg-type]
    assert chkpt.Config(dir=str(tmp_path)).directory() == str(tmp_path)
    assert chkpt.Config(dir=tmp_path).directory() == str(tmp_path)
    (source >> double)(chkpt.Config(dir=tmp_path / "as-path", verbose=False))
    (source >> double)(chkpt.Config(dir=str(tmp_path / "as-str"), verbose=False))
    assert (tmp_path / "as-path" / "double").is_dir()
    assert (tmp_path / "as-str" / "double").is_dir()


@pytest.mark.parametrize("field", ["load", "store"])
def test_a_selection_naming_a_stage_not_in_the_pipeline_fails_before_any_stage_runs(field: str, tmp_path: Path) -> None:
    pipeline = (source, other_source) >> add
    config = quiet(tmp_path, **{field: [source, "ad"]})  # a typo: "ad" for "add"
    with pytest.raises(chkpt.ConfigError) as info:
        pipeline(config)
    assert isinstance(info.value, chkpt.ChkptError)
    message = str(info.value)
    assert f"Config({field}=...)" in message
    assert "['ad']" in message
    assert "['add', 'other_source', 'source']" in message
    assert CALLS == []
    assert not any(tmp_path.rglob("*.json"))
    # every name in the pipeline: it runs
    assert pipeline(quiet(tmp_path, **{field: [source, "add"]})) == 5


def test_a_store_list_stores_only_those_stages(tmp_path: Path) -> None:
    run = ((source, other_source) >> add).run(quiet(tmp_path, store=[source, "add"]))
    assert {r.name: r.outcome for r in run.records} == {"source": "stored", "other_source": "computed", "add": "stored"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["add", "source"]


def test_chkpt_dir_environment_variable_when_dir_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHKPT_DIR", str(tmp_path / "from-env"))
    assert chkpt.Config().directory() == str(tmp_path / "from-env")
    (source >> double)(chkpt.Config(verbose=False))
    assert (tmp_path / "from-env" / "double").is_dir()
    assert not (tmp_path / ".chkpt").exists()
    # an explicit dir wins over the environment
    assert chkpt.Config(dir=tmp_path / "explicit").directory() == str(tmp_path / "explicit")
    # the variable is read when the run starts, not when the Config is made
    config = chkpt.Config(verbose=False)
    monkeypatch.setenv("CHKPT_DIR", str(tmp_path / "later"))
    (source >> double)(config)
    assert (tmp_path / "later" / "double").is_dir()
    monkeypatch.delenv("CHKPT_DIR")
    assert chkpt.Config().directory() == ".chkpt"
    assert os.path.isdir(tmp_path / "from-env")
