"""`hailuo-pipe cache ls | push | pull | gc` over storyboards: what each command does between a
working copy (storyboard + lockfile + renders folder) and the shared cache.

Each function here is one command's work; the CLI parses, calls it and reports. A pull is a
render that only fetches: it plans with the cache, pulls what the plan would fetch and records
it in the lockfile under the lockfile's lock; nothing is ever submitted from here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from hailuo_pipe import collector, providers
from hailuo_pipe.cache import OBJECTS, Cache, CachedResult, open_cache
from hailuo_pipe.cache.records import file_digest
from hailuo_pipe.errors import CacheError, ConfigError, LeaseHeld, MediaError
from hailuo_pipe.plan import make_plan
from hailuo_pipe.render.shared import (
    ENV_URL,
    cache_url,
    entry_from_cache,
    files_of,
    frame_records,
    meta_of,
)
from hailuo_pipe.state.lockfile import Entry, FileRecord, Lockfile, exclusive, now
from hailuo_pipe.storyboard.model import Storyboard


@dataclass(frozen=True)
class SyncOutcome:
    """What a push or a pull did with one scene."""

    scene_id: str
    fingerprint: str
    status: Literal["pushed", "present", "pulled", "missing", "differs", "error"]
    detail: str = ""


def resolve_url(
    explicit: str | None, boards: Sequence[Storyboard], environ: Mapping[str, str]
) -> str:
    """The cache a command works on: `--cache URL`, else HAILUO_PIPE_CACHE, else the
    storyboards' `cache:` (which must agree). ConfigError when there is none."""
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
    """The cache at `url`, checked to be reachable."""
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


def _current_fingerprints(board: Storyboard, lock: Lockfile, cache: Cache) -> dict[str, str]:
    """fingerprint -> scene id of the storyboard as it is now. A scene chained to a frame is
    known once that frame is: rendered here, or in the cache."""
    plan = make_plan(board, lock, cache=cache)
    return {s.fingerprint: s.scene.id for s in plan.steps if s.fingerprint is not None}


# -- ls ---------------------------------------------------------------------------------------


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
        for fp, scene_id in _current_fingerprints(board, lock, listing).items():
            users.setdefault(fp, []).append(f"{board.path.name}:{scene_id}")
    listed = [Listed(e, tuple(users.get(e.fingerprint, ()))) for e in entries]
    return listed, cache.leases()


# -- push -------------------------------------------------------------------------------------


def push_boards(
    cache: Cache, boards: Sequence[tuple[Storyboard, Lockfile]]
) -> list[tuple[Storyboard, SyncOutcome]]:
    """Push every done scene of the lockfiles that the cache lacks (idempotent). Scenes of the
    free local provider are left out: rendering them again costs nothing."""
    out = []
    for board, lock in boards:
        hosted = {sid for sid, e in lock.scenes.items() if not _local(e.provider)}
        for outcome in push_lockfile(board.path.parent, lock, cache, hosted):
            out.append((board, outcome))
    return out


def _local(provider: str) -> bool:
    return provider in providers.PROVIDER_NAMES and providers.get(provider).local


def push_lockfile(
    base: Path, lock: Lockfile, cache: Cache, scene_ids: Collection[str]
) -> list[SyncOutcome]:
    """Push the done scenes `scene_ids` of a lockfile (`base`: its spec's folder) whose files
    are present and match it: a file changed since it was recorded is never pushed."""
    collector.resume()

    def one(scene_id: str, entry: Entry) -> SyncOutcome:
        files = files_of(base, entry)
        for name, record in _records_of(entry).items():
            try:
                sha, _ = file_digest(files[name])
            except OSError:
                return SyncOutcome(scene_id, entry.fingerprint, "missing", record.path)
            if sha != record.sha256:
                return SyncOutcome(
                    scene_id, entry.fingerprint, "differs", f"{record.path} changed locally"
                )
        try:
            pushed = cache.push(entry.fingerprint, files, meta_of(entry))
        except CacheError as err:
            return SyncOutcome(scene_id, entry.fingerprint, "error", str(err))
        return SyncOutcome(scene_id, entry.fingerprint, "pushed" if pushed.uploaded else "present")

    todo = [
        (sid, entry)
        for sid, entry in sorted(lock.scenes.items())
        if entry.state == "done" and entry.output is not None and sid in scene_ids
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda item: one(*item), todo))


def _records_of(entry: Entry) -> dict[str, FileRecord]:
    records = {"clip": entry.output} if entry.output is not None else {}
    return records | {k: v for k, v in entry.frames.items() if k in OBJECTS}


# -- pull -------------------------------------------------------------------------------------


def pull_board(cache: Cache, board: Storyboard) -> list[SyncOutcome]:
    """Fetch every scene the plan would fetch from the cache and record it in the lockfile,
    under the lockfile's lock as a render does; nothing is submitted anywhere. Scenes that are
    out of date but not in the cache come back as `missing`, saying what a render would do."""
    collector.resume()
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
            files = board.scene_files(step.scene.id)
            wanted[step.fingerprint] = {n: p for n, p in files.items() if n in step.cached.files}
        got = cache.pull_many(wanted)
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
            pulled = _with_frames(entry, board, step.scene.id, base)
            lock.transition(step.scene.id, "pulled", pulled)
            outcomes.append(SyncOutcome(step.scene.id, step.fingerprint, "pulled"))
        if got:
            lock.save()
    return sorted(outcomes, key=lambda o: o.scene_id)


def _with_frames(entry: Entry, board: Storyboard, scene_id: str, base: Path) -> Entry:
    """An entry pushed without its frames gets them extracted here, as a render would."""
    if set(entry.frames) >= {"first", "last"}:
        return entry
    files = board.scene_files(scene_id)
    missing = {which: files[which] for which in ("first", "last") if which not in entry.frames}
    try:
        made = frame_records(files["clip"], missing, base)
    except MediaError as err:
        raise MediaError(f"{scene_id}: the cached clip is not readable ({err})") from None
    return replace(entry, frames={**entry.frames, **made})


# -- gc ---------------------------------------------------------------------------------------


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
        keep |= set(_current_fingerprints(board, lock, listing))
        keep |= {e.fingerprint for e in lock.scenes.values()}
    now_ = time.time()
    expired = [held for held in cache.leases() if held.expires <= now_]
    removed = cache.gc(keep, dry_run=dry_run, grace=grace)
    return removed, expired
