"""The README's set-up commands stay the ones CI runs, and every name the README documents is public."""

from __future__ import annotations

import re
from pathlib import Path

import chkpt

ROOT = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block is not None, "the README starts with a ```sh block of set-up commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_has_exactly_two_setup_commands() -> None:
    install_and_example, install_and_test = setup_commands()
    assert "pip install ." in install_and_example and "examples/quickstart.py" in install_and_example
    assert '".[test]"' in install_and_test and "pytest" in install_and_test
    assert (ROOT / "examples" / "quickstart.py").is_file()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert setup_commands()[1] in ci


def test_every_public_name_is_documented() -> None:
    documented = (ROOT / "README.md").read_text() + (ROOT / "docs" / "architecture.md").read_text()
    for name in chkpt.__all__:
        if name != "__version__":
            assert re.search(rf"\b{name}\b", documented), f"{name} is exported but not documented"
