"""Rendering offline with the preview provider: the whole pipeline with real video, no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hailuo_pipe import media
from hailuo_pipe.cli import main
from hailuo_pipe.plan import make_plan
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

CHAIN = """
version: 1
name: chain
defaults:
  provider: preview
  resolution: 512p
scenes:
  - id: a
    prompt: "first {{ word }}"
    image: assets/a.png
  - id: b
    prompt: second
    image: {from: a, frame: last}
  - id: c
    prompt: third
    image: {from: b, frame: last}
    end_image: assets/b.jpg
  - id: lone
    prompt: unrelated
    image: assets/b.jpg
output:
  path: renders/chain.mp4
  sequence: [a, b, c]
vars:
  word: take
"""


def outcomes(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.scene: r.outcome for r in result.results}


def test_render_chain_then_noop_then_change(write_spec) -> None:
    spec = write_spec(CHAIN)
    board = load_storyboard(spec)
    first = render(board, RenderOptions(concurrency=2))
    assert outcomes(first) == dict.fromkeys("abc", "rendered") | {"lone": "rendered"}
    lock = Lockfile.load(board.lock_path, "chain")
    a, b = lock.scenes["a"], lock.scenes["b"]
    assert a.state == "done" and a.output is not None
    clip = spec.parent / a.output.path
    assert media.probe(clip).frames == 6 * 25
    # b was given exactly a's last frame
    assert b.request["image"] == a.frames["last"].pixels  # the frame by its pixels
    assert first.cut == "renders/chain.mp4"
    assert media.probe(spec.parent / "renders/chain.mp4").frames == 3 * 6 * 25

    def outputs() -> dict[Path, int]:  # clips, frames, the cut; not our hidden memo files
        found = (spec.parent / "renders").rglob("*")
        return {p: p.stat().st_mtime_ns for p in found if p.is_file() and p.name[0] != "."}

    mtimes = outputs()
    again = render(load_storyboard(spec), RenderOptions())
    assert set(outcomes(again).values()) == {"reused"}
    assert outputs() == mtimes

    changed = load_storyboard(spec, overrides={"word": "retake"})
    plan = make_plan(changed, Lockfile.load(board.lock_path, "chain"))
    assert {s.scene.id: s.action for s in plan.steps} == {
        "a": "replace",
        "b": "replace",
        "c": "replace",
        "lone": "reuse",
    }
    assert "prompt changed" in plan.step("a").reason
    assert "'a'" in plan.step("b").reason
    third = render(changed, RenderOptions())
    assert outcomes(third) == dict.fromkeys("abc", "rendered") | {"lone": "reused"}


def test_status_and_plan_cli(write_spec) -> None:
    spec = write_spec(CHAIN)
    runner = CliRunner()
    before = runner.invoke(main, ["status", str(spec)])
    assert before.exit_code == 1
    plan = runner.invoke(main, ["plan", "--json", str(spec)])
    assert [s["action"] for s in json.loads(plan.output)["steps"]] == ["create"] * 4
    rendered = runner.invoke(main, ["render", "--quiet", str(spec)])
    assert rendered.exit_code == 0, rendered.output
    after = runner.invoke(main, ["status", "--json", str(spec)])
    assert after.exit_code == 0
    assert json.loads(after.output)["up_to_date"] is True


def test_missing_preview_clip_is_rendered_again_for_free(write_spec) -> None:
    spec = write_spec(CHAIN)
    render(load_storyboard(spec), RenderOptions())
    (spec.parent / "renders" / "chain" / "lone.mp4").unlink()
    plan = make_plan(load_storyboard(spec), Lockfile.load(spec.with_suffix(".lock"), "chain"))
    assert plan.step("lone").action == "replace"
    assert plan.cost == 0
    assert [s.action for s in plan.steps if s.scene.id != "lone"] == ["reuse"] * 3


def test_only_scene_renders_its_closure(write_spec) -> None:
    spec = write_spec(CHAIN)
    result = render(load_storyboard(spec), RenderOptions(only={"b"}))
    assert outcomes(result) == {"a": "rendered", "b": "rendered"}
    assert result.cut is None
    assert not Path(spec.parent / "renders" / "chain" / "c.mp4").exists()


@pytest.mark.parametrize(
    ("adopt", "says"),
    [
        ("a", "'a' is not ID=JOB"),
        ("nope=123", "no scene 'nope'"),
        ("a=123", "a has never been submitted"),
        ("a=../../etc", "not a job id"),
    ],
)
def test_render_refuses_a_bad_adopt_before_anything_runs(write_spec, adopt, says) -> None:
    spec = write_spec(CHAIN)
    got = CliRunner().invoke(main, ["render", "--adopt", adopt, str(spec)])
    assert got.exit_code in (1, 2) and says in got.output, got.output
    assert got.exception is None or isinstance(got.exception, SystemExit)
    assert not spec.with_suffix(".lock").exists()
