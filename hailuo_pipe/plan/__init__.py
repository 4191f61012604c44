"""Compare the storyboard with the lockfile: what a render would do, why, and what it costs.

Like `terraform plan`: nothing is sent anywhere. A scene's action is one of
  reuse      its clip is up to date
  create     never rendered
  replace    rendered, but something it depends on changed (the reason says what)
  retry      its last job failed
  poll       a job was submitted and will be polled, never submitted again
  resend     a submission was interrupted: resent with the same key, which the provider dedupes
  download   its job finished but the clip is missing here: download it again, for free
  pull       a finished clip is in the shared cache: take it from there, for free
  restore    its clip is here but frames extracted from it are not: extract them again, free
  reconcile  a submission's answer was lost: look for its job in the provider's job list
  blocked    a submission's fate is unknown and the provider cannot be asked; it is not resent
             unless you say --resubmit (or --adopt the job you found at the provider)
Only create, replace and retry pay; a reconcile is priced at the scene's price, the most it can
cost, and `decide` is the one place an action is chosen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import TYPE_CHECKING, Any, Literal

from hailuo_pipe import providers
from hailuo_pipe.paths import escape
from hailuo_pipe.plan.fingerprint import (
    SCHEME,
    fingerprint,
    flatten,
    image_tokens,
    legacy_fingerprint,
    request_for,
    same_meaning,
)
from hailuo_pipe.providers.base import REQUEST_TIMEOUT, Provider, WireRequest
from hailuo_pipe.state.lockfile import Entry, FileRecord, Lockfile
from hailuo_pipe.storyboard.graph import Graph
from hailuo_pipe.storyboard.images import remember_hashes, sha256_named
from hailuo_pipe.storyboard.model import Scene, Storyboard

if TYPE_CHECKING:
    from hailuo_pipe.cache import Cache, CachedResult

Lookup = Callable[[str], "CachedResult | None"]  # a fingerprint's entry in the shared cache
Action = Literal[
    "reuse",
    "create",
    "replace",
    "retry",
    "poll",
    "resend",
    "download",
    "pull",
    "restore",
    "reconcile",
    "blocked",
]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]
SPENDING: frozenset[str] = frozenset({"create", "replace", "retry"})
KEEPS_CLIP: frozenset[str] = frozenset({"reuse", "download", "pull", "restore"})  # clip stays


@dataclass(frozen=True)
class FrameSource:
    """A frame a chained scene takes: as recorded, and the clip it can be decoded from again."""

    record: FileRecord
    clip: Path | None = None


# (scene id, "first" | "last") -> that frame, for scenes whose clip this run keeps
Frames = Mapping[tuple[str, str], FrameSource]


@dataclass(frozen=True)
class Step:
    scene: Scene
    action: Action
    reason: str
    price: Decimal  # what this run would spend on the scene
    fingerprint: str | None  # None while an input frame is still to be rendered
    request: WireRequest | None
    entry: Entry | None
    cached: CachedResult | None = None  # a finished clip in the shared cache
    migrated: bool = False  # an entry of an older fingerprint scheme, unchanged: rewrite it

    def to_json(self) -> dict[str, Any]:
        return {
            "scene": self.scene.id,
            "action": self.action,
            "reason": self.reason,
            "provider": self.scene.provider,
            "resolution": self.scene.resolution,
            "duration": self.scene.duration,
            "price": float(self.price),
            "fingerprint": self.fingerprint,
            "job_id": self.entry.job_id if self.entry else None,
        }


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]  # in an order where every scene comes after what it needs

    @property
    def cost(self) -> Decimal:
        return sum((s.price for s in self.steps), Decimal(0))

    def count(self, action: str) -> int:
        return sum(1 for s in self.steps if s.action == action)

    @property
    def up_to_date(self) -> bool:
        return all(s.action == "reuse" for s in self.steps)

    def step(self, scene_id: str) -> Step:
        return next(s for s in self.steps if s.scene.id == scene_id)


def intact(base: Path, record: FileRecord | None) -> bool:
    if record is None:
        return False
    # strings and one lstat, not pathlib and two stats: a rerun asks this of every clip and
    # frame (30,000 times at 10,000 scenes)
    path = os.path.join(base, record.path)
    try:
        st = os.lstat(path)
        link = S_ISLNK(st.st_mode)
        if link:
            st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in a hand-edited path
        return False
    # a FIFO or a link to /dev/zero recorded as an empty file would make hashing it never end;
    # a link out of the project would make us trust (and chain from) a file we do not own
    if not S_ISREG(st.st_mode) or (link and escape(base, Path(record.path)) is not None):
        return False
    return st.st_size == record.size and sha256_named(path, st) == record.sha256


def output_intact(base: Path, entry: Entry) -> bool:
    return intact(base, entry.output)


def frames_intact(base: Path, entry: Entry) -> bool:
    return all(intact(base, entry.frames.get(which)) for which in ("first", "last"))


def frame_sources(base: Path, entry: Entry) -> dict[str, FrameSource]:
    clip = base / entry.output.path if entry.output is not None else None
    return {which: FrameSource(record, clip) for which, record in entry.frames.items()}


def pixels_of(source: FrameSource, base: Path, which: str) -> str | None:
    """A frame's pixel digest: recorded, or read from its PNG, or decoded from its clip."""
    if source.record.pixels is not None:
        return source.record.pixels
    png = base / source.record.path
    if intact(base, source.record):
        return _png_pixels(png, source.record.sha256)
    if source.clip is not None and source.clip.is_file():
        return _clip_pixels(source.clip, which)
    return None


