"""Compare the storyboard with the lockfile: what a render would do, why, and what it costs.

Like `terraform plan`: nothing is sent anywhere. A scene's action is one of
  reuse    its clip is up to date
  create   never rendered
  replace  rendered, but something it depends on changed (the reason says what)
  retry    its last job failed
  resume   a job was submitted and will be polled, never submitted again
  fetch    its job finished but the clip is missing here: download it again, for free
  blocked  a submission's fate is unknown; it is not resent unless you say --resubmit
           (or --adopt the job you found at the provider)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, Literal

from . import providers
from .fingerprint import FrameHashes, fingerprint, image_tokens, request_for
from .graph import Graph
from .images import remember_hashes, sha256_file
from .lockfile import Entry, Lockfile
from .paths import escape
from .providers.base import WireRequest
from .storyboard import Scene, Storyboard

if TYPE_CHECKING:
    from .cache import Cache, CachedResult

Lookup = Callable[[str], "CachedResult | None"]  # a fingerprint's entry in the shared cache
Action = Literal["reuse", "create", "replace", "retry", "resume", "fetch", "blocked"]
SPENDING: frozenset[str] = frozenset({"create", "replace", "retry"})


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


def output_intact(base: Path, entry: Entry) -> bool:
    if entry.output is None:
        return False
    path = base / entry.output.path
    try:
        st = path.stat()
    except OSError:
        return False
    # a FIFO or a link to /dev/zero recorded as an empty clip would make hashing it never end;
    # a link out of the project would make us trust (and chain from) a file we do not own
    if not S_ISREG(st.st_mode) or (
        path.is_symlink() and escape(base, Path(entry.output.path)) is not None
    ):
        return False
    return st.st_size == entry.output.size and sha256_file(path, st) == entry.output.sha256


def _changes(
    old: Mapping[str, Any], new: Mapping[str, Any], origins: Mapping[str, str]
) -> list[str]:
    """Which scene keys differ between two requests, named as the storyboard names them."""

    def flat(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        if isinstance(value, list) and len(value) == 1:
            return flat(value[0], prefix)
        return {prefix.rstrip("."): value}

    a, b = flat(old), flat(new)
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
    remember_hashes(board.render_dir)

    def plan_with(lookup: Lookup | None) -> tuple[Step, ...]:
        frames: dict[tuple[str, str], str] = {}
        steps: list[Step] = []
        for scene_id in graph.topological():
            if wanted is not None and scene_id not in wanted:
                continue
            entry = lock.scenes.get(scene_id)
            scene = board.scene(scene_id)
            step = _step(scene, entry, frames, base, scene_id in force, scene_id in resubmit)
            if lookup is not None and _cacheable(step):
                step = _from_cache(step, lookup)
            steps.append(step)
            if step.cached is not None:
                for which, record in step.cached.files.items():
                    frames[(scene_id, which)] = "sha256:" + record.sha256
            elif step.action in ("reuse", "fetch") and step.entry is not None:
                for which, record in step.entry.frames.items():
                    frames[(scene_id, which)] = "sha256:" + record.sha256
        return tuple(steps)

    if cache is None:
        return Plan(plan_with(None))
    # One at a time, each look-up costs a round trip to the cache (S3): first every fingerprint
    # the plan would ask about if nothing were found is looked up at once; a scene chained to one
    # that is found gets another fingerprint, looked up when the plan meets it.
    asked = {s.fingerprint for s in plan_with(None) if _cacheable(s) and s.fingerprint}
    found = _look_up_all(cache, asked)
    return Plan(plan_with(lambda fp: found[fp] if fp in found else cache.lookup(fp)))


def _look_up_all(cache: Cache, fingerprints: Collection[str]) -> dict[str, CachedResult | None]:
    if len(fingerprints) <= 1:
        return {fp: cache.lookup(fp) for fp in fingerprints}
    with ThreadPoolExecutor(max_workers=min(16, len(fingerprints))) as pool:
        return dict(zip(fingerprints, pool.map(cache.lookup, fingerprints), strict=True))


def _cacheable(step: Step) -> bool:
    """A scene that would be generated (or fetched from its job): the shared cache may have it."""
    return (
        step.fingerprint is not None
        and step.action in SPENDING | {"fetch"}
        and not providers.get(step.scene.provider).local
    )


def _from_cache(step: Step, lookup: Lookup) -> Step:
    assert step.fingerprint is not None
    hit = lookup(step.fingerprint)
    if hit is None:
        return step
    who = f" by {hit.pushed_by}" if hit.pushed_by else ""
    return replace(
        step,
        action="fetch",
        price=Decimal(0),
        cached=hit,
        reason=f"in the shared cache (job {hit.job_id}, pushed{who})",
    )


def _step(
    scene: Scene, entry: Entry | None, frames: FrameHashes, base: Path, forced: bool, resubmit: bool
) -> Step:
    cls = providers.get(scene.provider)
    price = cls().price(scene)
    tokens = image_tokens(scene, frames)
    request = request_for(scene, tokens) if tokens is not None else None
    fp = fingerprint(scene, request) if request is not None else None

    def step(action: Action, reason: str, cost: Decimal = Decimal(0)) -> Step:
        return Step(scene, action, reason, cost, fp, request, entry)

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
            return step("reuse", "up to date")
        if cls.local:
            return step("replace", "clip missing or changed here; rendered again locally")
        return step(
            "fetch", f"clip missing or changed here; download it again from job {entry.job_id}"
        )
    if entry.state == "submitted":
        return step("resume", f"job {entry.job_id} was submitted; poll it")
    if entry.state == "failed":
        return step("retry", f"last job failed: {entry.error or 'no reason given'}", price)
    # submitting / unknown: the request may have created a paid job whose id we never saw
    if resubmit:
        return step("create", "submitted again, as --resubmit asked", price)
    if cls.idempotent_submit:
        return step(
            "resume",
            f"submission was interrupted; resend it with the same key "
            f"{entry.key} (the provider dedupes it)",
        )
    return step(
        "blocked",
        f"a submission with key {entry.key} may have created a job at "
        f"{cls.title}; look for it there, then rerun with --adopt {scene.id}=JOB if "
        f"you find it, or with --resubmit {scene.id} to submit again if not",
    )
