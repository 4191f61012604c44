"""Render a storyboard: run what is out of date, resume what was submitted, lose nothing.

Each scene is one asyncio task that waits for the scenes whose frames it needs, decides again
with the real input frames (the plan could only guess them), and then walks
    submit -> record job id -> poll -> download -> hash -> extract frames -> record done
writing the lockfile at every step, so a crash anywhere resumes without paying twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import BrokenExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hailuo_pipe import providers
from hailuo_pipe.cache import CachedResult, CacheError, Lease, LeaseHeld
from hailuo_pipe.errors import (
    BudgetExceeded,
    ConfigError,
    ContentRefused,
    HailuoPipeError,
    JobFailed,
    JobIdRefused,
    LockfileError,
    MediaError,
    OutputExpired,
    ProviderError,
    RateLimited,
    StalePlan,
    SubmitUncertain,
    TransientError,
)
from hailuo_pipe.paths import escape
from hailuo_pipe.plan import (
    SPENDING,
    FrameSource,
    Plan,
    Step,
    decide,
    frame_sources,
    legacy_of,
    look_for_job,
    make_plan,
    pixels_of,
)
from hailuo_pipe.plan.fingerprint import SCHEME
from hailuo_pipe.providers.base import REQUEST_TIMEOUT, JobStatus, Provider, WireRequest
from hailuo_pipe.redact import shown
from hailuo_pipe.render import extract
from hailuo_pipe.render import shared as sharing
from hailuo_pipe.render.download import download
from hailuo_pipe.render.polling import DurationEstimator, PollSchedule
from hailuo_pipe.state.lockfile import (
    JOB_ID,
    Entry,
    FileRecord,
    GroupWriter,
    Lockfile,
    exclusive,
    now,
    odd_job_id,
)
from hailuo_pipe.storyboard.graph import Graph
from hailuo_pipe.storyboard.images import check as check_image
from hailuo_pipe.storyboard.images import sha256_file
from hailuo_pipe.storyboard.model import ImageInput, Scene, Storyboard

if TYPE_CHECKING:
    import httpx

    from hailuo_pipe.plan.saved import SavedPlan

JOB_TIMEOUT = 60 * 60.0  # a job still running after an hour is left to a later run
SUBMITS_FIRST_FOR = 1.0  # seconds a finished job's download waits for submits under way


@dataclass(frozen=True)
class Event:
    """Progress of one scene, for whoever displays it."""

    scene: str
    state: str  # waiting | submitting | queued | running | downloading | done | reused | ...
    provider: str
    detail: str = ""
    elapsed: float = 0.0


# failed: its own error; skipped: something it needs failed; interrupted: stopped by Ctrl-C
# or SIGTERM while under way; not started: the render stopped before it began
FAILED = ("failed", "skipped")
STOPPED = ("interrupted", "not started")


@dataclass(frozen=True)
class SceneResult:
    scene: str
    outcome: str  # reused | rendered | resumed | fetched | failed | skipped | interrupted | ...
    cost: float = 0.0
    error: str | None = None
    job_id: str | None = None
    in_flight: float = 0.0  # the price of its job, still running at the provider
    hint: str | None = None  # what the user can do about a failure


@dataclass(frozen=True)
class RenderResult:
    results: tuple[SceneResult, ...]
    interrupted: bool = False
    cut: str | None = None  # path of the assembled cut, when the storyboard declares one
    planned: float = 0.0  # what the plan priced the run at
    cut_skipped: str | None = None  # why the storyboard's cut was not assembled

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.results if r.outcome in FAILED]

    @property
    def spent(self) -> float:
        return _total(r.cost for r in self.results)

    @property
    def in_flight(self) -> float:
        return _total(r.in_flight for r in self.results)


def _total(amounts: Iterable[float]) -> float:
    """Dollars added as decimals: 0.23 + 0.46 is 0.69, not 0.6900000000000001."""
    return float(sum((Decimal(str(a)) for a in amounts), Decimal(0)))


@dataclass
class RenderOptions:
    concurrency: int = 4
    per_provider: int | None = None
    force: Collection[str] = ()
    resubmit: Collection[str] = ()
    adopt: Mapping[str, str] = field(default_factory=dict)  # scene -> job found at its provider
    only: Collection[str] | None = None
    max_cost: Decimal | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    on_event: Callable[[Event], None] = lambda event: None
    http_timeout: float = REQUEST_TIMEOUT
    wait: bool = False  # queue behind another render of the same spec instead of refusing
    tick: float | None = None  # emit "tick" events this often, for live elapsed times
    on_plan: Callable[[Plan], None] = lambda plan: None  # shown before anything is sent
    saved_plan: SavedPlan | None = None  # the reviewed plan this render must match exactly


class Interrupted(Exception):
    pass


class NotStarted(Exception):
    pass


def check_budget(plan: Plan, max_cost: Decimal | None, limit: str = "--max-cost") -> None:
    if max_cost is not None and plan.cost > max_cost:
        raise BudgetExceeded(
            f"this run would spend ${plan.cost:.2f} on new submissions, more "
            f"than {limit} ${max_cost:.2f}; nothing was submitted"
        )


def configure(plan: Plan, environ: Mapping[str, str]) -> dict[str, Provider]:
    """Providers for every scene that needs the network, or ConfigError before anything is sent."""
    configured: dict[str, Provider] = {}
    missing = []
    for step in plan.steps:
        name = step.scene.provider
        if name in configured or step.action == "reuse" or step.cached is not None:
            continue
        try:
            configured[name] = providers.get(name).from_env(environ)
        except ConfigError as err:
            missing.append(str(err))
    if missing:
        raise ConfigError("; ".join(dict.fromkeys(missing)) + " (nothing was submitted)")
    return configured


def render(board: Storyboard, options: RenderOptions | None = None) -> RenderResult:
    """Render under the spec's lock; Ctrl-C or SIGTERM stops new submits, resumably.

    The plan is made once, under the lock, shown through `on_plan`, checked against the saved
    plan and the budget, and then is what runs: a chained scene alone is decided again, by
    the same `decide`, once the frames it takes exist."""
    opts = options or RenderOptions()
    if board.rehearsal:
        board.render_dir.mkdir(parents=True, exist_ok=True)
    ttl = sharing.lease_ttl(opts.environ)  # a bad setting is refused before the spec is locked
    with exclusive(board.lock_path, wait=opts.wait):
        lock = Lockfile.load(board.lock_path, board.name)
        if opts.adopt:
            lock.adopt(opts.adopt)
            lock.save()
        cache = sharing.open_for(board, opts.environ)
        plan = make_plan(
            board, lock, force=opts.force, resubmit=opts.resubmit, only=opts.only, cache=cache
        )
        if opts.saved_plan is not None:
            try:
                opts.saved_plan.check(
                    plan, name=board.name, spec=board.path, lockfile=board.lock_path
                )
            except StalePlan as err:
                raise StalePlan(
                    f"the saved plan is stale: {err}; nothing was submitted. Review a new "
                    "one (hailuo-pipe plan --out FILE)"
                ) from None
        opts.on_plan(plan)
        if opts.max_cost is None and board.budget is not None:  # --max-cost overrides it
            check_budget(plan, board.budget, "the storyboard's budget:")
        else:
            check_budget(plan, opts.max_cost)
        configured = configure(plan, opts.environ)
        shared = (
            sharing.Shared(cache, ttl=ttl)
            if cache is not None
            else None
        )
        return asyncio.run(_Run(board, lock, plan, configured, opts, shared).run())


class _Slots:
    """The concurrency slots one scene holds, released once: when its job ends at the provider
    (downloading then needs no provider slot) or when the scene is done, whichever is first."""

    def __init__(self, *semaphores: asyncio.Semaphore) -> None:
        self._semaphores = semaphores
        self._held: list[asyncio.Semaphore] = []

    async def __aenter__(self) -> _Slots:
        for sem in self._semaphores:
            await sem.acquire()
            self._held.append(sem)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        while self._held:
            self._held.pop().release()


class _Run:
    def __init__(
        self,
        board: Storyboard,
        lock: Lockfile,
        plan: Plan,
        configured: Mapping[str, Provider],
        opts: RenderOptions,
        shared: sharing.Shared | None = None,
    ) -> None:
        self.board, self.lock, self.plan, self.opts = board, lock, plan, opts
        self.shared = shared
        self.writer = GroupWriter(lock)
        self.providers = configured
        self.base = board.path.parent
        self.graph = Graph.of(board.scenes)
        self.frames: dict[tuple[str, str], FrameSource] = {}
        self.done: dict[str, asyncio.Future[str]] = {}  # scene -> its outcome
        self.stop = asyncio.Event()
        self.estimator = DurationEstimator()
        self.learnt: dict[str, asyncio.Event] = {}  # set when a job of that provider finishes
        self.results: dict[str, SceneResult] = {}
        self.submitted: dict[str, float] = {}  # scene -> monotonic time of its submit
        self.sending = 0  # submits under way: downloads make way for them
        self.sent = asyncio.Event()  # set when `sending` drops to 0, cleared when it rises

    async def run(self) -> RenderResult:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._interrupt)
        self.slots = asyncio.Semaphore(self.opts.concurrency)
        # blocking I/O (cache transfers) runs in threads: as many as scenes may run at once
        loop.set_default_executor(ThreadPoolExecutor(max_workers=self.opts.concurrency + 4))
        # decoding is CPU work: off the event loop's process when there is much of it
        self.decoders = extract.pool(sum(1 for s in self.plan.steps if s.action != "reuse"))
        limit = self.opts.per_provider or self.opts.concurrency
        self.provider_slots = {name: asyncio.Semaphore(limit) for name in self.providers}
        # downloads have their own bound: a finished job no longer holds a provider slot
        self.transfers = asyncio.Semaphore(self.opts.concurrency)
        self.done = {s.scene.id: loop.create_future() for s in self.plan.steps}
        ticker = asyncio.create_task(self._tick()) if self.opts.tick else None
        try:
            async with self._clients() as clients:
                self.clients = clients
                await asyncio.gather(*(self._scene(step) for step in self.plan.steps))
        finally:
            self.decoders.shutdown(wait=False)
            if ticker:
                ticker.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        order = [s.scene.id for s in self.plan.steps]
        results = tuple(self.results[i] for i in order)
        cut, skipped = None, None
        if self.board.output and self.opts.only is None:
            unfinished = [r.scene for r in results if r.outcome in FAILED + STOPPED]
            needed = [s for s in self.board.output.sequence if s in unfinished]
            if needed:
                skipped = f"the cut was not assembled: {', '.join(needed)} did not finish"
            else:
                cut = await asyncio.to_thread(self._cut)
        return RenderResult(
            results, self.stop.is_set(), cut, planned=float(self.plan.cost), cut_skipped=skipped
        )

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.opts.tick or 1.0)
            self.opts.on_event(Event("", "tick", ""))

    def _interrupt(self) -> None:
        if self.stop.is_set():  # a second Ctrl-C: stop now, the lockfile is already consistent
            raise KeyboardInterrupt
        self.stop.set()

    @contextlib.asynccontextmanager
    async def _clients(self):  # type: ignore[no-untyped-def]
        hosted = [(name, p) for name, p in self.providers.items() if not p.local]
        if not hosted:  # a rerun with nothing to fetch never loads httpx nor TLS certificates
            yield {}
            return
        import httpx

        from hailuo_pipe.render.pool import ShardedTransport

        timeout = httpx.Timeout(self.opts.http_timeout, connect=10.0)
        connections = max(10, self.opts.concurrency * 2)
        tls = httpx.create_ssl_context()  # once for every client (about 40 ms each)
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, httpx.AsyncClient] = {}

            async def client(**kw: Any) -> httpx.AsyncClient:
                pool = ShardedTransport(connections, verify=tls)
                made = httpx.AsyncClient(timeout=timeout, transport=pool, **kw)
                return await stack.enter_async_context(made)

            for name, provider in hosted:
                clients[name] = await client(headers=provider.auth_headers())
            # downloads go to presigned URLs, often another host: never send API keys there
            clients[""] = await client(follow_redirects=True)
            yield clients

    def emit(self, scene: Scene, state: str, detail: str = "", elapsed: float = 0.0) -> None:
        self.opts.on_event(Event(scene.id, state, scene.provider, detail, elapsed))

    # -- one scene --------------------------------------------------------------------------

    async def _scene(self, planned: Step) -> None:
        scene = planned.scene
        result = SceneResult(scene.id, "not started")
        try:
            dep, outcome = await self._wait_for_inputs(scene)
            if outcome in STOPPED:
                result = SceneResult(scene.id, "not started", error=f"needs {dep}, {outcome}")
            elif dep is not None:
                result = SceneResult(scene.id, "skipped", error=f"needs {dep}, which failed")
            else:
                # a step planned before its input frames existed has no fingerprint: stale even
                # when the scenes it takes them from turned out reused once replanned themselves
                as_planned = planned.fingerprint is not None and self._inputs_as_planned(scene)
                step = planned if as_planned else self._replan(scene)
                result = await self._act(step)
        except NotStarted:
            result = SceneResult(scene.id, "not started")
        except Interrupted:
            result = self._interrupted(scene)
        except HailuoPipeError as err:
            result = self._failed(scene, err)
        except Exception as err:
            # a bug of ours: this scene fails, named, instead of a traceback that ends the whole
            # render; what it recorded before failing is in the lockfile, so a rerun resumes it
            entry = self.lock.scenes.get(scene.id)
            result = SceneResult(
                scene.id,
                "failed",
                error=f"{scene.id}: internal error ({type(err).__name__}: {err}); its lockfile "
                "entry is left as it was: run the same command again, and please report this",
                job_id=entry.job_id if entry else None,
            )
        finally:
            self.results[scene.id] = result
            if result.outcome not in FAILED + STOPPED:
                self._record_frames(scene.id)
            if result.outcome not in ("rendered", "resumed", "fetched"):  # those said "done"
                self.emit(scene, result.outcome, result.error or "")
            self.done[scene.id].set_result(result.outcome)

    def _interrupted(self, scene: Scene) -> SceneResult:
        """A scene stopped under way; a job of it still running at the provider is in flight
        (paid for, resumed by the next render), and says so."""
        entry = self.lock.scenes.get(scene.id)
        if entry is None or entry.state != "submitted":
            return SceneResult(scene.id, "interrupted")
        price = float(providers.get(scene.provider)().price(scene))
        return SceneResult(
            scene.id,
            "interrupted",
            job_id=entry.job_id,
            in_flight=price,
            hint=f"job {entry.job_id} is still running at the provider: render again to "
            "resume it (free)",
        )

    def _failed(self, scene: Scene, err: HailuoPipeError) -> SceneResult:
        entry = self.lock.scenes.get(scene.id)
        job_id = entry.job_id if entry else None
        return SceneResult(
            scene.id, "failed", error=str(err), job_id=job_id, hint=_hint(scene, entry, err)
        )

    def _inputs_as_planned(self, scene: Scene) -> bool:
        """The plan's step still holds when every scene it takes a frame from was reused:
        its frames are then the ones the plan hashed."""
        return all(
            self.results[dep].outcome in ("reused", "restored")  # the same clip, so the same pixels
            for dep in self.graph.needs[scene.id]
            if dep in self.results
        )

    def _replan(self, scene: Scene) -> Step:
        """The step, now that the frames it takes from other scenes exist."""
        return decide(
            scene,
            self.lock.scenes.get(scene.id),
            self.frames,
            self.base,
            scene.id in self.opts.force,
            scene.id in self.opts.resubmit,
        )

    async def _wait_for_inputs(self, scene: Scene) -> tuple[str | None, str]:
        """The first scene this one needs that did not finish, and its outcome."""
        for dep in self.graph.needs[scene.id]:
            if dep in self.done:
                outcome = await self.done[dep]
                if outcome in FAILED + STOPPED:
                    return dep, outcome
        return None, ""

    def _record_frames(self, scene_id: str) -> None:
        entry = self.lock.scenes.get(scene_id)
        if entry is not None:
            for which, source in frame_sources(self.base, entry).items():
                self.frames[(scene_id, which)] = source

    async def _act(self, step: Step) -> SceneResult:
        scene, entry = step.scene, step.entry
        if step.migrated and entry is not None:
            entry = await self._migrate(step, entry)
        if step.action == "reuse":
            return SceneResult(scene.id, "reused", job_id=entry.job_id if entry else None)
        if step.action == "restore" and entry is not None and entry.output is not None:
            frames = await self._frames_of(scene, self.base / entry.output.path)
            await self.writer.put(scene.id, replace(entry, frames=frames))
            return SceneResult(scene.id, "restored", job_id=entry.job_id)
        if self.stop.is_set():
            raise NotStarted
        if self.shared and step.fingerprint and step.action in SPENDING | {"fetch"}:
            hit = step.cached or await self.shared.lookup(step.fingerprint)
            if hit is None and (old := legacy_of(scene, self.frames)) is not None:
                hit = await self.shared.lookup(old)  # pushed by a version before scheme 2
            if hit is not None and not providers.get(scene.provider).local:
                async with self.slots:
                    return await self._from_cache(step, hit)
        provider = self.providers.get(scene.provider)
        if provider is None:  # the plan fetched it from the cache, so it set up no provider
            raise CacheError(
                f"{scene.id}: the shared cache no longer has it (it did when planned, so "
                f"{scene.provider} was not set up); run again to render it"
            )
        if step.action in SPENDING and self.shared and not provider.local:
            return await self._claim_and_render(step, provider, self.shared)
        async with self._slots_for(scene) as held:
            if provider.local:
                return await self._render_local(step, provider)
            if step.action in SPENDING:
                job_id = await self._submit(step, provider, key=str(uuid.uuid4()))
                outcome = "rendered"
            elif step.action == "fetch":
                assert entry is not None and entry.job_id
                job_id, outcome = entry.job_id, "fetched"
            elif step.action == "resume" and entry and entry.state == "submitted":
                assert entry.job_id
                job_id, outcome = entry.job_id, "resumed"
            else:  # resume an interrupted submit (idempotent) or reconcile a blocked one
                assert entry is not None
                job_id = await self._resubmit_or_reconcile(step, provider, entry)
                outcome = "resumed"
            return await self._finish(step, provider, job_id, outcome, held)

    # -- the shared cache -------------------------------------------------------------------

    async def _from_cache(self, step: Step, hit: CachedResult) -> SceneResult:
        scene = step.scene
        assert step.fingerprint is not None and step.request is not None
        self.emit(scene, "downloading", f"from the shared cache (job {hit.job_id})")
        clip = self._clip_path(scene)
        clip.parent.mkdir(parents=True, exist_ok=True)
        dests = {"clip": clip, **{w: self._frame_path(scene, w) for w in ("first", "last")}}
        dests = {name: path for name, path in dests.items() if name in hit.files}
        # by the hit's own name: an entry pushed by an older version is named by its old scheme
        await self.shared.pull(hit.fingerprint, dests)  # type: ignore[union-attr]
        entry = sharing.entry_from_cache(
            hit,
            step.fingerprint,
            "cache",
            step.request.body,
            {n: self._rel(p) for n, p in dests.items()},
            now(),
        )
        if set(entry.frames) != {"first", "last"}:  # an entry pushed without its frames
            entry = replace(entry, frames=await self._frames_of(scene, clip))
        elif not all(r.pixels for r in entry.frames.values()):
            # pushed by a version that recorded no pixel digests: read them from the frames as
            # pulled, keeping their bytes, which older versions' cache entries are named by
            frames = {
                which: replace(
                    record, pixels=pixels_of(FrameSource(record, clip), self.base, which)
                )
                for which, record in entry.frames.items()
            }
            entry = replace(entry, frames=frames)
        await self.writer.put(scene.id, entry)
        self.emit(scene, "done", "from the shared cache")
        return SceneResult(scene.id, "fetched", job_id=entry.job_id)

    def _slots_for(self, scene: Scene) -> _Slots:
        return _Slots(self.slots, self.provider_slots[scene.provider])

    async def _claim_and_render(
        self, step: Step, provider: Provider, shared: sharing.Shared
    ) -> SceneResult:
        """Render under a lease, so no other machine pays for the same clip meanwhile. The
        claim is made before taking a concurrency slot: waiting for another machine's result
        must not keep this render from starting other scenes."""
        scene = step.scene
        assert step.fingerprint is not None

        def waiting(other: LeaseHeld) -> None:
            self.emit(scene, "waiting", sharing.waiting_text(other))

        got = await shared.claim(step.fingerprint, provider.name, waiting, self.stop)
        if got is None:
            raise Interrupted
        if isinstance(got, CachedResult):
            async with self.slots:
                return await self._from_cache(step, got)
        keeper = asyncio.create_task(shared.keep(got))
        try:
            async with self._slots_for(step.scene) as held:
                return await self._render_leased(step, provider, shared, got, held)
        finally:
            keeper.cancel()
            entry = self.lock.scenes.get(scene.id)
            if entry is not None and entry.fingerprint == step.fingerprint and (
                entry.state in ("submitted", "submitting", "unknown")
            ):
                # stopped while its job runs on (Ctrl-C, a poll that gave up), or with a
                # submission whose fate is unknown: keep the lease, with the job or the key in
                # it, so whoever takes it once it lapses resumes that job, resends that key, or
                # parks the scene too, rather than paying again
                if not shared.recorded(got) or (got.job_id, got.key) != (entry.job_id, entry.key):
                    await shared.record_job(got, entry.job_id, entry.key)
            else:
                await shared.release(got)

    async def _render_leased(
        self, step: Step, provider: Provider, shared: sharing.Shared, got: Lease, held: _Slots
    ) -> SceneResult:
        scene = step.scene
        if got.resumed and got.job_id:
            # another machine submitted this and stopped: resume its job, never resubmit
            resumed = replace(
                self._new_entry(step, key=got.key or "lease"),
                state="submitted",
                job_id=got.job_id,
            )
            await self.writer.put(scene.id, resumed)
            job_id, outcome = got.job_id, "resumed"
        elif got.previous_holder is not None and got.key and not got.job_id and not (
            provider.idempotent_submit or scene.id in self.opts.resubmit
        ):
            # its previous holder sent it and never learnt whether a job was made: park it
            # here too, as that holder's own lockfile did, instead of paying for it again
            advice = look_for_job(scene.id, provider.title, got.key, None)
            entry = replace(self._new_entry(step, key=got.key), state="unknown", error=advice)
            await self.writer.put(scene.id, entry)
            raise SubmitUncertain(
                f"{scene.id}: {got.previous_holder} submitted it under the shared cache's lease "
                f"and never learnt its fate; {advice}",
                provider=provider.name,
            )
        else:
            # an idempotent submission its previous holder may have made is resent with the
            # same key, so the provider dedupes it
            key = got.key if got.key and provider.idempotent_submit else str(uuid.uuid4())
            job_id = await self._submit(step, provider, key=key)
            if problem := await shared.record_job(got, job_id, key):
                self.emit(scene, "warning", problem)
            outcome = "rendered"
        result = await self._finish(step, provider, job_id, outcome, held)
        try:
            await shared.push(self.base, self.lock.scenes[scene.id])
        except HailuoPipeError as err:
            self.emit(scene, "warning", f"could not push to the shared cache: {err}")
        return result

    # -- local (preview) --------------------------------------------------------------------

    async def _render_local(self, step: Step, provider: Provider) -> SceneResult:
        scene = step.scene
        started = time.monotonic()
        self.emit(scene, "running", "rendering locally")
        inputs: dict[str, Path | str] = {}
        for key in ("image", "end_image"):
            img = getattr(scene, key)
            if img is not None:
                inputs[key] = img.url if img.url is not None else self._local_image(img)
        dest = self._clip_path(scene)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            await provider.render_local(scene, inputs, dest)
        except OSError as err:
            raise MediaError(f"cannot write the preview of {scene.id}: {err}") from None
        entry = self._new_entry(step, key="local", job_id=f"local-{uuid.uuid4().hex[:12]}")
        entry = await self._record_done(
            scene, entry, dest, sha256_file(dest), dest.stat().st_size, JobStatus("succeeded")
        )
        self.emit(
            scene,
            "done",
            f"{entry.output.size if entry.output else 0:,} bytes",
            time.monotonic() - started,
        )
        return SceneResult(scene.id, "rendered", job_id=entry.job_id)

    # -- hosted providers ---------------------------------------------------------------------

    async def _migrate(self, step: Step, entry: Entry) -> Entry:
        """Rewrite an entry of an older fingerprint scheme that still describes the scene: the
        same job and clip, under today's fingerprint, with its frames' pixel digests."""
        assert step.request is not None
        frames = {
            which: replace(source.record, pixels=pixels_of(source, self.base, which))
            for which, source in frame_sources(self.base, entry).items()
        }
        now_ = replace(entry, scheme=SCHEME, request=step.request.body, frames=frames)
        await self.writer.put(step.scene.id, now_)
        return now_

    def _new_entry(self, step: Step, *, key: str, job_id: str | None = None) -> Entry:
        assert step.fingerprint is not None and step.request is not None
        return Entry(
            fingerprint=step.fingerprint,
            provider=step.scene.provider,
            state="submitting",
            key=key,
            request=step.request.body,
            job_id=job_id,
            submitted_at=now(),
            scheme=SCHEME,
        )

    async def _wire_request(self, scene: Scene, provider: Provider) -> WireRequest:
        client = self.clients[scene.provider]
        wire: dict[str, str] = {}
        for key in ("image", "end_image"):
            img = getattr(scene, key)
            if img is None:
                continue
            if img.url is not None:
                wire[key] = img.url
            else:
                path = self._local_image(img)
                mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
                wire[key] = await provider.encode_image(client, path.read_bytes(), mime)
        return provider.build_request(scene, wire)

    def _local_image(self, img: ImageInput) -> Path:
        if img.path is not None:
            check_image(img.path)
            return img.path
        assert img.ref is not None
        entry = self.lock.scenes[img.ref.scene]
        record = entry.frames[img.ref.frame]
        # the frame is sent to a provider: a link to a private file must not be uploaded
        why = escape(self.base, Path(record.path))
        if why is not None:
            raise MediaError(
                f"{record.path}: the {img.ref.frame} frame of {img.ref.scene} {why}; delete it "
                f"and render again (run with --force {img.ref.scene} to make it anew)"
            )
        return self.base / record.path

    async def _after_submits(self) -> None:
        """Let the submits under way go first: when jobs end together, each ended job's
        download would otherwise delay the submit taking its slot, and the next job with it.
        Bounded, so a submit waiting out a 429 holds no download up for long."""
        await asyncio.sleep(0)  # a slot just freed: let the scene that takes it get going
        if self.sending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sent.wait(), timeout=SUBMITS_FIRST_FOR)

    async def _submit(self, step: Step, provider: Provider, key: str) -> str:
        self.sending += 1
        self.sent.clear()
        try:
            return await self._send(step, provider, key)
        finally:
            self.sending -= 1
            if not self.sending:
                self.sent.set()

    async def _send(self, step: Step, provider: Provider, key: str) -> str:
        scene = step.scene
        request = await self._wire_request(scene, provider)
        # Recorded before sending: a crash from here on can never lead to a blind resubmit.
        await self.writer.put(scene.id, self._new_entry(step, key=key))
        self.emit(scene, "submitting")
        self.submitted[scene.id] = time.monotonic()
        try:
            job_id = await provider.submit(self.clients[scene.provider], request, key)
        except SubmitUncertain as err:
            found = await self._reconcile(provider, scene, key, request)
            if found is None:
                await self.writer.update(scene.id, state="unknown", error=str(err))
                sent = self.lock.scenes[scene.id].submitted_at
                raise SubmitUncertain(
                    f"{scene.id}: {err}; " + look_for_job(scene.id, provider.title, key, sent),
                    provider=provider.name,
                ) from None
            job_id = found
        except ProviderError as err:
            if provider.idempotent_submit and isinstance(err, TransientError | RateLimited):
                # every attempt resent this key and any of them may have created the job:
                # stay `submitting`, so the next run resends the same key (deduped), not a new one
                raise type(err)(
                    f"{scene.id}: {err}; the next run resends it with the same key {key}",
                    provider=provider.name,
                ) from None
            # the provider refused the request: no job exists, so a later run may retry it
            await self.writer.update(scene.id, state="failed", error=str(err), finished_at=now())
            raise type(err)(f"{scene.id}: {err}", provider=provider.name) from None
        await self._check_job_id(scene, provider, job_id)
        try:
            await self.writer.update(scene.id, state="submitted", job_id=job_id)
        except LockfileError as err:
            # the one moment a paid job exists that no file knows of: name it, or it is lost
            raise LockfileError(
                f"{scene.id}: job {job_id} was created at {provider.title} but could not be "
                f"recorded: {err}. Once that is fixed, rerun with --adopt {scene.id}={job_id} "
                "to wait for it instead of paying again"
            ) from None
        return job_id

    async def _reconcile(
        self, provider: Provider, scene: Scene, key: str, request: WireRequest
    ) -> str | None:
        try:
            return await provider.reconcile(self.clients[scene.provider], key, request)
        except ProviderError:
            return None

    async def _resubmit_or_reconcile(self, step: Step, provider: Provider, entry: Entry) -> str:
        scene = step.scene
        if provider.idempotent_submit and entry.state == "submitting":
            request = await self._wire_request(scene, provider)
            self.emit(scene, "submitting", f"resending with key {entry.key}")
            job_id = await provider.submit(self.clients[scene.provider], request, entry.key)
            await self._check_job_id(scene, provider, job_id)
            await self.writer.update(scene.id, state="submitted", job_id=job_id)
            return job_id
        request = await self._wire_request(scene, provider)
        found = await self._reconcile(provider, scene, entry.key, request)
        if found is None:
            if entry.state != "unknown":
                await self.writer.update(scene.id, state="unknown")
            raise SubmitUncertain(f"{scene.id}: {step.reason}", provider=provider.name)
        await self._check_job_id(scene, provider, found)
        await self.writer.update(scene.id, state="submitted", job_id=found)
        return found

    async def _check_job_id(self, scene: Scene, provider: Provider, job_id: object) -> None:
        """Park a scene whose provider answered with an odd job id (a slash, a CR LF, an ESC):
        a job may exist, but nothing is ever sent to a path built from that id."""
        if isinstance(job_id, str) and JOB_ID.fullmatch(job_id):
            return
        why = odd_job_id(job_id)
        await self.writer.update(scene.id, state="unknown", error=f"{provider.title}: {why}")
        raise JobIdRefused(
            f"{scene.id}: {provider.title} answered the submission with {why}; nothing is sent "
            f"to it. Look for the job at the provider and rerun with --adopt {scene.id}=JOB if "
            f"it is there, or with --resubmit {scene.id} to submit anew if not",
            provider=provider.name,
        )

    async def _finish(
        self, step: Step, provider: Provider, job_id: str, outcome: str, held: _Slots
    ) -> SceneResult:
        scene = step.scene
        status = await self._poll(scene, provider, job_id)
        held.release()  # the job no longer runs at the provider: let the next one start
        if status.state != "succeeded":
            # the provider's own words: stored and shown with no key and no terminal control
            error = shown(status.error or f"the job ended {status.state}", provider.secrets())
            await self.writer.update(scene.id, state="failed", error=error, finished_at=now())
            kind = ContentRefused if status.refused else JobFailed
            raise kind(
                f"{scene.id}: job {job_id} at {provider.title} failed: {error}",
                provider=provider.name,
                job_id=job_id,
            )
        if not status.output_url:
            raise JobFailed(
                f"{scene.id}: job {job_id} succeeded but gave no clip URL",
                provider=provider.name,
                job_id=job_id,
            )
        await self._after_submits()
        async with self.transfers:
            self.emit(scene, "downloading")
            dest = self._clip_path(scene)
            got = await download(
                self.clients[""], status.output_url, dest, job_id=job_id, check=_clip_check(scene)
            )
            entry = await self._record_done(
                scene, self.lock.scenes[scene.id], dest, got.sha256, got.size, status
            )
        self.emit(scene, "done", f"job {job_id}")
        cost = entry.cost or 0.0
        return SceneResult(
            scene.id, outcome, cost=cost if outcome == "rendered" else 0.0, job_id=job_id
        )

    async def _poll(self, scene: Scene, provider: Provider, job_id: str) -> JobStatus:
        client = self.clients[scene.provider]
        entry = self.lock.scenes[scene.id]
        # a job submitted in this run is timed exactly; a resumed one from its lock timestamp
        started = self.submitted.get(scene.id) or time.monotonic() - _age(entry.submitted_at)
        schedule = self.estimator.schedule(provider.name)
        last_state = ""
        if scene.id in self.submitted:  # just sent: asking at once would only hear "queued"
            await self._sleep_until_due(provider.name, schedule, started, 0.0)
        while True:
            elapsed = time.monotonic() - started
            status = await provider.poll(client, job_id)
            if status.state != last_state:
                self.emit(scene, status.state, f"job {job_id}", elapsed)
                last_state = status.state
            if status.terminal:
                if status.state == "succeeded":
                    self._observe(provider.name, elapsed)
                return status
            if elapsed > JOB_TIMEOUT:
                raise JobFailed(
                    f"{scene.id}: job {job_id} is still {status.state} after "
                    f"{elapsed / 60:.0f} min; rerun later to resume it",
                    provider=provider.name,
                    job_id=job_id,
                )
            await self._sleep_until_due(provider.name, schedule, started, elapsed)

    async def _sleep_until_due(
        self, provider: str, schedule: PollSchedule, started: float, polled_at: float
    ) -> None:
        """Sleep until the schedule says poll again. A sibling job of the same provider
        finishing meanwhile teaches the schedule when jobs end, so the wait is reconsidered:
        jobs submitted together are then seen done together, not each after its own long
        blind wait."""
        due = started + polled_at + schedule.next_delay(polled_at)
        blind = schedule.estimate() is None
        while (left := due - time.monotonic()) > 0:
            learnt = self.learnt.setdefault(provider, asyncio.Event())
            waits = [asyncio.ensure_future(e.wait()) for e in (self.stop, learnt)]
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if self.stop.is_set():
                raise Interrupted
            elapsed = time.monotonic() - started
            if blind and schedule.overdue(elapsed):
                return  # the first sibling to end ran no longer than this job has: ask now
            due = min(due, started + elapsed + schedule.next_delay(elapsed))

    def _observe(self, provider: str, seconds: float) -> None:
        self.estimator.observe(provider, seconds)
        self.learnt.pop(provider, asyncio.Event()).set()  # wake this provider's sleepers

    async def _record_done(
        self, scene: Scene, entry: Entry, clip: Path, sha: str, size: int, status: JobStatus
    ) -> Entry:
        frames = await self._frames_of(scene, clip)
        done = Entry(
            fingerprint=entry.fingerprint,
            provider=entry.provider,
            state="done",
            key=entry.key,
            request=entry.request,
            job_id=entry.job_id,
            submitted_at=entry.submitted_at,
            finished_at=now(),
            output=FileRecord(self._rel(clip), sha, size),
            frames=frames,
            # what the provider reported; else our price table (the API reports no cost)
            cost=_first(
                status.cost, entry.cost, float(self.providers[scene.provider].price(scene))
            ),
            cost_source=(
                "provider"
                if status.cost is not None
                else (entry.cost_source if entry.cost is not None else None) or "price-list"
            ),
            seed=status.seed if status.seed is not None else entry.seed,
            scheme=entry.scheme,
        )
        await self.writer.put(scene.id, done)
        return done

    async def _frames_of(self, scene: Scene, clip: Path) -> dict[str, FileRecord]:
        loop = asyncio.get_running_loop()
        pngs = {which: self._frame_path(scene, which) for which in ("first", "last")}
        work = functools.partial(extract.frames, scene.id, clip, pngs, self.base)
        used = self.decoders
        try:
            records = await loop.run_in_executor(used, work)
        except BrokenExecutor:
            # a worker died (a decoder crash on an odd clip, the OOM killer): every extraction
            # under way heard of it; the first to hear makes a fresh pool, each tries once more
            if self.decoders is used:
                used.shutdown(wait=False)
                self.decoders = extract.pool(extract.PROCESSES_FROM)
            try:
                records = await loop.run_in_executor(self.decoders, work)
            except BrokenExecutor:
                raise MediaError(
                    f"{scene.id}: decoding the downloaded clip crashed its worker process"
                ) from None
        extract.remember(records, self.base)
        return records

    def _clip_path(self, scene: Scene) -> Path:
        return self.board.render_dir / f"{scene.id}.mp4"

    def _frame_path(self, scene: Scene, which: str) -> Path:
        return self.board.render_dir / f"{scene.id}.{which}.png"

    def _rel(self, path: Path) -> str:
        return os.path.relpath(path, self.base)

    # -- the cut ----------------------------------------------------------------------------

    def _cut(self) -> str | None:
        from hailuo_pipe.cut import assemble

        return assemble(self.board, self.lock)


def _clip_check(scene: Scene) -> Callable[[Path], object]:
    """What a download must be to be recorded: the clip this scene's request could give."""

    def check(path: Path) -> object:
        from hailuo_pipe.media import check_clip  # PyAV loads only when a clip is fetched

        return check_clip(path, scene.resolution, scene.duration)

    return check


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _age(timestamp: str | None) -> float:
    """Seconds since an ISO timestamp from the lockfile (0 when unknown)."""
    if not timestamp:
        return 0.0
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


def summary_line(result: RenderResult) -> str:
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    parts = [f"{n} {k}" for k, n in sorted(counts.items())]
    spend = f"spent ${result.spent:.2f} (planned ${result.planned:.2f})"
    if result.in_flight:
        spend += f", ${result.in_flight:.2f} in flight"
    return f"{', '.join(parts)}; {spend}"


def _hint(scene: Scene, entry: Entry | None, err: HailuoPipeError) -> str | None:
    """What to do about a scene's failure, from what the lockfile now says of it."""
    if isinstance(err, OutputExpired):
        return (
            f"the clip is gone at the provider: take it from a shared cache (hailuo-pipe cache "
            f"pull) if one has it, or pay for it again with --force {scene.id}"
        )
    if entry is None:
        return None
    if entry.state == "failed":
        return "render again to retry it (a new, paid job), or change the scene first"
    if entry.state == "submitted":
        return f"job {entry.job_id} is recorded: render again to resume it (free)"
    if entry.state == "done":
        return f"its clip is recorded: render again to fetch it (free), or --force {scene.id}"
    return None  # submitting / unknown: the error itself names --adopt and --resubmit
