"""`render` against the provider emulator: real HTTP, real MP4s, counted submissions."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.errors import AdoptRefused, BudgetExceeded, ConfigError
from hailuo_pipe.plan import make_plan
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

GRAPH = """
version: 1
name: graph
vars:
  take: one
scenes:
  - id: root
    provider: wavespeed
    prompt: "[Aerial dive] the harbor, take {{ take }}"
    image: assets/a.png
  - id: left
    provider: runware
    prompt: "[Pan left] the docks"
    image: {from: root, frame: last}
  - id: right
    provider: minimax
    prompt: "[Pan right] the cranes"
    image: {from: root, frame: last}
    end_image: assets/b.jpg
  - id: leaf
    provider: gmicloud
    prompt: "[Push in] the atrium"
    image: {from: left, frame: last}
  - id: alone
    provider: apiframe
    prompt: "[Static shot] a lighthouse"
    image: https://example.com/lighthouse.jpg
"""


def paid(emu: Emulator) -> dict[str, int]:
    """Paid jobs the emulator created, per provider (zeros left out)."""
    return {k: v for k, v in emu.jobs().items() if v and k != "total"}


def opts(emu: Emulator, **kw: object) -> RenderOptions:
    return RenderOptions(environ=provider_env(emu), concurrency=8, **kw)  # type: ignore[arg-type]


def outcomes(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.scene: r.outcome for r in result.results}


def test_chain_and_fan_out_then_noop_then_change(write_spec, emulator: Emulator) -> None:
    spec = write_spec(GRAPH)
    first = render(load_storyboard(spec), opts(emulator))
    assert set(outcomes(first).values()) == {"rendered"}, first
    assert paid(emulator) == {
        "wavespeed": 1,
        "runware": 1,
        "minimax": 1,
        "gmicloud": 1,
        "apiframe": 1,
    }
    lock = Lockfile.load(spec.with_suffix(".lock"), "graph")
    for scene_id, entry in lock.scenes.items():
        assert entry.state == "done", scene_id
        clip = spec.parent / entry.output.path  # type: ignore[union-attr]
        assert hashlib.sha256(clip.read_bytes()).hexdigest() == entry.output.sha256  # type: ignore[union-attr]
        assert entry.cost is not None and entry.job_id
    assert "key" not in (spec.with_suffix(".lock").read_text()).lower().replace('"key":', "")

    # The frame sent to `left` is exactly root's last frame, losslessly.
    last_png = (spec.parent / lock.scenes["root"].frames["last"].path).read_bytes()
    submits = [r for r in emulator.requests("submit") if r["provider"] == "runware"]
    sent = submits[0]["body"][0]["inputs"]["frameImages"][0]["image"]
    assert base64.b64decode(sent.split(",", 1)[1]) == last_png

    seen = len(emulator.requests())
    again = render(load_storyboard(spec), opts(emulator))
    assert set(outcomes(again).values()) == {"reused"}
    assert len(emulator.requests()) == seen  # a no-op rerun sends nothing at all

    changed = load_storyboard(spec, overrides={"take": "two"})
    third = render(changed, opts(emulator))
    assert outcomes(third) == {
        "root": "rendered",
        "left": "rendered",
        "right": "rendered",
        "leaf": "rendered",
        "alone": "reused",
    }
    assert sum(paid(emulator).values()) == 9


def test_noop_rerun_loads_neither_http_nor_schema_code(write_spec, emulator: Emulator) -> None:
    """What keeps a no-op rerun of a large storyboard under a second: nothing to fetch loads no
    HTTP client, and a document and requests found valid before load no JSON Schema code."""
    spec = write_spec(GRAPH)
    render(load_storyboard(spec), opts(emulator))
    code = (
        "import runpy, sys\n"
        "sys.argv = ['hailuo-pipe', 'render', '--quiet', sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_module('hailuo_pipe', run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "print('loaded:', *(m for m in ('httpx', 'jsonschema') if m in sys.modules))\n"
    )
    env = {**os.environ, **provider_env(emulator)}
    loaded = []
    # the render left its memos behind, and whatever is new is checked without jsonschema
    # unless it is refused: neither rerun loads either
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code, str(spec)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        loaded.append(done.stdout.rpartition("loaded:")[2].split())
    assert loaded == [[], []]


def test_missing_clip_is_downloaded_again_not_regenerated(write_spec, emulator: Emulator) -> None:
    spec = write_spec(GRAPH)
    render(load_storyboard(spec), opts(emulator))
    (spec.parent / "renders/graph/leaf.mp4").unlink()
    plan = make_plan(load_storyboard(spec), Lockfile.load(spec.with_suffix(".lock"), "graph"))
    assert plan.step("leaf").action == "download" and plan.cost == 0
    result = render(load_storyboard(spec), opts(emulator))
    assert outcomes(result)["leaf"] == "fetched"
    assert sum(paid(emulator).values()) == 5


def test_missing_key_is_refused_before_anything_is_sent(write_spec, emulator: Emulator) -> None:
    spec = write_spec(GRAPH)
    env = provider_env(emulator)
    del env["MINIMAX_API_KEY"]
    with pytest.raises(ConfigError, match="MINIMAX_API_KEY"):
        render(load_storyboard(spec), RenderOptions(environ=env))
    assert emulator.requests() == []


def test_max_cost_refuses_the_run(write_spec, emulator: Emulator) -> None:
    spec = write_spec(GRAPH)
    from decimal import Decimal

    with pytest.raises(BudgetExceeded, match="more than --max-cost"):
        render(load_storyboard(spec), opts(emulator, max_cost=Decimal("0.50")))
    assert emulator.requests() == []


def test_failed_job_blocks_only_its_dependants(write_spec, emulator: Emulator) -> None:
    spec = write_spec(GRAPH)
    emulator.configure(fail_prompt="the docks")
    result = render(load_storyboard(spec), opts(emulator))
    assert outcomes(result) == {
        "root": "rendered",
        "left": "failed",
        "right": "rendered",
        "leaf": "skipped",
        "alone": "rendered",
    }
    failed = {r.scene: r for r in result.results}["left"]
    assert failed.job_id and failed.job_id in (failed.error or "")
    plan = make_plan(load_storyboard(spec), Lockfile.load(spec.with_suffix(".lock"), "graph"))
    assert plan.step("left").action == "retry"


def test_lost_submit_answer_is_never_resent_blindly(write_spec, emulator: Emulator) -> None:
    spec = write_spec("""
