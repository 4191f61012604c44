"""A chain whose head is rendered again: every scene after it is replanned, never a traceback.

Issue 15 item 16: `render --force a` on a preview chain a -> b -> c, and a lockfile whose `done`
entry for a was edited to `failed`, both ended in an AssertionError: b was replanned (its input
frame was byte-identical, so it was reused), and c then ran the step planned before any frame
existed, which has no fingerprint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hailuo_pipe import cli
from hailuo_pipe import plan as planning
from hailuo_pipe.render import run as render_run
from hailuo_pipe.state.lockfile import Lockfile

CHAIN = """
version: 1
name: chain
defaults:
  provider: preview
  resolution: 512p
scenes:
  - id: a
    prompt: first
    image: assets/a.png
  - id: b
    prompt: second
    image: {from: a}
  - id: c
    prompt: third
    image: {from: b}
"""


def run(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", *args, str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def consistent(spec: Path) -> Lockfile:
    """Every scene done, and each scene's recorded input is its predecessor's last frame."""
    lock = Lockfile.load(spec.with_suffix(".lock"), "chain")
    assert {sid: e.state for sid, e in lock.scenes.items()} == dict.fromkeys("abc", "done")
    for before, after in (("a", "b"), ("b", "c")):
        last = lock.scenes[before].frames["last"]
        assert (spec.parent / last.path).is_file()
        assert lock.scenes[after].request["image"] == last.pixels  # chained by its pixels
    return lock


def check_run(proc: subprocess.CompletedProcess[str], spec: Path) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert "AssertionError" not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    plan = run(spec, "plan", "--json")
    assert plan.returncode == 0, plan.stderr
    assert {s["action"] for s in json.loads(plan.stdout)["steps"]} == {"reuse"}


def test_force_the_head_of_a_preview_chain_renders_it_again_and_keeps_the_chain(
    write_spec: Any,
) -> None:
    spec = write_spec(CHAIN, name="chain.yaml")
    assert run(spec, "render", "--quiet").returncode == 0
    before = consistent(spec)
    proc = run(spec, "render", "--force", "a", "--provider", "preview")
    check_run(proc, spec)
    after = consistent(spec)
    assert after.scenes["a"].job_id != before.scenes["a"].job_id  # a was rendered again
    # the preview is deterministic: a's new last frame is byte-identical, so b and c, whose
    # fingerprints did not change, are reused rather than rendered for nothing
    assert after.scenes["a"].frames["last"].sha256 == before.scenes["a"].frames["last"].sha256
    assert [after.scenes[s].job_id for s in "bc"] == [before.scenes[s].job_id for s in "bc"]


def test_done_edited_to_failed_is_retried_without_a_traceback(write_spec: Any) -> None:
    spec = write_spec(CHAIN, name="chain.yaml")
    assert run(spec, "render", "--quiet").returncode == 0
    before = consistent(spec)
    data = json.loads(spec.with_suffix(".lock").read_text(encoding="utf-8"))
    data["scenes"]["a"]["state"] = "failed"
    spec.with_suffix(".lock").write_text(json.dumps(data, indent=2), encoding="utf-8")
    proc = run(spec, "render", "--quiet")
    check_run(proc, spec)
    after = consistent(spec)
    assert after.scenes["a"].job_id != before.scenes["a"].job_id  # retried as the plan said


def test_a_chain_whose_head_changed_renders_every_scene_again(write_spec: Any) -> None:
    """The same replanning when the head's frames really change: b and c are rendered too."""
    spec = write_spec(CHAIN, name="chain.yaml")
    assert run(spec, "render", "--quiet").returncode == 0
    before = consistent(spec)
    spec.write_text(spec.read_text().replace("prompt: first", "prompt: changed"))
    proc = run(spec, "render", "--quiet")
    check_run(proc, spec)
    after = consistent(spec)
    assert all(after.scenes[s].job_id != before.scenes[s].job_id for s in "abc")


def test_an_unexpected_error_in_one_scene_is_a_named_failure_not_a_traceback(
    write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever bug remains, the user gets one line per scene and a render that goes on."""
    spec = write_spec(CHAIN.replace("image: {from: b}", "image: assets/a.png"), name="chain.yaml")
    real = render_run.walk

    async def buggy(ctx: Any, step: Any) -> Any:
        if step.scene.id == "b":
            raise AssertionError("a bug")
        return await real(ctx, step)

    monkeypatch.setattr(render_run, "walk", buggy)
    out = CliRunner().invoke(cli.main, ["render", "--quiet", str(spec)])
    assert isinstance(out.exception, SystemExit) and out.exit_code == 1, out.exception
    assert "error: b: internal error (AssertionError: a bug)" in out.output
    lock = Lockfile.load(spec.with_suffix(".lock"), "chain")
    assert {sid: e.state for sid, e in lock.scenes.items()} == {"a": "done", "c": "done"}


def test_an_unexpected_error_outside_any_scene_is_one_line_not_a_traceback(
    write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(CHAIN, name="chain.yaml")

    def buggy(*args: object, **kwargs: object) -> None:
        raise AssertionError("a planning bug sk-SECRET-0123")

    monkeypatch.setattr(planning, "make_plan", buggy)
    monkeypatch.setenv("RUNWARE_API_KEY", "sk-SECRET-0123")
    monkeypatch.delenv("HAILUO_PIPE_DEBUG", raising=False)
    out = CliRunner().invoke(cli.main, ["plan", str(spec)])
    assert isinstance(out.exception, SystemExit) and out.exit_code == 1, out.exception
    assert out.output.startswith("error: internal error (AssertionError: a planning bug ***)")
    assert "sk-SECRET" not in out.output
    # click's own errors are still click's
    usage = CliRunner().invoke(cli.main, ["plan", "--no-such-option", str(spec)])
    assert usage.exit_code == 2 and "No such option" in usage.output


def test_a_rerun_walks_only_the_scenes_that_have_something_to_do(
    write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reused scenes, chained ones included, are reported without a walk of their own (a large
    rerun is mostly these); a scene after one that has work waits for it and is walked."""
    spec = write_spec(CHAIN, name="chain.yaml")
    assert run(spec, "render", "--quiet").returncode == 0
    walked: list[tuple[str, str]] = []
    real = render_run.walk

    async def recording(ctx: Any, step: Any) -> Any:
        walked.append((step.scene.id, step.action))
        return await real(ctx, step)

    monkeypatch.setattr(render_run, "walk", recording)
    out = CliRunner().invoke(cli.main, ["render", "--quiet", str(spec)])
    assert out.exit_code == 0, out.output
    assert walked == [] and "3 reused" in out.output

    lock = consistent(spec)
    (spec.parent / lock.scenes["a"].frames["last"].path).unlink()
    out = CliRunner().invoke(cli.main, ["render", "--quiet", str(spec)])
    assert out.exit_code == 0, out.output
    assert walked == [("a", "restore"), ("b", "reuse"), ("c", "reuse")]
    assert "1 restored, 2 reused" in out.output, out.output
    after = consistent(spec)
    assert [after.scenes[s].job_id for s in "abc"] == [lock.scenes[s].job_id for s in "abc"]
