"""fal.ai and Replicate under the reliability treatment of the others: odd job ids are parked
and never followed, and kills at random moments never pay twice (Replicate's lost submits
found in its list by the render itself; the rest as a user would, on the dashboard)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from support import soak
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.state.lockfile import Lockfile

ONE = """
version: 1
name: one
scenes:
  - id: s
    provider: {provider}
    prompt: "[Static shot] a lighthouse"
    image: https://example.com/lighthouse.jpg
"""


def cli(spec: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", *args, str(spec)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("provider", ["fal", "replicate"])
@pytest.mark.parametrize("job_id", ["../../../../etc/passwd", "abc\r\nX-Evil: 1", "a b"])
def test_an_odd_job_id_from_a_host_is_parked_never_sent_and_adoptable(
    write_spec, emulator: Emulator, provider: str, job_id: str
) -> None:
    spec = write_spec(ONE.format(provider=provider))
    emulator.configure(job_id=job_id)
    done = cli(spec, provider_env(emulator))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "\r" not in done.stderr
    assert "--adopt s=" in done.stderr
    assert emulator.jobs()["total"] == 1
    assert [r["kind"] for r in emulator.requests()] == ["submit"]  # nothing polled
    assert not any("passwd" in r["path"] for r in emulator.requests())
    entry = Lockfile.load(spec.with_suffix(".lock"), "one").scenes["s"]
    assert entry.state == "unknown" and entry.job_id is None
    real = next(j["id"] for j in emulator.job_list())
    emulator.configure(job_id=None)
    done = cli(spec, provider_env(emulator), "--adopt", f"s={real}")
    assert done.returncode == 0, done.stderr
    assert emulator.jobs()["total"] == 1


def chain(provider: str, scenes: int) -> str:
    lines = [f"version: 1\nname: {soak.NAME}\ndefaults:\n  provider: {provider}\nscenes:\n"]
    for i in range(scenes):
        sid = soak.scene_id(i)
        image = "assets/a.png" if i == 0 else f"{{from: {soak.scene_id(i - 1)}}}"
        lines.append(
            f'  - id: {sid}\n    prompt: "[Tracking shot] shot {soak.tag(sid)}"\n'
            f"    image: {image}\n"
        )
    return "".join(lines)


@pytest.mark.parametrize("provider", ["fal", "replicate"])
def test_kill_9_at_random_moments_on_a_host_never_pays_twice(
    emulator: Emulator, tmp_path: Path, provider: str
) -> None:
    scenes = 4
    emulator.configure(job_seconds=0.6)
    spec = soak.write_workdir(tmp_path, scenes)
    spec.write_text(chain(provider, scenes), encoding="utf-8")
    env = {**os.environ, **provider_env(emulator)}
    rng = random.Random(13 if provider == "fal" else 17)
    killed = [
        soak.run_render(spec, env, delay=rng.uniform(0.2, 1.4), sig="KILL") for _ in range(6)
    ]
    assert sum(run.states != {"done": scenes} for run in killed) >= 3  # killed mid-render
    figures = soak.Figures(scenes=scenes, seed=0)
    for _ in range(4):  # finish; a parked scene is resolved on the dashboard, as a user would
        run = soak.run_render(spec, env)
        if soak.lock_states(spec) == {"done": scenes}:
            break
        soak.resolve_unknowns(spec, emulator, env, figures)
        assert "Traceback" not in run.stderr
    assert soak.lock_states(spec) == {"done": scenes}, figures.problems
    assert figures.problems == []
    assert soak.verify_outputs(spec, scenes) == []
    problems, paid, _ = soak.verify_jobs(emulator, scenes)
    assert problems == [] and paid == scenes
