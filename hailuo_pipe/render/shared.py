"""How a render uses the shared result cache (`cache.py`): look up, claim, resume, push; and
the chores behind `hailuo-pipe cache ls|push|pull|gc`.

The cache's client is synchronous (boto3); the executor is asyncio. Every call a render makes
here runs in a worker thread so polling other scenes goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hailuo_pipe import providers
from hailuo_pipe.cache import (
    Cache,
    CachedResult,
    CacheError,
    Lease,
    LeaseHeld,
    LeaseLost,
    SyncOutcome,
    default_holder,
    files_of,
    meta_of,
    open_cache,
    pull_many,
    push_lockfile,
)
from hailuo_pipe.errors import ConfigError, MediaError, SettingError
from hailuo_pipe.plan import make_plan
from hailuo_pipe.plan.fingerprint import SCHEME
from hailuo_pipe.state.lockfile import Entry, FileRecord, Lockfile, exclusive, iso, now
from hailuo_pipe.storyboard.images import sha256_file
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
        meta = meta_of(entry) | {"fingerprint": entry.fingerprint}
        await asyncio.to_thread(self.cache.push, entry.fingerprint, files_of(base, entry), meta)


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


# --------------------------------------------------------------------------------------------
# The chores behind `hailuo-pipe cache ls|push|pull|gc`


def resolve_url(
    explicit: str | None, boards: Sequence[Storyboard], environ: Mapping[str, str]
) -> str:
    """The cache a chore works on: `--cache URL`, else HAILUO_PIPE_CACHE, else the storyboards'
    `cache:` (which must agree). ConfigError when there is none."""
    if explicit:
        return explicit
    urls = list(dict.fromkeys(u for b in boards if (u := cache_url(b, environ)) is not None))
    if len(urls) > 1:
        raise ConfigError(
            f"the storyboards name different caches ({', '.join(urls)}); pick one with --cache"
        )
    if not urls:
        named = f"{', '.join(b.path.name for b in boards)} declares" if boards else "no storyboard"
        raise ConfigError(
            f"no cache: {named} no `cache:`; pass --cache s3://BUCKET/PREFIX (or file:///PATH) "
            f"or set {ENV_URL}"
        )
    return urls[0]


def open_url(url: str, environ: Mapping[str, str]) -> Cache:
    cache = open_cache(url, environ)
    cache.check()
    return cache


class _Listing(Cache):
    """A cache whose lookups are answered from one listing: planning many scenes then costs
    one LIST, not a GET per scene."""

    def __init__(self, cache: Cache, entries: Sequence[CachedResult]) -> None:
        super().__init__(cache.store)
        self._by_fp = {e.fingerprint: e for e in entries}

    def lookup(self, fingerprint: str) -> CachedResult | None:
        return self._by_fp.get(fingerprint)


def current_fingerprints(
    board: Storyboard, lock: Lockfile, cache: Cache | None = None
) -> dict[str, str]:
    """fingerprint -> scene id of the storyboard as it is now. A scene chained to a frame is
    known once that frame is: rendered here, or in the cache (`cache`)."""
    plan = make_plan(board, lock, cache=cache)
    return {s.fingerprint: s.scene.id for s in plan.steps if s.fingerprint is not None}


@dataclass(frozen=True)
class Listed:
    entry: CachedResult
    scenes: tuple[str, ...]  # "spec.yaml:scene" of the given storyboards that use it

    @property
    def size(self) -> int:
        return sum(rec.size for rec in self.entry.files.values())

    def to_json(self) -> dict[str, Any]:
        return self.entry.to_json() | {"size": self.size, "used_by": list(self.scenes)}


def list_cache(
    cache: Cache, boards: Sequence[tuple[Storyboard, Lockfile]] = ()
) -> tuple[list[Listed], list[LeaseHeld]]:
    """Every entry (marked with the scenes of `boards` that use it) and every lease."""
    entries = cache.ls()
    listing = _Listing(cache, entries)
    users: dict[str, list[str]] = {}
    for board, lock in boards:
        for fp, scene_id in current_fingerprints(board, lock, listing).items():
            users.setdefault(fp, []).append(f"{board.path.name}:{scene_id}")
    listed = [Listed(e, tuple(users.get(e.fingerprint, ()))) for e in entries]
    return listed, cache.leases()


def push_boards(
    cache: Cache, boards: Sequence[tuple[Storyboard, Lockfile]]
) -> list[tuple[Storyboard, SyncOutcome]]:
    """Push every done scene of the lockfiles that the cache lacks (idempotent). Scenes of the
    free local provider are left out: rendering them again costs nothing."""
    out = []
    for board, lock in boards:
        hosted = {sid for sid, e in lock.scenes.items() if not _local(e.provider)}
        for outcome in push_lockfile(board.path.parent, lock, cache, scene_ids=hosted):
            out.append((board, outcome))
    return out


def _local(provider: str) -> bool:
    return provider in providers.PROVIDER_NAMES and providers.get(provider).local


def scene_files(board: Storyboard, scene_id: str) -> dict[str, Path]:
    """Where a render puts a scene's clip and frames (as `execute` does)."""
    return {
        "clip": board.render_dir / f"{scene_id}.mp4",
        "first": board.render_dir / f"{scene_id}.first.png",
        "last": board.render_dir / f"{scene_id}.last.png",
    }


