"""Reliability: kills, provider faults, full disks, broken lockfiles, and no secret anywhere.

The soak harness (tests/soak.py; `make soak` runs it with 50 kills) is run here with fewer
kills. The figures in docs/reliability.md come from these runs: each test prints its own.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import soak
from support.emulator_fixture import key_variables, provider_env

import hailuo_pipe.render as rendering
from hailuo_emulator import Emulator
from hailuo_pipe import cli
from hailuo_pipe.cli import common
from hailuo_pipe.render import RenderOptions, RenderResult, SceneResult, render
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

SCENES = 10
RATE = 0.2


def figures_line(name: str, data: dict[str, Any]) -> None:
    """One line per run for docs/reliability.md (shown with pytest -s)."""
    print(f"\nFIGURES {name}: {json.dumps(data, sort_keys=True)}")


# -- crashes ------------------------------------------------------------------------------------


def test_sigkill_at_random_moments_loses_nothing_and_pays_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    # jobs long enough that the render outlasts the kills, however fast this machine renders
    figures = soak.run_soak(
        emulator, tmp_path, kills=8, scenes=SCENES, seed=7, job_seconds=1.0, max_delay=1.2
    )
    figures_line("sigkill", figures.to_json())
    assert figures.ok, figures.table()
    assert figures.signals == {"KILL": 8}
    assert figures.kills_with_work_left >= 6  # the kills landed mid-render, not after it
    assert figures.paid_jobs == SCENES


def test_sigint_and_sigterm_stop_cleanly_and_resume(emulator: Emulator, tmp_path: Path) -> None:
    figures = soak.run_soak(
        emulator,
        tmp_path,
        kills=8,
        scenes=SCENES,
        seed=11,
        signals=("INT", "TERM"),
        job_seconds=1.0,  # as above: the render outlasts the signals
        max_delay=1.2,
    )
    figures_line("sigint-sigterm", figures.to_json())
    assert figures.ok, figures.table()  # includes: no traceback after any signal
    assert sum(figures.signals.values()) == 8
    assert figures.graceful_exits >= 4  # stopped by the handler: exit 130, resumable
    assert figures.paid_jobs == SCENES


def test_ctrl_c_before_the_render_starts_exits_130_without_a_traceback(
    write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(soak.storyboard(2))

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "load_spec", interrupted)
    result = CliRunner().invoke(cli.main, ["render", str(spec)])
    assert result.exit_code == 130, result.output
    assert "Interrupted" in result.output and "Aborted" not in result.output


INTERRUPT_IMPORTS = """
import importlib.abc, sys
from importlib.metadata import entry_points

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "hailuo_pipe.cli":
            raise KeyboardInterrupt

