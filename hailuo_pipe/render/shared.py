"""How a render uses the shared result cache (`hailuo_pipe.cache`): look up, claim, resume,
push; and the conversions between a lockfile entry and a cache entry (`sync.py` uses them too).

The cache's client is synchronous (boto3); the executor is asyncio. Every call a render makes
here runs in a worker thread so polling other scenes goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hailuo_pipe.cache import OBJECTS, Cache, CachedResult, Lease, default_holder, open_cache
from hailuo_pipe.errors import CacheError, LeaseHeld, LeaseLost, SettingError
from hailuo_pipe.plan.fingerprint import SCHEME
from hailuo_pipe.state.lockfile import Entry, FileRecord, iso
from hailuo_pipe.storyboard.model import Storyboard

ENV_URL = "HAILUO_PIPE_CACHE"  # overrides the storyboard's `cache:`; "off" disables it
ENV_TTL = "HAILUO_PIPE_LEASE_TTL"  # seconds a claim lasts without renewal (default 600)
DEFAULT_TTL = 600.0
MIN_TTL, MAX_TTL = 30.0, 24 * 3600.0
RETRY = 5.0  # seconds before retrying a lease write that failed
WAIT_LIMIT = 24 * 3600.0  # give up waiting for another machine's render after this long


def cache_url(board: Storyboard, environ: Mapping[str, str]) -> str | None:
    url = environ.get(ENV_URL, "").strip() or board.cache
    return None if not url or url.lower() in ("off", "none", "0") else url


def open_for(board: Storyboard, environ: Mapping[str, str]) -> Cache | None:
    """The storyboard's cache, checked to be reachable (fail before anything is spent)."""
    url = cache_url(board, environ)
    if url is None:
        return None
    cache = open_cache(url, environ)
    cache.check()
    return cache


def lease_ttl(environ: Mapping[str, str]) -> float:
    """The lease TTL from the environment. A lease shorter than a renewal round trip lapses
    while its holder works (and another machine pays for the same clip); nan, inf or a huge
    one never lapses, so a crashed holder's scene waits forever: both are refused."""
    raw = environ.get(ENV_TTL, "").strip()
    if not raw:
        return DEFAULT_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = math.nan
    if not MIN_TTL <= ttl <= MAX_TTL:  # also false for nan
        raise SettingError(
            f"{ENV_TTL} must be a number of seconds from {MIN_TTL:.0f} to {MAX_TTL:.0f} "
            f"(1 day), not {raw[:40]!r}; unset it for the default {DEFAULT_TTL:.0f} "
            "(nothing was submitted)"
        )
    return ttl


@dataclass
class Shared:
    """The executor's handle on the cache for one render."""

    cache: Cache
    ttl: float = DEFAULT_TTL
    holder: str = ""

    def __post_init__(self) -> None:
        self.holder = self.holder or default_holder()
        # fingerprint -> (job id, key) submitted under a lease that could not be told of it
        self._unrecorded: dict[str, tuple[str | None, str]] = {}

    async def lookup(self, fingerprint: str) -> CachedResult | None:
        return await asyncio.to_thread(self.cache.lookup, fingerprint)

    async def pull(self, fingerprint: str, dest: Mapping[str, Path]) -> CachedResult:
        return await asyncio.to_thread(self.cache.pull, fingerprint, dest)

    async def claim(
        self,
        fingerprint: str,
        provider: str,
        on_wait: Callable[[LeaseHeld], None],
        stop: asyncio.Event | None = None,
    ) -> CachedResult | Lease | None:
        """Our lease on the fingerprint (maybe taken over, with a job to resume), the result
        someone else finished while we waited, or None when `stop` was set meanwhile.

        Waits on the event loop, not in a worker thread: a render may wait on many scenes at
        once, and a thread per waiter would starve the small default pool that lockfile writes
        and lease renewals also need. `on_wait` is told each time the holder changes."""
        poll = min(5.0, self.ttl / 4)
        deadline = time.monotonic() + WAIT_LIMIT
        shown: tuple[str, float] | None = None
        while True:
            try:
                return await asyncio.to_thread(
                    self.cache.claim, fingerprint, self.holder, self.ttl, provider=provider
                )
            except LeaseHeld as held:
                if (held.holder, held.since) != shown:
                    shown = (held.holder, held.since)
                    on_wait(held)
                if time.monotonic() + poll > deadline:
                    raise CacheError(f"gave up waiting after {WAIT_LIMIT:.0f} s: {held}") from None
            if stop is None:
                await asyncio.sleep(poll)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)
            if stop.is_set():
                return None

    async def record_job(self, lease: Lease, job_id: str | None, key: str) -> str | None:
        """Record our submitted job in the lease, so a taker resumes it instead of paying again.
        Never raises: the job is paid for and in the lockfile, so the scene goes on. When the
        write fails, `keep` retries it with each renewal; what went wrong is returned."""
        try:
            await asyncio.to_thread(lease.record_job, job_id, key)
        except LeaseLost as err:
            return f"{err}; its job {job_id} is still polled here, never submitted again"
        except CacheError as err:
            self._unrecorded[lease.fingerprint] = (job_id, key)
            return f"could not record job {job_id} in the lease ({err}); retrying as it is renewed"
        return None

    def recorded(self, lease: Lease) -> bool:
        """Whether a taker of this lease would find our job in it."""
        return lease.fingerprint not in self._unrecorded

    def _renew(self, lease: Lease) -> None:
        pending = self._unrecorded.get(lease.fingerprint)
        if pending is not None:
            lease.record_job(*pending)
            del self._unrecorded[lease.fingerprint]
        lease.renew()

    async def keep(self, lease: Lease) -> None:
        """Renew the lease until cancelled, recording a job that could not be recorded before.
        A failed write is retried soon, never given up: a lease left to lapse while its job
        runs lets another machine take the scene and pay for it again. Only a lost lease stops
        the renewals (its new holder owns the scene; our job is ours in the lockfile)."""
        healthy = True
        while True:
            soon = not healthy or lease.fingerprint in self._unrecorded
            await asyncio.sleep(min(self.ttl / 3, RETRY) if soon else self.ttl / 3)
            try:
                await asyncio.to_thread(self._renew, lease)
                healthy = True
            except LeaseLost:
                return
            except CacheError:
                healthy = False

    async def release(self, lease: Lease) -> None:
        with contextlib.suppress(CacheError):
            await asyncio.to_thread(lease.release)

    async def push(self, base: Path, entry: Entry) -> None:
        files, meta = files_of(base, entry), meta_of(entry)
        await asyncio.to_thread(self.cache.push, entry.fingerprint, files, meta)


