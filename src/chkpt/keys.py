"""Keys: what makes a stored result the right one to load.

A node's key is a hash of the stage's identity (module and name), its code fingerprint or pinned version, its
bound parameters and default argument values, its format, and the keys of its inputs (constants by their
canonical digest). Data is never hashed, so planning costs the same for a 1 GB array as for a number.

The code fingerprint is the function's own source (source.py), together with the fingerprints of the user's own
functions and classes that it reaches (recursively: through names, attributes, closures, defaults, the imports in
its body, classes' bases and members, and the statements that build the module-level objects it reads), the
values of the plain data it reads from module globals and closures, and the version of each installed package it
uses (modules.py). What a name refers to is looked up
again at every plan, so a constant or helper redefined in a notebook cell changes the key.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import types

from . import canonical
from .errors import ChkptError, PipelineError, add_note
from .modules import installed_version, module_identity, module_origin, package_version
from .shown import short_repr
from .source import assignment_source, class_source, imported_from, imports_in, own_digest
from .stage import Stage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

KEY_PREFIX = b"chkpt/1"


def node_key(stage_digest: bytes, input_parts: Iterable[bytes]) -> str:
    """The key of a node: its stage's digest and, in order, its inputs' keys or constant digests."""
    h = hashlib.sha256(stage_digest)
    for part in input_parts:
        h.update(part)
    return h.hexdigest()[:32]


class Fingerprints:
    """Stage digests for one plan.

    Resolving what a function's names refer to is remembered for the lifetime of this object only, so one plan
    sees one consistent state of the user's modules and the next plan sees their current state.
    """

    def __init__(self) -> None:
        self._functions: dict[int, bytes] = {}
        self._stages: dict[int, bytes] = {}
        self._identities: dict[tuple[str, str, str], bytes] = {}
        self.watched: dict[int, bytes] = {}

    def stage_digest(self, stage: Stage[..., Any], codec: str) -> bytes:
        """Everything in a stage's key except its inputs."""
        cached = self._stages.get(id(stage))
        if cached is not None:
            return cached
        func: Any = stage.func
        module = getattr(func, "__module__", None) or type(func).__module__
        # The fingerprint covers the defaults; a pinned version stands for the code only, not for them.
        code_part = (
            b"version:" + canonical.digest(stage.version) + _defaults_digest(func)
            if stage.version is not None
            else b"code:" + self._code(stage)
        )
        identity = self._identities.get((module, stage.name, codec))
        if identity is None:
            # repr of a tuple of strings is canonical and far cheaper than the general encoding.
            identity = repr((module_identity(module), stage.name, codec)).encode("utf-8", "surrogatepass")
            self._identities[(module, stage.name, codec)] = identity
        parts = [KEY_PREFIX, identity, code_part, stage.params_digest()]
        if stage.watch is not None:
            self.watched[id(stage)] = _watched(stage)
            parts.append(b"watch:" + self.watched[id(stage)])
        digest = hashlib.sha256(b"\0".join(parts)).digest()
        self._stages[id(stage)] = digest
        return digest

    def anatomy(self, stage: Stage[..., Any], codec: str) -> dict[str, Any]:
        """What a stage's key is made of, piece by piece, for its records: so that `explain` can say which piece
        changed when a key is new. Digests are cut to 16 hex digits (they name, they do not verify)."""
        func: Any = stage.func
        module = getattr(func, "__module__", None) or type(func).__module__
        parts = _Parts()
        if stage.version is None:
            try:
                _fingerprint(func, parts)
            except canonical.Unhashable:
                pass  # planning raised already for a stage whose fingerprint cannot be made
        params = {}
        for name, value in stage.params.items():
            try:
                digest = canonical.digest(value).hex()[:16]
            except canonical.Unhashable:
                digest = "?"
            params[name] = [digest, short_repr(value)]
        return {
            "module": module_identity(module),
            "function": _qualified_name(func),
            "version": None if stage.version is None else short_repr(stage.version),
            "format": codec,
            "code": parts.digests(),
            "params": params,
            "watch": None if stage.watch is None else self.watched.get(id(stage), b"").hex()[:16],
        }

    def _code(self, stage: Stage[..., Any]) -> bytes:
        try:
            return self.function(stage.func)
        except canonical.Unhashable as exc:
            raise PipelineError(
                f"stage '{stage.name}' is a {type(stage.func).__name__} whose arguments or attributes cannot be "
                f"part of a key ({exc}); make it a plain function, or pin its code with Stage.wrap(version=...)"
            ) from None

    def function(self, func: Callable[..., Any]) -> bytes:
        """The code fingerprint of `func` and of the user's code it refers to."""
        cached = self._functions.get(id(func))
        if cached is None:
            cached = self._functions[id(func)] = _fingerprint(func)
        return cached


