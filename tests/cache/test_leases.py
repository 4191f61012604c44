"""Shared-cache leases that must hold while a job runs: the TTL setting, and a lease whose job
cannot be recorded in it. A second copy of the storyboard must never pay again meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.cache import Cache, CacheError, FileStore, Lease, LeaseHeld
from hailuo_pipe.cache.s3_store import open_s3_store
from hailuo_pipe.errors import SettingError
from hailuo_pipe.plan import make_plan
from hailuo_pipe.render import Event, RenderOptions, render
from hailuo_pipe.render import shared as sharing
from hailuo_pipe.render.shared import lease_ttl
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.validate import load_storyboard

SPEC = """
version: 1
name: leased
scenes:
  - id: s1
    provider: wavespeed
    prompt: "[Static shot] a lighthouse"
    image: https://example.com/lighthouse.jpg
"""


@pytest.mark.parametrize("raw", ["0", "-5", "nan", "inf", "-inf", "abc", "29", "1e12", "86401"])
def test_a_bad_lease_ttl_is_a_usage_error_before_anything_is_sent(
    raw: str, write_spec, tmp_path: Path, emulator: Emulator
) -> None:
    spec = write_spec(SPEC)
    env = {
        **os.environ,
        **provider_env(emulator),
        "HAILUO_PIPE_CACHE": (tmp_path / "cache").as_uri(),
        "HAILUO_PIPE_LEASE_TTL": raw,
    }
    run = subprocess.run(
        [sys.executable, "-m", "hailuo_pipe", "render", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (
        "error: HAILUO_PIPE_LEASE_TTL must be a number of seconds from 30 to 86400 (1 day), "
        f"not {raw!r}; unset it for the default 600 (nothing was submitted)"
    )
    assert "Traceback" not in run.stderr
    assert emulator.requests() == []
    assert not spec.with_suffix(".lock").exists()


@pytest.mark.parametrize(("raw", "ttl"), [("", 600.0), ("30", 30.0), (" 90.5 ", 90.5)])
def test_lease_ttl_in_range_is_taken(raw: str, ttl: float) -> None:
    assert lease_ttl({"HAILUO_PIPE_LEASE_TTL": raw}) == ttl
    assert lease_ttl({"HAILUO_PIPE_LEASE_TTL": "86400"}) == 86400.0


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1e3", "100", "٣"])
def test_aws_max_attempts_out_of_range_is_a_usage_error(raw: str) -> None:
    pytest.importorskip("boto3")
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_MAX_ATTEMPTS": raw}
    with pytest.raises(SettingError, match="AWS_MAX_ATTEMPTS must be a whole number from 1 to 20"):
        open_s3_store("bucket", "prefix", env)


class _Flaky(FileStore):
    """A folder cache whose lease object cannot be updated for `outage` seconds from the first
    update tried (a submit's job id being recorded): a mount that briefly turned read-only."""

    def __init__(self, root: Path, outage: float) -> None:
        super().__init__(root)
        self.outage = outage
        self.broken_at: float | None = None
        self.refused = 0

    def put(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        if key.startswith("leases/") and if_match is not None:
            if self.broken_at is None:
                self.broken_at = time.monotonic()
            if time.monotonic() - self.broken_at < self.outage:
                self.refused += 1
                raise CacheError(f"{self.url}: permission denied while write {key}")
        return super().put(key, data, if_none_match=if_none_match, if_match=if_match)


def test_a_lease_whose_job_cannot_be_recorded_is_kept_and_records_it_later(
    write_spec, tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(SPEC)
    root = tmp_path / "cache"
    flaky = _Flaky(root, outage=1.2)
    monkeypatch.setattr(sharing, "open_for", lambda board, environ: Cache(flaky))
    monkeypatch.setattr(sharing, "lease_ttl", lambda environ: 3.0)  # renewed every second
    emulator.configure(job_seconds=5.0)
    board = load_storyboard(spec)
    (step,) = make_plan(board, Lockfile.load(spec.with_suffix(".lock"), "leased")).steps
    fingerprint = step.fingerprint or ""

    # a second machine claims the same scene all along, as its render would
    other = Cache(FileStore(root))
    seen: list[LeaseHeld] = []
    would_submit: list[Lease] = []
    done = threading.Event()

    def second_copy() -> None:
        while other.lease_of(fingerprint) is None and not done.is_set():
            time.sleep(0.02)  # B starts once A holds the scene
        while not done.is_set():
            try:
                got = other.claim(fingerprint, "b@elsewhere:2", 3.0, provider="wavespeed")
            except LeaseHeld as held:
                seen.append(held)
            else:
                if isinstance(got, Lease):
                    would_submit.append(got)
                    got.release()
                else:
                    return  # A's pushed result: B fetches it, pays nothing
            time.sleep(0.1)

    b = threading.Thread(target=second_copy)
    b.start()
    try:
        result = render(board, RenderOptions(environ=provider_env(emulator)))
    finally:
        done.set()
        b.join(timeout=30)
    (scene,) = result.results
    assert scene.outcome == "rendered", scene
    assert flaky.refused >= 2  # the job's record and at least one renewal were refused
    assert would_submit == []  # the lease never lapsed nor was let go while the job ran
    assert len(emulator.job_list()) == 1
    # recorded on a later renewal: a taker would have resumed the job, not paid again
    assert scene.job_id in {h.job_id for h in seen}
    assert other.lookup(fingerprint) is not None


def test_a_lease_whose_job_runs_on_after_the_render_stops_is_kept_for_a_taker(
    write_spec, tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A render that stops polling (Ctrl-C) leaves its lease to lapse with the job in it: a
    taker resumes that job. Releasing it would let the taker submit and pay again."""
    spec = write_spec(SPEC)
    root = tmp_path / "cache"
    monkeypatch.setattr(sharing, "open_for", lambda board, environ: Cache(FileStore(root)))
    monkeypatch.setattr(sharing, "lease_ttl", lambda environ: 3.0)
    emulator.configure(job_seconds=30.0)
    board = load_storyboard(spec)

    def stop_when_running(event: Event) -> None:
        if event.state in ("queued", "running"):
            os.kill(os.getpid(), signal.SIGINT)

    options = RenderOptions(environ=provider_env(emulator), on_event=stop_when_running)
    result = render(board, options)
    assert result.interrupted
    lock = Lockfile.load(spec.with_suffix(".lock"), "leased")
    entry = lock.scenes["s1"]
    assert entry.state == "submitted"
    (held,) = Cache(FileStore(root)).leases()
    assert held.job_id == entry.job_id
    time.sleep(max(0.0, held.expires - time.time()) + 0.1)
    taken = Cache(FileStore(root)).claim(entry.fingerprint, "b@elsewhere:2", 3.0)
    assert isinstance(taken, Lease) and taken.resumed and taken.job_id == entry.job_id


def test_a_submission_of_unknown_fate_under_a_lease_parks_the_taker_too(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copy A's submit loses its answer (a job was made): A parks the scene as unknown and keeps
    the lease with the key in it; copy B, taking the lapsed lease, must park it too, not pay."""
    root = tmp_path / "cache"
    monkeypatch.setattr(sharing, "open_for", lambda board, environ: Cache(FileStore(root)))
    monkeypatch.setattr(sharing, "lease_ttl", lambda environ: 1.0)
    specs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        specs.append(tmp_path / name / "story.yaml")
        specs[-1].write_text(SPEC.lstrip("\n"), encoding="utf-8")
    env = provider_env(emulator)
    emulator.configure(drop={"count": 1})
    first = render(load_storyboard(specs[0]), RenderOptions(environ=env))
    assert first.results[0].outcome == "failed"
    a = Lockfile.load(specs[0].with_suffix(".lock"), "leased").scenes["s1"]
    assert a.state == "unknown"
    (held,) = Cache(FileStore(root)).leases()
    assert held.key == a.key and held.job_id is None
    time.sleep(max(0.0, held.expires - time.time()) + 0.1)

    second = render(load_storyboard(specs[1]), RenderOptions(environ=env))
    (result,) = second.results
    assert result.outcome == "failed"
    assert "submitted it under the shared cache's lease and never learnt its fate" in (
        result.error or ""
    )
    assert "--adopt s1=JOB" in (result.error or "")
    b = Lockfile.load(specs[1].with_suffix(".lock"), "leased").scenes["s1"]
    assert b.state == "unknown" and b.key == a.key
    assert len(emulator.requests("submit")) == 1
    assert len(emulator.job_list()) == 1

    # B's user found nothing and asks for a new submission: that one is sent
    time.sleep(1.1)
    third = render(load_storyboard(specs[1]), RenderOptions(environ=env, resubmit={"s1"}))
    assert third.results[0].outcome == "rendered", third
    assert len(emulator.job_list()) == 2
