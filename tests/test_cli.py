"""The `chkpt` command, run as a user runs it (a subprocess of `python -m chkpt`, no terminal) against stores
that real pipelines made: its output, its exit codes, and what it removes."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import chkpt

HAVE_NUMPY = importlib.util.find_spec("numpy") is not None

PIPELINE = """
import chkpt


@chkpt.Stage.wrap()
def rows(n):
    return [{"i": i, "square": i * i} for i in range(n)]


@chkpt.Stage.wrap(format="pickle")
def as_set(rows):
    return {row["i"] for row in rows}


@chkpt.Stage.wrap(format="text")
def report(rows, numbers):
    return "\\n".join(f"line {i}" for i in sorted(numbers))


ARRAY = None
if NUMPY:
    import numpy as np

    @chkpt.Stage.wrap(format="numpy")
    def grid(rows):
        return np.zeros((len(rows), 3), dtype=np.float32)

    ARRAY = grid


def build(n):
    table = rows.bind(n=n)
    final = (table, table >> as_set) >> report
    return (table >> ARRAY, final) >> both if NUMPY else final


@chkpt.Stage.wrap()
def both(array, text):
    return [list(array.shape), len(text)]


pipeline = build(30)
small = build(2)

if __name__ == "__main__":
    import sys

    import time

    for n in map(int, sys.argv[2:]):
        build(n).run(chkpt.Config(dir=sys.argv[1], verbose=False))
        time.sleep(1.0)  # records are dated to the second: the last run's are the newest
