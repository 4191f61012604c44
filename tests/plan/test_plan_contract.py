"""The plan is the contract: rehearsals never touch paid results, a saved plan is applied
exactly or refused, and a render's output tells the truth about every scene."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.errors import LockfileError
from hailuo_pipe.state.lockfile import Lockfile

PAID = """
version: 1
name: paid
defaults:
  provider: wavespeed
scenes:
  - id: a
    prompt: "[Aerial dive] the harbor"
    image: assets/a.png
  - id: b
    prompt: "[Pan left] the docks"
    image: {from: a, frame: last}
  - id: c
    prompt: "[Push in] the atrium"
    image: assets/b.jpg
output:
  path: renders/paid.mp4
  sequence: [a, b]
"""


def run(
    spec: Path, emu: Emulator, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **provider_env(emu)}
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", *args, str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def paid_jobs(emu: Emulator) -> int:
    return sum(v for k, v in emu.jobs().items() if k != "total")


def test_a_preview_rehearsal_never_touches_paid_clips_or_their_lockfile(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(PAID)
    first = run(spec, emulator, "render", "-q")
    assert first.returncode == 0, first.stderr
    lock_before = spec.with_suffix(".lock").read_bytes()
    clips_before = digests(spec.parent / "renders")
    assert paid_jobs(emulator) == 3

    rehearsal = run(spec, emulator, "render", "-q", "--provider", "preview")
    assert rehearsal.returncode == 0, rehearsal.stderr
    assert paid_jobs(emulator) == 3  # nothing paid
    assert spec.with_suffix(".lock").read_bytes() == lock_before
    after = digests(spec.parent / "renders")
    assert {k: v for k, v in after.items() if k in clips_before} == clips_before
    rehearsed = spec.parent / "renders" / "paid" / "preview"
    assert {"a.mp4", "b.mp4", "c.mp4", "paid.mp4", "story.lock"} <= {
        p.name for p in rehearsed.iterdir()
    }
    rehearsal_lock = json.loads((rehearsed / "story.lock").read_text())
    assert all(e["job_id"].startswith("local-") for e in rehearsal_lock["scenes"].values())

    # without --provider, every command looks at the paid renders: all up to date
    status = run(spec, emulator, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    plan = json.loads(run(spec, emulator, "plan", "--json").stdout)
    assert [s["action"] for s in plan["steps"]] == ["reuse"] * 3
    # with it, they look at the rehearsal: up to date too, and its cut is its own
    assert run(spec, emulator, "status", "--provider", "preview").returncode == 0
    cut = run(spec, emulator, "cut", "--provider", "preview")
    assert cut.returncode == 0, cut.stderr
    assert Path(cut.stdout.strip()).resolve() == (rehearsed / "paid.mp4").resolve()


def test_a_saved_plan_is_applied_exactly(write_spec, emulator: Emulator, tmp_path: Path) -> None:
    spec = write_spec(PAID)
    planfile = tmp_path / "review.plan.json"
    made = run(spec, emulator, "plan", "--out", str(planfile))
    assert made.returncode == 0, made.stderr
    saved = json.loads(planfile.read_text())
    assert [s["action"] for s in saved["steps"]] == ["create", "create", "create"]
    assert saved["lockfile_sha256"] is None

    applied = run(spec, emulator, "render", "--json", "--plan", str(planfile))
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert [s["outcome"] for s in result["scenes"]] == ["rendered"] * 3
    assert result["spent"] == result["planned"] == float(saved["cost"])
    assert paid_jobs(emulator) == 3

    # the same plan again is stale: the lockfile it was made from has changed
    again = run(spec, emulator, "render", "--plan", str(planfile))
    assert again.returncode == 1
    assert "stale" in again.stderr and "story.lock appeared" in again.stderr
    assert paid_jobs(emulator) == 3


def test_a_stale_saved_plan_is_refused_before_anything_is_sent(
    write_spec, emulator: Emulator, tmp_path: Path
) -> None:
    spec = write_spec(PAID)
    planfile = tmp_path / "p.json"
    assert run(spec, emulator, "plan", "--out", str(planfile)).returncode == 0

    # an input image changes after review: the spec's bytes are the same, its meaning is not
    from PIL import Image

    Image.new("RGB", (640, 360), (1, 2, 3)).save(spec.parent / "assets" / "b.jpg")
    refused = run(spec, emulator, "render", "--plan", str(planfile))
    assert refused.returncode == 1
    assert "stale" in refused.stderr and "c: its inputs changed" in refused.stderr
    assert "nothing was submitted" in refused.stderr
    assert emulator.requests("submit") == []

    spec.write_text(spec.read_text().replace("the docks", "the cranes"))
    refused = run(spec, emulator, "render", "--plan", str(planfile))
    assert refused.returncode == 1 and "story.yaml changed" in refused.stderr

    flags = run(spec, emulator, "render", "--plan", str(planfile), "--force", "a")
    assert flags.returncode == 2 and "--force cannot go with --plan" in flags.stderr
    assert emulator.requests("submit") == []


def test_the_plan_shown_is_made_after_the_lock(write_spec, emulator: Emulator) -> None:
    """A lock clash refuses before printing a plan that would not run."""
    spec = write_spec(PAID)
    hold = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('held', flush=True)\n"
        "time.sleep(30)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(spec.parent / ".story.lock.pid")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        clash = run(spec, emulator, "render")
    finally:
        holder.kill()
        holder.wait()
    assert clash.returncode == 1
    assert "being rendered by process" in clash.stderr
    assert "Plan:" not in clash.stdout


def test_failed_scenes_are_named_and_the_cut_says_why_it_was_skipped(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(PAID)
    emulator.configure(fail_prompt="the harbor")
    quiet = run(spec, emulator, "render", "-q")
    assert quiet.returncode == 1
    assert "error: a: job " in quiet.stderr  # the scene's own error, with its job
    assert "render again to retry it" in quiet.stderr
    assert "the cut was not assembled: a, b did not finish" in quiet.stderr
    assert "b: needs a, which failed" in quiet.stderr
    assert "Traceback" not in quiet.stderr

    as_json = json.loads(run(spec, emulator, "render", "--json").stdout)
    by_scene = {s["scene"]: s for s in as_json["scenes"]}
    assert by_scene["a"]["outcome"] == "failed" and by_scene["a"]["error"]
    assert by_scene["b"]["outcome"] == "skipped"
    assert by_scene["c"]["outcome"] == "reused"
    assert as_json["cut"] is None and "a, b did not finish" in as_json["cut_skipped"]


def test_interrupted_scenes_are_not_failed_and_their_jobs_are_in_flight(
    write_spec, emulator: Emulator
) -> None:
    spec = write_spec(PAID)
    emulator.configure(job_seconds=30)
    env = {**os.environ, **provider_env(emulator)}
    child = subprocess.Popen(
        [sys.executable, "-m", "hailuo_pipe", "render", "-q", str(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = spec.with_suffix(".lock")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:  # as a reader: the render's journal holds its changes until it ends
            scenes = Lockfile.load(lock, "paid").scenes
        except LockfileError:
            scenes = {}
        if sum(1 for e in scenes.values() if e.state == "submitted") == 2:
            break
        time.sleep(0.1)
    else:
        child.kill()
        raise AssertionError("the render never submitted a and c")
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "failed" not in err and "Traceback" not in err
    assert "a: interrupted; job " in err and "resume it (free)" in err
    assert "1 not started" in out and "2 interrupted" in out
    assert "spent $0.00 (planned $0.69), $0.46 in flight" in out
    assert paid_jobs(emulator) == 2


def test_an_expired_download_says_so_and_what_to_do(write_spec, emulator: Emulator) -> None:
    spec = write_spec(PAID)
    assert run(spec, emulator, "render", "-q").returncode == 0
    (spec.parent / "renders" / "paid" / "c.mp4").unlink()
    emulator.configure(expire_outputs=True)
    again = run(spec, emulator, "render", "-q")
    assert again.returncode == 1
    assert "c: the download URL of job" in again.stderr
    assert "cache pull" in again.stderr and "--force c" in again.stderr
    assert paid_jobs(emulator) == 3