version: 1
name: lost
scenes:
  - id: only
    provider: wavespeed
    prompt: "[Push in] harbor"
    image: assets/a.png
""")
    emulator.configure(drop={"on": "submit", "count": 1})
    result = render(load_storyboard(spec), opts(emulator))
    assert outcomes(result) == {"only": "failed"}
    assert "--resubmit only" in (result.results[0].error or "")
    assert paid(emulator).get("wavespeed") == 1
    again = render(load_storyboard(spec), opts(emulator))  # still not resent
    assert outcomes(again) == {"only": "failed"}
    assert paid(emulator).get("wavespeed") == 1
    resent = render(load_storyboard(spec), opts(emulator, resubmit={"only"}))
    assert outcomes(resent) == {"only": "rendered"}
    assert paid(emulator).get("wavespeed") == 2


def test_a_lost_job_found_at_the_provider_is_adopted_not_paid_again(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec("""
version: 1
name: lost
scenes:
  - id: only
    provider: apiframe
    prompt: "[Push in] harbor"
    image: https://example.com/harbor.jpg
""")
    emulator.configure(drop={"on": "submit", "count": 1})
    lost = render(load_storyboard(spec), opts(emulator))
    assert "--adopt only=JOB" in (lost.results[0].error or "")
    [job] = emulator.job_list()  # what the user finds on the provider's dashboard
    adopted = render(load_storyboard(spec), opts(emulator, adopt={"only": job["id"]}))
    assert outcomes(adopted) == {"only": "resumed"}
    assert paid(emulator) == {"apiframe": 1}
    entry = Lockfile.load(spec.with_suffix(".lock"), "lost").scenes["only"]
    assert (entry.state, entry.job_id) == ("done", job["id"])


def test_adopt_is_refused_for_a_scene_not_waiting_on_a_lost_job(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(GRAPH)
    with pytest.raises(AdoptRefused, match="alone has never been submitted"):
        render(load_storyboard(spec), opts(emulator, adopt={"alone": "job-1"}))
    render(load_storyboard(spec), opts(emulator, only={"alone"}))
    with pytest.raises(AdoptRefused, match="alone is done"):
        render(load_storyboard(spec), opts(emulator, adopt={"alone": "job-1"}))
    assert paid(emulator) == {"apiframe": 1}


def test_truncated_download_is_retried_from_the_same_job(write_spec, emulator: Emulator) -> None:
    spec = write_spec(GRAPH)
    emulator.configure(truncate_downloads={"every": 2})
    result = render(load_storyboard(spec), opts(emulator))
    assert set(outcomes(result).values()) == {"rendered"}
    assert sum(paid(emulator).values()) == 5


def _render_proc(spec: Path, emu: Emulator) -> subprocess.Popen[bytes]:
    env = {**os.environ, **provider_env(emu)}
    return subprocess.Popen(
        [sys.executable, "-m", "hailuo_pipe", "render", "--quiet", "-j", "4", str(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


CHAIN = "version: 1\nname: killed\ndefaults:\n  provider: runware\nscenes:\n" + "".join(
    f'  - id: s{i}\n    prompt: "[Tracking shot] shot {i}"\n'
    + ("    image: assets/a.png\n" if i % 3 == 0 else f"    image: {{from: s{i - 1}}}\n")
    for i in range(6)
)


def test_kill_9_at_random_moments_never_pays_twice(write_spec, emulator: Emulator) -> None:
    emulator.configure(job_seconds=0.6)
    spec = write_spec(CHAIN)
    rng = random.Random(4)
    for _ in range(6):
        proc = _render_proc(spec, emulator)
        time.sleep(rng.uniform(0.3, 1.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = _render_proc(spec, emulator)
    assert final.wait(60) == 0
    assert paid(emulator) == {"runware": 6}
    lock = Lockfile.load(spec.with_suffix(".lock"), "killed")
    assert {e.state for e in lock.scenes.values()} == {"done"}


def test_ctrl_c_stops_and_resumes_without_resubmitting(write_spec, emulator: Emulator) -> None:
    emulator.configure(job_seconds=3)
    spec = write_spec(CHAIN)
    proc = _render_proc(spec, emulator)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 130
    lock = Lockfile.load(spec.with_suffix(".lock"), "killed")
    assert {e.state for e in lock.scenes.values()} == {"submitted"}
    final = _render_proc(spec, emulator)
    assert final.wait(60) == 0
    assert paid(emulator) == {"runware": 6}


def test_two_concurrent_renders_of_one_spec(write_spec, emulator: Emulator) -> None:
    emulator.configure(job_seconds=1)
    spec = write_spec(CHAIN)
    first = _render_proc(spec, emulator)
    time.sleep(0.8)
    second = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", str(spec)],
        env={**os.environ, **provider_env(emulator)},
        capture_output=True,
        text=True,
    )
    assert second.returncode == 1
    assert "is being rendered by process" in second.stderr
    assert first.wait(60) == 0
    assert paid(emulator) == {"runware": 6}