sys.meta_path.insert(0, CtrlC())
[script] = entry_points(group="console_scripts", name="hailuo-pipe")
script.load()()
"""


def test_ctrl_c_while_the_command_loads_exits_130_without_a_traceback() -> None:
    """The installed `hailuo-pipe` script, interrupted while it imports its modules."""
    got = subprocess.run(
        [sys.executable, "-c", INTERRUPT_IMPORTS], capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 130, got.stderr
    assert got.stderr == "Interrupted before anything was done.\n"


def test_temporary_files_of_a_killed_render_are_removed(emulator: Emulator, tmp_path: Path) -> None:
    spec = soak.write_workdir(tmp_path, 2)
    folder = tmp_path / "renders" / soak.NAME
    folder.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    ).stdout.strip()
    stale = [
        tmp_path / f".{soak.NAME}.lock.k3j2h1.tmp",  # a lockfile write cut short
        folder / ".s00.mp4.x8y7z6.part",  # a download cut short
        folder / f".s00.last.png.{dead}.0a1b2c3d.tmp",  # a frame extraction cut short
    ]
    for path in stale:
        path.write_bytes(b"half")
    result = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    assert not result.failed
    assert [p.name for p in stale if p.exists()] == []
    assert soak.temp_files(tmp_path) == 0


def test_failed_scene_lines_name_the_scene_once_and_the_job(
    write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(soak.storyboard(3))
    results = (
        SceneResult("s00", "failed", error="s00: job j-1 at WaveSpeedAI failed: x", job_id="j-1"),
        SceneResult("s01", "failed", error="WaveSpeedAI: connection lost", job_id="j-2"),
        SceneResult("s02", "skipped", error="needs s01, which failed"),
    )
    monkeypatch.setattr(rendering, "render", lambda board, options: RenderResult(results))
    out = CliRunner().invoke(cli.main, ["render", "--quiet", str(spec)])
    assert out.exit_code == 1
    assert [line for line in out.output.splitlines() if line.startswith("error:")] == [
        "error: s00: job j-1 at WaveSpeedAI failed: x",
        "error: s01: WaveSpeedAI: connection lost (job j-2)",
        "error: s02: needs s01, which failed",
    ]


# -- provider faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [*soak.FAULTS, "all"])
def test_provider_faults_converge_without_paying_twice(
    fault: str, emulator: Emulator, tmp_path: Path
) -> None:
    figures = soak.run_faults(
        emulator, tmp_path, fault, scenes=SCENES, seed=5, rounds=3, retry_scale=0.2
    )
    figures_line(f"fault {fault}", figures.to_json())
    # converged, every failure named its scene and job (or --resubmit), one good job a scene
    assert figures.ok, figures
    injected = figures.injected
    assert sum(injected.values()) >= 3, f"too few faults injected: {injected}"
    if fault == "all":
        assert len(injected) >= 4, injected  # of 7: few downloads and jobs in 10 scenes
    else:
        assert set(injected) == {fault}
    if fault in ("rate_limit", "truncate_downloads"):
        # these leave no doubt whether a job exists, so nothing waits for the user: a 5xx,
        # a timeout, a dropped connection or garbage in answer to a submit may park the scene
        # as `unknown` (then adopted or resubmitted, counted, never paid twice)
        assert figures.done_under_faults, figures
    if fault == "fail_jobs":
        assert figures.failed_jobs >= 1 and figures.scene_failures >= figures.failed_jobs


def test_an_idempotent_submit_that_never_got_an_answer_is_resent_with_its_key(
    emulator: Emulator, write_spec: Any
) -> None:
    """Runware dedupes on taskUUID: every answer to the submit is lost (the job exists), so
    the scene must keep its key and the next run resend it, not submit anew and pay twice."""
    spec = write_spec(soak.storyboard(1), name=f"{soak.NAME}.yaml")
    emulator.configure(drop={"on": "submit", "count": 5})  # every attempt of the first run
    with soak.retry_waits(0.05):
        first = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    assert [r.outcome for r in first.results] == ["failed"]
    assert emulator.jobs()["runware"] == 1
    assert states(spec) == {"submitting": 1}  # not "failed": that would mean a new key
    second = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    assert [r.outcome for r in second.results] == ["resumed"]
    assert emulator.jobs()["runware"] == 1


# -- disks --------------------------------------------------------------------------------------


def run_cli(
    emu: Emulator, *args: str, env: dict[str, str] | None = None, limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`hailuo-pipe ARGS` as a user runs it; `limit` caps the size of any file it writes."""

    def cap_file_size() -> None:  # the child gets EFBIG (Python ignores SIGXFSZ) past `limit`
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # type: ignore[arg-type]

    return subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", *args],
        env={**os.environ, **provider_env(emu), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap_file_size if limit is not None else None,
    )


