"""Keys: what makes a stored result the right one to load.

A node's key is a hash of the stage's identity (module and name), its code fingerprint or pinned version, its
bound parameters and default argument values, its format, and the keys of its inputs (constants by their
canonical digest). Data is never hashed, so planning costs the same for a 1 GB array as for a number.

The code fingerprint is the function's source, parsed with `ast` and printed back without docstrings, comments
or formatting, together with the fingerprints of the user's own functions and classes that it refers to
(recursively), the values of the simple constants it reads, and the version of each installed package it uses.
The parsing is cached per code object and each module file is parsed once per process; what a name refers to is
looked up again at every plan, so a constant or helper redefined in a notebook cell changes the key.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
import types

from . import canonical
from .errors import PipelineError
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
        # repr of a tuple of strings is canonical and far cheaper than the general encoding.
        identity = repr((module_identity(module), stage.name, codec)).encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(b"\0".join([KEY_PREFIX, identity, code_part, stage.params_digest()])).digest()
        self._stages[id(stage)] = digest
        return digest

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


def _fingerprint(root: Callable[..., Any]) -> bytes:
    h = hashlib.sha256()
    pending: list[Any] = [root]
    if isinstance(root, functools.partial):
        # A partial is its function plus the arguments it fixes.
        h.update(b"partial:" + canonical.digest((root.args, root.keywords)))
        pending = [root.func]
    elif isinstance(root, types.MethodType):
        h.update(b"self:" + _state_digest(root.__self__))
    elif not isinstance(root, (types.FunctionType, type)):
        # A callable object: its class's code, and its attributes, which its __call__ may read.
        h.update(b"self:" + _state_digest(root))
        pending = [type(root)]
    done: set[int] = set()
    while pending:
        obj = pending.pop()
        if id(obj) in done:
            continue
        done.add(id(obj))
        if isinstance(obj, type):
            h.update(b"class:" + _class_source(obj))
            pending.extend(v for v in vars(obj).values() if isinstance(v, types.FunctionType))
            continue
        func = _as_function(obj)
        if func is None:
            # A callable object (a partial, an instance with __call__): its type's code stands for it.
            h.update(b"callable:" + _reference(type(obj), pending))
            continue
        code = func.__code__
        h.update(b"function:" + _own_digest(code, func.__globals__))
        h.update(_defaults_digest(func))
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None:
            pending.append(wrapped)
        for cell in func.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            h.update(b"closure:" + _reference(value, pending))
        for name in _global_names(code):
            if name in func.__globals__:
                value = func.__globals__[name]
                h.update(b"global:" + name.encode() + b"=" + _reference(value, pending, names=_global_names(code)))
    return h.digest()


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


def _reference(value: Any, pending: list[Any], names: tuple[str, ...] = ()) -> bytes:
    """What a name a function reads contributes to its fingerprint; user functions and classes are queued."""
    if isinstance(value, Stage):
        if value.version is not None:
            return b"stage-version:" + canonical.digest(value.version)
        value = value.func
    if canonical.is_simple(value):
        return b"value:" + canonical.digest(value)
    if isinstance(value, types.ModuleType):
        if module_origin(value.__name__) != "user":
            return b"module:" + _package_version(value.__name__)
        # `helpers.clean(x)` reads `helpers` as a global and `clean` as an attribute: follow the attributes
        # this code names, one level deep.
        parts = [b"user-module:" + value.__name__.encode()]
        for name in names:
            attr = getattr(value, name, None)
            if attr is not None and not isinstance(attr, types.ModuleType):
                parts.append(name.encode() + b"=" + _reference(attr, pending))
        return b";".join(parts)
    if isinstance(value, (types.FunctionType, types.MethodType, type)):
        module = getattr(value, "__module__", None) or ""
        if module_origin(module) == "user":
            pending.append(value)
            return b"user:" + _qualified_name(value).encode()
        return b"package:" + _qualified_name(value).encode() + b"@" + _package_version(module)
    return b"object:" + _qualified_name(type(value)).encode()


def _qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


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


# --- the function's own source ----------------------------------------------------------------------------

_own_digests: dict[int, tuple[types.CodeType, bytes]] = {}


def _own_digest(code: types.CodeType, module_globals: dict[str, Any]) -> bytes:
    """The digest of one function's normalized source, or of its code object where there is no source."""
    cached = _own_digests.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    module = _module_source(code.co_filename, module_globals)
    source = module.function_source(code) if module is not None else None
    digest = (
        hashlib.sha256(b"source:" + source.encode("utf-8", "surrogatepass")).digest()
        if source is not None
        else _code_object_digest(code)
    )
    _own_digests[id(code)] = (code, digest)
    return digest


