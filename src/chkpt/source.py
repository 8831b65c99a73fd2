"""A function's own source, normalized: what its code fingerprint starts from.

The source is parsed with `ast` and printed back without docstrings, decorators, comments or formatting, so such
edits keep a key. Each module file is parsed once per version of the file (its mtime and size), and a function's
digest is cached per code object, so a warm rerun costs no parse after the first plan in a process.
"""

from __future__ import annotations

import ast
import hashlib
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


_own_digests: dict[int, tuple[types.CodeType, bytes]] = {}
_may_import: dict[int, tuple[types.CodeType, bool]] = {}


def own_digest(code: types.CodeType, module_globals: dict[str, Any]) -> bytes:
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
    # most functions import nothing: `imports_in` walks the source only of those whose text says `import`
    _may_import[id(code)] = (code, source is not None and "import" in source)
    return digest


_imports: dict[int, tuple[types.CodeType, tuple[str, ...]]] = {}


def imports_in(code: types.CodeType, module_globals: dict[str, Any]) -> tuple[str, ...]:
    """The absolute names of the modules a function imports in its own body (and in the functions nested in
    it), as `import numpy as np` or `from . import helpers` inside a `def`; none where its source is unknown."""
    cached = _imports.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    hint = _may_import.get(id(code))
    if hint is None or hint[0] is not code:
        own_digest(code, module_globals)
        hint = _may_import[id(code)]
    module = _module_source(code.co_filename, module_globals) if hint[1] else None
    node = module.function_node(code) if module is not None else None
    names: dict[str, None] = {}
    for inner in ast.walk(node) if node is not None else ():
        if isinstance(inner, ast.Import):
            names.update(dict.fromkeys(alias.name for alias in inner.names))
        elif isinstance(inner, ast.ImportFrom):
            base = _absolute(inner.module or "", inner.level, module_globals)
            names[base] = None
            # `from pkg import helpers` may import the module pkg.helpers
            names.update(dict.fromkeys(f"{base}.{alias.name}" for alias in inner.names if alias.name != "*"))
    found = tuple(name for name in names if name)
    _imports[id(code)] = (code, found)
    return found


def _absolute(module: str, level: int, module_globals: dict[str, Any]) -> str:
    """The absolute name of a module an import names relative to the importing module's package."""
    if not level:
        return module
    package = (module_globals.get("__package__") or "").split(".")
    base = package[: len(package) - level + 1] if level <= len(package) else []
    return ".".join([*base, module] if module else base)


