"""Keys: what makes a stored result the right one to load (issue 2, rules 1, 2 and 9; DESIGN.md, Keys).

A stage's key is observed the public way, as `pipeline.run(config).records[i].key`. Code edits are made by writing
module files under tmp_path: each version of a set of modules goes into a folder of its own and is imported under
the same module names (so the stage's identity stays the same and only its code changes); `importlib.reload` of a
rewritten file is tested too. Fresh processes are real subprocesses of `sys.executable`.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import importlib
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chkpt
from chkpt import canonical
from chkpt import modules as chkpt_modules

# --- helpers ------------------------------------------------------------------------------------------------


def run_keys(pipeline: chkpt.Pipeline[Any], tmp_path: Path) -> dict[str, str]:
    """Every stage's key in a run that computes everything and stores nothing."""
    run = pipeline.run(chkpt.Config(dir=tmp_path / "checkpoints", store=False, verbose=False))
    assert [r.outcome for r in run.records] == ["computed"] * len(run.records)
    return {r.name: r.key for r in run.records}


def key_of(target: chkpt.Stage[..., Any] | chkpt.Pipeline[Any], tmp_path: Path) -> str:
    """The key of the last stage of `target` (a Stage alone is a pipeline with no inputs)."""
    pipeline = target if isinstance(target, chkpt.Pipeline) else () >> target
    run = pipeline.run(chkpt.Config(dir=tmp_path / "checkpoints", store=False, verbose=False))
    return run.records[-1].key


def python(args: list[str], cwd: Path, **env: str) -> str:
    """Run `python args...` in a fresh process and return its stdout (it must succeed)."""
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env}
    environment.pop("CHKPT_DIR", None)
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"python {args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip())
    return path


class Modules:
    """Versions of a set of user modules. `PFX` in a file name or a source stands for a prefix unique to the
    test, so the modules of different tests never meet in sys.modules."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.prefix = "kt" + uuid.uuid4().hex[:10]
        self.versions = 0

    def name(self, text: str) -> str:
        return text.replace("PFX", self.prefix)

    def load(self, files: dict[str, str], main: str = "PFX_stages") -> ModuleType:
        """Write `files` ({relative path without .py: source}) into a new folder and import `main` from it."""
        self.versions += 1
        folder = self.root / f"modules{self.versions}"
        for relative, source in files.items():
            write(folder / (self.name(relative) + ".py"), self.name(source))
        self.purge()
        self.monkeypatch.syspath_prepend(str(folder))
        return importlib.import_module(self.name(main))

    def purge(self) -> None:
        for name in [n for n in sys.modules if n.startswith(self.prefix)]:
            del sys.modules[name]


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    # No bytecode: a file rewritten within the same second must never be imported from a stale .pyc.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    loader = Modules(tmp_path, monkeypatch)
    yield loader
    loader.purge()


def sources(files: dict[str, str]) -> dict[str, str]:
    """Module sources as they are written to files (dedented), so that edits can use the files' indentation."""
    return {name: textwrap.dedent(source).lstrip() for name, source in files.items()}


def edited(files: dict[str, str], file: str, old: str, new: str) -> dict[str, str]:
    """A copy of `files` (dedented, as they are written) with one exact edit; the edit must apply."""
    files = sources(files)
    assert old in files[file], (file, old)
    return {**files, file: files[file].replace(old, new, 1)}


# --- stages defined in this (user) module -------------------------------------------------------------------


@chkpt.Stage.wrap()
def numbers() -> list[int]:
    return [1, 2, 3]


@chkpt.Stage.wrap()
def letters() -> list[str]:
    return ["a", "b"]


@chkpt.Stage.wrap()
def scale(xs: list[int], factor: int = 1) -> list[int]:
    return [x * factor for x in xs]


@chkpt.Stage.wrap()
def pair(a: object, b: object) -> list[object]:
    return [a, b]


@chkpt.Stage.wrap()
def total(xs: list[int]) -> int:
    return sum(xs)


def plain_double(xs: list[int]) -> list[int]:
    return [2 * x for x in xs]


def plain_triple(xs: list[int]) -> list[int]:
    return [3 * x for x in xs]


# --- rule 1: invalidation, Merkle style ---------------------------------------------------------------------

CHAIN = {
    "PFX_stages": """
    import chkpt

    @chkpt.Stage.wrap()
    def load():
        return [1, 2, 3, 4]

    @chkpt.Stage.wrap()
    def clean(xs):
        return [x for x in xs if x > 1]

    @chkpt.Stage.wrap()
    def report(xs):
        return {"total": sum(xs)}

    pipeline = load >> clean >> report
"""
}


def test_code_edit_changes_the_key_of_the_stage_and_downstream_not_upstream(modules: Modules, tmp_path: Path) -> None:
    before = run_keys(modules.load(CHAIN).pipeline, tmp_path)
    after_module = modules.load(edited(CHAIN, "PFX_stages", "x > 1", "x > 2"))
    after = run_keys(after_module.pipeline, tmp_path)
    assert after_module.pipeline(chkpt.Config(dir=tmp_path / "store", verbose=False)) == {"total": 7}
    assert after["load"] == before["load"]
    assert after["clean"] != before["clean"]
    assert after["report"] != before["report"]
    # Editing the last stage changes only its own key.
    last = run_keys(modules.load(edited(CHAIN, "PFX_stages", '"total"', '"sum"')).pipeline, tmp_path)
    assert (last["load"], last["clean"]) == (before["load"], before["clean"])
    assert last["report"] != before["report"]


def test_same_code_and_inputs_give_the_same_key_in_every_run(modules: Modules, tmp_path: Path) -> None:
    first = run_keys(modules.load(CHAIN).pipeline, tmp_path)
    assert run_keys(modules.load(CHAIN).pipeline, tmp_path) == first  # a fresh import of the same code
    assert len(set(first.values())) == 3

    config = chkpt.Config(dir=tmp_path / "store", load=True, store=True, verbose=False)
    stored = modules.load(CHAIN).pipeline.run(config)
    assert {r.name: r.key for r in stored.records} == first
    loaded = modules.load(CHAIN).pipeline.run(config)
    assert [(r.name, r.key, r.outcome) for r in loaded.records] == [("report", first["report"], "loaded")]


def test_a_bound_parameter_is_part_of_the_key(tmp_path: Path) -> None:
    unbound = key_of(numbers >> scale, tmp_path)
    two = key_of(numbers >> scale.bind(factor=2), tmp_path)
    three = key_of(numbers >> scale.bind(factor=3), tmp_path)
    assert len({unbound, two, three}) == 3
    assert key_of(numbers >> scale.bind(factor=2), tmp_path) == two
    assert key_of(numbers >> scale.bind(factor=2.0), tmp_path) != two
    # Binding the default value explicitly is still a different call spelling; it must at least be stable.
    assert key_of(numbers >> scale.bind(factor=1), tmp_path) == key_of(numbers >> scale.bind(factor=1), tmp_path)


def test_a_mutable_bound_parameter_changed_after_binding_changes_the_key(tmp_path: Path) -> None:
    @chkpt.Stage.wrap()
    def pick(xs: list[int], keep: list[int]) -> list[int]:
        return [x for x in xs if x in keep]

    keep = [1]
    stage = pick.bind(keep=keep)
    before = key_of(numbers >> stage, tmp_path)
    keep.append(2)
    after = (numbers >> stage).run(chkpt.Config(dir=tmp_path, store=False, verbose=False))
    assert after.value == [1, 2]
    assert after.records[-1].key != before


DEFAULTS = {
    "PFX_stages": """
    import chkpt

    DEFAULT = 2

    @chkpt.Stage.wrap()
    def scaled(factor=DEFAULT):
        return 10 * factor

    @chkpt.Stage.wrap(version="1")
    def scaled_pinned(factor=DEFAULT):
        return 10 * factor
"""
}


def test_a_default_argument_value_is_part_of_the_key(modules: Modules, tmp_path: Path) -> None:
    # The functions' source is the same in both versions; only the value their default evaluates to differs.
    before = modules.load(DEFAULTS)
    keys_before = (key_of(before.scaled, tmp_path), key_of(before.scaled_pinned, tmp_path))
    after = modules.load(edited(DEFAULTS, "PFX_stages", "DEFAULT = 2", "DEFAULT = 3"))
    assert after.scaled() == 30
    assert key_of(after.scaled, tmp_path) != keys_before[0]
    assert key_of(after.scaled_pinned, tmp_path) != keys_before[1]  # a pinned version pins code, not defaults
    same = modules.load(DEFAULTS)
    assert (key_of(same.scaled, tmp_path), key_of(same.scaled_pinned, tmp_path)) == keys_before