class _ModuleSource:
    """One version of a source file: its function and class definitions, indexed by where they start.

    When the file may have been edited after this process imported it, `verify` compiles the file, so that a
    function's source is used only if it compiles to the code object that actually runs.
    """

    def __init__(self, tree: ast.Module, compiled: types.CodeType | None) -> None:
        self.definitions: dict[tuple[int, str], list[Any]] = {}
        self.classes: dict[str, list[Any]] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                _strip_docstring(node)
                decorators = getattr(node, "decorator_list", [])
                first = min([node.lineno, *(d.lineno for d in decorators)])
                name = "<lambda>" if isinstance(node, ast.Lambda) else node.name
                self.definitions.setdefault((first, name), []).append(node)
                if isinstance(node, ast.ClassDef):
                    self.classes.setdefault(node.name, []).append(node)
        self.compiled: dict[tuple[int, str], list[bytes]] | None = None
        if compiled is not None:
            self.compiled = {}
            pending = [compiled]
            while pending:
                current = pending.pop()
                where = (current.co_firstlineno, current.co_name)
                self.compiled.setdefault(where, []).append(_code_signature(current))
                pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))

    def function_source(self, code: types.CodeType) -> str | None:
        where = (code.co_firstlineno, code.co_name)
        candidates = self.definitions.get(where, [])
        if len(candidates) != 1:
            # Several lambdas on one line, or a definition that moved: the source cannot be matched to this
            # code object with certainty, so the code object speaks for itself.
            return None
        if self.compiled is not None and _code_signature(code) not in self.compiled.get(where, []):
            return None
        return _unparse_without_decorators(candidates[0])

    def class_source(self, name: str) -> str | None:
        candidates = self.classes.get(name, [])
        return _unparse_without_decorators(candidates[0]) if len(candidates) == 1 else None


_sources: dict[str, tuple[tuple[int, int] | None, _ModuleSource | None]] = {}


def _module_source(filename: str, module_globals: dict[str, Any]) -> _ModuleSource | None:
    """The parsed source of a module file, parsed once per version of the file (its mtime and size)."""
    import os

    try:
        status = os.stat(filename)
        stamp: tuple[int, int] | None = (status.st_mtime_ns, status.st_size)
    except OSError:
        stamp = None
    cached = _sources.get(filename)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    source: _ModuleSource | None = None
    try:
        if stamp is not None:
            with open(filename, "rb") as file:
                text: str | bytes = file.read()
        else:
            # Not a file: a notebook cell or the REPL, whose source linecache holds.
            import linecache

            text = "".join(linecache.getlines(filename, module_globals))
        if text:
            tree = ast.parse(text, filename)
            edited_since_start = stamp is not None and stamp[0] / 1e9 > _process_start() - 2
            compiled = compile(text, filename, "exec", dont_inherit=True) if edited_since_start else None
            source = _ModuleSource(tree, compiled)
    except (OSError, SyntaxError, ValueError):
        source = None
    _sources[filename] = (stamp, source)
    return source


def _code_signature(code: types.CodeType) -> bytes:
    """What two compilations of the same source share: instructions, names and plain constants."""
    constants = tuple(repr(c) for c in code.co_consts if not isinstance(c, types.CodeType))
    return code.co_code + repr((code.co_names, code.co_varnames, constants)).encode()


_started: list[float] = []


def _process_start() -> float:
    """When this process started (from /proc on Linux; elsewhere, when chkpt was first asked), in epoch
    seconds. A module file not modified since then is the file this process imported."""
    if not _started:
        import os
        import time

        try:
            with open("/proc/self/stat") as file:
                ticks = int(file.read().rpartition(")")[2].split()[19])
            with open("/proc/stat") as file:
                boot = next(int(line.split()[1]) for line in file if line.startswith("btime"))
            _started.append(boot + ticks / os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError, IndexError, StopIteration):
            _started.append(time.time())
    return _started[0]


