"""The progress line and the run's summary: drawn on a terminal (a pseudo-terminal here, as a person's shell
gives), absent when stderr is a pipe or a file, and the summary as data on `Run`."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import chkpt

CHILD = """
import sys, time
if {plain}:
    sys.modules["tqdm"] = None  # as if tqdm were not installed
import chkpt

@chkpt.Stage.wrap()
def first():
    time.sleep(0.25)
    return 1

@chkpt.Stage.wrap()
def second(x):
    time.sleep(0.25)
    return x + 1

@chkpt.Stage.wrap()
def third(x):
    time.sleep(0.25)
    return x + 1

run = (first >> second >> third).run(chkpt.Config(dir=sys.argv[1], progress={progress}))
print("value", run.value, flush=True)
"""

HAVE_TQDM = importlib.util.find_spec("tqdm") is not None


def environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "CI"}


def in_a_terminal(script: str, store: Path) -> str:
    """What the child writes to its terminal (stdout and stderr both on the pty)."""
    leader, follower = pty.openpty()
    # 24 rows of 100 columns, as a terminal window has (a new pty has none, and tqdm sizes its bar by it)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(store)], stdin=follower, stdout=follower, stderr=follower, env=environment()
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif child.poll() is not None:
            break
    os.close(leader)
    assert child.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_line_that_updates_as_stages_finish(tmp_path: Path) -> None:
    out = in_a_terminal(CHILD.format(plain=True, progress=None), tmp_path / "store")
    for done in range(4):
        assert f"\rchkpt: {done}/3 stages" in out, out
    for stage in ("first", "second", "third"):
        assert f"s  {stage}" in out  # the stage now running
    assert "chkpt: third computed in" in out and "chkpt done: 3 stages: 0 loaded, 3 computed (3 stored)" in out
    assert "value 3" in out
    # the line is wiped before each log line, so no log line starts after a progress text
    for line in out.replace("\r\n", "\n").split("\n"):
        if "computed in" in line:
            assert line.rsplit("\r", 1)[-1].startswith("chkpt: "), repr(line)


@pytest.mark.skipif(not HAVE_TQDM, reason="tqdm is the optional chkpt[progress] extra; the test extras include it")
def test_tqdm_draws_the_bar_when_installed(tmp_path: Path) -> None:
    out = in_a_terminal(CHILD.format(plain=False, progress=None), tmp_path / "store")
    assert "3/3" in out and "stage" in out and "\r" in out
    assert "chkpt done: 3 stages" in out


def test_no_progress_when_stderr_is_no_terminal(tmp_path: Path) -> None:
    for plain in (True, False):
        done = subprocess.run(
            [sys.executable, "-c", CHILD.format(plain=plain, progress=None), str(tmp_path / f"s{plain}")],
            capture_output=True,
            env=environment(),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert b"\r" not in done.stderr and b"stages  " not in done.stderr and b"%|" not in done.stderr
        assert done.stderr.splitlines()[-1].startswith(b"chkpt done: 3 stages")


def test_progress_true_draws_even_into_a_pipe_and_ci_turns_the_default_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(plain=True, progress=True), str(tmp_path / "forced")],
        capture_output=True,
        env=environment(),
        timeout=60,
    )
    assert b"\rchkpt: 3/3 stages" in done.stderr
    from chkpt import progress

    class Terminal:
        def isatty(self) -> bool:
            return True

    # CI services set CI themselves, so the test sets and clears it rather than trusting the machine's
    monkeypatch.delenv("CI", raising=False)
    assert progress.wanted(None, Terminal())  # type: ignore[arg-type]
    monkeypatch.setenv("CI", "true")
    assert not progress.wanted(None, Terminal())  # type: ignore[arg-type]
    assert progress.wanted(True, Terminal())  # type: ignore[arg-type]
    with pytest.raises(chkpt.ConfigError, match="progress"):
        chkpt.Config(progress="yes")  # type: ignore[arg-type]


@chkpt.Stage.wrap()
def slow_source() -> list[int]:
    time.sleep(0.3)
    return list(range(100))


@chkpt.Stage.wrap()
def total(values: list[int]) -> int:
    return sum(values)


def test_the_summary_is_data_on_the_run(tmp_path: Path) -> None:
    config = chkpt.Config(dir=tmp_path, verbose=False, progress=False)
    first = (slow_source >> total).run(config)
    assert first.skipped == 0 and first.seconds_saved == 0
    assert first.bytes_stored == sum(r.bytes or 0 for r in first.records) > 0
    again = (slow_source >> total).run(chkpt.Config(dir=tmp_path, verbose=False, progress=False, load=True))
    assert again.skipped == 1 and [r.outcome for r in again.records] == ["loaded"]
    extended = (slow_source >> total).run(
        chkpt.Config(dir=tmp_path, verbose=False, progress=False, load=["slow_source"])
    )
    (loaded,) = [r for r in extended.records if r.outcome == "loaded"]
    assert loaded.saved is not None and loaded.saved >= 0.3  # how long slow_source took when it was stored
    assert extended.seconds_saved == loaded.saved
    assert "loading saved 0.3 s" in extended.summary() or "loading saved 0.4 s" in extended.summary()
    html = extended._repr_html_()
    assert html.startswith("<table>") and "<td>slow_source</td><td>loaded</td>" in html
    assert extended.summary() in html


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_the_line_follows_every_executor(
    executor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain line, whose text the test can read
    config = chkpt.Config(dir=tmp_path, progress=True, verbose=False, executor=executor, workers=2)
    assert (slow_source >> total).run(config).value == sum(range(100))
    err = capsys.readouterr().err
    assert "\rchkpt: 0/2 stages" in err and "\rchkpt: 2/2 stages" in err
    assert "slow_source" in err and "total" in err