def test_a_default_without_a_canonical_form_keeps_the_key_stable(modules: Modules, tmp_path: Path) -> None:
    files = {
        "PFX_stages": """
            import chkpt

            MISSING = object()

            @chkpt.Stage.wrap()
            def maybe(value=MISSING):
                return value is MISSING
        """
    }
    assert key_of(modules.load(files).maybe, tmp_path) == key_of(modules.load(files).maybe, tmp_path)


def test_a_constant_input_is_part_of_the_key(tmp_path: Path) -> None:
    keys_by_constant = {
        repr(value): key_of((numbers, value) >> pair, tmp_path)
        for value in (2, 3, 2.0, True, "2", (2,), [2], None, {"a": 2})
    }
    assert len(set(keys_by_constant.values())) == len(keys_by_constant)
    assert key_of((numbers, 2) >> pair, tmp_path) == keys_by_constant["2"]
    assert key_of((numbers, {"a": 2}) >> pair, tmp_path) == keys_by_constant["{'a': 2}"]


def test_inputs_are_ordered_and_input_keys_are_part_of_the_key(tmp_path: Path) -> None:
    ab = key_of((numbers, letters) >> pair, tmp_path)
    ba = key_of((letters, numbers) >> pair, tmp_path)
    assert ab != ba
    # Same stage, different upstream: different key.
    assert key_of(numbers >> total, tmp_path) != key_of(numbers >> scale.bind(factor=2) >> total, tmp_path)
    # A diamond: the shared node has one key wherever it is used.
    run = ((numbers, numbers >> total) >> pair).run(chkpt.Config(dir=tmp_path, store=False, verbose=False))
    assert [r.name for r in run.records].count("numbers") == 1


def test_version_is_part_of_the_key(tmp_path: Path) -> None:
    def compute() -> int:
        return 1

    unpinned = key_of(chkpt.Stage(compute), tmp_path)
    v1 = key_of(chkpt.Stage(compute, version="1"), tmp_path)
    v2 = key_of(chkpt.Stage(compute, version="2"), tmp_path)
    assert len({unpinned, v1, v2}) == 3
    assert key_of(chkpt.Stage(compute, version="1"), tmp_path) == v1


def test_another_name_is_another_key(tmp_path: Path) -> None:
    def compute() -> int:
        return 1

    alpha = key_of(chkpt.Stage(compute, name="alpha"), tmp_path)
    assert key_of(chkpt.Stage(compute, name="beta"), tmp_path) != alpha
    assert key_of(chkpt.Stage(compute, name="alpha"), tmp_path) == alpha
    assert key_of(chkpt.Stage(compute, name="alpha", version="1"), tmp_path) != key_of(
        chkpt.Stage(compute, name="beta", version="1"), tmp_path
    )


def test_the_same_code_in_another_module_is_another_stage(modules: Modules, tmp_path: Path) -> None:
    source = """
        import chkpt

        @chkpt.Stage.wrap()
        def stage():
            return 1
    """
    one = modules.load({"PFX_one": source}, main="PFX_one")
    two = modules.load({"PFX_two": source}, main="PFX_two")
    assert key_of(one.stage, tmp_path) != key_of(two.stage, tmp_path)


CROSS_PROCESS = {
    "kx_helpers.py": """
        import json
        import math

        WORDS = frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})

        def describe(xs):
            return json.dumps(sorted(xs)) + str(math.sqrt(len(xs)))
    """,
    "kx_pipeline.py": """
        import json
        import os
        import sys

        import chkpt
        import kx_helpers
        from kx_helpers import describe

        LIMIT = 3

        @chkpt.Stage.wrap()
        def words():
            return sorted(kx_helpers.WORDS)

        @chkpt.Stage.wrap()
        def pick(xs, wanted, *, options):
            return [x for x in xs if x in wanted][:LIMIT] + [len(options)]

        def make(suffix):
            @chkpt.Stage.wrap(name="tag")
            def tag(xs):
                return describe([str(x) for x in xs]) + suffix
            return tag

        pipeline = (words, frozenset({"beta", "gamma", "zeta", "alpha"})) >> pick.bind(
            options={"b": {1, 2, 3}, "a": ("x", 1.5)}
        ) >> make("!")

        def main():
            run = pipeline.run(chkpt.Config(dir=os.environ["KEYS_TEST_DIR"], store=False, verbose=False))
            print(json.dumps([[r.name, r.key] for r in run.records]))

        if __name__ == "__main__":
            main()
    """,
}


def test_the_same_key_in_separate_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, source in CROSS_PROCESS.items():
        write(tmp_path / name, source)
    command = ["-c", "import kx_pipeline; kx_pipeline.main()"]
    directory = str(tmp_path / "checkpoints")
    # Different hash seeds: a set's iteration order differs between the two processes.
    first = last_json(python(command, tmp_path, KEYS_TEST_DIR=directory, PYTHONHASHSEED="1"))
    second = last_json(python(command, tmp_path, KEYS_TEST_DIR=directory, PYTHONHASHSEED="2"))
    assert [name for name, _ in first] == ["words", "pick", "tag"]
    assert first == second

    # This process, importing the same file, agrees too.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        pipeline = importlib.import_module("kx_pipeline").pipeline
        assert [[name, key] for name, key in run_keys(pipeline, tmp_path).items()] == first
    finally:
        sys.modules.pop("kx_pipeline", None)
        sys.modules.pop("kx_helpers", None)


# --- rule 2: the code fingerprint ---------------------------------------------------------------------------

BODY = {
    "PFX_stages": '''
    import chkpt

    @chkpt.Stage.wrap()
    def stage():
        """Add things up."""
        total = 0
        for i in range(4):  # four rounds
            total += i * 2
        return total
'''
}

FORMATTING_EDITS = {
    "comment edited": ("# four rounds", "# a comment that says something else entirely"),
    "comment added": ("total = 0\n", "total = 0\n    # start from nothing\n"),
    "docstring edited": ('"""Add things up."""', '"""Sum the doubled numbers below four, a longer docstring."""'),
    "docstring removed": ('    """Add things up."""\n', ""),
    "blank lines": ("import chkpt\n", "import chkpt\n\n\n\n# a banner\n\n"),
    "blank line in body": ("total = 0\n", "total = 0\n\n\n"),
    "reformatted": ("total += i * 2", "total += (i*2)"),
    "wrapped": ("for i in range(4):", "for i in range(\n        4,\n    ):"),
    "quotes and spacing": ("total = 0", "total=(0)"),
}

CODE_EDITS = {
    "operator": ("i * 2", "i * 3"),
    "literal": ("range(4)", "range(5)"),
    "augmented assignment": ("total += i", "total -= i"),
    "new statement": ("return total", "total += 1\n    return total"),
    "renamed local": ("return total", "result = total\n    return result"),
}


@pytest.mark.parametrize("edit", FORMATTING_EDITS, ids=list(FORMATTING_EDITS))
def test_comment_docstring_and_formatting_edits_keep_the_key(modules: Modules, tmp_path: Path, edit: str) -> None:
    before = key_of(modules.load(BODY).stage, tmp_path)
    after = modules.load(edited(BODY, "PFX_stages", *FORMATTING_EDITS[edit]))
    assert after.stage() == 12
    assert key_of(after.stage, tmp_path) == before


@pytest.mark.parametrize("edit", CODE_EDITS, ids=list(CODE_EDITS))
def test_a_real_code_edit_changes_the_key(modules: Modules, tmp_path: Path, edit: str) -> None:
    before = key_of(modules.load(BODY).stage, tmp_path)
    after = modules.load(edited(BODY, "PFX_stages", *CODE_EDITS[edit]))
    assert key_of(after.stage, tmp_path) != before


def test_a_file_rewritten_and_reloaded_in_the_same_process(modules: Modules, tmp_path: Path) -> None:
    # A notebook with autoreload: the same file, rewritten, reloaded into the same module object.
    module = modules.load(BODY)
    path = Path(module.__file__ or "")
    original = key_of(module.stage, tmp_path)

    path.write_text(path.read_text().replace("# four rounds", "# another comment"))
    module = importlib.reload(module)
    assert key_of(module.stage, tmp_path) == original

    path.write_text(path.read_text().replace("i * 2", "i * 5"))
    module = importlib.reload(module)
    assert module.stage() == 30
    changed = key_of(module.stage, tmp_path)
    assert changed != original

    path.write_text(path.read_text().replace("i * 5", "i * 2"))
    module = importlib.reload(module)
    assert key_of(module.stage, tmp_path) == original


