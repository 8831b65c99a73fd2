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
    return digest


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
        for statement in tree.body:
            if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                for target in targets:
                    for node in ast.walk(target):
                        if isinstance(node, ast.Name):
                            self.assignments.setdefault(node.id, []).append(statement)
        # Functions and classes are statements, so only statements are visited here; lambdas, which may sit in
        # any expression, need a walk of the whole tree, which is done only if a lambda's source is asked for.
        for node in _statements(tree.body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                _strip_docstring(node)
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                self.definitions.setdefault((first, node.name), []).append(node)
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
        return _unparse_without_decorators(candidates[0])

    def class_source(self, name: str) -> str | None:
        candidates = self.classes.get(name, [])
        return _unparse_without_decorators(candidates[0]) if len(candidates) == 1 else None


def assignment_source(filename: str, module_globals: dict[str, Any], name: str) -> str | None:
    """The module-level statements that assign `name` in a module file, normalized; None if there are none.

    A mutable module global (a list, a dict, an object) is keyed by the code that defines it rather than by its
    value, which the program may change as it runs: editing `COLUMNS = ["a"]` in the file changes the key of a
    stage that reads COLUMNS, and appending to a module-level cache does not.
    """
    source = _module_source(filename, module_globals)
    statements = source.assignments.get(name) if source is not None else None
    return "\n".join(ast.unparse(statement) for statement in statements) if statements else None


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


def _statements(body: list[Any]) -> Iterator[Any]:
    """Every statement in `body` and in the statements nested in it (bodies of defs, loops, ifs, trys, ...)."""
    pending = list(body)
    while pending:
        node = pending.pop()
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                pending.extend(children)


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
    """A class's normalized source, or None where it cannot be found with certainty."""
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    source = _module_source(filename, vars(module)) if filename else None
    return source.class_source(cls.__name__) if source is not None else None


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
