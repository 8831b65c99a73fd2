"""`Stage`: a plain function with a name, an optional pinned version and bound keyword parameters.

A Stage is what a pipeline is made of. Calling it calls the function and nothing else; composing it with `>>`,
`<<` or a tuple of inputs builds a `Pipeline` (see pipeline.py). The parameter layout is read once, when the
Stage is made, so that composing and running never inspect the function again.
"""

from __future__ import annotations

import types

from . import canonical
from .errors import PipelineError
from .shown import short_repr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Generic, ParamSpec, TypeVar

    from .pipeline import Pipeline

    P = ParamSpec("P")
    P2 = ParamSpec("P2")
    R = TypeVar("R")
    R2 = TypeVar("R2")
else:
    from ._generic import P2, R2, Generic, P, R

_VARARGS = 0x04
_VARKEYWORDS = 0x08


class Parameter:
    """One parameter of a stage's function, as far as chkpt needs to know it. `kind` is one of
    "positional-only", "positional", "var-positional", "keyword-only" and "var-keyword"."""

    __slots__ = ("has_default", "kind", "name")

    def __init__(self, name: str, kind: str, has_default: bool) -> None:
        self.name = name
        self.kind = kind
        self.has_default = has_default

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parameter):
            return NotImplemented
        return (self.name, self.kind, self.has_default) == (other.name, other.kind, other.has_default)

    def __hash__(self) -> int:
        return hash((self.name, self.kind, self.has_default))

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, {self.kind!r}, has_default={self.has_default})"


def read_parameters(func: Callable[..., Any]) -> tuple[Parameter, ...]:
    """The parameters of `func` in declaration order.

    A plain function's code object says all of it cheaply; other callables (classes, partials, callable objects)
    go through `inspect.signature`, which is imported only then because it is slow to import.
    """
    if isinstance(func, types.FunctionType) and not hasattr(func, "__wrapped__"):
        code = func.__code__
        names = code.co_varnames
        n_pos, n_posonly, n_kwonly = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
        n_defaults = len(func.__defaults__ or ())
        kwdefaults = func.__kwdefaults__ or {}
        params = [
            Parameter(names[i], "positional-only" if i < n_posonly else "positional", i >= n_pos - n_defaults)
            for i in range(n_pos)
        ]
        index = n_pos + n_kwonly
        if code.co_flags & _VARARGS:
            params.append(Parameter(names[index], "var-positional", False))
            index += 1
        params.extend(Parameter(name, "keyword-only", name in kwdefaults) for name in names[n_pos : n_pos + n_kwonly])
        if code.co_flags & _VARKEYWORDS:
            params.append(Parameter(names[index], "var-keyword", False))
        return tuple(params)
    # Only for callables that are not plain functions, or that wrap another (functools.wraps): inspect follows
    # __wrapped__ to the parameters that matter, and is slow to import for everyone else.
    import inspect

    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: "positional-only",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
        inspect.Parameter.VAR_POSITIONAL: "var-positional",
        inspect.Parameter.KEYWORD_ONLY: "keyword-only",
        inspect.Parameter.VAR_KEYWORD: "var-keyword",
    }
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"cannot read the parameters of {func!r}: {exc}") from None
    return tuple(
        Parameter(p.name, kinds[p.kind], p.default is not inspect.Parameter.empty)
        for p in signature.parameters.values()
    )


def _digest_params(stage_name: str, params: Mapping[str, Any]) -> bytes | None:
    """The bound parameters' digest if it can be computed once and for all; raise PipelineError if a bound
    value cannot be part of a key at all, so that the mistake shows when binding rather than when running."""
    for name, value in params.items():
        try:
            canonical.digest(value)
        except canonical.Unhashable as exc:
            raise PipelineError(
                f"stage '{stage_name}': bound parameter {name}={value!r:.60} cannot be part of a key ({exc}); "
                "pass it as an input from a stage of its own instead"
            ) from None
    if all(canonical.is_simple(value) for value in params.values()):
        return canonical.digest(dict(params))
    return None