HELPERS = {
    "PFX_deep": """
    def round_off(x):
        return x * 2
""",
    "PFX_helpers": """
    import PFX_deep

    OFFSET = 1

    def clean(x):
        return tidy(x) + OFFSET

    def tidy(x):
        return PFX_deep.round_off(x)

    def unused(x):
        return x - 1
""",
    "PFX_stages": """
    import chkpt
    import PFX_helpers
    from PFX_helpers import clean

    def local(x):
        return inner(x) + 1

    def inner(x):
        return x

    @chkpt.Stage.wrap()
    def via_module():
        return PFX_helpers.clean(3)

    @chkpt.Stage.wrap()
    def via_from_import():
        return clean(3)

    @chkpt.Stage.wrap()
    def via_local():
        return local(3)

    @chkpt.Stage.wrap()
    def via_attribute_constant():
        return PFX_helpers.OFFSET * 10
""",
}

HELPER_EDITS: dict[str, tuple[str, str, str, set[str]]] = {
    # name: (file, old, new, the stages whose key must change)
    "helper in another module": (
        "PFX_helpers",
        "tidy(x) + OFFSET",
        "tidy(x) + OFFSET + 1",
        {"via_module", "via_from_import"},
    ),
    "helper of a helper": (
        "PFX_helpers",
        "return PFX_deep.round_off(x)",
        "return -PFX_deep.round_off(x)",
        {"via_module", "via_from_import"},
    ),
    "helper in a third module": ("PFX_deep", "x * 2", "x * 4", {"via_module", "via_from_import"}),
    "constant read by a helper": (
        "PFX_helpers",
        "OFFSET = 1",
        "OFFSET = 2",
        {"via_module", "via_from_import", "via_attribute_constant"},
    ),
    "same-module helper": ("PFX_stages", "inner(x) + 1", "inner(x) + 2", {"via_local"}),
    "same-module helper of a helper": ("PFX_stages", "return x\n", "return -x\n", {"via_local"}),
    "a function no stage calls": ("PFX_helpers", "x - 1", "x - 2", set()),
    "a comment in a helper": ("PFX_deep", "return x * 2", "return x * 2  # doubled", set()),
}


@pytest.mark.parametrize("edit", HELPER_EDITS, ids=list(HELPER_EDITS))
def test_editing_a_helper_changes_the_key_of_the_stages_that_call_it(
    modules: Modules, tmp_path: Path, edit: str
) -> None:
    file, old, new, expected = HELPER_EDITS[edit]
    stages = ("via_module", "via_from_import", "via_local", "via_attribute_constant")
    base = modules.load(HELPERS)
    before = {name: key_of(getattr(base, name), tmp_path) for name in stages}
    after_module = modules.load(edited(HELPERS, file, old, new))
    after = {name: key_of(getattr(after_module, name), tmp_path) for name in stages}
    assert {name for name in stages if after[name] != before[name]} == expected


# --- what a stage reaches through objects, classes and decorators ---------------------------------------------------
# Each case: the files, the stage attribute, an edit that changes what the stage returns (file, old, new). The edit
# must change the key; reloading the same files must keep it.


def one(source: str, old: str, new: str) -> tuple[dict[str, str], str, str, str]:
    """A case whose stages and edit are in one module."""
    return {"PFX_stages": source}, "PFX_stages", old, new


REACHED: dict[str, tuple[dict[str, str], str, str, str]] = {
    "a list imported from another module": (
        {
            "PFX_config": "COLUMNS = ['a', 'b']\n",
            "PFX_stages": """
            import chkpt
            from PFX_config import COLUMNS

            @chkpt.Stage.wrap()
            def s():
                return list(COLUMNS)
            """,
        },
        "PFX_config",
        "['a', 'b']",
        "['a', 'b', 'c']",
    ),
    "a list read as another module's attribute": (
        {
            "PFX_config": "COLUMNS = ['a', 'b']\n",
            "PFX_stages": """
            import chkpt
            import PFX_config

            @chkpt.Stage.wrap()
            def s():
                return list(PFX_config.COLUMNS)
            """,
        },
        "PFX_config",
        "['a', 'b']",
        "['a', 'b', 'c']",
    ),
    "a list assigned inside a module-level if": one(
        """
        import sys

        import chkpt

        if sys.byteorder:
            COLUMNS = ['a', 'b']
        else:
            COLUMNS = ['a']

        @chkpt.Stage.wrap()
        def s():
            return list(COLUMNS)
        """,
        "COLUMNS = ['a', 'b']",
        "COLUMNS = ['a', 'b', 'c']",
    ),
    "a helper wrapped by functools.lru_cache": one(
        """
        import functools

        import chkpt

        @functools.lru_cache(maxsize=None)
        def helper(x):
            return x * 2

        @chkpt.Stage.wrap()
        def s():
            return helper(5)
        """,
        "x * 2",
        "x * 3",
    ),
    "a helper wrapped by a class-based decorator": one(
        """
        import chkpt

        class traced:
            def __init__(self, func):
                self.func = func

            def __call__(self, *args):
                return self.func(*args)

        @traced
        def helper(x):
            return x * 2

        @chkpt.Stage.wrap()
        def s():
            return helper(5)
        """,
        "x * 2",
        "x * 3",
    ),
    "a method of a module-level instance's class": one(
        """
        import chkpt

        class Model:
            def __init__(self, k):
                self.k = k

            def predict(self, x):
                return x * self.k

        MODEL = Model(2)

        @chkpt.Stage.wrap()
        def s():
            return MODEL.predict(5)
        """,
        "x * self.k",
        "x * self.k + 1",
    ),
    "a function a module-level partial wraps": one(
        """
        import functools

        import chkpt

        def power(x, e):
            return x ** e

        SQUARE = functools.partial(power, e=2)

        @chkpt.Stage.wrap()
        def s():
            return SQUARE(5)
        """,
        "x ** e",
        "x ** e + 1",
    ),
    "a helper that builds a module-level list": one(
        """
        import chkpt

        def make_columns():
            return ['a', 'b']

        COLUMNS = make_columns()

        @chkpt.Stage.wrap()
        def s():
            return list(COLUMNS)
        """,
        "['a', 'b']",
        "['a', 'c']",
    ),
    "a function in a module-level dict": one(
        """
        import chkpt

        def double(x):
            return x * 2

        OPS = {'double': double}

        @chkpt.Stage.wrap()
        def s():
            return OPS['double'](5)
        """,
        "x * 2",
        "x * 3",
    ),
    "a list built from another module-level list": one(
        """
        import chkpt

        BASE = ['a']
        COLUMNS = BASE + ['b']

        @chkpt.Stage.wrap()
        def s():
            return list(COLUMNS)
        """,
        "BASE = ['a']",
        "BASE = ['z']",
    ),
    "an inherited method": one(
        """
        import chkpt

        class Base:
            def f(self, x):
                return x * 2

        class Child(Base):
            pass

        @chkpt.Stage.wrap()
        def s():
            return Child().f(5)
        """,
        "x * 2",
        "x * 3",
    ),
    "a helper a staticmethod calls": one(
        """
        import chkpt

        def helper(x):
            return x * 2

        class Ops:
            @staticmethod
            def run(x):
                return helper(x)

        @chkpt.Stage.wrap()
        def s():
            return Ops.run(5)
        """,
        "x * 2",
        "x * 3",
    ),
    "a method a bound-method stage calls": one(
        """
        import chkpt

        class Model:
            def __init__(self, k):
                self.k = k

            def helper(self, x):
                return x * self.k

            def run(self):
                return self.helper(5)

        s = chkpt.Stage(Model(2).run, name='s')
        """,
        "x * self.k",
        "x * self.k + 1",
    ),
    "a class attribute a classmethod stage reads": one(
        """
        import chkpt

        class Model:
            K = 2

            @classmethod
            def run(cls):
                return 5 * cls.K

        s = chkpt.Stage(Model.run, name='s')
        """,
        "K = 2",
        "K = 3",
    ),
    "a helper given as a default argument": one(
        """
        import chkpt

        def helper(x):
            return x * 2

        @chkpt.Stage.wrap()
        def s(fn=helper):
            return fn(5)
        """,
        "x * 2",
        "x * 3",
    ),
    "a module captured by a closure": (
        {
            "PFX_helpers": """
            def clean(x):
                return x * 2
            """,
            "PFX_stages": """
            import chkpt
            import PFX_helpers

            def make_stage(mod):
                def s():
                    return mod.clean(5)
                return chkpt.Stage(s)

            s = make_stage(PFX_helpers)
            """,
        },
        "PFX_helpers",
        "x * 2",
        "x * 3",
    ),
    "an instance captured by a closure": one(
        """
        import chkpt

        class Model:
            def predict(self, x):
                return x * 2

        def make_stage(model):
            def s():
                return model.predict(5)
            return chkpt.Stage(s)

        s = make_stage(Model())
        """,
        "x * 2",
        "x * 3",
    ),
    "a class whose name a nested class shares": one(
        """
        import chkpt

        class Config:
            SCALE = 2

        class Model:
            class Config:
                frozen = True

        @chkpt.Stage.wrap()
        def s():
            return Config.SCALE * 10
        """,
        "SCALE = 2",
        "SCALE = 3",
    ),
}