@lru_cache(maxsize=4096)
def _png_pixels(png: Path, sha256: str) -> str | None:
    from hailuo_pipe import media
    from hailuo_pipe.errors import MediaError

    try:
        return media.png_pixels(png)
    except MediaError:
        return None


@lru_cache(maxsize=1024)
def _clip_pixels(clip: Path, which: str) -> str | None:
    from hailuo_pipe import media
    from hailuo_pipe.errors import MediaError

    try:
        return media.pixel_digest(media.edge_images(clip, (which,))[which])
    except MediaError:
        return None


def _changes(
    old: Mapping[str, Any], new: Mapping[str, Any], origins: Mapping[str, str]
) -> list[str]:
    """Which scene keys differ between two requests, named as the storyboard names them."""
    a, b = flatten(old), flatten(new)
    changed = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            leaf = key.rpartition(".")[2]
            changed.append(origins.get(leaf, leaf))
    return list(dict.fromkeys(changed))


def make_plan(
    board: Storyboard,
    lock: Lockfile,
    *,
    force: Collection[str] = (),
    resubmit: Collection[str] = (),
    only: Iterable[str] | None = None,
    cache: Cache | None = None,
) -> Plan:
    graph = Graph.of(board.scenes)
    wanted = graph.closure(only) if only is not None else None
    base = board.path.parent
    taken = graph.taken()
    remember_hashes(board.render_dir)

    def plan_with(lookup: Lookup | None) -> tuple[Step, ...]:
        frames: dict[tuple[str, str], FrameSource] = {}
        steps: list[Step] = []
        for scene_id in graph.topological():
            if wanted is not None and scene_id not in wanted:
                continue
            entry = lock.scenes.get(scene_id)
            scene = board.scene(scene_id)
            step = decide(scene, entry, frames, base, scene_id in force, scene_id in resubmit)
            if lookup is not None and _cacheable(step, chained=True):
                step = _from_cache(step, lookup, legacy_of(scene, frames))
            steps.append(step)
            if scene_id not in taken:  # no scene takes a frame from it
                continue
            if step.cached is not None:
                for which, rec in step.cached.files.items():
                    if which != "clip":  # known by its hashes; `path` names the cache's object
                        record = FileRecord(rec.path, rec.sha256, rec.size, rec.pixels)
                        frames[(scene_id, which)] = FrameSource(record)
            elif step.action in KEEPS_CLIP and step.entry is not None:
                for which, source in frame_sources(base, step.entry).items():
                    frames[(scene_id, which)] = source
        return tuple(steps)

    if cache is None:
        return Plan(plan_with(None))
    # One at a time, each look-up costs a round trip to the cache (S3): first every fingerprint
    # the plan would ask about if nothing were found is looked up at once; a scene chained to one
    # that is found gets another fingerprint, looked up when the plan meets it.
    asked: set[str] = set()
    for s in plan_with(None):
        if _cacheable(s) and s.fingerprint:
            asked.add(s.fingerprint)
            if (old := legacy_of(s.scene, {})) is not None and not s.scene.frame_refs():
                asked.add(old)
    found = _look_up_all(cache, asked)
    return Plan(plan_with(lambda fp: found[fp] if fp in found else cache.lookup(fp)))


