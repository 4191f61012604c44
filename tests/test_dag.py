"""`hailuo-pipe dag`: the scenes, the frames they take from each other, and the cut's order."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner

from hailuo_pipe.cli import main
from hailuo_pipe.dag import dag_of, draw
from hailuo_pipe.validate import load_storyboard

STORY = """
version: 1
name: dagged
defaults: {provider: preview}
scenes:
  - id: end
    prompt: uses the first frame of dawn as its last
    end_image: {from: dawn, frame: first}
    image: assets/a.png
  - id: dawn
    prompt: dawn
  - id: "shot-{{ n }}"
    foreach: {n: [1, 2]}
    prompt: "shot {{ n }}"
    image: {from: dawn, frame: last}
output:
  path: renders/dagged.mp4
  sequence: [dawn, shot-1, shot-2, end]
"""


def test_edges_carry_the_frame_and_scenes_come_dependencies_first(write_spec: Any) -> None:
    got = dag_of(load_storyboard(write_spec(STORY)))
    assert got.scenes == ("dawn", "end", "shot-1", "shot-2")
    assert {(e.source, e.scene, e.label) for e in got.edges} == {
        ("dawn", "end", "first as end"),
        ("dawn", "shot-1", "last"),
        ("dawn", "shot-2", "last"),
    }
    assert got.cut == ("dawn", "shot-1", "shot-2", "end")


def test_text_mermaid_and_dot_show_the_same_graph(write_spec: Any) -> None:
    spec = write_spec(STORY)
    text = CliRunner().invoke(main, ["dag", str(spec)]).output
    assert "shot-1  <- last of dawn" in text
    assert "end     <- first as end of dawn" in text
    assert text.splitlines()[-1] == "cut renders/dagged.mp4: dawn -> shot-1 -> shot-2 -> end"
    mermaid = CliRunner().invoke(main, ["dag", "--format", "mermaid", str(spec)]).output
    assert mermaid.startswith("flowchart LR\n")
    assert '  s0["dawn"]' in mermaid and "  s0 -->|last| s2" in mermaid
    assert "  s1 -.->|4| cut" in mermaid  # `end` is the cut's fourth clip
    dot = CliRunner().invoke(main, ["dag", "--format", "dot", str(spec)]).output
    assert '"dawn" -> "end" [label="first as end"];' in dot
    assert '"shot-2" -> "output:cut" [style=dashed, label="3"];' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz")
def test_graphviz_draws_the_dot_output(write_spec: Any) -> None:
    source = draw(dag_of(load_storyboard(write_spec(STORY))), "dot")
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=source, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert svg.count('class="node"') == 5 and svg.count('class="edge"') == 7


def test_a_broken_storyboard_is_reported_not_drawn(write_spec: Any) -> None:
    spec = write_spec(STORY.replace("frame: last", "frame: middle"))
    out = CliRunner().invoke(main, ["dag", str(spec)])
    assert out.exit_code == 1 and "problem" in out.output and "flowchart" not in out.output