def _watched(stage: Stage[..., Any]) -> bytes:
    assert stage.watch is not None
    try:
        found = stage.watch()
    except OSError as exc:
        raise ChkptError(f"stage '{stage.name}': {exc.strerror or exc}: {exc.filename or ''}") from None
    except Exception as exc:
        add_note(exc, f"chkpt: raised by the watch of stage '{stage.name}', called to make its key")
        raise
    if not isinstance(found, (bytes, bytearray)):
        hint = "; use .encode()" if isinstance(found, str) else ""
        raise PipelineError(f"stage '{stage.name}': its watch must return bytes, not a {type(found).__name__}{hint}")
    return bytes(found)


def _fingerprint(root: Callable[..., Any], parts: _Parts | None = None) -> bytes:
    """The code fingerprint of `root`; with `parts`, also what each piece of it contributed, by label (see
    `anatomy`)."""
    return _Walk(parts).fingerprint(root)


class _Walk:
    """One walk from a stage's function through the user's code it reaches: the functions it calls, the classes
    it uses (their methods, bases and members), what its module-level objects are made from, its closures and
    defaults. Each function and class is visited once, so mutual recursion ends."""

    def __init__(self, parts: _Parts | None) -> None:
        self.h = hashlib.sha256()
        self.parts = parts
        self.pending: list[Any] = []
        self.done: set[int] = set()
        self.assigned: set[tuple[str, str]] = set()
        self.objects: set[int] = set()

    def fingerprint(self, root: Callable[..., Any]) -> bytes:
        h = self.h
        pending = self.pending
        pending.append(root)
        if isinstance(root, functools.partial):
            # A partial is its function plus the arguments it fixes.
            h.update(b"partial:" + canonical.digest((root.args, root.keywords)))
            pending[:] = [root.func]
        elif isinstance(root, types.MethodType):
            h.update(b"self:" + _state_digest(root.__self__))
            owner = root.__self__ if isinstance(root.__self__, type) else type(root.__self__)
            h.update(b"owner:" + self.reference(owner))
        elif not isinstance(root, (types.FunctionType, type)):
            # A callable object: its class's code, and its attributes, which its __call__ may read.
            h.update(b"self:" + _state_digest(root))
            pending[:] = [type(root)]
        while pending:
            obj = pending.pop()
            if id(obj) in self.done:
                continue
            self.done.add(id(obj))
            if isinstance(obj, type):
                self.visit_class(obj)
                continue
            func = _as_function(obj)
            if func is None:
                # A callable object (a partial, an instance with __call__): its type's code stands for it.
                h.update(b"callable:" + self.reference(type(obj)))
                continue
            self.visit_function(func)
        return h.digest()

    def visit_class(self, cls: type) -> None:
        source = class_source(cls)
        self.h.update(b"class:" + (source or _qualified_name(cls)).encode("utf-8", "surrogatepass"))
        if self.parts is not None:
            self.parts.add(f"class {_qualified_name(cls)}", source or "")
        for base in cls.__mro__[1:]:
            if module_origin(base.__module__) == "user":
                self.pending.append(base)
        for member in vars(cls).values():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                self.pending.extend(f for f in (member.fget, member.fset, member.fdel) if f is not None)
            elif isinstance(member, types.FunctionType) or (
                isinstance(member, type) and module_origin(member.__module__) == "user"
            ):
                self.pending.append(member)

    def visit_function(self, func: types.FunctionType) -> None:
        h, parts = self.h, self.parts
        code = func.__code__
        h.update(b"function:" + own_digest(code, func.__globals__))
        h.update(_defaults_digest(func))
        if parts is not None:
            parts.add(f"function {_qualified_name(func)}", own_digest(code, func.__globals__) + _defaults_digest(func))
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None:
            self.pending.append(wrapped)
        names = _global_names(code)
        if func.__defaults__ or func.__kwdefaults__:
            for value in [*(func.__defaults__ or ()), *(func.__kwdefaults__ or {}).values()]:
                if not canonical.is_simple(value):
                    h.update(b"default:" + self.reference(value, names))
        for cell in func.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            reference = self.reference(value, names)
            h.update(b"closure:" + reference)
            if parts is not None:
                parts.add(f"{_kind(reference)} {_qualified_name(func)}:closure", reference)
        for name in names:
            if name in func.__globals__:
                value = func.__globals__[name]
                reference = self.reference(value, names)
                h.update(b"global:" + name.encode() + b"=" + reference)
                statement = b""
                if _is_object(value):
                    statement = self.assignment(func.__globals__, code.co_filename, name)
                    h.update(b"assigned:" + statement)
                if parts is not None:
                    module = module_identity(func.__globals__.get("__name__") or "?")
                    parts.add(f"{_kind(reference)} {module}.{name}", reference + statement)
        # submodules first: importing pkg.helpers puts `helpers` in pkg, which a reference to pkg then sees as a
        # later plan will
        imports = imports_in(code, func.__globals__)
        for imported in sorted(imports, key=lambda name: -name.count(".")) if imports else ():
            reference = self.imported(imported, names)
            h.update(b"imports:" + reference)
            if parts is not None:
                parts.add(f"{_kind(reference)} {_qualified_name(func)}:import {imported}", reference)

    def imported(self, name: str, names: tuple[str, ...]) -> bytes:
        """A module a function imports in its body, followed as a module it reads as a global. An installed
        package is not imported for this (its version stands for it); one of the user's modules is, if it is
        not yet, as the stage would when it runs: its code can only be fingerprinted once imported."""
        if module_origin(name) != "user":
            return b"installed:" + installed_version(name)
        module = sys.modules.get(name)
        if module is None:
            if "." in name and not _is_submodule(name):
                return b""  # `from pkg import clean`: clean is no module; pkg, which is, is followed
            import importlib

            try:
                module = importlib.import_module(name)
            except (Exception, SystemExit):  # the stage will raise it if it runs (a script's argparse exits);
                # a plan that loads its checkpoint need not
                return b"unimportable:" + name.encode()
        return self.module_reference(module, names)

    def reference(self, value: Any, names: tuple[str, ...] = ()) -> bytes:
        """What a name a function reads contributes to its fingerprint; user functions and classes are queued."""
        if isinstance(value, Stage):
            if value.version is not None:
                return b"stage-version:" + canonical.digest(value.version)
            value = value.func
        if canonical.is_simple(value):
            return b"value:" + canonical.digest(value)
        if isinstance(value, types.ModuleType):
            return self.module_reference(value, names)
        if isinstance(value, (types.FunctionType, types.MethodType, type)):
            module = getattr(value, "__module__", None) or ""
            if module_origin(module) == "user":
                self.pending.append(value)
                return b"user:" + _qualified_name(value).encode()
            return b"package:" + _qualified_name(value).encode() + b"@" + package_version(module)
        return self.object_reference(value)

    def object_reference(self, value: Any) -> bytes:
        """An object's type; the code an object of the user's class runs (its class, the functions it holds)
        and a wrapper's function (a partial's, an lru_cache's) are followed; a package's object counts by the
        package's version. Only what the object holds itself is read (never an attribute it might compute: a
        proxy's `__getattr__` may connect to a database or return a new object for every name)."""
        kind = type(value)
        found = b"object:" + _qualified_name(kind).encode()
        if id(value) in self.objects:  # an object that wraps itself, or objects that wrap each other
            return found
        self.objects.add(id(value))
        held = _held(value)
        wrapped = value.func if isinstance(value, functools.partial) else held.get("__wrapped__")
        if isinstance(wrapped, (types.FunctionType, functools.partial)):
            found += b";wraps:" + self.reference(wrapped)
        # a builtin function says where it comes from (np.array is numpy's); anything else, by its type
        module = value.__module__ if isinstance(value, types.BuiltinFunctionType) else kind.__module__
        if not isinstance(module, str):
            module = kind.__module__
        if module_origin(module) == "package":
            found += b"@" + package_version(module)
        elif module_origin(kind.__module__) == "user":
            self.pending.append(kind)
            self.pending.extend(v for v in held.values() if isinstance(v, types.FunctionType))
        return found

    def module_reference(self, module: types.ModuleType, names: tuple[str, ...]) -> bytes:
        """`helpers.clean(x)` reads `helpers` as a global and `clean` as an attribute, `pkg.helpers.clean(x)`
        reads `pkg`, `helpers` and `clean`: follow the attributes the code names through the user's modules."""
        parts = []
        queue = [module]
        seen: set[int] = set()
        while queue:
            current = queue.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            if module_origin(current.__name__) != "user":
                parts.append(b"module:" + package_version(current.__name__))
                continue
            parts.append(b"user-module:" + module_identity(current.__name__).encode())
            namespace = vars(current)
            for name in names:
                if name not in namespace:
                    continue
                attr = namespace[name]
                if isinstance(attr, types.ModuleType):
                    queue.append(attr)
                    continue
                parts.append(name.encode() + b"=" + self.reference(attr))
                filename = getattr(current, "__file__", None)
                if _is_object(attr) and filename:
                    parts.append(b"assigned:" + self.assignment(namespace, filename, name))
        return b";".join(parts)

    def assignment(self, namespace: dict[str, Any], filename: str, name: str) -> bytes:
        """The module-level statements that assign an object the code reads, and what they read in turn (the
        helper that builds it, the class it instantiates, another object); for a name imported from another of
        the user's modules, the statements there. A worklist, not recursion: objects built from objects may
        chain a thousand statements deep."""
        pieces: list[bytes] = []
        pending = [(namespace, filename, name)]
        while pending:
            where, file, wanted = pending.pop()
            if (file, wanted) in self.assigned:
                pieces.append(b"seen")
                continue
            self.assigned.add((file, wanted))
            found = assignment_source(file, where, wanted)
            if found is None:
                origin = imported_from(file, where, wanted)
                module = sys.modules.get(origin[0]) if origin is not None else None
                source_file = getattr(module, "__file__", None)
                if origin is not None and module is not None and source_file and module_origin(origin[0]) == "user":
                    pieces.append(f"from {module_identity(origin[0])}:".encode())
                    pending.append((vars(module), source_file, origin[1]))
                continue
            text, reads = found
            pieces.append(text.encode("utf-8", "surrogatepass"))
            built_from = []
            for read in reads:
                if read != wanted and read in where:
                    value = where[read]
                    pieces.append(read.encode() + b"=" + self.reference(value, reads))
                    if _is_object(value):
                        built_from.append((where, file, read))
            pending.extend(reversed(built_from))
        return b"\n".join(pieces)