"""


@pytest.fixture
def made(tmp_path: Path) -> dict[str, Any]:
    """A store made by running the pipeline for n = 2, then 30; returns the module file and the store."""
    module = tmp_path / f"pipe_{uuid.uuid4().hex[:8]}.py"
    module.write_text(PIPELINE.replace("NUMPY", str(HAVE_NUMPY)), encoding="utf-8")
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, str(module), str(store), "2", "30"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {"module": module, "store": store, "dir": ["--dir", str(store)]}


def chkpt_command(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chkpt", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def ok(*args: str, **options: Any) -> str:
    done = chkpt_command(*args, **options)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def fails(*args: str, **options: Any) -> str:
    """The one line an error prints (exit code 1, no traceback)."""
    done = chkpt_command(*args, **options)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def stage_keys(store: Path, stage: str) -> list[str]:
    return [cp.key for cp in chkpt.Store(store).checkpoints(stage)]


# --- ls, show -----------------------------------------------------------------------------------------------------


def test_ls_has_a_row_per_stage_and_with_stage_a_row_per_checkpoint(made: dict[str, Any]) -> None:
    out = ok("ls", *made["dir"])
    lines = out.splitlines()
    assert lines[0].split() == ["stage", "checkpoints", "newest", "age", "size", "codec"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    expected = {"rows", "as_set", "report"} | ({"grid", "both"} if HAVE_NUMPY else set())
    assert set(rows) == expected
    listed = chkpt.Store(made["store"]).checkpoints()
    for stage, row in rows.items():
        keys = [cp.key for cp in listed if cp.stage == stage]
        assert row[1] == str(len(keys)) == "2"
        assert row[2] == keys[0][:12]  # the newest
    assert rows["as_set"][-1] == "pickle" and rows["rows"][-1] == "json" and rows["report"][-1] == "text"
    assert lines[-1].startswith(f"{len(listed)} checkpoints, ") and lines[-1].endswith(str(made["store"]))

    by_key = ok("ls", *made["dir"], "--stage", "rows").splitlines()
    assert by_key[0].split()[:2] == ["key", "created"]
    assert [line.split()[0] for line in by_key[1:]] == stage_keys(made["store"], "rows")


def test_ls_uses_chkpt_dir_and_says_when_a_store_is_empty(tmp_path: Path, made: dict[str, Any]) -> None:
    assert "rows" in ok("ls", env={"CHKPT_DIR": str(made["store"])})
    assert ok("ls", cwd=tmp_path, env={"CHKPT_DIR": ""}) == f"no checkpoints in {tmp_path / '.chkpt'}\n"


def test_ls_prints_a_size_as_the_runs_log_line_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    @chkpt.Stage.wrap(format="text")
    def letters() -> str:
        return "x" * 5000

    (() >> letters).run(chkpt.Config(dir=tmp_path, progress=False))
    # the run tells the value it stored (5,000 bytes); ls the checkpoint's files, its record too, as gc frees them
    logged = capsys.readouterr().err
    assert "letters computed in" in logged and logged.count("stored 4.9 KiB") == 2  # the stage's line, the summary
    on_disk = sum(path.stat().st_size for path in (tmp_path / "letters").iterdir() if not path.name.startswith("."))
    (row,) = ok("ls", "--dir", str(tmp_path), "--stage", "letters").splitlines()[1:]
    assert f" {on_disk / 1024:.1f} KiB " in row and on_disk > 5000


def test_show_prints_the_record_and_a_preview_of_the_value(made: dict[str, Any]) -> None:
    newest = stage_keys(made["store"], "rows")[0]
    out = ok("show", "rows", *made["dir"], "--lines", "6")
    lines = out.splitlines()
    assert lines[0] == f"rows {newest}"
    record = json.loads("\n".join(lines[1 : lines.index("}") + 1]))
    assert record["key"] == newest and record["stage"] == "rows" and record["codec"] == "json"
    value = lines[lines.index("value:") + 1 :]
    assert value[:6] == ["  [", "    {", '      "i": 0,', '      "square": 0', "    },", "    {"]
    assert value[6].startswith("  ... (") and len(value) == 7
    older = stage_keys(made["store"], "rows")[1]
    assert json.loads(ok("show", "rows", older[:6], *made["dir"]).split("value:\n")[1].replace("\n  ", "\n")) == [
        {"i": i, "square": i * i} for i in range(2)
    ]
    text = ok("show", "report", *made["dir"]).split("value:\n")[1].splitlines()
    assert text[:3] == ["  line 0", "  line 1", "  line 2"]


def test_show_never_unpickles_and_reads_only_an_arrays_header(made: dict[str, Any]) -> None:
    out = ok("show", "as_set", *made["dir"])
    assert "not unpickled here" in out
    if HAVE_NUMPY:
        assert "array of shape (30, 3), dtype '<f4'" in ok("show", "grid", *made["dir"])


def test_show_names_what_is_wrong_in_one_line(made: dict[str, Any]) -> None:
    assert "'nope'" in fails("show", "nope", *made["dir"]) and "rows" in fails("show", "nope", *made["dir"])
    assert "no checkpoint whose key starts with 'zzzz'" in fails("show", "rows", "zzzz", *made["dir"])
    assert "starts 2 keys" in fails("show", "rows", "", *made["dir"])  # every key starts with ""
    debug = chkpt_command("show", "nope", *made["dir"], "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_usage_errors_exit_2() -> None:
    assert chkpt_command().returncode == 2
    assert chkpt_command("ls", "--bogus").returncode == 2
    assert chkpt_command("gc", "--max-bytes", "lots").returncode == 2
    for size in ("inf", "nan", "-1K"):
        done = chkpt_command("gc", f"--max-bytes={size}")
        assert done.returncode == 2 and "finite number of bytes" in done.stderr, done.stderr
    assert chkpt_command("ls", "--storage-options", "[1]").returncode == 2


# --- rm, gc -------------------------------------------------------------------------------------------------------


def test_rm_asks_for_yes_without_a_terminal_and_removes_what_it_says(made: dict[str, Any]) -> None:
    before = stage_keys(made["store"], "rows")
    assert "--yes" in fails("rm", "rows", *made["dir"])
    assert stage_keys(made["store"], "rows") == before
    dry = ok("rm", "rows", before[1][:8], *made["dir"], "--dry-run")
    assert dry.splitlines() == [
        f"would remove rows {before[1][:12]} ({dry.split('(')[1].split(')')[0]})",
        dry.splitlines()[-1],
    ]
    assert stage_keys(made["store"], "rows") == before
    out = ok("rm", "rows", before[1][:8], *made["dir"], "--yes")
    assert out.splitlines()[0].startswith(f"removed rows {before[1][:12]}")
    assert stage_keys(made["store"], "rows") == before[:1]
    ok("rm", "report", *made["dir"], "-y")
    assert stage_keys(made["store"], "report") == []
    assert "no checkpoints" in ok("rm", "report", *made["dir"], "-y")


def test_gc_keeps_what_it_is_told_and_a_run_then_loads_it(made: dict[str, Any]) -> None:
    module = made["module"]
    total = len(chkpt.Store(made["store"]).checkpoints())
    dry = ok("gc", *made["dir"], "--dry-run", "--keep-reachable", f"{module}:pipeline")
    assert dry.splitlines()[-1].startswith(f"would remove {total // 2} checkpoints")
    assert len(chkpt.Store(made["store"]).checkpoints()) == total
    assert "--yes" in fails("gc", *made["dir"], "--keep-reachable", f"{module}:pipeline")
    ok("gc", *made["dir"], "--keep-reachable", f"{module}:pipeline", "--yes")
    assert len(chkpt.Store(made["store"]).checkpoints()) == total // 2
    sys.path.insert(0, str(module.parent))
    try:
        imported = __import__(module.stem)
        run = imported.pipeline.run(chkpt.Config(dir=made["store"], load=True, verbose=False))
    finally:
        sys.path.remove(str(module.parent))
    assert all(r.outcome == "loaded" for r in run.records)
    assert "older_than" in fails("gc", *made["dir"], "--older-than", "soon", "--yes")
    assert ok("gc", *made["dir"], "--yes").splitlines()[-1] == "would remove 0 checkpoints: 0 B"
    ok("gc", *made["dir"], "--keep-last", "0", "--stage", "rows", "--yes")
    assert stage_keys(made["store"], "rows") == []


def test_gc_and_ls_on_object_storage(made: dict[str, Any], s3_endpoint: str) -> None:
    import s3fs

    options = {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint}
    bucket = f"cli-{uuid.uuid4().hex[:10]}"
    s3 = s3fs.S3FileSystem(**options)
    s3.mkdir(bucket)
    s3.put(str(made["store"]) + "/", f"{bucket}/store/", recursive=True)
    url = ["--dir", f"s3://{bucket}/store", "--storage-options", json.dumps(options)]

    def rows(out: str) -> list[list[str]]:  # but the age, which moves while the test runs
        return [line.split()[:3] + line.split()[4:] for line in out.splitlines()[1:-1]]

    assert rows(ok("ls", *url)) == rows(ok("ls", *made["dir"]))
    newest = stage_keys(made["store"], "rows")[0]
    assert ok("show", "rows", *url).splitlines()[0] == f"rows {newest}"
    ok("gc", *url, "--yes")
    assert (
        ok("ls", *url).splitlines()[-1].startswith(f"{len(chkpt.Store(made['store']).checkpoints()) // 2} checkpoints")
    )


# --- graph --------------------------------------------------------------------------------------------------------


def test_graph_prints_mermaid_and_dot_and_writes_a_file(made: dict[str, Any], tmp_path: Path) -> None:
    module = made["module"]
    mermaid = ok("graph", f"{module}:small")
    assert mermaid.startswith("flowchart LR\n")
    assert '["rows<br/>n=2"]' in mermaid and '["report"]' in mermaid
    dot = ok("graph", f"{module}:small", "--format", "dot")
    assert dot.startswith("digraph pipeline {") and 'label="rows\\nn=2"' in dot
    out = tmp_path / "graph.mmd"
    assert ok("graph", f"{module}:small", "-o", str(out)) == ""
    assert out.read_text() == mermaid
    assert ok("graph", f"{module.stem}:small", cwd=module.parent) == mermaid  # as module:attr from its folder


def test_graph_names_a_missing_pipeline_and_a_missing_graphviz(made: dict[str, Any], tmp_path: Path) -> None:
    module = made["module"]
    assert "pipeline" in fails("graph", f"{module}:nope") and "small" in fails("graph", f"{module}:nope")
    assert "module:attr" in fails("graph", str(module))
    assert "no file" in fails("graph", f"{tmp_path}/missing.py:x")
    bare = tmp_path / "bin"
    bare.mkdir()
    os.symlink(sys.executable, bare / "python")
    assert "Graphviz" in fails("graph", f"{module}:small", "--format", "svg", env={"PATH": str(bare)})


@pytest.mark.skipif(
    shutil.which("dot") is None and not os.environ.get("CI"), reason="needs Graphviz's dot, which .ci/run installs"
)
def test_graph_draws_svg_and_png_with_graphviz(made: dict[str, Any], tmp_path: Path) -> None:
    module = made["module"]
    assert "<svg" in ok("graph", f"{module}:pipeline", "--format", "svg")
    png = tmp_path / "graph.png"
    ok("graph", f"{module}:pipeline", "--format", "png", "-o", str(png))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_command_is_installed_as_chkpt() -> None:
    found = shutil.which("chkpt", path=os.path.dirname(sys.executable))
    assert found is not None
    done = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert all(command in done.stdout for command in ("ls", "show", "rm", "gc", "explain", "accept", "graph"))
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout == f"chkpt {chkpt.__version__}\n"


def test_ls_of_a_stage_whose_folder_another_name_shares_names_the_stages_there(tmp_path: Path) -> None:
    spaced = chkpt.Stage(lambda: 1, name="my stage", version=1)  # kept in the folder my_stage
    (() >> spaced).run(chkpt.Config(dir=tmp_path, verbose=False))
    out = ok("ls", "--dir", str(tmp_path), "--stage", "my_stage")
    assert out == f"no checkpoints of stage 'my_stage' in {tmp_path}; the stages there are ['my stage']\n"
    assert ok("ls", "--dir", str(tmp_path), "--stage", "my stage").count("\n") == 2  # the header and its row