class _ModuleSource:
    """One version of a source file: its function and class definitions, indexed by where they start, and the
    module-level statements that assign each name.

    When the file may have been edited after this process imported it, it is also `compiled`, so that a
    function's source is used only if it compiles to the code object that actually runs.
    """

    def __init__(self, tree: ast.Module, compiled: types.CodeType | None) -> None:
        self.tree = tree
        self.lambdas_indexed = False
        self.definitions: dict[tuple[int, str], list[Any]] = {}
        self.classes: dict[str, list[Any]] = {}
        self.assignments: dict[str, list[Any]] = {}
        self.imports: dict[str, tuple[str, int, str]] = {}
        self.made_classes: dict[str, str | None] = {}
        self.made_assignments: dict[str, tuple[str, tuple[str, ...]] | None] = {}
        for statement in _module_level(tree.body):
            if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                for target in targets:
                    for node in ast.walk(target):
                        if isinstance(node, ast.Name):
                            self.assignments.setdefault(node.id, []).append(statement)
            elif isinstance(statement, ast.ImportFrom):
                for alias in statement.names:
                    self.imports[alias.asname or alias.name] = (statement.module or "", statement.level, alias.name)
        # Functions and classes are statements, so only statements are visited here; lambdas, which may sit in
        # any expression, need a walk of the whole tree, which is done only if a lambda's source is asked for.
        for node, qualname in _statements(tree.body):
            if isinstance(node, ast.ClassDef):
                self.classes.setdefault(qualname, []).append(node)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                _strip_docstring(node)
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                self.definitions.setdefault((first, node.name), []).append(node)
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
        node = self.function_node(code)
        return _unparse_without_decorators(node) if node is not None else None

    def function_node(self, code: types.CodeType) -> Any:
        if code.co_name == "<lambda>" and not self.lambdas_indexed:
            self.lambdas_indexed = True
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Lambda):
                    self.definitions.setdefault((node.lineno, "<lambda>"), []).append(node)
        where = (code.co_firstlineno, code.co_name)
        candidates = self.definitions.get(where, [])
        if len(candidates) != 1:
            # Several lambdas on one line, or a definition that moved: the source cannot be matched to this
            # code object with certainty, so the code object speaks for itself.
            return None
        if self.compiled is not None and _code_signature(code) not in self.compiled.get(where, []):
            return None
        return candidates[0]

    def class_source(self, qualname: str) -> str | None:
        """The source of the class with this qualified name; of every one, if the module defines it more than
        once (under an `if`, say), since which of them runs cannot be told from the source. Made once per
        version of the file: every stage that uses the class asks for it."""
        if qualname not in self.made_classes:
            candidates = self.classes.get(qualname, [])
            made = "\n".join(_unparse_without_decorators(node) for node in candidates) if candidates else None
            self.made_classes[qualname] = made
        return self.made_classes[qualname]

    def assignment(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        """The normalized statements that assign `name` at module level and the names and attributes they read
        (see `assignment_source`), made once per version of the file."""
        if name not in self.made_assignments:
            self.made_assignments[name] = _assignment(self.assignments.get(name))
        return self.made_assignments[name]


def assignment_source(filename: str, module_globals: dict[str, Any], name: str) -> tuple[str, tuple[str, ...]] | None:
    """The module-level statements that assign `name` in a module file (also those under a module-level `if`,
    `try`, `with` or loop), normalized, and the names and attributes they read; None if there are none.

    A mutable module global (a list, a dict, an object) is keyed by the code that defines it rather than by its
    value, which the program may change as it runs: editing `COLUMNS = ["a"]` in the file changes the key of a
    stage that reads COLUMNS, and appending to a module-level cache does not. What the statements read (a helper
    that builds the value, a class it instantiates, another list) is followed by the caller.
    """
    source = _module_source(filename, module_globals)
    found = source.assignment(name) if source is not None else None
    if found is None and "__file__" not in module_globals:
        # A notebook or the REPL: the name may be assigned in another cell; the last one run that assigns it
        # made the value that is there now.
        for cell in reversed(_cells()):
            source = _module_source(cell, module_globals)
            found = source.assignment(name) if source is not None else None
            if found is not None:
                break
    return found


def _assignment(statements: list[Any] | None) -> tuple[str, tuple[str, ...]] | None:
    if not statements:
        return None
    names: dict[str, None] = {}
    for statement in statements:
        for node in ast.walk(statement.value if statement.value is not None else statement):
            if isinstance(node, ast.Name):
                names[node.id] = None
            elif isinstance(node, ast.Attribute):
                names[node.attr] = None
    return "\n".join(ast.unparse(statement) for statement in statements), tuple(names)


def imported_from(filename: str, module_globals: dict[str, Any], name: str) -> tuple[str, str] | None:
    """For a name a module-level `from MODULE import NAME [as name]` binds: the module's absolute name and NAME."""
    source = _module_source(filename, module_globals)
    found = source.imports.get(name) if source is not None else None
    if found is None:
        return None
    module, level, attribute = found
    return _absolute(module, level, module_globals), attribute


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


_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def _statements(body: list[Any]) -> Iterator[tuple[Any, str]]:
    """Every statement in `body` and in the statements nested in it (bodies of defs, loops, ifs, trys, ...),
    each with the qualified name a class defined by it gets (`Outer.Inner`, `f.<locals>.C`)."""
    pending: list[tuple[Any, str]] = [(node, "") for node in body]
    while pending:
        node, prefix = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qualname = prefix + node.name
            inner = qualname + (".<locals>." if not isinstance(node, ast.ClassDef) else ".")
        else:
            qualname = inner = prefix
        yield node, qualname
        for field in _BODIES:
            children = getattr(node, field, None)
            if isinstance(children, list):
                pending.extend((child, inner) for child in children)


def _module_level(body: list[Any]) -> Iterator[Any]:
    """The statements that run at module level: those in `body` and those nested in its ifs, trys, withs and
    loops, but not in its functions and classes."""
    pending = body[::-1]  # in the file's order, so that the statements of a name read as the file does
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for field in reversed(_BODIES):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    pending.extend(children[::-1])


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


def class_source(cls: type) -> str | None:
    """A class's normalized source, found by its qualified name in its module's file (in a notebook or the REPL,
    the cell that defines its methods); None where it cannot be found."""
    module = sys.modules.get(cls.__module__)
    namespace = vars(module) if module is not None else {}
    filename = getattr(module, "__file__", None)
    if not filename:
        codes = (getattr(v, "__code__", None) for v in vars(cls).values())
        filename = next((code.co_filename for code in codes if isinstance(code, types.CodeType)), None)
    source = _module_source(filename, namespace) if filename else None
    found = source.class_source(cls.__qualname__) if source is not None else None
    if found is None and module is not None and not getattr(module, "__file__", None):
        for cell in reversed(_cells()):
            source = _module_source(cell, namespace)
            found = source.class_source(cls.__qualname__) if source is not None else None
            if found is not None:
                break
    return found


def _cells() -> list[str]:
    """The names under which a notebook or the REPL keeps the code it ran (linecache entries that are no file:
    IPython's cells), in the order they ran."""
    import linecache

    return [name for name, entry in list(linecache.cache.items()) if len(entry) == 4 and entry[1] is None]


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
            elif isinstance(const, frozenset):
                # `x in {"a", "b"}` compiles to a frozenset, whose repr's order changes with PYTHONHASHSEED
                h.update(repr(sorted(repr(item) for item in const)).encode())
            else:
                h.update(repr(const).encode())
    return h.digest()