def states(spec: Path) -> dict[str, int]:
    lock = Lockfile.load(spec.with_suffix(".lock"), soak.NAME)  # raises if it is not valid
    return dict(Counter(e.state for e in lock.scenes.values()))


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def test_file_size_limit_during_downloads_then_rerun_pays_nothing_more(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.reset(job_seconds=0.2, output_bytes=300_000)  # clips over the 200 kB limit
    spec = soak.write_workdir(tmp_path, 5)
    full = run_cli(emulator, "render", str(spec), limit=200_000)
    no_traceback(full)
    assert full.returncode == 1
    errors = [line for line in full.stderr.splitlines() if line.startswith("error: ")]
    too_large = [line for line in errors if "File too large" in line]
    assert too_large and all(re.search(r"error: s\d\d: .*job \S+", e) for e in too_large)
    paid = emulator.jobs()["total"]
    assert states(spec) == {"submitted": paid}  # every paid job recorded, none lost
    assert soak.temp_files(tmp_path) == 0  # no partial clip left behind

    again = run_cli(emulator, "render", str(spec))
    assert again.returncode == 0, again.stderr
    assert states(spec) == {"done": 5}
    assert emulator.jobs()["total"] == 5  # the recorded jobs were resumed, not resubmitted
    assert soak.verify_outputs(spec, 5) == []


@pytest.mark.parametrize("good_writes", [2, 6, 11])
def test_lockfile_write_failing_midway_stops_cleanly(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good_writes: int
) -> None:
    """The disk fills up just as the lockfile's journal is appended to (or the lockfile
    rewritten): a located error per scene, the last complete state on disk, nothing submitted
    that was not recorded first, and a job created but not recorded is named with the `--adopt`
    that saves paying for it again."""
    from hailuo_pipe.state import lockfile

    spec = soak.write_workdir(tmp_path, SCENES)
    real_write, real_append = lockfile.atomic_write, lockfile.append_journal
    writes = Counter[str]()

    def fills_up(path: Path, data: bytes) -> None:
        writes["n"] += 1
        if writes["n"] > good_writes:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    def fills_up_too(path: Path, data: bytes, *, fresh: bool = False) -> None:
        writes["n"] += 1
        if writes["n"] > good_writes:
            raise OSError(28, "No space left on device")
        real_append(path, data, fresh=fresh)

    monkeypatch.setattr(lockfile, "atomic_write", fills_up)
    monkeypatch.setattr(lockfile, "append_journal", fills_up_too)
    result = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator)))
    failed = [r for r in result.results if r.outcome == "failed"]
    assert failed and all("No space left on device" in (r.error or "") for r in failed)
    assert all(soak.NAME + ".lock" in (r.error or "") for r in failed)
    on_disk = Lockfile.load(spec.with_suffix(".lock"), soak.NAME)  # the last complete write
    # every paid job belongs to a scene the disk knows was (being) submitted...
    assert emulator.jobs()["total"] <= len(on_disk.scenes)
    # ...and one the disk does not name is named in its scene's error
    recorded = soak.recorded_jobs(on_disk)
    errors = {r.scene: r.error or "" for r in failed}
    for sid, jobs in soak.jobs_by_scene(emulator, soak.scene_ids(SCENES)).items():
        for job in jobs:
            assert job["id"] in recorded or f"--adopt {sid}={job['id']}" in errors[sid]

    monkeypatch.setattr(lockfile, "atomic_write", real_write)
    monkeypatch.setattr(lockfile, "append_journal", real_append)
    healed = soak.converge(spec, emulator, SCENES, rounds=3)
    assert healed.done and not healed.problems, healed
    problems, paid, _ = soak.verify_jobs(emulator, SCENES)
    assert problems == [] and paid == SCENES


def test_unwritable_render_folder_then_rerun_pays_nothing_more(
    emulator: Emulator, tmp_path: Path
) -> None:
    spec = soak.write_workdir(tmp_path, 5)
    blocker = tmp_path / "renders" / soak.NAME
    blocker.parent.mkdir()
    blocker.write_text("not a folder")  # works as root too, unlike chmod
    blocked = run_cli(emulator, "render", str(spec))
    no_traceback(blocked)
    assert blocked.returncode == 1
    assert f"renders/{soak.NAME}" in blocked.stderr
    paid = emulator.jobs()["total"]
    assert states(spec).get("submitted", 0) == paid  # paid jobs are all recorded

    blocker.unlink()
    again = run_cli(emulator, "render", str(spec))
    assert again.returncode == 0, again.stderr
    assert emulator.jobs()["total"] == 5 and states(spec) == {"done": 5}


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_tmpfs_then_more_space(emulator: Emulator, tmp_path: Path) -> None:
    """A real ENOSPC: a 600 kB tmpfs fills up mid-render, wherever the next write happens."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr!r}")
    try:
        spec = soak.write_workdir(disk, SCENES)
        full = run_cli(emulator, "render", str(spec))
        no_traceback(full)
        assert full.returncode == 1 and "No space left on device" in full.stderr
        states(spec)  # loads
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        healed = soak.converge(spec, emulator, SCENES, rounds=3)
        assert healed.done and not healed.problems, healed
        problems, paid, _ = soak.verify_jobs(emulator, SCENES)
        assert problems == [] and paid == SCENES
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# -- broken lockfiles ---------------------------------------------------------------------------


def _edit(data: dict[str, Any], scene: str, **changes: Any) -> dict[str, Any]:
    data["scenes"][scene].update(changes)
    return data


LOCK_EDITS: dict[str, Any] = {
    "truncated": lambda text: text[: len(text) // 2],
    "not json": lambda text: "<<<<<<< HEAD\n" + text,
    "wrong version": lambda d: {**d, "version": 99},
    "scenes a list": lambda d: {**d, "scenes": []},
    "entry a string": lambda d: {**d, "scenes": {**d["scenes"], "s00": "done"}},
    "unknown state": lambda d: _edit(d, "s01", state="finished"),
    "done without output": lambda d: _edit(d, "s01", output=None),
    "submitted without job": lambda d: _edit(d, "s02", state="submitted", job_id=None),
    "frame path escapes": lambda d: _edit(
        d, "s00", frames={"last": {"path": "../../etc/passwd", "sha256": "0" * 64, "size": 1}}
    ),
    "absolute output path": lambda d: _edit(
        d, "s00", output={"path": "/etc/passwd", "sha256": "0" * 64, "size": 1}
    ),
    "size a string": lambda d: _edit(
        d, "s00", output={**d["scenes"]["s00"]["output"], "size": "big"}
    ),
    "fingerprint missing": lambda d: _edit(d, "s03", fingerprint=None),
}


@pytest.fixture(scope="module")
def rendered_lock(emulator_process: Emulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The lockfile of a finished 5-scene render, to break in different ways."""
    emulator_process.reset(job_seconds=0.2)
    spec = soak.write_workdir(tmp_path_factory.mktemp("rendered"), 5)
    result = render(load_storyboard(spec), RenderOptions(environ=provider_env(emulator_process)))
    assert not result.failed
    return spec.with_suffix(".lock").read_text(encoding="utf-8")