def waiting_text(held: LeaseHeld) -> str:
    """What a render shows while another holder generates a scene it needs."""
    job = f" (job {held.job_id})" if held.job_id else ""
    left = max(0.0, held.expires - time.time())
    return (
        f"{held.holder} has been rendering it since {iso(held.since)}{job}; waiting for its "
        f"result, or to take over if its lease lapses (in {left:.0f} s unless renewed)"
    )


def entry_from_cache(
    hit: CachedResult,
    fingerprint: str,
    key: str,
    request: Mapping[str, object],
    paths: Mapping[str, str],
    finished_at: str,
) -> Entry:
    """The lock entry of a scene whose files came from the cache (`paths`: name -> rel path)."""
    records = {
        name: FileRecord(paths[name], rec.sha256, rec.size, rec.pixels)
        for name, rec in hit.files.items()
        if name in paths
    }
    return Entry(
        fingerprint=fingerprint,
        provider=hit.provider or "",
        state="done",
        key=key,
        request=request,
        job_id=hit.job_id or "cache",
        submitted_at=None,
        finished_at=finished_at,
        output=records["clip"],
        frames={k: v for k, v in records.items() if k != "clip"},
        cost=hit.cost,
        seed=hit.seed,
        scheme=SCHEME,
    )


def files_of(base: Path, entry: Entry) -> dict[str, Path]:
    """clip/first/last -> absolute path of a done lockfile entry's files (`base`: the spec's
    folder), as the cache takes them on a push."""
    files: dict[str, Path] = {}
    if entry.output is not None:
        files["clip"] = base / entry.output.path
    for which, record in entry.frames.items():
        if which in OBJECTS:
            files[which] = base / record.path
    return files


def meta_of(entry: Entry) -> dict[str, Any]:
    """The meta.json fields of a lockfile entry (never a secret: the lockfile holds none)."""
    return {
        "fingerprint": entry.fingerprint,
        "pixels": {k: v.pixels for k, v in entry.frames.items() if v.pixels} or None,
        "provider": entry.provider,
        "job_id": entry.job_id,
        "cost": entry.cost,
        "seed": entry.seed,
        "request": entry.request,  # a list for some providers (Runware)
        "finished_at": entry.finished_at,
    }


def frame_records(clip: Path, pngs: Mapping[str, Path], base: Path) -> dict[str, FileRecord]:
    """Extract frames of `clip` ("first"/"last" -> PNG path) and record them as the lockfile
    does, relative to `base`; MediaError when the clip cannot be read."""
    from hailuo_pipe import media  # imported when needed: PyAV takes a tenth of a second to import

    written = media.write_frames(clip, pngs)
    return {
        which: FileRecord(os.path.relpath(pngs[which], base), w.sha256, w.size, w.pixels)
        for which, w in written.items()
    }
