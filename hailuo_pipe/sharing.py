"""How a render uses the shared result cache (`cache.py`): look up, claim, resume, push.

The cache's client is synchronous (boto3); the executor is asyncio. Every call here runs in a
worker thread so polling other scenes goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .cache import Cache, CachedResult, CacheError, Lease, LeaseHeld, default_holder, open_cache
from .errors import ConfigError
from .lockfile import Entry, FileRecord
from .storyboard import Storyboard

ENV_URL = "HAILUO_PIPE_CACHE"  # overrides the storyboard's `cache:`; "off" disables it
ENV_TTL = "HAILUO_PIPE_LEASE_TTL"  # seconds a claim lasts without renewal (default 600)
DEFAULT_TTL = 600.0


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
    raw = environ.get(ENV_TTL, "")
    try:
        return float(raw) if raw else DEFAULT_TTL
    except ValueError:
        raise ConfigError(f"{ENV_TTL} must be a number of seconds, not {raw!r}") from None


@dataclass
class Shared:
    """The executor's handle on the cache for one render."""

    cache: Cache
    ttl: float = DEFAULT_TTL
    holder: str = ""

    def __post_init__(self) -> None:
        self.holder = self.holder or default_holder()

    async def lookup(self, fingerprint: str) -> CachedResult | None:
        return await asyncio.to_thread(self.cache.lookup, fingerprint)

    async def pull(self, fingerprint: str, dest: Mapping[str, Path]) -> CachedResult:
        return await asyncio.to_thread(self.cache.pull, fingerprint, dest)

    async def claim(
        self, fingerprint: str, provider: str, on_wait: Callable[[LeaseHeld], None]
    ) -> CachedResult | Lease:
        """Our lease on the fingerprint (maybe taken over, with a job to resume), or the result
        someone else finished while we waited."""
        return await asyncio.to_thread(
            self.cache.wait_for,
            fingerprint,
            poll=min(5.0, self.ttl / 4),
            timeout=24 * 3600,
            on_wait=on_wait,
            holder=self.holder,
            ttl=self.ttl,
            provider=provider,
        )

    async def record_job(self, lease: Lease, job_id: str, key: str) -> None:
        await asyncio.to_thread(lease.record_job, job_id, key)

    async def keep(self, lease: Lease) -> None:
        """Renew the lease until cancelled; a lost lease stops renewing (the job is ours)."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await asyncio.to_thread(lease.renew)
            except CacheError:
                return

    async def release(self, lease: Lease) -> None:
        with contextlib.suppress(CacheError):
            await asyncio.to_thread(lease.release)

    async def push(self, base: Path, entry: Entry) -> None:
        files = {"clip": base / entry.output.path} if entry.output else {}
        files.update({which: base / rec.path for which, rec in entry.frames.items()})
        meta = {
            "provider": entry.provider,
            "job_id": entry.job_id,
            "cost": entry.cost,
            "seed": entry.seed,
            "fingerprint": entry.fingerprint,
        }
        await asyncio.to_thread(self.cache.push, entry.fingerprint, files, meta)


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
        name: FileRecord(paths[name], rec.sha256, rec.size)
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
    )