@pytest.mark.parametrize("edit", LOCK_EDITS)
def test_broken_lockfile_is_reported_and_nothing_is_sent(
    edit: str, rendered_lock: str, emulator: Emulator, tmp_path: Path
) -> None:
    spec = soak.write_workdir(tmp_path, 5)
    change = LOCK_EDITS[edit]
    if edit in ("truncated", "not json"):
        broken = change(rendered_lock)
    else:
        broken = json.dumps(change(json.loads(rendered_lock)), indent=2)
    spec.with_suffix(".lock").write_text(broken, encoding="utf-8")
    for command in ("render", "plan", "status", "report"):
        out = CliRunner().invoke(cli.main, [command, str(spec)], env=provider_env(emulator))
        assert isinstance(out.exception, SystemExit), out.exception  # not a traceback
        assert out.exit_code == 1, (command, out.output)
        assert f"{soak.NAME}.lock" in out.output and "restore it from git" in out.output
    assert emulator.requests() == []  # nothing was submitted, polled or downloaded
    assert spec.with_suffix(".lock").read_text(encoding="utf-8") == broken  # left as it was


# -- secrets ------------------------------------------------------------------------------------

SECRET = "sk-SECRET-5f0c2d9e8b7a41c3"


def test_no_api_key_in_any_output_or_file_across_a_faulty_render(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.reset(job_seconds=0.2, key=SECRET, seed=3, **soak.FAULTS)
    home = tmp_path / "home"
    home.mkdir()
    env = dict.fromkeys(key_variables(), SECRET)  # every hosted provider's key variable
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    spec = soak.write_workdir(tmp_path, 6)
    printed: list[str] = []
    runs = [
        ("validate", str(spec)),
        ("plan", str(spec)),
        *[("render", "-j", "8", str(spec))] * 2,
        ("render", "--json", str(spec)),
        ("status", "--json", str(spec)),
        ("report", str(spec)),
    ]
    for args in runs:
        proc = run_cli(emulator, *args, env=env)
        no_traceback(proc)
        printed += [proc.stdout, proc.stderr]
        for line in proc.stderr.splitlines():
            if line.startswith("error: ") and "needs " not in line:  # names scene and job
                assert re.match(r"error: s\d\d: .*(job \S+|--resubmit s\d\d)", line), line
    assert any("error: " in text for text in printed), "the faults caused no error at all"
    assert sum(emulator.faults().values()) >= 3
    leaks = [i for i, text in enumerate(printed) if SECRET in text]
    assert leaks == [], [printed[i][:300] for i in leaks]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in written)
    assert [p for p in written if SECRET.encode() in p.read_bytes()] == []
    figures_line(
        "secrets",
        {
            "commands": len(runs),
            "lines_printed": sum(len(text.splitlines()) for text in printed),
            "files_written": len(written),
            "bytes_written": sum(p.stat().st_size for p in written),
            "faults_injected": sum(emulator.faults().values()),
            "hits": 0,
        },
    )


@pytest.mark.slow
def test_kills_across_rehearsals_and_saved_plans_still_pay_once_per_scene(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Paid renders applying saved plans, each followed by a `--provider preview` rehearsal,
    both killed at random moments: one paid job per scene, every paid clip intact."""
    figures = soak.run_soak(
        emulator,
        tmp_path,
        kills=4,
        scenes=SCENES,
        seed=11,
        job_seconds=1.0,
        max_delay=1.2,
        rehearsals=True,
        saved_plans=True,
    )
    figures_line("rehearsals+plans", figures.to_json())
    assert figures.ok, figures.table()
    assert figures.paid_jobs == SCENES