@pytest.mark.parametrize("case", REACHED, ids=list(REACHED))
def test_an_edit_reached_through_objects_classes_and_decorators_changes_the_key(
    modules: Modules, tmp_path: Path, case: str
) -> None:
    files, file, old, new = REACHED[case]
    before_module = modules.load(files)
    before = key_of(before_module.s, tmp_path)
    assert key_of(modules.load(files).s, tmp_path) == before
    after_module = modules.load(edited(files, file, old, new))
    assert after_module.s.func() != before_module.s.func()  # the edit changes what the stage returns
    assert key_of(after_module.s, tmp_path) != before


def test_a_module_a_stage_imports_in_its_body_is_followed(modules: Modules, tmp_path: Path) -> None:
    files = {
        "PFX_helpers": """
        def clean(x):
            return x * 2
        """,
        "PFX_stages": """
        import chkpt

        @chkpt.Stage.wrap()
        def s():
            import PFX_helpers

            return PFX_helpers.clean(5)

        @chkpt.Stage.wrap()
        def other():
            from PFX_helpers import clean

            return clean(1)
        """,
    }
    first = modules.load(files)
    assert modules.name("PFX_helpers") not in sys.modules  # not imported before the first plan
    before = (key_of(first.s, tmp_path), key_of(first.other, tmp_path))
    assert modules.name("PFX_helpers") in sys.modules  # the plan imported it, to follow it
    assert (key_of(first.s, tmp_path), key_of(first.other, tmp_path)) == before  # the same once it is imported
    after = modules.load(edited(files, "PFX_helpers", "x * 2", "x * 3"))
    assert after.s.func() == 15
    assert key_of(after.s, tmp_path) != before[0] and key_of(after.other, tmp_path) != before[1]


def test_an_installed_packages_object_counts_by_the_packages_version(
    modules: Modules, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    np = pytest.importorskip("numpy", reason="numpy is in the test extras; the case needs an installed package")
    files = {
        "PFX_stages": """
        import chkpt
        from numpy import exp, array

        @chkpt.Stage.wrap()
        def ufunc():
            return float(exp(0))

        @chkpt.Stage.wrap()
        def builtin():
            return array([1]).tolist()

        @chkpt.Stage.wrap()
        def imported_inside():
            import numpy as np

            return int(np.int64(1))
        """,
    }
    stages = ("ufunc", "builtin", "imported_inside")
    loaded = modules.load(files)
    before = {name: key_of(getattr(loaded, name), tmp_path) for name in stages}
    monkeypatch.setattr(chkpt_modules, "_versions", {})
    monkeypatch.setattr(chkpt_modules, "_installed", {})
    monkeypatch.setattr(np, "__version__", "99.0.0")  # as an upgrade would, and its metadata
    monkeypatch.setattr(chkpt_modules, "_distribution_version", lambda top: "99.0.0")
    loaded = modules.load(files)
    after = {name: key_of(getattr(loaded, name), tmp_path) for name in stages}
    assert all(after[name] != before[name] for name in stages), (before, after)


CELLS = {
    "class attribute": (
        [
            "import chkpt\n\nclass Settings:\n    SCALE = VALUE\n\n"
            "@chkpt.Stage.wrap()\ndef s():\n    return Settings.SCALE * 10\n"
        ],
        ("2", "3"),
    ),
    "a list from an earlier cell": (
        ["COLUMNS = VALUE\n", "import chkpt\n\n@chkpt.Stage.wrap()\ndef s():\n    return list(COLUMNS)\n"],
        ("['a']", "['a', 'b']"),
    ),
}


@pytest.mark.parametrize("case", CELLS, ids=list(CELLS))
def test_an_edit_in_a_notebook_cell_changes_the_key(tmp_path: Path, case: str) -> None:
    """A notebook kernel runs each cell under a name that linecache holds, in a module without a file."""
    import linecache

    cells, values = CELLS[case]
    keys = []
    for run, value in enumerate(values):
        module = ModuleType(f"kt{uuid.uuid4().hex[:10]}_notebook")
        sys.modules[module.__name__] = module
        try:
            for number, cell in enumerate(cells):
                text = cell.replace("VALUE", value)
                name = f"<ipython-input-{uuid.uuid4().hex[:8]}-{run}{number}>"
                linecache.cache[name] = (len(text), None, text.splitlines(True), name)
                exec(compile(text, name, "exec"), vars(module))
            keys.append(key_of(vars(module)["s"], tmp_path))
            assert key_of(vars(module)["s"], tmp_path) == keys[-1]
        finally:
            del sys.modules[module.__name__]
    assert keys[0] != keys[1]


def test_a_stage_in_a_packages_main_has_the_same_key_run_with_m_and_as_a_file(tmp_path: Path) -> None:
    write(tmp_path / "kmain" / "__init__.py", "")
    write(tmp_path / "kmain" / "__main__.py", IDENTITY.replace("BODY", "x + 1"))
    directory = str(tmp_path / "checkpoints")
    ways = [["-m", "kmain"], ["kmain/__main__.py"], ["-c", "import kmain.__main__ as m; m.main()"]]
    keys = [python(way, tmp_path, KEYS_TEST_DIR=directory).strip().splitlines()[-1] for way in ways]
    assert len(keys[0]) == 32 and len(set(keys)) == 1, keys


def test_a_stage_whose_code_has_no_source_has_the_same_key_in_every_process(tmp_path: Path) -> None:
    # exec'd code has no source file, so its code object stands for it; a set literal in it compiles to a
    # frozenset, whose order changes with the hash seed
    code = (
        "import chkpt\n"
        "namespace = {'chkpt': chkpt}\n"
        'exec(\'def keep(w):\\n    return w in {"alpha", "beta", "gamma", "delta"}\', namespace)\n'
        "stage = chkpt.Stage(namespace['keep'], name='keep')\n"
        "run = (stage << 'alpha').run(chkpt.Config(store=False, load=False, verbose=False))\n"
        "print(run.records[-1].key)\n"
    )
    keys = {python(["-c", code], tmp_path, PYTHONHASHSEED=seed).strip() for seed in ("0", "1", "2", "12345")}
    assert len(keys) == 1, keys


DOTTED = {
    "PFX_pkg/__init__": "",
    "PFX_pkg/helpers": """
    def f(x):
        return x + 1
""",
    "PFX_stages": """
    import chkpt
    import PFX_pkg.helpers

    @chkpt.Stage.wrap()
    def stage():
        return PFX_pkg.helpers.f(1)
""",
}


def test_editing_a_helper_called_through_a_dotted_package_path_changes_the_key(
    modules: Modules, tmp_path: Path
) -> None:
    # `import pkg.helpers; pkg.helpers.f()` is as common as `from pkg.helpers import f`.
    before = key_of(modules.load(DOTTED).stage, tmp_path)
    after = modules.load(edited(DOTTED, "PFX_pkg/helpers", "x + 1", "x + 5"))
    assert after.stage() == 6
    assert key_of(after.stage, tmp_path) != before


CONSTANTS = {
    "PFX_stages": """
    import chkpt

    SCALE = 2
    LABEL = "a"
    SIZES = (1, 2)
    TABLE = ((1, "one"), (2, "two"))

    @chkpt.Stage.wrap()
    def scaled():
        return SCALE * 2

    @chkpt.Stage.wrap()
    def labelled():
        return LABEL + "!"

    @chkpt.Stage.wrap()
    def sized():
        return sum(SIZES)

    @chkpt.Stage.wrap()
    def looked_up():
        return dict(TABLE)[1]

    @chkpt.Stage.wrap()
    def in_a_comprehension():
        return [SCALE * x for x in range(2)]
"""
}

CONSTANT_EDITS: dict[str, tuple[str, str, set[str]]] = {
    "number": ("SCALE = 2", "SCALE = 3", {"scaled", "in_a_comprehension"}),
    "int to float": ("SCALE = 2", "SCALE = 2.0", {"scaled", "in_a_comprehension"}),
    "string": ('LABEL = "a"', 'LABEL = "b"', {"labelled"}),
    "tuple": ("SIZES = (1, 2)", "SIZES = (1, 3)", {"sized"}),
    "nested tuple": ('(1, "one")', '(1, "uno")', {"looked_up"}),
    "reformatted constant": ("SIZES = (1, 2)", "SIZES = (\n    1,\n    2,\n)", set()),
}


@pytest.mark.parametrize("edit", CONSTANT_EDITS, ids=list(CONSTANT_EDITS))
def test_editing_a_module_constant_a_stage_reads_changes_its_key(modules: Modules, tmp_path: Path, edit: str) -> None:
    old, new, expected = CONSTANT_EDITS[edit]
    names = ("scaled", "labelled", "sized", "looked_up", "in_a_comprehension")
    base = modules.load(CONSTANTS)
    before = {name: key_of(getattr(base, name), tmp_path) for name in names}
    changed = modules.load(edited(CONSTANTS, "PFX_stages", old, new))
    after = {name: key_of(getattr(changed, name), tmp_path) for name in names}
    assert {name for name in names if after[name] != before[name]} == expected


MUTABLE_GLOBALS = {
    "PFX_stages": """
    import chkpt

    COLUMNS = ["a", "b"]
    WEIGHTS = {"a": 1}
    CACHE = {}

    @chkpt.Stage.wrap()
    def columns():
        return list(COLUMNS)

    @chkpt.Stage.wrap()
    def weighted():
        return WEIGHTS["a"]

    @chkpt.Stage.wrap()
    def cached():
        CACHE["n"] = CACHE.get("n", 0) + 1
        return CACHE["n"]
"""
}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [('COLUMNS = ["a", "b"]', 'COLUMNS = ["a", "c"]', {"columns"}), ('{"a": 1}', '{"a": 2}', {"weighted"})],
)
def test_editing_a_mutable_module_global_in_the_file_changes_the_key(
    modules: Modules, tmp_path: Path, old: str, new: str, expected: set[str]
) -> None:
    names = ("columns", "weighted", "cached")
    base = modules.load(MUTABLE_GLOBALS)
    before = {name: key_of(getattr(base, name), tmp_path) for name in names}
    changed = modules.load(edited(MUTABLE_GLOBALS, "PFX_stages", old, new))
    after = {name: key_of(getattr(changed, name), tmp_path) for name in names}
    assert {name for name in names if after[name] != before[name]} == expected


