"""Reruns months later: a new hailuo-pipe never re-pays for an unchanged storyboard.

tests/scenarios/golden/ holds storyboards rendered by older versions, with lockfiles and clips.
Never regenerate one: add a new folder each time the lockfile or fingerprint scheme changes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.media import frames
from hailuo_pipe.providers.runware import RunwareProvider
from hailuo_pipe.render import RenderOptions, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

GOLDEN = Path(__file__).parent / "golden"
VERSIONS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def cli(spec: Path, emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", *args, str(spec)],
        env={**os.environ, **provider_env(emu)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(params=VERSIONS)
def golden(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    copy = tmp_path / request.param
    shutil.copytree(GOLDEN / request.param, copy)
    return copy / "story.yaml"


def test_a_golden_lockfile_is_reused_for_nothing(golden: Path, emulator: Emulator) -> None:
    plan = json.loads(cli(golden, emulator, "plan", "--json").stdout)
    assert plan["cost"] == 0
    assert {s["action"] for s in plan["steps"]} == {"reuse"}
    assert any("request format updated" in s["reason"] for s in plan["steps"])

    done = cli(golden, emulator, "render", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["spent"] == 0 and {s["outcome"] for s in result["scenes"]} == {"reused"}
    assert emulator.requests() == []
    # the render migrated every entry: the next plan has nothing to say
    lock = json.loads(golden.with_suffix(".lock").read_text())
    assert {e["scheme"] for e in lock["scenes"].values()} == {2}
    again = json.loads(cli(golden, emulator, "plan", "--json").stdout)
    assert [s["reason"] for s in again["steps"]] == ["up to date"] * len(again["steps"])


@pytest.mark.parametrize("damage", ["deleted", "emptied", "cut short"])
def test_deleted_frames_are_restored_from_their_clips_for_free(
    golden: Path, emulator: Emulator, damage: str
) -> None:
    """Frames are written without an fsync: a crash may leave one missing, empty or short
    (whatever the disk had of it), and each is extracted again from its clip, for free."""
    frames = sorted(golden.parent.glob("renders/*/*.png"))
    assert frames
    for png in frames:
        if damage == "deleted":
            png.unlink()
        else:
            data = png.read_bytes()
            png.write_bytes(b"" if damage == "emptied" else data[: len(data) // 2])
    plan = json.loads(cli(golden, emulator, "plan", "--json").stdout)
    assert plan["cost"] == 0
    assert {s["action"] for s in plan["steps"]} == {"restore"}

    done = cli(golden, emulator, "render", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["spent"] == 0
    assert {s["outcome"] for s in result["scenes"]} == {"restored"}
    assert emulator.requests() == []
    assert all(p.is_file() for p in frames)
    assert cli(golden, emulator, "status").returncode == 0


def test_frames_encoded_another_way_change_no_fingerprint(
    golden: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Pillow or zlib upgrade, or a faster PNG setting, changes a frame's bytes, not its
    pixels: no chained scene is paid for again."""
    assert cli(golden, emulator, "render", "-q").returncode == 0  # migrate first
    for png in golden.parent.glob("renders/*/*.png"):
        png.unlink()

    def other_encoder(image):  # type: ignore[no-untyped-def]
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=9)
        return out.getvalue()

    monkeypatch.setattr(frames, "_png", other_encoder)
    board = load_storyboard(golden)
    recorded = Lockfile.load(board.lock_path, board.name).scenes
    before = {k: e.frames["last"].sha256 for k, e in recorded.items()}
    result = render(board, RenderOptions(environ=provider_env(emulator)))
    assert {r.outcome for r in result.results} == {"restored"}
    after = Lockfile.load(board.lock_path, board.name).scenes
    assert any(after[k].frames["last"].sha256 != sha for k, sha in before.items())
    rerun = render(load_storyboard(golden), RenderOptions(environ=provider_env(emulator)))
    assert {r.outcome for r in rerun.results} == {"reused"}
    assert emulator.requests() == []


