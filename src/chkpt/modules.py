"""Where code comes from: the user's own modules, the standard library, or an installed package, and the name
a module has however its file was started.

"The user's own code" is every module outside the standard library and site-packages, including `__main__`,
notebooks and the REPL: that code is fingerprinted. An installed package's version string stands for its code.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


_origins: dict[str, str] = {}
_versions: dict[str, bytes] = {}
_installed: dict[str, bytes] = {}


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
        # Not imported (yet): where an import would find it. Not found, it is a module made at run time (exec,
        # a notebook's helper) or no longer importable: treat it as the user's, so that its code is
        # fingerprinted rather than trusted.
        located = _location(top)
        origin = _origin_of_path(located) if located else "user"
    _origins[module_name] = origin
    return origin


def _location(top: str) -> str | None:
    """The file an import of top-level module `top` would load, found without importing it."""
    module = sys.modules.get(top)
    if module is not None:
        found = getattr(module, "__file__", None)
        return found if isinstance(found, str) else None
    import importlib.util

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location and spec.origin else None


def _origin_of_path(filename: str) -> str:
    import os

    path = os.path.realpath(filename)
    site, stdlib = _library_paths()
    # Any site-packages counts, not only this interpreter's: a base interpreter's, seen from a virtualenv
    # that includes system packages, holds installed packages too.
    parts = path.split(os.sep)
    if any(path.startswith(prefix) for prefix in site) or "site-packages" in parts or "dist-packages" in parts:
        return "package"
    if any(path.startswith(prefix) for prefix in stdlib):
        return "stdlib"
    return "user"


_paths: list[tuple[tuple[str, ...], tuple[str, ...]]] = []


def _library_paths() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The folders of installed packages and of the standard library, each ending in a separator."""
    if not _paths:
        import os
        import site

        def real(paths: Iterable[str]) -> tuple[str, ...]:
            return tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)

        if hasattr(site, "getsitepackages"):
            site_paths = list(site.getsitepackages())
        else:
            # Some old virtualenvs ship a site module without it; sysconfig knows, at a millisecond's cost.
            import sysconfig

            site_paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        user_site = getattr(site, "getusersitepackages", lambda: "")()
        site_paths.append(user_site if isinstance(user_site, str) else "")
        # The standard library is where `os` comes from; its extension modules sit in a folder below it.
        _paths.append((real(site_paths), real([os.path.dirname(os.__file__)])))
    return _paths[0]


def package_version(module_name: str) -> bytes:
    """An installed package's version string stands for its code (its `__version__` once imported, else its
    distribution's); the standard library has none."""
    return _version(module_name, module_name, _versions, _imported_version)


def installed_version(module_name: str) -> bytes:
    """An installed package's version from its distribution's metadata, the same whether or not the package is
    imported yet (`package_version` prefers `__version__`, which only an imported package has): for a package
    a stage imports in its body, which a plan may see imported or not."""
    top = module_name.partition(".")[0]
    return _version(top, top, _installed, _metadata_version)


def _version(module_name: str, origin_of: str, cache: dict[str, bytes], read: Callable[[str], str]) -> bytes:
    """`top==version` of a module's package, as `read` finds the version, or `stdlib`; once per package."""
    top = module_name.partition(".")[0]
    found = cache.get(top)
    if found is None:
        found = b"stdlib" if module_origin(origin_of) == "stdlib" else f"{top}=={read(top)}".encode()
        cache[top] = found
    return found


def _imported_version(top: str) -> str:
    found = getattr(sys.modules.get(top), "__version__", None)
    return found if isinstance(found, str) else _distribution_version(top)


def _metadata_version(top: str) -> str:
    version = _distribution_version(top)
    if version == "unknown":  # an import name that is not its distribution's (yaml is PyYAML's)
        from importlib import metadata

        for distribution in metadata.packages_distributions().get(top, ()):
            return _distribution_version(distribution)
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
        return name  # `python -m pkg` runs pkg/__main__.py, which an import names pkg.__main__
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