def test_a_mutable_module_global_changed_at_run_time_keeps_the_key(modules: Modules, tmp_path: Path) -> None:
    # A module-level cache that a stage fills is keyed by the statement that creates it, not by its contents:
    # otherwise every run would change the key and nothing could ever be loaded.
    stages = modules.load(MUTABLE_GLOBALS)
    first = key_of(stages.cached, tmp_path)
    stages.COLUMNS.append("z")
    assert key_of(stages.cached, tmp_path) == first
    assert key_of(stages.columns, tmp_path) == key_of(stages.columns, tmp_path)
    assert stages.CACHE["n"] == 2


LIBRARIES = {
    "PFX_stages": """
    import json
    import math
    import os.path
    from json import dumps

    import chkpt
    import hypothesis
    from hypothesis import strategies

    @chkpt.Stage.wrap()
    def uses_stdlib():
        return math.sqrt(16) + len(json.dumps({"a": 1})) + len(dumps([1])) + len(os.path.join("a", "b"))

    @chkpt.Stage.wrap()
    def uses_package():
        return [hypothesis.__version__, repr(strategies.integers(0, 3))]
"""
}


def test_stdlib_and_installed_package_calls_keep_keys_stable(modules: Modules, tmp_path: Path) -> None:
    first = modules.load(LIBRARIES)
    stdlib_key, package_key = key_of(first.uses_stdlib, tmp_path), key_of(first.uses_package, tmp_path)
    assert (key_of(first.uses_stdlib, tmp_path), key_of(first.uses_package, tmp_path)) == (stdlib_key, package_key)
    second = modules.load(LIBRARIES)
    assert (key_of(second.uses_stdlib, tmp_path), key_of(second.uses_package, tmp_path)) == (stdlib_key, package_key)
    # The stage's own code still counts.
    third = modules.load(edited(LIBRARIES, "PFX_stages", "math.sqrt(16)", "math.sqrt(25)"))
    assert key_of(third.uses_stdlib, tmp_path) != stdlib_key


RECURSION = {
    "PFX_stages": """
    import chkpt

    def is_even(n):
        return True if n == 0 else is_odd(n - 1)

    def is_odd(n):
        return False if n == 0 else is_even(n - 1)

    def factorial(n):
        return 1 if n <= 1 else n * factorial(n - 1)

    @chkpt.Stage.wrap()
    def parity():
        return [is_even(10), factorial(5)]
"""
}