def _strip_docstring(node: Any) -> None:

    body = getattr(node, "body", None)
    if (
        isinstance(body, list)
        and body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        node.body = body[1:] or [ast.Pass()]


def _unparse_without_decorators(node: Any) -> str:

    decorators = getattr(node, "decorator_list", None)
    if decorators:
        node.decorator_list = []
        try:
            return ast.unparse(node)
        finally:
            node.decorator_list = decorators
    return ast.unparse(node)


def _class_source(cls: type) -> bytes:
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    source = _module_source(filename, vars(module)) if filename else None
    text = source.class_source(cls.__name__) if source is not None else None
    return (text if text is not None else _qualified_name(cls)).encode("utf-8", "surrogatepass")


def _code_object_digest(code: types.CodeType) -> bytes:
    h = hashlib.sha256(b"code:")
    pending = [code]
    while pending:
        current = pending.pop()
        h.update(current.co_code)
        h.update(repr((current.co_names, current.co_varnames, current.co_argcount)).encode())
        for const in current.co_consts:
            if isinstance(const, types.CodeType):
                pending.append(const)
            else:
                h.update(repr(const).encode())
    return h.digest()


# --- where code comes from ----------------------------------------------------------------------------------

_origins: dict[str, str] = {}
_versions: dict[str, bytes] = {}


def module_origin(module_name: str) -> str:
    """'user' for the user's own code (anything outside the standard library and site-packages, including
    `__main__`, notebooks and the REPL), 'stdlib', or 'package' for an installed package (chkpt included)."""
    origin = _origins.get(module_name)
    if origin is not None:
        return origin
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    top = module_name.partition(".")[0]
    if top == "chkpt":
        origin = "package"
    elif module_name == "__main__":
        origin = "user"
    elif filename:
        origin = _origin_of_path(filename)
    elif top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
        origin = "stdlib"
    else:
        # A module made at run time (exec, a notebook's helper) or no longer imported: treat it as the
        # user's, so that its code is fingerprinted rather than trusted.
        origin = "user"
    _origins[module_name] = origin
    return origin


def _origin_of_path(filename: str) -> str:
    import os

    path = os.path.realpath(filename)
    site, stdlib = _library_paths()
    if any(path.startswith(prefix) for prefix in site):
        return "package"
    if any(path.startswith(prefix) for prefix in stdlib):
        return "stdlib"
    return "user"


_paths: list[tuple[tuple[str, ...], tuple[str, ...]]] = []


def _library_paths() -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not _paths:
        import os
        import site
        import sysconfig

        def real(paths: Iterable[str]) -> tuple[str, ...]:
            return tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)

        scheme = sysconfig.get_paths()
        site_paths = [scheme.get("purelib", ""), scheme.get("platlib", "")]
        site_paths += getattr(site, "getsitepackages", list)()
        user_site = getattr(site, "getusersitepackages", lambda: "")()
        site_paths.append(user_site if isinstance(user_site, str) else "")
        _paths.append((real(site_paths), real([scheme.get("stdlib", ""), scheme.get("platstdlib", "")])))
    return _paths[0]


def _package_version(module_name: str) -> bytes:
    """An installed package's version string stands for its code; the standard library has none."""
    top = module_name.partition(".")[0]
    version = _versions.get(top)
    if version is None:
        if module_origin(module_name) == "stdlib":
            version = b"stdlib"
        else:
            found = getattr(sys.modules.get(top), "__version__", None)
            if not isinstance(found, str):
                found = _distribution_version(top)
            version = f"{top}=={found}".encode()
        _versions[top] = version
    return version


def _distribution_version(top: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(top)
    except (metadata.PackageNotFoundError, ValueError):
        return "unknown"


def module_identity(module_name: str) -> str:
    """The name a stage's module has whichever way it was started: `python file.py` gives `__main__`, but the
    stage's identity is the module name an import of that file would give."""
    if module_name != "__main__":
        return module_name
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name: str = spec.name
        return name.removesuffix(".__main__")
    filename = getattr(main, "__file__", None)
    return module_name_for_file(filename) if filename else "__main__"


def module_name_for_file(filename: str) -> str:
    """The dotted name an import of this file gives: its stem, inside the packages (folders with
    __init__.py) that contain it."""
    import os

    path = os.path.realpath(filename)
    folder, base = os.path.split(path)
    parts = [os.path.splitext(base)[0]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.append(package)
    return ".".join(reversed(parts))