def _is_submodule(name: str) -> bool:
    """Whether `pkg.name` is a module of the user's package `pkg` (importing `pkg`, as the stage would)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (Exception, SystemExit):  # the package fails to import: so would the stage
        return False


def _held(value: Any) -> dict[str, Any]:
    """The attributes an object holds in its own `__dict__` (none if it has none), read without calling its
    `__getattr__`."""
    try:
        held = object.__getattribute__(value, "__dict__")
    except Exception:  # no __dict__ (slots, builtins), or an object that refuses even that
        return {}
    return held if isinstance(held, dict) else {}


class _Parts:
    """What each piece of a fingerprint contributed, by label: "function m.f", "class m.C", "value m.NAME" (plain
    data a function reads), "package m.np" (an installed package, by its version), "module m.helpers" (the user's
    own), "code m.f" (a function or class a name refers to), "object m.x"; closures end in ":closure"."""

    def __init__(self) -> None:
        self.found: dict[str, hashlib._Hash] = {}

    def add(self, label: str, data: bytes | str) -> None:
        hasher = self.found.get(label)
        if hasher is None:
            hasher = self.found[label] = hashlib.sha256()
        hasher.update(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)

    def digests(self) -> dict[str, str]:
        return {label: hasher.hexdigest()[:16] for label, hasher in sorted(self.found.items())}


def _kind(reference: bytes) -> str:
    """What a name refers to, from its reference's prefix (see `_reference`), as a part's label says it."""
    kind = reference.partition(b":")[0]
    return {
        b"value": "value",
        b"package": "package",
        b"module": "package",  # an installed package's module: its version stands for it
        b"user-module": "module",
        b"user": "code",
        b"stage-version": "code",
    }.get(kind, "object")


def _state_digest(obj: Any) -> bytes:
    """The canonical digest of an object's attributes (none for a class or a module); raises Unhashable."""
    if isinstance(obj, (type, types.ModuleType)):
        return b""
    state = dict(getattr(obj, "__dict__", {}))
    for name in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, name):
            state[name] = getattr(obj, name)
    return canonical.digest(state)