def key_within(seconds: float, target: chkpt.Stage[..., Any], tmp_path: Path) -> str:
    """The key, computed in a thread so that a fingerprint that never ends fails the test instead of hanging."""
    found: list[str] = []
    worker = threading.Thread(target=lambda: found.append(key_of(target, tmp_path)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "key computation did not terminate"
    assert len(found) == 1
    return found[0]


def test_mutually_recursive_helpers_terminate_and_count(modules: Modules, tmp_path: Path) -> None:
    before = key_within(30, modules.load(RECURSION).parity, tmp_path)
    assert key_within(30, modules.load(RECURSION).parity, tmp_path) == before
    odd = modules.load(edited(RECURSION, "PFX_stages", "return False if n == 0", "return n < 0 if n == 0"))
    assert key_within(30, odd.parity, tmp_path) != before
    fact = modules.load(edited(RECURSION, "PFX_stages", "1 if n <= 1", "1 if n <= 0"))
    assert key_within(30, fact.parity, tmp_path) != before


PINNED = {
    "PFX_stages": """
    import chkpt

    WEIGHT = 2

    def helper():
        return 10

    @chkpt.Stage.wrap(version="1")
    def pinned():
        return helper() * WEIGHT
"""
}


def test_a_pinned_version_keeps_the_key_through_code_edits(modules: Modules, tmp_path: Path) -> None:
    before = key_of(modules.load(PINNED).pinned, tmp_path)
    code_edit = modules.load(edited(PINNED, "PFX_stages", "helper() * WEIGHT", "helper() * WEIGHT + 1"))
    assert code_edit.pinned() == 21
    assert key_of(code_edit.pinned, tmp_path) == before
    helper_edit = modules.load(edited(PINNED, "PFX_stages", "return 10", "return 11"))
    assert key_of(helper_edit.pinned, tmp_path) == before
    constant_edit = modules.load(edited(PINNED, "PFX_stages", "WEIGHT = 2", "WEIGHT = 3"))
    assert key_of(constant_edit.pinned, tmp_path) == before
    bumped = modules.load(edited(PINNED, "PFX_stages", 'version="1"', 'version="2"'))
    assert key_of(bumped.pinned, tmp_path) != before


def make_scaler(factor: int) -> chkpt.Stage[..., list[int]]:
    @chkpt.Stage.wrap(name="scaler")
    def scaler(xs: list[int]) -> list[int]:
        return [x * factor for x in xs]

    return scaler


def make_adder(n: object) -> chkpt.Stage[..., list[object]]:
    return chkpt.Stage(lambda xs: [x + n for x in xs], name="adder")


def make_applier(fn: Any) -> chkpt.Stage[..., Any]:
    return chkpt.Stage(lambda xs: fn(xs), name="applier")


def test_closure_values_are_part_of_the_key(tmp_path: Path) -> None:
    two, three = key_of(numbers >> make_scaler(2), tmp_path), key_of(numbers >> make_scaler(3), tmp_path)
    assert two != three
    assert key_of(numbers >> make_scaler(2), tmp_path) == two
    assert (numbers >> make_scaler(3))(chkpt.Config(dir=tmp_path, store=False, verbose=False)) == [3, 6, 9]

    one = key_of(numbers >> make_adder(1), tmp_path)
    assert key_of(numbers >> make_adder(1), tmp_path) == one
    assert key_of(numbers >> make_adder(5), tmp_path) != one
    assert key_of(numbers >> make_adder(1.0), tmp_path) != one

    double = key_of(numbers >> make_applier(plain_double), tmp_path)
    assert key_of(numbers >> make_applier(plain_double), tmp_path) == double
    assert key_of(numbers >> make_applier(plain_triple), tmp_path) != double


CLASSES = {
    "PFX_stages": """
    import chkpt

    class Scaler:
        def __init__(self, factor):
            self.factor = factor

        def apply(self, x):
            return x * self.factor

    @chkpt.Stage.wrap()
    def scaled():
        return Scaler(3).apply(2)
"""
}


def test_editing_a_method_of_a_user_class_a_stage_uses_changes_its_key(modules: Modules, tmp_path: Path) -> None:
    before = key_of(modules.load(CLASSES).scaled, tmp_path)
    assert key_of(modules.load(CLASSES).scaled, tmp_path) == before
    after = modules.load(edited(CLASSES, "PFX_stages", "x * self.factor", "x + self.factor"))
    assert after.scaled() == 5
    assert key_of(after.scaled, tmp_path) != before


PARTIALS = {
    "PFX_stages": """
    import functools

    import chkpt

    def power(x, exponent):
        return x**exponent

    class Multiplier:
        def __init__(self, factor):
            self.factor = factor

        def __call__(self, x):
            return x * self.factor

    squared = chkpt.Stage(functools.partial(power, exponent=2), name="powered")
    cubed = chkpt.Stage(functools.partial(power, exponent=3), name="powered")
    doubled = chkpt.Stage(Multiplier(2), name="multiplied")
    tripled = chkpt.Stage(Multiplier(3), name="multiplied")
"""
}


def test_a_partial_stage_keys_its_function_and_arguments(modules: Modules, tmp_path: Path) -> None:
    base = modules.load(PARTIALS)
    squared = key_of((3,) >> base.squared, tmp_path)
    assert base.squared(3) == 9
    assert key_of((3,) >> base.cubed, tmp_path) != squared  # other bound arguments
    edited_module = modules.load(edited(PARTIALS, "PFX_stages", "x**exponent", "x**exponent + 1"))
    assert edited_module.squared(3) == 10
    assert key_of((3,) >> edited_module.squared, tmp_path) != squared  # the wrapped function's code changed


def test_a_callable_object_stage_keys_its_state_and_code(modules: Modules, tmp_path: Path) -> None:
    base = modules.load(PARTIALS)
    doubled = key_of((3,) >> base.doubled, tmp_path)
    assert key_of((3,) >> base.tripled, tmp_path) != doubled  # other state
    edited_module = modules.load(edited(PARTIALS, "PFX_stages", "x * self.factor", "x * self.factor + 1"))
    assert key_of((3,) >> edited_module.doubled, tmp_path) != doubled  # the class's code changed


# --- rule 9: keys are taken when the run is planned ---------------------------------------------------------

RULE9 = {
    "r9down.py": """
        import chkpt

        @chkpt.Stage.wrap()
        def down(x):
            return x * 10
    """,
    "r9pipe.py": """
        import json
        import os
        import pathlib
        import sys

        import chkpt
        import r9down

        def edit_downstream():
            path = pathlib.Path(r9down.__file__)
            path.write_text(path.read_text().replace("x * 10", "x * 20"))

        @chkpt.Stage.wrap()
        def editor():
            if os.environ.get("KEYS_TEST_EDIT") == "during-run":
                edit_downstream()
            return 1

        pipeline = editor >> r9down.down

        def main():
            if os.environ.get("KEYS_TEST_EDIT") == "before-plan":
                edit_downstream()
            directory = os.environ["KEYS_TEST_DIR"]
            if sys.argv[1] == "plan":
                config = chkpt.Config(dir=directory, store=False, verbose=False)
            else:
                config = chkpt.Config(dir=directory, load=True, store=True, verbose=False)
            run = pipeline.run(config)
            print(json.dumps({"value": run.value, "records": {r.name: [r.key, r.outcome] for r in run.records}}))

        if __name__ == "__main__":
            main()
    """,
}


def rule9_setup(tmp_path: Path) -> tuple[Path, Any]:
    for name, source in RULE9.items():
        write(tmp_path / name, source)
    store = tmp_path / "checkpoints"

    def run(mode: str, edit: str = "") -> Any:
        return last_json(python(["r9pipe.py", mode], tmp_path, KEYS_TEST_DIR=str(store), KEYS_TEST_EDIT=edit))

    return store, run


def test_a_stage_that_edits_a_downstream_module_does_not_get_its_result_stored_under_the_new_code(
    tmp_path: Path,
) -> None:
    store, run = rule9_setup(tmp_path)
    old = run("plan")  # a fresh process, old source
    assert old["value"] == 10
    old_key = old["records"]["down"][0]

    during = run("run", "during-run")
    assert "x * 20" in (tmp_path / "r9down.py").read_text()
    assert during["value"] == 10  # the code that ran is the old one...
    assert during["records"]["down"] == [old_key, "stored"]  # ...and its result is stored under the old key
    assert sorted(p.name for p in (store / "down").glob("*.json")) == [f"{old_key}.json"]
    record = json.loads(
        (store / "down" / f"{old_key}.json").read_text().splitlines()[0].removeprefix('{"chkpt": ')[:-1]
    )
    assert record["key"] == old_key

    fresh = run("run")  # a fresh process with the edited file, load=True
    assert fresh["records"]["editor"][1] == "loaded"
    new_key, outcome = fresh["records"]["down"]
    assert new_key != old_key
    assert outcome == "stored"
    assert fresh["value"] == 20
    assert run("plan")["records"]["down"][0] == new_key


def test_a_module_edited_after_import_but_before_planning_is_not_keyed_by_its_new_source(tmp_path: Path) -> None:
    # The process runs the code it imported; the file on disk is already the next version.
    _, run = rule9_setup(tmp_path)
    edited_then_run = run("run", "before-plan")
    assert "x * 20" in (tmp_path / "r9down.py").read_text()
    assert edited_then_run["value"] == 10
    stale_key = edited_then_run["records"]["down"][0]

    new_key = run("plan")["records"]["down"][0]  # what a fresh process computes for the new source
    assert stale_key != new_key
    fresh = run("run")
    assert fresh["records"]["down"] == [new_key, "stored"]
    assert fresh["value"] == 20


# --- module identity: however the file is started -----------------------------------------------------------

IDENTITY = """
    import os

    import chkpt

    SCALE = 3

    def helper(x):
        return x * SCALE

    @chkpt.Stage.wrap()
    def first():
        return 2

    @chkpt.Stage.wrap()
    def second(x):
        return BODY

    def main():
        config = chkpt.Config(dir=os.environ["KEYS_TEST_DIR"], store=False, verbose=False)
        run = (first >> second).run(config)
        print(run.records[-1].key)

    if __name__ == "__main__":
        main()
"""


def keys_three_ways(tmp_path: Path, script: str, module: str) -> list[str]:
    directory = str(tmp_path / "checkpoints")
    ways = [[script], ["-m", module], ["-c", f"import {module}; {module}.main()"]]
    return [python(way, tmp_path, KEYS_TEST_DIR=directory).strip().splitlines()[-1] for way in ways]


def test_a_stage_has_the_same_key_as_a_script_with_m_and_imported(tmp_path: Path) -> None:
    write(tmp_path / "pipeline.py", IDENTITY.replace("BODY", "x + 1"))
    script, as_module, imported = keys_three_ways(tmp_path, "pipeline.py", "pipeline")
    assert len(script) == 32
    assert script == as_module == imported


def test_a_stage_calling_a_same_module_helper_has_the_same_key_however_started(tmp_path: Path) -> None:
    write(tmp_path / "pipeline.py", IDENTITY.replace("BODY", "helper(x)"))
    script, as_module, imported = keys_three_ways(tmp_path, "pipeline.py", "pipeline")
    assert script == as_module == imported


def test_a_stage_in_a_package_has_the_same_key_as_a_script_with_m_and_imported(tmp_path: Path) -> None:
    write(tmp_path / "kpkg" / "__init__.py", "")
    write(tmp_path / "kpkg" / "mod.py", IDENTITY.replace("BODY", "x + 1"))
    script, as_module, imported = keys_three_ways(tmp_path, "kpkg/mod.py", "kpkg.mod")
    assert script == as_module == imported


def test_module_identity_derives_the_name_from_the_file(tmp_path: Path) -> None:
    write(tmp_path / "kpkg" / "__init__.py", "")
    write(tmp_path / "kpkg" / "inner" / "__init__.py", "")
    assert (
        chkpt_modules.module_name_for_file(str(write(tmp_path / "kpkg" / "inner" / "mod.py", ""))) == "kpkg.inner.mod"
    )
    assert chkpt_modules.module_name_for_file(str(write(tmp_path / "top.py", ""))) == "top"
    assert chkpt_modules.module_identity("some.module") == "some.module"


# --- no data hashing ----------------------------------------------------------------------------------------

SOURCE_DATA: list[int] = [1, 2, 3]


@chkpt.Stage.wrap()
def produce() -> list[int]:
    return list(SOURCE_DATA)


@chkpt.Stage.wrap()
def big_blob() -> bytes:
    return b"\x01" * (50 * 1024 * 1024)


@chkpt.Stage.wrap()
def blob_size(blob: bytes) -> int:
    return len(blob)


def test_keys_do_not_look_at_values(tmp_path: Path) -> None:
    pipeline = produce >> total
    config = chkpt.Config(dir=tmp_path, store=False, verbose=False)
    before = pipeline.run(config)
    SOURCE_DATA.extend(range(100_000))
    try:
        after = pipeline.run(config)
    finally:
        del SOURCE_DATA[3:]
    assert after.value != before.value
    # Same code, same inputs: the same keys, whatever the values are (values are never hashed).
    assert [(r.name, r.key) for r in after.records] == [(r.name, r.key) for r in before.records]


class HashSpy:
    """Stands in for hashlib.sha256 and counts the bytes hashed."""

    fed: ClassVar[list[int]] = []
    real = hashlib.sha256

    def __init__(self, data: bytes = b"") -> None:
        self._hash = HashSpy.real(data)
        HashSpy.fed.append(len(data))

    def update(self, data: bytes) -> None:
        HashSpy.fed.append(len(data))
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def test_a_large_value_passed_between_stages_is_not_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    HashSpy.fed = []
    monkeypatch.setattr(hashlib, "sha256", HashSpy)
    run = (big_blob >> blob_size).run(chkpt.Config(dir=tmp_path, store=["blob_size"], verbose=False))
    assert run.value == 50 * 1024 * 1024
    assert [(r.name, r.outcome) for r in run.records] == [("big_blob", "computed"), ("blob_size", "stored")]
    assert HashSpy.fed, "the spy saw no hashing at all, so it measured nothing"
    assert sum(HashSpy.fed) < 1_000_000


# --- chkpt.canonical ----------------------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8)
)
hashables = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)
values = st.recursive(
    hashables,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.sets(hashables, max_size=4)
    ),
    max_leaves=20,
)