def pull_board(cache: Cache, board: Storyboard, *, workers: int = 16) -> list[SyncOutcome]:
    """Fetch every scene the plan would fetch from the cache and record it in the lockfile,
    under the lockfile's lock as a render does; nothing is submitted anywhere. Scenes that are
    out of date but not in the cache come back as `missing`, saying what a render would do."""
    with exclusive(board.lock_path):
        lock = Lockfile.load(board.lock_path, board.name)
        plan = make_plan(board, lock, cache=_Listing(cache, cache.ls()))
        base = board.path.parent
        outcomes: list[SyncOutcome] = []
        wanted: dict[str, dict[str, Path]] = {}
        for step in plan.steps:
            if step.action == "reuse":
                continue
            if step.cached is None or step.fingerprint is None:
                outcomes.append(
                    SyncOutcome(
                        step.scene.id,
                        step.fingerprint or "",
                        "missing",
                        f"render would {step.action} it: {step.reason}",
                    )
                )
                continue
            files = scene_files(board, step.scene.id)
            wanted[step.fingerprint] = {n: p for n, p in files.items() if n in step.cached.files}
        got = pull_many(cache, wanted, workers=workers)
        for step in plan.steps:
            result = got.get(step.fingerprint or "")
            if result is None or step.request is None or step.fingerprint is None:
                continue
            if isinstance(result, CacheError):
                outcomes.append(SyncOutcome(step.scene.id, step.fingerprint, "error", str(result)))
                continue
            dests = wanted[step.fingerprint]
            entry = entry_from_cache(
                result,
                step.fingerprint,
                "cache",
                step.request.body,
                {n: os.path.relpath(p, base) for n, p in dests.items()},
                now(),
            )
            lock.scenes[step.scene.id] = _with_frames(entry, board, step.scene.id, base)
            outcomes.append(SyncOutcome(step.scene.id, step.fingerprint, "pulled"))
        if got:
            lock.save()
    return sorted(outcomes, key=lambda o: o.scene_id)


def _with_frames(entry: Entry, board: Storyboard, scene_id: str, base: Path) -> Entry:
    """An entry pushed without its frames gets them extracted here, as a render would."""
    if set(entry.frames) >= {"first", "last"}:
        return entry
    files = scene_files(board, scene_id)
    missing = {which: files[which] for which in ("first", "last") if which not in entry.frames}
    try:
        made = frame_records(files["clip"], missing, base)
    except MediaError as err:
        raise MediaError(f"{scene_id}: the cached clip is not readable ({err})") from None
    return replace(entry, frames={**entry.frames, **made})


def frame_records(clip: Path, pngs: Mapping[str, Path], base: Path) -> dict[str, FileRecord]:
    """Extract frames of `clip` ("first"/"last" -> PNG path) and record them as the lockfile
    does, relative to `base`; MediaError when the clip cannot be read."""
    from hailuo_pipe import media  # imported when needed: PyAV takes a tenth of a second to import

    pixels = media.extract_frames(clip, pngs)
    return {
        which: FileRecord(
            os.path.relpath(png, base), sha256_file(png), png.stat().st_size, pixels[which]
        )
        for which, png in pngs.items()
    }


def gc_cache(
    cache: Cache,
    boards: Sequence[tuple[Storyboard, Lockfile]],
    *,
    dry_run: bool = False,
    grace: float = 3600.0,
) -> tuple[list[str], list[LeaseHeld]]:
    """Delete every entry that neither the storyboards' current scenes nor their lockfiles
    refer to, and every expired lease: (fingerprints removed, expired leases removed). With
    `dry_run`, what would be."""
    listing = _Listing(cache, cache.ls())
    keep: set[str] = set()
    for board, lock in boards:
        keep |= set(current_fingerprints(board, lock, listing))
        keep |= {e.fingerprint for e in lock.scenes.values()}
    now_ = time.time()
    expired = [held for held in cache.leases() if held.expires <= now_]
    removed = cache.gc(keep, dry_run=dry_run, grace=grace)
    return removed, expired
