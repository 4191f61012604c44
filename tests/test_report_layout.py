"""The report's frame-flow graph at 50 scenes: in layers, every label readable (no label on
another label or on a scene), checked in headless Chromium, the layout engine's real result."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from support import browser

from hailuo_pipe.plan import make_plan
from hailuo_pipe.report import layers, write_report
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

SCREENSHOT = Path(__file__).parents[1] / "docs" / "screenshots" / "report-50.png"


def fifty() -> str:
    """5 chains of 6, 10 shots from chain heads' last frames, 5 scenes that take a first frame
    from one chain and their last frame from another, 5 alone: 50 scenes, 45 hand-overs."""
    out = ["version: 1", "name: fifty", "defaults: {provider: preview, resolution: 768p}"]
    out.append("scenes:")
    for c in range(5):
        for i in range(6):
            out += [f"  - id: chain{c}-take{i}", f"    prompt: chain {c} take {i}"]
            if i:
                out.append(f"    image: {{from: chain{c}-take{i - 1}, frame: last}}")
    for s in range(10):
        out += [f"  - id: cutaway-{s}", f"    prompt: cutaway {s}"]
        out.append(f"    image: {{from: chain{s % 5}-take0, frame: last}}")
    for b in range(5):
        out += [f"  - id: bridge-{b}", f"    prompt: bridge {b}"]
        out.append(f"    image: {{from: chain{b}-take2, frame: last}}")
        out.append(f"    end_image: {{from: chain{(b + 1) % 5}-take4, frame: first}}")
    for a in range(5):
        out += [f"  - id: alone-{a}", f"    prompt: alone {a}"]
    return "\n".join(out) + "\n"


@pytest.fixture
def report_50(write_spec: Any) -> Path:
    board = load_storyboard(write_spec(fifty()))
    assert len(board.scenes) == 50
    lock = Lockfile.load(board.lock_path, board.name)
    return write_report(board, lock, make_plan(board, lock))


def test_scenes_stand_in_columns_by_depth(write_spec: Any) -> None:
    from hailuo_pipe.report import _cards  # the cards the page draws

    board = load_storyboard(write_spec(fifty()))
    lock = Lockfile.load(board.lock_path, board.name)
    cards = _cards(board, lock, make_plan(board, lock), board.path.parent, board.path.parent)
    column = layers(cards)
    assert [column[f"chain0-take{i}"] for i in range(6)] == [0, 1, 2, 3, 4, 5]
    assert column["cutaway-3"] == 1 and column["alone-0"] == 0
    assert column["bridge-0"] == 5  # one right of its deepest source, chain1-take4


LABELS = """
const svg = document.querySelector('nav.flow svg');
const box = el => { const r = el.getBoundingClientRect();
  return {x: r.left, y: r.top, w: r.width, h: r.height, text: el.textContent.trim()}; };
const frame = svg.getBoundingClientRect();
return {
  labels: [...svg.querySelectorAll('text.edge-label')].map(box),
  names: [...svg.querySelectorAll('a.node text')].map(box),
  nodes: [...svg.querySelectorAll('a.node rect')].map(box),
  svg: {x: frame.left, y: frame.top, w: frame.width, h: frame.height},
  fontSize: parseFloat(getComputedStyle(svg.querySelector('text.edge-label')).fontSize),
};
"""


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


@pytest.mark.browser
def test_at_50_scenes_no_label_covers_another_or_a_scene(report_50: Path) -> None:
    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH: run scripts/install-chromium.sh")
    got = browser.evaluate(chromium, report_50, LABELS)
    labels, names, nodes = got["labels"], got["names"], got["nodes"]
    assert len(labels) == 45 and len(names) == 50
    assert got["fontSize"] >= 10  # drawn at its size: the graph scrolls, it is not shrunk
    texts = labels + names
    clashes = [
        (a["text"], b["text"])
        for i, a in enumerate(texts)
        for b in texts[i + 1 :]
        if _overlap(a, b)
    ]
    assert clashes == []
    assert [lb["text"] for lb in labels for n in nodes if _overlap(lb, n)] == []
    frame = got["svg"]
    for t in texts:  # nothing is cut off at the graph's edges
        assert frame["x"] <= t["x"] and t["x"] + t["w"] <= frame["x"] + frame["w"] + 0.5, t
        assert frame["y"] <= t["y"] and t["y"] + t["h"] <= frame["y"] + frame["h"] + 0.5, t
    shot = browser.screenshot(
        chromium, report_50, report_50.parent / "report-50.png", size=(1440, 960)
    )
    if SCREENSHOT.parent.is_dir():
        shutil.copyfile(shot, SCREENSHOT)  # the picture README and the issue point at