class Stage(Generic[P, R]):
    """A function that a pipeline can checkpoint.

    Make one with `@Stage.wrap()`. `stage.func` is the original function and `stage(...)` calls it directly,
    with the bound parameters, and with no caching. `stage.name` names its checkpoints' folder, and, with the
    function's module, is the stage's identity in a key.

    `watch`, for a stage that reads something outside the graph which changes on its own (a file, a URL), is
    called when each run is planned, and the bytes it returns are part of the stage's key: see `chkpt.file`.
    """

    __slots__ = (
        "_hash",
        "_input_range",
        "_missing_keywords",
        "_n_positional",
        "_params_digest",
        "_positional_call",
        "_slots",
        "_star_args",
        "format",
        "func",
        "mmap",
        "name",
        "parameters",
        "params",
        "version",
        "watch",
    )

    func: Callable[..., R]
    name: str
    version: str | int | None
    format: str | None
    mmap: bool
    params: Mapping[str, Any]
    parameters: tuple[Parameter, ...]

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        version: str | int | None = None,
        format: str | None = None,
        mmap: bool = False,
        watch: Callable[[], bytes] | None = None,
        params: Mapping[str, Any] | None = None,
        parameters: tuple[Parameter, ...] | None = None,
    ) -> None:
        if not callable(func):
            raise PipelineError(f"Stage needs a function, got {type(func).__name__} {func!r}")
        if name is None:
            name = getattr(func, "__name__", None)
        if not isinstance(name, str) or not name:
            raise PipelineError(f"a stage needs a non-empty string name, got {name!r}; pass Stage.wrap(name=...)")
        if version is not None and not isinstance(version, (str, int)):
            raise PipelineError(f"stage '{name}': version must be a str or an int, got {type(version).__name__}")
        if format is not None and (not isinstance(format, str) or not format):
            raise PipelineError(f"stage '{name}': format must be a format's name, got {format!r}")
        if mmap and format != "numpy":
            raise PipelineError(f"stage '{name}': mmap=True memory-maps .npy checkpoints; it needs format='numpy'")
        if watch is not None and not callable(watch):
            raise PipelineError(
                f"stage '{name}': watch must be a function of no arguments returning bytes (called at each plan), "
                f"not a {type(watch).__name__}; for example watch=lambda: etag_of(url).encode()"
            )
        self.func = func
        self.name = name
        self.version = version
        self.format = format
        self.mmap = bool(mmap)
        self.watch = watch
        self.params = types.MappingProxyType(dict(params or {}))
        self._hash = hash((id(func), name, version, format))
        self._params_digest = _digest_params(name, self.params)
        self.parameters = read_parameters(func) if parameters is None else parameters
        self._star_args = any(p.kind == "var-positional" for p in self.parameters)
        # The input slots: positional parameters that no bound value fills, in order.
        self._slots = tuple(
            p for p in self.parameters if p.kind in ("positional-only", "positional") and p.name not in self.params
        )
        self._n_positional = sum(p.kind == "positional-only" for p in self._slots)
        positional = [p for p in self.parameters if p.kind in ("positional-only", "positional")]
        # When the input slots are the first positional parameters (nothing bound before them), inputs can be
        # passed by position, which is cheaper than building keyword arguments on every call.
        self._positional_call = self._star_args or self._slots == tuple(positional[: len(self._slots)])
        required = sum(not slot.has_default for slot in self._slots)
        self._input_range = (required, None if self._star_args else len(self._slots))
        self._missing_keywords = tuple(
            p.name
            for p in self.parameters
            if p.kind == "keyword-only" and not p.has_default and p.name not in self.params
        )

    @staticmethod
    def wrap(
        name: str | None = None, version: str | int | None = None, format: str | None = None, mmap: bool = False
    ) -> Callable[[Callable[P2, R2]], Stage[P2, R2]]:
        """Decorator that turns a function into a Stage.

        `name` replaces the function's `__name__` as the stage's name. `version` pins the code part of the
        stage's key: while it stays the same, edits of the function's code keep its stored results valid.
        `format` names the codec its checkpoints use (None: the config's, "json" by default); it is part of the
        key. `mmap=True`, with format="numpy", loads checkpoints as read-only memory maps.
        """

        if callable(name):
            raise PipelineError(
                f"write @chkpt.Stage.wrap() with parentheses over {getattr(name, '__name__', 'the function')}: "
                "Stage.wrap makes the decorator"
            )

        def decorate(func: Callable[P2, R2]) -> Stage[P2, R2]:
            return Stage(func, name=name, version=version, format=format, mmap=mmap)

        return decorate

    def bind(self, **params: Any) -> Stage[..., R]:
        """A new Stage with these keyword arguments fixed. Their values are part of the stage's key."""
        by_name = {p.name: p for p in self.parameters}
        takes_any_keyword = any(p.kind == "var-keyword" for p in self.parameters)
        for key in params:
            param = by_name.get(key)
            if param is None and not takes_any_keyword:
                raise PipelineError(
                    f"stage '{self.name}' has no parameter '{key}' to bind; its parameters are "
                    f"({self.describe_parameters()})"
                )
            if param is not None and param.kind in ("positional-only", "var-positional", "var-keyword"):
                raise PipelineError(f"stage '{self.name}': parameter '{key}' is {param.kind} and cannot be bound")
            if param is not None and param.kind == "positional" and self._star_args:
                raise PipelineError(
                    f"stage '{self.name}' takes *args, so its positional parameter '{key}' cannot be bound; "
                    "pass it as an input instead"
                )
        return Stage(
            self.func,
            name=self.name,
            version=self.version,
            format=self.format,
            mmap=self.mmap,
            watch=self.watch,
            params={**self.params, **params},
            parameters=self.parameters,
        )

    def params_digest(self) -> bytes:
        """The canonical digest of the bound parameters, for the stage's key.

        Bound values that are all immutable are digested once, when bound; a mutable one (a list, a dict) is
        digested again each time, so a change to it made after binding still changes the key.
        """
        return self._params_digest or canonical.digest(dict(self.params))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **{**self.params, **kwargs})

    def call_with_inputs(self, inputs: tuple[Any, ...]) -> R:
        """Call the function with `inputs` in the input slots and the bound parameters as keywords."""
        if self._positional_call:
            return self.func(*inputs, **self.params) if self.params else self.func(*inputs)
        n = self._n_positional
        keywords = {slot.name: value for slot, value in zip(self._slots[n:], inputs[n:], strict=False)}
        return self.func(*inputs[:n], **keywords, **self.params)

    def input_range(self) -> tuple[int, int | None]:
        """The least and most inputs this stage accepts (None: any number, through *args)."""
        return self._input_range

    def missing_keywords(self) -> tuple[str, ...]:
        """Required keyword-only parameters that no bound value fills: the stage could never be called."""
        return self._missing_keywords

    def describe_parameters(self) -> str:
        """The parameter list as a person reads it, with bound ones shown as `name=...`."""
        marks = {"var-positional": "*", "var-keyword": "**"}
        return ", ".join(
            f"{p.name}=<bound>" if p.name in self.params else marks.get(p.kind, "") + p.name for p in self.parameters
        )

    def __rshift__(self, other: Stage[..., R2]) -> Pipeline[R2]:
        from .pipeline import compose

        return compose((self,), other)

    def __rrshift__(self, inputs: object) -> Pipeline[R]:
        from .pipeline import compose

        return compose(inputs, self)

    def __lshift__(self, inputs: object) -> Pipeline[R]:
        from .pipeline import compose

        return compose(inputs if isinstance(inputs, tuple) else (inputs,), self)

    def __rlshift__(self, other: object) -> Pipeline[Any]:
        hint = "; decorate it with @chkpt.Stage.wrap()" if callable(other) else ""
        raise PipelineError(
            f"cannot write `{type(other).__name__} << {self.name}`: the left side of << must be a Stage "
            f"that takes {self.name}'s output{hint}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by reference: a decorated function's module attribute is the Stage, so the function is found
        again through its module and qualified name, never copied. Other processes (and Dask workers) import the
        same module to get the same code. A lambda or a function defined inside another cannot be found that
        way, and raises a PicklingError that says so."""
        import pickle

        func: Any = self.func
        if isinstance(func, types.FunctionType):
            qualname = func.__qualname__
            if "<locals>" in qualname or "<lambda>" in qualname:
                raise pickle.PicklingError(
                    f"stage '{self.name}' wraps {qualname}, which is defined inside a function or is a lambda, so "
                    "another process cannot import it; define it at module level, or run with executor='threads'"
                )
            func = (func.__module__, qualname)
        state = (self.name, self.version, self.format, self.mmap, self.watch, dict(self.params))
        return (_unpickle_stage, (func, *state))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stage):
            return NotImplemented
        return (
            self.func is other.func
            and self.name == other.name
            and self.version == other.version
            and self.format == other.format
            and self.mmap == other.mmap
            and self.params_digest() == other.params_digest()
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        extra = f", version={self.version!r}" if self.version is not None else ""
        bound = "".join(f", {k}={short_repr(v)}" for k, v in self.params.items())
        return f"Stage({self.name}{extra}{bound})"


def _unpickle_stage(
    func: Any,
    name: str,
    version: str | int | None,
    format: str | None,
    mmap: bool,
    watch: Callable[[], bytes] | None,
    params: dict[str, Any],
) -> Stage[..., Any]:
    """Rebuild a pickled Stage: `func` is the callable itself, or (module, qualified name) of a function, whose
    module attribute may be the decorated Stage."""
    shared_key: tuple[Any, ...] | None = None
    if isinstance(func, tuple) and all(type(value) in _SCALARS for value in params.values()):
        # A worker unpickles the same few stages for thousands of tasks, and building a Stage (checking it,
        # digesting its parameters) cost more than the task; a Stage is never changed, so equal ones are shared.
        # Parameters take part by type and value (a float by its repr), so that 1, 1.0 and True, or 0.0 and -0.0,
        # stay apart.
        scalars = tuple((k, type(v), repr(v) if type(v) is float else v) for k, v in params.items())
        shared_key = (func, name, version, format, mmap, watch, scalars)
        try:
            stage = _shared.get(shared_key)
        except TypeError:  # an unhashable watch
            shared_key = None
        else:
            if stage is not None:
                return stage
    stage = Stage(_function(func), name=name, version=version, format=format, mmap=mmap, watch=watch, params=params)
    if shared_key is not None:
        if len(_shared) >= 1024:
            _shared.clear()
        _shared[shared_key] = stage
    return stage


_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})

# Stages unpickled in this process, by what they were pickled from (see _unpickle_stage).
_shared: dict[tuple[Any, ...], Stage[..., Any]] = {}


def _function(func: Any) -> Any:
    """The function a pickled Stage names: `func` itself, or the one found at (module, qualified name), taken
    out of the Stage that a decorated function's module attribute is."""
    if not isinstance(func, tuple):
        return func
    import importlib

    module, qualname = func
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found.func if isinstance(found, Stage) else found