def test_a_new_default_field_in_a_request_re_pays_no_scene(
    golden: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An adapter that starts sending a new default (as Runware's `ttl` might) builds
    another wire request for the same clip: the fingerprint does not change."""
    assert cli(golden, emulator, "render", "-q").returncode == 0  # migrate first
    build = RunwareProvider.build_request

    def with_new_default(self, scene, images):  # type: ignore[no-untyped-def]
        request = build(self, scene, images)
        request.body[0]["ttl"] = 86400
        return request

    monkeypatch.setattr(RunwareProvider, "build_request", with_new_default)
    result = render(load_storyboard(golden), RenderOptions(environ=provider_env(emulator)))
    assert {r.outcome for r in result.results} == {"reused"}
    assert emulator.requests() == []


def test_a_scheme_1_entry_survives_an_adapter_change_at_the_same_upgrade(
    golden: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old lockfile meets a new scheme and a changed adapter at once: the scene's meaning,
    read field by field from the recorded request, decides."""
    build = RunwareProvider.build_request

    def renamed_default(self, scene, images):  # type: ignore[no-untyped-def]
        request = build(self, scene, images)
        request.body[0]["ttl"] = 3600  # a wire detail of ours, not the scene's
        return request

    monkeypatch.setattr(RunwareProvider, "build_request", renamed_default)
    result = render(load_storyboard(golden), RenderOptions(environ=provider_env(emulator)))
    assert {r.outcome for r in result.results} == {"reused"}
    assert emulator.requests() == []


def test_a_resolution_change_is_no_wire_detail(golden: Path, emulator: Emulator) -> None:
    """WaveSpeed's tier is the endpoint, not a body field: a scheme-1 entry whose scene moved
    from 768p to 1080p is rendered again, not taken for an unchanged request."""
    text = golden.read_text()
    marker = "    image: assets/first.png\n"
    assert marker in text
    golden.write_text(text.replace(marker, marker + "    resolution: 1080p\n", 1))
    plan = json.loads(cli(golden, emulator, "plan", "--json").stdout)
    actions = {s["scene"]: s["action"] for s in plan["steps"]}
    assert actions["ws"] == "replace", plan
    assert actions["af"] == "reuse" and actions["t2v"] == "reuse"


def test_a_real_change_still_renders_again(golden: Path, emulator: Emulator) -> None:
    """The migration is no blanket pass: a scene whose prompt changed is replaced."""
    golden.write_text(golden.read_text().replace("the cranes", "the cranes at night"))
    plan = json.loads(cli(golden, emulator, "plan", "--json").stdout)
    actions = {s["scene"]: s["action"] for s in plan["steps"]}
    assert actions["mm"] == "replace"
    assert {a for s, a in actions.items() if s != "mm"} == {"reuse"}


def test_a_shared_cache_filled_by_an_older_version_is_still_a_hit(
    golden: Path, emulator: Emulator, tmp_path: Path
) -> None:
    """Entries pushed under scheme-1 fingerprints are found by their old names: a teammate's
    clip, rendered before the upgrade, is fetched, not paid for again."""
    cache = f"file://{tmp_path / 'shared-cache'}"
    pushed = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "cache", "push", "--cache", cache, str(golden)],
        env={**os.environ, **provider_env(emulator)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pushed.returncode == 0, pushed.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(golden, fresh / "story.yaml")
    shutil.copytree(golden.parent / "assets", fresh / "assets")
    env = {**os.environ, **provider_env(emulator), "HAILUO_PIPE_CACHE": cache}
    plan = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "plan", "--json", str(fresh / "story.yaml")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    steps = json.loads(plan.stdout)["steps"]
    assert {s["action"] for s in steps} == {"pull"}, steps
    done = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", "--json", str(fresh / "story.yaml")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spent"] == 0
    assert emulator.requests() == []
