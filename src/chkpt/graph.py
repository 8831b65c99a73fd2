"""A pipeline's graph as text people can read and render: Mermaid (which GitHub, GitLab and Jupyter draw) and
Graphviz's dot; and dot run on it for SVG or PNG, when Graphviz is installed (it is a program, not a Python
package, so chkpt needs no extra for it).

A node is drawn once however many times it is used, labelled with its stage's name and the parameters bound to
it; a constant input is a node of its own, labelled with its value. Nodes are numbered in the order a run would
reach them (each after its inputs), so the text is the same for the same pipeline.
"""

from __future__ import annotations

import shutil
import subprocess

from .errors import ChkptError
from .pipeline import Constant, Pipeline
from .shown import short_repr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMATS = ("mermaid", "dot", "svg", "png")
_LABEL_LIMIT = 40


class Graph:
    """The nodes and edges to draw: `nodes` as (label, is_constant), `edges` as (from, to) node numbers, in the
    order of the consumer's inputs."""

    __slots__ = ("edges", "nodes")

    def __init__(self, pipeline: Pipeline[Any]) -> None:
        self.nodes: list[tuple[str, bool]] = []
        self.edges: list[tuple[int, int]] = []
        number: dict[Pipeline[Any], int] = {}
        for node in pipeline.nodes():
            if node in number:
                continue
            sources = []
            for item in node.inputs:
                if isinstance(item, Pipeline):
                    sources.append(number[item])
                else:
                    sources.append(len(self.nodes))
                    self.nodes.append((_constant_label(item), True))
            number[node] = len(self.nodes)
            self.nodes.append((_stage_label(node), False))
            self.edges += [(source, number[node]) for source in sources]


def to_mermaid(pipeline: Pipeline[Any]) -> str:
    """The graph as a Mermaid flowchart, left to right."""
    graph = Graph(pipeline)
    lines = ["flowchart LR"]
    for i, (label, constant) in enumerate(graph.nodes):
        text = "".join(f"#{ord(c)};" if c in '"#<>' else c for c in label).replace("\n", "<br/>")
        lines.append(f'    n{i}[/"{text}"/]' if constant else f'    n{i}["{text}"]')
    lines += [f"    n{a} --> n{b}" for a, b in graph.edges]
    return "\n".join(lines) + "\n"


def to_dot(pipeline: Pipeline[Any]) -> str:
    """The graph in Graphviz's dot language, left to right."""
    graph = Graph(pipeline)
    lines = ["digraph pipeline {", "    rankdir=LR;", '    node [shape=box, fontname="Helvetica"];']
    for i, (label, constant) in enumerate(graph.nodes):
        text = label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        style = ", shape=note, style=dashed" if constant else ""
        lines.append(f'    n{i} [label="{text}"{style}];')
    lines += [f"    n{a} -> n{b};" for a, b in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(pipeline: Pipeline[Any], format: str) -> bytes:
    """The graph drawn by Graphviz's `dot` as "svg" or "png"; a ChkptError saying what to install if it is not
    on the PATH."""
    if format not in ("svg", "png"):
        raise ChkptError(f"a graph is rendered as svg or png, not {format!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise ChkptError(
            f"drawing a graph as {format} needs Graphviz's `dot` program (apt install graphviz, brew install "
            "graphviz, conda install graphviz); without it, use the mermaid or dot text"
        )
    done = subprocess.run([dot, f"-T{format}"], input=to_dot(pipeline).encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise ChkptError(f"Graphviz's dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def svg_if_available(pipeline: Pipeline[Any]) -> str | None:
    """The graph as SVG text, or None when Graphviz is not installed (for notebooks, which then show Mermaid)."""
    if shutil.which("dot") is None:
        return None
    try:
        return render(pipeline, "svg").decode()
    except ChkptError:
        return None


def _stage_label(node: Pipeline[Any]) -> str:
    params = ", ".join(f"{name}={_short(value)}" for name, value in node.stage.params.items())
    return node.stage.name + (f"\n{params}" if params else "")


def _constant_label(constant: Constant) -> str:
    return _short(constant.value)


def _short(value: object) -> str:
    return short_repr(value, _LABEL_LIMIT)