def _look_up_all(cache: Cache, fingerprints: Collection[str]) -> dict[str, CachedResult | None]:
    if len(fingerprints) <= 1:
        return {fp: cache.lookup(fp) for fp in fingerprints}
    with ThreadPoolExecutor(max_workers=min(16, len(fingerprints))) as pool:
        return dict(zip(fingerprints, pool.map(cache.lookup, fingerprints), strict=True))


def _cacheable(step: Step, *, chained: bool = False) -> bool:
    """A scene that would be generated (or fetched from its job): the shared cache may have it.
    `chained`: also one whose frames' pixels are not known yet (an older version's cache entry
    names it by its frames' PNG bytes)."""
    return (
        (step.fingerprint is not None or chained)
        and step.action in SPENDING | {"download"}
        and not providers.get(step.scene.provider).local
    )


def _from_cache(step: Step, lookup: Lookup, legacy: str | None = None) -> Step:
    """The step as a fetch when the shared cache has its clip: under today's fingerprint, or
    under the scheme-1 one an older hailuo-pipe pushed it with."""
    hit = lookup(step.fingerprint) if step.fingerprint is not None else None
    if hit is None and legacy is not None:
        hit = lookup(legacy)
    if hit is None:
        return step
    who = f" by {hit.pushed_by}" if hit.pushed_by else ""
    return replace(
        step,
        action="pull",
        price=Decimal(0),
        cached=hit,
        reason=f"in the shared cache (job {hit.job_id}, pushed{who})",
    )


def decide(
    scene: Scene, entry: Entry | None, frames: Frames, base: Path, forced: bool, resubmit: bool
) -> Step:
    """The one place a scene's action is chosen: from its lockfile entry, the frames it takes
    (missing until they exist) and what the user asked for."""
    cls = providers.get(scene.provider)
    tokens = image_tokens(scene, _tokens(scene, frames, lambda s, k: pixels_of(s, base, k[1])))
    request = request_for(scene, tokens) if tokens is not None else None
    # the price of the request as it goes on the wire (options merged), not of the scene
    price = cls().price_of(request) if request is not None else cls().price(scene)
    fp = fingerprint(scene, tokens) if tokens is not None else None
    migrated = (
        entry is not None
        and entry.scheme < SCHEME
        and entry.provider == scene.provider
        and _unchanged_since_scheme_1(scene, entry, frames)
    )
    if migrated and entry is not None and fp is not None:
        entry = replace(entry, fingerprint=fp)

    def step(action: Action, reason: str, cost: Decimal = Decimal(0)) -> Step:
        if migrated and action in KEEPS_CLIP | {"poll"}:
            reason += "; request format updated, no new job"
        return Step(scene, action, reason, cost, fp, request, entry, migrated=migrated)

    if entry is None:
        return step("create", "not rendered yet", price)
    if forced:
        return step("replace", "forced with --force", price)
    if fp is None:
        pending = [r.scene for r in scene.frame_refs()]
        return step(
            "replace",
            f"an input frame comes from {', '.join(map(repr, pending))}, "
            "which is rendered again first",
            price,
        )
    if entry.fingerprint != fp or entry.provider != scene.provider:
        what = (
            ["provider"]
            if entry.provider != scene.provider
            else _changes(entry.request, request.body if request else {}, cls.field_origins)
        )
        abandoned = (
            f"; job {entry.job_id} of the old version is not waited for"
            if entry.state == "submitted"
            else ""
        )
        return step("replace", f"{', '.join(what) or 'request'} changed{abandoned}", price)
    if entry.state == "done":
        if output_intact(base, entry):
            if not frames_intact(base, entry):
                return step("restore", "frames missing or changed here; extracted again (free)")
            return step("reuse", "up to date")
        if cls.local:
            return step("replace", "clip missing or changed here; rendered again locally")
        return step(
            "download", f"clip missing or changed here; download it again from job {entry.job_id}"
        )
    if entry.state == "submitted":
        return step("poll", f"job {entry.job_id} was submitted; poll it")
    if entry.state == "failed":
        return step("retry", f"last job failed: {entry.error or 'no reason given'}", price)
    # submitting / unknown: the request may have created a paid job whose id we never saw
    if resubmit:
        return step("create", "submitted again, as --resubmit asked", price)
    if cls.idempotent_submit:
        return step(
            "resend",
            f"submission was interrupted; resend it with the same key "
            f"{entry.key} (the provider dedupes it)",
        )
    if cls.reconcile is not Provider.reconcile:  # it can list its jobs: look there first
        return step(
            "reconcile",
            f"the answer to submission {entry.key} was lost; look for its job in "
            f"{cls.title}'s job list, never resent blindly",
            price,
        )
    return step("blocked", look_for_job(scene.id, cls.title, entry.key, entry.submitted_at))


