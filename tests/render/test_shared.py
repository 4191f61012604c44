"""How a render uses the shared cache (`render/shared.py`): the lease TTL setting, waiting for
another holder's result or for its lease to lapse, and leases that must hold while a job runs
(one whose job cannot be recorded in it). A second copy must never pay again meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.caches import META, fp
from support.emulator_fixture import provider_env

from hailuo_emulator import Emulator
from hailuo_pipe.cache import Cache, CachedResult, CacheError, FileStore, Lease, LeaseHeld
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


def _claim(
    cache: Cache,
    fingerprint: str,
    seen: list[LeaseHeld],
    *,
    stop_after_first: bool = False,
) -> CachedResult | Lease | None:
    """A render's wait for `fingerprint` (Shared.claim, polling every 0.1 s), noting each holder
    it is told about; with `stop_after_first`, stopped (Ctrl-C) once it was told of one."""

    async def main() -> CachedResult | Lease | None:
        stop = asyncio.Event()

        def on_wait(held: LeaseHeld) -> None:
            seen.append(held)
            if stop_after_first:
                stop.set()

        shared = sharing.Shared(cache, ttl=0.4, holder="waiter@h:2")
        return await shared.claim(fingerprint, "wavespeed", on_wait, stop)

    return asyncio.run(main())


def test_a_waiting_render_gets_the_result_its_holder_pushes(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(os.urandom(1000))
    worker = Cache(FileStore(root))
    lease = worker.acquire(fp(40), "worker@h:1", ttl=30)
    seen: list[LeaseHeld] = []

    def finish() -> None:
        while not seen:  # the waiter has been told who holds it
            time.sleep(0.01)
        worker.push(fp(40), {"clip": clip}, META)
        lease.release()

    threading.Thread(target=finish, daemon=True).start()
    got = _claim(Cache(FileStore(root)), fp(40), seen)
    assert isinstance(got, CachedResult) and got.job_id == "job-1"
    assert [h.holder for h in seen] == ["worker@h:1"]  # told once, not at every poll
    assert worker.leases() == []  # the waiter took no lease: nothing to render


def test_a_waiting_render_takes_over_a_lapsed_lease_and_resumes_its_job(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    old = Cache(FileStore(root)).acquire(fp(41), "gone@h:1", ttl=1.0)
    old.record_job("job-41", "key-41")
    seen: list[LeaseHeld] = []
    got = _claim(Cache(FileStore(root)), fp(41), seen)
    assert isinstance(got, Lease) and got.resumed
    assert (got.job_id, got.key, got.previous_holder) == ("job-41", "key-41", "gone@h:1")
    assert seen and seen[-1].job_id == "job-41"
    # nobody holds it and nothing is cached: a fresh lease, nothing to resume
    fresh = _claim(Cache(FileStore(root)), fp(42), [])
    assert isinstance(fresh, Lease) and not fresh.resumed


def test_a_stopped_render_stops_waiting_and_takes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    theirs = Cache(FileStore(root)).acquire(fp(43), "busy@h:1", ttl=60)
    seen: list[LeaseHeld] = []
    assert _claim(Cache(FileStore(root)), fp(43), seen, stop_after_first=True) is None
    assert len(seen) == 1 and theirs.release()  # still theirs: never taken over


def test_a_render_gives_up_waiting_after_the_wait_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sharing, "WAIT_LIMIT", 0.3)
    root = tmp_path / "cache"
    Cache(FileStore(root)).acquire(fp(44), "busy@h:1", ttl=60)
    with pytest.raises(CacheError, match=r"gave up waiting after 0 s: .* busy@h:1"):
        _claim(Cache(FileStore(root)), fp(44), [])


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
