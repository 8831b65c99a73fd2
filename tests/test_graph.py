"""Drawing a pipeline: Mermaid and dot text (each distinct node once, bound parameters and constants shown, text
escaped), the notebook representations, and Graphviz's pictures of the examples."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

import chkpt
from chkpt import graph

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and not os.environ.get("CI"), reason="needs Graphviz's dot, which .ci/run installs"
)


@chkpt.Stage.wrap()
def load(n: int) -> list[int]:
    return list(range(n))


@chkpt.Stage.wrap()
def join(a: list[int], b: object, scale: float = 1.0) -> list[float]:
    return [x * scale for x in a]


def small() -> chkpt.Pipeline[list[float]]:
    shared = load.bind(n=3)
    return (shared, (shared, 'say "hi" <b>') >> join.bind(scale=0.5)) >> join


def test_mermaid_draws_each_node_once_with_its_parameters_and_constants() -> None:
    assert small().to_mermaid() == (
        "flowchart LR\n"
        '    n0["load<br/>n=3"]\n'
        "    n1[/\"'say #34;hi#34; #60;b#62;'\"/]\n"
        '    n2["join<br/>scale=0.5"]\n'
        '    n3["join"]\n'
        "    n0 --> n2\n"
        "    n1 --> n2\n"
        "    n0 --> n3\n"
        "    n2 --> n3\n"
    )


def test_dot_draws_the_same_graph() -> None:
    assert small().to_dot() == (
        "digraph pipeline {\n"
        "    rankdir=LR;\n"
        '    node [shape=box, fontname="Helvetica"];\n'
        '    n0 [label="load\\nn=3"];\n'
        '    n1 [label="\'say \\"hi\\" <b>\'", shape=note, style=dashed];\n'
        '    n2 [label="join\\nscale=0.5"];\n'
        '    n3 [label="join"];\n'
        "    n0 -> n2;\n"
        "    n1 -> n2;\n"
        "    n0 -> n3;\n"
        "    n2 -> n3;\n"
        "}\n"
    )


def test_equal_nodes_built_apart_are_one_node_and_long_values_are_cut() -> None:
    pipeline = (load.bind(n=3), load.bind(n=3), "x" * 100) >> join
    text = pipeline.to_mermaid()
    assert text.count('["load<br/>n=3"]') == 1 and text.count("n0 --> n2") == 2
    assert "x" * 36 + "..." in text and "x" * 41 not in text


def test_a_notebook_shows_mermaid_and_svg_when_graphviz_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    assert small()._repr_markdown_() == f"```mermaid\n{small().to_mermaid()}```\n"
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    assert small()._repr_svg_() is None
    with pytest.raises(chkpt.ChkptError, match="Graphviz"):
        graph.render(small(), "svg")
    with pytest.raises(chkpt.ChkptError, match="svg or png"):
        graph.render(small(), "gif")


@needs_dot
def test_a_notebook_gets_svg_from_graphviz() -> None:
    svg = small()._repr_svg_()
    assert svg is not None and "<svg" in svg and "scale=0.5" in svg


@needs_dot
def test_the_examples_pipelines_render_to_png(tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        quickstart = importlib.import_module("quickstart")
        sweep = importlib.import_module("sweep")
    finally:
        sys.path.remove(str(EXAMPLES))
    for name, pipeline in {"quickstart": quickstart.pipeline, "sweep": sweep.sweep([0.1, 0.01])}.items():
        png = graph.render(pipeline, "png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), name
        (tmp_path / f"{name}.png").write_bytes(png)
    assert (EXAMPLES.parent / "docs" / "sweep-graph.png").read_bytes().startswith(b"\x89PNG")
