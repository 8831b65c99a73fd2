"""The public API exactly as the README shows it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import chkpt


@chkpt.Stage.wrap()
def stage1() -> str:
    return "123"


@chkpt.Stage.wrap()
def stage2(stage1_input: str) -> list[str]:
    return [stage1_input, "456"]


@chkpt.Stage.wrap()
def stage3(a: str, b: list[str]) -> dict[str, object]:
    return {"a": a, "b": b}


@chkpt.Stage.wrap()
def stage4(x: dict[str, object], y: str) -> list[object]:
    return [x, y]


@chkpt.Stage.wrap()
def stage5(z: list[object]) -> int:
    return len(repr(z))


def big_pipeline() -> chkpt.Pipeline[int]:
    result1 = (stage1, stage1 >> stage2) >> stage3
    result2 = (result1, stage1) >> stage4
    return result2 >> stage5


def expected_big_value() -> int:
    return len(repr([{"a": "123", "b": ["123", "456"]}, "123"]))


def test_wrap_keeps_the_function_reachable_and_callable() -> None:
    assert isinstance(stage1, chkpt.Stage)
    assert stage1.func() == "123"
    assert stage1() == "123"
    assert stage2("x") == ["x", "456"]
    assert stage1.name == "stage1"


def test_calling_a_stage_does_not_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    calls = []

    @chkpt.Stage.wrap()
    def counted() -> int:
        calls.append(1)
        return len(calls)

    assert counted() == 1
    assert counted() == 2
    assert not (tmp_path / ".chkpt").exists()


def test_the_five_spellings_build_the_same_pipeline() -> None:
    spellings = [
        stage1 >> stage2,
        stage2 << stage1,
        stage2 << (stage1,),
        (stage1,) >> stage2,
        () >> stage1 >> stage2,
    ]
    for pipeline in spellings:
        assert isinstance(pipeline, chkpt.Pipeline)
        assert pipeline == spellings[0]
        assert hash(pipeline) == hash(spellings[0])
        assert pipeline.stage is stage2
    assert (stage1 >> stage2) != (stage1 >> stage3.bind(b=["x"]))


def test_larger_graphs_from_the_leaves_down(tmp_path: Path) -> None:
    pipeline = big_pipeline()
    assert [s.name for s in pipeline.stages()] == ["stage1", "stage2", "stage3", "stage4", "stage5"]
    assert pipeline(chkpt.Config(dir=tmp_path, verbose=False)) == expected_big_value()


def test_default_config_stores_in_dot_chkpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHKPT_DIR", raising=False)
    assert big_pipeline()() == expected_big_value()
    assert sorted(p.name for p in (tmp_path / ".chkpt").iterdir()) == [f"stage{i}" for i in range(1, 6)]


def test_chkpt_dir_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHKPT_DIR", str(tmp_path / "from-env"))
    (stage1 >> stage2)(chkpt.Config(verbose=False))
    assert (tmp_path / "from-env" / "stage2").is_dir()
    assert not (tmp_path / ".chkpt").exists()


def test_second_run_loads(tmp_path: Path) -> None:
    config = chkpt.Config(store=True, load=True, dir=tmp_path, verbose=False)
    first = big_pipeline().run(config)
    assert [r.outcome for r in first.records] == ["stored"] * 5
    second = big_pipeline().run(config)
    assert second.value == first.value == expected_big_value()
    assert [(r.name, r.outcome) for r in second.records] == [("stage5", "loaded")]
    assert second.records[0].key == first.records[-1].key


def test_load_list_takes_stages_and_names(tmp_path: Path) -> None:
    big_pipeline()(chkpt.Config(dir=tmp_path, verbose=False))
    run = big_pipeline().run(chkpt.Config(load=[stage1, "stage2"], dir=tmp_path, verbose=False))
    outcomes = {r.name: r.outcome for r in run.records}
    assert outcomes == {
        "stage1": "loaded",
        "stage2": "loaded",
        "stage3": "stored",
        "stage4": "stored",
        "stage5": "stored",
    }
    assert run.value == expected_big_value()


def test_store_false_writes_nothing(tmp_path: Path) -> None:
    run = big_pipeline().run(chkpt.Config(store=False, dir=tmp_path / "store", verbose=False))
    assert {r.outcome for r in run.records} == {"computed"}
    assert all(r.bytes is None for r in run.records)
    assert not (tmp_path / "store").exists()


def test_store_list_stores_only_those(tmp_path: Path) -> None:
    run = big_pipeline().run(chkpt.Config(store=["stage2"], dir=tmp_path, verbose=False))
    assert {r.name: r.outcome for r in run.records}["stage2"] == "stored"
    assert [p.name for p in tmp_path.iterdir()] == ["stage2"]


def test_run_records_and_summary(tmp_path: Path) -> None:
    run = (stage1 >> stage2).run(chkpt.Config(dir=tmp_path, verbose=False))
    assert run.value == ["123", "456"]
    names = [r.name for r in run.records]
    assert names == ["stage1", "stage2"]
    for record in run.records:
        assert len(record.key) == 32
        assert record.seconds >= 0
        assert record.bytes is not None and record.bytes > 0
        assert record.outcome == "stored"
    text = str(run)
    assert "stage1" in text and "stage2" in text and "stored" in text
    assert "2 stages: 0 loaded, 2 computed (2 stored)" in text


def test_each_stage_prints_one_line_and_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chkpt")
    pipeline = stage1 >> stage2
    pipeline(chkpt.Config(dir=tmp_path))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3
    assert err[0].startswith("chkpt: stage1 computed in ") and "stored" in err[0]
    assert err[2].startswith("chkpt done: 2 stages: 0 loaded, 2 computed (2 stored); stored ")
    assert [r.getMessage().split()[0] for r in caplog.records] == ["stage1", "stage2", "2"]  # and the summary

    pipeline(chkpt.Config(dir=tmp_path, load=True))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("chkpt: stage2 loaded ")
    assert err[1] == "chkpt done: 1 stage: 1 loaded, 0 computed (0 stored), 1 skipped"


def test_verbose_false_is_silent_on_stderr_but_still_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chkpt")
    (stage1 >> stage2)(chkpt.Config(dir=tmp_path, verbose=False))
    assert capsys.readouterr().err == ""
    assert len(caplog.records) == 3  # a line per stage, and the summary


def test_bind_fixes_keyword_arguments(tmp_path: Path) -> None:
    @chkpt.Stage.wrap()
    def scale(x: int, factor: int = 1) -> int:
        return x * factor

    @chkpt.Stage.wrap()
    def three() -> int:
        return 3

    doubled = scale.bind(factor=2)
    assert doubled(5) == 10
    assert scale(5) == 5
    assert doubled.params == {"factor": 2}
    config = chkpt.Config(dir=tmp_path, verbose=False)
    assert (three >> doubled)(config) == 6
    assert (three >> scale.bind(factor=10))(config) == 30


def test_constant_inputs(tmp_path: Path) -> None:
    @chkpt.Stage.wrap()
    def add(a: int, b: int) -> int:
        return a + b

    @chkpt.Stage.wrap()
    def one() -> int:
        return 1

    config = chkpt.Config(dir=tmp_path, verbose=False)
    assert ((one, 42) >> add)(config) == 43
    first = ((one, 42) >> add).run(config).records[-1].key
    second = ((one, 41) >> add).run(config).records[-1].key
    assert first != second


def test_public_names() -> None:
    assert set(chkpt.__all__) == {
        "Accepted",
        "Checkpoint",
        "ChkptError",
        "ChkptWarning",
        "Collected",
        "Config",
        "ConfigError",
        "Decision",
        "Explanation",
        "Pipeline",
        "PipelineError",
        "Run",
        "SerializationError",
        "Stage",
        "StageRecord",
        "StagesFailed",
        "Store",
        "StoreError",
        "__version__",
        "codecs",
        "file",
    }
    for name in chkpt.__all__:
        assert getattr(chkpt, name) is not None
    for error in (chkpt.PipelineError, chkpt.ConfigError, chkpt.SerializationError, chkpt.StoreError):
        assert issubclass(error, chkpt.ChkptError)
