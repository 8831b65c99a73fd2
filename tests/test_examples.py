"""The examples run as a new user runs them (a fresh interpreter, `python examples/<name>.py`) and do what they
say they do: each prints, for every run, the stages it computed and the stages it loaded (from `run.records`),
and these tests hold those lists to exactly what chkpt's rules promise.

The examples keep their files under `tempfile.gettempdir()`, so pointing TMPDIR (TEMP and TMP on Windows) at
pytest's tmp_path keeps every file they write there, and nothing lands in the repository or the real temp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, tmp_path: Path) -> str:
    env = {**os.environ, "TMPDIR": str(tmp_path), "TEMP": str(tmp_path), "TMP": str(tmp_path)}
    env.pop("CHKPT_DIR", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    # Checkpoints went to the example's own folder under the temp dir, not to .chkpt in the current directory.
    assert not (tmp_path / ".chkpt").exists()
    return proc.stdout


class Section:
    """The output of one run: from a `== title ==` line to the next one."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []

    def field(self, label: str) -> str:
        values = [line.split(":", 1)[1].strip() for line in self.lines if line.strip().startswith(label + ":")]
        assert len(values) == 1, f"expected one '{label}:' line in section {self.title!r}, got {self.lines}"
        return values[0]

    def stages(self, label: str) -> Counter[str]:
        """The stage names on the `computed:` or `loaded:` line, with `name xN` counted N times."""
        text = self.field(label)
        counts: Counter[str] = Counter()
        if text == "-":
            return counts
        for item in text.split(", "):
            name, _, times = item.partition(" x")
            counts[name] += int(times) if times else 1
        return counts

    def trained(self) -> list[str]:
        return [line.split("lr=")[1].split()[0] for line in self.lines if line.strip().startswith("training lr=")]


def sections(stdout: str) -> list[Section]:
    found: list[Section] = []
    for line in stdout.splitlines():
        if line.startswith("== ") and line.endswith(" =="):
            found.append(Section(line.strip("= ")))
        elif found:
            found[-1].lines.append(line)
    return found


def test_quickstart_second_run_loads_and_computes_nothing(tmp_path: Path) -> None:
    first, second, third = sections(run_example("quickstart.py", tmp_path))

    assert first.stages("computed") == Counter(["download", "stopwords", "count_words", "top_words"])
    assert first.stages("loaded") == Counter()
    # Only the final result is needed, so it alone is loaded: nothing upstream is run or loaded.
    assert second.stages("computed") == Counter()
    assert second.stages("loaded") == Counter(["top_words"])
    # A newly bound parameter is a new key for top_words only; its input comes from count_words' checkpoint.
    assert third.stages("computed") == Counter(["top_words"])
    assert third.stages("loaded") == Counter(["count_words"])

    assert first.field("value") == second.field("value") == "['sat', 'cat']"
    assert third.field("value") == "['sat', 'cat', 'dog']"
    # The slow download (1 s) ran in the first run only.
    assert float(first.field("time").removesuffix(" s")) >= 1.0
    assert float(second.field("time").removesuffix(" s")) < 0.5
    assert (tmp_path / "chkpt-quickstart").is_dir()


def test_clean_csv_recomputes_only_what_is_downstream_of_the_edited_file(tmp_path: Path) -> None:
    first, regions_edited, sales_edited = sections(run_example("clean_csv.py", tmp_path))

    all_stages = ["file:sales.csv", "file:regions.csv", "read_sales", "read_regions", "drop_bad_rows", "normalize"]
    all_stages.append("report")
    assert first.stages("computed") == Counter(all_stages)
    assert first.stages("loaded") == Counter()
    assert "unknown" in first.field("revenue by region")
    assert first.field("rows read") == "9"

    # regions.csv changed: its reader and the report; the cleaned rows come from normalize's checkpoint.
    assert regions_edited.stages("computed") == Counter(["file:regions.csv", "read_regions", "report"])
    assert regions_edited.stages("loaded") == Counter(["read_sales", "normalize"])
    assert "unknown" not in regions_edited.field("revenue by region")
    assert '"West": 18.0' in regions_edited.field("revenue by region")

    # sales.csv changed: everything downstream of it; the unchanged lookup file is loaded.
    changed = ["file:sales.csv", "read_sales", "drop_bad_rows", "normalize", "report"]
    assert sales_edited.stages("computed") == Counter(changed)
    assert sales_edited.stages("loaded") == Counter(["read_regions"])
    assert sales_edited.field("rows read") == "11"
    assert sales_edited.field("rows dropped") == "4"


def test_sweep_prepares_once_and_the_second_sweep_trains_only_the_new_rate(tmp_path: Path) -> None:
    first, second = sections(run_example("sweep.py", tmp_path))

    # prepare feeds six stages but is one step.
    assert first.stages("computed") == Counter({"prepare": 1, "train": 3, "evaluate": 3, "best": 1})
    assert first.stages("loaded") == Counter()
    assert first.trained() == ["0.01", "0.03", "0.1"]
    assert first.field("best").startswith("lr=0.1 ")

    assert second.stages("computed") == Counter({"train": 1, "evaluate": 1, "best": 1})
    assert second.stages("loaded") == Counter({"prepare": 1, "evaluate": 3})
    assert second.trained() == ["0.3"]
    assert second.field("best").startswith("lr=0.3 ")


def test_arrays_keys_by_file_content_and_loads_a_memory_map(tmp_path: Path) -> None:
    runs = sections(run_example("arrays.py", tmp_path))
    assert [s.title for s in runs] == [
        "first run: computes every stage",
        "second run: loads the summary",
        "a new stage: loads standardize's array as a memory map",
        "after editing the file: everything downstream of it recomputes",
    ]
    everything = Counter(["file:measurements.csv", "read_measurements", "standardize", "covariance", "summary"])
    first, second, new_stage, edited = runs
    assert first.stages("computed") == everything and first.stages("loaded") == Counter()
    assert second.stages("computed") == Counter() and second.stages("loaded") == Counter(["summary"])
    assert new_stage.stages("computed") == Counter(["outliers"])
    assert new_stage.stages("loaded") == Counter(["standardize"])
    assert "'loaded as': 'memmap'" in new_stage.field("value")
    assert edited.stages("computed") == everything and edited.stages("loaded") == Counter()