def look_for_job(scene_id: str, title: str, key: str, sent_at: str | None) -> str:
    """What to do about a submission whose fate is unknown. A request held on the way (a slow
    proxy, a retrying load balancer) can still create its job until the client gives up on it:
    a dashboard looked at before then can miss a job that appears a moment later, and a
    --resubmit would pay for it twice."""
    sent = f" (sent {sent_at})" if sent_at else ""
    return (
        f"a submission with key {key}{sent} may have created a job at {title}; "
        f"wait until {REQUEST_TIMEOUT:.0f} s (the request timeout) after it was sent, so no "
        f"answer is still in flight, then look for it there and rerun with --adopt "
        f"{scene_id}=JOB if you find it, or with --resubmit {scene_id} to submit again if not"
    )


def _unchanged_since_scheme_1(scene: Scene, entry: Entry, frames: Frames) -> bool:
    """Whether a scheme-1 entry (an exact-request fingerprint) is the scene as it is now: its
    fingerprint recomputed the old way, or, where today's adapter builds the request
    differently, the same meaning field by field (`same_meaning`)."""
    tokens = image_tokens(scene, _tokens(scene, frames, lambda s, k: "sha256:" + s.record.sha256))
    if tokens is None:
        return False
    request = request_for(scene, tokens)
    if legacy_fingerprint(scene, request) == entry.fingerprint:
        return True
    # The body alone is not the whole request: the endpoint is chosen from the scene too
    # (WaveSpeed's standard or pro tier from its resolution). The recorded body, sent where
    # today's request goes, must give the recorded fingerprint: that proves the endpoint is
    # the same, and that the recorded body is the one that was fingerprinted.
    as_recorded = WireRequest(request.method, request.path, entry.request)
    if legacy_fingerprint(scene, as_recorded) != entry.fingerprint:
        return False
    return same_meaning(scene, entry.request, request)


def _tokens(
    scene: Scene,
    frames: Frames,
    token: Callable[[FrameSource, tuple[str, str]], str | None],
) -> dict[tuple[str, str], str]:
    """What stands for each frame `scene` takes from another scene, where it can be had."""
    found: dict[tuple[str, str], str] = {}
    for ref in scene.frame_refs():
        key = (ref.scene, ref.frame)
        if key in frames and (value := token(frames[key], key)) is not None:
            found[key] = value
    return found


def legacy_of(scene: Scene, frames: Frames) -> str | None:
    """The scene's scheme-1 fingerprint (chained frames by their PNG bytes), where it can be had."""
    tokens = image_tokens(scene, _tokens(scene, frames, lambda s, k: "sha256:" + s.record.sha256))
    return legacy_fingerprint(scene, request_for(scene, tokens)) if tokens is not None else None