def _as_function(obj: Any) -> types.FunctionType | None:
    if isinstance(obj, types.FunctionType):
        return obj
    if isinstance(obj, types.MethodType) and isinstance(obj.__func__, types.FunctionType):
        return obj.__func__
    return None


def _is_object(value: Any) -> bool:
    """Whether `value` is neither code (a function, class, module, stage) nor a simple immutable constant."""
    code_kinds = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, type, types.ModuleType, Stage)
    return not isinstance(value, code_kinds) and not canonical.is_simple(value)


def _qualified_name(obj: Any) -> str:
    module = module_identity(getattr(obj, "__module__", None) or "?")
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _defaults_digest(func: Any) -> bytes:
    """Default argument values, each by its canonical digest where it has one, else by its type's name (the
    expression that made it is part of the source fingerprint)."""
    func = _as_function(func) or func
    values = list(getattr(func, "__defaults__", None) or ())
    values.extend(sorted((getattr(func, "__kwdefaults__", None) or {}).items()))
    parts = []
    for value in values:
        try:
            parts.append(canonical.digest(value))
        except canonical.Unhashable:
            parts.append(_qualified_name(type(value)).encode())
    return hashlib.sha256(b"".join(parts)).digest()


_global_names_cache: dict[int, tuple[types.CodeType, tuple[str, ...]]] = {}


def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The names a code object and the code nested in it (lambdas, comprehensions, inner functions) read."""
    cached = _global_names_cache.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    names: dict[str, None] = {}
    pending = [code]
    while pending:
        current = pending.pop()
        names.update(dict.fromkeys(current.co_names))
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    result = tuple(names)
    _global_names_cache[id(code)] = (code, result)
    return result