def strict(value: Any) -> Any:
    """A comparable form in which values are equal only when they are the same types all the way down (1, 1.0
    and True differ; so do 0.0 and -0.0, and a list and a tuple); set and frozenset compare as Python does."""
    kind = type(value)
    if kind is float:
        return ("float", value.hex())
    if kind in (list, tuple):
        return (kind.__name__, [strict(item) for item in value])
    if kind in (set, frozenset):
        return ("set", sorted(repr(strict(item)) for item in value))
    if kind is dict:
        return ("dict", sorted(repr((strict(k), strict(v))) for k, v in value.items()))
    return (kind.__name__, value)


def reordered(value: Any) -> Any:
    """An equal value built in another order: dicts and sets filled back to front, containers copied."""
    kind = type(value)
    if kind is list:
        return [reordered(item) for item in value]
    if kind is tuple:
        return tuple(reordered(item) for item in value)
    if kind is dict:
        return {k: reordered(v) for k, v in reversed(list(value.items()))}
    if kind in (set, frozenset):
        return kind(reversed(list(value)))
    return value


@settings(max_examples=300)
@given(values)
def test_canonical_equal_values_give_equal_digests(value: Any) -> None:
    assert canonical.digest(value) == canonical.digest(value)
    assert canonical.digest(reordered(value)) == canonical.digest(value)


@settings(max_examples=300)
@given(values, values)
def test_canonical_digests_differ_exactly_when_values_differ(a: Any, b: Any) -> None:
    assert (canonical.digest(a) == canonical.digest(b)) == (strict(a) == strict(b))


@given(st.integers())
def test_canonical_int_float_and_bool_differ(n: int) -> None:
    digests = {canonical.digest(n), canonical.digest(str(n))}
    if abs(n) < 2**53:
        digests.add(canonical.digest(float(n)))
    if n in (0, 1):
        digests.add(canonical.digest(bool(n)))
    assert len(digests) == 2 + (abs(n) < 2**53) + (n in (0, 1))


def test_canonical_ints_too_long_for_str_have_digests_of_their_own() -> None:
    # str() refuses ints of over 4,300 digits; a key must not
    big = 10**5000
    assert canonical.digest(big) == canonical.digest(10**5000)
    assert len({canonical.digest(big), canonical.digest(big + 1), canonical.digest(-big), canonical.digest(0)}) == 4


@given(st.lists(values, max_size=4))
def test_canonical_list_and_tuple_differ(items: list[Any]) -> None:
    assert canonical.digest(items) != canonical.digest(tuple(items))
    assert canonical.digest([items]) != canonical.digest([tuple(items)])


@given(st.dictionaries(st.text(max_size=4), st.integers(), min_size=2, max_size=6), st.randoms())
def test_canonical_dict_insertion_order_does_not_matter(mapping: dict[str, int], random: Any) -> None:
    items = list(mapping.items())
    random.shuffle(items)
    assert canonical.digest(dict(items)) == canonical.digest(mapping)
    assert canonical.digest({"outer": dict(items)}) == canonical.digest({"outer": mapping})


def test_canonical_tricky_pairs_all_differ() -> None:
    cases: list[Any] = [
        None, False, True, 0, 1, 0.0, -0.0, 1.0, "", "0", b"", b"0", (), [], {}, frozenset(),
        [1], (1,), [[1], 2], [[1, 2]], [1, [2]], ("ab",), ("a", "b"), {"a": "bc"}, {"ab": "c"},
        {1: 2}, {2: 1}, {"a": 1, "b": 2}, {"a": 2, "b": 1}, frozenset({(1, 2)}), frozenset({1, 2}),
        {True: 1}, {1.0: 1}, [None], [None, None], "a", b"a", 2**64, -(2**64), 1 + 2j, 1e300,
    ]  # fmt: skip
    digests = [canonical.digest(case) for case in cases]
    assert len(set(digests)) == len(cases)


def test_canonical_nan_has_one_digest() -> None:
    assert canonical.digest(float("nan")) == canonical.digest(float("nan"))
    assert canonical.digest([float("nan")]) == canonical.digest([float("nan")])


def test_canonical_sets_and_frozensets_compare_like_python() -> None:
    assert canonical.digest({1, 2, 3}) == canonical.digest({3, 2, 1}) == canonical.digest(frozenset({2, 1, 3}))
    assert canonical.digest({"x", "y"}) != canonical.digest({"x", "z"})
    assert canonical.digest(b"ab") == canonical.digest(bytearray(b"ab"))


def test_canonical_digest_of_a_set_of_strings_is_the_same_in_every_process(tmp_path: Path) -> None:
    code = "from chkpt import canonical; print(canonical.digest({'alpha', 'beta', 'gamma', 'delta'}).hex())"
    seeds = ["0", "1", "2", "12345"]
    digests = {python(["-c", code], tmp_path, PYTHONHASHSEED=seed).strip() for seed in seeds}
    assert digests == {canonical.digest({"alpha", "beta", "gamma", "delta"}).hex()}


