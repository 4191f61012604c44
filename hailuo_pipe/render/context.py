"""What the scenes of one render share: slots, the order of submits and downloads, clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hailuo_pipe.plan import FrameSource
from hailuo_pipe.providers.base import Provider
from hailuo_pipe.render import shared as sharing
from hailuo_pipe.render.events import Event
from hailuo_pipe.render.options import RenderOptions
from hailuo_pipe.render.polling import Poller
from hailuo_pipe.state.group_commit import GroupWriter
from hailuo_pipe.storyboard.model import Scene, Storyboard

if TYPE_CHECKING:
    import httpx

SUBMITS_FIRST_FOR = 1.0  # seconds a finished job's download waits for submits under way


class NotStarted(Exception):
    """The render was stopped before this scene began."""


class Slots:
    """The concurrency slots one scene holds, released once: when its job ends at the provider
    (downloading then needs no provider slot) or when the scene is done, whichever is first."""

    def __init__(self, *semaphores: asyncio.Semaphore) -> None:
        self._semaphores = semaphores
        self._held: list[asyncio.Semaphore] = []

    async def __aenter__(self) -> Slots:
        for sem in self._semaphores:
            await sem.acquire()
            self._held.append(sem)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        while self._held:
            self._held.pop().release()


class Traffic:
    """Submits go before downloads: when jobs end together, each ended job's download would
    otherwise delay the submit taking its slot, and the next job with it."""

    def __init__(self) -> None:
        self.sending = 0
        self.sent = asyncio.Event()  # set when `sending` drops to 0, cleared when it rises
        self.sent.set()

    @contextlib.asynccontextmanager
    async def submitting(self) -> AsyncIterator[None]:
        self.sending += 1
        self.sent.clear()
        try:
            yield
        finally:
            self.sending -= 1
            if not self.sending:
                self.sent.set()

    async def after_submits(self) -> None:
        """Bounded, so a submit waiting out a 429 holds no download up for long."""
        await asyncio.sleep(0)  # a slot just freed: let the scene that takes it get going
        if self.sending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sent.wait(), timeout=SUBMITS_FIRST_FOR)


@dataclass
class Context:
    """What the scenes of one render share."""

    board: Storyboard
    writer: GroupWriter
    opts: RenderOptions
    providers: Mapping[str, Provider]
    clients: Mapping[str, httpx.AsyncClient]
    shared: sharing.Shared | None
    stop: asyncio.Event
    poller: Poller
    slots: asyncio.Semaphore
    provider_slots: Mapping[str, asyncio.Semaphore]
    transfers: asyncio.Semaphore  # downloads: a finished job no longer holds a provider slot
    decoders: Executor  # replaced by a fresh pool if a worker process dies
    frames: dict[tuple[str, str], FrameSource] = field(default_factory=dict)
    submitted: dict[str, float] = field(default_factory=dict)  # scene -> monotonic submit time
    traffic: Traffic = field(default_factory=Traffic)

    @property
    def base(self) -> Path:
        return self.board.path.parent

    def emit(self, scene: Scene, state: str, detail: str = "", elapsed: float = 0.0) -> None:
        self.opts.on_event(Event(scene.id, state, scene.provider, detail, elapsed))

    def slots_for(self, scene: Scene) -> Slots:
        return Slots(self.slots, self.provider_slots[scene.provider])

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.base)
