"""The storyboard as a graph to look at: scenes as nodes, frame references as edges labelled
with the frame they take, and the cut's sequence; drawn as Mermaid, Graphviz DOT or text.

Like `dvc dag` and `snakemake --dag`: `hailuo-pipe dag SPEC | dot -Tsvg > dag.svg`, or paste
the Mermaid into a pull request (GitHub renders it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hailuo_pipe.storyboard.graph import Graph
from hailuo_pipe.storyboard.model import Storyboard

FORMATS = ("mermaid", "dot", "text")
CUT = '"output:cut"'  # a scene id cannot hold a colon, so no scene can be this node


@dataclass(frozen=True)
class Edge:
    """`scene` takes the `frame` (first | last) of `source` as its `slot` (image | end_image)."""

    source: str
    scene: str
    frame: str
    slot: str

    @property
    def label(self) -> str:
        return self.frame if self.slot == "image" else f"{self.frame} as end"


@dataclass(frozen=True)
class Dag:
    scenes: tuple[str, ...]  # dependencies first, otherwise storyboard order
    edges: tuple[Edge, ...]
    cut: tuple[str, ...] = ()  # the output's sequence, when the storyboard declares one
    cut_path: str | None = None


def dag_of(board: Storyboard) -> Dag:
    edges = tuple(
        Edge(img.ref.scene, scene.id, img.ref.frame, slot)
        for scene in board.scenes
        for slot in ("image", "end_image")
        if (img := getattr(scene, slot)) is not None and img.ref is not None
    )
    out = board.output
    return Dag(
        scenes=tuple(Graph.of(board.scenes).topological()),
        edges=edges,
        cut=tuple(out.sequence) if out else (),
        cut_path=out.path if out else None,
    )


def draw(dag: Dag, fmt: str) -> str:
    return {"mermaid": mermaid, "dot": dot, "text": text}[fmt](dag)


def mermaid(dag: Dag) -> str:
    ids = {scene: f"s{i}" for i, scene in enumerate(dag.scenes)}
    lines = ["flowchart LR"]
    lines += [f'  {ids[s]}["{_mermaid_text(s)}"]' for s in dag.scenes]
    lines += [f"  {ids[e.source]} -->|{e.label}| {ids[e.scene]}" for e in dag.edges]
    if dag.cut:
        lines.append(f'  cut[["cut: {_mermaid_text(dag.cut_path or "")}"]]')
        lines += [f"  {ids[s]} -.->|{i}| cut" for i, s in enumerate(dag.cut, 1) if s in ids]
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def dot(dag: Dag) -> str:
    q = json.dumps  # a JSON string is a valid DOT quoted string, escapes included
    lines = ["digraph storyboard {", "  rankdir=LR;", "  node [shape=box];"]
    lines += [f"  {q(s)};" for s in dag.scenes]
    lines += [f"  {q(e.source)} -> {q(e.scene)} [label={q(e.label)}];" for e in dag.edges]
    if dag.cut:
        lines.append(f'  {CUT} [shape=doubleoctagon, label={q("cut: " + (dag.cut_path or ""))}];')
        lines += [
            f'  {q(s)} -> {CUT} [style=dashed, label="{i}"];' for i, s in enumerate(dag.cut, 1)
        ]
    return "\n".join(lines) + "\n}\n"


def text(dag: Dag) -> str:
    takes: dict[str, list[str]] = {s: [] for s in dag.scenes}
    for e in dag.edges:
        takes[e.scene].append(f"{e.label} of {e.source}")
    width = max((len(s) for s in dag.scenes), default=0)
    lines = [
        f"{s:<{width}}  <- {', '.join(takes[s])}" if takes[s] else s for s in dag.scenes
    ]
    if dag.cut:
        lines.append(f"cut {dag.cut_path}: {' -> '.join(dag.cut)}")
    return "\n".join(lines) + "\n"
