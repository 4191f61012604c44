"""One scene's walk through its step, every lockfile write a named transition.

    submitting (recorded before the request goes out) -> submitted (job id) -> poll ->
    download -> check -> hash -> frames -> finished

so a crash anywhere resumes without paying twice. The other ways in: a clip pulled from the
shared cache, a job another machine submitted under the cache's lease, a submission whose
answer was lost (resent with its key where the provider dedupes, looked for where it lists
jobs, parked `unknown` otherwise), a local preview, frames restored from a kept clip.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hailuo_pipe import providers
from hailuo_pipe.cache import CachedResult, CacheError, Lease, LeaseHeld
from hailuo_pipe.errors import (
    ContentRefused,
    HailuoPipeError,
    JobFailed,
    JobIdRefused,
    LockfileError,
    MediaError,
    ProviderError,
    RateLimited,
    SubmitUncertain,
    TransientError,
)
from hailuo_pipe.plan import (
    SPENDING,
    FrameSource,
    Step,
    frame_sources,
    legacy_of,
    look_for_job,
    pixels_of,
)
from hailuo_pipe.plan.fingerprint import SCHEME
from hailuo_pipe.providers.base import JobStatus, Provider, Reconciled, WireRequest, look_up
from hailuo_pipe.redact import shown
from hailuo_pipe.render import shared as sharing
from hailuo_pipe.render.context import Context, NotStarted, Slots
from hailuo_pipe.render.download import download
from hailuo_pipe.render.events import SceneResult
from hailuo_pipe.render.inputs import local_image, wire_request
from hailuo_pipe.render.outputs import clip_check, done_entry, frames_of
from hailuo_pipe.render.polling import Interrupted, age
from hailuo_pipe.state.lockfile import JOB_ID, Entry, now, odd_job_id
from hailuo_pipe.storyboard.images import sha256_file

if TYPE_CHECKING:
    pass


async def walk(ctx: Context, step: Step) -> SceneResult:
    """Carry out one scene's step; raises HailuoPipeError (the scene failed), Interrupted or
    NotStarted."""
    return await _Walk(ctx, step).act()


class _Walk:
    def __init__(self, ctx: Context, step: Step) -> None:
        self.ctx, self.step, self.scene = ctx, step, step.scene
        self.lock = ctx.writer.lock
        self.writer = ctx.writer

    def emit(self, state: str, detail: str = "", elapsed: float = 0.0) -> None:
        self.ctx.emit(self.scene, state, detail, elapsed)

    @property
    def again(self) -> bool:
        """A new job for this fingerprint was asked for by the user, or costs nothing."""
        sid = self.scene.id
        return (
            sid in self.ctx.opts.force
            or sid in self.ctx.opts.resubmit
            or providers.get(self.scene.provider).local
        )

    async def act(self) -> SceneResult:
        ctx, step, scene, entry = self.ctx, self.step, self.scene, self.step.entry
        if step.migrated and entry is not None:
            entry = await self._migrate(entry)
        if step.action == "reuse":
            return SceneResult(scene.id, "reused", job_id=entry.job_id if entry else None)
        if step.action == "restore" and entry is not None and entry.output is not None:
            frames = await frames_of(self.ctx, self.scene, ctx.base / entry.output.path)
            await self.writer.transition(scene.id, "restored", frames=frames)
            return SceneResult(scene.id, "restored", job_id=entry.job_id)
        if ctx.stop.is_set():
            raise NotStarted
        if ctx.shared and step.fingerprint and step.action in SPENDING | {"download", "pull"}:
            hit = step.cached or await ctx.shared.lookup(step.fingerprint)
            if hit is None and (old := legacy_of(scene, ctx.frames)) is not None:
                hit = await ctx.shared.lookup(old)  # pushed by a version before scheme 2
            if hit is not None and not providers.get(scene.provider).local:
                async with ctx.slots:
                    return await self._from_cache(hit)
        provider = ctx.providers.get(scene.provider)
        if provider is None:  # the plan fetched it from the cache, so it set up no provider
            raise CacheError(
                f"{scene.id}: the shared cache no longer has it (it did when planned, so "
                f"{scene.provider} was not set up); run again to render it"
            )
        if step.action in SPENDING and ctx.shared and not provider.local:
            return await self._claim_and_render(provider, ctx.shared)
        async with ctx.slots_for(scene) as held:
            if provider.local:
                return await self._render_local(provider)
            if step.action in SPENDING:
                job_id = await self._submit(provider, key=str(uuid.uuid4()))
                outcome = "rendered"
            elif step.action == "download":
                assert entry is not None and entry.job_id
                job_id, outcome = entry.job_id, "fetched"
            elif step.action == "poll":
                assert entry is not None and entry.job_id
                job_id, outcome = entry.job_id, "resumed"
            else:  # resend, reconcile or blocked: a submission whose answer was lost
                assert entry is not None and step.action in ("resend", "reconcile", "blocked")
                job_id = await self._resubmit_or_reconcile(provider, entry)
                outcome = "resumed" if self.lock.scenes[scene.id].key == entry.key else "rendered"
            return await self._finish(provider, job_id, outcome, held)

    # -- the shared cache -------------------------------------------------------------------

    async def _from_cache(self, hit: CachedResult) -> SceneResult:
        ctx, step, scene = self.ctx, self.step, self.scene
        assert step.fingerprint is not None and step.request is not None
        self.emit("downloading", f"from the shared cache (job {hit.job_id})")
        clip = ctx.board.clip_path(scene.id)
        clip.parent.mkdir(parents=True, exist_ok=True)
        dests = {n: p for n, p in ctx.board.scene_files(scene.id).items() if n in hit.files}
        # by the hit's own name: an entry pushed by an older version is named by its old scheme
        assert ctx.shared is not None
        await ctx.shared.pull(hit.fingerprint, dests)
        entry = sharing.entry_from_cache(
            hit,
            step.fingerprint,
            "cache",
            step.request.body,
            {n: ctx.rel(p) for n, p in dests.items()},
            now(),
        )
        if set(entry.frames) != {"first", "last"}:  # an entry pushed without its frames
            entry = replace(entry, frames=await frames_of(self.ctx, self.scene, clip))
        elif not all(r.pixels for r in entry.frames.values()):
            # pushed by a version that recorded no pixel digests: read them from the frames as
            # pulled, keeping their bytes, which older versions' cache entries are named by
            frames = {
                which: replace(record, pixels=pixels_of(FrameSource(record, clip), ctx.base, which))
                for which, record in entry.frames.items()
            }
            entry = replace(entry, frames=frames)
        await self.writer.transition(scene.id, "pulled", entry)
        self.emit("done", "from the shared cache")
        return SceneResult(scene.id, "fetched", job_id=entry.job_id)

    async def _claim_and_render(self, provider: Provider, shared: sharing.Shared) -> SceneResult:
        """Render under a lease, so no other machine pays for the same clip meanwhile. The
        claim is made before taking a concurrency slot: waiting for another machine's result
        must not keep this render from starting other scenes."""
        ctx, step, scene = self.ctx, self.step, self.scene
        assert step.fingerprint is not None

        def waiting(other: LeaseHeld) -> None:
            self.emit("waiting", sharing.waiting_text(other))

        got = await shared.claim(step.fingerprint, provider.name, waiting, ctx.stop)
        if got is None:
            raise Interrupted
        if isinstance(got, CachedResult):
            async with ctx.slots:
                return await self._from_cache(got)
        keeper = asyncio.create_task(shared.keep(got))
        try:
            async with ctx.slots_for(scene) as held:
                return await self._render_leased(provider, shared, got, held)
        finally:
            keeper.cancel()
            entry = self.lock.scenes.get(scene.id)
            if (
                entry is not None
                and entry.fingerprint == step.fingerprint
                and (entry.state in ("submitted", "submitting", "unknown"))
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
        self, provider: Provider, shared: sharing.Shared, got: Lease, held: Slots
    ) -> SceneResult:
        ctx, scene = self.ctx, self.scene
        if got.resumed and got.job_id:
            # another machine submitted this and stopped: resume its job, never resubmit
            resumed = replace(
                self._new_entry(key=got.key or "lease"), state="submitted", job_id=got.job_id
            )
            await self.writer.transition(scene.id, "resumed", resumed)
            job_id, outcome = got.job_id, "resumed"
        elif (
            got.previous_holder is not None
            and got.key
            and not got.job_id
            and not (provider.idempotent_submit or scene.id in ctx.opts.resubmit)
        ):
            # its previous holder sent it and never learnt whether a job was made: park it
            # here too, as that holder's own lockfile did, instead of paying for it again
            advice = look_for_job(scene.id, provider.title, got.key, None)
            parked = replace(self._new_entry(key=got.key), state="unknown", error=advice)
            await self.writer.transition(scene.id, "parked", parked)
            raise SubmitUncertain(
                f"{scene.id}: {got.previous_holder} submitted it under the shared cache's lease "
                f"and never learnt its fate; {advice}",
                provider=provider.name,
            )
        else:
            # an idempotent submission its previous holder may have made is resent with the
            # same key, so the provider dedupes it
            key = got.key if got.key and provider.idempotent_submit else str(uuid.uuid4())
            job_id = await self._submit(provider, key=key)
            if problem := await shared.record_job(got, job_id, key):
                self.emit("warning", problem)
            outcome = "rendered"
        result = await self._finish(provider, job_id, outcome, held)
        try:
            await shared.push(ctx.base, self.lock.scenes[scene.id])
        except HailuoPipeError as err:
            self.emit("warning", f"could not push to the shared cache: {err}")
        return result

    # -- local (preview) --------------------------------------------------------------------

    async def _render_local(self, provider: Provider) -> SceneResult:
        scene = self.scene
        started = time.monotonic()
        self.emit("running", "rendering locally")
        inputs: dict[str, Path | str] = {}
        for key in ("image", "end_image"):
            img = getattr(scene, key)
            if img is not None:
                inputs[key] = img.url if img.url is not None else local_image(self.ctx, img)
        dest = self.ctx.board.clip_path(scene.id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            await provider.render_local(scene, inputs, dest)
        except OSError as err:
            raise MediaError(f"cannot write the preview of {scene.id}: {err}") from None
        entry = self._new_entry(key="local", job_id=f"local-{uuid.uuid4().hex[:12]}")
        done = await done_entry(
            self.ctx,
            self.scene,
            entry,
            dest,
            sha256_file(dest),
            dest.stat().st_size,
            JobStatus("succeeded"),
        )
        await self.writer.transition(scene.id, "rendered_locally", done)
        size = done.output.size if done.output else 0
        self.emit("done", f"{size:,} bytes", time.monotonic() - started)
        return SceneResult(scene.id, "rendered", job_id=done.job_id)

    # -- hosted providers ---------------------------------------------------------------------

    async def _migrate(self, entry: Entry) -> Entry:
        """Rewrite an entry of an older fingerprint scheme that still describes the scene: the
        same job and clip, under today's fingerprint, with its frames' pixel digests."""
        assert self.step.request is not None
        base = self.ctx.base
        frames = {
            which: replace(source.record, pixels=pixels_of(source, base, which))
            for which, source in frame_sources(base, entry).items()
        }
        migrated = replace(entry, scheme=SCHEME, request=self.step.request.body, frames=frames)
        return await self.writer.transition(self.scene.id, "migrated", migrated)

    def _new_entry(self, *, key: str, job_id: str | None = None) -> Entry:
        step = self.step
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

    async def _submit(self, provider: Provider, key: str, *, proven_absent: bool = False) -> str:
        async with self.ctx.traffic.submitting():
            return await self._send(provider, key, proven_absent)

    async def _send(self, provider: Provider, key: str, proven_absent: bool = False) -> str:
        scene = self.scene
        request = await wire_request(self.ctx, self.scene, provider)
        # Recorded before sending: a crash from here on can never lead to a blind resubmit.
        again = self.again or proven_absent  # a lost one its provider's list proves jobless
        await self.writer.transition(
            scene.id, "submitting", self._new_entry(key=key), again=again, at_once=True
        )
        self.emit("submitting")
        self.ctx.submitted[scene.id] = time.monotonic()
        try:
            job_id = await provider.submit(self.ctx.clients[scene.provider], request, key)
        except SubmitUncertain as err:
            sent = self.lock.scenes[scene.id].submitted_at
            found = await self._reconcile(provider, key, request, sent)
            if found.job_id is None:
                await self.writer.transition(scene.id, "parked", state="unknown", error=str(err))
                raise SubmitUncertain(
                    f"{scene.id}: {err}; " + look_for_job(scene.id, provider.title, key, sent),
                    provider=provider.name,
                ) from None
            job_id = found.job_id
        except ProviderError as err:
            if provider.idempotent_submit and isinstance(err, TransientError | RateLimited):
                # every attempt resent this key and any of them may have created the job:
                # stay `submitting`, so the next run resends the same key (deduped), not a new one
                raise type(err)(
                    f"{scene.id}: {err}; the next run resends it with the same key {key}",
                    provider=provider.name,
                ) from None
            # the provider refused the request: no job exists, so a later run may retry it
            await self.writer.transition(
                scene.id, "refused", state="failed", error=str(err), finished_at=now()
            )
            raise type(err)(f"{scene.id}: {err}", provider=provider.name) from None
        return await self._record_job(provider, job_id)

    async def _record_job(self, provider: Provider, job_id: str) -> str:
        """The job id a submit (or a resend, or a listing) gave, checked and made durable."""
        sid = self.scene.id
        await self._check_job_id(provider, job_id)
        try:
            await self.writer.transition(sid, "submitted", state="submitted", job_id=job_id)
        except LockfileError as err:
            # the one moment a paid job exists that no file knows of: name it, or it is lost
            raise LockfileError(
                f"{sid}: job {job_id} was created at {provider.title} but could not be "
                f"recorded: {err}. Once that is fixed, rerun with --adopt {sid}={job_id} "
                "to wait for it instead of paying again"
            ) from None
        self.emit("submitted", f"job {job_id}")  # recorded: shown as the lockfile says
        return job_id

    async def _reconcile(
        self, provider: Provider, key: str, request: WireRequest, sent: str | None
    ) -> Reconciled:
        found = await look_up(provider, self.ctx.clients[self.scene.provider], key, request, sent)
        if found.job_id is not None:  # adopted, and said so: never paid again
            await self._check_job_id(provider, found.job_id)
            self.emit("adopted", found.adopted(provider.title))
        return found

    async def _resubmit_or_reconcile(self, provider: Provider, entry: Entry) -> str:
        scene = self.scene
        request = await wire_request(self.ctx, self.scene, provider)
        if provider.idempotent_submit and entry.state == "submitting":
            self.emit("submitting", f"resending with key {entry.key}")
            job_id = await provider.submit(self.ctx.clients[scene.provider], request, entry.key)
        else:
            found = await self._reconcile(provider, entry.key, request, entry.submitted_at)
            if found.absent and self.ctx.shared is None:  # proven jobless (the plan priced it)
                self.emit("resubmitting", f"{found.why} (key {entry.key})")
                return await self._submit(provider, key=str(uuid.uuid4()), proven_absent=True)
            if found.job_id is None:  # parked; never under another machine's lease either
                if entry.state != "unknown":
                    await self.writer.transition(scene.id, "parked", state="unknown")
                advice = look_for_job(scene.id, provider.title, entry.key, entry.submitted_at)
                raise SubmitUncertain(found.parked(scene.id, advice), provider=provider.name)
            job_id = found.job_id
        return await self._record_job(provider, job_id)

    async def _check_job_id(self, provider: Provider, job_id: object) -> None:
        """Park a scene whose provider answered with an odd job id (a slash, a CR LF, an ESC):
        a job may exist, but nothing is ever sent to a path built from that id."""
        if isinstance(job_id, str) and JOB_ID.fullmatch(job_id):
            return
        sid, why = self.scene.id, odd_job_id(job_id)
        await self.writer.transition(
            sid, "parked", state="unknown", error=f"{provider.title}: {why}"
        )
        raise JobIdRefused(
            f"{sid}: {provider.title} answered the submission with {why}; nothing is sent "
            f"to it. Look for the job at the provider and rerun with --adopt {sid}=JOB if "
            f"it is there, or with --resubmit {sid} to submit anew if not",
            provider=provider.name,
        )

    async def _finish(
        self, provider: Provider, job_id: str, outcome: str, held: Slots
    ) -> SceneResult:
        ctx, scene = self.ctx, self.scene
        status = await self._poll(provider, job_id)
        held.release()  # the job no longer runs at the provider: let the next one start
        if status.state != "succeeded":
            # the provider's own words: stored and shown with no key and no terminal control
            error = shown(status.error or f"the job ended {status.state}", provider.secrets())
            await self.writer.transition(
                scene.id, "failed", state="failed", error=error, finished_at=now()
            )
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
        await ctx.traffic.after_submits()
        dest = ctx.board.clip_path(scene.id)
        async with ctx.transfers:  # downloads only: a clip waiting for its frames holds none
            self.emit("downloading")
            got = await download(
                ctx.clients[""], status.output_url, dest, job_id=job_id, check=clip_check(scene)
            )
        done = await done_entry(
            self.ctx, self.scene, self.lock.scenes[scene.id], dest, got.sha256, got.size, status
        )
        await self.writer.transition(scene.id, "finished", done)
        self.emit("done", f"job {job_id}")
        cost = done.cost or 0.0
        return SceneResult(
            scene.id, outcome, cost=cost if outcome == "rendered" else 0.0, job_id=job_id
        )

    async def _poll(self, provider: Provider, job_id: str) -> JobStatus:
        ctx, scene = self.ctx, self.scene
        client = ctx.clients[scene.provider]
        entry = self.lock.scenes[scene.id]
        # a job submitted in this run is timed exactly; a resumed one from its lock timestamp
        started = ctx.submitted.get(scene.id) or time.monotonic() - age(entry.submitted_at)

        def seen(status: JobStatus, elapsed: float) -> None:
            self.emit(status.state, f"job {job_id}", elapsed)

        def overdue(status: JobStatus, elapsed: float) -> Exception:
            return JobFailed(
                f"{scene.id}: job {job_id} is still {status.state} after "
                f"{elapsed / 60:.0f} min; rerun later to resume it",
                provider=provider.name,
                job_id=job_id,
            )

        return await ctx.poller.until_done(
            lambda: provider.poll(client, job_id),
            provider.name,
            started,
            just_sent=scene.id in ctx.submitted,
            seen=seen,
            overdue=overdue,
        )