def test_canonical_nested_containers() -> None:
    nested = {"a": [1, (2, {"b": frozenset({3, 4})})], "c": {"d": [None, True, 1.5, b"x"]}}
    same = {"c": {"d": [None, True, 1.5, b"x"]}, "a": [1, (2, {"b": frozenset({4, 3})})]}
    assert canonical.digest(nested) == canonical.digest(same)
    deeper = {"c": {"d": [None, True, 1.5, b"y"]}, "a": [1, (2, {"b": frozenset({4, 3})})]}
    assert canonical.digest(deeper) != canonical.digest(nested)
    shared = [1]
    assert canonical.digest([shared, shared]) == canonical.digest([[1], [1]])  # shared is not cyclic


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Shade(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: int
    y: object = None


@dataclasses.dataclass(frozen=True)
class FrozenPoint:
    x: int
    y: object = None


def test_canonical_supports_enums_paths_dates_decimals_and_dataclasses() -> None:
    d = canonical.digest
    assert d(Color.RED) == d(Color.RED)
    # a member by its name and its value: an edit of `RED = 1` changes what a bound RED means
    Edited = enum.Enum("Color", {"RED": 7, "GREEN": 2}, module=__name__, qualname="Color")  # type: ignore[misc]
    assert d(Edited.RED) != d(Color.RED) and d(Edited.GREEN) == d(Color.GREEN)
    assert len({d(Color.RED), d(Color.GREEN), d(Shade.RED), d("RED"), d(1), d(Level.LOW)}) == 6

    assert d(pathlib.PurePosixPath("a/b")) == d(pathlib.PurePosixPath("a") / "b")
    assert len({d(pathlib.PurePosixPath("a/b")), d(pathlib.PurePosixPath("a/c")), d("a/b")}) == 3

    day = datetime.date(2024, 1, 2)
    moment = datetime.datetime(2024, 1, 2)
    aware = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
    assert d(day) == d(datetime.date(2024, 1, 2))
    assert len({d(day), d(moment), d(aware), d(datetime.date(2024, 1, 3)), d(day.isoformat())}) == 5
    assert d(datetime.time(12, 30)) != d(datetime.time(12, 31))
    assert d(datetime.timedelta(days=1)) == d(datetime.timedelta(hours=24))
    assert d(datetime.timedelta(days=1)) != d(datetime.timedelta(days=1, microseconds=1))

    assert d(decimal.Decimal("1.5")) == d(decimal.Decimal("1.5"))
    assert len({d(decimal.Decimal("1.5")), d(1.5), d("1.5"), d(decimal.Decimal("1.6"))}) == 4
    assert d(fractions.Fraction(1, 3)) == d(fractions.Fraction(2, 6))
    assert d(fractions.Fraction(1, 3)) != d(fractions.Fraction(1, 4))
    assert d(range(3)) != d([0, 1, 2])
    assert d(Name("x")) == d(Name("x"))
    assert d(Name("x")) != d("x")

    assert d(Point(1, [2])) == d(Point(1, [2]))
    assert len({d(Point(1, 2)), d(Point(2, 1)), d(FrozenPoint(1, 2)), d({"x": 1, "y": 2})}) == 4
    assert d(Point(1, Point(2, {"k": Color.RED}))) == d(Point(1, Point(2, {"k": Color.RED})))
    assert d(Point(1, Point(2))) != d(Point(1, Point(3)))


def generator() -> Any:
    yield 1


def test_canonical_rejects_what_has_no_canonical_form() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    cyclic_dict: dict[str, Any] = {}
    cyclic_dict["self"] = cyclic_dict
    cyclic_point = Point(1, [])
    cyclic_point.y.append(cyclic_point)  # type: ignore[attr-defined]
    for value in (
        cyclic,
        [[cyclic]],
        cyclic_dict,
        cyclic_point,
        object(),
        [1, object()],
        {"a": {"b": object()}},
        lambda: 1,
        plain_double,
        generator(),
        Point,  # a dataclass type is not a dataclass instance
        threading.Lock(),
    ):
        with pytest.raises(canonical.Unhashable):
            canonical.digest(value)


def test_an_unhashable_bound_parameter_or_constant_is_a_clear_error() -> None:
    with pytest.raises(chkpt.PipelineError, match="factor"):
        scale.bind(factor=object())
    with pytest.raises(chkpt.PipelineError):
        (numbers, object()) >> pair


# --- where code comes from ----------------------------------------------------------------------------------


def test_module_origin(modules: Modules) -> None:
    user = modules.load({"PFX_stages": "VALUE = 1\n"})
    assert chkpt_modules.module_origin("json") == "stdlib"
    assert chkpt_modules.module_origin("os.path") == "stdlib"
    assert chkpt_modules.module_origin("sys") == "stdlib"
    assert chkpt_modules.module_origin("math") == "stdlib"
    assert chkpt_modules.module_origin("hypothesis") == "package"
    assert chkpt_modules.module_origin("pytest") == "package"
    assert chkpt_modules.module_origin("hypothesis.strategies") == "package"
    assert chkpt_modules.module_origin(user.__name__) == "user"
    assert chkpt_modules.module_origin("__main__") == "user"
    assert chkpt_modules.module_origin(__name__) == "user"  # this test file
    assert chkpt_modules.module_origin("chkpt") == "package"


# --- watch: what a stage reads outside the graph ------------------------------------------------------------------


def fetched() -> str:
    return "page"


def test_what_a_watch_returns_is_part_of_the_key_and_it_must_be_bytes(tmp_path: Path) -> None:
    etag = [b"v1"]
    stage = chkpt.Stage(fetched, watch=lambda: etag[0])
    first = key_of(stage, tmp_path)
    assert key_of(stage, tmp_path) == first
    etag[0] = b"v2"
    assert key_of(stage, tmp_path) != first

    wrongs: list[tuple[object, str]] = [("v1", "not a str; use .encode()"), (None, "not a NoneType")]
    for wrong, hint in wrongs:
        stage = chkpt.Stage(fetched, watch=functools.partial(lambda value: value, wrong))
        with pytest.raises(chkpt.PipelineError, match=f"stage 'fetched': its watch must return bytes, {hint}"):
            key_of(stage, tmp_path)
    with pytest.raises(chkpt.PipelineError, match="stage 'fetched': watch must be a function of no arguments"):
        chkpt.Stage(fetched, watch=b"v1")  # type: ignore[arg-type]


def test_an_error_in_a_watch_is_raised_as_itself_with_a_note_naming_the_stage(tmp_path: Path) -> None:
    def failing() -> bytes:
        raise LookupError("no such page")

    with pytest.raises(LookupError, match="no such page") as info:
        key_of(chkpt.Stage(fetched, watch=failing), tmp_path)
    assert any("watch of stage 'fetched'" in note for note in getattr(info.value, "__notes__", []))


def test_stage_wrap_without_parentheses_says_to_add_them() -> None:
    with pytest.raises(chkpt.PipelineError, match=r"write @chkpt.Stage.wrap\(\) with parentheses over fetched"):
        chkpt.Stage.wrap(fetched)  # type: ignore[arg-type]


def remainder(n: int) -> int:
    return n % 7


def test_a_bound_int_too_long_for_str_is_keyed_shown_and_sent_to_a_worker(tmp_path: Path) -> None:
    stage = chkpt.Stage(remainder).bind(n=10**5000)
    assert repr(stage) == "Stage(remainder, n=<int too long to show>)"
    pipeline = () >> stage
    assert "int too long to show" in pipeline.to_mermaid()
    config = chkpt.Config(dir=tmp_path, load=True, verbose=False, executor="processes", workers=1)
    assert pipeline.run(config).value == 10**5000 % 7
    assert [r.outcome for r in pipeline.run(config).records] == ["loaded"]


ODD_OBJECTS = {
    "a proxy whose __getattr__ makes a new callable for every name": """
    import chkpt

    class Path:
        def __init__(self, parts=()):
            self.parts = parts

        def __getattr__(self, name):
            return Path(self.parts + (name,))

        def __call__(self, *args):
            return ".".join(self.parts)

    ROOT = Path()

    @chkpt.Stage.wrap()
    def s():
        return ROOT.users.name()
    """,
    "settings whose __getattr__ raises KeyError": """
    import chkpt

    class Settings:
        def __init__(self, values):
            self.__dict__["values"] = values

        def __getattr__(self, name):
            return self.__dict__["values"][name]

    SETTINGS = Settings({"rate": 2})

    @chkpt.Stage.wrap()
    def s():
        return SETTINGS.rate
    """,
    "a lazy proxy whose factory fails (it must not be called)": """
    import chkpt

    class Lazy:
        def __init__(self, factory):
            self.__dict__["factory"] = factory

        def __getattr__(self, name):
            return getattr(self.__dict__["factory"](), name)

    def connect():
        raise ConnectionError("database unreachable")

    DB = Lazy(connect)

    @chkpt.Stage.wrap()
    def s(use_db=False):
        return DB.query() if use_db else 1
    """,
    "a script imported in the body on a branch that never runs": """
    import chkpt

    @chkpt.Stage.wrap()
    def s(rarely=False):
        if rarely:
            import PFX_script
        return 1
    """,
    "a thousand module-level lists each built from the one before": "import chkpt\nSTEP0 = [0]\n"
    + "".join(f"STEP{i} = STEP{i - 1} + [{i}]\n" for i in range(1, 1000))
    + "\n@chkpt.Stage.wrap()\ndef s():\n    return len(STEP999)\n",
}


@pytest.mark.parametrize("case", ODD_OBJECTS, ids=list(ODD_OBJECTS))
def test_planning_neither_runs_nor_trips_over_the_users_objects(modules: Modules, tmp_path: Path, case: str) -> None:
    files = {"PFX_stages": ODD_OBJECTS[case], "PFX_script": "import sys\nsys.exit('usage: script --n N')\n"}
    loaded = modules.load(files)
    first = key_of(loaded.s, tmp_path)
    assert key_of(loaded.s, tmp_path) == first


IN_BODY = {
    "PFX_pkg/__init__": "",
    "PFX_pkg/helpers": """
    def clean(x):
        return x * 3
    """,
    "PFX_pkg/stages": """
    import chkpt

    @chkpt.Stage.wrap()
    def s():
        from . import helpers

        return helpers.clean(2)
    """,
}


def test_a_module_imported_from_a_package_in_the_body_keeps_its_key_once_run(modules: Modules, tmp_path: Path) -> None:
    loaded = modules.load(IN_BODY, main="PFX_pkg.stages")
    first = key_of(loaded.s, tmp_path)  # plans import PFX_pkg.helpers to follow it, as the run does
    assert loaded.s.func() == 6
    assert key_of(loaded.s, tmp_path) == first
    edited_module = modules.load(edited(IN_BODY, "PFX_pkg/helpers", "x * 3", "x * 1000"), main="PFX_pkg.stages")
    assert key_of(edited_module.s, tmp_path) != first


def test_a_package_imported_in_the_body_has_one_key_whether_imported_yet_or_not(tmp_path: Path) -> None:
    # yaml is PyYAML's import name (the test extras bring it): its version must not depend on it being imported
    code = (
        "import importlib, sys, chkpt\n"
        "if sys.argv[1] == 'first':\n    importlib.import_module('yaml')\n"
        "@chkpt.Stage.wrap()\ndef s():\n    import yaml\n    return 1\n"
        "print((() >> s).run(chkpt.Config(store=False, verbose=False)).records[-1].key)\n"
    )
    keys = {python(["-c", code, order], tmp_path).strip() for order in ("first", "not")}
    assert len(keys) == 1, keys
