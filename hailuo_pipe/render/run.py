"""Scheduling a plan's steps: a task per scene, concurrency slots, interrupts, results.

Each scene's task waits for the scenes whose frames it needs, is decided again by the plan's
own `decide()` when its input frames turned out different from what the plan could know, and
then walks its step (`scene.walk`). Ctrl-C or SIGTERM stops new submits; what is under way is
left recorded, so the next render resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from hailuo_pipe import collector, providers
from hailuo_pipe.errors import HailuoPipeError
from hailuo_pipe.plan import Plan, Step, decide, frame_sources
from hailuo_pipe.providers.base import Provider
from hailuo_pipe.render import extract
from hailuo_pipe.render import shared as sharing
from hailuo_pipe.render.context import Context, NotStarted
from hailuo_pipe.render.events import FAILED, STOPPED, Event, RenderResult, SceneResult, hint
from hailuo_pipe.render.options import RenderOptions
from hailuo_pipe.render.polling import Interrupted, Poller
from hailuo_pipe.render.scene import walk
from hailuo_pipe.state.group_commit import GroupWriter
from hailuo_pipe.state.lockfile import Lockfile
from hailuo_pipe.storyboard.graph import Graph
from hailuo_pipe.storyboard.model import Scene, Storyboard

if TYPE_CHECKING:
    import httpx


def apply(
    board: Storyboard,
    lock: Lockfile,
    plan: Plan,
    configured: Mapping[str, Provider],
    opts: RenderOptions,
    shared: sharing.Shared | None = None,
) -> RenderResult:
    """Carry out `plan` (made from `lock`, which the caller holds the spec's lock for)."""
    collector.resume()
    return asyncio.run(_Run(board, lock, plan, configured, opts, shared).run())


class _Run:
    def __init__(
        self,
        board: Storyboard,
        lock: Lockfile,
        plan: Plan,
        configured: Mapping[str, Provider],
        opts: RenderOptions,
        shared: sharing.Shared | None,
    ) -> None:
        self.board, self.lock, self.plan, self.opts = board, lock, plan, opts
        self.configured, self.shared = configured, shared
        self.graph = Graph.of(board.scenes)
        self.taken = self.graph.taken()  # the scenes whose frames another one takes
        self.done: dict[str, asyncio.Future[str]] = {}  # scene -> its outcome
        self.results: dict[str, SceneResult] = {}
        self.stop = asyncio.Event()

    async def run(self) -> RenderResult:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._interrupt)
        # blocking I/O (cache transfers) runs in threads: as many as scenes may run at once
        loop.set_default_executor(ThreadPoolExecutor(max_workers=self.opts.concurrency + 4))
        # decoding is CPU work: off the event loop's process when there is much of it
        working = sum(1 for s in self.plan.steps if s.action != "reuse")
        decoders = extract.pool(working)
        limit = self.opts.per_provider or self.opts.concurrency
        self.done = {s.scene.id: loop.create_future() for s in self.plan.steps}
        ticker = asyncio.create_task(self._tick()) if self.opts.tick else None
        warming = None
        poller = Poller(self.stop)
        try:
            async with self._clients() as clients:
                self.ctx = Context(
                    board=self.board,
                    writer=GroupWriter(self.lock),
                    opts=self.opts,
                    providers=self.configured,
                    clients=clients,
                    shared=self.shared,
                    stop=self.stop,
                    poller=poller,
                    slots=asyncio.Semaphore(self.opts.concurrency),
                    provider_slots={n: asyncio.Semaphore(limit) for n in self.configured},
                    transfers=asyncio.Semaphore(self.opts.concurrency),
                    decoders=decoders,
                )
                if working:
                    warming = asyncio.create_task(self._warm(decoders, working))
                to_do = [step for step in self.plan.steps if not self._reused_at_once(step)]
                await asyncio.gather(*(self._scene(step) for step in to_do))
        finally:
            self.ctx.decoders.shutdown(wait=False)  # the pool in use (replaced if it broke)
            poller.close()
            for task in (ticker, warming):
                if task:
                    task.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        results = tuple(self.results[s.scene.id] for s in self.plan.steps)
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

    async def _warm(self, decoders: Executor, working: int) -> None:
        """Load PyAV and Pillow, which the first clip's check needs, and start the frame
        workers, while the first jobs run: once their submits are out, as all of it takes CPU
        and the GIL. Loaded by that check and the first extraction, they held the loop up
        just as the first jobs ended and the next submits waited for it; loaded at the start,
        they spread the first submits over 0.12-0.17 s instead of 0.02-0.04 s (bench/README)."""
        first_wave = min(working, self.opts.concurrency)
        for _ in range(WARM_LOOKS):  # a render whose scenes submit nothing warms up all the same
            if len(self.ctx.submitted) >= first_wave:
                break
            await asyncio.sleep(WARM_AFTER)
        await asyncio.get_running_loop().run_in_executor(None, _load_media, decoders)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.opts.tick or 1.0)
            self.opts.on_event(Event("", "tick", ""))

    def _interrupt(self) -> None:
        if self.stop.is_set():  # a second Ctrl-C: stop now, the lockfile is already consistent
            raise KeyboardInterrupt
        self.stop.set()

    @contextlib.asynccontextmanager
    async def _clients(self) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
        hosted = [(name, p) for name, p in self.configured.items() if not p.local]
        if not hosted:  # a rerun with nothing to fetch never loads httpx nor TLS certificates
            yield {}
            return
        import httpx

        from hailuo_pipe.render.pool import AsyncioTransport

        timeout = httpx.Timeout(self.opts.http_timeout, connect=10.0)
        connections = max(10, self.opts.concurrency * 2)
        tls = httpx.create_ssl_context()  # once for every client (about 40 ms each)
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, httpx.AsyncClient] = {}

            async def client(**kw: Any) -> httpx.AsyncClient:
                if _proxied():  # httpx's own transport honours the proxy and NO_PROXY
                    limits = httpx.Limits(max_connections=connections)
                    made = httpx.AsyncClient(timeout=timeout, verify=tls, limits=limits, **kw)
                else:
                    pool = AsyncioTransport(connections, verify=tls)
                    made = httpx.AsyncClient(timeout=timeout, transport=pool, **kw)
                return await stack.enter_async_context(made)

            for name, provider in hosted:
                clients[name] = await client(headers=provider.auth_headers())
            # downloads go to presigned URLs, often another host: never send API keys there
            clients[""] = await client(follow_redirects=True)
            yield clients

    # -- one scene's task -------------------------------------------------------------------

    def _reused_at_once(self, planned: Step) -> bool:
        """A scene reused as planned, whose inputs were too, is done without a task of its own:
        a rerun of a large storyboard is mostly these. (Steps come after what they need, so
        its inputs were reported before it.)"""
        scene = planned.scene
        if planned.action != "reuse" or planned.migrated or planned.fingerprint is None:
            return False
        if any(
            dep in self.done and (dep not in self.results or self.results[dep].outcome != "reused")
            for dep in self.graph.needs[scene.id]
        ):
            return False
        entry = planned.entry
        self._finish(scene, SceneResult(scene.id, "reused", job_id=entry.job_id if entry else None))
        return True

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
                result = await walk(self.ctx, step)
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
            self._finish(scene, result)

    def _finish(self, scene: Scene, result: SceneResult) -> None:
        """A scene's outcome: reported, its frames offered to the scenes that take them, and
        the scenes waiting for it woken."""
        self.results[scene.id] = result
        if result.outcome not in FAILED + STOPPED and scene.id in self.taken:
            self._record_frames(scene.id)
        if result.outcome not in ("rendered", "resumed", "fetched"):  # those said "done"
            self.ctx.emit(scene, result.outcome, result.error or "")
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
            scene.id, "failed", error=str(err), job_id=job_id, hint=hint(scene, entry, err)
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
            self.ctx.frames,
            self.board.path.parent,
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
            for which, source in frame_sources(self.board.path.parent, entry).items():
                self.ctx.frames[(scene_id, which)] = source

    def _cut(self) -> str | None:
        from hailuo_pipe.cut import assemble

        return assemble(self.board, self.lock)


def _proxied() -> bool:
    """Whether the environment names an HTTP proxy (httpx ignores it for a client given its
    own transport)."""
    names = {"http_proxy", "https_proxy", "all_proxy"}
    return any(key.lower() in names and value for key, value in os.environ.items())


WARM_AFTER, WARM_LOOKS = 0.05, 10  # looks at how many of the first wave's submits are out


def _load_media(decoders: Executor) -> None:
    # a failure is left for the check that needs the module to report, as it always did
    with contextlib.suppress(Exception):
        import hailuo_pipe.media  # noqa: F401
    extract.warm(decoders)
